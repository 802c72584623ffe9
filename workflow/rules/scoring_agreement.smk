# How far the empathy scorers agree with people (the companion study, Xie et al., arXiv:2412.20264):
# each LLM scorer of scoring.grid scores the dataset's own human-rated responses, one table sets
# every scorer against the human ratings and the study's reported figures, one table splits the
# rating variance into rater and text, and a heatmap per scorer shows which dimension each
# strategy moves. Input functions and specs: functions/scoring_agreement.smk.

# Input functions and specs of these rules.
include: "functions/scoring_agreement.smk"


localrules:
    scorer_agreement,
    rater_variance,
    figure_empathy_change,


rule score_responses:
    input:
        unpack(get_score_responses_input),
    output:
        "results/scores/{scorer}/responses_{split}.jsonl",
    wildcard_constraints:
        # LLM scorers only: another kind (a classifier) writes its own responses files
        scorer=llm_scorer_pattern(),
        split="train|test",
    params:
        spec=get_score_responses_spec,
        cost_report="results/costs/scorer_{scorer}.csv",
        scorer_model=get_scorer_model_arg,
    resources:
        api_calls=scorer_api_calls,
    # as score_answers: a scorer may be a local model (backend transformers imports torch)
    conda:
        "../../envs/train.yaml"
    log:
        "logs/scores/{scorer}/responses_{split}.log",
    shell:
        "python -m empathy_distill.evaluation.scoring.responses --spec {params.spec:q}"
        " --split {input.split:q} --cost-report {params.cost_report:q} {params.scorer_model}"
        " --out {output:q}"
        " > {log} 2>&1"


rule scorer_agreement:
    input:
        scores=agreement_inputs,
    output:
        report(
            "results/tables/scorer_agreement.csv",
            caption="../report/scorer_agreement.rst",
            category="Tables",
            labels={"table": "scorer agreement"},
        ),
    params:
        spec=specs.dumps(specs.build("scorer_agreement", config)),
    conda:
        CORE_ENV
    log:
        "logs/tables/scorer_agreement.log",
    shell:
        "python -m empathy_distill.evaluation.scoring.agreement --spec {params.spec:q}"
        " --out {output:q} > {log} 2>&1"


rule rater_variance:
    input:
        train=TRAIN_CSV,
        test=TEST_CSV,
    output:
        report(
            "results/tables/rater_variance.csv",
            caption="../report/rater_variance.rst",
            category="Tables",
            labels={"table": "rater variance"},
        ),
    conda:
        CORE_ENV
    log:
        "logs/tables/rater_variance.log",
    shell:
        "python -m empathy_distill.evaluation.scoring.rater_variance --train {input.train:q}"
        " --test {input.test:q} --out {output:q} > {log} 2>&1"


rule figure_empathy_change:
    input:
        table="results/tables/empathy_scores.csv",
        scores=get_empathy_change_scores,
    output:
        figure=report(
            "results/figures/empathy_change_{scorer}.png",
            caption="../report/empathy_change.rst",
            category="Figures",
            subcategory="{scorer}",
            labels={"figure": "empathy change", "scorer": "{scorer}"},
        ),
        values="results/tables/empathy_change_{scorer}.csv",
    wildcard_constraints:
        scorer=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    params:
        spec=get_empathy_change_spec,
    conda:
        CORE_ENV
    log:
        "logs/figures/empathy_change_{scorer}.log",
    shell:
        "python -m empathy_distill.evaluation.scoring.change --spec {params.spec:q}"
        " --table {input.table:q} --values {output.values:q} --out {output.figure:q}"
        " > {log} 2>&1"
