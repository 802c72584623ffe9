"""training.pride.reasoning: the PRIDE teacher's own reasoning as privileged input.

The reasoning job runs the tiny student built from the synthetic dataset as the teacher, through
the real LLM layer (transformers backend, SQLite cache); generations are counted at the backend.
Expected texts are written here, not produced by the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from empathy_distill.core.config import load_config
from empathy_distill.core.errors import ConfigError, DatasetError
from empathy_distill.core.prompts import Prompts
from empathy_distill.distillation.formats import sft_record, write_set
from empathy_distill.training.pride import config as pride_config
from empathy_distill.training.pride import privileged
from empathy_distill.training.pride import reasoning as pride_reasoning

from .conftest import REPO_ROOT
from .workflow_helpers import run_snakemake

SYNTHETIC = REPO_ROOT / "tests/data/synthetic_dataset.csv"
TINY = {"tiny": {"model": "builtin:tiny", "template": "llama3"}}


# --- config ---------------------------------------------------------------------------------


def _settings(reasoning: object) -> dict:
    config = {"students": TINY, "training": {"pride": {"reasoning": reasoning}}}
    return pride_config.build_settings(config, "tiny", "direct", "chatgpt")


def test_off_by_default_on_with_true_or_a_mapping() -> None:
    off = pride_config.build_settings({"students": TINY}, "tiny", "direct", "chatgpt")
    assert "reasoning" not in off  # a job without reasoning keeps the spec it had (no rerun)
    assert "reasoning" not in _settings(False) and "reasoning" not in _settings(None)
    path = "results/pride/reasoning/tiny.jsonl"
    assert _settings(True)["reasoning"] == {"max_new_tokens": 160, "batch_size": 8, "file": path}
    assert _settings({"max_new_tokens": 32})["reasoning"] == {
        "max_new_tokens": 32,
        "batch_size": 8,
        "file": path,
    }
    # the shipped config: on only where the teacher is an instruction model that can write it
    # (Llama-3.1-70B-Instruct for llama31_8b); the SFT teacher of mistral_7b writes none
    assert pride_config.reasoning_teachers(load_config(REPO_ROOT / "config.yaml")) == {
        "llama31_70b_instruct": ("llama31_8b", {"max_new_tokens": 160, "batch_size": 8})
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yes", r"training\.pride \(student tiny\)\.reasoning: expected true, false or a mapping"),
        ({"max_tokens": 9}, r"reasoning: unknown key\(s\) max_tokens \(known: max_new_tokens"),
        ({"batch_size": 0}, r"reasoning\.batch_size: expected an integer >= 1, got 0"),
        ({"max_new_tokens": True}, r"reasoning\.max_new_tokens: expected an integer >= 1"),
    ],
    ids=["text", "unknown-key", "zero", "bool"],
)
def test_a_bad_value_is_refused_naming_the_key(value, message) -> None:
    with pytest.raises(ConfigError, match=message):
        _settings(value)


def test_the_schema_refuses_a_number_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"\['training'\]\['pride'\]\['reasoning'\]"):
        load_config(REPO_ROOT / "config.yaml", {"training": {"pride": {"reasoning": 3}}})


def test_students_sharing_a_teacher_must_agree_on_its_reasoning() -> None:
    config = load_config(
        REPO_ROOT / "config.yaml",
        {
            "students": {"tiny2": {"model": "builtin:tiny", "template": "llama3"}},
            "grid": {"students": ["tiny", "tiny2"], "judges": ["offline"]},
            "training": {
                "pride": {"teacher": "tiny", "reasoning": True},
                "per_student": {"tiny2": {"pride": {"reasoning": {"max_new_tokens": 8}}}},
            },
        },
    )
    with pytest.raises(ConfigError, match=r"students tiny and tiny2 share the teacher 'tiny'"):
        pride_config.validate(config)


# --- the leak check -------------------------------------------------------------------------

ROW = {
    "dialog_id": "d1",
    "emotion": "lonely",
    "plutchik": "sadness",
    "sentiment": "negative",
    "rating_human": "3",
    "situation": "My friends all moved away.",
    "speaker_uttr": "I eat dinner alone every night now.",
}
ANALYSIS = (
    "They miss the friends who left and feel cut off at the end of each day. "
    'They said "I eat dinner alone every night now." They need someone to notice.'
)


def test_the_reasoning_in_a_student_input_is_a_leak() -> None:
    plain = Prompts().student_train(ROW["situation"], ROW["speaker_uttr"])
    assert privileged.privileged_leaks(plain, ROW, plain, ANALYSIS) == []
    # the whole text, or one sentence of it, added to the student's input
    for leaked in (f"{plain}\n{ANALYSIS}", f"{plain} They need someone to notice."):
        found = privileged.privileged_leaks(leaked, ROW, plain, ANALYSIS)
        assert len(found) == 1 and found[0].startswith("reasoning="), found
        with pytest.raises(AssertionError, match="d1: the PRIDE student's input holds"):
            privileged.check_student_input(leaked, ROW, plain, ANALYSIS)
    # a sentence quoting the speaker occurs in the plain prompt too: not a leak by itself
    assert privileged.privileged_leaks(plain, ROW, plain, 'She said "' + ROW["speaker_uttr"]) == []
    # the teacher's prompt carries it as the analysis step
    teacher = privileged.teacher_prompt(plain, ROW, ANALYSIS)
    assert f"Analysis: {ANALYSIS}" in teacher and teacher.endswith(plain)


# --- tiny models ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from empathy_distill.training.tiny_model import build_tiny_student

    root = tmp_path_factory.mktemp("reasoning")
    data = pd.read_csv(SYNTHETIC, dtype=str)
    train_csv = root / "train.csv"
    data.head(4).to_csv(train_csv, index=False)
    every = root / "all.csv"  # the tokenizer learns the whole synthetic dataset's text
    data.to_csv(every, index=False)
    model = build_tiny_student(every, root / "tiny")
    return {"root": root, "data": data.head(4), "train_csv": train_csv, "model": str(model)}


def _spec(tiny: dict, cache: Path) -> dict:
    return {
        "teacher": "tiny",
        "model": "builtin:tiny",
        "model_path": tiny["model"],
        "revision": None,
        "dtype": None,
        "device_map": None,
        "max_new_tokens": 6,
        "batch_size": 3,
        "cache_dir": str(cache),
        "price_table": str(REPO_ROOT / "resources/prices.yaml"),
    }


def test_the_reasoning_job_asks_once_then_answers_from_the_cache(tiny, monkeypatch) -> None:
    from empathy_distill.llm.backends import transformers_backend

    loads, generated, prompts = [], [], []
    real_init = transformers_backend.TransformersBackend.__init__
    real_generate = transformers_backend.TransformersBackend.generate_many

    def counting_init(self, *args, **kwargs):
        loads.append(args[0])
        real_init(self, *args, **kwargs)

    def counting_generate(self, requests):
        generated.extend(requests)
        prompts.extend(r.messages[-1].content for r in requests)
        return real_generate(self, requests)

    monkeypatch.setattr(transformers_backend.TransformersBackend, "__init__", counting_init)
    monkeypatch.setattr(
        transformers_backend.TransformersBackend, "generate_many", counting_generate
    )
    root = tiny["root"]
    spec = json.dumps(_spec(tiny, root / "cache"))
    out = root / "reasoning.jsonl"
    args = ["--spec", spec, "--train", str(tiny["train_csv"]), "--out", str(out)]
    report = ["--cost-report", str(root / "costs.csv")]
    assert pride_reasoning.main([*args, *report]) == 0
    rows = tiny["data"].to_dict("records")
    assert loads == [tiny["model"]] and len(generated) == 4
    first = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["dialog_id"] for r in first] == [r["dialog_id"] for r in rows]
    assert all(isinstance(r["reasoning"], str) for r in first)
    # the prompt: the public text and the labels, and it asks for the analysis only
    for prompt, row in zip(prompts, rows, strict=True):
        for field in ("situation", "speaker_uttr", "emotion", "plutchik", "sentiment"):
            assert row[field].strip() in prompt, field
        assert "Do not write a reply" in prompt and "Do not write the answer" in prompt
    # a second run (a rerun, or the job after a crash): every answer from the cache, no model
    out.unlink()
    assert pride_reasoning.main([*args, *report]) == 0
    assert loads == [tiny["model"]] and len(generated) == 4  # 0 new loads, 0 new generations
    assert [json.loads(line) for line in out.read_text().splitlines()] == first
    last = (root / "costs.csv").read_text().splitlines()[-1].split(",")
    assert last[5:8] == ["4", "4", "4"]  # requests, unique, cached


def _job(tiny: dict, root: Path, analyses: dict[str, str]) -> dict:
    prompts = Prompts()
    rows = tiny["data"].head(3).to_dict("records")
    records = [
        sft_record(r["dialog_id"], prompts.student_train(r["situation"], r["speaker_uttr"]), t)
        for r in rows
        for t in (r["response_human"], r["response_chatgpt_empathy"])
    ]
    write_set(records, root / "sft.json", "sft")
    reasoning_file = root / "teacher_reasoning.jsonl"
    reasoning_file.write_text(
        "".join(json.dumps({"dialog_id": d, "reasoning": a}) + "\n" for d, a in analyses.items())
    )
    settings = _settings(True)
    settings |= {
        "model_name_or_path": tiny["model"],
        "teacher_model": tiny["model"],
        "dataset": str(root / "sft.json"),
        "train_csv": str(tiny["train_csv"]),
        "cutoff_len": 1024,
    }
    settings["reasoning"]["file"] = str(reasoning_file)
    return {"settings": settings, "rows": rows}


def test_the_teacher_prompts_hold_each_rows_reasoning_and_the_student_inputs_do_not(tiny):
    from transformers import AutoTokenizer

    from empathy_distill.training.pride.loop import read_examples

    ids = tiny["data"]["dialog_id"].tolist()
    analyses = {
        d: f"Analysis number {k}: they feel let down by someone close and want to be heard."
        for k, d in enumerate(ids)
    }
    root = tiny["root"] / "job"
    root.mkdir(exist_ok=True)
    job = _job(tiny, root, analyses)
    tokenizer = AutoTokenizer.from_pretrained(tiny["model"])
    examples = read_examples(job["settings"], tokenizer)
    assert len(examples) == 6
    for example, row in zip(examples, [r for r in job["rows"] for _ in (0, 1)], strict=True):
        mine = analyses[row["dialog_id"]]
        teacher_text = tokenizer.decode(example.teacher_prompt)
        assert f"Analysis: {mine}" in teacher_text
        others = [a for d, a in analyses.items() if d != row["dialog_id"]]
        assert not any(a in teacher_text for a in others)
        assert mine in tokenizer.decode(example.privileged)  # the privileged path's text
        student_text = tokenizer.decode(example.student_prompt)
        assert "Analysis" not in student_text and mine not in student_text
        plain = Prompts().student_train(row["situation"], row["speaker_uttr"])
        assert privileged.privileged_leaks(student_text, row, plain, mine) == []
    # a dialogue the reasoning file lacks stops the job naming the file and the dialogue
    missing = dict(list(analyses.items())[1:])
    job = _job(tiny, root, missing)
    with pytest.raises(
        DatasetError, match=rf"teacher_reasoning\.jsonl: no reasoning for .*{ids[0]}"
    ):
        read_examples(job["settings"], tokenizer)


def test_a_reasoning_in_the_sft_user_turn_stops_the_encoding(tiny) -> None:
    """The leak check runs on every example: an SFT set whose user turn carried the teacher's
    reasoning (a bug upstream) is refused before training."""
    from transformers import AutoTokenizer

    from empathy_distill.training.pride.loop import read_examples

    root = tiny["root"] / "leaky"
    root.mkdir(exist_ok=True)
    ids = tiny["data"]["dialog_id"].tolist()
    analyses = {d: "They feel let down by someone close and want to be heard." for d in ids}
    job = _job(tiny, root, analyses)
    records = json.loads((root / "sft.json").read_text())
    records[0]["messages"][0]["content"] += " " + analyses[records[0]["dialog_id"]]
    (root / "sft.json").write_text(json.dumps(records))
    tokenizer = AutoTokenizer.from_pretrained(tiny["model"])
    with pytest.raises(AssertionError, match=r"holds privileged information \(reasoning="):
        read_examples(job["settings"], tokenizer)


# --- the DAG --------------------------------------------------------------------------------


def _overlay(reasoning: bool) -> dict:
    return {
        "dataset": {"path": str(SYNTHETIC)},
        "distillation": {
            "methods": {"direct": ["chatgpt"], "improve_human": ["naive_prompt"], "improve_llm": []}
        },
        "teacher": {"backend": "transformers", "model": "builtin:tiny"},
        "grid": {"students": ["tiny"], "judges": ["offline"], "methods": ["sft", "pride"]},
        "evaluation": {"comparisons": ["vs_base"]},
        "training": {"pride": {"reasoning": reasoning}},
    }


def _blocks(output: str, rule: str) -> list[str]:
    return [b for b in output.split("\nrule ") if b.startswith(f"{rule}:")]


def _line(block: str, key: str) -> str:
    return block.split(f"{key}:", 1)[1].splitlines()[0]


@pytest.mark.parametrize("reasoning", [False, True], ids=["off", "on"])
def test_the_reasoning_rule_is_planned_only_with_the_option(tmp_path, reasoning) -> None:
    result = run_snakemake(tmp_path, _overlay(reasoning), "-n")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    planned = _blocks(output, "pride_reasoning")
    path = "results/pride/reasoning/tiny.jsonl"
    pride = _blocks(output, "train_pride")
    assert len(pride) == 2  # 2 data configurations
    if not reasoning:
        assert planned == [] and path not in output
        return
    # one job for the teacher, whichever data configurations it serves
    (block,) = planned
    assert _line(block, "output").strip() == path
    assert "results/data/train.csv" in _line(block, "input")
    assert "log: logs/pride/reasoning/tiny.log" in block
    assert "benchmark: results/benchmarks/pride/reasoning/tiny.tsv" in block
    assert all(path in _line(b, "input") for b in pride)
    # the students' other jobs and every answer job (PRIDE's included) never read it
    for rule in ("train", "answer"):
        assert all(path not in _line(b, "input") for b in _blocks(output, rule)), rule
