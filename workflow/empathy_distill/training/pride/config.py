"""PRIDE's settings (``training.pride``) and the teacher/student tokenizer check.

Precedence, lowest first: :data:`DEFAULTS` < the keys of ``training.common`` PRIDE shares with
LLaMA-Factory (:data:`SHARED_KEYS`: LoRA size, learning rate, epochs, batch size...) <
``training.pride`` < the same two layers of ``training.per_student.<student>``. So a student's
PRIDE run trains with the paper's SFT hyper-parameters unless told otherwise, and the tiny and
SmolLM2 overrides (no bf16, one epoch) apply to it too.
"""

from __future__ import annotations

import copy

from ...core.errors import ConfigError
from ...core.students import builtin_name, resolve_model, resolve_revision
from ..llamafactory_config import DATASET_DIR
from .study_fields import configured_fields, study_settings

#: LLaMA-Factory keys of training.common that mean the same for PRIDE.
SHARED_KEYS = (
    "lora_rank",
    "lora_alpha",
    "lora_dropout",
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "cutoff_len",
    "seed",
    "bf16",
    "logging_steps",
)
#: PRIDE's own keys, with the values used when the config gives none.
DEFAULTS: dict = {
    # "sft" (default): the data configuration's SFT model (the student's base + its SFT adapter),
    # given the privileged prompt: it has learned the targets, the student must reach them
    # without the privileged input. A key of `students`: that (larger) model, e.g.
    # llama31_70b_instruct. "base": the student's own un-tuned base model (self-distillation, the
    # earlier default, kept as an ablation: reverse KL toward it pulls back to the base).
    "teacher": "sft",
    # null: the teacher loads whole onto the training device. "auto": its layers are spread over
    # every GPU of the job (accelerate's device map), e.g. a 70B teacher in bf16 (~141 GB) over
    # 4 x 80 GB; the job's GPUs come from `resources` below.
    "teacher_device_map": None,
    "weights": {"ce": 1.0, "reverse_kl": 1.0, "mmd": 0.1},
    # The teacher's own reasoning as privileged input (docs/pride.md): false (off), true (on,
    # REASONING_DEFAULTS) or a mapping of REASONING_DEFAULTS' keys (on, those values).
    "reasoning": False,
    # What the teacher's privileged prompt may show (a field constant over a set is dropped):
    # emotion, plutchik, sentiment, rating_human (train.csv) and the scoring study's miti,
    # subfactors (study_fields.py). None: all of them, the study's where its file is pinned.
    "privileged_fields": None,
    # precomputed (default): rule pride_teacher_outputs runs the teacher once per configuration
    # and stores its top-k log-probabilities, tail mass and MMD features; training reads them
    # and never loads the teacher. online: the teacher runs at every step of every epoch (the
    # earlier path, kept as an ablation; its job then needs the teacher's resources).
    "teacher_outputs": "precomputed",
    # precomputed: the reverse KL is taken over the teacher's top-k tokens and a tail bucket
    # (losses.reverse_kl_topk, a lower bound of the full-vocabulary KL)
    "teacher_top_k": 64,
    # response positions per example whose features enter the MMD term (and are stored,
    # precomputed): null = all up to MMD_MAX_TOKENS / batch size (256 at batch 2: every position
    # of the paper's responses); a smaller number draws a fixed seeded subset (less disk)
    "teacher_feature_tokens": None,
    "temperature": 1.0,
    "gate_start": 1.0,  # the gate schedule's first value (attention.gate_value)
    "anneal_fraction": 0.75,  # ... which reaches exactly 0 at this share of the steps
    "gate_schedule": "linear",  # linear | cosine | step
    # The learned gate tanh(alpha) starts at alpha = gate_init: 0 is closed (the block adds
    # nothing at step 0); null: no learned gate, the block open at full strength from step 0
    # (the earlier design, an ablation).
    "gate_init": 0.0,
    "attention_heads": 4,
    "lora_rank": 8,
    "lora_alpha": None,  # 2 x lora_rank, as LLaMA-Factory
    "lora_dropout": 0.0,
    "learning_rate": 5.0e-5,
    "num_train_epochs": 3.0,
    "max_steps": -1,
    "per_device_train_batch_size": 2,
    "cutoff_len": 2048,
    "seed": 42,
    "bf16": False,
    "logging_steps": 10,
}
WEIGHT_NAMES = ("ce", "reverse_kl", "mmd")
#: Not a training option: the job's Snakemake resources (training.pride.resources and
#: training.per_student.<student>.pride.resources), read by :func:`train_resources`.
RESOURCES_KEY = "resources"
#: The teacher's resources (training.pride.teacher_resources, per student too), over the PRIDE
#: ones: what rule pride_teacher_outputs (and an online PRIDE job, which loads the teacher) asks.
TEACHER_RESOURCES_KEY = "teacher_resources"
#: training.pride.teacher_outputs values.
PRECOMPUTED, ONLINE = "precomputed", "online"
#: Where rule pride_teacher_outputs writes one configuration's teacher outputs.
TEACHER_OUTPUTS_DIR = "results/pride/teacher_outputs/{student}/{method}/{strategy}"
RESOURCE_KEYS = ("gpu", "mem_mb", "runtime", "threads", "nproc_per_node")
DEVICE_MAPS = (None, "auto")
#: How the privileged path's gate schedule falls to 0 (attention.gate_value).
GATE_SCHEDULES = ("linear", "cosine", "step")
#: training.pride.teacher values that are not a key of `students`.
SFT_TEACHER, BASE_TEACHER = "sft", "base"
#: The SFT adapter of a data configuration (the train rule's output folder for stage sft).
SFT_ADAPTER_DIR = "results/models/{student}/{method}/{strategy}/sft"
#: The file every data configuration provides that PRIDE joins with its SFT set.
TRAIN_CSV = "results/data/train.csv"
#: training.pride.reasoning: true means these; a mapping overrides some of them.
REASONING_DEFAULTS = {"max_new_tokens": 160, "batch_size": 8}
#: The reasoning of every train dialogue by one teacher (a key of ``students``): one file per
#: teacher, not per data configuration, because all 21 configurations train on the same
#: dialogues and the reasoning depends only on the teacher and the dialogue.
REASONING_PATH = "results/pride/reasoning/{teacher}.jsonl"


def _layer(where: str, layer: object, keys: tuple[str, ...] | None) -> dict:
    if layer is None:
        return {}
    if not isinstance(layer, dict):
        raise ConfigError(f"config {where}: expected a mapping, got {layer!r}")
    if keys is None:
        layer = {k: v for k, v in layer.items() if k not in (RESOURCES_KEY, TEACHER_RESOURCES_KEY)}
        unknown = sorted(set(layer) - set(DEFAULTS))
        if unknown:
            raise ConfigError(
                f"config {where}: unknown PRIDE key(s) {', '.join(unknown)} "
                f"(known: {', '.join(DEFAULTS)})"
            )
        return copy.deepcopy(layer)
    return {k: copy.deepcopy(v) for k, v in layer.items() if k in keys}


def merged_options(config: dict, student: str) -> dict:
    """PRIDE's options for ``student`` after every layer, checked."""
    training = config.get("training", {})
    own = (training.get("per_student") or {}).get(student) or {}
    options = copy.deepcopy(DEFAULTS)
    for where, layer, keys in (
        ("training.common", training.get("common"), SHARED_KEYS),
        ("training.pride", training.get("pride"), None),
        (f"training.per_student.{student}.common", own.get("common"), SHARED_KEYS),
        (f"training.per_student.{student}.pride", own.get("pride"), None),
    ):
        values = _layer(where, layer, keys)
        if "weights" in values:
            values["weights"] = {**options["weights"], **(values["weights"] or {})}
        options.update(values)
    _check(options, student)
    options["reasoning"] = reasoning_options(
        options["reasoning"], f"training.pride (student {student}).reasoning"
    )
    options["privileged_fields"] = configured_fields(
        options["privileged_fields"], config, f"training.pride (student {student})"
    )
    if options["lora_alpha"] is None:
        options["lora_alpha"] = 2 * int(options["lora_rank"])
    return options


def _check(options: dict, student: str) -> None:
    where = f"training.pride (student {student})"
    weights = options["weights"]
    bad = sorted(set(weights) - set(WEIGHT_NAMES))
    if bad:
        raise ConfigError(
            f"{where}.weights: unknown term(s) {', '.join(bad)} (terms: ce, reverse_kl, mmd)"
        )
    for name, value in weights.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{where}.weights.{name}: expected a number >= 0, got {value!r}")
    if not any(weights.values()):
        raise ConfigError(f"{where}.weights: every term is 0; nothing would be trained")
    if options["teacher_device_map"] not in DEVICE_MAPS:
        raise ConfigError(
            f"{where}.teacher_device_map: expected null or 'auto', "
            f"got {options['teacher_device_map']!r}"
        )
    if options["teacher_outputs"] not in (PRECOMPUTED, ONLINE):
        raise ConfigError(
            f"{where}.teacher_outputs: expected {PRECOMPUTED!r} or {ONLINE!r}, "
            f"got {options['teacher_outputs']!r}"
        )
    feature_tokens = options["teacher_feature_tokens"]
    if feature_tokens is not None and (
        not isinstance(feature_tokens, int)
        or isinstance(feature_tokens, bool)
        or feature_tokens < 1
    ):
        raise ConfigError(
            f"{where}.teacher_feature_tokens: expected null or an integer >= 1, "
            f"got {feature_tokens!r}"
        )
    if options["gate_schedule"] not in GATE_SCHEDULES:
        raise ConfigError(
            f"{where}.gate_schedule: expected one of {', '.join(GATE_SCHEDULES)}, "
            f"got {options['gate_schedule']!r}"
        )
    gate_init = options["gate_init"]
    if gate_init is not None and (not isinstance(gate_init, int | float) or gate_init < 0):
        raise ConfigError(f"{where}.gate_init: expected null or a number >= 0, got {gate_init!r}")
    if options["teacher"] is None:
        raise ConfigError(
            f"{where}.teacher: null is no longer a teacher; use {SFT_TEACHER!r} (the default: "
            f"the configuration's SFT model), {BASE_TEACHER!r} (the student's un-tuned base "
            "model, the earlier default) or a key of students"
        )
    if not 0 < options["anneal_fraction"] <= 1:
        raise ConfigError(
            f"{where}.anneal_fraction: expected 0 < x <= 1, got {options['anneal_fraction']!r}"
        )
    for key in ("learning_rate", "num_train_epochs", "temperature"):
        if not options[key] > 0:
            raise ConfigError(f"{where}.{key}: expected a number > 0, got {options[key]!r}")
    for key in (
        "per_device_train_batch_size",
        "cutoff_len",
        "lora_rank",
        "attention_heads",
        "teacher_top_k",
    ):
        if not isinstance(options[key], int) or options[key] < 1:
            raise ConfigError(f"{where}.{key}: expected an integer >= 1, got {options[key]!r}")


def reasoning_options(value: object, where: str) -> dict | None:
    """``training.pride.reasoning`` as the job sees it: None (off) or the generation settings.

    Accepted: false/null (off), true (on, :data:`REASONING_DEFAULTS`), or a mapping of those keys
    (on; integers >= 1). Anything else is refused naming ``where``.
    """
    if value is None or value is False:
        return None
    if value is True:
        return dict(REASONING_DEFAULTS)
    known = ", ".join(REASONING_DEFAULTS)
    if not isinstance(value, dict):
        raise ConfigError(
            f"config {where}: expected true, false or a mapping of {known}, got {value!r}"
        )
    unknown = sorted(set(value) - set(REASONING_DEFAULTS))
    if unknown:
        raise ConfigError(f"config {where}: unknown key(s) {', '.join(unknown)} (known: {known})")
    for key, number in value.items():
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise ConfigError(f"config {where}.{key}: expected an integer >= 1, got {number!r}")
    return {**REASONING_DEFAULTS, **value}


def reasoning_teachers(config: dict) -> dict[str, tuple[str, dict]]:
    """Teachers that write reasoning: teacher key -> (the first grid student it teaches with
    reasoning on, the reasoning settings). Students sharing a teacher must agree on the
    settings: the teacher writes one reasoning file for all of them."""
    teachers: dict[str, tuple[str, dict]] = {}
    students = config.get("students", {})
    for student in config.get("grid", {}).get("students", []):
        if student not in students:
            continue
        options = merged_options(config, student)
        if options["reasoning"] is None:
            continue
        teacher = teacher_of(config, student, options)
        if teacher in teachers and teachers[teacher][1] != options["reasoning"]:
            first, settings = teachers[teacher]
            raise ConfigError(
                f"config training.pride.reasoning: students {first} and {student} share the "
                f"teacher {teacher!r} but ask for different reasoning settings ({settings} and "
                f"{options['reasoning']}); the teacher writes one reasoning file for both"
            )
        teachers.setdefault(teacher, (student, options["reasoning"]))
    return teachers


def reasoning_spec(config: dict, teacher: str) -> dict:
    """Everything that shapes teacher ``teacher``'s reasoning file (rule pride_reasoning)."""
    teachers = reasoning_teachers(config)
    if teacher not in teachers:
        raise ConfigError(
            f"config training.pride.reasoning: no student of the grid has teacher {teacher!r} "
            f"with reasoning on (teachers with reasoning: {', '.join(teachers) or 'none'})"
        )
    student, reasoning = teachers[teacher]
    options = merged_options(config, student)
    entry = config["students"][teacher]
    revision = resolve_revision(entry)
    return {
        "teacher": teacher,
        # the requests' model: the config's name (and revision), as the LLM cache keys it
        "model": entry["model"] + (f"@{revision}" if revision else ""),
        "model_path": resolve_model(entry),
        "revision": revision,
        "dtype": "bfloat16" if options["bf16"] else None,
        "device_map": options["teacher_device_map"],
        **reasoning,
        "cache_dir": config["llm"]["cache_dir"],
        "price_table": config["llm"]["price_table"],
    }


def train_resources(config: dict, student: str) -> dict:
    """Resources of ``student``'s PRIDE training jobs: training.resources <
    training.pride.resources < training.per_student.<student>.resources <
    training.per_student.<student>.pride.resources; with ``teacher_outputs: online`` (the job
    loads the teacher) :func:`teacher_resources`.

    With precomputed teacher outputs (the default) the training job loads only the student, so
    it asks for the student's GPUs; the teacher's (4 for a 70B teacher) move to rule
    pride_teacher_outputs.
    """
    if merged_options(config, student)["teacher_outputs"] == ONLINE:
        return teacher_resources(config, student)
    return _resources(config, student, (RESOURCES_KEY,))


def teacher_resources(config: dict, student: str) -> dict:
    """Resources of the jobs that load ``student``'s PRIDE teacher (rule pride_teacher_outputs,
    pride_reasoning, an online PRIDE job): the PRIDE layers of :func:`train_resources`, each
    followed by its ``teacher_resources`` layer. Why a layer of its own: a teacher larger than
    the student (70B for an 8B) needs more GPUs, memory and time than the student."""
    return _resources(config, student, (RESOURCES_KEY, TEACHER_RESOURCES_KEY))


def _resources(config: dict, student: str, pride_keys: tuple[str, ...]) -> dict:
    training = config.get("training", {})
    own = (training.get("per_student") or {}).get(student) or {}
    layers = [("training.resources", training.get("resources"))]
    layers += [(f"training.pride.{k}", (training.get("pride") or {}).get(k)) for k in pride_keys]
    layers.append((f"training.per_student.{student}.resources", own.get("resources")))
    layers += [
        (f"training.per_student.{student}.pride.{k}", (own.get("pride") or {}).get(k))
        for k in pride_keys
    ]
    merged: dict = {}
    for where, layer in layers:
        if layer is None:
            continue
        if not isinstance(layer, dict):
            raise ConfigError(f"config {where}: expected a mapping, got {layer!r}")
        for key, value in layer.items():
            if key not in RESOURCE_KEYS:
                raise ConfigError(
                    f"config {where}.{key}: not a resource (known: {', '.join(RESOURCE_KEYS)})"
                )
            low = 0 if key == "gpu" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(
                    f"config {where}.{key}: expected an integer >= {low}, got {value!r}"
                )
        merged.update(layer)
    return merged


def teacher_of(config: dict, student: str, options: dict | None = None) -> str:
    """The key of ``student``'s PRIDE teacher model under ``students`` (the student itself for
    the ``sft`` and ``base`` teachers, whose weights are the student's base model's), checked at
    the config level: defined, and plausibly of the student's tokenizer.

    The planning check cannot read tokenizer files (a dry run downloads nothing; built-in models
    do not exist yet): it refuses two different built-in models (the tiny model's vocabulary is
    trained on the dataset, SmolLM2's is its own) and two different chat templates (a different
    template means another model family).
    The tokenizer files are compared at job start (:func:`.tokenizers.check_tokenizer_pair`).
    """
    students = config.get("students", {})
    options = merged_options(config, student) if options is None else options
    teacher = options["teacher"]
    if teacher in (SFT_TEACHER, BASE_TEACHER):
        return student  # the student's own model: with its SFT adapter, or without
    if teacher not in students:
        raise ConfigError(
            f"config training.pride.teacher: {teacher!r} is not defined under students "
            f"(student {student}; defined: {', '.join(students)})"
        )
    if teacher == student:
        return teacher
    mine, theirs = students[student], students[teacher]
    problem = None
    builtins = (builtin_name(mine), builtin_name(theirs))
    if all(builtins) and builtins[0] != builtins[1]:
        problem = f"models {mine['model']} and {theirs['model']} have different tokenizers"
    elif mine["template"] != theirs["template"]:
        problem = (
            f"chat templates {mine['template']!r} and {theirs['template']!r} differ (another "
            "model family)"
        )
    if problem:
        raise ConfigError(
            f"config training.pride.teacher (student {student}): teacher {teacher!r} cannot "
            f"share the student's tokenizer: {problem}; the reverse-KL term compares token "
            "distributions, so pair models of one family"
        )
    return teacher


def validate(config: dict) -> None:
    """Start-up check of every training.pride key, before any job: for the grid's students the
    options, resources and teacher (pairing included); for the other students with settings
    under training.per_student, their keys (they train nothing, so no teacher is paired)."""
    training = config.get("training", {})
    students = config.get("students", {})
    in_grid = list(config.get("grid", {}).get("students", []))
    for student in dict.fromkeys([*in_grid, *(training.get("per_student") or {})]):
        if student not in students:
            continue  # the schema and the grid name an undefined student themselves
        options = merged_options(config, student)
        if student in in_grid:
            teacher_of(config, student, options)
        train_resources(config, student)
        teacher_resources(config, student)
    reasoning_teachers(config)


def build_settings(config: dict, student: str, method: str, strategy: str) -> dict:
    """The whole spec of one PRIDE job (paths relative to the workflow's directory)."""
    students = config.get("students", {})
    if student not in students:
        raise ConfigError(
            f"config students: no student {student!r} (configured: {', '.join(students)})"
        )
    options = merged_options(config, student)
    teacher = teacher_of(config, student, options)
    mode = options.pop("teacher")
    adapter = None
    if mode == SFT_TEACHER:
        adapter = SFT_ADAPTER_DIR.format(student=student, method=method, strategy=strategy)
    reasoning = options.pop("reasoning")
    if reasoning is not None:  # only then: a job without reasoning keeps its spec (no rerun)
        options["reasoning"] = {**reasoning, "file": REASONING_PATH.format(teacher=teacher)}
    study = study_settings(options["privileged_fields"], config)
    if study is not None:  # the pinned study files the teacher's prompt is built from
        options["study_data"] = study
    weights = options["weights"]
    if options["teacher_outputs"] == PRECOMPUTED and (weights["reverse_kl"] or weights["mmd"]):
        options["teacher_outputs_dir"] = TEACHER_OUTPUTS_DIR.format(
            student=student, method=method, strategy=strategy
        )
    elif options["teacher_outputs"] == ONLINE:  # the reverse KL over the whole vocabulary
        del options["teacher_top_k"]
    return {
        "trainer": "pride",
        "student": student,
        "model_name_or_path": resolve_model(students[student]),
        "model_revision": resolve_revision(students[student]),
        "template": students[student]["template"],
        "teacher": teacher,
        # sft: the student's model with the configuration's SFT adapter; base: without; model:
        # the teacher key's own model
        "teacher_mode": mode if mode in (SFT_TEACHER, BASE_TEACHER) else "model",
        "teacher_model": resolve_model(students[teacher]),
        # the teacher's LoRA adapter, merged into its own copy of the base model (sft teacher)
        "teacher_adapter": adapter,
        "teacher_revision": resolve_revision(students[teacher]),
        "teacher_template": students[teacher]["template"],
        "dataset": f"{DATASET_DIR.format(method=method, strategy=strategy)}/sft.json",
        "train_csv": TRAIN_CSV,
        **options,
    }
