"""Run the real workflow (snakemake CLI) in a scratch directory for rule-level tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from .conftest import REPO_ROOT

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def write_overlay(workdir: Path, overlay: dict) -> Path:
    """Config overlay with absolute paths to shipped resources, so rules run in ``workdir``."""
    overlay = {"prompts": str(REPO_ROOT / "resources" / "prompts.json"), **overlay}
    price_table = str(REPO_ROOT / "resources" / "prices.yaml")
    overlay["llm"] = {"price_table": price_table, **overlay.get("llm", {})}
    scoring_prompts = str(REPO_ROOT / "resources" / "scoring_prompts.json")
    overlay["scoring"] = {"prompts": scoring_prompts, **overlay.get("scoring", {})}
    path = workdir / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return path


def run_snakemake(
    workdir: Path, overlay: dict, *args: str, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``snakemake -s REPO/Snakefile -d workdir --configfile REPO/config.yaml overlay ...``."""
    workdir.mkdir(parents=True, exist_ok=True)
    overlay_path = write_overlay(workdir, overlay)
    command = [
        *SNAKEMAKE,
        "-s",
        str(REPO_ROOT / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(REPO_ROOT / "config.yaml"),
        str(overlay_path),
        *args,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "workflow")}
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, cwd=workdir
    )
