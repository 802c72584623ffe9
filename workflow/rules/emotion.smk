# Emotion accuracy, our reading of the PRIDE abstract's "accuracy" (docs/emotion-accuracy.md):
# every student answer set's model (base and trained, loaded as rule answer loads it) names the
# speaker's emotion of each test dialogue among the 32 EmpatheticDialogues labels, by likelihood;
# one job per student (the base model loaded once, each adapter merged in turn; a part per answer
# set is the unit of resume), one table of all of them. Switch: evaluation.emotion_accuracy.
# Input functions and specs: functions/emotion.smk; the answer job's resources it reuses:
# common.smk.

# Input functions and specs of these rules.
include: "functions/emotion.smk"


rule emotion_answers:
    input:
        unpack(get_emotion_answers_input),
    output:
        evaluation_specs.EMOTION,
    params:
        spec=get_emotion_answers_spec,
    resources:
        gpu=get_answer_resource("gpu"),
        mem_mb=get_answer_resource("mem_mb"),
        runtime=get_answer_resource("runtime"),
    threads: get_answer_resource("threads")
    conda:
        "../../envs/train.yaml"
    log:
        "logs/emotion/{student}.log",
    benchmark:
        "results/benchmarks/emotion/{student}.tsv"
    shell:
        "python -m empathy_distill.evaluation.emotion_answers --spec {params.spec:q}"
        " --test {input.test:q} --out {output:q} --gpus {resources.gpu} > {log} 2>&1"


rule emotion_accuracy:
    input:
        unpack(get_emotion_accuracy_input),
    output:
        report(
            "results/tables/emotion_accuracy.csv",
            caption="../report/emotion_accuracy.rst",
            category="Tables",
            labels={"table": "emotion accuracy"},
        ),
    params:
        spec=specs.dumps(specs.build("emotion_accuracy", config)),  # the manifest of its inputs
    conda:
        "../../envs/train.yaml"
    log:
        "logs/tables/emotion_accuracy.log",
    shell:
        "python -m empathy_distill.evaluation.emotion_accuracy --spec {params.spec:q}"
        " --test {input.test:q} --out {output:q} > {log} 2>&1"
