# SFT/DPO sets in LLaMA-Factory format, their dataset_info.json, and the leakage guard.

# Input functions and specs of these rules.
include: "functions/datasets.smk"


rule direct_sets:
    input:
        train=TRAIN_CSV,
        prompts=PROMPTS,
    output:
        sft="results/datasets/direct/{strategy}/sft.json",
        dpo="results/datasets/direct/{strategy}/dpo.json",
    wildcard_constraints:
        strategy=strategies.wildcard_regex(strategies.direct_names()),
    params:
        dpo_filter=config["distillation"]["direct_dpo_filter"],
    conda:
        CORE_ENV
    log:
        "logs/datasets/direct/{strategy}.log",
    shell:
        "python -m empathy_distill.distillation.build_sets direct --train {input.train}"
        " --strategy {wildcards.strategy} --dpo-filter {params.dpo_filter}"
        " --prompts {input.prompts} --sft {output.sft} --dpo {output.dpo} > {log} 2>&1"


rule improved_sets:
    input:
        sources="results/data/sources/{method}.csv",
        teacher=teacher_outputs_for_set,
        prompts=PROMPTS,
    output:
        sft="results/datasets/{method}/{strategy}/sft.json",
        dpo="results/datasets/{method}/{strategy}/dpo.json",
    wildcard_constraints:
        method="improve_human|improve_llm",
        strategy=strategies.wildcard_regex(strategies.improve_names()),
    conda:
        CORE_ENV
    log:
        "logs/datasets/{method}/{strategy}.log",
    shell:
        "python -m empathy_distill.distillation.build_sets improved --sources {input.sources}"
        " --teacher {input.teacher} --prompts {input.prompts}"
        " --sft {output.sft} --dpo {output.dpo} > {log} 2>&1"


# Per data configuration, so a training job waits only for its own sets (direct students can
# train while the teacher's batches are still running).
rule set_dataset_info:
    input:
        expand("results/datasets/{{method}}/{{strategy}}/{stage}.json", stage=TRAINING_SETS),
    output:
        "results/datasets/{method}/{strategy}/dataset_info.json",
    conda:
        CORE_ENV
    log:
        "logs/datasets/{method}/{strategy}.dataset_info.log",
    shell:
        "python -m empathy_distill.distillation.build_sets dataset-info --sets {input} --out"
        " {output}"
        " > {log} 2>&1"


rule dataset_info:
    input:
        set_files(),
    output:
        "results/datasets/dataset_info.json",
    conda:
        CORE_ENV
    log:
        "logs/datasets/dataset_info.log",
    shell:
        "python -m empathy_distill.distillation.build_sets dataset-info --sets {input} --out"
        " {output}"
        " > {log} 2>&1"


# Every training job depends on this flag: no test dialogue may reach a training file.
rule leakage_guard:
    input:
        test=TEST_CSV,
        sets=expand("results/datasets/{{method}}/{{strategy}}/{stage}.json", stage=TRAINING_SETS),
    output:
        "results/datasets/{method}/{strategy}/leakage_check.ok",
    conda:
        CORE_ENV
    log:
        "logs/datasets/{method}/{strategy}.leakage.log",
    shell:
        "python -m empathy_distill.distillation.build_sets leakage --test {input.test} --sets"
        " {input.sets}"
        " --out {output} > {log} 2>&1"
