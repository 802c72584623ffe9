# Offline stand-ins for the scoring study's annotations (arXiv:2412.20264), learnt from its
# published data on the train split's dialogues only: the offline subfactor scorer (a subfactors
# scorer with backend offline; score_answers / score_responses then apply it) and the MITI
# tagger (the classifiers' miti features). Logic: empathy_distill/evaluation/scoring/offline/.
# Input functions and specs: functions/scoring_offline.smk.

# Input functions and specs of these rules.
include: "functions/scoring_offline.smk"


rule train_offline_subfactors:
    input:
        study=[study_file(name) for name in OFFLINE_STUDY_FILES],
        train=SCORER_TRAIN_CSV,
        test=TEST_CSV,
    output:
        model=offline_paths.SUBFACTOR_MODEL,
        table=report(
            offline_paths.SUBFACTOR_AGREEMENT,
            caption="../report/offline_subfactor_agreement.rst",
            category="Tables",
            labels={"table": "offline subfactor agreement", "scorer": "{scorer}"},
        ),
    wildcard_constraints:
        scorer=offline_subfactor_regex(),
    params:
        spec=get_offline_subfactors_spec,
        study_dir=lambda wildcards, input: os.path.dirname(input.study[0]),
    benchmark:
        offline_paths.SUBFACTOR_BENCHMARK
    threads: 2
    # MiniLM embeddings need sentence-transformers (as train_classifier_scorer)
    conda:
        "../../envs/train.yaml"
    log:
        "logs/scorers/{scorer}/train.log",
    shell:
        "python -m empathy_distill.evaluation.scoring.offline.subfactors_job --spec {params.spec:q}"
        " --study-dir {params.study_dir:q} --train {input.train:q} --test {input.test:q}"
        " --model-out {output.model:q} --table-out {output.table:q} > {log} 2>&1"


rule train_miti_tagger:
    input:
        study=[study_file(name) for name in OFFLINE_STUDY_FILES],
        train=SCORER_TRAIN_CSV,
        test=TEST_CSV,
    output:
        model=offline_paths.MITI_MODEL,
        table=report(
            offline_paths.MITI_AGREEMENT,
            caption="../report/miti_tagger_agreement.rst",
            category="Tables",
            labels={"table": "MITI tagger agreement"},
        ),
    params:
        spec=specs.dumps(specs.build("train_miti_tagger", config)),
        study_dir=lambda wildcards, input: os.path.dirname(input.study[0]),
    benchmark:
        offline_paths.MITI_BENCHMARK
    threads: 2
    conda:
        "../../envs/train.yaml"
    log:
        "logs/scorers/miti_tagger/train.log",
    shell:
        "python -m empathy_distill.evaluation.scoring.offline.miti_job --spec {params.spec:q}"
        " --study-dir {params.study_dir:q} --train {input.train:q} --test {input.test:q}"
        " --model-out {output.model:q} --table-out {output.table:q} > {log} 2>&1"
