# Empathy scores of every answer set (the companion study, Xie et al., arXiv:2412.20264): each
# scorer of scoring.grid scores each answer set through the LLM layer, then one table gives the
# mean rating / per-dimension subfactor scores with bootstrap intervals. No scorer is in the
# grid by default. Input functions and specs (params.spec): workflow/rules/common.smk.


envvars: *scorer_key_envvars()


rule score_answers:
    input:
        unpack(get_score_input),
    output:
        grid.SCORES,
    wildcard_constraints:
        scorer=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
        # the answers file below results/answers/ (grid.answer_path), without .jsonl
        answers=r"teacher|[A-Za-z0-9][A-Za-z0-9_.-]*/(?:{})".format(
            "base|(?:{})/[a-z0-9_]+/(?:{})".format("|".join(grid.METHODS), "|".join(STAGES))
        ),
    params:
        spec=get_score_spec,
        cost_report="results/costs/scorer_{scorer}.csv",
        scorer_model=get_scorer_model_arg,
    resources:
        api_calls=scorer_api_calls,
    # as the judge rules': a scorer may be a local model (backend transformers imports torch)
    conda:
        "../../envs/train.yaml"
    log:
        "logs/scores/{scorer}/{answers}.log",
    shell:
        "python -m empathy_distill.evaluation.scoring.score --spec {params.spec:q}"
        " --test {input.test:q} --answers {input.answers:q}"
        " --cost-report {params.cost_report:q} {params.scorer_model} --out {output:q}"
        " > {log} 2>&1"


rule empathy_scores:
    input:
        scores=all_scores,
    output:
        report(
            "results/tables/empathy_scores.csv",
            caption="../report/empathy_scores.rst",
            category="Tables",
            labels={"table": "empathy scores"},
        ),
    params:
        spec=specs.dumps(specs.build("empathy_scores", config)),  # the manifest of its inputs
    conda:
        CORE_ENV
    log:
        "logs/tables/empathy_scores.log",
    shell:
        "python -m empathy_distill.evaluation.scoring.table --spec {params.spec:q}"
        " --out {output:q} > {log} 2>&1"
