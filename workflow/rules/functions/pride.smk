# Input functions and specs of the rules in workflow/rules/pride.smk, which includes this file
# first. Functions that several rules files use are in workflow/rules/common.smk.

def pride_teacher_files(wildcards):
    """What loading ``wildcards.student``'s PRIDE teacher reads: the teacher's files when the
    workflow builds it (a builtin: model) or fetches it; for the sft teacher, the
    configuration's SFT adapter (so the teacher runs after SFT)."""
    files = {}
    options = pride_config.merged_options(config, wildcards.student)
    teacher = pride_config.teacher_of(config, wildcards.student, options)
    if teacher != wildcards.student:
        files["teacher_model"] = model_files(config["students"][teacher])
    if options["teacher"] == pride_config.SFT_TEACHER:
        adapter = pride_config.SFT_ADAPTER_DIR.format(
            student=wildcards.student, method=wildcards.method, strategy=wildcards.strategy
        )
        files["teacher_adapter"] = [
            f"{adapter}/adapter_model.safetensors",
            f"{adapter}/adapter_config.json",
        ]
    if options["reasoning"] is not None:
        files["reasoning"] = pride_config.REASONING_PATH.format(teacher=teacher)
    return files


def pride_teacher_outputs_dir(wildcards):
    """The folder of the job's precomputed teacher outputs; None when the teacher runs online
    (training.pride.teacher_outputs) or no term needs it."""
    settings = pride_config.build_settings(
        config, wildcards.student, wildcards.method, wildcards.strategy
    )
    return settings.get("teacher_outputs_dir")


def pride_study_files(wildcards):
    """The scoring study's pinned files the teacher's privileged prompt is built from
    (training.pride.privileged_fields: miti, subfactors); rule download_scoring_study makes them."""
    settings = pride_config.build_settings(
        config, wildcards.student, wildcards.method, wildcards.strategy
    )
    return [entry["file"] for entry in (settings.get("study_data") or {}).values()]


def get_pride_train_input(wildcards):
    """What every training job reads (get_train_input); with precomputed teacher outputs, those
    (rule pride_teacher_outputs) and the reasoning file the examples are encoded with, no
    teacher; online, what loading the teacher reads (pride_teacher_files)."""
    files = get_train_input(wildcards)
    files["study"] = pride_study_files(wildcards)
    teacher = pride_teacher_files(wildcards)
    folder = pride_teacher_outputs_dir(wildcards)
    if folder is None:
        return {**files, **teacher}
    files["teacher_outputs"] = f"{folder}/manifest.json"
    if "reasoning" in teacher:
        files["reasoning"] = teacher["reasoning"]
    return files


def get_pride_teacher_outputs_input(wildcards):
    """The configuration's SFT set (checked for leakage), train.csv, the student's files (its
    tokenizer; the weights of the sft and base teachers) and the teacher's."""
    data = f"results/datasets/{wildcards.method}/{wildcards.strategy}"
    return {
        "data": f"{data}/sft.json",
        "leakage": f"{data}/leakage_check.ok",
        "train": TRAIN_CSV,
        "model": model_files(config["students"][wildcards.student]),
        "study": pride_study_files(wildcards),
        **pride_teacher_files(wildcards),
    }


def get_pride_teacher_outputs_spec(wildcards):
    """Everything that shapes the teacher's stored outputs (a change recomputes them)."""
    return specs.dumps(
        specs.build(
            "pride_teacher_outputs",
            config,
            wildcards.student,
            wildcards.method,
            wildcards.strategy,
        )
    )


def get_pride_teacher_resource(key):
    """Resource ``key`` of a job that loads the PRIDE teacher (teacher_resources over the PRIDE
    resources: 4 GPUs for the Llama student's 70B teacher)."""

    def get_pride_teacher_resource_value(wildcards):
        return pride_config.teacher_resources(config, wildcards.student)[key]

    return get_pride_teacher_resource_value


def get_pride_reasoning_spec(wildcards):
    """Everything that shapes the teacher's reasoning file (a change rewrites it; the cache
    answers what was asked before)."""
    return specs.dumps(specs.build("pride_reasoning", config, wildcards.teacher))


def get_pride_reasoning_input(wildcards):
    """The train split and, for a built-in teacher, its files (rule build_*_student)."""
    files = {"train": TRAIN_CSV}
    files["model"] = model_files(config["students"][wildcards.teacher])
    return files


def get_pride_reasoning_resource(key):
    """Resource ``key`` of the reasoning job: the teacher resources of the first grid student
    this teacher teaches with reasoning on (its teacher-outputs jobs load the same teacher)."""

    def get_pride_reasoning_resource_value(wildcards):
        student, _ = pride_config.reasoning_teachers(config)[wildcards.teacher]
        return pride_config.teacher_resources(config, student)[key]

    return get_pride_reasoning_resource_value


def get_pride_resource(key):
    """Resource ``key`` of a PRIDE training job (training.resources < training.pride.resources <
    the student's resources < the student's pride.resources; online, the teacher's)."""

    def get_pride_resource_value(wildcards):
        return pride_config.train_resources(config, wildcards.student)[key]

    return get_pride_resource_value
