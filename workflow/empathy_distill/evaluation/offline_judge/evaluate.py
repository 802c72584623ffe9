"""How well the offline judge agrees with the human ratings, and the splits' disjointness.

Why: test dialogues are used once, after fitting and selection, to measure agreement with the
human ratings (written next to the model); ``check_disjoint`` refuses a test dialogue that the
scorer saw. ``reference_orderings`` gives the scale: orderings no response judge can use.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ...core.errors import LeakageError
from ..embeddings import default_embedder
from ..stats import cohen_kappa
from .features import Embedded, embed_rows, long_ratings, rater_debiased

if TYPE_CHECKING:
    from .model import OfflineScorer


def agreement(
    rows: pd.DataFrame, scores: np.ndarray, margin: float, classes: np.ndarray | None = None
) -> dict:
    """Agreement of scores with the human ratings over same-dialogue response pairs.

    ``pairwise_agreement``: of the pairs the humans rated differently, the share the scorer orders
    the same way by at least ``margin`` (a tie counts as a miss); ``pairwise_agreement_no_margin``
    the same with any score difference. Scores are percentiles (see ``Calibration``).
    ``pairwise_3class_accuracy``/``_kappa``: over all pairs, better/tie/worse of the scorer
    (tie below margin) vs the humans (tie = same rating).
    ``rating_accuracy``: predicted 1-3 class (``classes``) vs the rating.
    """
    frame = rows[["dialog_id", "rating"]].copy()
    frame["score"] = np.asarray(scores, dtype=float)
    human3, model3 = [], []
    agree = agree_any = differing = 0
    for _, group in frame.groupby("dialog_id", sort=False):
        r, s = group["rating"].to_numpy(), group["score"].to_numpy()
        for i, j in itertools.combinations(range(len(r)), 2):
            h = int(np.sign(r[i] - r[j]))
            diff = s[i] - s[j]
            m = 0 if abs(diff) < margin else int(np.sign(diff))
            human3.append(h)
            model3.append(m)
            if h != 0:
                differing += 1
                agree += m == h
                agree_any += int(np.sign(diff)) == h
    predicted = np.clip(np.rint(frame["score"]), 1, 3) if classes is None else classes
    return {
        "n_dialogues": int(frame["dialog_id"].nunique()),
        "n_pairs": len(human3),
        "n_pairs_rated_differently": differing,
        "margin": margin,
        "pairwise_agreement": agree / differing if differing else float("nan"),
        "pairwise_agreement_no_margin": agree_any / differing if differing else float("nan"),
        "pairwise_3class_accuracy": float(np.mean(np.equal(human3, model3))),
        "pairwise_3class_kappa": cohen_kappa(human3, model3),
        "rating_accuracy": float((predicted == frame["rating"]).mean()),
    }


def evaluate_embedded(scorer: OfflineScorer, data: Embedded, margin: float) -> dict:
    scores = scorer.score_embedded(data)
    return agreement(data.rows, scores, margin, scorer.calibration.rating_class(scores))


def check_disjoint(train: pd.DataFrame, test: pd.DataFrame) -> None:
    overlap = set(train["dialog_id"].astype(str)) & set(test["dialog_id"].astype(str))
    if overlap:
        raise LeakageError(
            f"{len(overlap)} test dialogue(s) are in the train split, e.g. "
            f"{sorted(overlap)[0]!r}: the offline judge must never see them"
        )


def evaluate(scorer: OfflineScorer, test: pd.DataFrame, margin: float) -> dict:
    """Agreement with human ratings on the test split (after fitting; never used to select)."""
    check_disjoint(pd.DataFrame({"dialog_id": scorer.trained_on}), test)
    rows = long_ratings(test)
    embedder = scorer.embedder if scorer.embedder is not None else default_embedder()
    return evaluate_embedded(scorer, embed_rows(rows, embedder), margin)


def reference_orderings(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
    """Pairwise agreement on ``test`` of two orderings no response judge can use, for scale.

    ``author_mean``: each response scored by its author's mean train rating (a judge that
    recognised the author perfectly and knew nothing else). ``rater_leniency``: each response
    scored by its rater's shrunk mean train rating (within-responder offset as in
    ``rater_debiased``; 0 for raters unseen in train): how much of the human order is explained
    by who happened to rate, not by what was written. Test ratings are used only to score.
    """
    train_rows, test_rows = long_ratings(train), long_ratings(test)
    author = train_rows.groupby("responder")["rating"].mean()
    leniency = train_rows["rating"].to_numpy() - rater_debiased(train_rows)  # constant per rater
    offset = pd.Series(leniency).groupby(train_rows["annotator"].to_numpy()).first()
    out = {}
    for name, score in (
        ("author_mean", test_rows["responder"].map(author).to_numpy()),
        ("rater_leniency", test_rows["annotator"].map(offset).fillna(0.0).to_numpy()),
    ):
        out[name] = agreement(test_rows, score, 0.0)["pairwise_agreement_no_margin"]
    return out
