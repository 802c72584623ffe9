# Input functions and specs of the rules in workflow/rules/scoring_study_finetune.smk, which
# includes this file first. Functions that several rules files use are in
# workflow/rules/common.smk.

def study_scorer_pattern():
    """Regex of the scorers of scoring.study_protocol (one matching nothing when none)."""
    names = study_protocol.scorers(config)
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


def get_study_scorer_data_spec(wildcards):
    return specs.dumps(specs.build("study_scorer_data", config, wildcards.scorer))


def get_finetune_study_scorer_spec(wildcards):
    """Everything that shapes the model tuned on the study's 80% (a change retrains it)."""
    return specs.dumps(specs.build("finetune_study_scorer", config, wildcards.scorer))


def get_finetune_study_scorer_input(wildcards):
    """As finetune_scorer's, from the study protocol's folder."""
    folder = study_protocol.FOLDER.format(scorer=wildcards.scorer)
    files = {"train": f"{folder}/train.jsonl"}
    if config["scoring"]["scorers"][wildcards.scorer]["backend"] == "transformers":
        files["info"] = f"{folder}/dataset_info.json"
        files["model"] = get_finetune_scorer_input(wildcards)["model"]
    return files


def get_score_study_test_spec(wildcards):
    return specs.dumps(specs.build("score_study_test", config, wildcards.scorer))
