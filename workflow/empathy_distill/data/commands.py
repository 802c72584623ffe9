"""Data stage commands: download the dataset, validate and split it, write improve_human sources.

Called by the rules of ``workflow/rules/data.smk``; each command also runs on its own.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..core.command import run_subcommand
from . import dataset, sources, split

log = logging.getLogger("empathy_distill.data.commands")


def cmd_download(args: argparse.Namespace) -> None:
    path = Path(args.out)
    dataset.download(args.url, args.sha256, path)
    log.info("downloaded %s (sha256 %s)", path, args.sha256)


def cmd_split(args: argparse.Namespace) -> None:
    table = dataset.load_dataset(args.dataset)
    if args.sha256 and dataset.sha256_of(args.dataset) != args.sha256:
        log.warning(
            "%s differs from the pinned dataset (sha256 %s): results will not match "
            "the paper's counts",
            args.dataset,
            args.sha256,
        )
    train, test = split.split(table)
    log.info("split %d dialogues: %d train, %d test", len(table), len(train), len(test))
    train = split.limit(train, args.max_train)
    test = split.limit(test, args.max_test)
    for frame, out in ((train, args.train), (test, args.test)):
        if out is None:  # the scorers' train split alone (rule scorer_train_split)
            continue
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False)
        log.info("wrote %s (%d rows)", out, len(frame))


def cmd_sources(args: argparse.Namespace) -> None:
    train = dataset.load_dataset(args.train)
    table = sources.improve_human_sources(train)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    log.info("wrote %s: %s", args.out, table["role"].value_counts().to_dict())


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m empathy_distill.data.commands", description=__doc__
    )
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("download", help="fetch the dataset and verify its sha256")
    p.add_argument("--url", required=True)
    p.add_argument("--sha256", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("split", help="validate the dataset and write the paper's train/test split")
    p.add_argument("--dataset", required=True)
    p.add_argument("--sha256", default=None, help="warn when the file is not the pinned one")
    p.add_argument("--train", required=True)
    p.add_argument("--test", default=None, help="omitted: write the train split only")
    p.add_argument("--max-train", type=int, default=None)
    p.add_argument("--max-test", type=int, default=None)
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("sources", help="improve_human source table (SFT: human 3, DPO: 1-2)")
    p.add_argument("--train", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_sources)
    return top


def main(argv: list[str] | None = None) -> int:
    return run_subcommand(parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
