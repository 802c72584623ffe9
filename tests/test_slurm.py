"""workflow/profiles/slurm against a real Slurm: one node on 127.0.0.1 with a fake GPU.

Starts munged, slurmctld and slurmd (tests/slurm/loopback.py), runs part of the repository's
own Snakefile (demo grid on 60 + 10 dialogues: split, direct sets, leakage guard, tiny student,
SFT, the local tiny teacher) with `--profile workflow/profiles/slurm --profile <test overlay>`
(tests/slurm/dag.py) and checks from the logged sbatch calls and `scontrol show job` that
the train rule (SFT stage) asked for and got one GPU in the gpu partition, that the API and
cheap data rules ran in the main Snakemake process and never went through sbatch, and that the
outputs exist.

Needs root (or Slurm already installed) and apt. Skips otherwise, unless
EMPATHY_DISTILL_REQUIRE_SLURM=1 (set in CI), which turns every skip into a failure.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import skip_or_fail
from .workflow_helpers import rule_blocks

SLURM_DIR = Path(__file__).resolve().parent / "slurm"
sys.path.insert(0, str(SLURM_DIR))

import dag  # noqa: E402
import loopback  # noqa: E402


def _unavailable(reason: str) -> None:
    skip_or_fail(reason, "EMPATHY_DISTILL_REQUIRE_SLURM")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """A running loopback cluster whose partitions are those the SLURM profile names."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        _unavailable("snakemake-executor-plugin-slurm is not installed")
    if os.geteuid() != 0 and loopback.missing_binaries():
        _unavailable("Slurm is not installed and installing it needs root")
    try:
        loopback.ensure_installed()
    except (loopback.SlurmUnavailable, OSError) as exc:
        _unavailable(f"cannot install Slurm: {exc}")
    root = tmp_path_factory.mktemp("slurm")
    partitions = dag.profile_partitions(dag.load_profile(dag.MAIN_PROFILE))
    node = loopback.LoopbackSlurm(root, partitions=partitions)
    try:
        node.start()
    except loopback.SlurmUnavailable as exc:
        node.stop()
        _unavailable(f"Slurm daemons did not start: {exc}")
    started = dict(node.pids)
    try:
        yield node
    finally:
        node.stop()
    survivors = {name: pid for name, pid in started.items() if loopback.is_alive(pid)}
    assert not survivors, f"daemons survived stop(): {survivors}"


def _localrules() -> set[str]:
    """Rule names of the Snakefile's `localrules:` directive, and of the rules that say
    `localrule: True` themselves (the judge rules, defined in a loop)."""
    text = (dag.REPO / "Snakefile").read_text()
    block = re.search(r"^localrules:\n((?:[ \t]+\w+,?\n)+)", text, flags=re.MULTILINE)
    assert block, "no localrules: block in the Snakefile"
    flagged = {
        name
        for smk in (dag.REPO / "workflow" / "rules").glob("*.smk")
        for name, body in rule_blocks(smk.read_text())
        if re.search(r"^\s+localrule: True", body, flags=re.MULTILINE)
    }
    return set(re.findall(r"\w+", block.group(1))) | flagged


def test_profile_is_well_formed() -> None:
    """The profile's claims that need no cluster: squeue polling, throttle, GPU rules."""
    profile = dag.load_profile(dag.MAIN_PROFILE)
    assert profile["executor"] == "slurm"
    assert profile["slurm-status-command"] == "squeue"
    init_s = int(profile["slurm-init-seconds-before-status-checks"])
    assert 3 * init_s <= loopback.MIN_JOB_AGE_S
    assert "api_calls=global" in profile["set-resource-scopes"]
    assert any(r.startswith("api_calls=") for r in profile["resources"])
    assert "slurm_account" not in yaml.safe_dump(profile)
    res = profile["set-resources"]
    for rule in dag.GPU_RULES:
        assert res[rule]["gpu"] == 1, rule
        assert {"cpus_per_gpu", "mem_mb", "runtime"} <= set(res[rule]), rule
    assert "gpu" not in res["train_offline_judge"]
    for rule, values in res.items():
        assert rule not in _localrules(), f"{rule} is a local rule: its set-resources are dead"
        extra = str(values.get("slurm_extra", ""))
        for flag in ("--gres", "--gpus", "--mem"):
            assert flag not in extra, f"{rule}: {flag} in slurm_extra"


def test_api_rules_are_local_and_gpu_rules_are_not() -> None:
    """API rules must run on the submit host (internet, keys); GPU rules must be submitted."""
    local = _localrules()
    assert set(dag.API_RULES) | {"download_dataset"} <= local
    assert not (set(dag.GPU_RULES) | {"train_offline_judge", "build_tiny_student"}) & local


def test_profile_matches_config_resources() -> None:
    """On SLURM the profile's set-resources win over config.yaml's training/generation
    resources: they must say the same, so a local run and a cluster run size jobs alike."""
    res = dag.load_profile(dag.MAIN_PROFILE)["set-resources"]
    config = yaml.safe_load((dag.REPO / "config.yaml").read_text())
    for rules, wanted in (
        (("train",), config["training"]["resources"]),
        (("answer",), config["generation"]["resources"]),
    ):
        for rule in rules:
            assert res[rule]["gpu"] == wanted["gpu"], rule
            assert res[rule]["mem_mb"] == wanted["mem_mb"], rule
            assert res[rule]["runtime"] == wanted["runtime"], rule
            assert res[rule]["cpus_per_gpu"] == wanted["threads"], rule


def test_check_submissions_flags_wrong_calls(tmp_path: Path) -> None:
    """The DAG-independent checks catch a GPU rule without --gpus, a GPU on a CPU rule and a
    local rule that reached sbatch (no cluster needed)."""
    calls = [
        "--comment rule_train_wildcards_tiny -p gpu --mem 1000 --gpus=1 --wrap=x",
        "--comment rule_answer_wildcards_a -p gpu --wrap=x",
        "--comment rule_split_dataset --gpus=1 --wrap=x",
        "--comment rule_teacher_initial -p cpu --wrap=x",
    ]
    run = dag.SlurmRun(0, 1.0, tmp_path, "", calls)
    want = ["train", "answer", "split_dataset", "teacher_initial"]
    assert run.submitted_rules() == want
    problems = dag.check_submissions(run, local_rules=("teacher_initial",))
    assert len(problems) == 3
    assert problems[0].startswith("GPU rule answer ")
    assert problems[1].startswith("non-GPU rule split_dataset")
    assert problems[2].startswith("local rule teacher_initial")
    assert dag.check_submissions(dag.SlurmRun(0, 1.0, tmp_path, "", calls[:1])) == []


@pytest.mark.slow
def test_real_dag_on_loopback_slurm(cluster: loopback.LoopbackSlurm, tmp_path: Path) -> None:
    """The real Snakefile through the SLURM profile: train (sft) -> sbatch --gpus=1 in the gpu
    partition and Slurm gave it gres:gpu:1, and on the loopback node (a GPU for Slurm only, no
    CUDA) the job stopped at start with the one no-CUDA line instead of training on the CPU;
    build_tiny_student -> a CPU job; the teacher and the data rules ran locally; the teacher's
    10 answers exist."""
    if not dag.DATASET.exists():
        _unavailable(f"dataset not available at {dag.DATASET}")
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = dag.run_workflow(cluster, workdir, timeout_s=420, extra_args=("--keep-going",))
    assert result.returncode != 0, result.log[-4000:]  # the SFT job had no CUDA
    assert sorted(result.submitted_rules()) == ["build_tiny_student", "train"]
    (sft_call,) = result.calls_for("train")
    assert "--gpus=1" in sft_call
    assert "--cpus-per-gpu=" in sft_call
    assert "-p gpu" in sft_call
    (tiny_call,) = result.calls_for("build_tiny_student")
    assert "--gpus" not in tiny_call and "--gres" not in tiny_call
    assert "-p cpu" in tiny_call
    (sft_job,) = result.jobs_for("train")
    assert sft_job["JobState"] == "FAILED"
    assert sft_job["Partition"] == "gpu"
    assert sft_job["TresPerJob"] == "gres:gpu:1"
    assert dag.GPU_STOP in (workdir / dag.TRAIN_LOG).read_text()
    assert "teacher_initial" in result.local_rules_run()
    assert dag.check_dag(result) == []
