"""benchmarks/dry_run.py: parses Snakemake's job table and ends with the summary line."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # dry_run imports bench_common, as a script does
SPEC = importlib.util.spec_from_file_location("dry_run", REPO / "benchmarks" / "dry_run.py")
assert SPEC is not None and SPEC.loader is not None
dry_run = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(dry_run)

TABLE = """Building DAG of jobs...
Job stats:
job                count
---------------  -------
teacher_initial        2
train                  1
all                    1
total                  4

Job stats:
job  count
"""


def test_parse_job_stats_reads_first_table_without_total() -> None:
    assert dry_run.parse_job_stats(TABLE) == {"teacher_initial": 2, "train": 1, "all": 1}


def test_parse_job_stats_nothing_to_do() -> None:
    assert dry_run.parse_job_stats("Nothing to be done (all requested files are present).") == {}


def test_dry_run_on_toy_workflow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snakefile = REPO / "tests" / "slurm" / "Snakefile.toy"
    code = dry_run.main(["--repeat", "1", "--directory", str(tmp_path), "--", "-s", str(snakefile)])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert out[-1].startswith("dry_run_s=") and out[-1].endswith(" jobs=6")
    # the context a figure needs to be compared with another day's: load and machine speed
    assert out[0].startswith("load average before (1, 5, 15 min): ")
    speed, bf16 = out[1].removeprefix("machine speed: 10M-addition Python loop ").split("; ")
    assert float(speed.split()[0]) > 0 and speed.split()[1:] == ["s", "(best", "of", "3)"]
    cpu_flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    native = "avx512_bf16" in cpu_flags or "amx_bf16" in cpu_flags
    expected = "yes" if native else "no (bf16 settings run in float32)"
    assert bf16 == f"native bf16: {expected}"
    assert any(line.split() == ["judge_pair", "2"] for line in out)
