"""PRIDE's teacher paid for once per configuration (issue 23, item 4): the reverse KL over the
teacher's top k and a tail bucket against the full-vocabulary value, the precomputed outputs
(rule pride_teacher_outputs) against the online teacher, their alignment checks, and a
training run that never runs the teacher.

Expected values are computed here independently: the bucketed KL in float64 numpy from the two
full distributions, the online path's own first-step terms.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from empathy_distill.core import specs
from empathy_distill.core.errors import ConfigError, TrainingError
from empathy_distill.core.prompts import Prompts
from empathy_distill.distillation.formats import sft_record, write_set
from empathy_distill.training.pride import loop, losses, teacher_outputs
from empathy_distill.training.pride.config import build_settings, teacher_resources
from empathy_distill.training.pride.teacher_store import MANIFEST, TeacherOutputs, spec_of

from .conftest import REPO_ROOT

# --- the loss -------------------------------------------------------------------------------


def tiny_random_llama(seed: int, vocab: int = 256) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # sharper than the init's near-uniform logits, as a trained model's
        model.lm_head.weight.mul_(40.0)
    return model


def bucketed_kl(p: np.ndarray, q: np.ndarray, ids: np.ndarray) -> float:
    """KL(p || q) over the buckets {each of ids} and {the rest}, by hand in float64."""
    p_b = np.append(p[ids], 1.0 - p[ids].sum())
    q_b = np.append(q[ids], 1.0 - q[ids].sum())
    keep = p_b > 0
    return float((p_b[keep] * np.log(p_b[keep] / q_b[keep])).sum())


def kl_pair() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Student and teacher logits (1, 12, 256) of two tiny random Llamas on one sequence."""
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        student = tiny_random_llama(1)(input_ids=ids).logits
        teacher = tiny_random_llama(2)(input_ids=ids).logits
    return student, teacher, torch.ones(1, 12)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_topk_kl_matches_the_bucketed_kl_by_hand_and_bounds_the_full_kl(temperature) -> None:
    student, teacher, mask = kl_pair()
    full = losses.reverse_kl(student, teacher, mask, temperature).item()
    p = torch.softmax(student[0].double() / temperature, -1).numpy()
    q = torch.softmax(teacher[0].double() / temperature, -1).numpy()
    errors = {}
    for k in (8, 64):
        ids, logprobs, tail = losses.teacher_top_k(teacher, k, temperature)
        # the tail's log-mass is log(1 - sum of the top-k probabilities)
        top_mass = np.take_along_axis(q, ids[0].numpy(), -1).sum(-1)
        assert np.allclose(tail[0].exp().double().numpy(), 1 - top_mass, rtol=1e-4)
        value = losses.reverse_kl_topk(student, ids, logprobs, tail, mask, temperature).item()
        by_hand = np.mean([bucketed_kl(p[j], q[j], ids[0, j].numpy()) for j in range(12)])
        assert value == pytest.approx(by_hand, rel=1e-4)
        # data-processing inequality: merging tokens into one bucket loses information
        assert value <= full + 1e-6
        errors[k] = (full - value) / full
    assert errors[64] < errors[8]  # more buckets, closer to the full value
    print(f"T={temperature}: full KL {full:.4f}; relative error " + str(errors))


def test_topk_kl_with_k_the_vocabulary_is_the_full_kl() -> None:
    student, teacher, mask = kl_pair()
    ids, logprobs, tail = losses.teacher_top_k(teacher, 256)
    assert torch.isinf(tail).all()  # no tail left
    value = losses.reverse_kl_topk(student, ids, logprobs, tail, mask).item()
    assert value == pytest.approx(losses.reverse_kl(student, teacher, mask).item(), rel=1e-5)
    # and a gradient flows to the student without NaN
    student = student.clone().requires_grad_(True)
    losses.reverse_kl_topk(student, ids, logprobs, tail, mask).backward()
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


# --- a tiny job -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny student, a 6-example SFT set; the PRIDE settings of the default (precomputed)."""
    from empathy_distill.training.tiny_model import build_tiny_student

    root = tmp_path_factory.mktemp("pride_outputs")
    data = pd.read_csv(REPO_ROOT / "tests/data/synthetic_dataset.csv", dtype=str)
    train_csv = root / "train.csv"
    data.to_csv(train_csv, index=False)
    model = build_tiny_student(train_csv, root / "tiny")
    prompts = Prompts()
    records = [
        sft_record(r["dialog_id"], prompts.student_train(r["situation"], r["speaker_uttr"]), t)
        for r in data.head(3).to_dict("records")
        for t in (r["response_human"], r["response_chatgpt_empathy"])
    ]
    write_set(records, root / "sft.json", "sft")
    config = {
        "students": {"tiny": {"model": "builtin:tiny", "template": "llama3"}},
        "training": {"pride": {"teacher": "base"}},
    }
    settings = build_settings(config, "tiny", "direct", "chatgpt")
    assert settings["teacher_outputs"] == "precomputed" and settings["teacher_top_k"] == 64
    settings |= {
        "model_name_or_path": str(model),
        "teacher_model": str(model),
        "dataset": str(root / "sft.json"),
        "train_csv": str(train_csv),
        "cutoff_len": 1024,
        "logging_steps": 1,
        "per_device_train_batch_size": 2,
    }
    vocab = json.loads((model / "config.json").read_text())["vocab_size"]
    return {"settings": settings, "root": root, "vocab": vocab}


def _precomputed(job: dict, name: str, k: int, **extra) -> dict:
    folder = job["root"] / name
    settings = {**job["settings"], "teacher_top_k": k, "teacher_outputs_dir": str(folder), **extra}
    teacher_outputs.compute(spec_of(settings), folder)
    return settings


def _first_step(settings: dict, out) -> dict:
    loop.train_in_memory(settings, out)
    return json.loads((out / loop.LOG_FILE).read_text())[0]


def test_precomputed_with_k_the_vocabulary_gives_the_online_first_step(job) -> None:
    settings = _precomputed(job, "outputs_full", job["vocab"], max_steps=2)
    manifest = json.loads((job["root"] / "outputs_full" / MANIFEST).read_text())
    assert manifest["k"] == manifest["vocab_size"] == job["vocab"]
    assert [e[0] for e in manifest["examples"]] == [
        r["dialog_id"] for r in json.loads((job["root"] / "sft.json").read_text())
    ]
    online = {**job["settings"], "teacher_outputs": "online", "max_steps": 2}
    online.pop("teacher_top_k")
    want = _first_step(online, job["root"] / "run_online")
    got = _first_step(settings, job["root"] / "run_precomputed")
    for term in ("ce", "reverse_kl", "mmd", "total"):
        assert got[term] == pytest.approx(want[term], rel=1e-4, abs=1e-7), term
    assert want["reverse_kl"] > 0 and want["mmd"] > 0


def test_precomputed_with_a_small_k_trains_and_lower_bounds_the_online_kl(job) -> None:
    """k = 8 of the vocabulary, and MMD features of 5 seeded positions per example (fewer than
    every response has: training.pride.teacher_feature_tokens), the same online and stored."""
    settings = _precomputed(job, "outputs_k8", 8, max_steps=3, teacher_feature_tokens=5)
    from safetensors.torch import load_file

    shard = load_file(str(job["root"] / "outputs_k8" / "shard-00000.safetensors"))
    assert shard["feature_offsets"].diff().tolist() == [5] * 6  # 5 positions of each example
    assert shard["topk_ids"].shape[1] == 8
    got = _first_step(settings, job["root"] / "run_k8")
    online = {**job["settings"], "teacher_outputs": "online", "max_steps": 3}
    online["teacher_feature_tokens"] = 5
    want = _first_step(online, job["root"] / "run_online_k8")
    assert got["reverse_kl"] <= want["reverse_kl"] + 1e-6
    assert got["ce"] == pytest.approx(want["ce"], rel=1e-4)
    assert got["mmd"] == pytest.approx(want["mmd"], rel=1e-4)  # the same features
    results = json.loads((job["root"] / "run_k8" / "train_results.json").read_text())["pride"]
    assert results["teacher_outputs"] == "precomputed" and results["teacher_top_k"] == 8
    print(f"first step reverse KL: top-8 {got['reverse_kl']:.5f}, full {want['reverse_kl']:.5f}")


def test_the_teacher_runs_once_per_example_and_never_in_training(job, monkeypatch) -> None:
    import transformers

    calls = {"forward": 0}
    real_pass = loop.teacher_pass

    def counting(*args, **kwargs):
        calls["forward"] += 1
        return real_pass(*args, **kwargs)

    monkeypatch.setattr(loop, "teacher_pass", counting)
    monkeypatch.setattr(teacher_outputs, "teacher_pass", counting)
    settings = _precomputed(job, "outputs_counted", 16, num_train_epochs=3.0, max_steps=-1)
    examples = len(json.loads((job["root"] / "sft.json").read_text()))
    assert calls["forward"] == math.ceil(examples / teacher_outputs.FORWARD_BATCH)

    calls["forward"] = 0
    loads: list[str] = []
    real_load = transformers.AutoModelForCausalLM.from_pretrained
    served: list[int] = []
    real_batch = TeacherOutputs.batch

    def spy_load(*args, **kwargs):
        loads.append(str(args[0]))
        return real_load(*args, **kwargs)

    def spy_batch(self, indices, width):
        served.extend(indices)
        return real_batch(self, indices, width)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy_load)
    monkeypatch.setattr(TeacherOutputs, "batch", spy_batch)
    loop.train_in_memory(settings, job["root"] / "run_counted")
    assert calls["forward"] == 0  # 3 epochs, no teacher forward pass
    assert loads == [settings["model_name_or_path"]]  # the student only
    assert sorted(served) == sorted(list(range(examples)) * 3)  # every epoch reads them all

    # the online ablation runs the teacher at every step
    online = {**job["settings"], "teacher_outputs": "online", "max_steps": 4}
    loop.train_in_memory(online, job["root"] / "run_counted_online")
    assert calls["forward"] == 4


def test_outputs_that_do_not_line_up_are_refused_naming_the_example(job) -> None:
    from transformers import AutoTokenizer

    folder = job["root"] / "outputs_checked"
    settings = {**job["settings"], "teacher_top_k": 4, "teacher_outputs_dir": str(folder)}
    # through the rule's command line: --spec (the rule's params.spec), --out, --gpus 0
    spec = specs.dumps(spec_of(settings))
    assert teacher_outputs.main(["--spec", spec, "--out", str(folder), "--gpus", "0"]) == 0
    tokenizer = AutoTokenizer.from_pretrained(settings["model_name_or_path"])
    examples = loop.read_examples(settings, tokenizer)
    TeacherOutputs(folder, settings, examples)  # lines up
    manifest = json.loads((folder / MANIFEST).read_text())

    def refused(change, match: str) -> None:
        broken = json.loads(json.dumps(manifest))
        change(broken)
        (folder / MANIFEST).write_text(json.dumps(broken))
        with pytest.raises(TrainingError, match=match):
            TeacherOutputs(folder, settings, examples)

    first, second = examples[0].dialog_id, examples[2].dialog_id
    swap = lambda m: m["examples"].__setitem__(0, [second, m["examples"][0][1]])  # noqa: E731
    refused(swap, f"example 0 is dialogue {second} .* example 0 is dialogue {first}")
    longer = lambda m: m["examples"][1].__setitem__(1, m["examples"][1][1] + 1)  # noqa: E731
    refused(longer, "example 1 is dialogue .* response tokens")
    other_k = lambda m: m["spec"].__setitem__("teacher_top_k", 64)  # noqa: E731
    refused(other_k, "keys teacher_top_k differ")
    (folder / MANIFEST).unlink()
    with pytest.raises(TrainingError, match="rule pride_teacher_outputs writes them"):
        TeacherOutputs(folder, settings, examples)


# --- the job's spec and resources -------------------------------------------------------------


def test_the_spec_holds_what_shapes_the_outputs_and_online_has_no_job(monkeypatch) -> None:
    import empathy_distill.stages  # noqa: F401  (registers every builder)
    from empathy_distill.core.config import load_config

    config = load_config(REPO_ROOT / "config.yaml")
    spec = specs.build("pride_teacher_outputs", config, "llama31_8b", "direct", "chatgpt")
    assert spec["teacher_model"] == "meta-llama/Llama-3.1-70B-Instruct"
    assert spec["teacher_top_k"] == 64 and spec["temperature"] == 1.0
    assert spec["dataset"] == "results/datasets/direct/chatgpt/sft.json"
    for key in ("teacher_revision", "teacher_template", "cutoff_len", "privileged_policy"):
        assert key in spec
    mistral = specs.build("pride_teacher_outputs", config, "mistral_7b", "direct", "chatgpt")
    assert mistral["teacher_adapter"] == "results/models/mistral_7b/direct/chatgpt/sft"
    config["training"]["pride"]["teacher_top_k"] = 32
    assert specs.build("pride_teacher_outputs", config, "llama31_8b", "direct", "chatgpt") != spec
    # the teacher's GPUs go to the teacher-outputs job; training keeps the student's
    assert teacher_resources(config, "llama31_8b")["gpu"] == 4
    config["training"]["pride"]["teacher_outputs"] = "online"
    with pytest.raises(ConfigError, match="precomputes no teacher outputs"):
        specs.build("pride_teacher_outputs", config, "llama31_8b", "direct", "chatgpt")
