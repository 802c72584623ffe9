# Input functions and specs of the rules in workflow/rules/scoring_finetune.smk, which includes
# this file first. Functions that several rules files use are in workflow/rules/common.smk.

def get_scorer_train_data_spec(wildcards):
    return specs.dumps(specs.build("scorer_train_data", config, wildcards.scorer))


def get_finetune_scorer_spec(wildcards):
    """Everything that shapes the fine-tuned model (a change retrains it)."""
    return specs.dumps(specs.build("finetune_scorer", config, wildcards.scorer))
