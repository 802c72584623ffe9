# Input functions and specs of the rules in workflow/rules/emotion.smk, which includes this file
# first. Functions that several rules files use are in workflow/rules/common.smk.

def get_emotion_answers_input(wildcards):
    """Test split, the student's model files and the adapter files of every trained model of
    the student (the answer jobs' inputs less their prompts)."""
    spec = specs.build("emotion_answers", config, wildcards.student)
    adapters = [grid.adapter_dir(tag) for tag in spec["answer_tags"]]
    return {
        "test": TEST_CSV,
        "model": student_model_files(wildcards),
        "adapters": [f"{a}/{name}" for a in adapters if a for name in grid.ADAPTER_FILES],
    }


def get_emotion_answers_spec(wildcards):
    """The student, its weights' precision, the labels, the question and its answer sets."""
    return specs.dumps(specs.build("emotion_answers", config, wildcards.student))


def get_emotion_accuracy_input(wildcards):
    """Test split (the gold emotions) and every emotion file of the rule's spec manifest (one
    per student)."""
    spec = specs.build("emotion_accuracy", config)
    files = dict.fromkeys(e["path"] for e in evaluation_specs.emotion_manifest(spec))
    return {"test": TEST_CSV, "emotion": list(files)}
