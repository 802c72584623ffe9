"""Features of the classifiers: the study's text embedded, and 15 LLM subfactor scores.

The study embeds ``Situation: ...; Speaker Utterance: ...; Response: ...`` (it used OpenAI's
text-embedding-3-small; here the offline all-MiniLM-L6-v2 of ``evaluation/embeddings.py``).
Subfactor scores come from a subfactor scorer's files (``RESPONSE_SCORES`` for the
dataset's responses, the answer set's scores file for an answer set); a response without a
valid record is dropped and counted, never imputed. The dataset has no MITI codes (the study's
third feature family): they come from the offline MITI tagger (``scoring/offline/miti.py``),
learnt from the study's codes, as 0/1 per code in the study's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ....core.errors import ConfigError
from ....data.scoring_study import MITI_CODES
from ...embeddings import Embedder
from ...offline_judge.features import long_ratings
from ...records import AnswersError, read_jsonl

EMBEDDING = "embedding"
SUBFACTORS = "subfactors"
MITI = "miti"
#: The feature families, in the order their columns are joined.
PARTS = (EMBEDDING, SUBFACTORS, MITI)
#: Every feature set: one or more families joined by "+" in ``PARTS`` order.
FEATURE_SETS = tuple(
    "+".join(p for i, p in enumerate(PARTS) if mask >> i & 1) for mask in range(1, 2 ** len(PARTS))
)
N_SUBFACTORS = 15


def feature_parts(features: str, where: str = "features") -> tuple[str, ...]:
    """The parts of a feature set name (``embedding+subfactors`` -> both), or a ConfigError."""
    parts = tuple(part.strip().lower() for part in str(features).split("+"))
    if "+".join(parts) not in FEATURE_SETS:
        raise ConfigError(
            f"{where}: unknown feature set {features!r} (expected one or more of"
            f" {', '.join(PARTS)} joined by + in that order, e.g. subfactors+miti)"
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
    """Column names: ``emb_###`` per embedding dimension, the subfactors' names, then
    ``miti:<code>`` per MITI code."""
    names: list[str] = []
    if EMBEDDING in parts:
        names += [f"emb_{i:03d}" for i in range(dim)]
    if SUBFACTORS in parts:
        names += list(subfactor_names)
    if MITI in parts:
        names += [f"miti:{code}" for code in MITI_CODES]
    return names


def feature_matrix(
    texts: Sequence[str],
    subfactors: Sequence[Sequence[float]] | None,
    parts: Sequence[str],
    embedder: Embedder | None,
    miti: np.ndarray | None = None,
) -> np.ndarray:
    """Rows of features in ``parts`` order; ``texts``, ``subfactors`` and ``miti`` (0/1 per
    code, the tagger's) aligned."""
    blocks = []
    if EMBEDDING in parts:
        if embedder is None:
            raise ValueError("embedding features need an embedder")
        blocks.append(np.asarray(embedder.encode(list(texts)), dtype=np.float64))
    if SUBFACTORS in parts:
        if subfactors is None:
            raise ValueError("subfactor features need subfactor scores")
        blocks.append(np.asarray(subfactors, dtype=np.float64).reshape(len(texts), N_SUBFACTORS))
    if MITI in parts:
        if miti is None:
            raise ValueError("MITI features need the MITI tagger's codes")
        blocks.append(np.asarray(miti, dtype=np.float64).reshape(len(texts), len(MITI_CODES)))
    return np.hstack(blocks) if blocks else np.zeros((len(texts), 0))
