"""Rule ``train_classifier_scorer``: fit a classifier scorer on the train-split responses
(5 per train dialogue, label = the human rating), evaluate it on the test split, and compare
with the study's own protocol (balanced, 80/20 stratified, seed 42) run inside the train split.

Every model x selection of ``models`` x ``selections`` (default: all of the study's) is
fitted under both protocols (k chosen by CV on the training part only) and gets a table row;
the scorer keeps the configured model and selection, or for ``best`` the highest CV score on the
train split. Test-split rows are featurised only after every fit is done, and nothing fitted
ever sees them: the test split only measures.

``python -m empathy_distill.evaluation.scoring.classifier.train --spec ... --train ...
--test ... [--subfactors-train ... --subfactors-test ...] --model-out ... --scores-out ...
--table-out ... --importance-out ... --figure-out ...``
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ....core import specs
from ....core.atomic import atomic_write, write_csv
from ....core.command import run_cli
from ...embeddings import Embedder, default_embedder, embedder_for
from ...offline_judge.evaluate import check_disjoint
from ...records import read_split, write_jsonl
from .. import specs as scoring_specs
from ..offline.apply import tagger_codes
from .features import (
    EMBEDDING,
    MITI,
    N_SUBFACTORS,
    SUBFACTORS,
    feature_matrix,
    feature_names,
    feature_parts,
    read_subfactor_scores,
    response_rows,
)
from .models import BEST, ClassifierScorer, Fitted, choose_and_fit, metrics
from .protocol import STUDY_SEED, study_split

PAPER = "paper_split"
STUDY = "study_balanced"
NOTE = "no MITI features: the dataset has no MITI codes"
MITI_NOTE = "MITI features: the offline MITI tagger's codes (the dataset has none of its own)"
TABLE_COLUMNS = (
    "scorer",
    "features",
    "model",
    "selection",
    "protocol",
    "k",
    "cv_score",
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "majority_accuracy",
    "n_train",
    "n_test",
    "n_dropped",
    "chosen",
    "note",
)


@dataclass
class Part:
    """The responses of one split that have every feature: rows, features, labels; and how
    many were dropped for want of a valid subfactor record."""

    rows: pd.DataFrame
    x: np.ndarray
    y: np.ndarray
    kept: np.ndarray  # over every response of the split
    n_dropped: int


def featurize(
    frame: pd.DataFrame, spec: dict, embedder: Embedder | None, subfactor_file: str | None
) -> Part:
    """Features of every response of a split table that has them (the others are counted)."""
    rows = response_rows(frame)
    parts = feature_parts(spec["features"], f"scoring.scorers.{spec['scorer']}.features")
    subfactors = None
    kept = np.ones(len(rows), dtype=bool)
    if SUBFACTORS in parts:
        sub = spec["subfactor_scorer"]
        if subfactor_file is None:
            raise ValueError(f"scorer {spec['scorer']}: subfactor features need --subfactors-*")
        found = read_subfactor_scores(subfactor_file, sub["name"], ("dialog_id", "responder"))
        keys = list(zip(rows["dialog_id"], rows["responder"], strict=True))
        kept = np.array([key in found for key in keys], dtype=bool)
        subfactors = [found[key] for key, keep in zip(keys, kept, strict=True) if keep]
    chosen = rows[kept].reset_index(drop=True)
    miti = None
    if MITI in parts:  # the tagger's codes; a dialogue it learnt from gets its fold model's
        miti = tagger_codes(spec, chosen["text"].tolist(), chosen["dialog_id"].tolist())
    x = feature_matrix(chosen["text"].tolist(), subfactors, parts, embedder, miti)
    return Part(chosen, x, chosen["rating"].to_numpy(dtype=int), kept, int((~kept).sum()))


#: Cross-validation metric that picks k and the ``best`` model. Balanced accuracy: the paper's
#: train split is 64 % rating 3 (its test split 16 %), and by accuracy a model that always
#: answers 3 won the choice on the whole train split (CV 0.637 = the share of 3s; test accuracy
#: 0.158). Always answering one rating scores 1/3 whatever the class shares.
CV_METRIC = "balanced_accuracy"


def fit_all(x: np.ndarray, y: np.ndarray, spec: dict) -> list[Fitted]:
    """Every model x selection of the study fitted on (x, y), k chosen by CV on it."""
    return [
        choose_and_fit(
            x, y, model, selection, spec["k_grid"], spec["cv_folds"], spec["seed"], CV_METRIC
        )
        for model in spec["models"]
        for selection in spec["selections"]
    ]


def pick(fits: Sequence[Fitted], model: str, selection: str) -> Fitted:
    """The configured (model, selection), or the highest CV score among those ``best`` allows
    (ties: the first in the study's order)."""
    allowed = [f for f in fits if model in (BEST, f.model) and selection in (BEST, f.selection)]
    return max(allowed, key=lambda f: f.cv_score)  # max keeps the first of equal scores


def majority(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """Accuracy of always answering the training part's most frequent rating."""
    values, counts = np.unique(y_train, return_counts=True)
    return float(np.mean(y_test == values[np.argmax(counts)])) if len(y_test) else float("nan")


def rows_of(
    spec: dict, protocol: str, fits: Sequence[Fitted], x_test, y_test, y_train, dropped, chosen
) -> list[dict[str, Any]]:
    rows = []
    for fit in fits:
        rows.append(
            {
                "scorer": spec["scorer"],
                "features": spec["features"],
                "model": fit.model,
                "selection": fit.selection,
                "protocol": protocol,
                "k": fit.k,
                "cv_score": fit.cv_score,
                **metrics(y_test, fit.pipeline.predict(x_test).astype(int)),
                "majority_accuracy": majority(y_train, y_test),
                "n_train": len(y_train),
                "n_test": len(y_test),
                "n_dropped": dropped,
                "chosen": fit is chosen,
                "note": MITI_NOTE if MITI in feature_parts(spec["features"]) else NOTE,
            }
        )
    return rows


def train_scorer(
    spec: dict, train: pd.DataFrame, embedder: Embedder | None, subfactor_file: str | None
) -> tuple[ClassifierScorer, Part, list[Fitted], list[dict[str, Any]]]:
    """Fit on the train split only: (scorer, train part, paper-split fits, study-protocol rows).

    The study's protocol runs inside the train split, so it never touches the test split either.
    """
    part = featurize(train, spec, embedder, subfactor_file)
    fits = fit_all(part.x, part.y, spec)
    chosen = pick(fits, spec["model"], spec["selection"])
    parts = feature_parts(spec["features"])
    n_embedding = part.x.shape[1] - (N_SUBFACTORS if SUBFACTORS in parts else 0)
    names = feature_names(parts, n_embedding, (spec["subfactor_scorer"] or {}).get("names", []))
    scorer = ClassifierScorer(
        scorer=spec["scorer"],
        features=spec["features"],
        parts=parts,
        feature_names=names,
        model=chosen.model,
        selection=chosen.selection,
        k=chosen.k,
        pipeline=chosen.pipeline,
        embedder_name=getattr(embedder, "name", None),
        subfactor_scorer=(spec["subfactor_scorer"] or {}).get("name"),
        trained_on=sorted(set(part.rows["dialog_id"])),
    )
    study_train, study_test = study_split(part.y, STUDY_SEED)
    study_fits = fit_all(part.x[study_train], part.y[study_train], spec)
    study_rows = rows_of(
        spec,
        STUDY,
        study_fits,
        part.x[study_test],
        part.y[study_test],
        part.y[study_train],
        part.n_dropped,
        chosen=None,
    )
    return scorer, part, fits, study_rows


def test_records(scorer: ClassifierScorer, test: pd.DataFrame, part: Part) -> list[dict]:
    """The contract's records for every test-split response: the prediction, or invalid when
    a feature is missing (no valid subfactor record)."""
    everyone = response_rows(test)
    predicted, proba = scorer.predict(part.x)
    at = np.cumsum(part.kept) - 1
    records = []
    for i, row in enumerate(everyone.itertuples(index=False)):
        ok = bool(part.kept[i])
        record = scorer.record(
            row.dialog_id,
            "classifier",
            scorer.features,
            predicted[at[i]] if ok else None,
            proba[at[i]] if ok else None,
        )
        records.append(
            record
            | {
                "responder": row.responder,
                "annotator": row.annotator,
                "human_rating": int(row.rating),
            }
        )
    return records


def importance_table(scorer: ClassifierScorer, part: Part, repeats: int, seed: int) -> pd.DataFrame:
    """Permutation importances (accuracy drop) of the chosen scorer on the test split."""
    from sklearn.inspection import permutation_importance

    columns = ["feature", "importance_mean", "importance_std", "rank"]
    if len(part.y) == 0:
        return pd.DataFrame(columns=columns)
    result = permutation_importance(
        scorer.pipeline, part.x, part.y, n_repeats=repeats, random_state=seed, scoring="accuracy"
    )
    table = pd.DataFrame(
        {
            "feature": scorer.feature_names,
            "importance_mean": result.importances_mean,
            "importance_std": result.importances_std,
        }
    )
    table = table.sort_values("importance_mean", ascending=False, kind="stable")
    table["rank"] = np.arange(1, len(table) + 1)
    return table.reset_index(drop=True)[columns]


def importance_figure(table: pd.DataFrame, title: str, out: str | Path, top: int = 20) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    head = table.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * max(len(head), 4) + 1.2))
    if len(head):
        ax.barh(head["feature"], head["importance_mean"], xerr=head["importance_std"])
    else:
        ax.text(0.5, 0.5, "no test rows", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("mean accuracy drop when permuted (test split)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_write(out, "wb") as handle:
        fig.savefig(handle, dpi=120, format="png")
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train an offline classifier scorer.")
    specs.add_spec_arguments(parser)
    parser.add_argument("--scorer", help="with --config: a key of config.scoring.scorers")
    parser.add_argument("--train", required=True, help="results/data/scorer_train.csv")
    parser.add_argument("--test", required=True, help="results/data/test.csv (evaluation only)")
    parser.add_argument("--subfactors-train", help="the subfactor scorer's responses_train.jsonl")
    parser.add_argument("--subfactors-test", help="the subfactor scorer's responses_test.jsonl")
    parser.add_argument("--model-out", required=True)
    parser.add_argument("--scores-out", required=True, help="responses_test.jsonl")
    parser.add_argument("--table-out", required=True)
    parser.add_argument("--importance-out", required=True)
    parser.add_argument("--figure-out", required=True)
    return parser


def run(
    args: argparse.Namespace,
    spec: dict,
    embedder: Embedder | None = None,
    run: dict | None = None,
) -> None:
    """The whole job (``embedder``: tests pass a stand-in; ``run``: the runtime part, for an
    OpenAI embedding model's operational keys)."""
    if embedder is None and EMBEDDING in feature_parts(spec["features"]):
        embedder = (
            embedder_for(spec, run)
            if spec.get("embedding")
            else default_embedder(spec["cache_dir"])
        )
    train, test = read_split(args.train), read_split(args.test)
    check_disjoint(train, test)
    scorer, part, fits, study_rows = train_scorer(spec, train, embedder, args.subfactors_train)
    scorer.save(args.model_out)
    # Only now is the test split read into features: everything above is fitted.
    held_out = featurize(test, spec, embedder, args.subfactors_test)
    chosen = next(f for f in fits if f.pipeline is scorer.pipeline)
    paper_rows = rows_of(spec, PAPER, fits, held_out.x, held_out.y, part.y, part.n_dropped, chosen)
    table = pd.DataFrame(paper_rows + study_rows, columns=list(TABLE_COLUMNS))
    write_csv(args.table_out, table)
    write_jsonl(args.scores_out, test_records(scorer, test, held_out))
    importance = importance_table(scorer, held_out, spec["importance_repeats"], spec["seed"])
    write_csv(args.importance_out, importance)
    importance_figure(importance, f"{spec['scorer']}: {scorer.describe()}", args.figure_out)
    usage = getattr(getattr(embedder, "inner", None), "prompt_tokens", None)
    if usage is not None:
        print(f"{embedder.name}: {embedder.inner.requests} requests, {usage} tokens billed")
    row = table[table["chosen"]].iloc[0]
    print(
        f"{spec['scorer']}: {scorer.describe()} (CV balanced accuracy {row['cv_score']:.3f}); test"
        f" accuracy {row['accuracy']:.3f}, balanced {row['balanced_accuracy']:.3f}, majority"
        f" {row['majority_accuracy']:.3f}; {part.n_dropped} train and {held_out.n_dropped}"
        " test responses dropped (no valid subfactor scores)"
    )


def _run(args: argparse.Namespace) -> None:
    from ....core.errors import ConfigError

    if args.config and not args.scorer:
        raise ConfigError("--config needs --scorer (a key of config.scoring.scorers)")
    spec, runtime = specs.from_args(
        args,
        lambda config: scoring_specs.classifier_scorer(config, args.scorer),
        with_runtime=lambda spec: bool(spec.get("embedding")),
    )
    run(args, spec, run=runtime)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
