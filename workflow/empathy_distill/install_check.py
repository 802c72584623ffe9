"""The last step of install.sh: import what the jobs import and, on a GPU install, check CUDA.

Why: a resolve can pick a torchaudio built for another torch (LLaMA-Factory imports torchaudio,
so every train and answer job would then die at import), and a CUDA wheel newer than the NVIDIA
driver leaves torch without CUDA. Both are cheap to see right after the install and expensive to
find hours later in a job log. Machines without an NVIDIA driver (a cluster's login node) only get
a warning: the GPU jobs run elsewhere.

    python -m empathy_distill.install_check [--gpu]
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import subprocess
import sys

#: What the training, answer and judge jobs import (llamafactory.data imports torchaudio).
IMPORTS = ("empathy_distill", "snakemake", "llamafactory.data", "torchaudio", "peft")
#: Oldest Linux NVIDIA driver for each CUDA major version of a wheel, with CUDA's minor-version
#: compatibility (NVIDIA's CUDA Toolkit release notes, "CUDA Driver" table): 12.x runs on
#: >= 525.60.13, 13.x on >= 580.
MIN_DRIVER = {12: (525, 60), 13: (580, 0)}
#: A CUDA 12 build of the same torch release for drivers older than 580 (install.sh --cuda).
CUDA12_FIX = "bash install.sh --gpu --cuda cu128"


def import_problems(modules: tuple[str, ...] = IMPORTS) -> list[str]:
    """``module: error`` for every module that does not import."""
    problems = []
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # an ImportError, or an OSError from a native library
            problems.append(f"{module}: {type(exc).__name__}: {exc}")
    return problems


def nvidia_driver() -> str | None:
    """The NVIDIA driver version ``nvidia-smi`` reports, None without a driver."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (nvidia-smi failed)"
    lines = out.stdout.split()
    if out.returncode != 0 or not lines:
        return f"unknown (nvidia-smi: {(out.stderr or out.stdout).strip()[:200]})"
    return lines[0]


def _version_tuple(version: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return None


def cuda_problem(
    cuda_available: bool, torch_version: str, wheel_cuda: str | None, driver: str | None
) -> tuple[str, bool] | None:
    """None when torch can use CUDA, else (message, fatal). Fatal where a driver is present:
    the install is wrong for this machine. Without a driver (a login node) only a warning."""
    if cuda_available:
        return None
    if wheel_cuda is None:
        return (f"torch {torch_version} is a CPU build; a GPU install needs a CUDA build", True)
    major = int(wheel_cuda.split(".")[0])
    needed = MIN_DRIVER.get(major)
    needs = f"NVIDIA driver >= {'.'.join(map(str, needed))}" if needed else "a newer driver"
    if driver is None:
        return (
            f"no NVIDIA driver on this machine (nvidia-smi not found): torch {torch_version}"
            f" (CUDA {wheel_cuda} build, needs {needs}) is installed; the GPU jobs check CUDA"
            " where they run",
            False,
        )
    have = _version_tuple(driver)
    too_old = needed is not None and have is not None and have[:2] < needed
    advice = (
        f"the driver is too old for this wheel; install the CUDA 12 build: {CUDA12_FIX}"
        if too_old
        else "check `nvidia-smi` and CUDA_VISIBLE_DEVICES"
    )
    return (
        f"CUDA is not available: torch {torch_version} is a CUDA {wheel_cuda} build"
        f" (needs {needs}), the NVIDIA driver is {driver}; {advice}",
        True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="also check that torch sees CUDA")
    args = parser.parse_args(argv)
    problems = import_problems()
    if problems:
        print("install check failed, these imports fail:\n  " + "\n  ".join(problems))
        return 1
    import torch

    print(f"imports ok: {', '.join(IMPORTS)} (torch {torch.__version__})")
    if not args.gpu:
        return 0
    problem = cuda_problem(
        torch.cuda.is_available(), torch.__version__, torch.version.cuda, nvidia_driver()
    )
    if problem is None:
        name = torch.cuda.get_device_name(0)
        print(f"CUDA ok: {torch.cuda.device_count()} GPU(s), {name}, CUDA {torch.version.cuda}")
        return 0
    message, fatal = problem
    print(("error: " if fatal else "warning: ") + message)
    return 1 if fatal else 0


if __name__ == "__main__":
    sys.exit(main())
