"""The offline judge: a response scorer learnt from the dataset's human ratings (train split).

Why: the workflow must be runnable and evaluable with no API key. Welivita & Pu (2024) rated
every one of the 5 responses per dialogue 1-3 (one crowd rater each); a regression from sentence
embeddings of (context, response) to that rating gives a score per response, and a pair is
judged by the higher score, a tie when the scores differ by less than ``judges.<name>.margin``.

Only TRAIN rows ever reach fitting or model selection: the validation split used to pick the
feature set and regularisation is carved from the train dialogues; test dialogues are used once,
afterwards, to measure agreement with the human ratings (written next to the model).

Candidates (small on purpose; the ratings are single noisy judgments):
* features ``response``: [e_resp, log words]; ``full``: [e_ctx, e_resp, e_ctx*e_resp,
  |e_ctx-e_resp|, cos, log words] (the InferSent-style pair features of Conneau et al. 2017);
* targets ``raw`` rating, or ``rater_debiased``: rating minus the rater's (shrunk) mean offset,
  which removes rater leniency, a large share of the label noise;
* ridge regression with a few penalties.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, DatasetError, LeakageError
from .cli import add_config_arguments, settings_from
from .embeddings import Embedder, default_embedder
from .records import read_split
from .stats import cohen_kappa

RESPONDERS = ("human", "chatgpt_empathy", "llama_empathy", "gemini_empathy", "mixtral_empathy")
FEATURE_SETS = ("response", "full")
TARGETS = ("raw", "rater_debiased")
ALPHAS = (10.0, 30.0, 100.0, 300.0)
RATER_SHRINK = 5.0  # pseudo-ratings at the global mean added to each rater's mean


@dataclass(frozen=True)
class Candidate:
    features: str
    target: str
    alpha: float


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


def featurize(ctx: np.ndarray, resp: np.ndarray, words: np.ndarray, features: str) -> np.ndarray:
    length = np.log1p(np.asarray(words, dtype=float))[:, None]
    if features == "response":
        return np.hstack([resp, length])
    if features == "full":
        cos = (ctx * resp).sum(axis=1, keepdims=True)
        return np.hstack([ctx, resp, ctx * resp, np.abs(ctx - resp), cos, length])
    raise ValueError(f"unknown feature set {features!r} (have {FEATURE_SETS})")


def rater_debiased(rows: pd.DataFrame) -> np.ndarray:
    """Ratings minus each rater's shrunk leniency offset (computed on these rows only)."""
    mean = rows["rating"].mean()
    by_rater = rows.groupby("annotator")["rating"].agg(["sum", "count"])
    shrunk = (by_rater["sum"] + RATER_SHRINK * mean) / (by_rater["count"] + RATER_SHRINK)
    return (rows["rating"] - rows["annotator"].map(shrunk) + mean).to_numpy()


@dataclass
class Embedded:
    rows: pd.DataFrame
    ctx: np.ndarray
    resp: np.ndarray
    words: np.ndarray


def embed_rows(rows: pd.DataFrame, embedder: Embedder) -> Embedded:
    contexts = rows["context"].tolist()
    unique_ctx = list(dict.fromkeys(contexts))
    ctx_vectors = embedder.encode(unique_ctx)
    index = {c: i for i, c in enumerate(unique_ctx)}
    ctx = ctx_vectors[[index[c] for c in contexts]]
    resp = embedder.encode(rows["response"].tolist())
    words = rows["response"].str.split().str.len().to_numpy()
    return Embedded(rows.reset_index(drop=True), ctx, resp, words)


def _subset(data: Embedded, mask: np.ndarray) -> Embedded:
    return Embedded(
        data.rows[mask].reset_index(drop=True), data.ctx[mask], data.resp[mask], data.words[mask]
    )


def _fit(data: Embedded, candidate: Candidate) -> Any:
    from sklearn.linear_model import Ridge

    x = featurize(data.ctx, data.resp, data.words, candidate.features)
    y = rater_debiased(data.rows) if candidate.target == "rater_debiased" else data.rows["rating"]
    return Ridge(alpha=candidate.alpha).fit(x, np.asarray(y, dtype=float))


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
        raw = self.model.predict(
            featurize(data.ctx, data.resp, data.words, self.candidate.features)
        )
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
    raw = model.predict(featurize(data.ctx, data.resp, data.words, candidate.features))
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


def select_and_fit(
    train: pd.DataFrame,
    embedder: Embedder,
    val_fraction: float = 0.2,
    seed: int = 0,
    margin: float = 0.05,
) -> OfflineScorer:
    """Pick the candidate with the best validation agreement (validation carved from TRAIN),
    then refit it on all train rows."""
    rows = long_ratings(train)
    data = embed_rows(rows, embedder)
    dialogues = rows["dialog_id"].unique()
    rng = np.random.default_rng(seed)
    val_ids = set(
        rng.choice(dialogues, size=max(1, int(len(dialogues) * val_fraction)), replace=False)
    )
    is_val = rows["dialog_id"].isin(val_ids).to_numpy()
    fit_part, val_part = _subset(data, ~is_val), _subset(data, is_val)
    selection = []
    for features, target, alpha in itertools.product(FEATURE_SETS, TARGETS, ALPHAS):
        candidate = Candidate(features, target, alpha)
        scorer = fit_scorer(fit_part, candidate, embedder.name)
        result = evaluate_embedded(scorer, val_part, margin)
        selection.append({**asdict(candidate), **{f"val_{k}": v for k, v in result.items()}})
    best = max(selection, key=lambda r: r["val_pairwise_agreement_no_margin"])
    candidate = Candidate(best["features"], best["target"], best["alpha"])
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


def offline_judge_margin(config: dict) -> float:
    for endpoint in config.get("judges", {}).values():
        if endpoint.get("backend") == "offline":
            return float(endpoint.get("margin", 0.05))
    return 0.05


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the offline judge on train-split ratings.")
    add_config_arguments(parser, required=False)
    parser.add_argument("--train", required=True, help="results/data/train.csv")
    parser.add_argument("--test", required=True, help="results/data/test.csv (agreement only)")
    parser.add_argument("--model-out", required=True)
    parser.add_argument("--agreement-out", required=True)
    args = parser.parse_args(argv)
    config = settings_from(args)
    margin = offline_judge_margin(config)
    seed = int(config.get("evaluation", {}).get("seed", 0))
    embedder = default_embedder(config.get("llm", {}).get("cache_dir", "resources/cache"))
    train, test = read_split(args.train), read_split(args.test)
    check_disjoint(train, test)
    scorer = select_and_fit(train, embedder, seed=seed, margin=margin)
    scorer.save(args.model_out)
    report = {
        "embedder": scorer.embedder_name,
        "chosen": asdict(scorer.candidate),
        "n_train_dialogues": len(scorer.trained_on),
        "test": evaluate(scorer, test, margin),
        "selection": scorer.selection,
    }
    Path(args.agreement_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.agreement_out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    t = report["test"]
    print(
        f"offline judge {asdict(scorer.candidate)}: test pairwise agreement "
        f"{t['pairwise_agreement']:.3f} (no margin {t['pairwise_agreement_no_margin']:.3f}), "
        f"rating accuracy {t['rating_accuracy']:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
