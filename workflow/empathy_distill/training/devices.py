"""The GPUs of one job: its own devices, or a one-line stop (never a silent CPU run).

Every GPU job (train, train_pride, pride_reasoning, answer, finetune_scorer) gets the GPU count
its rule asked for as ``--gpus {resources.gpu}``: an operational setting, so an argument of the
shell command, never part of the spec Snakemake compares for reruns. :func:`job_gpus` then

- asks for nothing when the job asked for no GPU (the CPU students ``tiny``, ``smollm2_135m``):
  the job runs where it is, as before;
- under SLURM (``$SLURM_JOB_ID``) keeps the devices the scheduler gave the job;
- on one machine takes ``n`` devices from the file-locked slots (:mod:`.gpu_slots`) and sets
  ``CUDA_VISIBLE_DEVICES`` to them before torch initialises CUDA (and so for every child:
  ``llamafactory-cli``, torchrun, vLLM's workers);
- then checks with torch that ``n`` CUDA devices are visible; if not, it stops with one line
  naming the job, the student, what it sees and the command that installs a CUDA build.

The machine's devices: ``placement.gpus`` of the config (the first N of ``CUDA_VISIBLE_DEVICES``
when that is set, else ids 0..N-1), else ``CUDA_VISIBLE_DEVICES``, else torch's device count
(asked in a child process, so that this one has not initialised CUDA yet).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError, EmpathyDistillError
from ..core.runtime import RUNTIME_ENV, parse_json_object
from .gpu_slots import GpuSlots

LOG = logging.getLogger(__name__)

VISIBLE_ENV = "CUDA_VISIBLE_DEVICES"
SLURM_ENV = "SLURM_JOB_ID"
#: Where the slots live when ``placement.slots_dir`` is not set (relative to the run's workdir).
DEFAULT_SLOTS_DIR = ".snakemake/gpu-slots"
INSTALL_GPU = "bash install.sh --gpu"

#: Lock descriptors of the devices this process holds, for its children (``pass_fds``).
_held_fds: tuple[int, ...] = ()


class GpuUnavailableError(EmpathyDistillError):
    """A job that asked for GPUs sees fewer CUDA devices than it asked for."""


def add_gpus_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gpus",
        type=int,
        default=0,
        help="GPUs the job asked for (the rule's resources.gpu); 0: none asked, run where it is",
    )


def torch_build() -> str:
    """torch's version and the CUDA it was built for (reading them does not initialise CUDA)."""
    import torch

    cuda = torch.version.cuda
    return f"torch {torch.__version__}, " + (f"built for CUDA {cuda}" if cuda else "a CPU build")


def unavailable_message(job: str, student: str, asked: int, seen: int) -> str:
    """The one line a GPU job stops with."""
    plural = "s" if asked != 1 else ""
    visible = os.environ.get(VISIBLE_ENV)
    return (
        f"{job} (student {student}) asked for {asked} GPU{plural} but sees {seen}"
        f" ({torch_build()}; {VISIBLE_ENV}={'unset' if visible is None else repr(visible)}):"
        f" it does not run on the CPU. Fix: `{INSTALL_GPU}` (a CUDA build of torch), on a"
        f" machine with {asked} GPU{plural}"
    )


def require_gpus(n: int, *, job: str, student: str) -> int:
    """Stop unless torch sees ``n`` CUDA devices (``n`` 0: no check); returns what it sees."""
    if n <= 0:
        return 0
    import torch

    seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if seen < n:
        raise GpuUnavailableError(unavailable_message(job, student, n, seen))
    return seen


def placement_settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """``placement`` of the runtime part a rule exported ({} when run by hand)."""
    raw = environ.get(RUNTIME_ENV)
    return parse_json_object(raw, f"${RUNTIME_ENV}").get("placement", {}) if raw else {}


def visible_devices(environ: Mapping[str, str]) -> list[str] | None:
    """The ids in ``CUDA_VISIBLE_DEVICES`` (None when unset)."""
    raw = environ.get(VISIBLE_ENV)
    if raw is None:
        return None
    return [d.strip() for d in raw.split(",") if d.strip()]


def count_cuda_devices() -> int:
    """torch's CUDA device count, asked in a child process (CUDA is then still uninitialised
    here, so ``CUDA_VISIBLE_DEVICES`` set afterwards takes effect)."""
    code = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300
    )
    if done.returncode != 0:
        LOG.warning("could not count CUDA devices: %s", done.stderr.strip()[-500:])
        return 0
    return int(done.stdout.strip().splitlines()[-1])


def machine_devices(configured: int | None, environ: Mapping[str, str]) -> list[str]:
    """The device ids this machine lends to the run (see the module docstring)."""
    visible = visible_devices(environ)
    if configured is not None:
        if visible is None:
            return [str(i) for i in range(configured)]
        if len(visible) < configured:
            raise ConfigError(
                f"placement.gpus is {configured} but {VISIBLE_ENV}={environ[VISIBLE_ENV]!r} "
                f"lists {len(visible)} devices"
            )
        return visible[:configured]
    if visible is not None:
        return visible
    return [str(i) for i in range(count_cuda_devices())]


def held_fds() -> tuple[int, ...]:
    """Lock descriptors of this process's devices: pass them to a child (``pass_fds``) so that
    the devices stay held while it runs, even if this process is killed first."""
    return _held_fds


@contextmanager
def job_gpus(
    n: int,
    *,
    job: str,
    student: str,
) -> Iterator[tuple[str, ...]]:
    """Hold ``n`` devices of this machine for the block, with ``CUDA_VISIBLE_DEVICES`` set to
    them; yields their ids (none when ``n`` is 0; Slurm's when under Slurm)."""
    global _held_fds
    env = os.environ
    if n <= 0:
        yield ()
        return
    if SLURM_ENV in env:
        require_gpus(n, job=job, student=student)
        yield tuple(visible_devices(env) or ())
        return
    settings = placement_settings(env)
    devices = machine_devices(settings.get("gpus"), env)
    if len(devices) < n:
        raise GpuUnavailableError(unavailable_message(job, student, n, len(devices)))
    slots = GpuSlots(Path(settings.get("slots_dir") or DEFAULT_SLOTS_DIR), devices)
    before = env.get(VISIBLE_ENV)
    try:
        taken = slots.take(
            n,
            on_wait=lambda waited: LOG.info(
                "%s: waiting %.0f s for %d of GPUs %s to be free together",
                job,
                waited,
                n,
                ",".join(devices),
            ),
        )
        env[VISIBLE_ENV] = ",".join(taken)
        _held_fds = slots.filenos(taken)
        LOG.info("%s: %s=%s", job, VISIBLE_ENV, env[VISIBLE_ENV])
        require_gpus(n, job=job, student=student)
        yield taken
    finally:
        _held_fds = ()
        slots.close()
        if before is None:
            env.pop(VISIBLE_ENV, None)
        else:
            env[VISIBLE_ENV] = before
