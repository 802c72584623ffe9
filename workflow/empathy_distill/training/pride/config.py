"""PRIDE's settings (``training.pride``) and the teacher/student tokenizer check.

Precedence, lowest first: :data:`DEFAULTS` < the keys of ``training.common`` PRIDE shares with
LLaMA-Factory (:data:`SHARED_KEYS`: LoRA size, learning rate, epochs, batch size...) <
``training.pride`` < the same two layers of ``training.per_student.<student>``. So a student's
PRIDE run trains with the paper's SFT hyper-parameters unless told otherwise, and the tiny and
SmolLM2 overrides (no bf16, one epoch) apply to it too.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

from ...core.errors import ConfigError, TrainingError
from ..llamafactory_config import DATASET_DIR
from ..students import resolve_model, resolve_revision

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
    "teacher": None,  # a key of `students`; None: the student's own base model (self-distillation)
    "weights": {"ce": 1.0, "reverse_kl": 1.0, "mmd": 0.1},
    "temperature": 1.0,
    "gate_start": 1.0,
    "anneal_fraction": 0.75,
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
#: The file every data configuration provides that PRIDE joins with its SFT set.
TRAIN_CSV = "results/data/train.csv"


def _layer(where: str, layer: object, keys: tuple[str, ...] | None) -> dict:
    if layer is None:
        return {}
    if not isinstance(layer, dict):
        raise ConfigError(f"config {where}: expected a mapping, got {layer!r}")
    if keys is None:
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
    if not 0 < options["anneal_fraction"] <= 1:
        raise ConfigError(
            f"{where}.anneal_fraction: expected 0 < x <= 1, got {options['anneal_fraction']!r}"
        )
    for key in ("learning_rate", "num_train_epochs", "temperature"):
        if not options[key] > 0:
            raise ConfigError(f"{where}.{key}: expected a number > 0, got {options[key]!r}")
    for key in ("per_device_train_batch_size", "cutoff_len", "lora_rank", "attention_heads"):
        if not isinstance(options[key], int) or options[key] < 1:
            raise ConfigError(f"{where}.{key}: expected an integer >= 1, got {options[key]!r}")


def build_settings(config: dict, student: str, method: str, strategy: str) -> dict:
    """The whole spec of one PRIDE job (paths relative to the workflow's directory)."""
    students = config.get("students", {})
    if student not in students:
        raise ConfigError(
            f"config students: no student {student!r} (configured: {', '.join(students)})"
        )
    options = merged_options(config, student)
    teacher = options.pop("teacher") or student
    if teacher not in students:
        raise ConfigError(
            f"config training.pride.teacher: {teacher!r} is not defined under students "
            f"(defined: {', '.join(students)})"
        )
    return {
        "trainer": "pride",
        "student": student,
        "model_name_or_path": resolve_model(students[student]),
        "model_revision": resolve_revision(students[student]),
        "template": students[student]["template"],
        "teacher": teacher,
        "teacher_model": resolve_model(students[teacher]),
        "teacher_revision": resolve_revision(students[teacher]),
        "teacher_template": students[teacher]["template"],
        "dataset": f"{DATASET_DIR.format(method=method, strategy=strategy)}/sft.json",
        "train_csv": TRAIN_CSV,
        **options,
    }


def _tokenizer_file(model: str, revision: str | None, name: str) -> Path | None:
    """``name`` of a local model folder, or fetched alone from the Hub (no weights)."""
    local = Path(model)
    if local.is_dir():
        path = local / name
        return path if path.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(model, name, revision=revision))
    except Exception:  # an absent file or no access: the caller names both models
        return None


def tokenizer_fingerprint(model: str, revision: str | None = None) -> str:
    """A digest of the vocabulary (tokens -> ids, added tokens), or of tokenizer.model."""
    path = _tokenizer_file(model, revision, "tokenizer.json")
    if path is not None:
        data = json.loads(path.read_text(encoding="utf-8"))
        vocab = data.get("model", {}).get("vocab")
        added = sorted((t["id"], t["content"]) for t in data.get("added_tokens", []))
        payload = json.dumps([vocab, added], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()
    path = _tokenizer_file(model, revision, "tokenizer.model")
    if path is not None:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    raise TrainingError(f"{model}: neither tokenizer.json nor tokenizer.model found")


def check_tokenizer_pair(settings: dict) -> None:
    """Refuse a teacher whose vocabulary differs from the student's, before any model loads.

    The reverse-KL term compares the two models' distributions token by token, so both must
    split text into the same tokens with the same ids.
    """
    student = (settings["model_name_or_path"], settings.get("model_revision"))
    teacher = (settings["teacher_model"], settings.get("teacher_revision"))
    if student == teacher:
        return
    if tokenizer_fingerprint(*student) != tokenizer_fingerprint(*teacher):
        raise ConfigError(
            f"training.pride: teacher {settings['teacher']!r} ({teacher[0]}) and student "
            f"{settings['student']!r} ({student[0]}) do not share a tokenizer (their vocabularies "
            "differ); the reverse-KL term compares token distributions, so pair models of one "
            "family (e.g. Llama-3.1-70B-Instruct with Llama-3.1-8B)"
        )
