# Students answer the test dialogues (the teacher's answers come from rule teacher_initial): one
# rule for the base model ({variant} = base) and every trained model ({variant} =
# {method}/{strategy}/{stage}). Input and resource functions (get_*), which emotion.smk uses
# too: common.smk; the spec: functions/generate.smk.

# Input functions and specs of these rules.
include: "functions/generate.smk"


rule answer:
    input:
        unpack(get_answer_input),
    output:
        grid.ANSWERS,
    params:
        spec=get_answer_spec,
        adapter=get_answer_adapter_arg,
    resources:
        gpu=get_answer_resource("gpu"),
        mem_mb=get_answer_resource("mem_mb"),
        runtime=get_answer_resource("runtime"),
    threads: get_answer_resource("threads")
    conda:
        "../../envs/train.yaml"
    log:
        "logs/answers/{student}/{variant}.log",
    benchmark:
        "results/benchmarks/answers/{student}/{variant}.tsv"
    shell:
        "python -m empathy_distill.evaluation.generate --spec {params.spec:q}"
        " --test {input.test:q} {params.adapter}"
        " --out {output:q} --gpus {resources.gpu} > {log} 2>&1"
