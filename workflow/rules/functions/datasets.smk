# Input functions and specs of the rules in workflow/rules/datasets.smk, which includes this file
# first. Functions that several rules files use are in workflow/rules/common.smk.

def set_files(kinds=TRAINING_SETS):
    """Every training set of the configured grid."""
    return [
        f"results/datasets/{dc.method}/{dc.strategy}/{kind}.json"
        for dc in data_configs()
        for kind in kinds
    ]


def teacher_outputs_for_set(wildcards):
    """Teacher rewrites an improved set is built from (three files for the pooled strategy)."""
    return [
        f"results/teacher/{wildcards.method}/{part}.jsonl"
        for part in teacher_files_for(wildcards.strategy)
    ]
