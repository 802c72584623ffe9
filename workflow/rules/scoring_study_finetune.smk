# The study's fine-tuning protocol (arXiv:2412.20264, its finetune-gpt-40-mini.py) beside the
# paper's split: each scorer of scoring.study_protocol.scorers is fine-tuned on the 80% of the
# study's balanced set (the classifier table's split) for 4 epochs (OpenAI: lr multiplier 0.5)
# and rates the other 20%; rule scoring_study_reproduction adds its accuracy to the table.
# Logic: empathy_distill/evaluation/scoring/study_finetune_*.py; input functions and specs:
# functions/scoring_study_finetune.smk (the fine-tune's module and resources,
# shared with scoring_finetune.smk: common.smk).

# Input functions and specs of these rules.
include: "functions/scoring_study_finetune.smk"


rule study_scorer_data:
    input:
        balanced=study_file(study_grid.BALANCED_FILE),
        prompts=config["scoring"]["prompts"],
    output:
        train="results/scorers/{scorer}/study_balanced/train.jsonl",
        index="results/scorers/{scorer}/study_balanced/train_index.csv",
        info="results/scorers/{scorer}/study_balanced/dataset_info.json",
        test="results/scorers/{scorer}/study_balanced/test.csv",
    wildcard_constraints:
        scorer=study_scorer_pattern(),
    params:
        spec=get_study_scorer_data_spec,
    conda:
        CORE_ENV
    log:
        "logs/scorers/{scorer}/study_balanced/train_data.log",
    shell:
        "python -m empathy_distill.evaluation.scoring.study_finetune_data --spec {params.spec:q}"
        " --balanced {input.balanced:q} --out {output.train:q} --index {output.index:q}"
        " --dataset-info {output.info:q} --test-out {output.test:q} > {log} 2>&1"


rule finetune_study_scorer:
    # the module of rule finetune_scorer (one per backend), with the study protocol's spec
    input:
        unpack(get_finetune_study_scorer_input),
    output:
        model="results/scorers/{scorer}/study_balanced/model.json",
    wildcard_constraints:
        scorer=study_scorer_pattern(),
    params:
        module=get_finetune_scorer_module,
        spec=get_finetune_study_scorer_spec,
    resources:
        gpu=get_finetune_scorer_resource("gpu"),
        mem_mb=get_finetune_scorer_resource("mem_mb"),
        runtime=get_finetune_scorer_resource("runtime"),
        api_calls=get_finetune_scorer_api_calls,
    threads: get_finetune_scorer_resource("threads")
    conda:
        "../../envs/train.yaml"
    log:
        "logs/scorers/{scorer}/study_balanced/finetune.log",
    benchmark:
        "results/benchmarks/scorers/{scorer}/study_balanced/finetune.tsv"
    shell:
        "python -m {params.module} --spec {params.spec:q} --train {input.train:q}"
        " --out {output.model:q} --gpus {resources.gpu} > {log} 2>&1"


rule score_study_test:
    input:
        test="results/scorers/{scorer}/study_balanced/test.csv",
        scorer_model="results/scorers/{scorer}/study_balanced/model.json",
        prompts=config["scoring"]["prompts"],
    output:
        "results/scorers/{scorer}/study_balanced/predictions.jsonl",
    wildcard_constraints:
        scorer=study_scorer_pattern(),
    params:
        spec=get_score_study_test_spec,
        cost_report="results/costs/scorer_{scorer}.csv",
    resources:
        api_calls=scorer_api_calls,
    # as score_answers: a local scorer imports torch
    conda:
        "../../envs/train.yaml"
    log:
        "logs/scorers/{scorer}/study_balanced/score_test.log",
    benchmark:
        "results/benchmarks/scorers/{scorer}/study_balanced/score_test.tsv"
    shell:
        "python -m empathy_distill.evaluation.scoring.study_finetune_score --spec {params.spec:q}"
        " --test {input.test:q} --scorer-model {input.scorer_model:q}"
        " --cost-report {params.cost_report:q} --out {output:q} > {log} 2>&1"
