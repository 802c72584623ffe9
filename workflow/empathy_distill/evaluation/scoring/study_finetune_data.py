"""The ``study_scorer_data`` job: a fine-tuned scorer's examples on the study's protocol.

The study's balanced set (``unified_balanced_dataset.csv``, sha256-checked and validated by
``data/scoring_study.py``) is split exactly as the classifier table splits it
(:func:`.study_split.study_split`: 80/20, stratified by rating, ``random_state=42``; the
study's ``finetune-gpt-40-mini.py`` calls the same ``train_test_split`` on the same rows). Each
response of the 80% becomes one chat of the scorer's own rating prompt answered by its human
rating (the format of :mod:`.train_data`, which the OpenAI API and LLaMA-Factory both read); the
20% goes to ``test.csv`` for the tuned scorer to rate. No response is in both.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ...core import specs
from ...core.atomic import atomic_write
from ...core.command import run_cli
from ...core.config import resolve_resource
from ...core.errors import ConfigError
from ...data import scoring_study as study
from . import specs as scoring_specs
from . import train_data
from .prompts import RATING, scoring_prompt
from .study_split import study_split

#: Columns of test.csv: the study's response id first, then what the prompt and the table need.
TEST_COLUMNS = ("unified_dialog_id", "dialog_id", "type", "situation", "speaker_uttr", "response")
RATING_COLUMN = "rating"


def split_rows(
    balanced: pd.DataFrame, max_train: int | None = None, max_test: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) rows of the balanced set: the classifier table's split, each cut to its
    first ``max_*`` rows in the split's order when set (smoke runs)."""
    train, test = study_split(balanced[RATING_COLUMN].to_numpy(dtype=int))
    train, test = train[:max_train], test[:max_test]
    return balanced.iloc[train].reset_index(drop=True), balanced.iloc[test].reset_index(drop=True)


def examples(train: pd.DataFrame, spec: dict) -> list[dict]:
    """One chat per response of the 80%, in the split's order: the scorer's prompt (its
    variant), answered by the human rating as one digit; with ``train_data``'s index columns."""
    prompt = scoring_prompt(RATING, spec["variant"], resolve_resource(spec["prompts"]))
    found = []
    for row in train.to_dict("records"):
        system, user = prompt.messages(
            str(row["situation"]), str(row["speaker_uttr"]), str(row["response"])
        )
        rating = int(row[RATING_COLUMN])
        found.append(
            {
                "dialog_id": str(row["unified_dialog_id"]),
                "responder": str(row["type"]),
                "annotator": "",  # the balanced set does not name its raters
                "human_rating": rating,
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": user},
                    {"role": "assistant", "content": str(rating)},
                ],
            }
        )
    return found


def write_test(test: pd.DataFrame, out: Path) -> None:
    with atomic_write(out) as handle:
        test[[*TEST_COLUMNS, RATING_COLUMN]].to_csv(handle, index=False, lineterminator="\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="A scorer's examples on the study's protocol.")
    specs.add_spec_arguments(parser)
    parser.add_argument("--scorer", help="with --config: a key of config.scoring.scorers")
    parser.add_argument("--balanced", required=True, help="unified_balanced_dataset.csv")
    parser.add_argument("--out", required=True, help=".../study_balanced/train.jsonl")
    parser.add_argument("--index", required=True, help="train_index.csv, one row per example")
    parser.add_argument("--dataset-info", required=True, help="LLaMA-Factory dataset_info.json")
    parser.add_argument("--test-out", required=True, help="test.csv: the 20% to rate")
    return parser


def _run(args: argparse.Namespace) -> None:
    if args.config and not args.scorer:
        raise ConfigError("--config needs --scorer (a key of config.scoring.scorers)")
    spec, _ = specs.from_args(
        args, lambda config: scoring_specs.study_scorer_data(config, args.scorer)
    )
    out = Path(args.out)
    if Path(args.dataset_info).parent != out.parent:
        raise ConfigError("--dataset-info must sit beside --out (its file_name is relative)")
    balanced = study.read_balanced(args.balanced, spec["balanced_sha256"])
    train, test = split_rows(balanced, spec["max_train"], spec["max_test"])
    found = examples(train, spec)
    train_data.write(found, out, Path(args.index), Path(args.dataset_info))
    write_test(test, Path(args.test_out))
    counts = train[RATING_COLUMN].value_counts().sort_index().to_dict()
    print(f"{out}: {len(found)} examples, ratings {counts}; {args.test_out}: {len(test)} to rate")


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
