# Input functions and specs of the rules in workflow/rules/models.smk, which includes this file
# first. Functions that several rules files use are in workflow/rules/common.smk.

def get_fetch_spec(wildcards):
    """The Hub model and its revision (the fetch_model job)."""
    return specs.dumps(specs.build("fetch_model", config, wildcards.repo))
