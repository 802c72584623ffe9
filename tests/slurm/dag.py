"""Run part of the real workflow through workflow/profiles/slurm on the loopback Slurm.

Why: the profile's claims (GPU rules get `--gpus=1` from `set-resources`, the API rules are
`localrules` and never reach sbatch, status polling with `squeue` ends, jobs on a node find the
venv and the package) are only worth something if a real `slurmctld` accepted, ran and
reported the jobs of the repository's own Snakefile. This module starts a `LoopbackSlurm`, and
in a scratch working directory runs

    snakemake -s Snakefile --configfile config.yaml config.demo.yaml <test overlay> \\
        --profile workflow/profiles/slurm --profile <test profile overlay> <TARGETS>

under `timeout -s INT`: the demo grid (tiny student, local `transformers` teacher on the
built-in tiny model) on a few dialogues, up to one SFT adapter and the teacher's answers. Every
`sbatch` call is logged through a shim on PATH and `scontrol show job` is read after the run;
`SlurmRun` returns it all as plain data for tests/test_slurm.py to assert on.

CLI (as root): `python tests/slurm/dag.py [--keep DIR]` prints the evidence and exits 0 when
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
#: The real dataset: where the README puts it (resources/), else a sibling shared/ checkout.
DATASET = next(
    (
        path
        for path in (REPO / "resources" / "dataset.csv", REPO.parent / "shared/data/dataset.csv")
        if path.is_file()
    ),
    REPO / "resources" / "dataset.csv",
)
CONFIGFILES = (REPO / "config.yaml", REPO / "workflow" / "profiles" / "demo" / "config.demo.yaml")
GPU_RULES = ("train", "answer")
API_RULES = ("teacher_initial", "teacher_improve", "judge_vs_base")
# One SFT adapter of the tiny student and the teacher's answers: split_dataset, direct_sets
# (local; it writes the leakage flag and dataset_info.json too), build_tiny_student (CPU job),
# train of the sft stage (GPU job), teacher_initial (local, transformers backend on the tiny
# model).
TARGETS = (
    "results/models/tiny/direct/chatgpt/sft/adapter_model.safetensors",
    "results/answers/teacher.jsonl",
)
SUBMITTED = ("build_tiny_student", "train")
LOCAL = ("split_dataset", "direct_sets", "teacher_initial")
MAX_TRAIN, MAX_TEST = 60, 10
#: The loopback node's GPU exists for Slurm only (gres.conf File=/dev/null): torch there has no
#: CUDA, so the SFT job must stop at start with training/devices.py's one line (no silent CPU
#: fallback), never train on the CPU. The run goes on (--keep-going) to the local teacher.
GPU_STOP = "asked for 1 GPU but sees 0"
TRAIN_LOG = "logs/train/tiny/direct/chatgpt/sft.log"


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


def build_overlay(dest: Path, cpus: int, mem_mb: int, runtime_min: int = 15) -> Path:
    """Write the test profile overlay: tests/slurm/profile + the main profile's set-resources
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


def write_config_overlay(path: Path, dataset: Path) -> Path:
    """Workflow config on top of config.yaml + the demo overlay: absolute paths (the scratch
    working directory has no resources/), few dialogues, the tiny model, no report at the end."""
    overlay = {
        "dataset": {
            "path": str(dataset.resolve()),
            "max_train_dialogues": MAX_TRAIN,
            "max_test_dialogues": MAX_TEST,
        },
        "prompts": str(REPO / "resources" / "prompts.json"),
        "llm": {"price_table": str(REPO / "resources" / "prices.yaml")},
        "report": {"build": False},
        # The tiny model as student and teacher: this test is about where jobs run, not about
        # text, and building SmolLM2 (the demo's model) would only slow it down.
        "grid": {"students": ["tiny"]},
        "teacher": {"model": "builtin:tiny", "max_new_tokens": 40},
        "distillation": {"methods": {"direct": ["chatgpt"]}},
        # the demo's scoring axis (SmolLM2 scorer, classifier) is not what this test is about
        "scoring": {"grid": []},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(overlay, sort_keys=False))
    return path


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


def _rule_of(comment: str) -> str:
    """Rule name from the plugin's job comment `rule_<name>[_wildcards_...]`."""
    m = re.match(r"'?rule_([A-Za-z0-9_]+?)(?:_wildcards_\S*)?'?$", comment)
    return m.group(1) if m else "?"


@dataclass
class SlurmRun:
    """What a run did: exit code, log, sbatch calls, Slurm's job records, the workdir."""

    returncode: int
    seconds: float
    workdir: Path
    log: str
    sbatch_calls: list[str] = field(default_factory=list)
    jobs: list[dict[str, str]] = field(default_factory=list)

    def submitted_rules(self) -> list[str]:
        """Rule names of the sbatch calls, from the plugin's `--comment rule_<name>...`."""
        rules = []
        for call in self.sbatch_calls:
            m = re.search(r"--comment\s+(\S+)", call)
            rules.append(_rule_of(m.group(1)) if m else "?")
        return rules

    def calls_for(self, rule: str) -> list[str]:
        return [
            c for c, r in zip(self.sbatch_calls, self.submitted_rules(), strict=True) if r == rule
        ]

    def jobs_for(self, rule: str) -> list[dict[str, str]]:
        """`scontrol show job` records of the rule's Slurm jobs."""
        return [j for j in self.jobs if _rule_of(j.get("Comment", "")) == rule]

    def local_rules_run(self) -> list[str]:
        """Rules Snakemake ran in its own process (`localrule <name>:` in its log)."""
        return re.findall(r"^localrule (\w+):", self.log, flags=re.MULTILINE)


def scontrol_jobs(env: dict[str, str]) -> list[dict[str, str]]:
    """Every job slurmctld still remembers (MinJobAge), one `Key=Value` dict per job."""
    proc = run(
        ["scontrol", "show", "job", "-o"], env=env, capture_output=True, text=True, timeout=30
    )
    jobs = []
    for line in proc.stdout.splitlines():
        facts: dict[str, str] = {}
        for token in line.split():
            key, sep, value = token.partition("=")
            if sep and key not in facts:
                facts[key] = value
        if "JobId" in facts:
            jobs.append(facts)
    return jobs


def run_workflow(
    cluster: LoopbackSlurm,
    workdir: Path,
    dataset: Path = DATASET,
    targets: tuple[str, ...] = TARGETS,
    extra_args: tuple[str, ...] = (),
    timeout_s: int = 420,
) -> SlurmRun:
    """Run the repository's Snakefile with the SLURM profile + test overlays in `workdir`.

    Jobs inherit this environment through sbatch (`--export=ALL`, Slurm's default): PATH starts
    with the running interpreter's bin directory, so `python -m empathy_distill...` in a job is
    the same venv; the workflow itself puts workflow/ on PYTHONPATH.
    """
    scratch = workdir / ".slurm-test"
    overlay = build_overlay(scratch / "overlay", cluster.cpus, 4000)
    config_overlay = write_config_overlay(scratch / "config.test.yaml", dataset)
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
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", *map(str, CONFIGFILES), str(config_overlay),
        "--profile", str(MAIN_PROFILE),
        "--profile", str(overlay),
        "--workflow-profile", "none",
        *extra_args,
        *targets,
    ]  # fmt: skip
    t0 = time.monotonic()
    proc = run(cmd, env=env, cwd=workdir, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    calls = [line.strip() for line in sbatch_log.read_text().splitlines() if line.strip()]
    jobs = scontrol_jobs(cluster.env)
    return SlurmRun(proc.returncode, seconds, workdir, proc.stdout + proc.stderr, calls, jobs)


def check_submissions(
    result: SlurmRun,
    gpu_rules: tuple[str, ...] = GPU_RULES,
    local_rules: tuple[str, ...] = (),
    require_success: bool = True,
) -> list[str]:
    """Claims that hold for any DAG: the run succeeded (unless ``require_success`` is false),
    every GPU rule's sbatch call asked for one GPU, no other rule asked for a GPU, and
    `local_rules` never reached sbatch. Returns the failed claims (empty = all hold)."""
    if require_success and result.returncode != 0:
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


def check_dag(result: SlurmRun) -> list[str]:
    """Every claim the real-DAG run must prove; returns the failed ones (empty = all hold)."""
    problems = check_submissions(result, local_rules=API_RULES + LOCAL, require_success=False)
    if result.returncode == 0:
        problems.append("the run succeeded although the SFT job had no CUDA to train on")
    if sorted(result.submitted_rules()) != sorted(SUBMITTED):
        problems.append(f"sbatch was called for {result.submitted_rules()}, want {SUBMITTED}")
    missing_local = set(LOCAL) - set(result.local_rules_run())
    if missing_local:
        problems.append(f"rules not run locally: {sorted(missing_local)}")
    for call in result.calls_for("train"):
        for flag in ("--gpus=1", "--cpus-per-gpu=", "-p gpu"):
            if flag not in call:
                problems.append(f"train sbatch call lacks {flag}: {call}")
    expected = (
        ("train", "gpu", "gres:gpu:1", "FAILED"),
        ("build_tiny_student", "cpu", "", "COMPLETED"),
    )
    for rule, partition, gres, state in expected:
        jobs = result.jobs_for(rule)
        if len(jobs) != 1:
            problems.append(f"scontrol shows {len(jobs)} jobs of {rule}, want 1")
            continue
        job = jobs[0]
        if job.get("JobState") != state:
            problems.append(f"{rule} job {job['JobId']} is {job.get('JobState')}, want {state}")
        if job.get("Partition") != partition:
            problems.append(f"{rule} ran in partition {job.get('Partition')}, want {partition}")
        tres = job.get("TresPerJob", "")
        if gres and gres not in tres.replace("gres/", "gres:"):
            problems.append(f"{rule} job has TresPerJob={tres!r}, want {gres}")
        if not gres and "gpu" in tres:
            problems.append(f"{rule} job asked for a GPU: TresPerJob={tres!r}")
    log = result.workdir / TRAIN_LOG
    text = log.read_text(errors="replace") if log.is_file() else ""
    if GPU_STOP not in text or "does not run on the CPU" not in text:
        problems.append(f"{TRAIN_LOG} lacks the no-CUDA stop line: {text[-1500:]!r}")
    adapter = result.workdir / TARGETS[0]
    if adapter.exists():
        problems.append(f"an adapter was trained without a GPU: {adapter}")
    answers = result.workdir / TARGETS[1]
    n = len(answers.read_text().splitlines()) if answers.is_file() else 0
    if n != MAX_TEST:
        problems.append(f"{answers} has {n} answers, want {MAX_TEST}")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Start the loopback cluster, run the real DAG subset through the SLURM profile, print
    the evidence and the failed checks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="put cluster + work dirs here and keep them")
    parser.add_argument("--timeout", type=int, default=420, help="seconds for snakemake")
    parser.add_argument("--dataset", type=Path, default=DATASET, help="dataset CSV")
    parser.add_argument("snakemake_args", nargs="*", help="extra snakemake args (after --)")
    args = parser.parse_args(argv)
    ensure_installed()
    with tempfile.TemporaryDirectory(prefix="slurm-dag-") as tmp:
        base = args.keep.resolve() if args.keep else Path(tmp)
        workdir = base / "work"
        workdir.mkdir(parents=True, exist_ok=True)
        partitions = profile_partitions(load_profile(MAIN_PROFILE))
        with LoopbackSlurm(base / "slurm", partitions=partitions) as cluster:
            result = run_workflow(
                cluster,
                workdir,
                dataset=args.dataset,
                extra_args=tuple(args.snakemake_args),
                timeout_s=args.timeout,
            )
        print(f"snakemake rc={result.returncode} in {result.seconds:.1f}s")
        print("local rules:", " ".join(result.local_rules_run()))
        for call, rule in zip(result.sbatch_calls, result.submitted_rules(), strict=True):
            print(f"sbatch [{rule}]", call[:300])
        for job in result.jobs:
            print(
                "scontrol:",
                " ".join(
                    f"{k}={job.get(k, '')}"
                    for k in ("JobId", "Comment", "JobState", "Partition", "TresPerJob")
                ),
            )
        problems = check_dag(result)
        for p in problems:
            print("PROBLEM:", p)
        print("OK" if not problems else f"{len(problems)} problem(s)")
        return 0 if not problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
