# Input functions and specs of the rules in workflow/rules/generate.smk, which includes this file
# first. Functions that several rules files use are in workflow/rules/common.smk.

def get_answer_spec(wildcards):
    """The student, decoding settings and prompts (a change reruns only that student's sets)."""
    return specs.dumps(specs.build("answer", config, wildcards.student))
