"""The sbatch call of every job of the default paper grid under workflow/profiles/slurm.

tests/slurm/sbatch_calls.py builds the DAG through Snakemake's API with the profile parsed as
the CLI parses it and renders each job with snakemake-executor-plugin-slurm's own
`get_submit_command` + `set_gres_string` (no cluster). The expected numbers are read here
straight from config.yaml and the profile's YAML, not from the workflow's resource functions:
each GPU job asks for its GPUs on one node (`--nodes=1`: torchrun only launches on its own
node), in the GPU partition, with the memory and wall time the config gives its student.
The loopback-Slurm test (tests/test_slurm.py) shows a real slurmctld accepts such calls.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from collections import defaultdict

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from .conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "tests" / "slurm" / "sbatch_calls.py"
PROFILE = REPO_ROOT / "workflow" / "profiles" / "slurm" / "config.yaml"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("snakemake_executor_plugin_slurm") is None
    and os.environ.get("EMPATHY_DISTILL_REQUIRE_SLURM") != "1",
    reason="snakemake-executor-plugin-slurm is not installed (the `slurm` extra)",
)


@pytest.fixture(scope="module")
def jobs() -> list[dict]:
    """One record per job of the default DAG: rule, wildcards, local, sbatch call."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "workflow")}
    result = subprocess.run(
        [sys.executable, str(SCRIPT)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


def student_of(job: dict) -> str:
    """The student a GPU job is sized for: pride_reasoning's wildcard is the teacher, whose
    jobs are sized by the student it teaches (llama31_8b's 70B teacher in config.yaml)."""
    wildcards = job["wildcards"]
    if "student" in wildcards:
        return wildcards["student"]
    if "scorer" in wildcards:  # a local scorer's fine-tune (the study's protocol): no student
        return f"scorer:{wildcards['scorer']}"
    assert wildcards == {"teacher": "llama31_70b_instruct"}, wildcards
    return "llama31_8b"


def config_resources(rule: str, student: str) -> dict:
    """gpu / mem_mb / runtime a job of ``rule`` gets: config.yaml's layers for the student,
    then the profile's set-resources for the rule (which win on SLURM)."""
    config = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
    training, own = config["training"], config["training"]["per_student"].get(student, {})
    pride, own_pride = training.get("pride") or {}, own.get("pride") or {}
    if student.startswith("scorer:"):  # training.resources, then the scorer's finetune's
        finetune = config["scoring"]["scorers"][student.split(":", 1)[1]]["finetune"]
        layers = [training["resources"], finetune.get("resources") or {}]
    elif rule in ("answer", "emotion_answers"):  # a student's model on the test dialogues
        generation = config["generation"]
        layers = [generation["resources"]]
        layers.append(generation.get("per_student", {}).get(student, {}).get("resources", {}))
    elif rule == "train_pride":  # the student alone (the teacher's outputs are precomputed)
        layers = [training["resources"], pride.get("resources") or {}, own.get("resources") or {}]
        layers.append(own_pride.get("resources") or {})
    elif rule in ("pride_teacher_outputs", "pride_reasoning"):  # jobs that load the teacher
        layers = [training["resources"], pride.get("resources") or {}]
        layers += [pride.get("teacher_resources") or {}, own.get("resources") or {}]
        layers += [own_pride.get("resources") or {}, own_pride.get("teacher_resources") or {}]
    else:
        layers = [training["resources"], own.get("resources") or {}]
    profile = yaml.safe_load(PROFILE.read_text())["set-resources"].get(rule, {})
    merged = {}
    for layer in [*layers, profile]:
        merged.update(layer)
    return merged


def flags(call: str) -> dict[str, str]:
    """The sbatch options of a call that size a job."""
    found = {}
    for name, pattern in (
        ("gpus", r"--gpus=(\S+)"),
        ("gres", r"--gres=(\S+)"),
        ("nodes", r"--nodes=(\d+)"),
        ("mem", r"--mem (\d+)"),
        ("time", r"-t (\d+)"),
        ("partition", r" -p (\S+)"),
        ("cpus_per_gpu", r"--cpus-per-gpu=(\d+)"),
    ):
        match = re.search(pattern, call)
        if match:
            found[name] = match.group(1)
    return found


def test_the_default_grid_submits_its_gpu_rules(jobs):
    """What goes through sbatch with a GPU: SFT/DPO (train), PRIDE (train_pride) and the
    students' answers, for both paper students; nothing local reaches sbatch."""
    config = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
    students = set(config["grid"]["students"])
    gpu_jobs = defaultdict(set)
    for job in jobs:
        if job["local"]:
            assert job["sbatch"] is None
        elif "--gpus" in job["sbatch"] or "--gres" in job["sbatch"]:
            gpu_jobs[job["rule"]].add(student_of(job))
    expected = {"train", "answer", "emotion_answers"}
    if "pride" in config["grid"]["methods"]:
        # the 70B teacher of llama31_8b writes its reasoning once (config.yaml)
        expected |= {"train_pride", "pride_teacher_outputs", "pride_reasoning"}
    # the local rating scorer fine-tuned on the study's balanced set (scoring.study_protocol)
    if config["scoring"]["study_protocol"]["scorers"]:
        expected.add("finetune_study_scorer")
    assert set(gpu_jobs) == expected
    assert gpu_jobs.pop("pride_reasoning", {"llama31_8b"}) == {"llama31_8b"}
    assert gpu_jobs.pop("finetune_study_scorer", set()) <= {
        f"scorer:{name}" for name in config["scoring"]["study_protocol"]["scorers"]
    }
    assert all(found == students for found in gpu_jobs.values()), dict(gpu_jobs)


def test_every_gpu_job_asks_for_its_gpus_on_one_node(jobs):
    checked = defaultdict(int)
    for job in jobs:
        if job["local"] or not ("--gpus" in job["sbatch"] or "--gres" in job["sbatch"]):
            continue
        rule, student = job["rule"], student_of(job)
        want = config_resources(rule, student)
        got = flags(job["sbatch"])
        where = f"{rule} {job['wildcards']}: {job['sbatch']}"
        assert got.get("gpus") == str(want["gpu"]), where
        assert got.get("nodes") == "1", where
        assert got.get("mem") == str(want["mem_mb"]), where
        assert got.get("time") == str(want["runtime"]), where
        assert got.get("partition") == "gpu", where
        assert "cpus_per_gpu" in got, where
        # One process per job (torchrun starts the workers): a task per GPU would imply
        # --gpu-bind=single:1 (plugin < 2.8 adds it unless tasks_per_gpu is 0).
        assert "--ntasks-per-gpu" not in job["sbatch"], where
        checked[(rule, student, int(want["gpu"]))] += 1
    # The 4-GPU jobs load llama31_8b's 70B PRIDE teacher: its outputs, once per data
    # configuration, and its reasoning, once; PRIDE training itself needs the student's GPU.
    four = {key: n for key, n in checked.items() if key[2] == 4}
    assert set(four) == {
        ("pride_teacher_outputs", "llama31_8b", 4),
        ("pride_reasoning", "llama31_8b", 4),
    }, dict(checked)
    configs = checked[("train_pride", "mistral_7b", 1)]
    assert four[("pride_teacher_outputs", "llama31_8b", 4)] == configs
    assert checked[("train_pride", "llama31_8b", 1)] == configs
    assert four[("pride_reasoning", "llama31_8b", 4)] == 1


def test_installed_plugin_meets_the_slurm_extra_floor():
    """The plugin these renders ran with is one the `slurm` extra allows."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    (line,) = project["optional-dependencies"]["slurm"]
    requirement = Requirement(line)
    installed = metadata.version("snakemake-executor-plugin-slurm")
    assert requirement.specifier.contains(installed), (line, installed)
    assert Version(next(iter(requirement.specifier)).version) >= Version("2.1")


def test_cpu_jobs_ask_for_no_gpu(jobs):
    """Submitted jobs whose resources ask for no GPU (on the default grid: reference metrics,
    answer lengths, example answers) go to the CPU partition without GPU or node flags."""
    cpu = [j for j in jobs if not j["local"] and not j["resources"].get("gpu")]
    assert {"reference_metrics", "answer_lengths"} <= {j["rule"] for j in cpu}
    for job in cpu:
        got = flags(job["sbatch"])
        assert not {"gpus", "gres", "nodes"} & set(got), job["sbatch"]
        assert got.get("partition") == "cpu", job["sbatch"]
    gpu = [j for j in jobs if not j["local"] and j["resources"].get("gpu")]
    assert all("--gpus=" in j["sbatch"] for j in gpu)
