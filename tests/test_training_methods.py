"""The training-method registry: stages defined once, generated rules, a new method in one place."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from empathy_distill.core import grid
from empathy_distill.core.config import load_config
from empathy_distill.core.errors import ConfigError
from empathy_distill.distillation import formats
from empathy_distill.training import llamafactory_config as lf
from empathy_distill.training import methods
from empathy_distill.training.run import job_settings

from .conftest import REPO_ROOT


@pytest.fixture(scope="module")
def paper_config() -> dict:
    return load_config(REPO_ROOT / "config.yaml")


def test_registry_is_consistent() -> None:
    assert methods.registry_problems() == []
    assert methods.STAGES == ("sft", "dpo", "pride")  # the paper: SFT, then DPO; then PRIDE
    assert methods.DEFAULT_GRID_METHODS == ("sft", "dpo")  # grid.methods left out: the paper's
    assert methods.previous_stage("sft") is None and methods.previous_stage("dpo") == "sft"


def test_stages_are_defined_once() -> None:
    """No module or rule file restates the stages (a tuple or a wildcard regex)."""
    assert grid.STAGES is methods.STAGES
    workflow = REPO_ROOT / "workflow"
    paths = [*workflow.rglob("*.py"), *workflow.rglob("*.smk"), REPO_ROOT / "Snakefile"]
    files = {p.relative_to(REPO_ROOT).as_posix(): p.read_text(encoding="utf-8") for p in paths}
    assert stage_definitions(files) == ["workflow/empathy_distill/core/methods.py"]
    # the scan finds a restatement: the wildcard regex and the tuple the code had before
    assert stage_definitions({"a.smk": '    stage="sft|dpo",', "b.py": 'STAGES = ("sft", "dpo")'})


def stage_definitions(files: dict[str, str]) -> list[str]:
    """Files (name -> text) that define the stages: a STAGES assignment or a wildcard regex."""
    return sorted(
        name
        for name, text in files.items()
        if re.search(r"^\s*STAGES\b[^=\n]*=", text, re.MULTILINE)
        or re.search(r"[\"']\(?sft\|dpo\)?[\"']", text)
    )


def test_config_schema_has_a_settings_section_per_method() -> None:
    """A new method's training.<name> settings must be accepted by the schema (and only then)."""
    schema = yaml.safe_load((REPO_ROOT / "workflow/schemas/config.schema.yaml").read_text())
    training = schema["properties"]["training"]["properties"]
    assert set(training) == {"common", *methods.STAGES, "per_student", "resources"}
    per_student = training["per_student"]["additionalProperties"]["properties"]
    assert set(per_student) == {"common", *methods.STAGES, "resources"}


def test_unknown_stage_is_named() -> None:
    stages = "sft, dpo, pride"
    with pytest.raises(ConfigError, match=f"training stage must be one of {stages}, got 'kto'"):
        methods.method("kto")


def test_training_sets_are_the_set_formats_written() -> None:
    with pytest.raises(ValueError, match="set kind must be one of"):
        formats.validate_records([], "pride", "x.json")


def test_dpo_job_settings_continue_sft_with_the_sft_model_as_reference(paper_config) -> None:
    """The trainer's settings of a DPO job, as the train rule's params hold them."""
    job = methods.TrainingJob("llama31_8b", "improve_human", "naive_prompt", "dpo")
    settings = yaml.safe_load(job_settings(paper_config, job))
    sft_dir = "results/models/llama31_8b/improve_human/naive_prompt/sft"
    assert settings["stage"] == "dpo"  # LLaMA-Factory's objective
    assert settings["dataset"] == "improve_human__naive_prompt__dpo"
    assert settings["adapter_name_or_path"] == sft_dir
    assert settings["ref_model_adapters"] == sft_dir
    assert settings["output_dir"] == "results/models/llama31_8b/improve_human/naive_prompt/dpo"
    sft = methods.TrainingJob("llama31_8b", "improve_human", "naive_prompt", "sft")
    assert "ref_model" not in yaml.safe_load(job_settings(paper_config, sft))
    # the same string the LLaMA-Factory config module gives (no retraining after the refactor)
    assert job_settings(paper_config, job) == lf.job_settings(
        paper_config, "llama31_8b", "improve_human", "naive_prompt", "dpo"
    )


NEW_TRAINER = '''"""A toy training method for the registry test: writes the adapter files only."""

from pathlib import Path


class ToyTrainer:
    def settings(self, config, job, previous):
        return {"previous": previous, "beta": config["training"]["toy"].get("beta", 1)}

    def train(self, settings, out, nproc_per_node):
        return Path(out)


TRAINER = ToyTrainer()
'''


def test_a_new_training_method_is_one_module_one_line_and_config(tmp_path: Path) -> None:
    """Copy the workflow, add a method `toy` continuing SFT, dry-run the demo grid: every data
    configuration trains it from its SFT adapter and the students answer with it."""
    copy = tmp_path / "repo"
    copy.mkdir()
    for name in ("Snakefile", "config.yaml", "workflow", "resources", "envs"):
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, copy / name)
    package = copy / "workflow/empathy_distill/training"
    (package / "toy_trainer.py").write_text(NEW_TRAINER)  # the new module
    registry = copy / "workflow/empathy_distill/core/methods.py"  # the table of methods
    text = registry.read_text()
    anchor = "    )\n}\n\n#: The grid's stages"
    assert anchor in text
    line = (
        '        TrainingMethod("toy", trainer="toy_trainer", objective="toy", '
        'training_set="sft", continues="sft"),\n'
    )
    registry.write_text(text.replace(anchor, line + anchor))  # the registry line
    schema = copy / "workflow/schemas/config.schema.yaml"  # config: its settings section
    settings = schema.read_text()
    section = "\n      pride:"  # training.pride, the last method's own settings
    assert settings.count(section) == 1
    schema.write_text(
        settings.replace(section, "\n      toy: {type: object, default: {}}" + section)
    )
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "dataset": {"path": str(REPO_ROOT / "tests/data/synthetic_dataset.csv")},
                "training": {"toy": {"beta": 2}},
                "grid": {"methods": ["sft", "dpo", "toy"]},  # a new method is opt-in
            }
        )
    )
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(copy / "Snakefile"),
        "--configfile",
        str(copy / "config.yaml"),
        str(copy / "workflow/profiles/demo/config.demo.yaml"),
        str(overlay),
        "-n",
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=copy,
        env={**os.environ, "PYTHONPATH": str(copy / "workflow")},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    blocks = output.split("\nrule ")
    train = [b for b in blocks if b.startswith("train:")]
    # demo grid: 1 student x 3 data configurations x 3 methods (sft, dpo, toy)
    assert len(train) == 9, output[-4000:]
    toy = [b for b in train if "stage=toy" in b]
    assert len(toy) == 3
    for block in toy:
        inputs = block.split("input:", 1)[1].splitlines()[0]
        assert "/sft/adapter_model.safetensors" in inputs and "/sft.json" in inputs
    answers = [b for b in blocks if b.startswith("answer:")]
    assert sum("/toy.jsonl" in b.split("output:", 1)[1].splitlines()[0] for b in answers) == 3
