# SFT/DPO sets in LLaMA-Factory format, their dataset_info.json, and the leakage guard. The job
# that builds a configuration's two sets also checks them against the test split (no test
# dialogue may reach a training file; every training job depends on the flag) and registers them
# in the configuration's dataset_info.json: one job per configuration, not three (the check and
# the registration take a second; as jobs of their own they were 42 of the grid's dry-run jobs).

# Input functions and specs of these rules.
include: "functions/datasets.smk"


rule direct_sets:
    input:
        train=TRAIN_CSV,
        test=TEST_CSV,
        prompts=PROMPTS,
    output:
        sft="results/datasets/direct/{strategy}/sft.json",
        dpo="results/datasets/direct/{strategy}/dpo.json",
        info="results/datasets/direct/{strategy}/dataset_info.json",
        leakage="results/datasets/direct/{strategy}/leakage_check.ok",
    wildcard_constraints:
        strategy=strategies.wildcard_regex(strategies.direct_names()),
    params:
        dpo_filter=config["distillation"]["direct_dpo_filter"],
    conda:
        CORE_ENV
    # Seconds of work that gate the teacher's rewrites or training (priority as the teacher's)
    priority: 10
    log:
        "logs/datasets/direct/{strategy}.log",
    shell:
        "python -m empathy_distill.distillation.build_sets direct --train {input.train}"
        " --strategy {wildcards.strategy} --dpo-filter {params.dpo_filter}"
        " --prompts {input.prompts} --sft {output.sft} --dpo {output.dpo}"
        " --test {input.test} --info {output.info} --leakage-ok {output.leakage} > {log} 2>&1"


rule improved_sets:
    input:
        sources="results/data/sources/{method}.csv",
        teacher=teacher_outputs_for_set,
        test=TEST_CSV,
        prompts=PROMPTS,
    output:
        sft="results/datasets/{method}/{strategy}/sft.json",
        dpo="results/datasets/{method}/{strategy}/dpo.json",
        info="results/datasets/{method}/{strategy}/dataset_info.json",
        leakage="results/datasets/{method}/{strategy}/leakage_check.ok",
    wildcard_constraints:
        method="improve_human|improve_llm",
        strategy=strategies.wildcard_regex(strategies.improve_names()),
    conda:
        CORE_ENV
    # Seconds of work that gate the teacher's rewrites or training (priority as the teacher's)
    priority: 10
    log:
        "logs/datasets/{method}/{strategy}.log",
    shell:
        "python -m empathy_distill.distillation.build_sets improved --sources {input.sources}"
        " --teacher {input.teacher} --prompts {input.prompts}"
        " --sft {output.sft} --dpo {output.dpo}"
        " --test {input.test} --info {output.info} --leakage-ok {output.leakage} > {log} 2>&1"


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
