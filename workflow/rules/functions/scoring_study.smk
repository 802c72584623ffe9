# Input functions and specs of the rules in workflow/rules/scoring_study.smk, which includes this
# file first. Functions that several rules files use are in workflow/rules/common.smk.

def get_scoring_study_reproduction_spec(wildcards):
    return specs.dumps(specs.build("scoring_study_reproduction", config))


def get_study_finetune_files(wildcards):
    """What the reproduction table reads for its fine-tuned rows (the spec's manifest)."""
    spec = specs.build("scoring_study_reproduction", config)
    return [
        path
        for entry in scoring_specs.study_finetune_manifest(spec)
        for path in (entry["model"], entry["predictions"])
    ]
