# The companion scoring study's published data (arXiv:2412.20264), pinned to one commit of its
# repository, and its classifier table recomputed from them (docs/scoring.md, "The study
# reproduced from its own data"). Logic: empathy_distill/data/scoring_study.py and
# empathy_distill/evaluation/scoring/study_reproduction*.py. Input functions and specs:
# functions/scoring_study.smk; study_file and STUDY_DATA: common.smk.

# Input functions and specs of these rules.
include: "functions/scoring_study.smk"


# A file already at scoring.study_data.dir is used as is (the job checks its sha256).
rule download_scoring_study:
    output:
        study_file("{file}"),
    wildcard_constraints:
        file="|".join(re.escape(name) for name in STUDY_DATA["files"]),
    params:
        url=lambda wildcards: f"{STUDY_DATA['url'].rstrip('/')}/{wildcards.file}",
        sha256=lambda wildcards: STUDY_DATA["files"][wildcards.file],
    localrule: True
    conda:
        CORE_ENV
    log:
        "logs/data/download_scoring_study_{file}.log",
    shell:
        "python -m empathy_distill.data.commands download --url {params.url:q} --sha256"
        " {params.sha256} --out {output:q} > {log} 2>&1"


rule scoring_study_reproduction:
    input:
        study=[study_file(name) for name in STUDY_DATA["files"]],
        dataset=DATASET,
        # the fine-tuned scorers of scoring.study_protocol: model.json and predictions per protocol
        finetuned=get_study_finetune_files,
    output:
        table=report(
            study_grid.TABLE,
            caption="../report/scoring_study_reproduction.rst",
            category="Tables",
            labels={"table": "scoring study reproduced"},
        ),
        by_k=study_grid.BY_K,
        figure=report(
            study_grid.FIGURE,
            caption="../report/scoring_study_reproduction.rst",
            category="Figures",
            labels={"figure": "scoring study reproduced"},
        ),
    params:
        spec=get_scoring_study_reproduction_spec,
        study_dir=lambda wildcards, input: os.path.dirname(input.study[0]),
    benchmark:
        study_grid.BENCHMARK
    threads: 2
    # MiniLM embeddings need sentence-transformers (as train_classifier_scorer)
    conda:
        "../../envs/train.yaml"
    log:
        "logs/scoring/scoring_study_reproduction.log",
    shell:
        "python -m empathy_distill.evaluation.scoring.study_reproduction_job"
        " --spec {params.spec:q} --study-dir {params.study_dir:q} --dataset {input.dataset:q}"
        " --table-out {output.table:q} --by-k-out {output.by_k:q}"
        " --figure-out {output.figure:q} --threads {threads} > {log} 2>&1"
