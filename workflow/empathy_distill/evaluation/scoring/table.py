"""The ``empathy_scores`` job: per answer set and scorer, mean scores with bootstrap intervals.

For a rating scorer the measure is the mean 1-3 rating; for a subfactor scorer, each dimension
(cognitive, affective, compassionate) is the mean of its 5 subfactor scores per answer, then
averaged over the answer set. Only valid replies enter a mean; invalid and refused replies are
counted in their own columns. Intervals are percentile bootstraps over the answers
(``stats.bootstrap_mean_ci``, seeded by ``evaluation.seed``), as for the win rates.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ...core import grid, specs
from ...core.atomic import write_csv
from ...core.command import run_cli
from ..records import AnswersError, read_jsonl
from ..stats import bootstrap_mean_ci
from . import specs as scoring_specs
from .prompts import DIMENSIONS, MEASURED_AS, RATING, SUBFACTORS_PER_DIMENSION

COLUMNS = (
    "answer_set",
    "answer_kind",
    "student",
    "method",
    "strategy",
    "stage",
    "scorer",
    "scorer_kind",
    "variant",
    "measure",
    "mean",
    "ci_low",
    "ci_high",
    "n",
    "n_valid",
    "n_invalid",
    "n_refused",
)


def measures(kind: str) -> tuple[str, ...]:
    """What a scorer of ``kind`` measures: the rating, or the three dimensions."""
    return ("rating",) if MEASURED_AS[kind] == RATING else DIMENSIONS


def per_answer(scores: Sequence[int], kind: str) -> dict[str, float]:
    """measure -> value of one valid reply (a dimension: the mean of its 5 subfactors)."""
    if MEASURED_AS[kind] == RATING:
        return {"rating": float(scores[0])}
    size = SUBFACTORS_PER_DIMENSION
    return {d: float(np.mean(scores[i * size : (i + 1) * size])) for i, d in enumerate(DIMENSIONS)}


def summarize_scores(
    records: Sequence[dict], kind: str, n_boot: int, seed: int
) -> list[dict[str, object]]:
    """One row per measure: mean, 95 % interval and the counts of one scores file."""
    valid = [per_answer(r["scores"], kind) for r in records if r["valid"]]
    refused = sum(r.get("refusal") is not None for r in records)
    rows = []
    for measure in measures(kind):
        values = [v[measure] for v in valid]
        low, high = bootstrap_mean_ci(values, n_boot, seed)
        rows.append(
            {
                "measure": measure,
                "mean": float(np.mean(values)) if values else float("nan"),
                "ci_low": low,
                "ci_high": high,
                "n": len(records),
                "n_valid": len(valid),
                "n_invalid": len(records) - len(valid) - refused,
                "n_refused": refused,
            }
        )
    return rows


def _answer_columns(tag: str) -> dict[str, str]:
    info = grid.parse_tag(tag)
    return {
        "answer_set": tag,
        "answer_kind": info["kind"],
        **{k: info.get(k, "") for k in ("student", "method", "strategy", "stage")},
    }


def empathy_table(spec: dict) -> pd.DataFrame:
    """The table of a spec (``specs.empathy_scores``), reading the files its manifest lists."""
    rows = []
    for entry in scoring_specs.score_manifest(spec):
        scorer = spec["scorers"][entry["scorer"]]
        records = read_jsonl(entry["path"])
        if not records:
            raise AnswersError(f"{entry['path']}: no scores")
        kind, variant = scorer["kind"], scorer["variant"]  # resolved by specs
        for number, record in enumerate(records, 1):
            if record.get("kind") != kind or record.get("variant") != variant:
                raise AnswersError(
                    f"{entry['path']}: line {number} was scored as {record.get('kind')}/"
                    f"{record.get('variant')}, the scorer is {kind}/{variant}"
                    " (rerun its score_answers job)"
                )
        for row in summarize_scores(records, kind, spec["bootstrap_samples"], spec["seed"]):
            rows.append(
                {
                    **_answer_columns(entry["answers"]),
                    "scorer": entry["scorer"],
                    "scorer_kind": kind,
                    "variant": variant,
                    **row,
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Empathy scores per answer set and scorer.")
    specs.add_spec_arguments(parser)
    parser.add_argument("--out", required=True, help="results/tables/empathy_scores.csv")
    return parser


def _run(args: argparse.Namespace) -> None:
    spec, _ = specs.from_args(args, scoring_specs.empathy_scores)
    table = empathy_table(spec)
    write_csv(args.out, table)
    print(f"{args.out}: {len(table)} rows")


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
