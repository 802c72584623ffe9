# Input functions and specs of the rules in workflow/rules/reference_metrics.smk, which includes
# this file first. Functions that several rules files use are in workflow/rules/common.smk.

def get_reference_metrics_input(wildcards):
    """Test split (the human responses) and every answers file of the rule's spec manifest."""
    spec = specs.build("reference_metrics", config)
    return {"test": TEST_CSV, "answers": [e["path"] for e in evaluation_specs.answer_manifest(spec)]}
