"""Dataset-stage commands: write LLaMA-Factory sets, their dataset_info.json, the leakage guard.

Called by the rules of ``workflow/rules/datasets.smk``. Every set is validated before it is
written (see :mod:`empathy_distill.distillation.formats`). The ``direct`` and ``improved``
commands also run the leakage guard on the pair they wrote and register it in its folder's
dataset_info.json (``--test``, ``--leakage-ok``, ``--info``): one job per data configuration.
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


def _write_pair(sft: list[dict], dpo: list[dict], args: argparse.Namespace) -> None:
    """Write the pair, then guard it (no test dialogue) and register it, in that order: the
    leakage flag and dataset_info.json exist only for a pair that passed the guard."""
    formats.write_set(sft, args.sft, "sft")
    formats.write_set(dpo, args.dpo, "dpo")
    log.info(
        "wrote %s (%d SFT records) and %s (%d DPO pairs)", args.sft, len(sft), args.dpo, len(dpo)
    )
    pair = [args.sft, args.dpo]
    _guard(args.test, pair, args.leakage_ok)
    _register(pair, args.info)


def cmd_direct(args: argparse.Namespace) -> None:
    train = dataset.load_dataset(args.train)
    sft, dpo = sets.direct_records(train, args.strategy, Prompts(args.prompts), args.dpo_filter)
    _write_pair(sft, dpo, args)


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
    _write_pair(*sets.pooled(parts), args)


def _register(set_paths: list[str], out: str) -> None:
    """dataset_info.json whose file_names are relative to the folder the file is written in."""
    root = Path(out).parent
    info = {}
    for path in set_paths:
        method, strategy, stage = (
            Path(path).parent.parent.name,
            Path(path).parent.name,
            Path(path).stem,
        )
        relative = os.path.relpath(path, root)
        info[formats.dataset_key(method, strategy, stage)] = formats.dataset_info_entry(
            relative, stage
        )
    formats.write_json(info, out)
    log.info("registered %d sets in %s", len(info), out)


def _guard(test: str, set_paths: list[str], out: str) -> None:
    """Fail if a test dialogue is in a training file; else write the flag training waits for."""
    for path in set_paths:
        formats.validate_records(formats.read_set(path), Path(path).stem, path)
    checked = check_no_leakage(test, set_paths)
    Path(out).write_text(
        f"checked {checked} records in {len(set_paths)} file(s): no test dialogue found\n",
        encoding="utf-8",
    )
    log.info("leakage guard passed on %d records", checked)


def cmd_dataset_info(args: argparse.Namespace) -> None:
    _register(args.sets, args.out)


def _add_guard_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--test", required=True, help="the test split no training file may contain")
    p.add_argument("--info", required=True, help="the pair's dataset_info.json")
    p.add_argument("--leakage-ok", required=True, help="the flag written when the guard passes")


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
    _add_guard_arguments(p)
    p.set_defaults(func=cmd_direct)

    p = sub.add_parser("improved", help="sets from teacher rewrites (several files are pooled)")
    p.add_argument("--sources", required=True)
    p.add_argument("--teacher", required=True, nargs="+")
    p.add_argument("--prompts", required=True)
    p.add_argument("--sft", required=True)
    p.add_argument("--dpo", required=True)
    _add_guard_arguments(p)
    p.set_defaults(func=cmd_improved)

    p = sub.add_parser("dataset-info", help="register sets in a dataset_info.json")
    p.add_argument("--sets", required=True, nargs="+")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_dataset_info)
    return top


def main(argv: list[str] | None = None) -> int:
    return run_subcommand(parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
