"""PRIDE (privileged-information distillation): losses, privileged path, trainer, grid opt-in.

Tiny random Llama students on CPU (``training.tiny_model``, built from the synthetic dataset);
every expected number is computed here independently of the code under test (TRL's generalized
JSD for the reverse KL, closed forms for MMD).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch

from empathy_distill.core.errors import ConfigError
from empathy_distill.core.prompts import Prompts
from empathy_distill.distillation.formats import sft_record, write_set
from empathy_distill.training.pride import attention, losses, privileged
from empathy_distill.training.pride.config import build_settings
from empathy_distill.training.pride.loop import load_models, read_examples, step_losses

from .conftest import REPO_ROOT
from .workflow_helpers import SNAKEMAKE, write_overlay

# --- losses ---------------------------------------------------------------------------------


def test_reverse_kl_is_zero_for_equal_models_and_matches_trl_otherwise() -> None:
    from trl.trainer.gkd_trainer import GKDTrainer

    torch.manual_seed(0)
    student = torch.randn(2, 5, 11)
    teacher = torch.randn(2, 5, 11)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.float)
    assert losses.reverse_kl(student, student.clone(), mask).item() == pytest.approx(0, abs=1e-7)
    value = losses.reverse_kl(student, teacher, mask).item()
    assert value > 0
    labels = torch.where(mask.bool(), 0, -100)
    # TRL: beta=1 is KL(student || teacher), mean over unmasked tokens
    expected = GKDTrainer.generalized_jsd_loss(student, teacher, labels=labels, beta=1.0)
    assert value == pytest.approx(expected.item(), rel=1e-5)
    # and by hand for one position
    p = torch.softmax(student[0, 0], -1)
    q = torch.softmax(teacher[0, 0], -1)
    one = losses.reverse_kl(student[:1, :1], teacher[:1, :1], torch.ones(1, 1)).item()
    assert one == pytest.approx(float((p * (p / q).log()).sum()), rel=1e-5)


def test_mmd_is_zero_for_identical_batches_and_matches_the_closed_form() -> None:
    torch.manual_seed(0)
    x = torch.randn(16, 8)
    assert losses.mmd_rbf(x, x.clone()).item() == pytest.approx(0, abs=1e-6)
    assert losses.mmd_rbf(x, x + 3.0).item() > 0.1
    # one point each, sigma^2 = 1: k(x,x) = k(y,y) = 1, k(x,y) = exp(-1/2)
    one = losses.mmd_rbf(torch.zeros(1, 1), torch.ones(1, 1), torch.tensor(1.0)).item()
    assert one == pytest.approx(2 - 2 * math.exp(-0.5), rel=1e-6)
    # the median heuristic on {0, 1}: the only off-diagonal squared distance is 1
    assert losses.median_bandwidth(torch.zeros(1, 1), torch.ones(1, 1)).item() == 1.0


def test_projection_is_identity_for_equal_widths_and_learned_otherwise() -> None:
    assert losses.FeatureProjection(8, 8).linear is None
    assert losses.FeatureProjection(8, 4)(torch.ones(3, 8)).shape == (3, 4)


def test_gate_anneals_linearly_to_zero_and_stays_there() -> None:
    values = [attention.gate_value(s, 8, 1.0, 0.5) for s in range(9)]
    assert values == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0, 0.0, 0.0]


# --- privileged prompt ----------------------------------------------------------------------

ROW = {
    "dialog_id": "d1",
    "emotion": "lonely",
    "plutchik": "sadness",
    "sentiment": "negative",
    "rating_human": "3",
    "situation": "My friends all moved away.",
    "speaker_uttr": "I eat dinner alone every night now.",
}


def test_teacher_sees_the_privileged_steps_and_the_student_prompt_unchanged() -> None:
    plain = Prompts().student_train(ROW["situation"], ROW["speaker_uttr"])
    teacher = privileged.teacher_prompt(plain, ROW)
    assert teacher.endswith(plain)
    for value in ("lonely", "sadness", "negative", "rated 3 of 3"):
        assert value in teacher
    assert "feelings" in teacher and "situation" in teacher and "respond" in teacher
    assert privileged.privileged_leaks(plain, ROW, plain) == []
    assert privileged.MARKER in privileged.privileged_leaks(teacher, ROW, plain)
    with pytest.raises(AssertionError, match="d1: the PRIDE student's input holds privileged"):
        privileged.check_student_input(teacher, ROW, plain)


# --- tiny models ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny student, a 6-example SFT set and train.csv with the privileged columns."""
    from empathy_distill.training.tiny_model import build_tiny_student

    root = tmp_path_factory.mktemp("pride")
    data = pd.read_csv(REPO_ROOT / "tests/data/synthetic_dataset.csv", dtype=str)
    train_csv = root / "train.csv"
    data.to_csv(train_csv, index=False)
    model = build_tiny_student(train_csv, root / "tiny")
    prompts = Prompts()
    rows = data.head(3).to_dict("records")
    records = [
        sft_record(r["dialog_id"], prompts.student_train(r["situation"], r["speaker_uttr"]), t)
        for r in rows
        for t in (r["response_human"], r["response_chatgpt_empathy"])
    ]
    write_set(records, root / "sft.json", "sft")
    # the loss and path mechanics are tested against the un-tuned base as teacher (the named
    # ablation `base`); the default SFT teacher: test_a_short_run_with_the_sft_teacher
    # with the teacher run online at every step (the ablation of precomputed teacher outputs,
    # tests/test_pride_teacher_outputs.py), so these tests exercise the teacher's forward pass
    config = {
        "students": {"tiny": {"model": "builtin:tiny", "template": "llama3"}},
        "training": {"pride": {"teacher": "base", "teacher_outputs": "online"}},
    }
    settings = build_settings(config, "tiny", "direct", "chatgpt")
    settings |= {
        "model_name_or_path": str(model),
        "teacher_model": str(model),
        "dataset": str(root / "sft.json"),
        "train_csv": str(train_csv),
        "cutoff_len": 1024,
        "logging_steps": 1,
    }
    return {"settings": settings, "root": root, "data": data, "rows": rows}


def test_student_inputs_are_the_plain_prompt_and_hold_no_privileged_field(job) -> None:
    from transformers import AutoTokenizer

    from empathy_distill.evaluation.generate import llamafactory_template

    settings = job["settings"]
    tokenizer = AutoTokenizer.from_pretrained(settings["model_name_or_path"])
    examples = read_examples(settings, tokenizer)
    template = llamafactory_template(tokenizer, "llama3")
    prompts = Prompts()
    assert len(examples) == 6
    for example, row in zip(examples, [r for r in job["rows"] for _ in (0, 1)], strict=True):
        plain = prompts.student_train(row["situation"], row["speaker_uttr"])
        # exactly what the answer rule encodes (generate.encode_finetuned)
        messages = [{"role": "user", "content": plain}, {"role": "assistant", "content": ""}]
        assert example.student_prompt == list(template.encode_oneturn(tokenizer, messages)[0])
        assert (
            privileged.privileged_leaks(tokenizer.decode(example.student_prompt), row, plain) == []
        )
        teacher_text = tokenizer.decode(example.teacher_prompt)
        assert row["emotion"] in teacher_text and privileged.MARKER in teacher_text


def test_gradients_reach_every_enabled_term_and_no_disabled_one(job) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from empathy_distill.training.pride.data import collate

    settings = job["settings"]
    tokenizer, student, _ = load_models(settings, "cpu", torch.float32)
    batch = collate(read_examples(settings, tokenizer)[:2], tokenizer.pad_token_id)
    # a narrower teacher with the same vocabulary: the MMD term goes through the projection
    width = student.get_base_model().config.hidden_size
    narrow = (
        LlamaForCausalLM(
            LlamaConfig(
                vocab_size=student.get_base_model().config.vocab_size,
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=2,
                num_key_value_heads=1,
            )
        )
        .eval()
        .requires_grad_(False)
    )
    block = attention.PrivilegedCrossAttention(width, 4)
    projection = losses.FeatureProjection(width, 32)
    lora_b = [p for n, p in student.named_parameters() if "lora_B" in n]
    for term in ("ce", "reverse_kl", "mmd"):
        weights = {"ce": 0.0, "reverse_kl": 0.0, "mmd": 0.0, term: 1.0}
        for gate in (0.0, 1.0):
            student.zero_grad()
            block.zero_grad()
            projection.zero_grad()
            terms = step_losses(
                student,
                batch,
                weights,
                teacher=narrow,
                block=block,
                projection=projection,
                gate=gate,
            )
            assert set(terms) == {term, "total"}
            terms["total"].backward()
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b), term
            reached = [p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters()]
            assert any(reached) == (gate != 0.0), (term, gate)
            got = projection.linear.weight.grad
            assert (got is not None and got.abs().sum() > 0) == (term == "mmd")
    # with the teacher = the student's base model, reverse KL is > 0 only from the privileged
    # prompt (LoRA B starts at 0, so the weights are equal)
    terms = step_losses(student, batch, {"reverse_kl": 1.0})
    assert terms["reverse_kl"].item() > 0


def test_a_short_run_lowers_the_loss_and_leaves_a_plain_lora_adapter(job) -> None:
    from safetensors.torch import load_file

    from empathy_distill.evaluation.generate import GenerationSettings, answer_test
    from empathy_distill.training.pride_trainer import TRAINER

    settings = {
        **job["settings"],
        "max_steps": 12,
        "learning_rate": 5e-3,
        "per_device_train_batch_size": 2,
        "anneal_fraction": 0.5,
    }
    out = job["root"] / "out"
    TRAINER.train(settings, out, 1)
    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "train_results.json",
        "training_loss.png",
    ):
        assert (out / name).is_file(), name
    log = json.loads((out / "pride_log.json").read_text())
    assert [h["gate"] for h in log][:2] == [1.0, pytest.approx(5 / 6)]
    assert log[-1]["gate"] == 0.0
    # the same examples each epoch: the first and last epochs (3 steps each) compare like for like
    first = sum(h["total"] for h in log[:3])
    last = sum(h["total"] for h in log[-3:])
    assert last < first
    results = json.loads((out / "train_results.json").read_text())
    assert results["pride"]["final_gate"] == 0.0
    # the adapter holds LoRA weights of the base model only: no privileged path, no projection
    keys = load_file(out / "adapter_model.safetensors")
    assert keys and all("lora_" in k for k in keys)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == settings["model_name_or_path"]
    # answering (the answer rule's function) with the adapter: plain prompts, as any student
    test = job["data"].head(2)
    gen = GenerationSettings(8, 2, False, 1.0, 1.0, 0, "transformers", "auto")
    answers = answer_test(test, settings["model_name_or_path"], gen, Prompts(), "llama3", out)
    plain = answer_test(test, settings["model_name_or_path"], gen, Prompts(), "llama3")
    assert [a["prompt"] for a in answers] == [a["prompt"] for a in plain]
    for answer, row in zip(answers, test.to_dict("records"), strict=True):
        public = Prompts().student_train(row["situation"], row["speaker_uttr"])
        assert privileged.privileged_leaks(answer["prompt"], row, public) == []


def test_a_short_run_with_the_sft_teacher(job) -> None:
    """The default teacher: the student's base with the configuration's SFT adapter merged. A
    run records it, and leaves out the privileged fields that do not vary in the set."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from empathy_distill.training.pride.loop import train_in_memory

    base = job["settings"]["model_name_or_path"]
    sft = job["root"] / "sft_adapter"
    lora = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(base), lora).save_pretrained(sft)
    settings = {
        **job["settings"],
        "teacher_mode": "sft",
        "teacher_adapter": str(sft),
        "max_steps": 4,
        "per_device_train_batch_size": 2,
    }
    out = job["root"] / "sft_teacher"
    train_in_memory(settings, out)
    results = json.loads((out / "train_results.json").read_text())["pride"]
    assert results["teacher_mode"] == "sft"
    rows = {r["dialog_id"]: r for r in job["rows"]}
    varying = [f for f in privileged.PRIVILEGED_FIELDS if len({rows[d][f] for d in rows}) > 1]
    assert results["privileged_fields"] == varying
    log = json.loads((out / "pride_log.json").read_text())
    # logged after step 1's update: opened from 0 by about one learning-rate step
    assert 0 < log[0]["learned_gate"] < 10 * settings["learning_rate"]


def test_a_short_run_with_the_earlier_defaults_the_named_ablation(job) -> None:
    """workflow/profiles/cpu-small/pride-earlier.yaml: the base as teacher, run online, and the
    gate open at full strength (gate_init null: no learned gate, its factor 1). Its first run in
    cpu-small failed at the first log line (the fixed factor has no .detach())."""
    from empathy_distill.training.pride.loop import train_in_memory

    settings = {
        **job["settings"],
        "teacher_mode": "base",
        "teacher_outputs": "online",
        "gate_init": None,
        "max_steps": 2,
        "per_device_train_batch_size": 2,
    }
    out = job["root"] / "earlier_defaults"
    train_in_memory(settings, out)
    log = json.loads((out / "pride_log.json").read_text())
    assert [h["learned_gate"] for h in log] == [1.0, 1.0]
    results = json.loads((out / "train_results.json").read_text())["pride"]
    assert results["final_learned_gate"] == 1.0


def test_the_trained_student_in_memory_answers_as_base_plus_the_saved_adapter(job) -> None:
    """Greedy answers of the student as training leaves it (LoRA unmerged, the privileged path
    detached) equal those of the answer rule's model: the base + the saved adapter, merged."""
    from empathy_distill.evaluation.generate import GenerationSettings, answer_test
    from empathy_distill.training.pride.loop import train_in_memory

    settings = {
        **job["settings"],
        "max_steps": 6,
        "learning_rate": 5e-2,  # large steps: the adapter must change the answers
        "per_device_train_batch_size": 2,
        "anneal_fraction": 0.5,
    }
    out = job["root"] / "in_memory"
    student, tokenizer = train_in_memory(settings, out)
    student.eval()
    test = job["data"].head(4)
    gen = GenerationSettings(12, 4, False, 1.0, 1.0, 0, "transformers", "float32")
    base = settings["model_name_or_path"]
    in_memory = answer_test(
        test, base, gen, Prompts(), "llama3", model=student, tokenizer=tokenizer
    )
    saved = answer_test(test, base, gen, Prompts(), "llama3", out)
    assert [a["answer"] for a in in_memory] == [a["answer"] for a in saved]
    assert [a["prompt"] for a in in_memory] == [a["prompt"] for a in saved]
    # and the comparison has teeth: the base model alone answers otherwise
    with student.disable_adapter():
        plain = answer_test(
            test, base, gen, Prompts(), "llama3", model=student, tokenizer=tokenizer
        )
    assert [a["answer"] for a in plain] != [a["answer"] for a in saved]


def test_a_teacher_spread_by_device_map_gives_the_base_models_terms(job, monkeypatch) -> None:
    """teacher_device_map: auto (a 70B teacher over several GPUs; here the CPU) loads the
    teacher through accelerate's device map, and a teacher with the student's base weights
    gives the same terms as the student's own base (adapter off)."""
    import shutil

    from empathy_distill.training.pride.data import collate

    copy = job["root"] / "teacher_copy"
    if not copy.exists():
        shutil.copytree(job["settings"]["model_name_or_path"], copy)
    import transformers

    loads: list[dict] = []
    real = transformers.AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        loads.append({"model": args[0], "device_map": kwargs.get("device_map")})
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    settings = {**job["settings"], "teacher_model": str(copy), "teacher_device_map": "auto"}
    tokenizer, student, teacher = load_models(settings, "cpu", torch.float32)
    assert loads == [
        {"model": settings["model_name_or_path"], "device_map": None},
        {"model": str(copy), "device_map": "auto"},
    ]
    assert teacher is not None and {p.device.type for p in teacher.parameters()} == {"cpu"}
    batch = collate(read_examples(settings, tokenizer)[:2], tokenizer.pad_token_id)
    weights = {"ce": 1.0, "reverse_kl": 1.0, "mmd": 0.1}
    spread = step_losses(student, batch, weights, teacher=teacher)
    own = step_losses(student, batch, weights)
    for term in ("ce", "reverse_kl", "mmd", "total"):
        assert spread[term].item() == pytest.approx(own[term].item(), rel=1e-5, abs=1e-7), term


def test_a_tokenizer_mismatch_is_refused_before_any_model_loads(job, monkeypatch) -> None:
    import transformers

    from empathy_distill.training.pride.loop import train
    from empathy_distill.training.tiny_model import build_model, iter_texts, train_tokenizer

    other = job["root"] / "other_teacher"
    tokenizer = train_tokenizer(iter_texts(job["settings"]["train_csv"]), vocab_size=300)
    build_model(tokenizer).save_pretrained(other)
    tokenizer.save_pretrained(other)

    def refuse(*_args, **_kwargs):
        raise AssertionError("a model or tokenizer was loaded before the tokenizer check")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)
    settings = {**job["settings"], "teacher": "other", "teacher_model": str(other)}
    with pytest.raises(
        ConfigError, match=r"teacher 'other' .*other_teacher.* do not share a tokenizer"
    ):
        train(settings, job["root"] / "refused")
    assert not (job["root"] / "refused").exists()


def test_unknown_pride_keys_and_teachers_are_named() -> None:
    config = {
        "students": {"tiny": {"model": "builtin:tiny", "template": "llama3"}},
        "training": {"pride": {"weight": {}}},
    }
    with pytest.raises(ConfigError, match=r"training\.pride: unknown PRIDE key.*weight"):
        build_settings(config, "tiny", "direct", "chatgpt")
    config["training"]["pride"] = {"teacher": "big"}
    with pytest.raises(ConfigError, match="teacher: 'big' is not defined under students"):
        build_settings(config, "tiny", "direct", "chatgpt")


# --- the grid -------------------------------------------------------------------------------


def _planned(workdir: Path, overlay: dict) -> tuple[list[str], str]:
    """Rule blocks and output of a dry run of the demo profile's grid plus ``overlay``."""
    workdir.mkdir(parents=True)
    dataset = {"dataset": {"path": str(REPO_ROOT / "tests/data/synthetic_dataset.csv")}}
    overlay_path = write_overlay(workdir, {**dataset, **overlay})
    configs = [REPO_ROOT / "config.yaml", REPO_ROOT / "workflow/profiles/demo/config.demo.yaml"]
    command = [*SNAKEMAKE, "-s", str(REPO_ROOT / "Snakefile"), "-d", str(workdir), "-n"]
    command += ["--configfile", *map(str, configs), str(overlay_path)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "workflow")}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output.split("\nrule "), output


def job_stats(output: str) -> str:
    """The dry run's table of jobs per rule (no timestamps)."""
    return output.split("Job stats:")[1].split("\n\n")[0]


def test_pride_is_opt_in_on_the_demo_grid(tmp_path: Path) -> None:
    """The demo lists the paper's methods itself (config.yaml's default adds PRIDE)."""
    blocks, default_out = _planned(tmp_path / "default", {})
    assert not any("stage=pride" in b for b in blocks)
    default_total = default_out.split("Job stats:")[1].split("total")[1].split()[0]
    # the paper's selection spelled out plans the same jobs (the plan before PRIDE existed)
    _, explicit = _planned(tmp_path / "explicit", {"grid": {"methods": ["sft", "dpo"]}})
    assert job_stats(explicit) == job_stats(default_out)
    blocks, out = _planned(tmp_path / "pride", {"grid": {"methods": ["sft", "dpo", "pride"]}})
    assert not any(b.startswith("train:") and "stage=pride" in b for b in blocks)
    train = [b for b in blocks if b.startswith("train_pride:") and "stage=pride" in b]
    assert len(train) == 3  # demo: 1 student x 3 data configurations
    for block in train:
        inputs = block.split("input:", 1)[1].splitlines()[0]
        assert "/sft.json" in inputs and "results/data/train.csv" in inputs
        # the teacher's outputs, computed once (pride_teacher_outputs); training loads no teacher
        assert "results/pride/teacher_outputs/" in inputs and "/sft/adapter_model" not in inputs
    outputs = [b for b in blocks if b.startswith("pride_teacher_outputs:")]
    assert len(outputs) == len(train)
    for block in outputs:
        # the default teacher is the configuration's SFT model: it waits for its adapter
        # (the student itself still starts from the base model: build_settings)
        assert "/sft/adapter_model" in block.split("input:", 1)[1].splitlines()[0]
    answers = [b for b in blocks if b.startswith("answer:")]
    assert sum("/pride.jsonl" in b.split("output:", 1)[1].splitlines()[0] for b in answers) == 3
    assert int(out.split("Job stats:")[1].split("total")[1].split()[0]) > int(default_total)
