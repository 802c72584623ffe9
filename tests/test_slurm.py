"""workflow/profiles/slurm against a real Slurm: one node on 127.0.0.1 with a fake GPU.

Starts munged, slurmctld and slurmd (tests/slurm/loopback.py), runs tests/slurm/Snakefile.toy
with `--profile workflow/profiles/slurm --profile <test overlay>` and checks from the logged
sbatch calls, `scontrol show job` and the jobs' own environment that the GPU rule asked for
`--gpus=1`, that the local API rule never went through sbatch, and that the global `api_calls`
resource kept API jobs (local and submitted) from overlapping.

Needs root (or Slurm already installed) and apt. Skips otherwise, unless
EMPATHY_DISTILL_REQUIRE_SLURM=1 (set in CI), which turns every skip into a failure.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import yaml

SLURM_DIR = Path(__file__).resolve().parent / "slurm"
sys.path.insert(0, str(SLURM_DIR))

import loopback  # noqa: E402
import toy  # noqa: E402

REQUIRED = os.environ.get("EMPATHY_DISTILL_REQUIRE_SLURM") == "1"


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"EMPATHY_DISTILL_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)


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
    partitions = toy.profile_partitions(toy.load_profile(toy.MAIN_PROFILE))
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


def test_profile_is_well_formed() -> None:
    """The profile's claims that need no cluster: squeue polling, throttle, GPU rules."""
    profile = toy.load_profile(toy.MAIN_PROFILE)
    assert profile["executor"] == "slurm"
    assert profile["slurm-status-command"] == "squeue"
    init_s = int(profile["slurm-init-seconds-before-status-checks"])
    assert 3 * init_s <= loopback.MIN_JOB_AGE_S
    assert "api_calls=global" in profile["set-resource-scopes"]
    assert any(r.startswith("api_calls=") for r in profile["resources"])
    assert "slurm_account" not in yaml.safe_dump(profile)
    res = profile["set-resources"]
    for rule in toy.GPU_RULES:
        assert res[rule]["gpu"] == 1, rule
        assert {"cpus_per_gpu", "mem_mb", "runtime"} <= set(res[rule]), rule
    for rule in toy.API_RULES:
        assert "gpu" not in res[rule], rule
    for rule, values in res.items():
        extra = str(values.get("slurm_extra", ""))
        for flag in ("--gres", "--gpus", "--mem"):
            assert flag not in extra, f"{rule}: {flag} in slurm_extra"


def test_check_submissions_flags_wrong_calls(tmp_path: Path) -> None:
    """The DAG-independent checks catch a GPU rule without --gpus, a GPU on a CPU rule and a
    local rule that reached sbatch (no cluster needed)."""
    calls = [
        "--comment rule_train_sft -p gpu --mem 1000 --gpus=1 --wrap=x",
        "--comment rule_answer_model_wildcards_a -p gpu --wrap=x",
        "--comment rule_make_split --gpus=1 --wrap=x",
        "--comment rule_teacher_initial -p cpu --wrap=x",
    ]
    run = toy.ToyRun(0, 1.0, tmp_path, "", calls)
    assert run.submitted_rules() == ["train_sft", "answer_model", "make_split", "teacher_initial"]
    problems = toy.check_submissions(run, local_rules=("teacher_initial",))
    assert len(problems) == 3
    assert problems[0].startswith("GPU rule answer_model")
    assert problems[1].startswith("non-GPU rule make_split")
    assert problems[2].startswith("local rule teacher_initial")
    assert toy.check_submissions(toy.ToyRun(0, 1.0, tmp_path, "", calls[:1])) == []


@pytest.mark.slow
def test_toy_workflow_on_loopback_slurm(cluster: loopback.LoopbackSlurm, tmp_path: Path) -> None:
    """GPU rule -> sbatch --gpus=1 in the gpu partition; API rules throttled; local rule local."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = toy.run_workflow(cluster, workdir, timeout_s=240)
    assert result.returncode == 0, result.log[-4000:]
    assert sorted(result.submitted_rules()) == ["judge_pair", "judge_pair", "train_sft"]
    (sft_call,) = result.calls_for("train_sft")
    assert "--gpus=1" in sft_call
    assert "--cpus-per-gpu=" in sft_call
    assert "-p gpu" in sft_call
    for call in result.calls_for("judge_pair"):
        assert "--gpus" not in call and "--gres" not in call
        assert "-p cpu" in call
    sft = toy.read_evidence(workdir / "toy" / "train_sft.txt")
    assert sft["TresPerJob"] == "gres:gpu:1"
    assert sft["SLURM_GPUS_ON_NODE"] == "1"
    assert sft["Partition"] == "gpu"
    assert toy.check_toy(result) == []
