# Offline feature classifiers (scorer kind "classifier", the companion study's explainable
# approximation of LLM empathy scoring, arXiv:2412.20264): fitted on the train-split responses,
# evaluated on the test split and under the study's own protocol. score_answers (scoring.smk)
# then applies the fitted model to answer sets. Input functions: functions/classifier.smk.

# Input functions and specs of these rules.
include: "functions/classifier.smk"


rule train_classifier_scorer:
    input:
        unpack(get_classifier_train_input),
    output:
        model=classifier_paths.MODEL_FILE,
        scores=classifier_paths.RESPONSE_SCORES.replace("{split}", "test"),
        table=report(
            classifier_paths.TABLE,
            caption="../report/classifier_scores.rst",
            category="Tables",
            labels={"table": "classifier scores", "scorer": "{scorer}"},
        ),
        importance=report(
            classifier_paths.IMPORTANCE,
            caption="../report/feature_importance.rst",
            category="Tables",
            labels={"table": "feature importance", "scorer": "{scorer}"},
        ),
        figure=report(
            classifier_paths.FIGURE,
            caption="../report/feature_importance.rst",
            category="Figures",
            labels={"figure": "feature importance", "scorer": "{scorer}"},
        ),
    wildcard_constraints:
        scorer=classifier_scorer_regex(),
    params:
        spec=get_classifier_train_spec,
        subfactors=get_classifier_subfactor_args,
    benchmark:
        "results/benchmarks/scorers/{scorer}.tsv"
    threads: 2
    # MiniLM embeddings need sentence-transformers (as the offline judge's rule)
    conda:
        "../../envs/train.yaml"
    log:
        "logs/scorers/{scorer}/train.log",
    shell:
        "python -m empathy_distill.evaluation.scoring.classifier.train --spec {params.spec:q}"
        " --train {input.train:q} --test {input.test:q} {params.subfactors}"
        " --model-out {output.model:q} --scores-out {output.scores:q}"
        " --table-out {output.table:q} --importance-out {output.importance:q}"
        " --figure-out {output.figure:q} > {log} 2>&1"
