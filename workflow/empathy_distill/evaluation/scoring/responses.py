"""The ``score_responses`` job: an LLM scorer scores the dataset's own human-rated responses.

The dataset (Welivita & Pu 2024) holds five responses per dialogue (the human's and four
LLMs'), each rated 1-3 by one rater. Scoring them with the same scorer that scores the answer
sets tells how far the scorer agrees with people (``agreement.py``) and gives the classifiers
their subfactor features. One record per (dialogue, responder), dialogue-major, in the format of
``score.py``'s records plus ``responder`` (the dataset's column suffix), ``annotator`` and
``human_rating``. Requests go through the same LLM layer call as ``score_answers``
(``score.run_scorer``: cache, Batch, budget, refusals, cost report). The items are built here
only (``response_items``); ``cost.py`` counts the same items.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ...core.command import run_cli
from ...core.errors import ConfigError, DatasetError
from ...data.dataset import RESPONDERS
from ..records import read_split
from .prompts import RATING, SUBFACTORS
from .score import ScoreItem, run_scorer, scoring_parser, scoring_spec, write_scores

#: Where a scorer's scores of one split's responses live (the shared contract of issue 13).
RESPONSES = "results/scores/{scorer}/responses_{split}.jsonl"
SPLITS = ("test", "train")
#: Scorer kinds scored through the LLM layer by this job (other kinds write their own files).
LLM_KINDS = (RATING, SUBFACTORS)
#: Dataset column suffixes of the five responders, in the dataset's order.
SUFFIXES = tuple(RESPONDERS.values())


@dataclass(frozen=True)
class RatedResponse:
    """One of the dataset's responses with who wrote it, who rated it and the rating."""

    item: ScoreItem
    responder: str
    annotator: str
    human_rating: int


def responses_path(scorer: str, split: str) -> str:
    return RESPONSES.format(scorer=scorer, split=split)


def scored_splits(config: dict) -> list[str]:
    """Splits whose responses every LLM scorer of the grid scores: ``test`` always (the
    agreement table reads it), ``train`` when ``scoring.human_responses`` lists it."""
    listed = config["scoring"]["human_responses"]
    return [split for split in SPLITS if split == "test" or split in listed]


def llm_scorers(config: dict) -> list[str]:
    """Scorers of ``scoring.grid`` that this job scores (kind rating or subfactors)."""
    defined = config["scoring"]["scorers"]
    return [name for name in config["scoring"]["grid"] if defined[name]["kind"] in LLM_KINDS]


def _rating(value: object, source: str, row: int, column: str) -> int:
    text = str(value).strip()
    if text not in ("1", "2", "3", "1.0", "2.0", "3.0"):
        raise DatasetError(f"{source}: row {row}, column {column}: {text} is not a rating 1-3")
    return int(float(text))


def response_items(frame: pd.DataFrame, source: str) -> list[RatedResponse]:
    """Every (dialogue, responder) of a split table, dialogue-major; a missing column or a
    rating outside 1-3 is an error naming ``source``, the row and the column."""
    needed = [f"{p}_{s}" for s in SUFFIXES for p in ("response", "rating", "annotator")]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DatasetError(f"{source}: missing column(s) {', '.join(missing)}")
    rated = []
    for number, row in enumerate(frame.to_dict("records"), 1):
        for suffix in SUFFIXES:
            item = ScoreItem(
                str(row["dialog_id"]),
                str(row["situation"]),
                str(row["speaker_uttr"]),
                str(row[f"response_{suffix}"]),
            )
            rating = _rating(row[f"rating_{suffix}"], source, number, f"rating_{suffix}")
            rated.append(RatedResponse(item, suffix, str(row[f"annotator_{suffix}"]), rating))
    return rated


def score_responses(
    spec: dict,
    split_csv: str | Path,
    cost_report: str | Path | None = None,
    runtime: dict | None = None,
) -> list[dict]:
    """Score every response of a split with the scorer of ``spec`` (``specs.score_answers``)."""
    if spec["kind"] not in LLM_KINDS:
        raise ConfigError(
            f"scorer {spec['scorer']!r} is of kind {spec['kind']!r}; score_responses scores with"
            f" LLM scorers only ({', '.join(LLM_KINDS)})"
        )
    rated = response_items(read_split(split_csv), str(split_csv))
    records = run_scorer(spec, [r.item for r in rated], cost_report=cost_report, runtime=runtime)
    return [
        record | {"responder": r.responder, "annotator": r.annotator, "human_rating": rating}
        for record, r, rating in zip(records, rated, [r.human_rating for r in rated], strict=True)
    ]


def _parser() -> argparse.ArgumentParser:
    parser = scoring_parser(
        "Score the dataset's human-rated responses of one split with an LLM scorer."
    )
    parser.add_argument("--split", required=True, help="results/data/{train,test}.csv")
    parser.add_argument("--out", required=True, help="results/scores/{scorer}/responses_*.jsonl")
    return parser


def _run(args: argparse.Namespace) -> None:
    spec, run = scoring_spec(args)
    records = score_responses(spec, args.split, cost_report=args.cost_report, runtime=run)
    write_scores(args.out, records, "responses")


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
