"""The ``scorer_train_data`` job: a rating scorer's fine-tuning examples from the train split.

Every response of the train split (the human one and the four LLMs', each rated 1-3 by a human
rater) becomes one chat: the study's rating prompt for that response, exactly as the scorer will
be asked (:mod:`.prompts`, the scorer's variant), answered by the human rating as one digit. The
file is OpenAI's chat fine-tuning JSONL (one ``{"messages": [...]}`` per line), which the OpenAI
API takes as is and LLaMA-Factory reads through the ``dataset_info.json`` written beside it
(sharegpt formatting, role/content tags, a leading system turn). ``train_index.csv`` says which
response each line is. The job also reads the test split only to refuse any of its dialogues.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ...core import specs
from ...core.atomic import atomic_write
from ...core.command import run_cli
from ...core.config import resolve_resource
from ...core.errors import ConfigError, DatasetError
from ...data.dataset import RESPONDERS
from ..records import read_split
from . import specs as scoring_specs
from .finetune import DATASET_KEY
from .prompts import RANGES, RATING, scoring_prompt

INDEX_COLUMNS = ("dialog_id", "responder", "annotator", "human_rating")


def examples(train: pd.DataFrame, spec: dict, source: str = "train") -> list[dict]:
    """One example per (train dialogue, responder), in file then responder order, balanced and
    capped as the spec says. Each holds ``messages`` and the index columns."""
    prompt = scoring_prompt(RATING, spec["variant"], resolve_resource(spec["prompts"]))
    low, high = RANGES[RATING]
    found = []
    for number, row in enumerate(train.to_dict("records")):
        for suffix in RESPONDERS.values():
            rating = row.get(f"rating_{suffix}")
            try:
                rating = int(rating)
            except (TypeError, ValueError):
                rating = None
            if rating is None or not low <= rating <= high:
                raise DatasetError(
                    f"{source}: row {number + 2} ({row['dialog_id']}): rating_{suffix} is"
                    f" {row.get(f'rating_{suffix}')!r}, expected an integer {low}-{high}"
                )
            system, user = prompt.messages(
                str(row["situation"]), str(row["speaker_uttr"]), str(row[f"response_{suffix}"])
            )
            found.append(
                {
                    "dialog_id": str(row["dialog_id"]),
                    "responder": suffix,
                    "annotator": str(row.get(f"annotator_{suffix}", "")),
                    "human_rating": rating,
                    "messages": [
                        {"role": "system", "content": system},
                        {"role": "user", "content": user},
                        {"role": "assistant", "content": str(rating)},
                    ],
                }
            )
    return select(found, spec["balance"], spec["max_examples"], spec["seed"])


def select(found: list[dict], balance: str, max_examples: int | None, seed: int) -> list[dict]:
    """Downsample every rating class to the smallest (``balance: downsample``), then keep at
    most ``max_examples`` at random; the kept examples stay in their original order."""
    rng = np.random.default_rng(seed)
    keep = np.arange(len(found))
    if balance == "downsample":
        ratings = np.array([e["human_rating"] for e in found])
        classes = np.unique(ratings)
        smallest = min(int((ratings == c).sum()) for c in classes)
        keep = np.concatenate(
            [rng.choice(np.flatnonzero(ratings == c), smallest, replace=False) for c in classes]
        )
    if max_examples is not None and len(keep) > max_examples:
        keep = rng.choice(keep, max_examples, replace=False)
    return [found[i] for i in sorted(int(i) for i in keep)]


def refuse_test_dialogues(train: pd.DataFrame, test: pd.DataFrame, source: str) -> None:
    """A scorer evaluated on the test split must never have trained on one of its dialogues."""
    shared = sorted(set(train["dialog_id"].astype(str)) & set(test["dialog_id"].astype(str)))
    if shared:
        raise DatasetError(
            f"{source}: {len(shared)} dialogue(s) of the test split, e.g. {shared[0]!r}; a"
            " scorer must not train on the split it is evaluated on"
        )


def dataset_info(file_name: str) -> dict:
    """LLaMA-Factory 0.9.5's entry for OpenAI chat JSONL (``data/parser.py``: sharegpt
    formatting, role/content tags; ``data/converter.py`` takes a first system turn as system)."""
    return {
        DATASET_KEY: {
            "file_name": file_name,
            "formatting": "sharegpt",
            "columns": {"messages": "messages"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
                "system_tag": "system",
            },
        }
    }


def write(found: list[dict], train_jsonl: Path, index_csv: Path, info_json: Path) -> None:
    with atomic_write(train_jsonl) as handle:
        for example in found:
            handle.write(json.dumps({"messages": example["messages"]}, ensure_ascii=False) + "\n")
    with atomic_write(index_csv) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(INDEX_COLUMNS)
        writer.writerows([e[c] for c in INDEX_COLUMNS] for e in found)
    with atomic_write(info_json) as handle:
        json.dump(dataset_info(train_jsonl.name), handle, indent=1)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="A rating scorer's fine-tuning examples.")
    specs.add_spec_arguments(parser)
    parser.add_argument("--scorer", help="with --config: a key of config.scoring.scorers")
    parser.add_argument("--train", required=True, help="results/data/scorer_train.csv")
    parser.add_argument("--test", required=True, help="results/data/test.csv (refused in train)")
    parser.add_argument("--out", required=True, help="train.jsonl (OpenAI chat fine-tuning JSONL)")
    parser.add_argument("--index", required=True, help="train_index.csv, one row per example")
    parser.add_argument("--dataset-info", required=True, help="LLaMA-Factory dataset_info.json")
    return parser


def _run(args: argparse.Namespace) -> None:
    if args.config and not args.scorer:
        raise ConfigError("--config needs --scorer (a key of config.scoring.scorers)")
    spec, _ = specs.from_args(
        args, lambda config: scoring_specs.scorer_train_data(config, args.scorer)
    )
    train = read_split(args.train)
    refuse_test_dialogues(train, read_split(args.test), args.train)
    found = examples(train, spec, args.train)
    if not found:
        raise DatasetError(f"{args.train}: no training example for scorer {spec['scorer']}")
    out = Path(args.out)
    if Path(args.dataset_info).parent != out.parent:
        raise ConfigError("--dataset-info must sit beside --out (its file_name is relative)")
    write(found, out, Path(args.index), Path(args.dataset_info))
    counts = pd.Series([e["human_rating"] for e in found]).value_counts().sort_index()
    print(f"{out}: {len(found)} examples, ratings {dict(counts.items())}")


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
