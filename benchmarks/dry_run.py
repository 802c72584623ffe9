"""Time `snakemake -n` on the repository's default config and count the planned jobs per rule.

Why: the default grid (the paper's 84 trained models and 42 PRIDE models, their answers, every
judge x comparison) must plan in seconds, or every edit-and-check cycle on a cluster login node
gets slow. This script measures
the dry run as a user types it (`snakemake -n`, every job printed with its reason) and the
quiet variant (`-n --quiet rules`, only the job table), and prints the "Job stats" table that
Snakemake computes, so the grid's size can be checked against the paper at a glance.

Usage (from anywhere; runs in the repository root)::

    python benchmarks/dry_run.py                      # default config.yaml
    python benchmarks/dry_run.py --repeat 1           # one run per variant (default: best of 3)
    python benchmarks/dry_run.py -- --configfile demo.yaml   # extra snakemake arguments

The last line is always `dry_run_s=<seconds of the plain -n run> jobs=<total planned jobs>`.
Exit status 1 (with snakemake's error, and no summary line) when the dry run fails.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_common import REPO, load_line, speed_line

VARIANTS: dict[str, list[str]] = {
    "-n": ["--dry-run"],
    "-n --quiet rules": ["--dry-run", "--quiet", "rules"],
}
_ROW = re.compile(r"^(\S+)\s+(\d+)$")


def parse_job_stats(output: str) -> dict[str, int]:
    """Rule -> planned job count from the first "Job stats:" table (empty if nothing to do).

    The table's `total` row is left out; the caller sums the rules.
    """
    lines = output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Job stats:")
    except StopIteration:
        return {}
    counts: dict[str, int] = {}
    # Header ("job count") and rule ("---- -----") precede the rows; a blank line ends them.
    for line in lines[start + 3 :]:
        match = _ROW.match(line.strip())
        if not match:
            break
        name, count = match.group(1), int(match.group(2))
        if name == "total":
            break
        counts[name] = count
    return counts


def time_dry_run(args: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Wall seconds of one `snakemake` call (a fresh process: includes Python start-up)."""
    cmd = [sys.executable, "-m", "snakemake", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - t0, proc


def main(argv: list[str] | None = None) -> int:
    """Run each dry-run variant `--repeat` times; print timings, job table and summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant (best is kept)")
    parser.add_argument("--directory", type=Path, default=REPO, help="where to run snakemake")
    parser.add_argument("snakemake_args", nargs="*", help="extra snakemake args (after --)")
    args = parser.parse_args(argv)
    extra = list(args.snakemake_args)

    print(load_line("before"))
    print(speed_line())
    best: dict[str, float] = {}
    counts: dict[str, int] = {}
    # Baseline: starting Python and importing Snakemake, paid by every call whatever the DAG.
    startup = min(
        time_dry_run(["--version"], args.directory)[0] for _ in range(max(1, args.repeat))
    )
    print(f"snakemake {'--version':<18} {startup:7.2f} s (start-up baseline)")
    for name, variant in VARIANTS.items():
        times = []
        for _ in range(max(1, args.repeat)):
            seconds, proc = time_dry_run([*variant, *extra], args.directory)
            if proc.returncode != 0:
                print(f"snakemake {' '.join(variant + extra)} failed ({proc.returncode}):")
                print((proc.stdout + proc.stderr)[-4000:])
                return 1
            times.append(seconds)
            if name == "-n":
                counts = parse_job_stats(proc.stdout + proc.stderr)
        best[name] = min(times)
        spread = f" (median {statistics.median(times):.2f})" if len(times) > 1 else ""
        print(f"snakemake {name:<18} {best[name]:7.2f} s{spread}")

    print()
    width = max([len("rule"), *map(len, counts)])
    print(f"{'rule':<{width}}  jobs")
    for rule, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"{rule:<{width}}  {n:4d}")
    total = sum(counts.values())
    print(f"planning (-n minus start-up): {max(0.0, best['-n'] - startup):.2f} s")
    print(f"{'total':<{width}}  {total:4d}")
    print(f"dry_run_s={best['-n']:.2f} jobs={total}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
