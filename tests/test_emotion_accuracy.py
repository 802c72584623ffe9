"""Emotion accuracy: likelihood scoring of the 32 labels on a tiny random Llama (its shared-
prefix cache against plain forward passes, a planted preference), the table's numbers against
hand-computed ones, the command lines (one load per student, an adapter merged per answer set,
parts as the unit of resume), and the grid's plan (one job per student)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from empathy_distill.core import grid
from empathy_distill.core.config import validate_config
from empathy_distill.core.errors import DatasetError
from empathy_distill.evaluation import emotion_accuracy as table
from empathy_distill.evaluation import specs as evaluation_specs
from empathy_distill.evaluation.emotion_answers import (
    candidate_scores,
    check_gold,
    encode_base,
    encode_chat,
    main,
    name_emotions,
)
from empathy_distill.evaluation.emotion_labels import BASE_SUFFIX, CHAT_SUFFIX, EMOTIONS, question
from empathy_distill.evaluation.records import AnswersError, read_jsonl, read_split
from empathy_distill.training.templates import llamafactory_template
from tests.tiny_lm import build_model, build_tiny, build_tokenizer, dataset_texts
from tests.workflow_helpers import run_snakemake

TEMPLATE = "default"  # a LLaMA-Factory template that needs no extra special tokens
PLANTED = "proud"


@pytest.fixture(scope="module")
def tiny(dataset_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    model, tokenizer = build_tiny(dataset_csv, out)
    return model, tokenizer, out


@pytest.fixture(scope="module")
def test_rows(split):
    return read_split(split["test"]).head(4)


def test_the_labels_are_the_datasets_32_emotions():
    """EmpatheticDialogues' 32 labels, as the study's dataset spells them (../shared/data)."""
    assert len(EMOTIONS) == len(set(EMOTIONS)) == 32
    assert list(EMOTIONS) == sorted(EMOTIONS)
    for expected in ("afraid", "anticipating", "apprehensive", "faithful", "sentimental"):
        assert expected in EMOTIONS


def _plain_scores(model, prompt, candidates) -> list[float]:
    """Mean log-probability per candidate token, one uncached forward pass per candidate."""
    out = []
    with torch.inference_mode():
        for cand in candidates:
            ids = torch.tensor([list(prompt) + list(cand)])
            logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
            start = len(prompt)
            total = sum(float(logprobs[start + j - 1, t]) for j, t in enumerate(cand))
            out.append(total / len(cand))
    return out


@pytest.mark.parametrize("template", [None, TEMPLATE])
def test_cached_scores_equal_plain_forward_passes(tiny, test_rows, template):
    """The shared prefix and the per-dialogue cache copied to 32 right-padded candidates give
    every label the score a plain forward pass of prompt + label gives."""
    model, tokenizer, _ = tiny
    records = name_emotions(test_rows, model, tokenizer, EMOTIONS, template)
    for row, record in zip(test_rows.itertuples(index=False), records, strict=True):
        text = question(row.situation, row.speaker_uttr)
        if template is None:
            prompt, cands = encode_base(tokenizer, text + BASE_SUFFIX, EMOTIONS)
        else:
            lf = llamafactory_template(tokenizer, template)
            prompt, cands = encode_chat(lf, tokenizer, text + CHAT_SUFFIX, EMOTIONS)
        expected = _plain_scores(model, prompt, cands)
        got = [record["scores"][label] for label in EMOTIONS]
        np.testing.assert_allclose(got, expected, atol=2e-4)
        assert record["predicted"] == EMOTIONS[int(np.argmax(expected))]
        assert record["gold"] == row.emotion


def test_base_candidates_are_the_label_after_the_prompt(tiny):
    _, tokenizer, _ = tiny
    prompt, cands = encode_base(tokenizer, "How do they feel? Emotion:", EMOTIONS)
    assert prompt == tokenizer("How do they feel? Emotion:")["input_ids"]
    assert tokenizer.decode(cands[EMOTIONS.index("sad")]) == " sad\n"


@pytest.fixture(scope="module")
def planted_tiny(dataset_csv):
    """A tiny model whose tokenizer spells the planted label as one token of its own."""
    tokenizer = build_tokenizer(dataset_texts(dataset_csv))
    tokenizer.add_tokens([PLANTED])
    return build_model(len(tokenizer)), tokenizer


@pytest.mark.parametrize("template", [None, TEMPLATE])
def test_a_model_forced_to_prefer_one_label_names_it(planted_tiny, test_rows, template):
    """A hook on the output layer makes the token only 'proud' uses 100 nats likelier: every
    dialogue is then named 'proud', and accuracy is the share of 'proud' gold labels."""
    model, tokenizer = planted_tiny
    if template is None:
        _, cands = encode_base(tokenizer, "x Emotion:", EMOTIONS)
    else:
        lf = llamafactory_template(tokenizer, template)
        _, cands = encode_chat(lf, tokenizer, "x", EMOTIONS)
    mine = set(cands[EMOTIONS.index(PLANTED)])
    others = {t for k, c in enumerate(cands) if EMOTIONS[k] != PLANTED for t in c}
    boosted = sorted(mine - others)
    assert boosted, "the planted label needs a token of its own"

    def boost(_module, _inputs, logits):
        logits = logits.clone()
        logits[..., boosted] += 100.0
        return logits

    rows = test_rows.copy()
    rows["emotion"] = [PLANTED, PLANTED, "sad", "afraid"]
    handle = model.lm_head.register_forward_hook(boost)
    try:
        records = name_emotions(rows, model, tokenizer, EMOTIONS, template)
    finally:
        handle.remove()
    assert [r["predicted"] for r in records] == [PLANTED] * len(rows)
    gold = {r["dialog_id"]: r["gold"] for r in records}
    row = table.accuracy_row("s--base", {r["dialog_id"]: r for r in records}, gold, 32, 200, 0)
    assert row["accuracy"] == 0.5


def test_scores_need_no_shared_prefix(tiny):
    """Prompts with nothing in common (no prefix cache) score as plain forward passes; so do
    candidates of one token each (no second pass)."""
    model, _, _ = tiny
    prompts = [[1, 5, 6], [1, 9], [1, 4, 4]]
    cands = [[[7], [8, 9, 10]], [[11, 12], [5]], [[3], [4]]]
    got = candidate_scores(model, prompts, cands)
    for prompt, cand, scores in zip(prompts, cands, got, strict=True):
        np.testing.assert_allclose(scores, _plain_scores(model, prompt, cand), atol=2e-4)


def test_a_gold_label_outside_the_32_stops_before_any_model(test_rows):
    rows = test_rows.copy()
    rows.loc[rows.index[1], "emotion"] = "bored"
    bad_id = rows.iloc[1]["dialog_id"]
    with pytest.raises(DatasetError, match=rf"test.csv: .*{bad_id} \('bored'\)"):
        check_gold(rows, EMOTIONS, "test.csv")
    with pytest.raises(DatasetError, match="no 'emotion' column"):
        check_gold(rows.drop(columns="emotion"), EMOTIONS, "test.csv")


# --- the table ---------------------------------------------------------------------------------

GOLD = ["afraid", "afraid", "sad", "proud"]
PREDICTED = ["afraid", "sad", "sad", "afraid"]


def test_accuracy_macro_f1_and_baselines_by_hand():
    """accuracy 2/4; F1 afraid 2*1/(2+1+1) = 1/2, sad 2*1/(2+1+0) = 2/3, proud 0: macro 7/18;
    majority 'afraid' 2/4; a 4-dialogue bootstrap of two hits: P(no hit) = 1/16 > 2.5 %, so the
    95 % interval is [0, 1]."""
    ids = [f"d{i}" for i in range(4)]
    records = {d: {"predicted": p} for d, p in zip(ids, PREDICTED, strict=True)}
    row = table.accuracy_row(
        "s--direct--gemini--sft", records, dict(zip(ids, GOLD, strict=True)), 32, 2000, 0
    )
    assert row["accuracy"] == 0.5
    assert row["macro_f1"] == pytest.approx(7 / 18)
    assert (row["ci_low"], row["ci_high"]) == (0.0, 1.0)
    assert row["chance"] == 1 / 32
    assert (row["majority_label"], row["majority_baseline"]) == ("afraid", 0.5)
    assert (row["most_predicted"], row["most_predicted_share"]) == ("afraid", 0.5)
    assert row["top_confusions"] == "afraid>sad:1; proud>afraid:1"
    assert (row["student"], row["method"], row["strategy"], row["stage"]) == (
        "s",
        "direct",
        "gemini",
        "sft",
    )
    perfect = {d: {"predicted": g} for d, g in zip(ids, GOLD, strict=True)}
    row = table.accuracy_row("s--base", perfect, dict(zip(ids, GOLD, strict=True)), 32, 500, 0)
    assert (row["accuracy"], row["ci_low"], row["ci_high"], row["macro_f1"]) == (1, 1, 1, 1)
    assert (row["stage"], row["method"]) == ("base", "")


def test_a_missing_dialogue_is_an_error():
    with pytest.raises(AnswersError, match=r"s--base: no record .*d1"):
        table.accuracy_row(
            "s--base", {"d0": {"predicted": "sad"}}, {"d0": "sad", "d1": "sad"}, 32, 100, 0
        )


def _config(**grid_keys) -> dict:
    return validate_config(
        {
            "students": {"s": {"model": "m", "template": "t"}},
            "distillation": {"methods": {"direct": ["gemini"]}},
            "grid": {"students": ["s"], "judges": [], "methods": ["sft", "dpo"], **grid_keys},
        }
    )


def test_table_command_writes_the_columns_in_the_manifests_order(tmp_path, monkeypatch):
    config = _config()
    spec = evaluation_specs.emotion_accuracy(config)
    assert spec["answer_tags"] == ["s--base", "s--direct--gemini--sft", "s--direct--gemini--dpo"]
    monkeypatch.chdir(tmp_path)
    ids = [f"d{i}" for i in range(4)]
    pd.DataFrame(
        {
            "dialog_id": ids,
            "emotion": GOLD,
            "situation": "x",
            "speaker_uttr": "y",
            "response_human": "z",
            "rating_human": 3,
        }
    ).to_csv("test.csv", index=False)
    lines = []
    for k, entry in enumerate(evaluation_specs.emotion_manifest(spec)):
        assert entry["path"] == "results/emotion/s.jsonl"  # the student's one file
        preds = [PREDICTED, GOLD[:2] + PREDICTED[2:], GOLD][k]
        lines += [
            {"answers": entry["answers"], "dialog_id": d, "gold": g, "predicted": p}
            for d, g, p in zip(ids, GOLD, preds, strict=True)
        ]
    path = tmp_path / "results/emotion/s.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in reversed(lines)))  # any order
    out = tmp_path / "emotion_accuracy.csv"
    assert table.main(["--spec", json.dumps(spec), "--test", "test.csv", "--out", str(out)]) == 0
    written = pd.read_csv(out, keep_default_na=False)
    assert list(written.columns) == list(table.COLUMNS)
    assert written["model"].tolist() == spec["answer_tags"]
    # PREDICTED (2 of 4 right), then d1 fixed too, then all right
    assert written["accuracy"].tolist() == [0.5, 0.75, 1.0]


def test_table_refuses_labels_from_another_test_split(tmp_path, monkeypatch):
    spec = evaluation_specs.emotion_accuracy(_config())
    spec["answer_tags"] = ["s--base"]
    monkeypatch.chdir(tmp_path)
    pd.DataFrame(
        {
            "dialog_id": ["d0"],
            "emotion": ["sad"],
            "situation": "x",
            "speaker_uttr": "y",
            "response_human": "z",
            "rating_human": 3,
        }
    ).to_csv("test.csv", index=False)
    path = tmp_path / evaluation_specs.emotion_path("s--base")
    path.parent.mkdir(parents=True)
    record = {"answers": "s--base", "dialog_id": "d0", "gold": "afraid", "predicted": "sad"}
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(AnswersError, match="gold emotion of s--base differs"):
        table.table_of_spec(spec, "test.csv")
    # a set the file lacks, and a file of the one-job-per-set layout (no answer set named)
    spec["answer_tags"] = ["s--base", "s--direct--gemini--sft"]
    record["gold"] = "sad"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(AnswersError, match=r"s.jsonl: no records of answer set s--direct--gemini"):
        table.table_of_spec(spec, "test.csv")
    path.write_text(json.dumps({"dialog_id": "d0", "gold": "sad", "predicted": "sad"}) + "\n")
    with pytest.raises(AnswersError, match=r"s.jsonl, line 1: no 'answers'"):
        table.table_of_spec(spec, "test.csv")


def _adapter(model, folder, seed: int) -> None:
    """A LoRA adapter of ``model`` with random (non-zero) weights, saved to ``folder``."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    copy = type(model)(model.config)
    copy.load_state_dict(model.state_dict())
    lora = get_peft_model(
        copy, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    lora.save_pretrained(folder)


def test_one_job_names_every_answer_set_as_a_load_per_set_would(tiny, split, tmp_path, monkeypatch):
    """The student's job: base and two trained models in the spec's order, each set's records
    those of the base + that adapter loaded on its own (generate.load_model, as the answer rule);
    the base weights come back between sets; a rerun reads the parts and loads no model; a job
    killed after the first set scores only the sets it has no part of, and writes the same
    bytes."""
    from empathy_distill.evaluation import emotion_answers
    from empathy_distill.evaluation.generate import load_model, load_tokenizer

    model, _, model_dir = tiny
    monkeypatch.chdir(tmp_path)
    tags = ["tiny--base", "tiny--direct--gemini--sft", "tiny--direct--gemini--dpo"]
    for seed, tag in enumerate(tags[1:], start=1):
        _adapter(model, grid.adapter_dir(tag), seed)
    read_split(split["test"]).head(3).to_csv("test.csv", index=False)
    config = {
        "students": {"tiny": {"model": "builtin:tiny", "template": TEMPLATE}},
        "distillation": {"methods": {"direct": ["gemini"]}},
        "grid": {"students": ["tiny"], "judges": [], "methods": ["sft", "dpo"]},
    }
    Path("config.yaml").write_text(json.dumps(config))
    argv = ["--config", "config.yaml", "--student", "tiny", "--test", "test.csv"]
    argv += ["--model-path", str(model_dir), "--out", "results/emotion/tiny.jsonl"]
    assert main(argv) == 0
    rows = read_jsonl("results/emotion/tiny.jsonl")
    ids = read_split("test.csv")["dialog_id"].astype(str).tolist()
    assert [(r["answers"], r["dialog_id"]) for r in rows] == [(t, d) for t in tags for d in ids]

    test = read_split("test.csv")
    for tag in tags:
        adapter = grid.adapter_dir(tag)
        alone = load_model(model_dir, adapter, dtype="auto")
        tokenizer = load_tokenizer(model_dir, adapter)
        template = TEMPLATE if adapter else None
        expected = name_emotions(test, alone, tokenizer, EMOTIONS, template)
        assert [
            {k: v for k, v in r.items() if k != "answers"} for r in rows if r["answers"] == tag
        ] == expected, tag
    by_set = {t: [r["scores"] for r in rows if r["answers"] == t] for t in tags}
    assert len({json.dumps(v, sort_keys=True) for v in by_set.values()}) == 3  # three models

    # the merged-then-restored model is the base again
    base = load_model(model_dir, None, dtype="auto")
    pristine = {k: v.clone() for k, v in base.state_dict().items()}
    with emotion_answers.merged(base, grid.adapter_dir(tags[1]), pristine) as tuned:
        assert any(not torch.equal(v, pristine[k]) for k, v in tuned.state_dict().items())
    assert all(torch.equal(v, pristine[k]) for k, v in base.state_dict().items())

    first = Path("results/emotion/tiny.jsonl").read_bytes()
    parts = sorted(Path("results/emotion/tiny.parts").iterdir())
    assert len(parts) == 3

    def no_load(*_args, **_kwargs):
        raise AssertionError("a rerun with every part loaded a model")

    monkeypatch.setattr(emotion_answers, "load_model", no_load)
    Path("results/emotion/tiny.jsonl").unlink()
    assert main(argv) == 0
    assert Path("results/emotion/tiny.jsonl").read_bytes() == first
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)

    # killed after the first set: the other two parts are missing; only they are scored
    scored = []
    real = emotion_answers.name_emotions
    monkeypatch.setattr(
        emotion_answers, "name_emotions", lambda *a, **k: scored.append(1) or real(*a, **k)
    )
    for part in parts:
        if read_jsonl(part)[0]["answers"] != tags[0]:
            part.unlink()
    Path("results/emotion/tiny.jsonl").unlink()
    assert main(argv) == 0
    assert len(scored) == 2
    assert Path("results/emotion/tiny.jsonl").read_bytes() == first

    # a retrained adapter (new bytes) is a new part: only its set is scored again
    scored.clear()
    _adapter(model, grid.adapter_dir(tags[2]), 7)
    assert main(argv) == 0
    assert len(scored) == 1


def test_a_missing_adapter_stops_before_any_model(tiny, split, tmp_path, monkeypatch, capsys):
    _, _, model_dir = tiny
    monkeypatch.chdir(tmp_path)
    read_split(split["test"]).head(2).to_csv("test.csv", index=False)
    config = {
        "students": {"tiny": {"model": "builtin:tiny", "template": TEMPLATE}},
        "distillation": {"methods": {"direct": ["gemini"]}},
        "grid": {"students": ["tiny"], "judges": [], "methods": ["sft"]},
    }
    Path("config.yaml").write_text(json.dumps(config))
    argv = ["--config", "config.yaml", "--student", "tiny", "--test", "test.csv"]
    argv += ["--model-path", str(model_dir), "--out", "results/emotion/tiny.jsonl"]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "answer set tiny--direct--gemini--sft: no adapter_model.safetensors" in err, err
    assert "results/models/tiny/direct/gemini/sft" in err
    assert not Path("results/emotion/tiny.parts").exists()


# --- the plan ----------------------------------------------------------------------------------


def test_default_grid_plans_one_emotion_job_per_student(dataset_path, tmp_path):
    """snakemake -n on config.yaml: one emotion job per student, waiting for the adapter of
    every trained model whose answers the answer rule writes for it, with the answer job's
    GPU; one table reads them all."""
    result = run_snakemake(tmp_path, {"dataset": {"path": str(dataset_path)}}, "-n")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    blocks = output.split("\nrule ")

    def field(block: str, name: str) -> str:
        return block.split(f"{name}: ", 1)[1].splitlines()[0]

    answers = [field(b, "output") for b in blocks if b.startswith("answer:")]
    students = sorted({p.split("/")[2] for p in answers if p.startswith("results/answers/")})
    emotion = [b for b in blocks if b.startswith("emotion_answers:")]
    assert sorted(field(b, "output") for b in emotion) == [
        f"results/emotion/{s}.jsonl" for s in students
    ]
    assert len(students) == 2
    for block in emotion:
        student = field(block, "output").removeprefix("results/emotion/").removesuffix(".jsonl")
        inputs = field(block, "input").split(", ")
        trained = [
            p.removeprefix("results/answers/").removesuffix(".jsonl")
            for p in answers
            if p.startswith(f"results/answers/{student}/") and not p.endswith("/base.jsonl")
        ]
        assert len(trained) == 63  # 21 data configurations x SFT, DPO, PRIDE
        for variant in trained:
            folder = "results/models/" + variant
            assert f"{folder}/adapter_model.safetensors" in inputs, folder
            assert f"{folder}/adapter_config.json" in inputs, folder
        assert "gpu=1" in field(block, "resources")
    tables = [field(b, "output") for b in blocks if b.startswith("emotion_accuracy:")]
    assert tables == ["results/tables/emotion_accuracy.csv"]


def test_switch_off_plans_no_emotion_job(dataset_path, tmp_path):
    overlay = {
        "dataset": {"path": str(dataset_path)},
        "evaluation": {"emotion_accuracy": False},
        "distillation": {"methods": {"direct": ["chatgpt"]}},
        "grid": {"students": ["tiny"], "judges": ["offline"]},
    }
    result = run_snakemake(tmp_path, overlay, "-n", "--quiet", "rules")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "emotion_" not in output and "answer " in output
