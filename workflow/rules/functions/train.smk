# Input functions and specs of the rules in workflow/rules/train.smk, which includes this file
# first. Functions that several rules files use are in workflow/rules/common.smk.

def train_resources(student):
    """Resources of a training job: training.resources, then the student's own overrides."""
    own = config["training"]["per_student"].get(student, {}).get("resources", {})
    return {**config["training"]["resources"], **own}


def get_smollm2_generation(wildcards):
    """Decoding defaults written into the built SmolLM2 (a change rebuilds it)."""
    generation = lf_students.builtin_generation_config(config["students"], "smollm2_135m")
    return json.dumps(generation, sort_keys=True)


def get_train_resource(key):
    """Resource ``key`` of a training job (training.resources, then the student's overrides)."""

    def get_train_resource_value(wildcards):
        return train_resources(wildcards.student)[key]

    return get_train_resource_value
