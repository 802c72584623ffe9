"""Where the test suite's time goes, per test file, and what it skipped, from CI's JUnit XML.

Why: CI is throughput-bound on two cores (every test file's time adds up, whichever worker runs
it), so the next cut starts from the files that take the most, not from the slowest single test
that ``--durations`` shows. Each test's time is pytest's total of setup, call and teardown.

Usage::

    python benchmarks/suite_times.py results/ci/junit.xml        # after `bash .ci/run`
    python -m pytest -n 2 --junitxml=junit.xml && python benchmarks/suite_times.py junit.xml

Prints the files by time taken (tests, seconds, share), then the slowest tests. With
``--allow-skips FILE`` (repeatable) it exits 1, naming them, when a test of any other file was
skipped: CI runs every test, and a skip there is coverage lost without a failure.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TestTime:
    file: str
    name: str
    seconds: float
    skipped: str | None = None  # pytest's reason, when the test was skipped


def read_junit(path: Path) -> list[TestTime]:
    """Every ``<testcase>`` of the report: its file (from pytest's dotted classname), name, time."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as error:
        raise SystemExit(f"{path}: not a readable JUnit XML report ({error})") from error
    tests = []
    for case in root.iter("testcase"):
        classname = case.get("classname", "")
        # pytest writes "tests.test_demo" (or "tests.test_x.TestClass"): the module is the part
        # up to the first component that starts with "test_", made a path again.
        parts = classname.split(".")
        module = next((i for i, part in enumerate(parts) if part.startswith("test_")), None)
        file = "/".join(parts[: module + 1]) + ".py" if module is not None else classname
        skip = case.find("skipped")
        reason = None if skip is None else (skip.get("message") or "skipped")
        seconds = float(case.get("time", 0) or 0)
        tests.append(TestTime(file, case.get("name", ""), seconds, reason))
    return tests


def per_file(tests: list[TestTime]) -> list[tuple[str, int, float]]:
    """(file, tests, seconds), the file that took longest first (ties by name)."""
    seconds: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for test in tests:
        seconds[test.file] += test.seconds
        counts[test.file] += 1
    return sorted(((f, counts[f], s) for f, s in seconds.items()), key=lambda r: (-r[2], r[0]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="JUnit XML written by pytest --junitxml")
    parser.add_argument("--files", type=int, default=25, help="files to list (default 25)")
    parser.add_argument("--tests", type=int, default=15, help="slowest tests to list")
    parser.add_argument(
        "--allow-skips",
        action="append",
        metavar="FILE",
        help="the only test file whose tests may skip (repeatable); any other skip: exit 1",
    )
    args = parser.parse_args(argv)
    tests = read_junit(args.report)
    if not tests:
        raise SystemExit(f"{args.report}: no test cases")
    total = sum(t.seconds for t in tests)
    print(f"{args.report}: {len(tests)} tests, {total:,.1f} s of test time (all workers)")
    print(f"{'file':<48} {'tests':>5} {'seconds':>9} {'share':>6}")
    for file, count, seconds in per_file(tests)[: args.files]:
        print(f"{file:<48} {count:>5} {seconds:>9.1f} {seconds / total:>6.1%}")
    print("slowest tests:")
    for test in sorted(tests, key=lambda t: -t.seconds)[: args.tests]:
        print(f"{test.seconds:>9.1f} s  {test.file}::{test.name}")
    if args.allow_skips is not None:
        lost = [t for t in tests if t.skipped and t.file not in args.allow_skips]
        for test in lost:
            print(f"skipped: {test.file}::{test.name}: {test.skipped}", file=sys.stderr)
        if lost:
            print(
                f"{len(lost)} tests skipped outside {', '.join(args.allow_skips)}", file=sys.stderr
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
