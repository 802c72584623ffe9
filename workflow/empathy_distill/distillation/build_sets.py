"""Dataset-stage commands: write LLaMA-Factory sets, their dataset_info.json, the leakage guard.

Called by the rules of ``workflow/rules/datasets.smk``. Every set is validated before it is
written (see :mod:`empathy_distill.distillation.formats`).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import pandas as pd

from ..core.command import run_subcommand
from ..core.prompts import Prompts
from ..data import dataset
from . import formats, sets
from .leakage import check_no_leakage

log = logging.getLogger("empathy_distill.distillation.build_sets")


def _write_pair(sft: list[dict], dpo: list[dict], out_sft: str, out_dpo: str) -> None:
    formats.write_set(sft, out_sft, "sft")
    formats.write_set(dpo, out_dpo, "dpo")
    log.info(
        "wrote %s (%d SFT records) and %s (%d DPO pairs)", out_sft, len(sft), out_dpo, len(dpo)
    )


def cmd_direct(args: argparse.Namespace) -> None:
    train = dataset.load_dataset(args.train)
    sft, dpo = sets.direct_records(train, args.strategy, Prompts(args.prompts), args.dpo_filter)
    _write_pair(sft, dpo, args.sft, args.dpo)


def cmd_improved(args: argparse.Namespace) -> None:
    sources = pd.read_csv(args.sources, keep_default_na=False)
    prompts = Prompts(args.prompts)
    parts = []
    for path in args.teacher:
        improved, refused = sets.read_teacher_file(path)
        left_out = [d for d in sources["dialog_id"] if d in refused]
        if left_out:
            log.warning(
                "%s: %d of %d source dialogue(s) refused by the teacher's provider, left out"
                " of the sets: %s",
                path,
                len(left_out),
                len(sources),
                ", ".join(map(str, left_out[:10])) + (" ..." if len(left_out) > 10 else ""),
            )
        parts.append(sets.improved_records(sources, improved, prompts, path, refused))
    _write_pair(*sets.pooled(parts), args.sft, args.dpo)


def cmd_dataset_info(args: argparse.Namespace) -> None:
    """dataset_info.json whose file_names are relative to the folder the file is written in."""
    root = Path(args.out).parent
    info = {}
    for path in args.sets:
        method, strategy, stage = (
            Path(path).parent.parent.name,
            Path(path).parent.name,
            Path(path).stem,
        )
        relative = os.path.relpath(path, root)
        info[formats.dataset_key(method, strategy, stage)] = formats.dataset_info_entry(
            relative, stage
        )
    formats.write_json(info, args.out)
    log.info("registered %d sets in %s", len(info), args.out)


def cmd_leakage(args: argparse.Namespace) -> None:
    for path in args.sets:
        formats.validate_records(formats.read_set(path), Path(path).stem, path)
    checked = check_no_leakage(args.test, args.sets)
    Path(args.out).write_text(
        f"checked {checked} records in {len(args.sets)} file(s): no test dialogue found\n",
        encoding="utf-8",
    )
    log.info("leakage guard passed on %d records", checked)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m empathy_distill.distillation.build_sets", description=__doc__
    )
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("direct", help="direct distillation sets from the dataset's LLM responses")
    p.add_argument("--train", required=True)
    p.add_argument("--strategy", required=True)
    p.add_argument("--dpo-filter", choices=sets.DPO_FILTERS, default="intended")
    p.add_argument("--prompts", required=True)
    p.add_argument("--sft", required=True)
    p.add_argument("--dpo", required=True)
    p.set_defaults(func=cmd_direct)

    p = sub.add_parser("improved", help="sets from teacher rewrites (several files are pooled)")
    p.add_argument("--sources", required=True)
    p.add_argument("--teacher", required=True, nargs="+")
    p.add_argument("--prompts", required=True)
    p.add_argument("--sft", required=True)
    p.add_argument("--dpo", required=True)
    p.set_defaults(func=cmd_improved)

    p = sub.add_parser("dataset-info", help="register sets in a dataset_info.json")
    p.add_argument("--sets", required=True, nargs="+")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_dataset_info)

    p = sub.add_parser("leakage", help="fail if a test dialogue is in a training file")
    p.add_argument("--test", required=True)
    p.add_argument("--sets", required=True, nargs="+")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_leakage)
    return top


def main(argv: list[str] | None = None) -> int:
    return run_subcommand(parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
