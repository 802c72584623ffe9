"""`bash install.sh --gpu` resolved by pip, checked without a GPU and without wheels.

CI runs `.ci/gpu_resolve.sh`, a `pip install --dry-run --report` of the GPU install (with the vllm
extra, which only adds requirements) under envs/constraints-gpu.txt and envs/lock-gpu.txt, and sets
EMPATHY_DISTILL_REQUIRE_GPU_RESOLVE=1 so that a missing report fails here instead of skipping.
The report (pip's installation report, format version 1) lists every distribution pip would
install with its core metadata, so the checks read the packages' own pins, not ours:

- torch, torchvision and torchaudio are one release (PyTorch's compatibility table: torchvision
  0.N pairs with torch 2.(N-15), torchaudio shares torch's major.minor; torchvision also pins
  its torch in its metadata, torchaudio >= 2.9 does not),
- every Requires-Dist of LLaMA-Factory 0.9.5 and of vLLM holds for the resolved versions,
- the resolution equals envs/constraints-gpu.txt and the whole lock (a new dependency that the
  lock does not pin fails: relock), is a CUDA build, and its CUDA major is the one install.sh
  and the constraints file promise the driver for.

Developers without network: `bash .ci/gpu_resolve.sh` writes results/ci/gpu_resolve.json.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import Version

from empathy_distill import install_check

from .conftest import REPO_ROOT, skip_or_fail

REPORT = Path(
    os.environ.get("EMPATHY_DISTILL_GPU_RESOLVE", REPO_ROOT / "results/ci/gpu_resolve.json")
)
CONSTRAINTS = REPO_ROOT / "envs" / "constraints-gpu.txt"
LOCK = REPO_ROOT / "envs" / "lock-gpu.txt"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def report() -> dict:
    if not REPORT.exists():
        reason = f"no GPU resolve report at {REPORT} (run `bash .ci/gpu_resolve.sh`, needs network)"
        skip_or_fail(reason, "EMPATHY_DISTILL_REQUIRE_GPU_RESOLVE")
    data = json.loads(REPORT.read_text())
    assert data["version"] == "1", f"{REPORT}: unknown pip report version {data['version']}"
    return data


def resolved() -> dict[str, dict]:
    """{normalized name: core metadata} of every distribution the resolve installs."""
    return {normalize(i["metadata"]["name"]): i["metadata"] for i in report()["install"]}


def version_of(name: str) -> Version:
    return Version(resolved()[normalize(name)]["version"])


def unmet_requirements(name: str) -> list[str]:
    """Requires-Dist entries of ``name`` (no extras of its own) that the resolve breaks."""
    environment = {**default_environment(), **report()["environment"], "extra": ""}
    problems = []
    for line in resolved()[normalize(name)].get("requires_dist", []):
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        other = normalize(requirement.name)
        if other not in resolved():
            problems.append(f"{line}: {requirement.name} is not in the resolve")
        elif not requirement.specifier.contains(version_of(other), prereleases=True):
            problems.append(f"{line}: resolved {version_of(other)}")
    return problems


def constraint_pins(path: Path = CONSTRAINTS) -> dict[str, Version]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{path.name}: {line} is not an exact pin"
            pins[normalize(requirement.name)] = Version(spec.version)
    return pins


def test_torch_torchvision_torchaudio_are_one_release():
    torch, vision, audio = (version_of(n) for n in ("torch", "torchvision", "torchaudio"))
    assert torch.local is None or not torch.local.startswith("cpu"), f"CPU build {torch}"
    assert torch.major == 2 and (vision.major, vision.minor) == (0, torch.minor + 15), (
        f"torchvision {vision} does not pair with torch {torch} (0.N <-> 2.(N-15))"
    )
    assert audio.release[:2] == torch.release[:2], f"torchaudio {audio} was built for another torch"
    assert unmet_requirements("torchvision") == []  # its own `torch==` pin


def test_llamafactory_pins_hold():
    assert version_of("llamafactory") == Version("0.9.5")
    requires = " ".join(resolved()["llamafactory"]["requires_dist"])
    assert "torchaudio" in requires and "transformers" in requires  # the real metadata
    assert unmet_requirements("llamafactory") == []


def test_vllm_resolves_beside_llamafactory():
    assert "vllm" in resolved(), "the vllm extra is not in the resolve"
    assert unmet_requirements("vllm") == []
    # vLLM pins the exact torch it was built against: the same release LLaMA-Factory gets.
    pins = [r for r in resolved()["vllm"]["requires_dist"] if re.match(r"torch\s*==", r)]
    assert pins == [f"torch=={version_of('torch')}"]


def test_every_package_of_the_project_holds():
    """The project's own requirements (all extras the resolve asked for) hold too."""
    project = next(i for i in report()["install"] if i.get("requested_extras"))
    assert normalize(project["metadata"]["name"]) == "empathy-distill"
    extras = set(project["requested_extras"])
    assert {"dev", "vllm"} <= extras
    environment = {**default_environment(), **report()["environment"]}
    for line in project["metadata"]["requires_dist"]:
        requirement = Requirement(line)
        if requirement.name == "empathy-distill":
            continue
        wanted = not requirement.marker or any(
            requirement.marker.evaluate({**environment, "extra": e}) for e in ("", *extras)
        )
        if wanted:
            name = normalize(requirement.name)
            assert requirement.specifier.contains(version_of(name), prereleases=True), line


def test_resolve_equals_the_gpu_constraints():
    pins = constraint_pins()
    assert {"torch", "torchvision", "torchaudio", "llamafactory", "vllm"} <= set(pins)
    wrong = {n: str(version_of(n)) for n, v in pins.items() if version_of(n).public != str(v)}
    assert wrong == {}


def test_resolve_equals_the_lock():
    """The lock pins exactly what the resolve installs: nothing unpinned, nothing stale."""
    lock = constraint_pins(LOCK)
    got = {n: Version(m["version"]) for n, m in resolved().items() if n != "empathy-distill"}
    unpinned = sorted(set(got) - set(lock))
    assert unpinned == [], f"not in {LOCK.name}: run `bash .ci/gpu_resolve.sh --relock`"
    assert {n: v for n, v in got.items() if lock[n] != v} == {}
    # the hand-kept pins and the lock agree
    pins = constraint_pins()
    assert {n: (v, lock.get(n)) for n, v in pins.items() if lock.get(n) != v} == {}


def test_cuda_build_matches_the_documented_driver():
    """PyPI's torch pulls its CUDA runtime as wheels: their major is the wheel's CUDA, and the
    driver that install.sh, the constraints file and install_check name must be the one it needs."""
    requires = resolved()["torch"]["requires_dist"]
    runtime = [
        r
        for r in map(Requirement, requires)
        if r.name in ("cuda-toolkit", "nvidia-cuda-runtime-cu12")
    ]
    assert runtime, f"torch {version_of('torch')} pulls no CUDA runtime: a CPU build?"
    (spec,) = runtime[0].specifier
    major = Version(spec.version).major
    driver = ".".join(map(str, install_check.MIN_DRIVER[major])).removesuffix(".0")
    for path in (CONSTRAINTS, REPO_ROOT / "install.sh"):
        text = path.read_text()
        assert f"CUDA {major}." in text and f">= {driver}" in text, path.name


def test_install_check_names_driver_and_wheel_cuda():
    """The message of install.sh's last step (no GPU needed: the inputs are plain values)."""
    assert install_check.cuda_problem(True, "2.11.0", "13.0", "580.65.06") is None
    message, fatal = install_check.cuda_problem(False, "2.11.0", "13.0", "550.54.15")
    assert fatal
    assert "550.54.15" in message and "CUDA 13.0" in message and ">= 580" in message
    assert install_check.CUDA12_FIX in message  # driver too old: the CUDA 12 build
    message, fatal = install_check.cuda_problem(False, "2.11.0+cu128", "12.8", "570.86.10")
    assert fatal and "too old" not in message and "570.86.10" in message
    message, fatal = install_check.cuda_problem(False, "2.11.0", "13.0", None)
    assert not fatal and "nvidia-smi not found" in message  # a login node: warn only
    message, fatal = install_check.cuda_problem(False, "2.13.0+cpu", None, "580.65.06")
    assert fatal and "CPU build" in message


def test_install_check_runs_nvidia_smi(tmp_path, monkeypatch):
    """nvidia_driver() reads the first GPU's driver from a real process (a stand-in nvidia-smi
    that prints what `nvidia-smi --query-gpu=driver_version --format=csv,noheader` prints)."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        '#!/bin/sh\n[ "$1" = --query-gpu=driver_version ] || exit 9\n'
        'printf "550.54.15\\n550.54.15\\n"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert install_check.nvidia_driver() == "550.54.15"
    monkeypatch.setenv("PATH", str(tmp_path / "none"))
    assert install_check.nvidia_driver() is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--vllm"], "need --gpu"),
        (["--cuda", "cu128"], "need --gpu"),
        (["--gpu", "--vllm", "--cuda", "cu128"], "CUDA 13"),
        (["--gpu", "--cuda"], "needs a tag"),
        (["--cpu"], "unknown option --cpu"),
    ],
)
def test_install_sh_refuses_bad_options_before_installing(tmp_path, options, message):
    """Wrong option combinations stop before the venv is made (a copy of install.sh runs in an
    empty folder: nothing may appear there)."""
    script = tmp_path / "install.sh"
    script.write_text((REPO_ROOT / "install.sh").read_text())
    result = subprocess.run(["bash", str(script), *options], capture_output=True, text=True)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["install.sh"]
