"""The README's demo command on a fresh copy of the repository: whole DAG, offline, report."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pandas as pd
import pytest

from .conftest import REPO_ROOT

pytestmark = pytest.mark.slow

COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "results",
    "logs",
    ".snakemake",
    "cache",
    "dataset.csv",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
)


@pytest.fixture(scope="module")
def demo_checkout(paper_dataset_path, tmp_path_factory):
    """A copy of the checkout with the dataset where the README says to put it."""
    root = tmp_path_factory.mktemp("demo") / "empathy-distill"
    shutil.copytree(REPO_ROOT, root, ignore=COPY_IGNORE)
    shutil.copy(paper_dataset_path, root / "resources" / "dataset.csv")
    return root


def run_demo(root, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/demo", *extra]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=1500)


def test_demo_runs_the_whole_dag_offline_and_reruns_nothing(demo_checkout):
    first = run_demo(demo_checkout)
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    results = demo_checkout / "results"
    assert (results / "report.html").stat().st_size > 100_000
    table = pd.read_csv(results / "tables" / "win_rates.csv")
    # 3 data configurations x 2 stages vs base, SFT+DPO vs SFT (3), DPO models and base vs teacher
    assert len(table) == 6 + 3 + 3 + 1
    assert set(table["judge"]) == {"offline"} and (table["n"] == 40).all()
    assert table["win_rate"].between(0, 1).all()
    for stage in ("sft", "dpo"):
        adapter = results / "models/tiny/improve_human/improve_all_three_dimensions" / stage
        assert (adapter / "adapter_model.safetensors").exists()
    teacher = pd.read_json(results / "teacher/improve_llm/naive_prompt.jsonl", lines=True)
    assert teacher["improved_response"].str.len().gt(0).all()

    second = run_demo(demo_checkout)
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    assert "Nothing to be done" in second.stdout + second.stderr

    # Operational settings (concurrency, retries) are not params: tuning them reruns nothing.
    tuned = demo_checkout / "tuned.yaml"
    tuned.write_text(
        "teacher: {concurrency: 3, max_retries: 1}\n"
        "judges: {offline: {concurrency: 5, timeout_s: 9}}\n"
        "llm: {budget_usd: 100}\n"
    )
    configfiles = ["config.yaml", "workflow/profiles/demo/config.demo.yaml", str(tuned)]
    dry = run_demo(demo_checkout, "--dry-run", "--configfiles", *configfiles)
    assert dry.returncode == 0, (dry.stdout + dry.stderr)[-4000:]
    assert "Nothing to be done" in dry.stdout + dry.stderr
    # ... while what shapes verdicts is: a new tie margin re-judges (and retrains nothing).
    tuned.write_text("judges: {offline: {margin: 0.2}}\n")
    dry = run_demo(demo_checkout, "--dry-run", "--configfiles", *configfiles)
    text = dry.stdout + dry.stderr
    assert dry.returncode == 0 and "judge_pair" in text, text[-4000:]
    assert "rule train:" not in text and "teacher_improve" not in text
