# Students answer the test dialogues (the teacher's answers come from rule teacher_initial).
# Input functions: workflow/rules/common.smk.


rule answer_base:
    input:
        test="results/data/test.csv",
        prompts=config["prompts"],
        model=student_model_files,
    output:
        "results/answers/{student}/base.jsonl",
    params:
        settings=generation_settings,
    resources:
        gpu=lambda w: generation_resources(w.student)["gpu"],
        mem_mb=lambda w: generation_resources(w.student)["mem_mb"],
        runtime=lambda w: generation_resources(w.student)["runtime"],
    threads: lambda w: generation_resources(w.student)["threads"]
    conda:
        "../../envs/train.yaml"
    log:
        "logs/answers/{student}/base.log",
    shell:
        "python -m empathy_distill.evaluation.generate --settings {params.settings:q}"
        " --student {wildcards.student} --test {input.test:q} --out {output:q} > {log} 2>&1"


rule answer_model:
    input:
        test="results/data/test.csv",
        prompts=config["prompts"],
        model=student_model_files,
        adapter="results/models/{student}/{method}/{strategy}/{stage}/adapter_model.safetensors",
        adapter_config="results/models/{student}/{method}/{strategy}/{stage}/adapter_config.json",
    output:
        "results/answers/{student}/{method}/{strategy}/{stage}.jsonl",
    params:
        settings=generation_settings,
        adapter=lambda w, input: os.path.dirname(input.adapter),
    resources:
        gpu=lambda w: generation_resources(w.student)["gpu"],
        mem_mb=lambda w: generation_resources(w.student)["mem_mb"],
        runtime=lambda w: generation_resources(w.student)["runtime"],
    threads: lambda w: generation_resources(w.student)["threads"]
    conda:
        "../../envs/train.yaml"
    log:
        "logs/answers/{student}/{method}/{strategy}/{stage}.log",
    shell:
        "python -m empathy_distill.evaluation.generate --settings {params.settings:q}"
        " --student {wildcards.student} --test {input.test:q} --adapter {params.adapter:q}"
        " --out {output:q} > {log} 2>&1"
