"""The README's demo command on a fresh copy of the repository: whole DAG, offline, report.

SmolLM2-135M-Instruct is the demo's student and teacher, so every text it writes must be real
text (tests/real_text.py), not the random plumbing model's byte soup."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pandas as pd
import pytest

from .conftest import REPO_ROOT
from .real_text import assert_mostly_real_text

pytestmark = pytest.mark.slow

STUDENT = "smollm2_135m"
#: The overlay's sizes (workflow/profiles/demo/config.demo.yaml): test dialogues answered.
TRAIN_DIALOGUES = 8
TEST_DIALOGUES = 12
IMPROVED = ("improve_human/improve_all_three_dimensions", "improve_llm/naive_prompt")
CONFIGURATIONS = ("direct/gemini", *IMPROVED)

COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "results",
    "logs",
    ".snakemake",
    "cache",
    "dataset.csv",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
)


@pytest.fixture(scope="module")
def demo_checkout(paper_dataset_path, scoring_study_dir, tmp_path_factory):
    """A copy of the checkout with the dataset and the scoring study's files where the README
    says to put them."""
    root = tmp_path_factory.mktemp("demo") / "empathy-distill"
    shutil.copytree(REPO_ROOT, root, ignore=COPY_IGNORE)
    shutil.copy(paper_dataset_path, root / "resources" / "dataset.csv")
    shutil.copytree(scoring_study_dir, root / "resources" / "scoring_study", dirs_exist_ok=True)
    return root


def read_jsonl(path) -> pd.DataFrame:
    return pd.read_json(path, lines=True)


def run_demo(root, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/demo", *extra]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=2700)


def test_demo_runs_the_whole_dag_offline_and_reruns_nothing(demo_checkout, human_words):
    first = run_demo(demo_checkout)
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    results = demo_checkout / "results"
    assert (results / "report.html").stat().st_size > 100_000
    table = pd.read_csv(results / "tables" / "win_rates.csv")
    # 3 data configurations x 2 stages vs base, SFT+DPO vs SFT (3), DPO models and base vs teacher
    assert len(table) == 6 + 3 + 3 + 1
    assert table["win_rate"].between(0, 1).all()
    assert set(table["judge"]) == {"offline"} and (table["n"] == TEST_DIALOGUES).all()
    for configuration in CONFIGURATIONS:
        for stage in ("sft", "dpo"):
            adapter = results / "models" / STUDENT / configuration / stage
            assert (adapter / "adapter_model.safetensors").exists()

    # Real text everywhere: the teacher's initial and improved responses, every model's answers.
    initial = read_jsonl(results / "teacher/initial.jsonl")
    assert len(initial) == TRAIN_DIALOGUES + TEST_DIALOGUES
    assert_mostly_real_text(initial["response"], human_words)
    for improved in IMPROVED:
        teacher = read_jsonl(results / "teacher" / f"{improved}.jsonl")
        assert len(teacher) == TRAIN_DIALOGUES, improved
        assert teacher["improved_response"].str.len().gt(0).all()
        assert_mostly_real_text(teacher["improved_response"], human_words)
    variants = ["base", *(f"{c}/{stage}" for c in CONFIGURATIONS for stage in ("sft", "dpo"))]
    answer_files = [results / "answers" / STUDENT / f"{v}.jsonl" for v in variants]
    for path in [results / "answers/teacher.jsonl", *answer_files]:
        answers = read_jsonl(path)
        assert len(answers) == TEST_DIALOGUES, path
        assert_mostly_real_text(answers["answer"], human_words)

    # The scoring axis, offline: the MiniLM classifier and the offline subfactor scorer score
    # every answer set (teacher, base, 6 models) on every test dialogue, and both meet the people.
    table = pd.read_csv(results / "tables" / "empathy_scores.csv")
    assert (table["n"] == TEST_DIALOGUES).all()
    assert sorted(table["scorer"].unique()) == ["minilm_classifier", "minilm_subfactors"]
    # The offline subfactor scorer gives the three dimensions of every answer set, each the
    # mean of five 1-10 subfactor scores.
    dimensions = table[table["scorer"] == "minilm_subfactors"]
    assert len(dimensions) == 3 * (1 + len(answer_files))
    assert set(dimensions["measure"]) == {"cognitive", "affective", "compassionate"}
    assert (dimensions["n_valid"] == TEST_DIALOGUES).all()
    assert dimensions["mean"].between(1, 10).all()
    classifier = table[table["scorer"] == "minilm_classifier"]
    assert len(classifier) == 1 + len(answer_files) and set(classifier["measure"]) == {"rating"}
    assert (classifier["n_valid"] == TEST_DIALOGUES).all()  # a classifier always answers
    assert classifier["mean"].between(1, 3).all()
    agreement = pd.read_csv(results / "tables" / "scorer_agreement.csv")
    vs_human = agreement[agreement["section"] == "vs_human"]
    assert set(vs_human["scorer"]) == {"minilm_classifier", "minilm_subfactors"}
    assert (vs_human["n"] == 5 * TEST_DIALOGUES).all()  # the 5 rated responses of each
    metrics = pd.read_csv(results / "tables" / "reference_metrics.csv")
    assert set(metrics["reference"]) == {"human", "teacher"}
    assert metrics["embedding_cosine"].between(-1, 1).all()
    for scorer in ("minilm_classifier", "minilm_subfactors"):
        figure = f"empathy_change_{scorer}"
        assert (results / "figures" / f"{figure}.png").stat().st_size > 1000

    second = run_demo(demo_checkout)
    assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
    assert "Nothing to be done" in second.stdout + second.stderr

    # Operational settings (concurrency, retries) are not params: tuning them reruns nothing.
    tuned = demo_checkout / "tuned.yaml"
    tuned.write_text(
        "teacher: {concurrency: 3, max_retries: 1}\n"
        "judges: {offline: {concurrency: 5, timeout_s: 9}}\n"
        "llm: {budget_usd: 100}\n"
    )
    configfiles = ["config.yaml", "workflow/profiles/demo/config.demo.yaml", str(tuned)]
    dry = run_demo(demo_checkout, "--dry-run", "--configfiles", *configfiles)
    assert dry.returncode == 0, (dry.stdout + dry.stderr)[-4000:]
    assert "Nothing to be done" in dry.stdout + dry.stderr
    # ... while what shapes verdicts is: a new tie margin re-judges (and retrains nothing).
    tuned.write_text("judges: {offline: {margin: 0.2}}\n")
    dry = run_demo(demo_checkout, "--dry-run", "--configfiles", *configfiles)
    text = dry.stdout + dry.stderr
    assert dry.returncode == 0 and "rule judge_vs_base:" in text, text[-4000:]
    assert "rule train:" not in text and "teacher_improve" not in text

    # A rerun is the same run: a training job and two answer sets (one of the base, one of a
    # DPO model), forced again on the same inputs with the profile's thread counts, write the
    # bytes the first run wrote. Three independent jobs, so nothing downstream of them reruns.
    again = (
        f"results/models/{STUDENT}/direct/gemini/sft/adapter_model.safetensors",
        f"results/answers/{STUDENT}/base.jsonl",
        f"results/answers/{STUDENT}/improve_llm/naive_prompt/dpo.jsonl",
    )
    before = {path: (demo_checkout / path).read_bytes() for path in again}
    written = {path: (demo_checkout / path).stat().st_mtime_ns for path in again}
    forced = run_demo(demo_checkout, "--force", *again)
    assert forced.returncode == 0, (forced.stdout + forced.stderr)[-4000:]
    for path in again:
        assert (demo_checkout / path).stat().st_mtime_ns > written[path], f"{path}: not rerun"
        assert (demo_checkout / path).read_bytes() == before[path], f"{path}: a rerun differs"
