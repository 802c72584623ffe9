# Dataset -> validated table -> the paper's train/test split.


rule download_dataset:
    output:
        DATASET,
    params:
        url=config["dataset"]["url"],
        sha256=config["dataset"]["sha256"],
    conda:
        CORE_ENV
    log:
        "logs/data/download_dataset.log",
    shell:
        "python -m empathy_distill.data.commands download --url {params.url:q} --sha256"
        " {params.sha256}"
        " --out {output:q} > {log} 2>&1"


rule split_dataset:
    input:
        DATASET,
    output:
        train=TRAIN_CSV,
        test=TEST_CSV,
    params:
        sha256=config["dataset"]["sha256"],
        max_train=config["dataset"]["max_train_dialogues"] or "",
        max_test=config["dataset"]["max_test_dialogues"] or "",
    conda:
        CORE_ENV
    log:
        "logs/data/split_dataset.log",
    shell:
        "python -m empathy_distill.data.commands split --dataset {input:q} --sha256 {params.sha256}"
        " --train {output.train} --test {output.test}"
        " $([ -n '{params.max_train}' ] && echo --max-train {params.max_train})"
        " $([ -n '{params.max_test}' ] && echo --max-test {params.max_test})"
        " > {log} 2>&1"


# The scorers' train dialogues (scoring.train_dialogues): the paper's train split, cut for the
# scorers only, so a small distillation run still trains its scorers on many rated responses.
rule scorer_train_split:
    input:
        DATASET,
    output:
        SCORER_TRAIN_CSV,
    params:
        sha256=config["dataset"]["sha256"],
        max_train=config["scoring"]["train_dialogues"] or "",
    conda:
        CORE_ENV
    log:
        "logs/data/scorer_train_split.log",
    shell:
        "python -m empathy_distill.data.commands split --dataset {input:q} --sha256 {params.sha256}"
        " --train {output:q}"
        " $([ -n '{params.max_train}' ] && echo --max-train {params.max_train})"
        " > {log} 2>&1"


rule improve_human_sources:
    input:
        TRAIN_CSV,
    output:
        "results/data/sources/improve_human.csv",
    conda:
        CORE_ENV
    # Seconds of work that gate the teacher's rewrites or training (priority as the teacher's)
    priority: 10
    log:
        "logs/data/improve_human_sources.log",
    shell:
        "python -m empathy_distill.data.commands sources --train {input} --out {output} > {log}"
        " 2>&1"
