"""Bad input is refused when the Snakefile loads (or, for API keys, before the first job of a
real run), naming the file, config key or environment variable: through the real snakemake CLI."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from empathy_distill import startup
from empathy_distill.core.errors import ConfigError
from empathy_distill.startup import check_config_file

from .conftest import REPO_ROOT, SYNTHETIC_CSV
from .workflow_helpers import run_snakemake

KEYS = ("OPENAI_API_KEY", "GEMINI_API_KEY")
BASE = {"dataset": {"path": str(SYNTHETIC_CSV)}}


@pytest.fixture(autouse=True)
def no_api_keys(monkeypatch):
    for key in KEYS:
        monkeypatch.delenv(key, raising=False)


def output_of(result) -> str:
    return result.stdout + result.stderr


def test_config_yaml_that_is_not_yaml_names_file_and_line(tmp_path):
    broken = tmp_path / "config.yaml"  # the Snakefile's `configfile: "config.yaml"` (workdir)
    broken.write_text("dataset:\n  path: x.csv\ntraining: {common: [1, 2}\n")
    result = run_snakemake(tmp_path, BASE, "-n")
    assert result.returncode != 0
    assert f"{broken}: line 3, column " in output_of(result)
    assert "not valid YAML" in output_of(result)


def test_overlay_check_names_file_and_line(tmp_path):
    """What the command-line front end runs on --configfile overlays (Snakemake parses those
    itself before the Snakefile, with a message naming neither file nor line)."""
    overlay = tmp_path / "mine.yaml"
    overlay.write_text("teacher:\n  model: gpt-4o\n   mode: batch\n")
    with pytest.raises(ConfigError, match=rf"{overlay}: line 3, column 8: not valid YAML"):
        check_config_file(overlay)
    overlay.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="top level is a list; expected a mapping"):
        check_config_file(overlay)


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        (
            {"training": {"common": {"num_train_epochs": "three"}}},
            "training.common.num_train_epochs: 'three' is text; expected a number",
        ),
        (
            {"training": {"dpo": {"learnin_rate": 1.0e-5}}},
            "training.dpo.learnin_rate: not a LLaMA-Factory training argument (did you mean "
            "learning_rate?)",
        ),
        (
            {"teacher": {"backend": "offline", "model": "x"}},
            "teacher.backend: 'offline' cannot write responses",
        ),
        (
            {
                "judges": {"local": {"backend": "openai_compatible", "model": "qwen"}},
                "grid": {"judges": ["local"]},
            },
            "judges.local.base_url: backend openai_compatible needs the server's URL",
        ),
        (
            {"judges": {"gemini": {"model": "gemini-0.9-ultra"}}},
            "judges.gemini.model: model 'gemini-0.9-ultra' (backend gemini) has no price",
        ),
    ],
    ids=["epochs-text", "misspelled-key", "offline-teacher", "no-base-url", "unpriced-model"],
)
def test_bad_config_stops_the_dry_run(tmp_path, overlay, message):
    result = run_snakemake(tmp_path, {**BASE, **overlay}, "-n")
    assert result.returncode != 0
    assert message in output_of(result)
    assert not (tmp_path / "results").exists()


def test_dry_run_plans_without_keys_and_warns(tmp_path):
    result = run_snakemake(tmp_path, BASE, "-n")
    assert result.returncode == 0, output_of(result)[-3000:]
    assert "teacher needs $OPENAI_API_KEY, which is not set" in output_of(result)
    assert "judges.gemini needs $GEMINI_API_KEY" in output_of(result)


def test_real_run_refuses_jobs_whose_key_is_missing(tmp_path):
    result = run_snakemake(tmp_path, BASE, "--cores", "1", "results/teacher/initial.jsonl")
    assert result.returncode != 0
    assert "teacher needs $OPENAI_API_KEY, which is not set" in output_of(result)
    assert "GEMINI_API_KEY" not in output_of(result).split("API key(s) missing", 1)[1]
    assert not (tmp_path / "results").exists()  # not even the split job ran


def test_real_run_without_keys_runs_targets_that_need_none(tmp_path, monkeypatch):
    # jobs run `python -m empathy_distill...`: this interpreter's
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = run_snakemake(tmp_path, BASE, "--cores", "1", "results/data/train.csv")
    assert result.returncode == 0, output_of(result)[-3000:]
    assert (tmp_path / "results" / "data" / "train.csv").exists()


def test_load_config_names_file_and_line(tmp_path):
    from empathy_distill.core.config import load_config

    path = tmp_path / "config.yaml"
    path.write_text("students:\n  tiny: {model: builtin:tiny, template: llama3\n")
    with pytest.raises(ConfigError, match=rf"{path}: line 3, column 1: not valid YAML"):
        load_config(path)


@pytest.fixture
def paper_config():
    from empathy_distill.core.config import load_config

    return load_config(REPO_ROOT / "config.yaml")


def test_teacher_is_checked_only_when_the_grid_calls_it(paper_config):
    config = json.loads(json.dumps(paper_config))
    config["teacher"] = {**config["teacher"], "backend": "offline"}
    assert startup.endpoint_problems(config)[0].startswith("teacher.backend: 'offline'")
    config["distillation"]["methods"] = {
        "direct": ["chatgpt"],
        "improve_human": [],
        "improve_llm": [],
    }
    config["evaluation"]["comparisons"] = ["vs_base"]
    assert "teacher" not in startup.planned_endpoints(config)
    assert startup.endpoint_problems(config) == []


def test_keys_are_required_for_the_jobs_given_only(paper_config):
    jobs = [("split_dataset", {}), ("judge_vs_base", {"judge": "gemini"})]
    assert startup.missing_keys(startup.endpoints_of_jobs(paper_config, jobs)) == {
        "judges.gemini": "GEMINI_API_KEY"
    }
    local = {"backend": "openai_compatible", "model": "q", "base_url": "http://127.0.0.1:1/v1"}
    assert startup.missing_keys({"teacher": local, "judges.offline": {"backend": "offline"}}) == {}
    with pytest.raises(ConfigError, match=r"judges.gemini needs \$GEMINI_API_KEY"):
        startup.require_keys(paper_config, jobs)
