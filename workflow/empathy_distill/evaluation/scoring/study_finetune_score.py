"""The ``score_study_test`` job: the scorer tuned on the study's 80% rates the other 20%.

Each response of ``test.csv`` (rule ``study_scorer_data``) is asked with the scorer's own prompt
through the LLM layer, as ``score_answers`` asks (``score.run_scorer``: cache, Batch, budget,
refusals, cost report), with the model that ``model.json`` of the study's protocol names. One
record per response, in the split's order: the scoring record (``dialog_id`` is the study's
response id, ``<dialog_id>_type:<type>``) plus ``type`` and ``human_rating``. An invalid or
refused reply keeps ``valid: false`` and no score; the table counts it as a miss.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ...core.command import run_cli
from ...core.errors import DatasetError
from .score import ScoreItem, run_scorer, scoring_parser, scoring_spec, write_scores
from .study_finetune_data import RATING_COLUMN, TEST_COLUMNS


def read_test(path: str | Path) -> pd.DataFrame:
    """test.csv of the study's protocol; a missing column or a rating outside 1-3 is refused."""
    frame = pd.read_csv(path, dtype={c: str for c in TEST_COLUMNS})
    missing = [c for c in (*TEST_COLUMNS, RATING_COLUMN) if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}")
    bad = ~frame[RATING_COLUMN].isin([1, 2, 3])
    if bad.any():
        row = int(frame.index[bad][0]) + 2
        raise DatasetError(f"{path}: row {row}: rating {frame[RATING_COLUMN][bad].iloc[0]!r}")
    return frame


def score_test(
    spec: dict, test_csv: str | Path, cost_report: str | Path | None, runtime: dict | None
) -> list[dict]:
    """Score every response of ``test_csv`` with the (fine-tuned) scorer of ``spec``."""
    frame = read_test(test_csv)
    items = [
        ScoreItem(str(r["unified_dialog_id"]), r["situation"], r["speaker_uttr"], r["response"])
        for r in frame.to_dict("records")
    ]
    records = run_scorer(spec, items, cost_report=cost_report, runtime=runtime)
    return [
        record | {"type": row["type"], "human_rating": int(row[RATING_COLUMN])}
        for record, row in zip(records, frame.to_dict("records"), strict=True)
    ]


def _parser() -> argparse.ArgumentParser:
    parser = scoring_parser("Rate the study's 20% with the scorer tuned on its 80%.")
    parser.add_argument("--test", required=True, help=".../study_balanced/test.csv")
    parser.add_argument("--out", required=True, help=".../study_balanced/predictions.jsonl")
    return parser


def _run(args: argparse.Namespace) -> None:
    if not args.scorer_model:
        raise DatasetError("--scorer-model: the study protocol's model.json is required")
    spec, run = scoring_spec(args)
    records = score_test(spec, args.test, args.cost_report, run)
    write_scores(args.out, records, "study test responses")


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
