# Pairwise judgments (both orders unless evaluation.paper_faithful) and the offline judge.
# Input functions and specs (params.spec): workflow/rules/common.smk.


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


rule judge_pair:
    input:
        unpack(judge_inputs),
    output:
        grid.JUDGMENTS,
    params:
        spec=get_judge_spec,
        scorer=get_judge_scorer_arg,
        cost_report="results/costs/judge_{judge}.csv",
    resources:
        api_calls=judge_api_calls,
    conda:
        "../../envs/train.yaml"
    log:
        "logs/judgments/{judge}/{model}__vs__{opponent}.log",
    shell:
        "python -m empathy_distill.evaluation.judge --spec {params.spec:q}"
        " --test {input.test:q} --model-answers {input.model:q}"
        " --opponent-answers {input.opponent:q} {params.scorer}"
        " --cost-report {params.cost_report:q} --out {output:q} > {log} 2>&1"
