"""Run a small workflow through workflow/profiles/slurm on the loopback Slurm and collect proof.

Why: the profile's claims (GPU rules get `--gpus=1` from `set-resources`, API rules stay
local or are throttled by the global `api_calls` resource, status polling with `squeue` ends)
are only worth something if a real `slurmctld` accepted, ran and reported the jobs. This module
starts a `LoopbackSlurm`, runs `Snakefile.toy` (or any Snakefile, e.g. the real DAG) with

    snakemake --profile workflow/profiles/slurm --profile <overlay>

under `timeout -s INT`, logs every `sbatch` call through a shim on PATH, and returns what
happened as plain data (`ToyRun`) for tests/test_slurm.py to assert on.

CLI (as root): `python tests/slurm/toy.py [--keep DIR]` prints the evidence and exits 0 when
every check holds.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import run

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from loopback import LoopbackSlurm, ensure_installed  # noqa: E402

MAIN_PROFILE = REPO / "workflow" / "profiles" / "slurm"
OVERLAY = HERE / "profile"
SNAKEFILE = HERE / "Snakefile.toy"
GPU_RULES = ("train_sft", "train_dpo", "answer_base", "answer_model")
API_RULES = ("teacher_initial", "teacher_improve", "judge_pair")


def load_profile(path: Path) -> dict:
    """The YAML mapping of a profile directory's config.yaml."""
    return yaml.safe_load((path / "config.yaml").read_text()) or {}


def profile_partitions(profile: dict) -> tuple[str, ...]:
    """Every slurm_partition the profile names, the default-resources one first."""
    names = [str(profile.get("default-resources", {}).get("slurm_partition", "cpu"))]
    for res in (profile.get("set-resources") or {}).values():
        part = res.get("slurm_partition")
        if part is not None and str(part) not in names:
            names.append(str(part))
    return tuple(names)


def build_overlay(dest: Path, cpus: int, mem_mb: int, runtime_min: int = 10) -> Path:
    """Write the test overlay profile: tests/slurm/profile + the main profile's set-resources
    with sizes clamped to the loopback node (a later --profile replaces whole top-level keys,
    so the overlay must carry a complete set-resources)."""
    overlay = load_profile(OVERLAY)
    clamped: dict[str, dict] = {}
    for rule, res in (load_profile(MAIN_PROFILE).get("set-resources") or {}).items():
        res = dict(res)
        for key, cap in (
            ("mem_mb", mem_mb),
            ("cpus_per_gpu", cpus),
            ("cpus_per_task", cpus),
            ("runtime", runtime_min),
        ):
            if key in res:
                res[key] = min(int(res[key]), cap)
        clamped[rule] = res
    overlay["set-resources"] = clamped
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))
    return dest


def write_sbatch_shim(bin_dir: Path, log: Path) -> None:
    """An `sbatch` first on PATH that records its command line, then runs the real one."""
    real = "/usr/bin/sbatch"
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "sbatch"
    shim.write_text(
        "#!/bin/bash\n"
        f'printf "%q " "$@" >> {shlex.quote(str(log))}\n'
        f"echo >> {shlex.quote(str(log))}\n"
        f'exec {real} "$@"\n'
    )
    shim.chmod(0o755)


def write_srun_shim(bin_dir: Path, slurm_conf: Path) -> None:
    """An `srun` that puts SLURM_CONF back before running the real one.

    Why: the slurm-jobstep plugin (0.6.1) removes every SLURM_* variable except the job's
    identity before its inner `srun`, SLURM_CONF included. Real clusters keep slurm.conf at
    the default /etc/slurm/slurm.conf (or run configless), so they do not notice; this test
    cluster keeps its config in a temporary directory to leave the host untouched.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "srun"
    shim.write_text(
        f'#!/bin/bash\nexport SLURM_CONF={shlex.quote(str(slurm_conf))}\nexec /usr/bin/srun "$@"\n'
    )
    shim.chmod(0o755)


@dataclass
class ToyRun:
    """What a run did: exit code, log, sbatch calls, and the workdir with the outputs."""

    returncode: int
    seconds: float
    workdir: Path
    log: str
    sbatch_calls: list[str] = field(default_factory=list)

    def submitted_rules(self) -> list[str]:
        """Rule names of the sbatch calls, from the plugin's `--comment rule_<name>...`."""
        rules = []
        for call in self.sbatch_calls:
            m = re.search(r"--comment\s+'?rule_([A-Za-z0-9_]+?)(?:_wildcards_\S*)?'?(?:\s|$)", call)
            rules.append(m.group(1) if m else "?")
        return rules

    def calls_for(self, rule: str) -> list[str]:
        return [
            c for c, r in zip(self.sbatch_calls, self.submitted_rules(), strict=True) if r == rule
        ]


def run_workflow(
    cluster: LoopbackSlurm,
    workdir: Path,
    snakefile: Path = SNAKEFILE,
    extra_args: tuple[str, ...] = (),
    timeout_s: int = 240,
) -> ToyRun:
    """Run snakemake with the SLURM profile + test overlay under `timeout -s INT`."""
    scratch = workdir / ".slurm-test"
    overlay = build_overlay(scratch / "overlay", cluster.cpus, 1000)
    sbatch_log = scratch / "sbatch_calls.txt"
    sbatch_log.touch()
    write_sbatch_shim(scratch / "bin", sbatch_log)
    write_srun_shim(scratch / "bin", cluster.conf)
    env = cluster.env
    env["PATH"] = os.pathsep.join(
        [str(scratch / "bin"), str(Path(sys.executable).parent), env["PATH"]]
    )
    cmd = [
        "timeout", "-s", "INT", "-k", "20", str(timeout_s),
        sys.executable, "-m", "snakemake",
        "--snakefile", str(snakefile),
        "--directory", str(workdir),
        "--profile", str(MAIN_PROFILE),
        "--profile", str(overlay),
        "--workflow-profile", "none",
        *extra_args,
    ]  # fmt: skip
    t0 = time.monotonic()
    proc = run(cmd, env=env, cwd=workdir, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    calls = [line.strip() for line in sbatch_log.read_text().splitlines() if line.strip()]
    return ToyRun(proc.returncode, seconds, workdir, proc.stdout + proc.stderr, calls)


def read_evidence(path: Path) -> dict[str, str]:
    """`KEY=value` pairs written by a toy job (env lines and scontrol's `Key=Value` tokens)."""
    facts: dict[str, str] = {}
    for line in path.read_text().splitlines():
        for token in line.split():
            key, sep, value = token.partition("=")
            if sep and key not in facts:
                facts[key] = value
    return facts


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Largest number of intervals open at one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = cur = 0
    for _, step in events:
        cur += step
        best = max(best, cur)
    return best


def check_submissions(
    result: ToyRun,
    gpu_rules: tuple[str, ...] = GPU_RULES,
    local_rules: tuple[str, ...] = (),
) -> list[str]:
    """Claims that hold for any DAG (toy or real): the run succeeded, every GPU rule's sbatch
    call asked for one GPU, no other rule asked for a GPU, and `local_rules` never reached
    sbatch. Returns the failed claims (empty = all hold)."""
    if result.returncode != 0:
        return [f"snakemake exited {result.returncode}:\n{result.log[-4000:]}"]
    problems: list[str] = []
    for call, rule in zip(result.sbatch_calls, result.submitted_rules(), strict=True):
        asks_gpu = "--gpus=" in call or "--gres=gpu" in call
        if rule in local_rules:
            problems.append(f"local rule {rule} went through sbatch: {call[:300]}")
        elif rule in gpu_rules and not re.search(r"--gpus=(\S+:)?1\b|--gres=gpu(:\S+)?:1\b", call):
            problems.append(f"GPU rule {rule} did not ask for one GPU: {call[:300]}")
        elif rule not in gpu_rules and asks_gpu:
            problems.append(f"non-GPU rule {rule} asked for a GPU: {call[:300]}")
    return problems


def check_toy(result: ToyRun) -> list[str]:
    """Every claim the toy run must prove; returns the failed ones (empty = all hold)."""
    problems = check_submissions(result, local_rules=("teacher_initial", "all"))
    if result.returncode != 0:
        return problems
    rules = sorted(result.submitted_rules())
    if rules != ["judge_pair", "judge_pair", "train_sft"]:
        problems.append(f"sbatch was called for {rules}, expected judge_pair x2 + train_sft")
    for call in result.calls_for("train_sft"):
        for flag in ("--gpus=1", "--cpus-per-gpu=", "-p gpu"):
            if flag not in call:
                problems.append(f"train_sft sbatch call lacks {flag}: {call}")
    wd = result.workdir / "toy"
    sft = read_evidence(wd / "train_sft.txt")
    if sft.get("SLURM_JOB_ID", "none") == "none":
        problems.append("train_sft did not run inside a Slurm job")
    if "gres:gpu:1" not in sft.get("TresPerJob", "") and "gres/gpu:1" not in sft.get(
        "TresPerJob", ""
    ):
        problems.append(f"train_sft job has TresPerJob={sft.get('TresPerJob')}, want gpu:1")
    if sft.get("SLURM_GPUS_ON_NODE") != "1":
        problems.append(f"train_sft saw SLURM_GPUS_ON_NODE={sft.get('SLURM_GPUS_ON_NODE')}")
    if sft.get("Partition") != "gpu":
        problems.append(f"train_sft ran in partition {sft.get('Partition')}, want gpu")
    intervals = []
    for item in ("a", "b"):
        local = read_evidence(wd / "teacher_initial" / f"{item}.txt")
        if local.get("SLURM_JOB_ID") != "none":
            problems.append(f"teacher_initial {item} ran in Slurm job {local['SLURM_JOB_ID']}")
        remote = read_evidence(wd / "judge_pair" / f"{item}.txt")
        if remote.get("SLURM_JOB_ID", "none") == "none":
            problems.append(f"judge_pair {item} did not run inside a Slurm job")
        if "gpu" in remote.get("TresPerJob", ""):
            problems.append(f"judge_pair {item} asked for a GPU")
        for ev in (local, remote):
            intervals.append((float(ev["start"]), float(ev["end"])))
    if max_overlap(intervals) > 1:
        problems.append(f"API jobs overlapped despite api_calls=1: {intervals}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Start the loopback cluster, run a workflow through the SLURM profile, print evidence.

    Default: the toy workflow with all toy checks. With --snakefile (e.g. the real DAG) only
    the DAG-independent checks of `check_submissions` run.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="put cluster + work dirs here and keep them")
    parser.add_argument("--timeout", type=int, default=240, help="seconds for snakemake")
    parser.add_argument("--snakefile", type=Path, default=SNAKEFILE, help="workflow to run")
    parser.add_argument("--workdir", type=Path, help="snakemake --directory (default: temp)")
    parser.add_argument(
        "--local-rules",
        default=",".join(API_RULES),
        help="comma-separated rules that must never reach sbatch (real DAG only)",
    )
    parser.add_argument("snakemake_args", nargs="*", help="extra snakemake args (after --)")
    args = parser.parse_args(argv)
    ensure_installed()
    toy_run = args.snakefile.resolve() == SNAKEFILE
    with tempfile.TemporaryDirectory(prefix="slurm-toy-") as tmp:
        base = args.keep.resolve() if args.keep else Path(tmp)
        workdir = args.workdir.resolve() if args.workdir else base / "work"
        workdir.mkdir(parents=True, exist_ok=True)
        partitions = profile_partitions(load_profile(MAIN_PROFILE))
        with LoopbackSlurm(base / "slurm", partitions=partitions) as cluster:
            result = run_workflow(
                cluster,
                workdir,
                snakefile=args.snakefile.resolve(),
                extra_args=tuple(args.snakemake_args),
                timeout_s=args.timeout,
            )
        print(f"snakemake rc={result.returncode} in {result.seconds:.1f}s")
        for call, rule in zip(result.sbatch_calls, result.submitted_rules(), strict=True):
            print(f"sbatch [{rule}]", call[:240])
        if toy_run:
            problems = check_toy(result)
        else:
            local = tuple(r for r in args.local_rules.split(",") if r)
            problems = check_submissions(result, local_rules=local)
        for p in problems:
            print("PROBLEM:", p)
        print("OK" if not problems else f"{len(problems)} problem(s)")
        return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
