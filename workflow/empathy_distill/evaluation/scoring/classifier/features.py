"""Features of the classifiers: the study's text embedded, and 15 LLM subfactor scores.

The study embeds ``Situation: ...; Speaker Utterance: ...; Response: ...`` (it used OpenAI's
text-embedding-3-small; here the offline all-MiniLM-L6-v2 of ``evaluation/embeddings.py``).
Subfactor scores come from an LLM subfactor scorer's files (``RESPONSE_SCORES`` for the
dataset's responses, the answer set's scores file for an answer set); a response without a
valid record is dropped and counted, never imputed. The dataset has no MITI codes (the study's
third feature family), so a configuration asking for them is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ....core.errors import ConfigError
from ...embeddings import Embedder
from ...offline_judge.features import long_ratings
from ...records import AnswersError, read_jsonl

EMBEDDING = "embedding"
SUBFACTORS = "subfactors"
FEATURE_SETS = (EMBEDDING, SUBFACTORS, f"{EMBEDDING}+{SUBFACTORS}")
MITI = "miti"
N_SUBFACTORS = 15


def feature_parts(features: str, where: str = "features") -> tuple[str, ...]:
    """The parts of a feature set name (``embedding+subfactors`` -> both), or a ConfigError."""
    parts = tuple(part.strip().lower() for part in str(features).split("+"))
    if any(MITI in part for part in parts):
        raise ConfigError(
            f"{where}: {features!r} asks for MITI features, but the dataset has no MITI codes"
            f" (the study's MITI annotation is not part of it); use one of"
            f" {', '.join(FEATURE_SETS)}"
        )
    if "+".join(parts) not in FEATURE_SETS:
        raise ConfigError(
            f"{where}: unknown feature set {features!r} (expected one of {', '.join(FEATURE_SETS)})"
        )
    return parts


def study_text(situation: str, utterance: str, response: str) -> str:
    """The text the study embeds for one response."""
    return f"Situation: {situation}; Speaker Utterance: {utterance}; Response: {response}"


def response_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (dialogue, responder) of a split table, with the study's text and rating."""
    rows = long_ratings(frame)
    ids = frame["dialog_id"].astype(str)
    situation = dict(zip(ids, frame["situation"].astype(str), strict=True))
    utterance = dict(zip(ids, frame["speaker_uttr"].astype(str), strict=True))
    rows["text"] = [
        study_text(situation[d], utterance[d], r)
        for d, r in zip(rows["dialog_id"], rows["response"], strict=True)
    ]
    rows["rating"] = rows["rating"].astype(int)
    return rows


def read_subfactor_scores(path: str | Path, scorer: str, keys: Sequence[str]) -> dict:
    """key -> 15 scores of the valid records of a subfactor scorer's file (``keys``: the record
    fields that identify a row, e.g. ``("dialog_id", "responder")``)."""
    path = Path(path)
    if not path.exists():
        raise AnswersError(
            f"{path}: no scores of subfactor scorer {scorer!r}; the classifier's subfactor"
            " features are read from it (score the responses with that scorer first)"
        )
    scores = {}
    for number, record in enumerate(read_jsonl(path), 1):
        if record.get("kind") != SUBFACTORS:
            raise AnswersError(
                f"{path}: line {number} is a {record.get('kind')!r} record, expected subfactors"
            )
        if record.get("valid") and len(record.get("scores") or []) == N_SUBFACTORS:
            scores[tuple(str(record[k]) for k in keys)] = [float(s) for s in record["scores"]]
    return scores


def feature_names(parts: Sequence[str], dim: int, subfactor_names: Sequence[str]) -> list[str]:
    """Column names: ``emb_###`` per embedding dimension, then the subfactors' names."""
    names: list[str] = []
    if EMBEDDING in parts:
        names += [f"emb_{i:03d}" for i in range(dim)]
    if SUBFACTORS in parts:
        names += list(subfactor_names)
    return names


def feature_matrix(
    texts: Sequence[str],
    subfactors: Sequence[Sequence[float]] | None,
    parts: Sequence[str],
    embedder: Embedder | None,
) -> np.ndarray:
    """Rows of features in ``parts`` order; ``texts`` and ``subfactors`` aligned."""
    blocks = []
    if EMBEDDING in parts:
        if embedder is None:
            raise ValueError("embedding features need an embedder")
        blocks.append(np.asarray(embedder.encode(list(texts)), dtype=np.float64))
    if SUBFACTORS in parts:
        if subfactors is None:
            raise ValueError("subfactor features need subfactor scores")
        blocks.append(np.asarray(subfactors, dtype=np.float64).reshape(len(texts), N_SUBFACTORS))
    return np.hstack(blocks) if blocks else np.zeros((len(texts), 0))
