# Empathy scores of every answer set (the companion study, Xie et al., arXiv:2412.20264): one
# score_answers job per scorer of scoring.grid scores every answer set (through the LLM layer, or
# its fitted local model) and writes each set's scores file; then one table gives the mean
# rating / per-dimension subfactor scores with bootstrap intervals. Input functions and specs
# (params.spec): functions/scoring.smk; the scorer's model files and arguments, which
# score_responses uses too: common.smk.

# Input functions and specs of these rules.
include: "functions/scoring.smk"


envvars: *scorer_key_envvars()


# One job per scorer (covering every answer set of the grid): the LLM cache is the unit of
# resume, so a killed or rerun job pays only what is not cached; a local model loads once.
rule score_answers:
    input:
        unpack(get_score_input),
    output:
        score_outputs(),
    wildcard_constraints:
        scorer=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
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
        "logs/scores/{scorer}/answer_sets.log",
    benchmark:
        "results/benchmarks/scores/{scorer}.tsv"
    shell:
        "python -m empathy_distill.evaluation.scoring.score --spec {params.spec:q}"
        " --test {input.test:q} --cost-report {params.cost_report:q} {params.scorer_model}"
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
