"""The ``scorer_agreement`` table: each scorer against the human ratings of the test responses,
scorer against scorer, and the companion study's reported figures beside them.

Input: ``results/scores/{scorer}/responses_test.jsonl`` of every scorer of ``scoring.grid``
(written by ``score_responses`` for LLM scorers, by the classifier's rule for a classifier: the
same format, so no kind is a special case). A scorer with one score per record (kind rating, a
classifier) predicts the 1-3 rating; a subfactor scorer's 15 scores are read as their mean
(``mean_15``) and per dimension (the mean of its 5 subfactors, ``table.per_answer``).

Columns (``section`` = ``vs_human`` / ``vs_scorer`` / ``reported``):

* ``accuracy``, ``balanced_accuracy``: predicted rating = human rating (rating scorers only);
* ``spearman``: rank correlation of the measure with the human rating (scipy.stats.spearmanr);
* ``pairwise_agreement``: over pairs of responses to the same dialogue whose human ratings
  differ, the share the scorer orders the same way; ``pairwise_ties``: the share it scores
  equal (neither agreement nor disagreement); ``pairwise_agreement_untied`` leaves ties out;
* ``within_rater_*``: accuracy and Spearman computed within each annotator who rated at least
  ``within_rater_min`` scored test responses, averaged weighted by the annotator's count (a
  Spearman that is undefined, a constant rater or scorer, is left out of its average);
* ``exact_agreement`` (vs_scorer, both rating scorers): share of equal ratings.

Only valid replies enter a metric; invalid and refused replies are counted.
"""

from __future__ import annotations

import argparse
import itertools
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from ...core import specs
from ...core.atomic import write_csv
from ...core.command import run_cli
from ..records import AnswersError, read_jsonl
from . import specs as scoring_specs
from .prompts import DIMENSIONS, SUBFACTORS
from .responses import responses_path
from .table import per_answer

RATING_MEASURE = "rating"
MEAN_15 = "mean_15"
OURS = "ours: the paper's test split (all 5 responses per dialogue), classes unbalanced"
STUDY = "Xie et al. 2024 (arXiv:2412.20264)"
STUDY_PROTOCOL = (
    "the study's balanced split: classes downsampled to the smallest, 80/20 stratified, seed 42"
)
#: (scorer, accuracy, note) as the companion study reports them; not our measurements.
REPORTED = (
    ("fine-tuned gpt-4o-mini", 0.5469, "3-class accuracy reported by the study"),
    (
        "classifier: MITI + 15 subfactors, feature selection",
        0.5365,
        "reported by the study; our dataset has no MITI codes (a classifier reads the offline"
        " MITI tagger's instead, e.g. minilm_study_classifier)",
    ),
    (
        "classifiers: embeddings alone",
        float("nan"),
        "reported as 'close to generic LLMs' (no single figure quoted here)",
    ),
)
COLUMNS = (
    "section",
    "scorer",
    "scorer_kind",
    "reference",
    "measure",
    "n",
    "n_valid",
    "n_invalid",
    "n_refused",
    "accuracy",
    "balanced_accuracy",
    "spearman",
    "pairs",
    "pairwise_agreement",
    "pairwise_ties",
    "pairwise_agreement_untied",
    "within_rater_raters",
    "within_rater_n",
    "within_rater_accuracy",
    "within_rater_spearman",
    "exact_agreement",
    "protocol",
    "note",
)
KEY = ["dialog_id", "responder"]
NEEDED = ("dialog_id", "responder", "annotator", "human_rating", "valid", "scores", "kind")


def measures(kind: str) -> tuple[str, ...]:
    """What a scorer's records are compared on: the rating, or the 15-mean and dimensions."""
    return (MEAN_15, *DIMENSIONS) if kind == SUBFACTORS else (RATING_MEASURE,)


def _values(scores: Sequence[int], kind: str) -> dict[str, float]:
    if kind == SUBFACTORS:
        return {MEAN_15: float(np.mean(scores)), **per_answer(scores, kind)}
    return {RATING_MEASURE: float(scores[0])}


def read_responses(path: str | Path) -> tuple[str, pd.DataFrame]:
    """(kind, one row per record: key, annotator, human_rating, valid, refused, measures)."""
    records = read_jsonl(path)
    if not records:
        raise AnswersError(f"{path}: no scores")
    kind = records[0].get("kind")
    rows, seen = [], set()
    for number, record in enumerate(records, 1):
        missing = [k for k in NEEDED if k not in record]
        if missing:
            raise AnswersError(f"{path}: line {number} lacks {', '.join(missing)}")
        if record["kind"] != kind:
            raise AnswersError(f"{path}: line {number} is of kind {record['kind']!r}, not {kind!r}")
        if record["human_rating"] not in (1, 2, 3):
            raise AnswersError(f"{path}: line {number}: human_rating must be 1, 2 or 3")
        key = (str(record["dialog_id"]), str(record["responder"]))
        if key in seen:
            raise AnswersError(f"{path}: (dialog_id, responder) {key} appears twice")
        seen.add(key)
        valid = bool(record["valid"])
        rows.append(
            {
                "dialog_id": key[0],
                "responder": key[1],
                "annotator": str(record["annotator"]),
                "human_rating": int(record["human_rating"]),
                "valid": valid,
                "refused": record.get("refusal") is not None,
                **(_values(record["scores"], kind) if valid else {}),
            }
        )
    frame = pd.DataFrame(rows)
    for measure in measures(kind):
        if measure not in frame:
            frame[measure] = np.nan
    return kind, frame


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """scipy's Spearman rho; NaN (not a warning) when either side is constant or too short."""
    if len(x) < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(x, y).statistic)


def pairwise(frame: pd.DataFrame, measure: str) -> dict[str, float]:
    """Pairs of responses to one dialogue with different human ratings: share the measure
    orders the same way, share it ties, and the agreement among untied pairs."""
    agree = ties = pairs = 0
    for _, group in frame.groupby("dialog_id", sort=False):
        human, score = group["human_rating"].to_numpy(), group[measure].to_numpy()
        for i, j in itertools.combinations(range(len(group)), 2):
            if human[i] == human[j]:
                continue
            pairs += 1
            if score[i] == score[j]:
                ties += 1
            elif (score[i] > score[j]) == (human[i] > human[j]):
                agree += 1
    untied = pairs - ties
    return {
        "pairs": pairs,
        "pairwise_agreement": agree / pairs if pairs else float("nan"),
        "pairwise_ties": ties / pairs if pairs else float("nan"),
        "pairwise_agreement_untied": agree / untied if untied else float("nan"),
    }


def within_rater(frame: pd.DataFrame, measure: str, minimum: int) -> dict[str, float]:
    """Accuracy (rating only) and Spearman within each rater with >= ``minimum`` responses,
    averaged weighted by the rater's count."""
    groups = [g for _, g in frame.groupby("annotator", sort=True) if len(g) >= minimum]
    out = {
        "within_rater_raters": len(groups),
        "within_rater_n": int(sum(len(g) for g in groups)),
        "within_rater_accuracy": float("nan"),
        "within_rater_spearman": float("nan"),
    }
    if not groups:
        return out
    weights = np.array([len(g) for g in groups], dtype=float)
    if measure == RATING_MEASURE:
        accuracy = [accuracy_score(g["human_rating"], g[measure].astype(int)) for g in groups]
        out["within_rater_accuracy"] = float(np.average(accuracy, weights=weights))
    rhos = np.array([spearman(g[measure], g["human_rating"]) for g in groups])
    defined = ~np.isnan(rhos)
    if defined.any():
        out["within_rater_spearman"] = float(np.average(rhos[defined], weights=weights[defined]))
    return out


def vs_human(name: str, kind: str, frame: pd.DataFrame, minimum: int) -> list[dict]:
    """One row per measure of one scorer against the human ratings."""
    valid = frame[frame["valid"]]
    refused = int(frame["refused"].sum())
    counts = {
        "n": len(frame),
        "n_valid": len(valid),
        "n_invalid": len(frame) - len(valid) - refused,
        "n_refused": refused,
    }
    rows = []
    for measure in measures(kind):
        row = {"measure": measure, **counts}
        if measure == RATING_MEASURE and len(valid):
            predicted = valid[measure].astype(int)
            row["accuracy"] = accuracy_score(valid["human_rating"], predicted)
            with warnings.catch_warnings():  # a class never predicted is a warning, not an error
                warnings.simplefilter("ignore")
                row["balanced_accuracy"] = balanced_accuracy_score(valid["human_rating"], predicted)
        row["spearman"] = spearman(valid[measure], valid["human_rating"])
        row |= pairwise(valid, measure) | within_rater(valid, measure, minimum)
        rows.append(
            {"section": "vs_human", "scorer": name, "scorer_kind": kind, "reference": "human"}
            | row
            | {"protocol": OURS, "note": ""}
        )
    return rows


def _scalar(kind: str) -> str:
    return measures(kind)[0]


def vs_scorer(a: tuple[str, str, pd.DataFrame], b: tuple[str, str, pd.DataFrame]) -> dict:
    """Scorer a against scorer b on the responses both scored validly: Spearman of their
    rating / 15-mean, and exact agreement when both give ratings."""
    (name_a, kind_a, frame_a), (name_b, kind_b, frame_b) = a, b
    measure_a, measure_b = _scalar(kind_a), _scalar(kind_b)
    both = frame_a[frame_a["valid"]][[*KEY, measure_a]].merge(
        frame_b[frame_b["valid"]][[*KEY, measure_b]], on=KEY, suffixes=("_a", "_b")
    )
    col_a = measure_a + ("_a" if measure_a == measure_b else "")
    col_b = measure_b + ("_b" if measure_a == measure_b else "")
    row = {
        "section": "vs_scorer",
        "scorer": name_a,
        "scorer_kind": kind_a,
        "reference": name_b,
        "measure": f"{measure_a} vs {measure_b}",
        "n": len(both),
        "spearman": spearman(both[col_a], both[col_b]),
        "protocol": OURS,
        "note": "",
    }
    if measure_a == measure_b == RATING_MEASURE and len(both):
        row["exact_agreement"] = float((both[col_a] == both[col_b]).mean())
    return row


def reported_rows() -> list[dict]:
    return [
        {
            "section": "reported",
            "scorer": f"{scorer} ({STUDY})",
            "reference": "human",
            "measure": RATING_MEASURE,
            "accuracy": accuracy,
            "protocol": STUDY_PROTOCOL,
            "note": note,
        }
        for scorer, accuracy, note in REPORTED
    ]


def agreement_table(files: dict[str, str | Path], minimum: int) -> pd.DataFrame:
    """The table of the scorers' ``responses_test.jsonl`` files (name -> path, in order)."""
    scorers = [(name, *read_responses(path)) for name, path in files.items()]
    rows = [row for s in scorers for row in vs_human(*s, minimum)]
    rows += [vs_scorer(a, b) for a, b in itertools.combinations(scorers, 2)]
    rows += reported_rows()
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Scorers against the human ratings.")
    specs.add_spec_arguments(parser)
    parser.add_argument("--out", required=True, help="results/tables/scorer_agreement.csv")
    return parser


def _run(args: argparse.Namespace) -> None:
    spec, _ = specs.from_args(args, scoring_specs.scorer_agreement)
    files = {name: responses_path(name, "test") for name in spec["scorers"]}
    table = agreement_table(files, spec["within_rater_min"])
    write_csv(args.out, table)
    print(f"{args.out}: {len(table)} rows")


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
