"""The offline subfactor scorer: gpt-4o-mini's 15 v2 subfactor scores learnt from MiniLM
embeddings of the study's responses (train-split dialogues only), so subfactor scores, the
per-dimension heatmap and the classifiers' subfactor features need no key.

Candidates (``CANDIDATES``): ridge regression on the embedding of the study's text (situation,
utterance, response: ``ridge_context``), of the response alone (``ridge_response``) or on
both side by side (``ridge_both``), and k-nearest-neighbour regression on the study's text
(``knn_context``). Each candidate's
hyperparameter (ridge alpha, k) is chosen by dialogue-grouped CV mean squared error; the
candidate kept is the one with the highest grouped-CV mean Pearson r over the 15 subfactors.
Predictions are clipped to the scores' range 1-10 and kept as decimals (gpt-4o-mini gives
integers; a dimension is the mean of five, so nothing needs rounding).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ....data import scoring_study as study
from ...embeddings import Embedder
from ..prompts import DIMENSIONS, SUBFACTORS, SUBFACTORS_PER_DIMENSION
from .crossfit import CrossFitted, cross_fit, dialogue_folds, out_of_fold
from .persisted import Persisted
from .study_rows import CONTEXT, RESPONSE

LOW, HIGH = 1.0, 10.0
#: Both embeddings side by side (768 dimensions): the response's own, and the study's text's.
BOTH = "both"
#: candidate -> (text it reads, estimator family).
CANDIDATES = {
    "ridge_context": (CONTEXT, "ridge"),
    "ridge_response": (RESPONSE, "ridge"),
    "ridge_both": (BOTH, "ridge"),
    "knn_context": (CONTEXT, "knn"),
}


def embed_texts(text: str, texts_of: Callable[[str], list[str]], embedder: Embedder) -> np.ndarray:
    """The features of a candidate's ``text``: the embedding of ``texts_of(CONTEXT)`` or of
    ``texts_of(RESPONSE)``, or both joined (``BOTH``)."""
    parts = (CONTEXT, RESPONSE) if text == BOTH else (text,)
    return np.hstack([np.asarray(embedder.encode(texts_of(p)), dtype=np.float64) for p in parts])


def make_estimator(family: str, param: float) -> Any:
    """A fresh regressor of 15 outputs: ridge (alpha) or distance-weighted cosine kNN (k)."""
    from sklearn.linear_model import Ridge
    from sklearn.neighbors import KNeighborsRegressor

    if family == "ridge":
        return Ridge(alpha=float(param))
    if family == "knn":
        return KNeighborsRegressor(n_neighbors=int(param), weights="distance", metric="cosine")
    raise ValueError(f"unknown estimator family {family!r}")


class _Maker:
    """A picklable ``make()`` for ``cross_fit``."""

    def __init__(self, family: str, param: float) -> None:
        self.family, self.param = family, param

    def __call__(self) -> Any:
        return make_estimator(self.family, self.param)


def clip(scores: np.ndarray) -> np.ndarray:
    return np.clip(scores, LOW, HIGH)


def agreement(truth: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """Per subfactor (study order): Pearson r, Spearman rho and MAE over the rows where the
    study has a score, and n."""
    from scipy.stats import pearsonr, spearmanr

    rows = []
    for j, name in enumerate(study.SUBFACTORS):
        ok = ~np.isnan(truth[:, j])
        t, p = truth[ok, j], predicted[ok, j]
        constant = np.ptp(t) == 0 or np.ptp(p) == 0
        rows.append(
            {
                "measure": name,
                "dimension": DIMENSIONS[j // SUBFACTORS_PER_DIMENSION],
                "pearson_r": float("nan") if constant else float(pearsonr(t, p)[0]),
                "spearman_rho": float("nan") if constant else float(spearmanr(t, p)[0]),
                "mae": float(np.mean(np.abs(t - p))),
                "n": int(ok.sum()),
            }
        )
    return pd.DataFrame(rows)


def with_dimensions(per_subfactor: pd.DataFrame, truth: np.ndarray, predicted: np.ndarray):
    """The per-subfactor rows, then per dimension the mean of its five subfactors' r, rho and
    MAE (``mean:<dimension>``) and the agreement of the dimension score itself, the mean of its
    five (``score:<dimension>``, what the empathy-change heatmap plots)."""
    extra = []
    for d, dimension in enumerate(DIMENSIONS):
        part = per_subfactor[per_subfactor["dimension"] == dimension]
        extra.append(
            {
                "measure": f"mean:{dimension}",
                "dimension": dimension,
                **{k: float(part[k].mean()) for k in ("pearson_r", "spearman_rho", "mae")},
                "n": int(part["n"].min()),
            }
        )
        cols = slice(d * SUBFACTORS_PER_DIMENSION, (d + 1) * SUBFACTORS_PER_DIMENSION)
        score = agreement(
            np.repeat(truth[:, cols].mean(axis=1, keepdims=True), 15, axis=1),
            np.repeat(predicted[:, cols].mean(axis=1, keepdims=True), 15, axis=1),
        ).iloc[0]
        extra.append(
            {
                "measure": f"score:{dimension}",
                "dimension": dimension,
                **{k: float(score[k]) for k in ("pearson_r", "spearman_rho", "mae")},
                "n": int(score["n"]),
            }
        )
    mean = {k: float(per_subfactor[k].mean()) for k in ("pearson_r", "spearman_rho", "mae")}
    extra.append(
        {"measure": "mean:all", "dimension": "", **mean, "n": int(per_subfactor["n"].min())}
    )
    return pd.concat([per_subfactor, pd.DataFrame(extra)], ignore_index=True)


@dataclass
class Choice:
    """One candidate with its hyperparameter chosen by grouped CV on the fitting rows."""

    candidate: str
    text: str
    family: str
    param: float
    cv_mse: float
    cv_pearson_r: float  # mean over the 15 subfactors of the out-of-fold predictions


def choose(
    candidate: str,
    x: np.ndarray,
    y: np.ndarray,
    ids: Sequence[str],
    grid: Sequence[float],
    settings,
) -> Choice:
    """The candidate's hyperparameter of the lowest grouped-CV MSE (ties: the first)."""
    text, family = CANDIDATES[candidate]
    folds = dialogue_folds(ids, settings["cv_folds"], settings["seed"])
    if family == "knn":  # k cannot exceed the rows a fold model learns from (a small run)
        rows = len(ids) - int(np.bincount(folds).max())
        grid = [k for k in grid if k <= rows] or [rows]
    best: tuple[float, float, np.ndarray] | None = None
    for param in grid:
        predicted = clip(out_of_fold(_Maker(family, param), x, y, folds))
        mse = float(np.mean((predicted - y) ** 2))
        if best is None or mse < best[0]:
            best = (mse, param, predicted)
    assert best is not None
    mse, param, predicted = best
    r = float(agreement(y, predicted)["pearson_r"].mean())
    return Choice(candidate, text, family, float(param), mse, r)


def param_grid(family: str, settings: dict) -> list[float]:
    return list(settings["alphas"] if family == "ridge" else settings["neighbours"])


def complete(y: np.ndarray) -> np.ndarray:
    """Rows with all 15 scores (the study misses five for two responses): fitted on only."""
    return ~np.isnan(y).any(axis=1)


@dataclass
class OfflineSubfactorScorer(Persisted):
    """The fitted scorer of one ``backend: offline`` subfactors scorer, saved with joblib."""

    KIND = "an offline subfactor scorer"

    scorer: str
    candidate: str
    text: str
    param: float
    model: CrossFitted
    embedder_name: str
    names: tuple[str, ...] = study.SUBFACTORS
    trained_on: list[str] = field(default_factory=list)

    def describe(self) -> str:
        what = "alpha" if CANDIDATES[self.candidate][1] == "ridge" else "k"
        return f"{self.candidate} ({what}={self.param:g}) on {self.embedder_name}"

    def predict(self, x: np.ndarray, dialog_ids: Sequence[str]) -> np.ndarray:
        return clip(self.model.apply("predict", x, dialog_ids))

    def record(self, dialog_id: str, scores: Sequence[float], variant: str) -> dict:
        """A record in the LLM scorer's format (``score.score_with_llm``), always valid."""
        return {
            "dialog_id": dialog_id,
            "scorer": self.scorer,
            "kind": SUBFACTORS,
            "variant": variant,
            "scores": [round(float(s), 4) for s in scores],
            "valid": True,
            "problem": None,
            "refusal": None,
            "raw": None,
            "model": self.describe(),
            "usage": {},
            "request_key": None,
        }


def fit_scorer(
    name: str,
    choice: Choice,
    x: np.ndarray,
    y: np.ndarray,
    ids: Sequence[str],
    settings: dict,
    embedder_name: str,
) -> OfflineSubfactorScorer:
    """The chosen candidate cross-fitted on every complete row given."""
    keep = complete(y)
    kept_ids = [d for d, k in zip(ids, keep, strict=True) if k]
    model = cross_fit(
        _Maker(choice.family, choice.param),
        x[keep],
        y[keep],
        kept_ids,
        settings["cv_folds"],
        settings["seed"],
    )
    return OfflineSubfactorScorer(
        name,
        choice.candidate,
        choice.text,
        choice.param,
        model,
        embedder_name,
        trained_on=sorted(set(kept_ids)),
    )
