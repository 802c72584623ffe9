"""The fitted offline models applied to texts: the ``score_answers`` / ``score_responses``
branch of a ``backend: offline`` subfactors scorer, and the MITI tagger's codes as a
classifier's features. Texts are the study's (situation, utterance, response); a dialogue the
model learnt from is answered by its cross-fitted fold model (``crossfit.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ....core.errors import ConfigError
from ...embeddings import Embedder, default_embedder
from ..classifier.features import study_text
from .miti import MitiTagger
from .study_rows import CONTEXT
from .subfactors import OfflineSubfactorScorer, embed_texts


def _check_embedder(fitted_on: str, embedder: Embedder, model_file: str, rule: str) -> None:
    if fitted_on != embedder.name:
        raise ConfigError(
            f"{model_file} was fitted on {fitted_on} embeddings, not {embedder.name}; retrain it"
            f" (rule {rule})"
        )


def item_texts(items: Sequence[Any], text: str) -> list[str]:
    """The text a model reads of each ``score.ScoreItem``."""
    if text == CONTEXT:
        return [study_text(i.situation, i.speaker_uttr, i.answer) for i in items]
    return [str(i.answer) for i in items]


def score_offline(spec: dict, items: Sequence[Any], embedder: Embedder | None = None) -> list[dict]:
    """One record per item, in order, in the LLM scorer's format (always valid)."""
    scorer = OfflineSubfactorScorer.load(spec["model_file"])
    embedder = embedder or default_embedder(spec["cache_dir"])
    _check_embedder(scorer.embedder_name, embedder, spec["model_file"], "train_offline_subfactors")
    if not items:
        return []
    x = embed_texts(scorer.text, lambda part: item_texts(items, part), embedder)
    scores = scorer.predict(x, [i.dialog_id for i in items])
    return [
        scorer.record(item.dialog_id, row, spec["variant"]) | {"scorer": spec["scorer"]}
        for item, row in zip(items, scores, strict=True)
    ]


def miti_features(
    model_file: str, texts: Sequence[str], dialog_ids: Sequence[str], embedder: Embedder
) -> np.ndarray:
    """0/1 per MITI code (the study's order) of each study text, by the fitted tagger."""
    tagger = MitiTagger.load(model_file)
    _check_embedder(tagger.embedder_name, embedder, model_file, "train_miti_tagger")
    if not len(texts):
        return np.zeros((0, len(tagger.codes)))
    x = np.asarray(embedder.encode(list(texts)), dtype=np.float64)
    return tagger.tag(x, dialog_ids)


def tagger_codes(spec: dict, texts: Sequence[str], dialog_ids: Sequence[str]) -> np.ndarray:
    """A classifier's ``miti`` features (its spec's ``miti_tagger``): the tagger's codes of
    the study texts, embedded with MiniLM (the tagger's embedder, whatever the classifier's)."""
    tagger = spec.get("miti_tagger")
    if not tagger:
        raise ConfigError(f"scorer {spec.get('scorer')}: MITI features need the MITI tagger")
    embedder = default_embedder(spec["cache_dir"])
    return miti_features(tagger["model_file"], texts, dialog_ids, embedder)
