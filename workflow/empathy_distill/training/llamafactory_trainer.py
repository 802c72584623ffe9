"""The LLaMA-Factory trainer (SFT, DPO): write a job's YAML and call ``llamafactory-cli train``.

The YAML comes from the workflow config (:mod:`.llamafactory_config`); a Snakemake rule holds it
as JSON in its ``params`` (:meth:`LlamaFactoryTrainer.settings`), so the settings Snakemake
compares for reruns are exactly the settings trained with. Two adaptations happen here, on the
machine that trains, and are logged:

- no CUDA device: ``bf16``/``fp16``/``pure_bf16`` are turned off (CPU training of the tiny
  student in tests and demos), except ``bf16`` with ``use_cpu: true`` on a CPU with native bf16
  (``avx512_bf16``/``amx_bf16``), about 2x faster than float32 for SmolLM2 on two cores;
  ``nproc_per_node`` > 1 falls back to one process;
- ``NPROC_PER_NODE`` is always the job's own process count, and ``FORCE_TORCHRUN=1`` when it
  is > 1: left unset, LLaMA-Factory 0.9.5 (``llamafactory/launcher.py``, ``launch()``) starts
  torchrun by itself whenever more than one device is visible, with one process per visible
  device, which would change the paper's batch size. ``CUDA_VISIBLE_DEVICES`` comes from the
  job's slots (:mod:`.devices`), which the child holds too (``pass_fds``).

A job that asked for GPUs never gets here without CUDA (:func:`.devices.require_gpus`); the
CPU adaptations serve the jobs that asked for none.

The written ``train.yaml`` is what ran. LLaMA-Factory's output streams to stdout (the rule sends
it to its log).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..core.errors import TrainingError
from ..core.hardware import cpu_has_native_bf16
from .devices import held_fds
from .llamafactory_config import build_train_args, write_train_yaml
from .methods import TrainingJob

LOG = logging.getLogger(__name__)

TRAIN_YAML = "train.yaml"
ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
RESULTS_FILE = "train_results.json"
LOSS_PLOT = "training_loss.png"
HALF_PRECISION_KEYS = ("bf16", "fp16", "pure_bf16")

#: Signatures of the CPU-CI breakage of PyPI's CUDA builds of torchaudio/torchvision (see README).
BROKEN_TORCH_EXTRAS = {
    "_torchaudio": "torchaudio's native library (a CUDA build) does not load",
    "libc10_cuda": "torchaudio's native library (a CUDA build) does not load",
    "torchvision::nms": "torchvision (a CUDA build) does not match the installed torch",
    "No module named 'torchaudio'": "LLaMA-Factory 0.9.5 imports torchaudio (data/mm_plugin.py), "
    "so it must stay installed",
}
TORCH_EXTRAS_FIX = (
    "On a CPU-only machine with PyPI's CUDA builds of torchvision/torchaudio: "
    "`pip uninstall -y torchvision` and delete torchaudio's native libraries "
    "(`rm -f \"$(python -c 'import importlib.util,os;"
    'print(os.path.dirname(importlib.util.find_spec("torchaudio").origin))\')"/lib/*.so`); '
    "torchaudio then imports without them (LLaMA-Factory imports it but never uses it for text). "
    "On GPU machines install matching torch/torchvision/torchaudio builds instead."
)


def adapt_to_machine(
    args: dict,
    nproc_per_node: int,
    cuda_available: bool,
    bf16_supported: bool = True,
    cpu_bf16: bool = False,
) -> tuple[dict, int, list[str]]:
    """Settings and process count for this machine, plus log lines saying what changed.

    ``cpu_bf16``: the CPU computes bf16 natively; then ``bf16`` with ``use_cpu: true`` is kept.
    """
    args = dict(args)
    notes: list[str] = []
    if not cuda_available:
        keep_bf16 = bool(args.get("bf16") and args.get("use_cpu") and cpu_bf16)
        on = [k for k in HALF_PRECISION_KEYS if args.get(k) and not (k == "bf16" and keep_bf16)]
        for key in on:
            args[key] = False
        if keep_bf16:
            notes.append("no CUDA device: training on CPU in bf16 (use_cpu: true, native bf16)")
        elif on:
            why = " (this CPU has no native bf16)" if args.get("use_cpu") else ""
            notes.append(
                f"no CUDA device: {', '.join(on)} turned off, training on CPU in float32{why}"
            )
        if nproc_per_node > 1:
            notes.append(f"no CUDA device: nproc_per_node {nproc_per_node} -> 1")
            nproc_per_node = 1
    elif args.get("bf16") and not bf16_supported:
        raise TrainingError(
            "this GPU does not support bf16 (the paper's setting); set training.common.bf16: false "
            "and fp16: true in the config to train in fp16 on it"
        )
    return args, nproc_per_node, notes


def check_inputs(args: dict) -> None:
    """Fail before launching if LLaMA-Factory would fail late or silently train on nothing."""
    info_path = Path(args["dataset_dir"]) / "dataset_info.json"
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TrainingError(f"{info_path} not found (dataset_dir of the job)") from exc
    key = args["dataset"]
    if key not in info:
        raise TrainingError(f"{info_path}: no dataset {key!r} (has: {', '.join(sorted(info))})")
    data_file = Path(args["dataset_dir"]) / info[key]["file_name"]
    if not data_file.is_file():
        raise TrainingError(f"{info_path}: {key!r} points to {data_file}, which does not exist")
    for name in ("adapter_name_or_path", "ref_model_adapters"):
        adapter = args.get(name)
        if adapter and not (Path(adapter) / ADAPTER_CONFIG).is_file():
            raise TrainingError(f"{name}: {adapter} holds no {ADAPTER_CONFIG} (SFT not trained?)")


def prepare_output_dir(out: Path) -> None:
    """Empty ``out`` of a previous run (it must look like one) so nothing stale survives."""
    if out.is_dir() and any(out.iterdir()):
        if not (out / TRAIN_YAML).is_file():
            raise TrainingError(
                f"{out} is not empty and holds no {TRAIN_YAML}: refusing to clear a folder this "
                f"workflow did not write"
            )
        LOG.info("clearing previous training output in %s", out)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def llamafactory_command(yaml_path: Path) -> list[str]:
    """``llamafactory-cli train <yaml>`` from this interpreter's environment."""
    cli = Path(sys.executable).parent / "llamafactory-cli"
    if cli.is_file():
        return [str(cli), "train", str(yaml_path)]
    found = shutil.which("llamafactory-cli")
    if found:
        return [found, "train", str(yaml_path)]
    return [sys.executable, "-m", "llamafactory.cli", "train", str(yaml_path)]


def launch_env(nproc_per_node: int) -> dict[str, str]:
    env = dict(os.environ)
    # torchrun (launched by LLaMA-Factory by name) must come from the same environment.
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["NPROC_PER_NODE"] = str(nproc_per_node)
    if nproc_per_node > 1:
        env["FORCE_TORCHRUN"] = "1"
    return env


def stream(
    command: list[str], env: dict[str, str], sink: Callable[[str], None]
) -> tuple[int, list[str]]:
    """Run ``command``, pass its output to ``sink`` line by line; return (code, last lines)."""
    tail: collections.deque[str] = collections.deque(maxlen=300)
    with subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
        pass_fds=held_fds(),  # the job's GPU slots stay held while the trainer runs
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sink(line)
            tail.append(line)
    return process.returncode, list(tail)


def diagnose(tail: list[str]) -> str:
    text = "".join(tail)
    for signature, meaning in BROKEN_TORCH_EXTRAS.items():
        if signature in text:
            return f" Cause: {meaning}. {TORCH_EXTRAS_FIX}"
    return ""


def ensure_loss_plot(out: Path) -> None:
    """LLaMA-Factory skips the plot when no loss was logged (fewer steps than logging_steps)."""
    if (out / LOSS_PLOT).is_file():
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    state_file = out / "trainer_state.json"
    history = json.loads(state_file.read_text())["log_history"] if state_file.is_file() else []
    points = [(h["step"], h["loss"]) for h in history if "loss" in h]
    fig, ax = plt.subplots()
    if points:
        ax.plot(*zip(*points, strict=True), marker="o")
    else:
        ax.text(0.5, 0.5, "no loss logged: fewer steps than logging_steps", ha="center")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"training loss of {out}")
    fig.savefig(out / LOSS_PLOT, dpi=100)
    plt.close(fig)


def train(
    args: dict,
    nproc_per_node: int = 1,
    sink: Callable[[str], None] | None = None,
) -> Path:
    """Train one job described by LLaMA-Factory ``args``; return its output folder."""
    import torch

    sink = sink or _print
    cuda = torch.cuda.is_available()
    bf16_ok = bool(cuda and torch.cuda.is_bf16_supported())
    args, nproc_per_node, notes = adapt_to_machine(
        args, nproc_per_node, cuda, bf16_ok, cpu_bf16=cpu_has_native_bf16()
    )
    for note in notes:
        LOG.warning(note)
    check_inputs(args)
    out = Path(args["output_dir"])
    prepare_output_dir(out)
    yaml_path = write_train_yaml(args, out / TRAIN_YAML)
    command = llamafactory_command(yaml_path)
    LOG.info("running %s (nproc_per_node=%d)", " ".join(command), nproc_per_node)
    start = time.monotonic()
    code, tail = stream(command, launch_env(nproc_per_node), sink)
    elapsed = time.monotonic() - start
    if code != 0:
        raise TrainingError(
            f"llamafactory-cli train {yaml_path} failed with exit code {code} after "
            f"{elapsed:.0f} s; see the log above.{diagnose(tail)}"
        )
    for required in (ADAPTER_FILE, RESULTS_FILE):
        if not (out / required).is_file():
            raise TrainingError(f"llamafactory-cli finished but {out / required} is missing")
    ensure_loss_plot(out)
    LOG.info("trained %s in %.1f s", out, elapsed)
    return out


def _print(line: str) -> None:
    sys.stdout.write(line)
    sys.stdout.flush()


class LlamaFactoryTrainer:
    """:class:`~.methods.Trainer` for the LLaMA-Factory objectives (``sft``, ``dpo``)."""

    def settings(self, config: dict, job: TrainingJob, previous: str | None) -> dict:
        return build_train_args(
            config,
            job.student,
            job.method,
            job.strategy,
            job.stage,
            previous_adapter=previous,
        )

    def train(self, settings: dict, out: Path, nproc_per_node: int) -> Path:
        return train({**settings, "output_dir": str(out)}, nproc_per_node=nproc_per_node)


TRAINER = LlamaFactoryTrainer()
