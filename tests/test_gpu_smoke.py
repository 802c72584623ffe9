"""The gpu-smoke profile (docs/gpu.md "The smoke run"): it plans here (a dry run of the real
profile in a copy of the checkout), asks one GPU for every GPU job, and its summary module turns
benchmark files and the jobs' own token records into the figures of results/gpu_smoke.json
(checked on hand-made files against hand-computed tokens/s)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from empathy_distill.core.errors import EmpathyDistillError
from empathy_distill.evaluation import gpu_smoke

from .conftest import REPO_ROOT

IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "results", "logs", ".snakemake", "cache", "__pycache__", ".*_cache"
)
GPU_RULES = {
    "train",
    "train_pride",
    "pride_teacher_outputs",
    "answer",
    "emotion_answers",
    "finetune_scorer",
    "finetune_study_scorer",  # the same LoRA fine-tune on the study's balanced 80%
}
BENCHMARK_HEADER = (
    "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
)


def planned(output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job a dry run prints."""
    jobs = []
    for block in output.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0]
        match = re.search(r"^\s+resources: (.+)$", block, flags=re.MULTILINE)
        pairs = [p.split("=", 1) for p in match.group(1).split(", ")] if match else []
        jobs.append((rule, {k: v for k, v in pairs}))
    return jobs


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> list[tuple[str, dict[str, str]]]:
    root = tmp_path_factory.mktemp("smoke") / "empathy-distill"
    shutil.copytree(REPO_ROOT, root, ignore=IGNORE)
    command = [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/gpu-smoke", "-n"]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return planned(result.stdout)


def test_the_profile_plans_the_whole_dag_and_ends_with_the_summary(dry_run):
    rules = [rule for rule, _ in dry_run]
    # 2 data configurations x (sft, dpo) on SmolLM2; PRIDE on each; base + 6 trained answer sets
    assert rules.count("train") == 4
    assert rules.count("train_pride") == 2
    assert rules.count("answer") == 7
    assert rules.count("judge_vs_base") > 0 and rules.count("score_answers") > 0
    assert rules.count("teacher_improve") == 1  # the SmolLM2 teacher runs
    assert rules.count("gpu_smoke_summary") == 1
    assert "build_smollm2_student" in rules and "build_tiny_student" not in rules


def test_every_gpu_job_asks_for_one_gpu_and_the_rest_for_none(dry_run):
    for rule, resources in dry_run:
        if rule in GPU_RULES:
            assert resources.get("gpu") == "1", (rule, resources)
        elif rule != "all":
            assert resources.get("gpu", "0") == "0", (rule, resources)


def write_benchmark(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    row = f"{seconds}\t0:00:{int(seconds):02d}\t1\t1\t1\t1\t0\t0\t50\t{seconds}\n"
    path.write_text(BENCHMARK_HEADER + row, encoding="utf-8")


def write_model(results: Path, variant: str, runtime: float, history: list[dict]) -> None:
    out = results / "models/smollm2_135m" / variant
    out.mkdir(parents=True)
    (out / "train_results.json").write_text(json.dumps({"train_runtime": runtime}))
    (out / "trainer_state.json").write_text(json.dumps({"log_history": history}))


def write_answers(results: Path, variant: str, tokens: list[int]) -> None:
    path = results / "answers/smollm2_135m" / f"{variant}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    generation = {"engine": "transformers", "max_new_tokens": 160}
    rows = [
        {"dialog_id": str(i), "answer": "x", "new_tokens": n, "generation": generation}
        for i, n in enumerate(tokens)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def finished(tmp_path) -> Path:
    """A finished smoke run's files: 1 SFT, 1 DPO, 1 PRIDE job, 2 answer sets, the student."""
    results = tmp_path / "results"
    bench = results / "benchmarks"
    write_benchmark(bench / "students/smollm2_135m.tsv", 12.0)
    write_benchmark(bench / "train/smollm2_135m/direct/gemini/sft.tsv", 40.0)
    write_benchmark(bench / "train/smollm2_135m/direct/gemini/dpo.tsv", 60.0)
    write_benchmark(bench / "train/smollm2_135m/direct/gemini/pride.tsv", 30.0)
    write_benchmark(bench / "answers/smollm2_135m/base.tsv", 20.0)
    write_benchmark(bench / "answers/smollm2_135m/direct/gemini/sft.tsv", 30.0)
    # the trainer logs a running count; the last (largest) one is the job's total
    write_model(
        results,
        "direct/gemini/sft",
        25.0,
        [{"num_input_tokens_seen": 4000}, {"num_input_tokens_seen": 10000}],
    )
    write_model(results, "direct/gemini/dpo", 40.0, [{"num_input_tokens_seen": 30000}])
    pride = results / "models/smollm2_135m/direct/gemini/pride"
    pride.mkdir(parents=True)
    (pride / "train_results.json").write_text(json.dumps({"train_samples_per_second": 3.5}))
    write_answers(results, "base", [100, 60, 40])
    write_answers(results, "direct/gemini/sft", [160, 140])
    (results / "answers/teacher.jsonl").write_text('{"dialog_id": "0", "answer": "t"}\n')
    return results


def fake_device() -> dict:
    return {"name": "NVIDIA H100 80GB HBM3", "count": 1, "cuda": "12.8"}


def test_summary_figures_match_hand_computed_values(finished):
    summary = gpu_smoke.summarize(
        finished, "smollm2_135m", "builtin:smollm2_135m", device=fake_device
    )
    assert summary["device"]["name"] == "NVIDIA H100 80GB HBM3"
    assert set(gpu_smoke.PACKAGES) <= set(summary["versions"])
    assert summary["versions"]["torch"]  # installed here
    assert summary["rules"]["train"] == {"jobs": 2, "total_s": 100.0, "max_s": 60.0}
    assert summary["rules"]["train_pride"]["total_s"] == 30.0
    assert summary["rules"]["answer"] == {"jobs": 2, "total_s": 50.0, "max_s": 30.0}
    assert summary["rules"]["build_smollm2_student"]["jobs"] == 1
    sft, dpo = summary["training"]["sft"], summary["training"]["dpo"]
    assert sft["tokens"] == 10000 and sft["tokens_per_s"] == pytest.approx(400.0)  # 10000/25
    assert sft["tokens_per_s_wall"] == pytest.approx(250.0)  # 10000/40
    assert dpo["tokens_per_s"] == pytest.approx(750.0)  # 30000/40
    assert dpo["tokens_per_s_wall"] == pytest.approx(500.0)  # 30000/60
    assert summary["training"]["pride"] == {"jobs": 1, "samples_per_s_mean": 3.5}
    generation = summary["generation"]  # the teacher's file has no benchmark: left out
    assert generation["answers"] == 5 and generation["new_tokens"] == 500
    assert generation["engine"] == "transformers"
    assert summary["model_id"] == "builtin:smollm2_135m"
    assert generation["tokens_per_s_wall"] == pytest.approx(10.0)  # 500 tokens / 50 s


def test_summary_cli_writes_the_json(finished, monkeypatch):
    monkeypatch.setattr(gpu_smoke, "cuda_device", fake_device)
    out = finished / "gpu_smoke.json"
    args = ["--results", str(finished), "--student", "smollm2_135m"]
    args += ["--model-id", "builtin:smollm2_135m", "--out", str(out)]
    assert gpu_smoke.main(args) == 0
    assert json.loads(out.read_text())["generation"]["new_tokens"] == 500


def test_a_training_job_without_a_token_count_is_an_error(finished):
    state = finished / "models/smollm2_135m/direct/gemini/sft/trainer_state.json"
    state.write_text(json.dumps({"log_history": [{"loss": 1.0}]}))
    with pytest.raises(EmpathyDistillError, match="include_num_input_tokens_seen"):
        gpu_smoke.summarize(finished, "smollm2_135m", "builtin:smollm2_135m", device=fake_device)


def test_answers_without_token_counts_are_an_error(finished):
    write_answers(finished, "base", [])
    path = finished / "answers/smollm2_135m/base.jsonl"
    path.write_text('{"dialog_id": "7", "answer": "x"}\n')
    with pytest.raises(EmpathyDistillError, match="answer 7 has no new_tokens"):
        gpu_smoke.summarize(finished, "smollm2_135m", "builtin:smollm2_135m", device=fake_device)


def test_without_cuda_the_summary_refuses(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(EmpathyDistillError, match="no CUDA device"):
        gpu_smoke.cuda_device()


def test_the_summary_is_off_by_default_and_measures_one_student():
    from empathy_distill.core.config import load_config
    from empathy_distill.core.errors import ConfigError

    config = load_config(REPO_ROOT / "config.yaml")
    assert config["gpu_smoke"] == {"summary": False}  # no smoke file in the paper's grid
    with pytest.raises(ConfigError, match=r"grid\.students has 2"):
        gpu_smoke.measured_student(config)
    one = load_config(REPO_ROOT / "config.yaml", {"grid": {"students": ["smollm2_135m"]}})
    assert gpu_smoke.measured_student(one) == "smollm2_135m"
