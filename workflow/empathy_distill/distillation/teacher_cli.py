"""Command line of the teacher stage (``workflow/rules/teacher.smk``).

Commands (``python -m empathy_distill.distillation.teacher_cli <command> ...``):

* ``initial``: the teacher's own response to every dialogue (train + test) ->
  ``results/teacher/initial.jsonl``; the test rows also go to ``results/answers/teacher.jsonl``
  (the teacher as a comparator in evaluation).
* ``llm-sources``: ``improve_llm`` sources: ``train.sample(n=950, random_state=42)`` of the train
  rows in dataset order are the SFT sources, the other 800 the DPO sources (the paper's public
  code, ``improve_llm_sft_sample`` in config.yaml).
* ``improve``: one strategy over one method's sources ->
  ``results/teacher/{method}/{strategy}.jsonl``.
  ``improve_three_dimensions_sequentially`` is a 3-turn chat run in waves (all first turns, then
  all second turns, ...); its first turn is exactly the ``improve_cognitive`` request, so it is a
  cache hit when both strategies run.

A job takes its spec (``specs.teacher``: the teacher's identity, cache, price table) as
``--spec`` and its runtime settings (rate limits, retries, budget) from
``$EMPATHY_DISTILL_RUNTIME`` (``runtime.py``); by hand, ``--config FILE`` gives both.
"""

from __future__ import annotations

import argparse

from ..core import specs
from ..core.atomic import write_csv
from ..core.command import run_cli
from ..core.config import resolve_resource
from ..core.prompts import Prompts
from ..core.readers import read_jsonl, read_table
from . import specs as distillation_specs
from . import teacher
from .sets import SOURCE_COLUMNS

COST_REPORT = "results/costs/teacher.csv"


def _parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m empathy_distill.distillation.teacher_cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("initial", help="teacher's initial response to every dialogue")
    specs.add_spec_arguments(p)
    p.add_argument("--prompts", required=True, help="prompts.json")
    p.add_argument("--cost-report", default=COST_REPORT, help="CSV to append usage to")
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--out", required=True, help="results/teacher/initial.jsonl")
    p.add_argument("--answers", help="results/answers/teacher.jsonl (test rows)")

    p = sub.add_parser("llm-sources", help="improve_llm sources: SFT sample / DPO rest")
    specs.add_spec_arguments(p)
    p.add_argument("--train", required=True)
    p.add_argument("--initial", required=True)
    p.add_argument("--out", required=True)

    p = sub.add_parser("improve", help="one improvement strategy over one method's sources")
    specs.add_spec_arguments(p)
    p.add_argument("--prompts", required=True, help="prompts.json")
    p.add_argument("--cost-report", default=COST_REPORT, help="CSV to append usage to")
    p.add_argument("--method", required=True, choices=["improve_human", "improve_llm"])
    p.add_argument("--strategy", required=True)
    p.add_argument("--sources", required=True)
    p.add_argument("--out", required=True)
    return top


def _llm_sources(args: argparse.Namespace) -> None:
    sample, _ = specs.from_args(args, distillation_specs.llm_sources)
    train = read_table(args.train, ["dialog_id", "situation", "speaker_uttr", "response_human"])
    table = teacher.llm_sources(train, read_jsonl(args.initial), sample["n"], sample["seed"])
    write_csv(args.out, table)


def _run(args: argparse.Namespace) -> None:
    if args.command == "llm-sources":
        _llm_sources(args)
        return
    spec, run = specs.from_args(args, distillation_specs.teacher, with_runtime=True)
    client = teacher.make_teacher_client(spec, run or {}, args.cost_report)
    prompts = Prompts(resolve_resource(args.prompts))
    if args.command == "initial":
        columns = ["dialog_id", "situation", "speaker_uttr"]
        train, test = read_table(args.train, columns), read_table(args.test, columns)
        teacher.run_initial(client, prompts, train, test, args.out, args.answers)
    else:
        sources = read_table(args.sources, SOURCE_COLUMNS)
        teacher.run_improve(client, prompts, args.method, args.strategy, sources, args.out)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
