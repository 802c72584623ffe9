"""Reference-based metrics (evaluation/reference_metrics.py): BLEU-1/2, ROUGE-L, distinct-n by
hand on tiny sentence pairs, the MiniLM cosine, the table's rows and the job's errors, and the
rule in the dry runs of the paper grid, the demo and the cpu-small profile."""

from __future__ import annotations

import json
import math
import shlex

import pandas as pd
import pytest

from empathy_distill.core import grid
from empathy_distill.core.config import load_config, read_yaml
from empathy_distill.evaluation import reference_metrics as rm
from empathy_distill.evaluation import specs as evaluation_specs
from empathy_distill.evaluation.embeddings import default_embedder
from empathy_distill.evaluation.records import write_jsonl

from .conftest import REPO_ROOT, SYNTHETIC_CSV
from .workflow_helpers import run_snakemake

# Two answers with one reference each.
HYPOTHESES = ["the cat sat on the mat", "i am sorry"]
REFERENCES = ["the cat is on the mat", "i am so sorry to hear that"]


def test_bleu_1_and_2_by_hand():
    # Clipped n-gram matches, summed over the corpus (Papineni et al. 2002):
    # pair 1 unigrams: the,cat,sat,on,the,mat (6); the reference has the x2, cat, on, mat -> 5.
    #        bigrams: the-cat,cat-sat,sat-on,on-the,the-mat (5);
    #        matches the-cat, on-the, the-mat -> 3.
    # pair 2 unigrams: i,am,sorry (3), all in the reference -> 3.
    #        bigrams: i-am, am-sorry (2); the reference has i-am, not am-sorry -> 1.
    # p1 = (5 + 3) / (6 + 3) = 8/9;  p2 = (3 + 1) / (5 + 2) = 4/7.
    # lengths: answers c = 6 + 3 = 9, references r = 6 + 7 = 13; c < r, so the brevity penalty
    # is exp(1 - r/c) = exp(1 - 13/9) = exp(-4/9).
    # BLEU-1 = BP * p1;  BLEU-2 = BP * (p1 * p2) ** (1/2);  sacrebleu reports 0-100.
    penalty = math.exp(-4 / 9)
    assert rm.bleu(HYPOTHESES, REFERENCES, 1) == pytest.approx(100 * penalty * 8 / 9)
    assert rm.bleu(HYPOTHESES, REFERENCES, 2) == pytest.approx(
        100 * penalty * math.sqrt(8 / 9 * 4 / 7)
    )


def test_bleu_lowercases_and_splits_punctuation():
    # 13a tokenizer, lowercased: "I am sorry." -> i am sorry . ; equal to the reference's tokens,
    # so every n-gram matches and the lengths agree (no penalty): 100.
    assert rm.bleu(["I am SORRY."], ["i am sorry ."], 2) == pytest.approx(100)
    assert rm.tokens("I am SO sorry, really.") == ["i", "am", "so", "sorry", ",", "really", "."]


def test_rouge_l_f1_by_hand():
    # pair 1: LCS of "the cat sat on the mat" / "the cat is on the mat" = the cat on the mat (5);
    #         P = 5/6, R = 5/6, F1 = 5/6.
    # pair 2: LCS of "i am sorry" / "i am so sorry to hear that" = i am sorry (3);
    #         P = 3/3 = 1, R = 3/7, F1 = 2 * 1 * 3/7 / (1 + 3/7) = (6/7) / (10/7) = 0.6.
    assert rm.rouge_l(HYPOTHESES, REFERENCES) == pytest.approx([5 / 6, 0.6])


def test_distinct_n_by_hand():
    answers = ["i am sorry", "I am sorry to hear"]
    # unigrams: i,am,sorry + i,am,sorry,to,hear = 8, distinct {i,am,sorry,to,hear} = 5 -> 5/8.
    assert rm.distinct(answers, 1) == pytest.approx(5 / 8)
    # bigrams (within an answer): i-am,am-sorry + i-am,am-sorry,sorry-to,to-hear = 6,
    # distinct 4 -> 4/6.
    assert rm.distinct(answers, 2) == pytest.approx(4 / 6)
    # one-word answers hold no bigram at all
    assert math.isnan(rm.distinct(["yes", "no"], 2))


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    """The real all-MiniLM-L6-v2 (offline package), with its SQLite cache in a scratch folder."""
    return default_embedder(tmp_path_factory.mktemp("cache"))


def test_embedding_cosine_of_identical_texts_is_one(embedder):
    texts = ["I am so sorry to hear about your loss.", "Congratulations on the new job!"]
    same = rm.cosines(embedder, texts, texts)
    assert same == pytest.approx([1.0, 1.0], abs=1e-5)
    different = rm.cosines(embedder, texts, texts[::-1])
    assert (different < 0.9).all()


# --- the table and the job -------------------------------------------------------------------

DIALOGUES = ["d1", "d2", "d3"]
HUMAN = ["I am so sorry for your loss.", "What a lovely dog!", "Well done on the exam."]
SFT = "tiny--direct--chatgpt--sft"
TEST_CSV = "results/data/test.csv"
ANSWERS = {
    grid.TEACHER_TAG: ["That is so sad.", "Dogs are great.", "Great job!"],
    "tiny--base": HUMAN,  # the human responses word for word
    SFT: ["sorry sorry", "nice dog", "good"],
}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A run folder: results/data/test.csv and the answers files at their grid paths."""
    monkeypatch.chdir(tmp_path)
    test = pd.DataFrame(
        {
            "dialog_id": DIALOGUES,
            "situation": ["s1", "s2", "s3"],
            "speaker_uttr": ["u1", "u2", "u3"],
            "response_human": HUMAN,
            "rating_human": [3, 2, 1],
        }
    )
    (tmp_path / "results/data").mkdir(parents=True)
    test.to_csv(tmp_path / TEST_CSV, index=False)
    for tag, texts in ANSWERS.items():
        rows = [{"dialog_id": d, "answer": a} for d, a in zip(DIALOGUES, texts, strict=True)]
        write_jsonl(tmp_path / grid.answer_path(tag), rows)
    return tmp_path


def spec_for(cache_dir) -> dict:
    return {
        "answer_tags": list(ANSWERS),
        "references": ["human", grid.TEACHER_TAG],
        "bootstrap_samples": 200,
        "seed": 0,
        "cache_dir": str(cache_dir),
    }


def run_job(workdir, spec) -> int:
    return rm.main(
        ["--spec", json.dumps(spec), "--test", TEST_CSV, "--out", "results/tables/ref.csv"]
    )


def test_table_has_one_row_per_set_and_reference_never_teacher_vs_teacher(workdir, capsys):
    assert run_job(workdir, spec_for(workdir / "cache")) == 0
    table = pd.read_csv(workdir / "results/tables/ref.csv", keep_default_na=False)
    assert list(table.columns) == list(rm.COLUMNS)
    assert list(zip(table["answer_set"], table["reference"], strict=True)) == [
        ("teacher", "human"),  # not against itself
        ("tiny--base", "human"),
        ("tiny--base", "teacher"),
        (SFT, "human"),
        (SFT, "teacher"),
    ]
    assert (table["n"] == 3).all()
    rows = table.set_index(["answer_set", "reference"])
    # the base set repeats the human responses: every overlap is perfect, also in the intervals
    same = rows.loc[("tiny--base", "human")]
    assert same["bleu1"] == pytest.approx(100) and same["bleu2"] == pytest.approx(100)
    for column in ("rouge_l_f1", "rouge_l_f1_ci_low", "rouge_l_f1_ci_high"):
        assert same[column] == pytest.approx(1.0)
    assert same["embedding_cosine"] == pytest.approx(1.0, abs=1e-5)
    # mean length in words: (7 + 4 + 5) / 3
    assert same["mean_words"] == pytest.approx(16 / 3)
    sft = rows.loc[(SFT, "teacher")]
    # "sorry sorry" / "nice dog" / "good": unigrams 5, distinct {sorry, nice, dog, good} = 4;
    # bigrams sorry-sorry, nice-dog = 2, both distinct
    assert sft["distinct1"] == pytest.approx(4 / 5) and sft["distinct2"] == pytest.approx(1.0)
    # no word of the SFT answers is in the teacher's: ROUGE-L 0 on every dialogue
    assert sft["rouge_l_f1"] == 0 and sft["rouge_l_f1_ci_high"] == 0
    assert sft["rouge_l_f1_ci_low"] <= sft["rouge_l_f1"] <= sft["rouge_l_f1_ci_high"]
    assert sft["answer_by"] == "tiny direct/chatgpt/sft" and sft["stage"] == "sft"
    assert "BLEU: sacrebleu" in capsys.readouterr().out


@pytest.mark.parametrize("tag", [SFT, grid.TEACHER_TAG])
def test_missing_answer_is_an_error_naming_file_and_dialogue(workdir, capsys, tag):
    """A student's file, or the teacher's (a reference too), lacking a test dialogue."""
    path = grid.answer_path(tag)
    write_jsonl(workdir / path, [{"dialog_id": d, "answer": "x"} for d in DIALOGUES[:2]])
    assert run_job(workdir, spec_for(workdir / "cache")) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and path in error and "'d3'" in error
    assert not (workdir / "results/tables/ref.csv").exists()


def test_spec_lists_every_answer_set_of_the_grid():
    """The default grid: the teacher, then per student its base model and its 63 trained models
    (21 data configurations x SFT, DPO, PRIDE)."""
    config = load_config(REPO_ROOT / "config.yaml")
    spec = evaluation_specs.reference_metrics(config)
    models = grid.models(config)
    n_models = 2 * 21 * 3
    assert len(models) == n_models
    expected = {grid.TEACHER_TAG} | {grid.base_tag(s) for s in grid.students(config)}
    assert set(spec["answer_tags"]) == expected | {m.tag for m in models}
    assert len(spec["answer_tags"]) == 1 + 2 + n_models
    assert spec["answer_tags"][:2] == [grid.TEACHER_TAG, grid.base_tag(grid.students(config)[0])]
    assert spec["references"] == ["human", grid.TEACHER_TAG]
    paths = [e["path"] for e in evaluation_specs.answer_manifest(spec)]
    assert paths[0] == grid.TEACHER_ANSWERS and len(set(paths)) == len(paths)


def test_the_teacher_is_a_reference_only_when_the_comparisons_answer_with_it():
    """Without vs_teacher nothing else answers the test dialogues with the teacher: the table
    must not buy those answers for itself."""
    config = load_config(REPO_ROOT / "config.yaml")
    config["evaluation"]["comparisons"] = ["vs_base", "vs_naive", "dpo_vs_sft"]
    spec = evaluation_specs.reference_metrics(config)
    assert spec["references"] == ["human"]
    assert grid.TEACHER_TAG not in spec["answer_tags"]
    assert len(spec["answer_tags"]) == 2 + 2 * 21 * 3


# --- the rule ----------------------------------------------------------------------------------


def _overlay(name: str) -> dict:
    profiles = REPO_ROOT / "workflow" / "profiles"
    overlay = {
        "paper": {},
        "demo": read_yaml(profiles / "demo" / "config.demo.yaml"),
        "cpu-small": read_yaml(profiles / "cpu-small" / "config.cpu-small.yaml"),
    }[name]
    dataset = {**overlay.get("dataset", {}), "path": str(SYNTHETIC_CSV)}
    return {**overlay, "dataset": dataset}


@pytest.mark.parametrize("name", ["paper", "demo", "cpu-small"])
def test_dry_run_plans_reference_metrics_once(tmp_path, name):
    result = run_snakemake(tmp_path, _overlay(name), "-n", "-p")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert output.count("\nrule reference_metrics:") == 1, name
    module = "empathy_distill.evaluation.reference_metrics"
    command = next(line for line in output.splitlines() if module in line)
    words = shlex.split(command)
    spec = json.loads(words[words.index("--spec") + 1])
    config = load_config(REPO_ROOT / "config.yaml", _overlay(name))
    assert spec == evaluation_specs.reference_metrics(config)
