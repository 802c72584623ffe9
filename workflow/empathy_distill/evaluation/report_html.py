"""Build the Snakemake HTML report from inside the workflow (rule report_html).

``snakemake --report`` must run in a separate Snakemake process over the same Snakefile, working
directory and configuration. The rule's spec is the config's identity (``specs.report``, a
rerun trigger); the job puts the runtime part (``$EMPATHY_DISTILL_RUNTIME``) back, so the nested
run gets the whole final (merged) config and plans exactly the DAG that produced the results.
``--nolock`` because the running workflow holds the directory lock.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

from ..core import runtime, specs
from ..core.command import run_cli
from . import specs as evaluation_specs

log = logging.getLogger("empathy_distill.evaluation.report_html")


def build_report(snakefile: str, config: dict, out: str) -> None:
    from ..core.errors import EmpathyDistillError

    with tempfile.TemporaryDirectory(prefix="report-config-") as folder:
        frozen = Path(folder) / "config.json"
        frozen.write_text(json.dumps(config, sort_keys=True), encoding="utf-8")
        command = [
            sys.executable,
            "-m",
            "snakemake",
            "--nolock",
            "-s",
            snakefile,
            "--configfile",
            str(frozen),
            "--report",
            out,
        ]
        log.info("running %s", " ".join(command))
        status = subprocess.run(command).returncode
    if status != 0:
        raise EmpathyDistillError(f"snakemake --report failed with exit status {status}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m empathy_distill.evaluation.report_html", description=__doc__
    )
    parser.add_argument("--snakefile", required=True)
    specs.add_spec_arguments(parser)
    parser.add_argument("--out", required=True)
    return parser


def _run(args: argparse.Namespace) -> None:
    spec, run = specs.from_args(args, evaluation_specs.report, with_runtime=True)
    build_report(args.snakefile, runtime.merge(spec, run or {}), args.out)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
