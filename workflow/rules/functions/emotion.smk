# Input functions and specs of the rules in workflow/rules/emotion.smk, which includes this file
# first. Functions that several rules files use are in workflow/rules/common.smk.

def get_emotion_answers_input(wildcards):
    """The answer job's inputs less its prompts (test split, model files, adapter)."""
    files = get_answer_input(wildcards)
    del files["prompts"]
    return files


def get_emotion_answers_spec(wildcards):
    """The student, its weights' precision, the labels and the question."""
    return specs.dumps(specs.build("emotion_answers", config, wildcards.student))


def get_emotion_accuracy_input(wildcards):
    """Test split (the gold emotions) and every emotion file of the rule's spec manifest."""
    spec = specs.build("emotion_accuracy", config)
    return {"test": TEST_CSV, "emotion": [e["path"] for e in evaluation_specs.emotion_manifest(spec)]}
