# PRIDE training jobs (empathy_distill.training.pride): the `pride` stage of the train rule's
# layout, in a rule of its own so that its resources can differ from SFT and DPO per student
# (training.pride.resources, training.per_student.<student>.pride.resources) and the SLURM
# profile can size it apart (set-resources: train_pride). With training.pride.teacher_outputs:
# precomputed (default) it reads the teacher's outputs (rule pride_teacher_outputs, below) and
# never loads the teacher; online, it loads it and asks for its resources.
# Input and resource functions: functions/pride.smk.
# With training.pride.reasoning, rule pride_reasoning (below) writes the teacher's reasoning first.

# Input functions and specs of these rules.
include: "functions/pride.smk"


ruleorder: train_pride > train


rule train_pride:
    input:
        unpack(get_pride_train_input),
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
    wildcard_constraints:
        stage="pride",
    params:
        out=get_output_dir,
        spec=get_train_spec,
        nproc=get_pride_resource("nproc_per_node"),
    resources:
        gpu=get_pride_resource("gpu"),
        mem_mb=get_pride_resource("mem_mb"),
        runtime=get_pride_resource("runtime"),
    threads: get_pride_resource("threads")
    conda:
        "../../envs/train.yaml"
    priority: 5  # a training chain, as rule train's
    log:
        "logs/train/{student}/{method}/{strategy}/{stage}.log",
    benchmark:
        "results/benchmarks/train/{student}/{method}/{strategy}/{stage}.tsv"
    shell:
        "python -m empathy_distill.training.run --stage {wildcards.stage}"
        " --spec {params.spec:q} --out {params.out:q} --nproc-per-node {params.nproc}"
        " --student {wildcards.student} --gpus {resources.gpu} > {log} 2>&1"


# The PRIDE teacher runs once per configuration: its top-k log-probabilities, tail mass and MMD
# features of every training example (empathy_distill.training.pride.teacher_outputs), read by
# every epoch of train_pride. Its resources are the teacher's (training.pride.teacher_resources:
# 4 GPUs for the 70B teacher); it can run on another node than training.
rule pride_teacher_outputs:
    input:
        unpack(get_pride_teacher_outputs_input),
    output:
        "results/pride/teacher_outputs/{student}/{method}/{strategy}/manifest.json",
    params:
        out=get_output_dir,
        spec=get_pride_teacher_outputs_spec,
    resources:
        gpu=get_pride_teacher_resource("gpu"),
        mem_mb=get_pride_teacher_resource("mem_mb"),
        runtime=get_pride_teacher_resource("runtime"),
    threads: get_pride_teacher_resource("threads")
    conda:
        "../../envs/train.yaml"
    priority: 5  # a training chain, as rule train's
    log:
        "logs/pride/teacher_outputs/{student}/{method}/{strategy}.log",
    benchmark:
        "results/benchmarks/pride/teacher_outputs/{student}/{method}/{strategy}.tsv"
    shell:
        "python -m empathy_distill.training.pride.teacher_outputs --spec {params.spec:q}"
        " --out {params.out:q} --gpus {resources.gpu} > {log} 2>&1"


# training.pride.reasoning: the PRIDE teacher writes its own reasoning (the feelings and the
# situation, not a reply) about every train dialogue, through the LLM layer and its cache; the
# PRIDE jobs of the students it teaches add it to the teacher's privileged prompt. One file per
# teacher: every data configuration trains on the same dialogues.
rule pride_reasoning:
    input:
        unpack(get_pride_reasoning_input),
    output:
        "results/pride/reasoning/{teacher}.jsonl",
    wildcard_constraints:
        teacher=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    params:
        spec=get_pride_reasoning_spec,
    resources:
        gpu=get_pride_reasoning_resource("gpu"),
        mem_mb=get_pride_reasoning_resource("mem_mb"),
        runtime=get_pride_reasoning_resource("runtime"),
    threads: get_pride_reasoning_resource("threads")
    conda:
        "../../envs/train.yaml"
    log:
        "logs/pride/reasoning/{teacher}.log",
    benchmark:
        "results/benchmarks/pride/reasoning/{teacher}.tsv"
    shell:
        "python -m empathy_distill.training.pride.reasoning --spec {params.spec:q}"
        " --train {input.train} --out {output} --gpus {resources.gpu} > {log} 2>&1"
