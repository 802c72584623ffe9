"""Rule-level tests of the data and dataset stages through the real snakemake CLI."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest

from .conftest import REPO_ROOT
from .workflow_helpers import SNAKEMAKE, run_snakemake

DIRECT_ONLY = {
    "distillation": {
        "methods": {"direct": ["chatgpt", "all"], "improve_human": [], "improve_llm": []}
    }
}


def test_lint_is_clean():
    result = subprocess.run(
        [*SNAKEMAKE, "--lint"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_direct_sets_build_with_paper_counts(paper_dataset_path, tmp_path):
    dataset_path = paper_dataset_path
    overlay = {**DIRECT_ONLY, "dataset": {"path": str(dataset_path)}}
    result = run_snakemake(
        tmp_path,
        overlay,
        "--cores",
        "2",
        "results/datasets/dataset_info.json",
        "results/datasets/direct/chatgpt/leakage_check.ok",
        "results/datasets/direct/chatgpt/dataset_info.json",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(pd.read_csv(tmp_path / "results/data/train.csv")) == 1750
    assert len(pd.read_csv(tmp_path / "results/data/test.csv")) == 250
    sets = tmp_path / "results/datasets/direct"
    assert len(json.loads((sets / "chatgpt/sft.json").read_text())) == 1278
    assert len(json.loads((sets / "chatgpt/dpo.json").read_text())) == 593
    assert len(json.loads((sets / "all/sft.json").read_text())) == 4788
    assert len(json.loads((sets / "all/dpo.json").read_text())) == 2231
    info = json.loads((tmp_path / "results/datasets/dataset_info.json").read_text())
    assert set(info) == {
        "direct__chatgpt__sft",
        "direct__chatgpt__dpo",
        "direct__all__sft",
        "direct__all__dpo",
    }
    assert info["direct__all__dpo"]["file_name"] == "direct/all/dpo.json"
    local = json.loads((sets / "chatgpt/dataset_info.json").read_text())
    assert local["direct__chatgpt__sft"]["file_name"] == "sft.json"
    assert "no test dialogue found" in (sets / "chatgpt/leakage_check.ok").read_text()


def test_as_coded_switch(paper_dataset_path, tmp_path):
    dataset_path = paper_dataset_path
    overlay = {
        "distillation": {**DIRECT_ONLY["distillation"], "direct_dpo_filter": "as_coded"},
        "dataset": {"path": str(dataset_path)},
    }
    result = run_snakemake(
        tmp_path, overlay, "--cores", "2", "results/datasets/direct/chatgpt/dpo.json"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        len(json.loads((tmp_path / "results/datasets/direct/chatgpt/dpo.json").read_text())) == 730
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.drop(columns=["speaker_uttr"]), "missing column(s) speaker_uttr"),
        (
            lambda d: d.assign(rating_human=[4, *list(d["rating_human"][1:])]),
            "column rating_human: row(s) 1 have ['4']",
        ),
    ],
    ids=["missing-column", "rating-4"],
)
def test_bad_dataset_stops_before_any_job(dataset, tmp_path, mutate, message):
    bad = tmp_path / "bad.csv"
    mutate(dataset.head(50)).to_csv(bad, index=False)
    result = run_snakemake(tmp_path, {**DIRECT_ONLY, "dataset": {"path": str(bad)}}, "--cores", "1")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert message in output and str(bad) in output
    assert not (tmp_path / "results").exists()


def test_unknown_config_key_stops_the_run(tmp_path):
    result = run_snakemake(tmp_path, {"distillation": {"direct_dpo_fliter": "intended"}}, "-n")
    assert result.returncode != 0
    assert "'direct_dpo_fliter' was unexpected" in result.stdout + result.stderr


#: The default grid's shape, from config.yaml's comments and the paper, not from the code.
CONFIGS = 5 + 8 + 8  # data configurations: direct, improve_human, improve_llm
STUDENTS = 2  # llama31_8b, mistral_7b
JUDGES = 2  # gpt4o, gemini
TARGETED = 7 * 2  # strategies other than naive_prompt, of both improve methods
SCORERS = 2  # scoring.grid: minilm_subfactors, gpt4o_mini_subfactors
#: The one flag of README "PRIDE" that leaves the paper's grid (SFT then DPO).
PAPER_ONLY_FLAG = ("--config", "grid={methods: [sft, dpo]}")


def comparisons(pride: bool) -> dict[str, int]:
    """Judged pairs per comparison kind of config.yaml (one judgment file per pair and judge)."""
    methods = 3 if pride else 2
    models = CONFIGS * STUDENTS * methods  # trained models
    pairs = {
        "vs_base": models,
        "vs_naive": TARGETED * STUDENTS * methods,
        "dpo_vs_sft": CONFIGS * STUDENTS,
        "vs_teacher": CONFIGS * STUDENTS * (methods - 1) + STUDENTS,  # DPO, PRIDE, base models
    }
    if pride:
        pairs["pride_vs_dpo"] = CONFIGS * STUDENTS
    return pairs


def grid_jobs(pride: bool) -> dict[str, int]:
    """Jobs per rule of ``snakemake -n`` on config.yaml, with or without PRIDE."""
    methods = 3 if pride else 2
    models = CONFIGS * STUDENTS * methods  # trained models
    jobs = {
        "split_dataset": 1,
        "improve_human_sources": 1,
        "direct_sets": 5,
        "improved_sets": 16,
        "dataset_info": 1,
        "teacher_initial": 1,
        "improve_llm_sources": 1,
        "teacher_improve": 14,  # 7 rewriting strategies x 2 (the pooled one rewrites nothing)
        "train": CONFIGS * STUDENTS * 2,  # SFT + DPO
        "answer": STUDENTS + models,  # base students + trained models
        "emotion_answers": STUDENTS,  # each student's models name the emotions, one load
        "emotion_accuracy": 1,  # one table of them (evaluation.emotion_accuracy, on by default)
        # one judge job per judge and comparison kind, writing one file per pair
        **{f"judge_{kind}": JUDGES for kind in comparisons(pride)},
        "win_rates": 1,
        "judge_agreement": 1,
        "figure_heatmap": JUDGES,
        "figure_targeted_vs_naive": JUDGES,
        "figure_sft_vs_dpo": JUDGES,
        "example_answers": 1,  # the report's example answers and answer lengths (whole grid)
        "answer_lengths": 1,
        "reference_metrics": 1,  # BLEU, ROUGE-L, distinct-n, MiniLM cosine of every answer set
        "rater_variance": 1,  # needs no scorer: always planned
        # the scoring study's four pinned files and its table (scoring.study_reproduction)
        "download_scoring_study": 4,
        "scoring_study_reproduction": 1,
        # the study protocol's fine-tuned scorer (issue 22.3): its data, the SmolLM2 it starts
        # from, its fine-tune and its ratings of the study's test 20 %
        "study_scorer_data": 1,
        "build_smollm2_student": 1,
        "finetune_study_scorer": 1,
        "score_study_test": 1,
        # the scoring axis (scoring.grid: the offline subfactor scorer, gpt-4o-mini's
        # subfactors): one score_answers job per scorer writes every answer set's scores (+ the
        # teacher's), and the test's human responses
        "scorer_train_split": 1,
        "train_offline_subfactors": 1,
        "score_answers": SCORERS,
        "score_responses": SCORERS,
        "scorer_agreement": 1,
        "empathy_scores": 1,
        "figure_empathy_change": SCORERS,
        "all": 1,
    }
    if pride:
        jobs["train_pride"] = CONFIGS * STUDENTS
        # the teacher runs once per PRIDE job (its top-k log-probabilities and MMD features),
        # read by every epoch of that job (training.pride.teacher_outputs: precomputed)
        jobs["pride_teacher_outputs"] = CONFIGS * STUDENTS
        # Llama-3.1-70B-Instruct, llama31_8b's teacher, writes its reasoning once (config.yaml)
        jobs["pride_reasoning"] = 1
    return jobs


def test_the_grid_arithmetic_gives_readmes_job_counts() -> None:
    """README ("Run on SLURM", "PRIDE") quotes these totals and GPU jobs (train + answer +
    emotion_answers)."""
    with_pride, paper = grid_jobs(pride=True), grid_jobs(pride=False)
    pride_jobs = CONFIGS * STUDENTS  # one train_pride and one pride_teacher_outputs each
    answers = {True: STUDENTS + CONFIGS * STUDENTS * 3, False: STUDENTS + CONFIGS * STUDENTS * 2}
    # one emotion_answers job per answer set, and one emotion_accuracy table
    emotion = {k: v + 1 for k, v in answers.items()}
    # the scoring study's 4 files (downloaded), its reproduction table and the 4 jobs of its
    # fine-tuned scorer (joined on 2026-12-07)
    study = 4 + 1 + 4
    # judgment files (one job each until 2026-12-07) -> one judge job per judge and kind
    files = {k: sum(comparisons(k).values()) * JUDGES for k in (True, False)}
    assert files == {True: 380 * 2, False: 226 * 2}
    judge_jobs = {True: 5 * JUDGES, False: 4 * JUDGES}
    before = 1110 + pride_jobs + emotion[True] + study  # one judge job per file
    # the scoring axis on by default (2026-12-07): each scorer scores every answer set
    # (+ the teacher's) and the human test responses; its split, training, tables, figures.
    # One score_answers job per scorer; until 2026-12-07 one per scorer and answer set
    per_set = {k: SCORERS * (answers[k] + 1) for k in (True, False)}
    assert per_set == {True: 258, False: 174}
    scoring = {k: SCORERS + SCORERS + 4 + SCORERS for k in (True, False)}
    # the leakage guard and dataset_info.json of each configuration: jobs of their own until
    # 2026-12-07, written by the job that builds its sets since
    folded = 2 * CONFIGS
    # emotion_answers: one job per answer set until 2026-12-07, one per student since
    emotion_folded = {k: answers[k] - STUDENTS for k in (True, False)}
    after = before - files[True] + judge_jobs[True] + scoring[True] - folded
    assert sum(with_pride.values()) == after - emotion_folded[True] == 382  # 508 before
    assert sum(paper.values()) == (
        717
        + emotion[False]
        + study
        - files[False]
        + judge_jobs[False]
        + scoring[False]
        - folded
        - emotion_folded[False]
    )
    assert sum(paper.values()) == 253  # 337 with an emotion job per answer set
    gpu = ("train", "train_pride", "pride_teacher_outputs", "answer", "emotion_answers")
    assert sum(with_pride.get(r, 0) for r in gpu) == 254 + pride_jobs + STUDENTS == 298
    assert sum(paper.get(r, 0) for r in gpu) == 170 + STUDENTS == 172


def _job_stats(output: str) -> dict[str, int]:
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = {}
    for line in table.splitlines()[3:]:
        name, count = line.split()
        if name != "total":
            counts[name] = int(count)
    return counts


@pytest.mark.parametrize("pride", [True, False], ids=["default-with-pride", "paper-only-flag"])
def test_dry_run_shows_the_whole_paper_grid(dataset_path, tmp_path, pride):
    """snakemake -n on the default config (the paper grid and PRIDE) and with the paper-only
    flag: every job of the grid; GPU jobs ask for a GPU."""
    flag = () if pride else PAPER_ONLY_FLAG
    result = run_snakemake(tmp_path, {"dataset": {"path": str(dataset_path)}}, "-n", *flag)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    # fetch_model: every Hub model the grid loads, fetched once (the two students; with PRIDE,
    # llama31_8b's 70B teacher too)
    assert _job_stats(output) == {**grid_jobs(pride), "fetch_model": STUDENTS + int(pride)}
    blocks = output.split("\nrule ")
    for rule in ("train", "answer"):
        jobs = [b for b in blocks if b.startswith(f"{rule}:")]
        assert jobs, rule
        assert all("gpu=1" in b.split("resources:", 1)[1].splitlines()[0] for b in jobs), rule


def test_tiny_student_jobs_ask_for_no_gpu_others_do(dataset_path, tmp_path):
    """Per-student resources: with the tiny student beside a real one, only the real one's
    training (PRIDE's too) and answer jobs ask for a GPU (training/generation.per_student in
    config.yaml)."""
    overlay = {
        "dataset": {"path": str(dataset_path)},
        "distillation": {"methods": {"direct": ["chatgpt"]}},
        "grid": {"students": ["tiny", "mistral_7b"], "judges": ["offline"]},
    }
    result = run_snakemake(tmp_path, overlay, "-n")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    blocks = output.split("\nrule ")
    seen = set()
    for rule in ("train", "train_pride", "answer"):
        for block in (b for b in blocks if b.startswith(f"{rule}:")):
            resources = block.split("resources:", 1)[1].splitlines()[0]
            student = "tiny" if "tiny" in block.split("resources:", 1)[0] else "mistral_7b"
            assert ("gpu=0" if student == "tiny" else "gpu=1") in resources, (rule, block)
            kind = "base" if "variant=base" in block else "trained"
            stage = next(s for s in ("dpo", "pride", "sft") if f"stage={s}" in block or s == "sft")
            seen.add((rule, student, kind if rule == "answer" else stage))
    # 2 students x (train: sft, dpo; train_pride: pride; answer: base, trained)
    assert len(seen) == 2 * (2 + 1 + 2)


def test_empty_dataset_stops_the_dry_run_naming_the_file(tmp_path):
    empty = tmp_path / "dataset.csv"
    empty.write_bytes(b"")
    result = run_snakemake(tmp_path, {**DIRECT_ONLY, "dataset": {"path": str(empty)}}, "-n")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{empty}: the file is empty (0 bytes)" in output
