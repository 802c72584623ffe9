"""The report job is the grid's last: `snakemake --report` stops at the first report() file of
the DAG that does not exist yet, so report_html must depend on every other job.

CI once failed this way: the demo's report job ran while the empathy-change heatmap (a report()
figure it did not list as input) was still being drawn. The check below asks Snakemake itself
which jobs each target needs, so it holds for rules added later too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from .conftest import REPO_ROOT
from .workflow_helpers import run_snakemake

DEMO_OVERLAY = REPO_ROOT / "workflow" / "profiles" / "demo" / "config.demo.yaml"


def planned_jobs(output: str) -> set[tuple[str, str]]:
    """(rule, first output) of every job a dry run lists."""
    jobs = set()
    for block in output.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0]
        match = re.search(r"^\s+output: (.+)$", block, flags=re.MULTILINE)
        jobs.add((rule, match.group(1).split(",")[0].strip() if match else ""))
    return jobs


@pytest.fixture(scope="module")
def demo_overlay(dataset_path: Path) -> dict:
    overlay = yaml.safe_load(DEMO_OVERLAY.read_text())
    overlay["dataset"] = {**overlay["dataset"], "path": str(dataset_path)}
    return overlay


@pytest.mark.parametrize("build", [True, False], ids=["demo", "on-request"])
def test_report_html_needs_every_other_job_of_the_grid(demo_overlay, tmp_path, build):
    overlay = {**demo_overlay, "report": {**demo_overlay.get("report", {}), "build": build}}
    report_path = "results/report.html"
    whole = run_snakemake(tmp_path / "whole", overlay, "-n", "--forceall", report_path, "all")
    report = run_snakemake(tmp_path / "report", overlay, "-n", "--forceall", report_path)
    assert whole.returncode == 0, (whole.stdout + whole.stderr)[-3000:]
    assert report.returncode == 0, (report.stdout + report.stderr)[-3000:]
    everything = planned_jobs(whole.stdout + whole.stderr) - {("all", "")}
    for_report = planned_jobs(report.stdout + report.stderr)
    assert ("report_html", report_path) in for_report
    # the grid's report() figures are among them (the heatmap that CI once raced)
    rules = {rule for rule, _ in for_report}
    assert {"figure_empathy_change", "train_classifier_scorer", "reference_metrics"} <= rules
    assert everything - for_report == set()
    assert len(for_report) == len(everything)
