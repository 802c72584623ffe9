"""``results/gpu_smoke.json``: what the gpu-smoke profile measured (docs/gpu.md "The smoke run").

WHY: the first run on a new GPU machine should leave one file that says what ran (package
versions, the GPU) and how fast (every benchmarked job's wall time, training and generation
tokens/s), so the GPU-hour projection (``empathy-distill gpu-hours``) can use measured rows.

Where each figure comes from (nothing is timed here; every job recorded its own):

* wall times: the ``s`` column of each rule's ``benchmark:`` file (Snakemake's TSV, one row per
  repeat; the first row counts), under ``results/benchmarks/``; grouped per rule.
* training tokens/s: LLaMA-Factory jobs (SFT, DPO) run with ``include_num_input_tokens_seen:
  non_padding`` (set by the profile), so ``trainer_state.json``'s log history holds the
  non-padding tokens fed to the model (DPO: chosen and rejected); divided by the trainer's own
  ``train_runtime`` (``train_results.json``: the steps, not loading the model) and by the job's
  wall time (loading included). PRIDE records no token count: its samples/s only.
* generation tokens/s: the answer records' ``new_tokens`` (``evaluation/generate.py``: generated
  ids, the stop token excluded) of each answers file, divided by the answer job's wall time
  (model loading and prompt encoding included, so a lower bound of the decoding rate).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from ..core import grid
from ..core.atomic import write_text
from ..core.command import run_cli
from ..core.errors import ConfigError, EmpathyDistillError

#: Packages whose versions the summary records (None: not installed).
PACKAGES = ("torch", "transformers", "peft", "llamafactory", "vllm", "accelerate")
BENCHMARKS = "benchmarks"
TRAIN_STAGES = ("sft", "dpo")
#: results/benchmarks/students/<student>.tsv -> the rule that builds it (rules/train.smk).
STUDENT_BUILDS = {"tiny": "build_tiny_student", "smollm2_135m": "build_smollm2_student"}


def measured_student(config: dict) -> str:
    """The one student of the grid the smoke run measures (throughput rows are per model)."""
    students = grid.students(config)
    if len(students) != 1:
        raise ConfigError(
            f"gpu_smoke.summary measures one student; grid.students has {len(students)}: {students}"
        )
    return students[0]


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cuda_device() -> dict[str, Any]:
    """The GPU the smoke run used; an error without CUDA (a smoke file from a CPU says nothing)."""
    import torch

    if not torch.cuda.is_available():
        raise EmpathyDistillError(
            "gpu_smoke: torch sees no CUDA device (torch "
            f"{torch.__version__}, built for CUDA {torch.version.cuda}): the smoke run needs a GPU"
        )
    return {
        "name": torch.cuda.get_device_name(0),
        "count": torch.cuda.device_count(),
        "cuda": torch.version.cuda,
    }


def benchmark_seconds(path: Path) -> float:
    """Wall seconds of a Snakemake benchmark TSV (column ``s``; the first repeat)."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if not rows or "s" not in rows[0]:
        raise EmpathyDistillError(f"{path}: not a Snakemake benchmark file (no 's' column)")
    return float(rows[0]["s"])


def rule_of(job: str) -> str:
    """The rule that wrote ``results/benchmarks/<job>.tsv`` (paths of the rules' benchmark:)."""
    parts = job.split("/")
    if parts[0] == "train":
        return "train_pride" if parts[-1] == "pride" else "train"
    if parts[0] == "answers":
        return "answer"
    if parts[0] == "students":
        return STUDENT_BUILDS.get(parts[1], "build_student")
    if parts[0] == "scorers":
        return "finetune_scorer" if parts[-1] == "finetune" else "train_classifier_scorer"
    if parts[:2] == ["pride", "reasoning"]:
        return "pride_reasoning"
    return parts[-1] if parts[0] == "tables" else parts[0]


def wall_times(results: Path) -> dict[str, float]:
    """job (benchmark path under results/benchmarks, no suffix) -> wall seconds."""
    root = results / BENCHMARKS
    return {
        path.relative_to(root).with_suffix("").as_posix(): benchmark_seconds(path)
        for path in sorted(root.rglob("*.tsv"))
    }


def per_rule(jobs: dict[str, float]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for job, seconds in jobs.items():
        entry = out.setdefault(rule_of(job), {"jobs": 0, "total_s": 0.0, "max_s": 0.0})
        entry["jobs"] += 1
        entry["total_s"] += seconds
        entry["max_s"] = max(entry["max_s"], seconds)
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise EmpathyDistillError(f"{path}: {exc}") from exc


def training_throughput(results: Path, student: str, jobs: dict[str, float]) -> dict[str, Any]:
    """Per stage: tokens (trainer_state.json), trainer seconds, wall seconds and tokens/s."""
    stages: dict[str, dict[str, Any]] = {}
    for state in sorted((results / "models" / student).glob("*/*/*/trainer_state.json")):
        model_dir = state.parent
        stage = model_dir.name
        if stage not in TRAIN_STAGES:
            continue
        history = _read_json(state).get("log_history", [])
        tokens = max((int(h.get("num_input_tokens_seen", 0)) for h in history), default=0)
        if tokens == 0:
            raise EmpathyDistillError(
                f"{state}: no num_input_tokens_seen (train with include_num_input_tokens_seen)"
            )
        runtime = float(_read_json(model_dir / "train_results.json")["train_runtime"])
        job = "train/" + model_dir.relative_to(results / "models").as_posix()
        entry = stages.setdefault(stage, {"jobs": 0, "tokens": 0, "train_s": 0.0, "wall_s": 0.0})
        entry["jobs"] += 1
        entry["tokens"] += tokens
        entry["train_s"] += runtime
        entry["wall_s"] += jobs[job]
    for entry in stages.values():
        entry["tokens_per_s"] = entry["tokens"] / entry["train_s"]
        entry["tokens_per_s_wall"] = entry["tokens"] / entry["wall_s"]
    pride = []
    for result in sorted((results / "models" / student).glob("*/*/pride/train_results.json")):
        figures = _read_json(result)
        pride.append(float(figures["train_samples_per_second"]))
    if pride:
        stages["pride"] = {"jobs": len(pride), "samples_per_s_mean": sum(pride) / len(pride)}
    return stages


def generation_throughput(results: Path, student: str, jobs: dict[str, float]) -> dict[str, Any]:
    """New tokens of every answers file of ``student`` over its answer job's wall time."""
    answers, tokens, wall, engines = 0, 0, 0.0, set()
    root = results / "answers"
    for path in sorted((root / student).rglob("*.jsonl")):
        job = "answers/" + path.relative_to(root).with_suffix("").as_posix()
        if job not in jobs:  # the teacher's answers: rule teacher_initial, no benchmark
            continue
        with open(path, encoding="utf-8") as handle:
            records = [json.loads(line) for line in handle if line.strip()]
        missing = [r.get("dialog_id") for r in records if "new_tokens" not in r]
        if missing:
            raise EmpathyDistillError(f"{path}: answer {missing[0]} has no new_tokens")
        engines.update(r.get("generation", {}).get("engine", "transformers") for r in records)
        answers += len(records)
        tokens += sum(int(r["new_tokens"]) for r in records)
        wall += jobs[job]
    if not answers:
        return {}
    if len(engines) != 1:
        raise EmpathyDistillError(f"{root / student}: answers of several engines {sorted(engines)}")
    return {
        "engine": engines.pop(),
        "answers": answers,
        "new_tokens": tokens,
        "wall_s": wall,
        "tokens_per_s_wall": tokens / wall,
    }


def summarize(
    results: str | Path,
    student: str,
    model_id: str,
    device: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The whole summary of the finished DAG under ``results``; ``device`` (tests) replaces the
    CUDA query."""
    results = Path(results)
    jobs = wall_times(results)
    if not jobs:
        raise EmpathyDistillError(f"{results / BENCHMARKS}: no benchmark files")
    return {
        # the GPU-hour projection replaces the throughput rows of this model id only
        "student": student,
        "model_id": model_id,
        "device": (device or cuda_device)(),
        "versions": package_versions(),
        "rules": per_rule(jobs),
        "jobs": jobs,
        "training": training_throughput(results, student, jobs),
        "generation": generation_throughput(results, student, jobs),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="the workflow's results folder")
    parser.add_argument("--student", required=True, help="the student measured (config key)")
    parser.add_argument("--model-id", required=True, help="its model (students.<key>.model)")
    parser.add_argument("--out", default="results/gpu_smoke.json")
    return parser


def _run(args: argparse.Namespace) -> None:
    summary = summarize(args.results, args.student, args.model_id)
    write_text(args.out, json.dumps(summary, indent=2) + "\n")
    print(f"{args.out}: {summary['device']['name']}, {len(summary['jobs'])} benchmarked jobs")


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
