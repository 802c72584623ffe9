"""The ``score_answers`` branch of kind ``classifier``: the fitted scorer rates every answer of
one answer set, with no key and no request. Records have the fields of an LLM scorer's
(``score.score_with_llm``), ``scores`` = [predicted rating] and the class probabilities, so the
``empathy_scores`` table treats them as any rating scorer's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ....core import grid
from ....core.errors import ConfigError
from ...embeddings import Embedder, default_embedder, embedder_for
from ..offline.apply import tagger_codes
from .features import (
    EMBEDDING,
    MITI,
    SUBFACTORS,
    feature_matrix,
    read_subfactor_scores,
    study_text,
)
from .models import ClassifierScorer


def subfactor_file(spec: dict, answers_file: str | Path, root: str | Path = ".") -> Path:
    """The subfactor scorer's scores of the same answer set (``grid.score_path`` below
    ``root``, the directory holding results/)."""
    tag = grid.tag_of_answer_path(Path(answers_file).as_posix())
    return Path(root) / grid.score_path(spec["subfactor_scorer"]["name"], tag)


def load_scorer(
    spec: dict, embedder: Embedder | None = None, runtime: dict | None = None
) -> tuple[ClassifierScorer, Embedder | None]:
    """The fitted scorer and, for embedding features, the embedder it was fitted with (loaded
    once per job, whatever the number of answer sets)."""
    scorer = ClassifierScorer.load(spec["model_file"])
    if EMBEDDING in scorer.parts and embedder is None:
        embedder = (
            embedder_for(spec, runtime)
            if spec.get("embedding")
            else default_embedder(spec["cache_dir"])
        )
    if EMBEDDING in scorer.parts and scorer.embedder_name not in (None, embedder.name):
        raise ConfigError(
            f"scorer {spec['scorer']}: {spec['model_file']} was fitted on {scorer.embedder_name}"
            f" embeddings, not {embedder.name}; retrain it (rule train_classifier_scorer)"
        )
    return scorer, embedder


def score_answer_set(
    spec: dict,
    items: Sequence[Any],
    answers_file: str | Path | None,
    embedder: Embedder | None = None,
    runtime: dict | None = None,
) -> list[dict]:
    """One record per item (``score.ScoreItem``), in order (``runtime``: the runtime part, for
    an OpenAI embedding model's operational keys)."""
    return score_answer_sets(spec, [(answers_file, items)], embedder, runtime)[0]


def score_answer_sets(
    spec: dict,
    groups: Sequence[tuple[str | Path | None, Sequence[Any]]],
    embedder: Embedder | None = None,
    runtime: dict | None = None,
    root: str | Path = ".",
) -> list[list[dict]]:
    """Per (answers file, items) group, one record per item, in order: the fitted scorer and
    its embedder loaded once for all groups (a score_answers job's answer sets)."""
    scorer, embedder = load_scorer(spec, embedder, runtime)
    return [_score(spec, scorer, embedder, items, path, root) for path, items in groups]


def _score(
    spec: dict,
    scorer: ClassifierScorer,
    embedder: Embedder | None,
    items: Sequence[Any],
    answers_file: str | Path | None,
    root: str | Path,
) -> list[dict]:
    found: dict = {}
    if SUBFACTORS in scorer.parts:
        if answers_file is None:
            raise ValueError(f"scorer {spec['scorer']}: subfactor features need the answers file")
        path = subfactor_file(spec, answers_file, root)
        found = read_subfactor_scores(path, spec["subfactor_scorer"]["name"], ("dialog_id",))
    kept = [
        i
        for i, item in enumerate(items)
        if SUBFACTORS not in scorer.parts or (item.dialog_id,) in found
    ]
    texts = [study_text(items[i].situation, items[i].speaker_uttr, items[i].answer) for i in kept]
    subfactors = [found[(items[i].dialog_id,)] for i in kept] if found else None
    miti = None
    if MITI in scorer.parts:
        miti = tagger_codes(spec, texts, [items[i].dialog_id for i in kept])
    x = feature_matrix(texts, subfactors, scorer.parts, embedder, miti)
    predicted, proba = scorer.predict(x)
    at = {i: j for j, i in enumerate(kept)}
    return [
        scorer.record(
            item.dialog_id,
            spec["kind"],
            spec["variant"],
            predicted[at[i]] if i in at else None,
            proba[at[i]] if i in at else None,
        )
        | {"scorer": spec["scorer"]}
        for i, item in enumerate(items)
    ]
