"""PRIDE's job-start check that teacher and student share one tokenizer (token ids, vocabulary).

WHY its own module: it reads the tokenizer files of fetched Hub models from the hub cache
(:func:`empathy_distill.core.hub_fetch.cached_snapshot`, huggingface_hub), which the planning code
of :mod:`.config` must not import. The job runs offline: a Hub model that was not fetched, or a
fetch refused by the Hub (401/403), is reported as such, naming the model and its licence page,
never as a model without a tokenizer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ...core.errors import ConfigError, TrainingError
from ...core.hub import is_hub_model
from ...core.hub_fetch import cached_snapshot


def _tokenizer_file(model: str, revision: str | None, name: str) -> Path | None:
    """``name`` in a local model folder or in the fetched snapshot of a Hub model; None when the
    model has no such file. Raises WeightsError when a Hub model is not in the cache."""
    # a fetched snapshot holds every tokenizer* file of the repository
    folder = cached_snapshot(model, revision) if is_hub_model(model) else Path(model)
    path = folder / name
    return path if path.is_file() else None


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
