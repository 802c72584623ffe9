"""The offline judge: a response scorer learnt from the dataset's human ratings (train split).

Why: the workflow must be runnable and evaluable with no API key. Welivita & Pu (2024) rated
every one of the 5 responses per dialogue 1-3 (one crowd rater each); a regression from sentence
embeddings of (context, response) to that rating gives a score per response, and a pair is
judged by the higher score, a tie when the scores differ by less than ``judges.<name>.margin``.

Only TRAIN rows ever reach fitting or model selection: the validation folds used to pick the
feature set and regularisation are carved from the train dialogues; test dialogues are used once,
afterwards, to measure agreement with the human ratings (written next to the model).

Candidates (small on purpose; the ratings are single noisy judgments):
* features ``response``: [e_resp, log words]; ``response_lexical``: [e_resp, surface cues of
  empathy (``lexical.py``)]; ``context``: [e_resp, e_ctx*e_resp, cos, log words] (the
  InferSent-style pair features of Conneau et al. 2017, minus e_ctx, which is constant within a
  dialogue and so cannot order its responses);
* targets ``raw`` rating, or ``rater_debiased``: rating minus the rater's (shrunk) leniency.
  Every rater of the dataset rated one responder only, so leniency is measured against the mean
  of the responder the rater rated; centring raters on the global mean would also erase the
  differences between authors, which are real signal;
* objectives ``pointwise`` (ridge regression of the target) or ``pairwise`` (logistic regression
  on the feature differences of same-dialogue responses, RankNet-style, Burges et al. 2005:
  it fits exactly what the agreement measures, the order within a dialogue);
* a few penalties (ridge alpha; C = 1/alpha for the logistic model).

Selection is by 5-fold cross-validation over train dialogues (out-of-fold scores): a single
20 % hold-out has ~1,900 differing pairs, a standard error of ~0.011, larger than most of the
differences between candidates.

Measured with MiniLM (2026-11): every candidate lands at 0.567-0.582 cross-validated pairwise
agreement; the chosen one gets 0.531 on test. The labels bound what any response-only judge can
reach: each response has one rating from a rater who rated nothing else in its dialogue, and on
test the raters' leniency measured on train (``reference_orderings``) orders 0.659 of the pairs
without reading a word, while a perfect author oracle gets 0.596. The test split holds the
dialogues where fewer than 2 responses got a 3, i.e. it is selected on the ratings, hence on
harsh raters, so its human order is more rater-driven than the train split's.

Tried and not adopted (2026-11, same folds): averaging the top 3 to 36 candidates' scores (CV
0.579-0.582, no gain); a perfect author oracle plus a within-author ridge on the text (CV 0.596:
the text adds ~0.01 beyond who wrote it); an author classifier's expected author rating (CV
0.565-0.570); fine-tuning MiniLM end to end as a (context,
response) cross-encoder with the same pairwise loss (2 epochs, 24 min on 2 CPU cores:
validation fold 0.590 against 0.588-0.598 for these frozen-embedding candidates).
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..core import specs
from ..core.atomic import write_json
from ..core.command import run_cli
from ..core.errors import ConfigError, DatasetError, LeakageError
from .embeddings import Embedder, default_embedder
from .lexical import lexical_features
from .records import read_split
from .stats import cohen_kappa

RESPONDERS = ("human", "chatgpt_empathy", "llama_empathy", "gemini_empathy", "mixtral_empathy")
FEATURE_SETS = ("response", "response_lexical", "context")
TARGETS = ("raw", "rater_debiased")
OBJECTIVES = ("pointwise", "pairwise")
ALPHAS = (10.0, 30.0, 100.0)
RATER_SHRINK = 5.0  # pseudo-ratings at the responder's mean added to each rater's mean
CV_FOLDS = 5


@dataclass(frozen=True)
class Candidate:
    features: str
    target: str
    alpha: float
    objective: str = "pointwise"


def context_text(situation: str, utterance: str) -> str:
    return f"Context: {situation} Speaker: {utterance}"


def long_ratings(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (dialogue, responder): dialog_id, context, response, rating, annotator."""
    parts = []
    for responder in RESPONDERS:
        columns = [f"response_{responder}", f"rating_{responder}", f"annotator_{responder}"]
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DatasetError(f"split table lacks column(s) {', '.join(missing)}")
        parts.append(
            pd.DataFrame(
                {
                    "dialog_id": frame["dialog_id"].astype(str).values,
                    "context": [
                        context_text(str(s), str(u))
                        for s, u in zip(frame["situation"], frame["speaker_uttr"], strict=True)
                    ],
                    "response": frame[columns[0]].fillna("").astype(str).values,
                    "rating": pd.to_numeric(frame[columns[1]]).astype(float).values,
                    "annotator": frame[columns[2]].astype(str).values,
                    "responder": responder,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def rater_debiased(rows: pd.DataFrame) -> np.ndarray:
    """Ratings minus each rater's shrunk leniency, measured within the responder they rated.

    offset(rater) = (sum + k * m_resp) / (count + k) - m_resp, with m_resp the mean rating of
    the rater's responder on these rows; the author means are kept.
    """
    author_mean = rows.groupby("responder")["rating"].transform("mean")
    by_rater = rows.groupby("annotator")["rating"]
    total, count = by_rater.transform("sum"), by_rater.transform("count")
    shrunk = (total + RATER_SHRINK * author_mean) / (count + RATER_SHRINK)
    return (rows["rating"] - shrunk + author_mean).to_numpy(dtype=float)


@dataclass
class Embedded:
    rows: pd.DataFrame
    ctx: np.ndarray
    resp: np.ndarray
    lexical: np.ndarray  # lexical_features(responses)


def featurize(data: Embedded, features: str) -> np.ndarray:
    length = data.lexical[:, :1]  # log words
    if features == "response":
        return np.hstack([data.resp, length])
    if features == "response_lexical":
        return np.hstack([data.resp, data.lexical])
    if features == "context":
        product = data.ctx * data.resp
        return np.hstack([data.resp, product, product.sum(axis=1, keepdims=True), length])
    raise ValueError(f"unknown feature set {features!r} (have {FEATURE_SETS})")


def embed_rows(rows: pd.DataFrame, embedder: Embedder) -> Embedded:
    contexts = rows["context"].tolist()
    unique_ctx = list(dict.fromkeys(contexts))
    ctx_vectors = embedder.encode(unique_ctx)
    index = {c: i for i, c in enumerate(unique_ctx)}
    ctx = ctx_vectors[[index[c] for c in contexts]]
    resp = embedder.encode(rows["response"].tolist())
    lexical = lexical_features(rows["response"].tolist())
    return Embedded(rows.reset_index(drop=True), ctx, resp, lexical)


def _subset(data: Embedded, mask: np.ndarray) -> Embedded:
    return Embedded(
        data.rows[mask].reset_index(drop=True), data.ctx[mask], data.resp[mask], data.lexical[mask]
    )


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
            # plain arrays, not the class: a pickle made under `python -m` would name __main__
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
        state = joblib.load(path)
        scorer = cls(
            Candidate(**state["candidate"]),
            state["model"],
            Calibration.from_arrays(**state["calibration"]),
            state["embedder_name"],
            state["trained_on"],
            state["selection"],
        )
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
        scorer = fit_scorer(_subset(data, ~held), candidate, "cv")
        scores[held] = scorer.score_embedded(_subset(data, held))
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train the offline judge on train-split ratings.")
    specs.add_spec_arguments(parser)
    parser.add_argument("--train", required=True, help="results/data/train.csv")
    parser.add_argument("--test", required=True, help="results/data/test.csv (agreement only)")
    parser.add_argument("--model-out", required=True)
    parser.add_argument("--agreement-out", required=True)
    return parser


def _run(args: argparse.Namespace) -> None:
    spec, _ = specs.from_args(args, specs.offline_judge)
    margin, seed = spec["margin"], spec["seed"]
    embedder = default_embedder(spec["cache_dir"])
    train, test = read_split(args.train), read_split(args.test)
    check_disjoint(train, test)
    scorer = select_and_fit(train, embedder, seed=seed, margin=margin)
    scorer.save(args.model_out)
    chosen = asdict(scorer.candidate)
    validation = next(
        {k.removeprefix("val_"): v for k, v in row.items() if k.startswith("val_")}
        for row in scorer.selection
        if all(row[k] == v for k, v in chosen.items())
    )
    report = {
        "embedder": scorer.embedder_name,
        "chosen": chosen,
        "n_train_dialogues": len(scorer.trained_on),
        "validation": {"method": f"{CV_FOLDS}-fold CV over train dialogues", **validation},
        "test": evaluate(scorer, test, margin),
        "test_reference_orderings": reference_orderings(train, test),
        "selection": scorer.selection,
    }
    write_json(args.agreement_out, report, indent=2)
    t = report["test"]
    print(
        f"offline judge {chosen}: pairwise agreement (no margin) validation "
        f"{validation['pairwise_agreement_no_margin']:.3f}, test "
        f"{t['pairwise_agreement_no_margin']:.3f} (with margin {t['pairwise_agreement']:.3f}); "
        f"test 3-class accuracy {t['pairwise_3class_accuracy']:.3f}, "
        f"rating accuracy {t['rating_accuracy']:.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    # Run the canonical module, not this __main__ copy: the saved model pickles this module's
    # classes, which must be importable by name when the judge jobs load it.
    from empathy_distill.evaluation import offline_judge

    raise SystemExit(offline_judge.main())
