# Pairwise judgments (both orders unless evaluation.paper_faithful) and the offline judge.
# Input functions and specs (params.spec): functions/judge.smk. Resume: a judge job sends its
# requests through the LLM cache, so a killed or rerun job pays only what is not cached.

# Input functions and specs of these rules.
include: "functions/judge.smk"


envvars: *judge_key_envvars()


rule train_offline_judge:
    input:
        train=TRAIN_CSV,
        test=TEST_CSV,
    output:
        model=judges.SCORERS[judges.OFFLINE].model_file,
        agreement=judges.SCORERS[judges.OFFLINE].agreement_file,
    params:
        spec=get_offline_judge_spec(),
    threads: 2
    conda:
        "../../envs/train.yaml"
    log:
        "logs/judges/offline/train.log",
    shell:
        "python -m empathy_distill.evaluation.offline_judge.cli --spec {params.spec:q}"
        " --train {input.train:q} --test {input.test:q} --model-out {output.model:q}"
        " --agreement-out {output.agreement:q} > {log} 2>&1"


# One job per judge and comparison kind (rule judge_<kind>, e.g. judge_vs_base): it judges
# every pair of that kind and writes each pair's file (grid.JUDGMENTS), then the record of them
# (grid.JUDGE_JOB_FILES), which the table rules take as input. Outputs are a list fixed by the
# config, so each kind is its own rule, defined in this loop.
for _kind in JUDGED_PAIRS:

    rule:
        name:
            grid.judge_rule(_kind)
        localrule: True  # an API rule: runs on the submit host on a cluster (see the Snakefile)
        input:
            unpack(judge_inputs(_kind)),
        output:
            pairs=judge_outputs(_kind),
            files=grid.judge_job_files_path("{judge}", _kind),
        params:
            spec=get_judge_spec(_kind),
            scorer=get_judge_scorer_arg,
            cost_report="results/costs/judge_{judge}.csv",
        resources:
            api_calls=judge_api_calls,
        conda:
            "../../envs/train.yaml"
        log:
            f"logs/judgments/{{judge}}/{_kind}.log",
        shell:
            "python -m empathy_distill.evaluation.judge --spec {params.spec:q}"
            " --test {input.test:q} {params.scorer}"
            " --cost-report {params.cost_report:q} --files-out {output.files:q} > {log} 2>&1"
