# Fine-tuned rating scorers (scoring.scorers.<name>.finetune; the companion study's fine-tuned
# gpt-4o-mini, arXiv:2412.20264): the train split's responses with their human ratings become
# chat examples of the scorer's own prompt, the scorer's base model is fine-tuned on them, and
# model.json names the model score_answers then calls. Specs: functions/scoring_finetune.smk;
# input and resource functions, which scoring_study_finetune.smk uses too: common.smk.

# Input functions and specs of these rules.
include: "functions/scoring_finetune.smk"


rule scorer_train_data:
    input:
        train=SCORER_TRAIN_CSV,
        # read only to refuse its dialogues: a scorer never trains on the split it is tested on
        test=TEST_CSV,
        prompts=config["scoring"]["prompts"],
    output:
        train="results/scorers/{scorer}/train.jsonl",
        index="results/scorers/{scorer}/train_index.csv",
        info="results/scorers/{scorer}/dataset_info.json",
    wildcard_constraints:
        scorer=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    params:
        spec=get_scorer_train_data_spec,
    conda:
        CORE_ENV
    log:
        "logs/scorers/{scorer}/train_data.log",
    shell:
        "python -m empathy_distill.evaluation.scoring.train_data --spec {params.spec:q}"
        " --train {input.train:q} --test {input.test:q} --out {output.train:q}"
        " --index {output.index:q} --dataset-info {output.info:q} > {log} 2>&1"


rule finetune_scorer:
    # backend transformers: LoRA SFT through LLaMA-Factory, merged into a plain model under
    # results/scorers/{scorer}/model/; backend openai: the OpenAI fine-tuning API.
    input:
        unpack(get_finetune_scorer_input),
    output:
        model="results/scorers/{scorer}/model.json",
    wildcard_constraints:
        scorer=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    params:
        module=get_finetune_scorer_module,
        spec=get_finetune_scorer_spec,
    resources:
        gpu=get_finetune_scorer_resource("gpu"),
        mem_mb=get_finetune_scorer_resource("mem_mb"),
        runtime=get_finetune_scorer_resource("runtime"),
        api_calls=get_finetune_scorer_api_calls,
    threads: get_finetune_scorer_resource("threads")
    conda:
        "../../envs/train.yaml"
    log:
        "logs/scorers/{scorer}/finetune.log",
    benchmark:
        "results/benchmarks/scorers/{scorer}/finetune.tsv"
    shell:
        "python -m {params.module} --spec {params.spec:q} --train {input.train:q}"
        " --out {output.model:q} --gpus {resources.gpu} > {log} 2>&1"
