"""The offline MITI tagger: the study's 15 MITI codes of a response (multi-label), learnt from
MiniLM embeddings of its responses to train-split dialogues, so the study's best classifier
(``features: subfactors+miti``) can score any answer, students' included.

One logistic regression per code (one-vs-rest; a code absent from the training rows is never
predicted), each with its own decision threshold: the one of best F1 on out-of-fold
probabilities of dialogue-grouped CV (rare codes need a lower threshold than 0.5 to be found at
all). Codes in the study's order (``data.scoring_study.MITI_CODES``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ....data.scoring_study import MITI_CODES
from .crossfit import CrossFitted, cross_fit
from .persisted import Persisted

#: Thresholds tried per code.
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.05, 0.951, 0.05))
NEVER = 1.01  # the threshold of a code with no positive training row


class CodeModels:
    """One logistic regression per code; ``predict`` applies ``thresholds``."""

    def __init__(self, c: float, thresholds: Sequence[float] | None = None, seed: int = 0):
        self.c, self.seed = c, seed
        self.thresholds = np.asarray(thresholds if thresholds is not None else [0.5] * 15)

    def fit(self, x: np.ndarray, y: np.ndarray) -> CodeModels:
        from sklearn.linear_model import LogisticRegression

        self.models = []
        for j in range(y.shape[1]):
            if np.ptp(y[:, j]) == 0:  # one class only: its constant probability
                self.models.append(float(y[0, j]) if len(y) else 0.0)
            else:
                model = LogisticRegression(C=self.c, max_iter=1000, random_state=self.seed)
                self.models.append(model.fit(x, y[:, j]))
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        columns = [
            np.full(len(x), m) if isinstance(m, float) else m.predict_proba(x)[:, 1]
            for m in self.models
        ]
        return np.column_stack(columns) if columns else np.zeros((len(x), 0))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return (self.predict_proba(x) >= self.thresholds).astype(np.float64)


class _Maker:
    def __init__(self, c: float, thresholds: Sequence[float] | None, seed: int) -> None:
        self.c, self.thresholds, self.seed = c, thresholds, seed

    def __call__(self) -> CodeModels:
        return CodeModels(self.c, self.thresholds, self.seed)


def f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    tp = float(np.sum((truth == 1) & (predicted == 1)))
    denominator = float(np.sum(truth == 1) + np.sum(predicted == 1))
    return 2 * tp / denominator if denominator else 0.0


def best_thresholds(proba: np.ndarray, y: np.ndarray) -> list[float]:
    """Per code, the threshold of the best F1 of ``proba`` against ``y`` (ties: the lowest);
    ``NEVER`` for a code without a positive row."""
    chosen = []
    for j in range(y.shape[1]):
        if not y[:, j].any():
            chosen.append(NEVER)
            continue
        scores = [f1(y[:, j], (proba[:, j] >= t).astype(float)) for t in THRESHOLDS]
        chosen.append(THRESHOLDS[int(np.argmax(scores))])
    return chosen


def fit_tagger(
    x: np.ndarray, y: np.ndarray, ids: Sequence[str], c: float, n_folds: int, seed: int
) -> tuple[CrossFitted, list[float]]:
    """Cross-fitted code models and their thresholds: each training row's probabilities come
    from the fold model that never saw its dialogue (grouped out-of-fold), and each code's
    threshold is the best F1 on them; every model then predicts with those thresholds."""
    fitted = cross_fit(_Maker(c, None, seed), x, y, ids, n_folds, seed)
    thresholds = best_thresholds(fitted.apply("predict_proba", x, ids), y)
    for model in (fitted.full, *fitted.folds):
        model.thresholds = np.asarray(thresholds)
    return fitted, thresholds


def code_table(truth: np.ndarray, predicted: np.ndarray, thresholds, fit_y) -> pd.DataFrame:
    """Per code: precision, recall, F1, support (positives among the held-out rows) and the F1
    of tagging every row with the code, then the micro and macro averages."""
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, support = precision_recall_fscore_support(truth, predicted, zero_division=0)
    table = pd.DataFrame(
        {
            "code": list(MITI_CODES),
            "precision": p,
            "recall": r,
            "f1": f,
            "support": support.astype(int),
            "predicted": predicted.sum(axis=0).astype(int),
            "threshold": list(thresholds),
            "fit_prevalence": fit_y.mean(axis=0),
        }
    )
    # the yardstick: tagging every response with the code (precision = prevalence, recall 1)
    table["f1_all_positive"] = 2 * table["support"] / (len(truth) + table["support"])
    rows = []
    for average in ("micro", "macro"):
        ap, ar, af, _ = precision_recall_fscore_support(
            truth, predicted, average=average, zero_division=0
        )
        rows.append(
            {
                "code": f"{average} average",
                "precision": ap,
                "recall": ar,
                "f1": af,
                "support": int(truth.sum()),
                "predicted": int(predicted.sum()),
                "threshold": np.nan,
                "fit_prevalence": float(fit_y.mean()),
                "f1_all_positive": np.nan,
            }
        )
    return pd.concat([table, pd.DataFrame(rows)], ignore_index=True)


@dataclass
class MitiTagger(Persisted):
    """The fitted tagger, saved with joblib: codes of a text (the study's embedding text)."""

    KIND = "a MITI tagger"

    model: CrossFitted
    thresholds: list[float]
    c: float
    embedder_name: str
    codes: tuple[str, ...] = MITI_CODES
    trained_on: list[str] = field(default_factory=list)

    def tag(self, x: np.ndarray, dialog_ids: Sequence[str]) -> np.ndarray:
        """0/1 per code (study order) for each row of embeddings; a dialogue learnt from is
        tagged by the fold model that never saw it."""
        return self.model.apply("predict", x, dialog_ids)
