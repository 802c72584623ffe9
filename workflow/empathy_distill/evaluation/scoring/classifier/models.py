"""The study's four classifiers with its feature selection, chosen by cross-validation on the
training rows only, and the fitted scorer that is saved and applied to answer sets.

Classifiers as in the study's code: LogisticRegression(max_iter=1000), SVC(), RandomForest,
MLP (64, 32) relu/adam max_iter=5000; selection none, SelectKBest(f_classif, k) or
RFE(LogisticRegression) with k from ``k_grid``. Features are standardised first (the subfactor
scores and embedding dimensions have different scales). SVC gets ``probability=True`` so the
scorer reports class probabilities; RFE drops 10 % of the features per step (one at a time over
384 embedding dimensions would take hundreds of fits per k).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MODELS = ("lr", "svc", "rf", "mlp")
SELECTIONS = ("none", "kbest", "rfe")
BEST = "best"
RATINGS = (1, 2, 3)


def make_model(name: str, seed: int) -> Any:
    """A fresh classifier of the study's setup."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC

    if name == "lr":
        return LogisticRegression(max_iter=1000, random_state=seed)
    if name == "svc":
        return SVC(probability=True, random_state=seed)
    if name == "rf":
        return RandomForestClassifier(random_state=seed)
    if name == "mlp":
        return MLPClassifier(
            hidden_layer_sizes=(64, 32),
            activation="relu",
            solver="adam",
            max_iter=5000,
            random_state=seed,
        )
    raise ValueError(f"unknown classifier {name!r} (expected one of {MODELS})")


def make_pipeline(model: str, selection: str, k: int | None, seed: int) -> Any:
    """scale -> select (k features) -> classify."""
    from sklearn.feature_selection import RFE, SelectKBest, f_classif
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    steps: list[tuple[str, Any]] = [("scale", StandardScaler())]
    if selection == "kbest":
        steps.append(("select", SelectKBest(f_classif, k=k)))
    elif selection == "rfe":
        estimator = LogisticRegression(max_iter=1000, random_state=seed)
        steps.append(("select", RFE(estimator, n_features_to_select=k, step=0.1)))
    elif selection != "none":
        raise ValueError(f"unknown selection {selection!r} (expected one of {SELECTIONS})")
    steps.append(("model", make_model(model, seed)))
    return Pipeline(steps)


def folds(labels: np.ndarray, n_folds: int, seed: int) -> Any:
    """Stratified folds, no more than the smallest class allows (at least 2)."""
    from sklearn.model_selection import StratifiedKFold

    smallest = int(np.bincount(np.unique(labels, return_inverse=True)[1]).min())
    return StratifiedKFold(n_splits=max(2, min(n_folds, smallest)), shuffle=True, random_state=seed)


def k_values(selection: str, k_grid: Sequence[int], n_features: int) -> list[int | None]:
    """The k tried for a selection: the grid below the number of features (all of them if none)."""
    if selection == "none":
        return [None]
    ks = sorted({k for k in k_grid if k < n_features})
    return ks or [None]


@dataclass
class Fitted:
    """One (model, selection) fitted on a training part, with its choice of k."""

    model: str
    selection: str
    k: int | None
    cv_score: float
    pipeline: Any


def choose_and_fit(
    x: np.ndarray,
    y: np.ndarray,
    model: str,
    selection: str,
    k_grid: Sequence[int],
    n_folds: int,
    seed: int,
    metric: str = "accuracy",
) -> Fitted:
    """k by cross-validation on (x, y) alone, then the pipeline refitted on all of it."""
    from sklearn.model_selection import cross_val_score

    best: tuple[float, int | None] | None = None
    for k in k_values(selection, k_grid, x.shape[1]):
        chosen_selection = selection if k is not None else "none"
        pipeline = make_pipeline(model, chosen_selection, k, seed)
        score = float(
            np.mean(cross_val_score(pipeline, x, y, cv=folds(y, n_folds, seed), scoring=metric))
        )
        if best is None or score > best[0]:
            best = (score, k)
    assert best is not None
    score, k = best
    pipeline = make_pipeline(model, selection if k is not None else "none", k, seed).fit(x, y)
    return Fitted(model, selection, k, score, pipeline)


def metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy (the study's metric), balanced accuracy and macro-F1 over the three ratings."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=list(RATINGS), average="macro", zero_division=0)
        ),
    }


def probabilities(pipeline: Any, x: np.ndarray) -> np.ndarray:
    """P(rating = 1, 2, 3) per row; a rating absent from training gets 0."""
    out = np.zeros((len(x), len(RATINGS)))
    if len(x):
        proba = pipeline.predict_proba(x)
        for column, rating in enumerate(pipeline.classes_):
            out[:, RATINGS.index(int(rating))] = proba[:, column]
    return out


@dataclass
class ClassifierScorer:
    """The fitted scorer of one ``classifier`` scorer config, saved with joblib."""

    scorer: str
    features: str
    parts: tuple[str, ...]
    feature_names: list[str]
    model: str
    selection: str
    k: int | None
    pipeline: Any
    embedder_name: str | None
    subfactor_scorer: str | None
    trained_on: list[str] = field(default_factory=list)  # dialog ids of the training rows

    def describe(self) -> str:
        k = "" if self.k is None else f" k={self.k}"
        return f"{self.model}/{self.selection}{k} on {self.features}"

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(predicted rating, probabilities of 1, 2, 3) per row."""
        if not len(x):
            return np.zeros(0, dtype=int), np.zeros((0, len(RATINGS)))
        return self.pipeline.predict(x).astype(int), probabilities(self.pipeline, x)

    def record(
        self,
        dialog_id: str,
        kind: str,
        variant: str,
        rating: int | None,
        proba: np.ndarray | None,
    ) -> dict[str, Any]:
        """One score record with the fields of an LLM scorer's (``score.score_with_llm``):
        ``scores`` = [rating] and the class probabilities, or invalid when ``rating`` is None
        (a feature was missing: no valid subfactor scores)."""
        ok = rating is not None
        return {
            "dialog_id": dialog_id,
            "scorer": self.scorer,
            "kind": kind,
            "variant": variant,
            "scores": [int(rating)] if ok else None,
            "valid": ok,
            "problem": None if ok else f"no valid {self.subfactor_scorer} subfactor scores",
            "refusal": None,
            "raw": None,
            "model": self.describe(),
            "usage": {},
            "request_key": None,
            "probabilities": [float(p) for p in proba] if ok else None,
        }

    def save(self, path: str | Path) -> None:
        import joblib

        from ....core.atomic import atomic_write

        with atomic_write(path, "wb") as handle:
            joblib.dump(self, handle)

    @classmethod
    def load(cls, path: str | Path) -> ClassifierScorer:
        import joblib

        from ....core.errors import ConfigError

        if not Path(path).exists():
            raise ConfigError(f"{path}: no fitted classifier scorer (rule train_classifier_scorer)")
        scorer = joblib.load(path)
        if not isinstance(scorer, cls):
            raise ConfigError(f"{path}: not a classifier scorer ({type(scorer).__name__})")
        return scorer
