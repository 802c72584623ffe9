"""Dialogue-grouped splits and cross-fitted models.

The study has three responses per dialogue sharing one situation and utterance, so every split
here is by dialogue: a dialogue is wholly in the fitting part or wholly held out. A model that
is later applied to responses of the dialogues it learnt from (the classifiers train on the
train split's responses, two of five of which are the study's texts) answers for those with the
fold model that never saw that dialogue (cross-fitting), so its features there are as noisy as
on new dialogues; every other dialogue gets the model fitted on all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def _shuffled_dialogues(dialog_ids: Sequence[str], seed: int) -> list[str]:
    unique = sorted(set(map(str, dialog_ids)))
    order = np.random.default_rng(seed).permutation(len(unique))
    return [unique[i] for i in order]


def dialogue_folds(dialog_ids: Sequence[str], n_folds: int, seed: int) -> np.ndarray:
    """Fold number (0..n_folds-1) of every row; the dialogues, shuffled by ``seed``, are dealt
    round-robin, so fold sizes differ by at most one dialogue."""
    dialogues = _shuffled_dialogues(dialog_ids, seed)
    if len(dialogues) < n_folds:
        raise ValueError(f"{len(dialogues)} dialogues cannot fill {n_folds} folds")
    fold_of = {d: i % n_folds for i, d in enumerate(dialogues)}
    return np.array([fold_of[str(d)] for d in dialog_ids], dtype=int)


def holdout_split(
    dialog_ids: Sequence[str], fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(fitting rows, held-out rows): ``fraction`` of the dialogues (at least one) held out."""
    dialogues = _shuffled_dialogues(dialog_ids, seed)
    n_out = max(1, round(fraction * len(dialogues)))
    if n_out >= len(dialogues):
        raise ValueError(f"holding out {n_out} of {len(dialogues)} dialogues leaves none to fit")
    held = set(dialogues[:n_out])
    rows = np.array([str(d) in held for d in dialog_ids])
    return np.flatnonzero(~rows), np.flatnonzero(rows)


@dataclass
class CrossFitted:
    """One model fitted on every row and one per fold fitted without that fold's dialogues."""

    full: Any
    folds: list[Any]
    fold_of: dict[str, int]

    def apply(self, method: str, x: np.ndarray, dialog_ids: Sequence[str]) -> np.ndarray:
        """``model.<method>(x)`` row by row's model: the fold model that never saw the row's
        dialogue if the dialogue was learnt from, else the full model."""
        ids = [str(d) for d in dialog_ids]
        which = np.array([self.fold_of.get(d, -1) for d in ids])
        out: np.ndarray | None = None
        for fold in np.unique(which):
            rows = np.flatnonzero(which == fold)
            model = self.full if fold < 0 else self.folds[fold]
            values = np.asarray(getattr(model, method)(x[rows]))
            if out is None:
                out = np.zeros((len(ids), *values.shape[1:]), dtype=values.dtype)
            out[rows] = values
        return out if out is not None else np.zeros((0,))


def cross_fit(
    make: Callable[[], Any],
    x: np.ndarray,
    y: np.ndarray,
    dialog_ids: Sequence[str],
    n_folds: int,
    seed: int,
) -> CrossFitted:
    """``make()`` fitted on all rows and once per dialogue fold without it."""
    folds = dialogue_folds(dialog_ids, n_folds, seed)
    fold_models = [make().fit(x[folds != k], y[folds != k]) for k in range(n_folds)]
    fold_of = {str(d): int(f) for d, f in zip(dialog_ids, folds, strict=True)}
    return CrossFitted(make().fit(x, y), fold_models, fold_of)


def out_of_fold(
    make: Callable[[], Any],
    x: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    method: str = "predict",
) -> np.ndarray:
    """Every row predicted by a model fitted on the other folds (grouped CV)."""
    out: np.ndarray | None = None
    for k in np.unique(folds):
        test = folds == k
        values = np.asarray(getattr(make().fit(x[~test], y[~test]), method)(x[test]))
        if out is None:
            out = np.zeros((len(x), *values.shape[1:]), dtype=np.float64)
        out[test] = values
    assert out is not None
    return out
