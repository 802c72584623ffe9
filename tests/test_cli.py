"""The ``empathy-distill`` console script, run as ``python -m empathy_distill.cli`` from this tree
(the shared venv's ``empathy-distill`` executable points at another checkout), and the
``[project.scripts]`` entry resolved from pyproject.toml the way the installer reads it."""

from __future__ import annotations

import csv
import importlib
import os
import subprocess
import sys
import tomllib

import pytest
import yaml

from empathy_distill.core import runtime, specs
from empathy_distill.core.config import deep_merge, read_yaml, validate_config
from empathy_distill.distillation.sets import improve_human_sources

from .conftest import REPO_ROOT

DEMO_OVERLAY = REPO_ROOT / "workflow" / "profiles" / "demo" / "config.demo.yaml"


def cli(*args: str, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "workflow")}
    return subprocess.run(
        [sys.executable, "-m", "empathy_distill.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def test_console_script_entry_resolves_to_a_callable_in_this_tree():
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module_name, _, attribute = scripts["empathy-distill"].partition(":")
    module = importlib.import_module(module_name)
    target = module
    for part in attribute.split("."):
        target = getattr(target, part)
    assert callable(target)
    assert module.__file__ == str(REPO_ROOT / "workflow" / "empathy_distill" / "cli.py")


def test_help_lists_every_subcommand():
    result = cli("--help")
    assert result.returncode == 0, result.stderr
    for command in ("validate-config", "validate-dataset", "grid", "cost"):
        assert command in result.stdout


def test_validate_config_accepts_the_shipped_configs():
    assert cli("validate-config").returncode == 0
    result = cli("validate-config", "--configfile", "config.yaml", DEMO_OVERLAY)
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_validate_config_names_the_bad_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"generation": {"max_new_tokens": "many"}}))
    result = cli("validate-config", "--configfile", REPO_ROOT / "config.yaml", bad)
    assert result.returncode == 1
    assert "config['generation']['max_new_tokens']" in result.stderr
    missing = cli("validate-config", "--configfile", tmp_path / "nope.yaml")
    assert missing.returncode == 1
    assert "nope.yaml" in missing.stderr


def test_validate_config_names_file_and_line_of_an_overlay_that_is_not_yaml(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("grid:\n  students: [tiny\n  judges: [offline]\n")
    result = cli("validate-config", "--configfile", REPO_ROOT / "config.yaml", bad)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert str(bad) in result.stderr and "line 3" in result.stderr


def test_validate_config_runs_the_start_up_checks(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"training": {"common": {"learnin_rate": 1e-4}}}))
    result = cli("validate-config", "--configfile", REPO_ROOT / "config.yaml", overlay)
    assert result.returncode == 1 and "learnin_rate" in result.stderr
    overlay.write_text(yaml.safe_dump({"judges": {"gemini": {"model": "gemini-2.0-flash"}}}))
    result = cli("validate-config", "--configfile", REPO_ROOT / "config.yaml", overlay)
    assert result.returncode == 1
    assert "judges.gemini.model" in result.stderr and "retired" in result.stderr


def test_validate_dataset_reports_rows_or_the_problem(tmp_path, dataset_path):
    with open(dataset_path, newline="", encoding="utf-8") as handle:
        rows = sum(1 for _ in csv.DictReader(handle))
    good = cli("validate-dataset", dataset_path)
    assert good.returncode == 0, good.stderr
    assert f"({rows} rows," in good.stdout
    broken = tmp_path / "broken.csv"
    broken.write_text("dialog_id,situation\n1,x\n")
    bad = cli("validate-dataset", broken)
    assert bad.returncode == 1
    assert str(broken) in bad.stderr and "invalid dataset" in bad.stderr


def test_grid_counts(tmp_path):
    """Counts re-derived from the YAML files: models = students x data configurations x
    training methods (the demo: SFT, DPO; the paper grid: SFT, DPO, PRIDE)."""
    result = cli("grid", "--configfile", "config.yaml", DEMO_OVERLAY)
    assert result.returncode == 0, result.stderr
    demo = yaml.safe_load(DEMO_OVERLAY.read_text())
    n_configs = sum(len(v) for v in demo["distillation"]["methods"].values())
    n_students = len(demo["grid"]["students"])
    lines = result.stdout.splitlines()
    assert f"data configurations ({n_configs}):" in lines
    assert f"students ({n_students}): {', '.join(demo['grid']['students'])}" in lines
    assert demo["grid"]["methods"] == ["sft", "dpo"]
    assert f"trained models: {n_students * n_configs * 2}" in lines
    comparisons = next(int(x.split(": ")[1]) for x in lines if x.startswith("comparisons:"))
    assert f"judgment files: {comparisons * len(demo['grid']['judges'])}" in lines

    paper = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
    full = cli("grid").stdout.splitlines()
    n_paper = sum(len(v) for v in paper["distillation"]["methods"].values())
    assert paper["grid"]["methods"] == ["sft", "dpo", "pride"]
    assert f"trained models: {len(paper['grid']['students']) * n_paper * 3}" in full


def test_cost_is_the_cost_rule_computation(tmp_path, train, test_split):
    """Same inputs: the CLI writes the projection `python -m empathy_distill.cost` writes; the
    budget cap fails it."""
    config = {
        "prompts": str(REPO_ROOT / "resources" / "prompts.json"),
        "llm": {
            "cache_dir": str(tmp_path / "cache"),
            "price_table": str(REPO_ROOT / "resources" / "prices.yaml"),
        },
        "distillation": {"methods": {"improve_human": ["improve_cognitive"]}},
        "teacher": {"backend": "openai", "model": "gpt-4o", "mode": "batch"},
        "grid": {"students": ["tiny"], "judges": ["gpt4o"]},
        "evaluation": {"comparisons": ["vs_base"]},
        "scoring": {"grid": []},  # the scorers' rows need --scorer-train (tests/test_cost.py)
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    train.head(3).to_csv(tmp_path / "train.csv", index=False)
    test_split.head(2).to_csv(tmp_path / "test.csv", index=False)
    improve_human_sources(train.head(3)).to_csv(tmp_path / "human.csv", index=False)
    inputs = ["--train", "train.csv", "--test", "test.csv", "--improve-human-sources", "human.csv"]
    configs = [REPO_ROOT / "config.yaml", tmp_path / "config.yaml"]

    ours = cli("cost", "--configfile", *configs, *inputs, "--output", "cli.csv", cwd=tmp_path)
    assert ours.returncode == 0, ours.stderr
    assert "projected total" in ours.stdout
    # The cost rule (teacher.smk) passes the spec built from the Snakefile's validated config,
    # and the runtime part (the budget cap) in the environment.
    merged = validate_config(deep_merge(read_yaml(REPO_ROOT / "config.yaml"), config))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "workflow")}
    runtime.export(merged, env)
    command = [
        sys.executable,
        "-m",
        "empathy_distill.cost",
        "--spec",
        specs.dumps(specs.build("cost", merged)),
    ]
    rule = subprocess.run(
        [*command, *inputs, "--output", "rule.csv"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert rule.returncode == 0, rule.stderr
    assert (tmp_path / "cli.csv").read_text() == (tmp_path / "rule.csv").read_text()

    capped = tmp_path / "cap.yaml"
    capped.write_text(yaml.safe_dump({"llm": {"budget_usd": 0.000001}}))
    over = cli("cost", "--configfile", *configs, capped, *inputs, cwd=tmp_path)
    assert over.returncode == 1
    assert "exceeds llm.budget_usd" in over.stderr


@pytest.mark.parametrize("command", ["grid", "cost"])
def test_a_missing_config_is_one_clear_line(tmp_path, command):
    result = cli(command, "--configfile", tmp_path / "absent.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: config file not found: {tmp_path / 'absent.yaml'}"
