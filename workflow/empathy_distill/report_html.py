"""Build the Snakemake HTML report from inside the workflow (rule report_html).

``snakemake --report`` must run in a separate Snakemake process over the same Snakefile, working
directory and configuration; the rule passes its final (merged) config so the report's DAG is
exactly the one that produced the results. ``--nolock`` because the running workflow holds the
directory lock.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("empathy_distill.report_html")


def build_report(snakefile: str, config_json: str, out: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        handle.write(config_json)
        frozen = handle.name
    try:
        command = [
            sys.executable,
            "-m",
            "snakemake",
            "--nolock",
            "-s",
            snakefile,
            "--configfile",
            frozen,
            "--report",
            out,
        ]
        log.info("running %s", " ".join(command))
        subprocess.run(command, check=True)
    finally:
        Path(frozen).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(
        prog="python -m empathy_distill.report_html", description=__doc__
    )
    parser.add_argument("--snakefile", required=True)
    parser.add_argument("--config-json", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        build_report(args.snakefile, args.config_json, args.out)
    except subprocess.CalledProcessError as exc:
        log.error("snakemake --report failed with exit status %s", exc.returncode)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
