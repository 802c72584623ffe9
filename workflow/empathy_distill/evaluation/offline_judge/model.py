"""The offline judge's model: the candidate scorers, their fitting and calibration, the fitted
``OfflineScorer`` (saved with joblib), and the choice among candidates.

Why: targets are the ``raw`` rating or the ``rater_debiased`` one; objectives are ``pointwise``
(ridge regression of the target) or ``pairwise`` (logistic regression on the feature
differences of same-dialogue responses, RankNet-style, Burges et al. 2005: it fits exactly what
the agreement measures, the order within a dialogue), each with a few penalties. Selection is
by 5-fold cross-validation over TRAIN dialogues only (out-of-fold scores): a single 20 %
hold-out has ~1,900 differing pairs, a standard error of ~0.011, larger than most differences
between candidates. What was measured and tried: ``docs/offline_judge.md``.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ...core.errors import ConfigError, DatasetError
from ..embeddings import Embedder, default_embedder
from .evaluate import agreement
from .features import (
    FEATURE_SETS,
    Embedded,
    context_text,
    embed_rows,
    featurize,
    long_ratings,
    rater_debiased,
    subset,
)

TARGETS = ("raw", "rater_debiased")
OBJECTIVES = ("pointwise", "pairwise")
ALPHAS = (10.0, 30.0, 100.0)
CV_FOLDS = 5


@dataclass(frozen=True)
class Candidate:
    features: str
    target: str
    alpha: float
    objective: str = "pointwise"


def dialogue_pairs(dialog_ids: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) of same-dialogue rows with target[i] > target[j]."""
    first, second = [], []
    groups = pd.Series(np.arange(len(dialog_ids))).groupby(np.asarray(dialog_ids), sort=False)
    for _, members in groups:
        for i, j in itertools.combinations(members.to_numpy(), 2):
            if target[i] != target[j]:
                high, low = (i, j) if target[i] > target[j] else (j, i)
                first.append(high)
                second.append(low)
    return np.asarray(first, dtype=int), np.asarray(second, dtype=int)


class PairwiseRanker:
    """Logistic regression on x_better - x_worse (both signs, no intercept): a linear scorer
    whose score differences model P(response i is rated above j), weighted by the rating gap."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.coef_: np.ndarray | None = None

    def fit(self, x: np.ndarray, y: np.ndarray, dialog_ids: np.ndarray) -> PairwiseRanker:
        from sklearn.linear_model import LogisticRegression

        better, worse = dialogue_pairs(dialog_ids, y)
        if len(better) == 0:
            raise DatasetError("no same-dialogue pair with different ratings to learn an order")
        diff = x[better] - x[worse]
        weight = np.abs(y[better] - y[worse])
        model = LogisticRegression(C=1.0 / self.alpha, fit_intercept=False, max_iter=1000)
        model.fit(
            np.vstack([diff, -diff]),
            np.r_[np.ones(len(diff)), np.zeros(len(diff))],
            sample_weight=np.r_[weight, weight],
        )
        self.coef_ = model.coef_[0]
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x) @ self.coef_


def _fit(data: Embedded, candidate: Candidate) -> Any:
    from sklearn.linear_model import Ridge

    x = featurize(data, candidate.features)
    if candidate.target == "rater_debiased":
        y = rater_debiased(data.rows)
    else:
        y = data.rows["rating"].to_numpy(dtype=float)
    if candidate.objective == "pairwise":
        return PairwiseRanker(candidate.alpha).fit(x, y, data.rows["dialog_id"].to_numpy())
    return Ridge(alpha=candidate.alpha).fit(x, y)


class Calibration:
    """Maps raw predictions to percentiles of the training predictions (the score scale).

    Ridge predictions of noisy ratings shrink towards the mean (their spread is a few hundredths
    of a rating point), so a margin in rating units would make nearly every pair a tie. On the
    percentile scale ``margin`` 0.05 means "within 5 percentile points of the training
    responses". Rating classes come from the same scale, with cut points that reproduce the
    training rating shares (quantile matching).
    """

    def __init__(self, predictions: np.ndarray, ratings: np.ndarray) -> None:
        self.sorted = np.sort(np.asarray(predictions, dtype=float))
        ratings = np.asarray(ratings)
        self.cuts = np.cumsum([np.mean(ratings == 1), np.mean(ratings == 2)])

    @classmethod
    def from_arrays(cls, sorted: np.ndarray, cuts: np.ndarray) -> Calibration:
        calibration = cls.__new__(cls)
        calibration.sorted, calibration.cuts = np.asarray(sorted), np.asarray(cuts)
        return calibration

    def percentile(self, predictions: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.sorted, predictions, side="right") / len(self.sorted)

    def rating_class(self, percentiles: np.ndarray) -> np.ndarray:
        return 1 + np.searchsorted(self.cuts, percentiles, side="right")


@dataclass
class OfflineScorer:
    """A fitted scorer: ``score(situations, utterances, responses)`` -> percentile in [0, 1]."""

    candidate: Candidate
    model: Any
    calibration: Calibration
    embedder_name: str
    trained_on: list[str]  # dialog_ids of every row that reached fitting or selection
    selection: list[dict] = field(default_factory=list)
    embedder: Any = field(default=None, repr=False, compare=False)

    def score_embedded(self, data: Embedded) -> np.ndarray:
        raw = self.model.predict(featurize(data, self.candidate.features))
        return self.calibration.percentile(raw)

    def score(
        self, situations: list[str], utterances: list[str], responses: list[str]
    ) -> np.ndarray:
        if self.embedder is None:
            self.embedder = default_embedder()
        rows = pd.DataFrame(
            {
                "context": [
                    context_text(s, u) for s, u in zip(situations, utterances, strict=True)
                ],
                "response": [str(r) for r in responses],
            }
        )
        return self.score_embedded(embed_rows(rows, self.embedder))

    def save(self, path: str | Path) -> None:
        import joblib

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        state = {
            "candidate": asdict(self.candidate),
            "model": self.model,
            # plain arrays, not the class: the file names as few of our classes as it can
            "calibration": {"sorted": self.calibration.sorted, "cuts": self.calibration.cuts},
            "embedder_name": self.embedder_name,
            "trained_on": self.trained_on,
            "selection": self.selection,
        }
        joblib.dump(state, path)

    @classmethod
    def load(cls, path: str | Path, embedder: Embedder | None = None) -> OfflineScorer:
        import joblib

        if not Path(path).exists():
            raise ConfigError(f"offline judge model not found: {path} (run train_offline_judge)")
        try:
            state = joblib.load(path)
            scorer = cls(
                Candidate(**state["candidate"]),
                state["model"],
                Calibration.from_arrays(**state["calibration"]),
                state["embedder_name"],
                state["trained_on"],
                state["selection"],
            )
        except (ImportError, AttributeError, KeyError, TypeError) as exc:
            # the file names a class this version does not have, or lacks a field it needs
            raise ConfigError(
                f"{path}: not an offline judge model this version can load ({exc!r}); delete it"
                " and rerun train_offline_judge to retrain it"
            ) from exc
        if embedder is not None and embedder.name != scorer.embedder_name:
            raise ConfigError(
                f"{path} was trained on {scorer.embedder_name} embeddings, not {embedder.name}"
            )
        scorer.embedder = embedder
        return scorer


def fit_scorer(data: Embedded, candidate: Candidate, embedder_name: str) -> OfflineScorer:
    """Fit one candidate on ``data`` (train rows only) with its percentile calibration."""
    model = _fit(data, candidate)
    raw = model.predict(featurize(data, candidate.features))
    calibration = Calibration(raw, data.rows["rating"].to_numpy())
    ids = sorted(map(str, data.rows["dialog_id"].unique()))
    return OfflineScorer(candidate, model, calibration, embedder_name, ids)


def candidates() -> list[Candidate]:
    return [
        Candidate(features, target, alpha, objective)
        for features, target, objective, alpha in itertools.product(
            FEATURE_SETS, TARGETS, OBJECTIVES, ALPHAS
        )
    ]


def dialogue_folds(dialog_ids: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold number per row; all rows of a dialogue share a fold (no dialogue on both sides)."""
    unique = np.asarray(pd.unique(np.asarray(dialog_ids)))
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of = dict(zip(unique[order], np.arange(len(unique)) % folds, strict=True))
    return np.array([fold_of[d] for d in dialog_ids])


def cross_validated_scores(
    data: Embedded, candidate: Candidate, fold: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold percentile scores and rating classes: each fold scored by a scorer fitted on
    the other folds."""
    scores, classes = np.zeros(len(data.rows)), np.zeros(len(data.rows), dtype=int)
    for k in np.unique(fold):
        held = fold == k
        scorer = fit_scorer(subset(data, ~held), candidate, "cv")
        scores[held] = scorer.score_embedded(subset(data, held))
        classes[held] = scorer.calibration.rating_class(scores[held])
    return scores, classes


def select_and_fit(
    train: pd.DataFrame,
    embedder: Embedder,
    folds: int = CV_FOLDS,
    seed: int = 0,
    margin: float = 0.05,
) -> OfflineScorer:
    """Pick the candidate with the best cross-validated pairwise agreement (folds of TRAIN
    dialogues only), then refit it on all train rows.

    Out-of-fold scores are percentiles within their fold's scorer; only same-dialogue
    differences enter the agreement, so pooling the folds is sound.
    """
    rows = long_ratings(train)
    data = embed_rows(rows, embedder)
    fold = dialogue_folds(rows["dialog_id"].to_numpy(), folds, seed)
    selection = []
    for candidate in candidates():
        scores, classes = cross_validated_scores(data, candidate, fold)
        result = agreement(data.rows, scores, margin, classes)
        selection.append({**asdict(candidate), **{f"val_{k}": v for k, v in result.items()}})
    best = max(selection, key=lambda r: r["val_pairwise_agreement_no_margin"])
    candidate = Candidate(best["features"], best["target"], best["alpha"], best["objective"])
    scorer = fit_scorer(data, candidate, embedder.name)
    scorer.selection, scorer.embedder = selection, embedder
    return scorer
