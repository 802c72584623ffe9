"""GPU jobs: their own devices on one machine, never a silent CPU run (docs/gpu.md).

No GPU here: the allocator is tested over pretend device ids with real processes holding real
``flock`` slots; torch's view of CUDA is simulated, where a test needs one, by patching
``torch.cuda.is_available`` / ``device_count`` (forked workers inherit the patch), with the
count taken from ``CUDA_VISIBLE_DEVICES`` as the CUDA runtime does.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import queue
import signal
import sys
import time
from itertools import combinations
from pathlib import Path

import pytest
import torch

from empathy_distill.core.errors import ConfigError
from empathy_distill.core.runtime import RUNTIME_ENV
from empathy_distill.training import devices
from empathy_distill.training import llamafactory_trainer as lft
from empathy_distill.training.gpu_slots import GpuSlots

FORK = multiprocessing.get_context("fork")
#: Bound on every wait of these tests (they finish in well under a second when correct).
WAIT_S = 20.0


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch sees CUDA with as many devices as CUDA_VISIBLE_DEVICES lists."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        torch.cuda,
        "device_count",
        lambda: len(devices.visible_devices(os.environ) or []),
    )


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """A run on a machine of ``gpus`` devices (placement from $EMPATHY_DISTILL_RUNTIME)."""

    def configure(gpus: int | None) -> Path:
        slots = tmp_path / "slots"
        placement = {"slots_dir": str(slots), **({"gpus": gpus} if gpus else {})}
        monkeypatch.setenv(RUNTIME_ENV, json.dumps({"placement": placement}))
        monkeypatch.delenv(devices.VISIBLE_ENV, raising=False)
        monkeypatch.delenv(devices.SLURM_ENV, raising=False)
        return slots

    return configure


def hold_job(n: int, hold_s: float, results) -> None:
    """A GPU job: take ``n`` devices, record them and the time it held them."""
    with devices.job_gpus(n, job="worker", student="s"):
        start = time.monotonic()
        visible = os.environ[devices.VISIBLE_ENV]
        time.sleep(hold_s)
        end = time.monotonic()
    results.put((n, visible.split(","), start, end))


def run_jobs(sizes: list[int], hold_s: float) -> list[tuple]:
    results = FORK.Queue()
    workers = [FORK.Process(target=hold_job, args=(n, hold_s, results)) for n in sizes]
    for worker in workers:
        worker.start()
    records = [results.get(timeout=WAIT_S) for _ in workers]
    for worker in workers:
        worker.join(WAIT_S)
        assert worker.exitcode == 0
    return records


def overlapping_pairs(records):
    return [(a, b) for a, b in combinations(records, 2) if a[2] < b[3] and b[2] < a[3]]


# --- the allocator over real processes -----------------------------------------------------------


def test_concurrent_jobs_never_share_a_device(machine, fake_cuda) -> None:
    machine(gpus=2)
    records = run_jobs([1] * 6, hold_s=0.3)
    assert {d for r in records for d in r[1]} <= {"0", "1"}
    pairs = overlapping_pairs(records)
    # with 6 jobs of 0.3 s on 2 devices some ran side by side (else this proves nothing) ...
    assert pairs
    # ... and never on the same device
    for a, b in pairs:
        assert not set(a[1]) & set(b[1]), (a, b)
    # at most 2 at any time: three mutually overlapping windows would share a device
    for trio in combinations(records, 3):
        assert not (max(r[2] for r in trio) < min(r[3] for r in trio)), trio


def test_mixed_sizes_get_disjoint_whole_sets(machine, fake_cuda) -> None:
    machine(gpus=3)
    records = run_jobs([2, 1, 1, 2, 1, 3], hold_s=0.2)
    for n, ids, _, _ in records:
        assert len(ids) == n == len(set(ids)) and set(ids) <= {"0", "1", "2"}
    for a, b in overlapping_pairs(records):
        assert not set(a[1]) & set(b[1]), (a, b)


def test_a_four_gpu_job_gets_four_distinct_devices(machine, fake_cuda, monkeypatch) -> None:
    machine(gpus=None)
    monkeypatch.setenv(devices.VISIBLE_ENV, "3,5,6,7,9")  # the machine's devices, as listed
    with devices.job_gpus(4, job="train_pride", student="llama31_8b") as ids:
        assert ids == ("3", "5", "6", "7")
        assert os.environ[devices.VISIBLE_ENV] == "3,5,6,7"
        assert torch.cuda.device_count() == 4
        assert lft.launch_env(1)["CUDA_VISIBLE_DEVICES"] == "3,5,6,7"  # llamafactory-cli's
    assert os.environ[devices.VISIBLE_ENV] == "3,5,6,7,9"  # restored


#: The pretend trainer: says its pid and environment, then runs until killed.
TRAINER = (
    "import json, os, sys, time; print(json.dumps([os.getpid(), os.environ.get('NPROC_PER_NODE'),"
    " os.environ.get('CUDA_VISIBLE_DEVICES')]), flush=True); time.sleep(60)"
)


def hold_until_killed(n: int, ready, spawn_child: bool, child) -> None:
    with devices.job_gpus(n, job="victim", student="s"):
        if spawn_child:  # the trainer's own launch: llamafactory_trainer.stream + launch_env

            def sink(line: str) -> None:
                child.put(json.loads(line))
                ready.set()

            lft.stream([sys.executable, "-c", TRAINER], lft.launch_env(1), sink)
        ready.set()
        time.sleep(60)


def start_victim(n: int, spawn_child: bool = False):
    ready, child = FORK.Event(), FORK.Queue()
    victim = FORK.Process(target=hold_until_killed, args=(n, ready, spawn_child, child))
    victim.start()
    assert ready.wait(WAIT_S)
    return victim, child


def test_a_killed_jobs_devices_are_free_again(machine, fake_cuda) -> None:
    slots_dir = machine(gpus=2)
    victim, _ = start_victim(2)
    slots = GpuSlots(slots_dir, ["0", "1"])
    try:
        assert slots.try_take(1) is None  # both held
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(WAIT_S)
        assert slots.take(2, timeout_s=WAIT_S) == ("0", "1")
    finally:
        victim.kill()
        slots.close()


def test_the_trainer_child_keeps_the_devices_after_its_parent_dies(machine, fake_cuda) -> None:
    """llamafactory-cli (and its torchrun) get the job's devices, its process count and the
    slots' descriptors: a killed job whose trainer still runs on the GPUs does not hand them
    to the next job."""
    slots_dir = machine(gpus=2)
    victim, child = start_victim(1, spawn_child=True)
    slots = GpuSlots(slots_dir, ["0", "1"])
    pid, nproc, visible = child.get(timeout=WAIT_S)
    try:
        assert (nproc, visible) == ("1", "0")
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(WAIT_S)
        assert slots.try_take(2) is None  # the orphaned trainer still holds device 0
        os.kill(pid, signal.SIGKILL)
        assert slots.take(2, timeout_s=WAIT_S) == ("0", "1")
    finally:
        victim.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        slots.close()


def test_a_multi_gpu_job_waits_until_its_devices_are_free_together(machine, fake_cuda) -> None:
    slots_dir = machine(gpus=4)
    others = GpuSlots(slots_dir, ["0", "1", "2", "3"])
    assert others.try_take(3) == ("0", "1", "2")
    results = FORK.Queue()
    waiter = FORK.Process(target=hold_job, args=(2, 0.0, results))
    waiter.start()
    try:
        with pytest.raises(queue.Empty):  # one device free: it must not start
            results.get(timeout=0.5)
        # while it waits it holds nothing: a one-GPU job takes the free device at once
        third = GpuSlots(slots_dir, ["0", "1", "2", "3"])
        assert third.try_take(1) == ("3",)
        third.close()
        others.release(["0"])  # now "0" and "3" are free together
        n, ids, _, _ = results.get(timeout=WAIT_S)
        assert n == 2 and ids == ["0", "3"]
        waiter.join(WAIT_S)
        assert waiter.exitcode == 0
    finally:
        waiter.kill()
        others.close()


def test_take_gives_up_after_its_timeout(tmp_path) -> None:
    first, second = GpuSlots(tmp_path, ["0"]), GpuSlots(tmp_path, ["0"])
    try:
        assert first.take(1) == ("0",)
        waited: list[float] = []
        with pytest.raises(TimeoutError):
            second.take(1, timeout_s=0.2, on_wait=waited.append)
        assert waited and waited[0] < 0.2  # the wait was reported when it began
        with pytest.raises(ValueError, match="2 of 1"):
            second.take(2)
    finally:
        first.close()
        second.close()


# --- where the devices come from ---------------------------------------------------------------


def test_under_slurm_the_allocator_stands_aside(machine, fake_cuda, monkeypatch) -> None:
    slots_dir = machine(gpus=8)
    monkeypatch.setenv(devices.SLURM_ENV, "4242")
    monkeypatch.setenv(devices.VISIBLE_ENV, "2,3")
    before = dict(os.environ)
    with devices.job_gpus(2, job="train", student="s") as ids:
        assert ids == ("2", "3") and dict(os.environ) == before
    assert dict(os.environ) == before and not slots_dir.exists()


def test_a_job_that_asked_for_no_gpu_is_left_alone(machine, monkeypatch) -> None:
    slots_dir = machine(gpus=2)

    def forbidden():
        raise AssertionError("a CPU job asked torch about CUDA")

    monkeypatch.setattr(torch.cuda, "is_available", forbidden)
    before = dict(os.environ)
    with devices.job_gpus(0, job="train", student="tiny") as ids:
        assert ids == () and dict(os.environ) == before
    assert not slots_dir.exists()


def test_machine_devices() -> None:
    assert devices.machine_devices(3, {}) == ["0", "1", "2"]
    assert devices.machine_devices(2, {"CUDA_VISIBLE_DEVICES": "4,5,6"}) == ["4", "5"]
    assert devices.machine_devices(None, {"CUDA_VISIBLE_DEVICES": "GPU-a1, GPU-b2"}) == [
        "GPU-a1",
        "GPU-b2",
    ]
    assert devices.machine_devices(None, {"CUDA_VISIBLE_DEVICES": ""}) == []
    with pytest.raises(ConfigError, match=r"placement\.gpus is 4 but CUDA_VISIBLE_DEVICES='0,1'"):
        devices.machine_devices(4, {"CUDA_VISIBLE_DEVICES": "0,1"})


# --- no silent CPU fallback ----------------------------------------------------------------------


#: What the stop line says about this venv's torch (its version and the CUDA it was built for).
BUILD = f"torch {torch.__version__}, " + (
    f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU build"
)


def stop_line(job: str, student: str, asked: int, seen: int, visible: str = "unset") -> str:
    s = "s" if asked > 1 else ""
    return (
        f"{job} (student {student}) asked for {asked} GPU{s} but sees {seen} ({BUILD};"
        f" CUDA_VISIBLE_DEVICES={visible}): it does not run on the CPU. Fix: `bash install.sh"
        f" --gpu` (a CUDA build of torch), on a machine with {asked} GPU{s}"
    )


def test_require_gpus_without_cuda_names_job_student_seen_and_fix(monkeypatch) -> None:
    monkeypatch.delenv(devices.VISIBLE_ENV, raising=False)
    assert not torch.cuda.is_available()  # this machine
    job = "answer results/answers/llama31_8b/base.jsonl"
    with pytest.raises(devices.GpuUnavailableError) as error:
        devices.require_gpus(1, job=job, student="llama31_8b")
    assert str(error.value) == stop_line(job, "llama31_8b", 1, 0)
    assert devices.require_gpus(0, job="answer", student="tiny") == 0


def test_require_gpus_with_too_few_devices(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(devices.GpuUnavailableError) as error:
        devices.require_gpus(4, job="train_pride", student="llama31_8b")
    assert str(error.value) == stop_line("train_pride", "llama31_8b", 4, 2)
    assert devices.require_gpus(2, job="train_pride", student="llama31_8b") == 2


def test_a_job_asking_more_gpus_than_the_machine_has_stops_before_any_slot(
    machine, monkeypatch
) -> None:
    slots_dir = machine(gpus=None)
    monkeypatch.setattr(devices, "count_cuda_devices", lambda: 2)
    with (
        pytest.raises(devices.GpuUnavailableError) as error,
        devices.job_gpus(4, job="train_pride", student="llama31_8b"),
    ):
        raise AssertionError("ran")
    assert str(error.value) == stop_line("train_pride", "llama31_8b", 4, 2)
    assert not slots_dir.exists()


def test_train_entry_point_stops_with_one_line(machine, tmp_path, capsys) -> None:
    """``python -m empathy_distill.training.run ... --gpus 1`` on this CPU machine: exit 1 and
    one ``error:`` line, before any training. No config key, no CUDA_VISIBLE_DEVICES: the
    machine's devices are torch's real count, asked in a child process (0 here)."""
    from empathy_distill.training import run

    machine(gpus=None)
    out = tmp_path / "results/models/llama31_8b/direct/all/sft"
    argv = ["--stage", "sft", "--spec", "{}", "--out", str(out), "--student", "llama31_8b"]
    assert run.main([*argv, "--gpus", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: " + stop_line(f"sft training {out}", "llama31_8b", 1, 0)]
    assert not out.exists()
    assert run.main([*argv, "--gpus", "1", "--nproc-per-node", "2"]) == 1
    assert "nproc_per_node 2 is more than the job's 1 GPUs" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("module", "argv", "job", "student"),
    [
        (
            "empathy_distill.evaluation.generate",
            ["--spec", json.dumps({"student": "llama31_8b"}), "--test", "t.csv"],
            "answer o",
            "llama31_8b",
        ),
        (
            "empathy_distill.training.pride.reasoning",
            ["--spec", json.dumps({"teacher": "llama31_70b_instruct"}), "--train", "t.csv"],
            "pride_reasoning o",
            "llama31_70b_instruct (PRIDE teacher)",
        ),
        (
            "empathy_distill.evaluation.scoring.finetune_local",
            [
                "--spec",
                json.dumps(
                    {
                        "scorer": "ft",
                        "base_model": "m",
                        "endpoint": {"backend": "transformers"},
                        "llamafactory": {},
                    }
                ),
                "--train",
                "t.jsonl",
            ],
            "finetune_scorer ft",
            "m",
        ),
    ],
)
def test_every_gpu_entry_point_stops(
    machine, monkeypatch, capsys, module, argv, job, student
) -> None:
    import importlib

    machine(gpus=None)
    monkeypatch.setattr(devices, "count_cuda_devices", lambda: 0)
    main = importlib.import_module(module).main
    assert main([*argv, "--out", "o", "--gpus", "2"]) == 1
    assert capsys.readouterr().err == f"error: {stop_line(job, student, 2, 0)}\n"


def test_every_gpu_rule_passes_its_gpu_count() -> None:
    """Each rule with a ``gpu`` resource hands it to its job (``--gpus {resources.gpu}``)."""
    rules = Path(__file__).resolve().parents[1] / "workflow" / "rules"
    found = 0
    for path in rules.glob("*.smk"):
        for block in path.read_text().split("\nrule ")[1:]:
            if "gpu=" in block:
                found += 1
                assert "--gpus {resources.gpu}" in block, f"{path.name}: rule {block.split(':')[0]}"
    # train, train_pride, pride_teacher_outputs, pride_reasoning, answer, emotion_answers,
    # finetune_scorer, finetune_study_scorer
    assert found == 8


# --- the LLaMA-Factory launch --------------------------------------------------------------------


def test_launch_env_always_sets_the_jobs_process_count(monkeypatch) -> None:
    """LLaMA-Factory 0.9.5 (llamafactory/launcher.py, launch()) starts torchrun by itself when
    more than one device is visible, with NPROC_PER_NODE defaulting to the device count."""
    monkeypatch.delenv("FORCE_TORCHRUN", raising=False)
    monkeypatch.setenv("NPROC_PER_NODE", "8")  # a stale value from the user's shell
    one = lft.launch_env(1)
    assert one["NPROC_PER_NODE"] == "1" and "FORCE_TORCHRUN" not in one
    four = lft.launch_env(4)
    assert four["NPROC_PER_NODE"] == "4" and four["FORCE_TORCHRUN"] == "1"
