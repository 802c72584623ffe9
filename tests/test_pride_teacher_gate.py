"""PRIDE's teacher, privileged fields and gate (issue: PRIDE as the abstract means it).

- The default teacher is the configuration's SFT model, never the un-tuned base; ``base`` is
  an ablation by name; ``null`` is refused.
- A privileged field that is constant over the training set is left out of the teacher's
  prompt, and the rest of the prompt is the text it always was.
- The privileged path starts closed: at step 0 the student's logits with the block equal those
  without it, exactly; its new parameters keep float32 master weights under a bf16 student.

Models are tiny random Llamas built here; expected values come from peft's and torch's own
forward passes, not from the code under test.
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path

import pytest
import torch

from empathy_distill.core.errors import ConfigError
from empathy_distill.training.pride import attention, privileged
from empathy_distill.training.pride.config import build_settings, merged_options
from empathy_distill.training.pride.loop import load_models

CONFIG = {"students": {"tiny": {"model": "builtin:tiny", "template": "llama3"}}}


def tiny_llama(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config).to(dtype).eval()


# --- the teacher ----------------------------------------------------------------------------


def test_the_default_teacher_is_the_configurations_sft_model() -> None:
    settings = build_settings(CONFIG, "tiny", "improve_human", "naive_prompt")
    assert settings["teacher_mode"] == "sft"
    assert settings["teacher_adapter"] == "results/models/tiny/improve_human/naive_prompt/sft"
    assert settings["teacher_model"] == settings["model_name_or_path"]


def test_the_base_teacher_is_an_ablation_by_name_and_null_is_refused() -> None:
    config = copy.deepcopy(CONFIG) | {"training": {"pride": {"teacher": "base"}}}
    settings = build_settings(config, "tiny", "direct", "chatgpt")
    assert settings["teacher_mode"] == "base" and settings["teacher_adapter"] is None
    config["training"]["pride"]["teacher"] = None
    with pytest.raises(ConfigError, match=r"training\.pride \(student tiny\)\.teacher: null"):
        merged_options(config, "tiny")


def test_the_sft_teacher_is_the_base_with_the_sft_adapter_merged(tmp_path: Path) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    base_dir, adapter_dir = tmp_path / "base", tmp_path / "sft"
    tiny_llama().save_pretrained(base_dir)
    vocab = {f"t{i}": i for i in range(64)}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0")), pad_token="t0"
    )
    tokenizer.save_pretrained(base_dir)
    # an SFT adapter whose B matrices are not zero, so it really changes the model
    lora = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(tiny_llama(), lora).save_pretrained(adapter_dir)

    settings = {
        "model_name_or_path": str(base_dir),
        "teacher_model": str(base_dir),
        "teacher_adapter": str(adapter_dir),
        "lora_rank": 2,
        "lora_alpha": 4,
        "lora_dropout": 0.0,
    }
    _, student, teacher = load_models(settings, "cpu", torch.float32)
    ids = torch.tensor([[1, 5, 9, 3, 7]])
    with torch.no_grad():
        expected = PeftModel.from_pretrained(tiny_llama(), adapter_dir)(input_ids=ids).logits
        base = tiny_llama()(input_ids=ids).logits
        got = teacher(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, base, atol=1e-3)
    assert not any(p.requires_grad for p in teacher.parameters())
    # the student is the un-merged base with a fresh LoRA: its own weights are the base's
    with torch.no_grad(), student.disable_adapter():
        assert torch.allclose(student(input_ids=ids).logits, base, atol=1e-6)


# --- privileged fields ----------------------------------------------------------------------

ROWS = [
    {"dialog_id": "a", "emotion": "lonely", "plutchik": "sadness", "sentiment": "negative"},
    {"dialog_id": "b", "emotion": "proud", "plutchik": "joy", "sentiment": "positive"},
]


def test_a_field_constant_over_the_set_is_left_out_and_the_rest_is_unchanged() -> None:
    rows = [r | {"rating_human": "3"} for r in ROWS]
    assert privileged.constant_fields(rows) == {"rating_human": "3"}
    assert privileged.constant_fields(rows[:1]) == {}  # one dialogue: nothing to compare
    kept = ("emotion", "plutchik", "sentiment")
    block = privileged.privileged_block(rows[0], None, kept)
    assert "rated" not in block
    assert block.endswith("Step 3, respond: give only your reply.")
    # every field kept: the text the teacher has always seen, written out here by hand
    assert privileged.privileged_block(rows[0]) == (
        "Privileged notes (training only): think through these steps before you respond.\n"
        "Step 1, the speaker's feelings: they feel lonely (Plutchik: sadness; sentiment: "
        "negative).\n"
        "Step 2, the situation: what happened to them and what they need from a listener.\n"
        "Step 3, respond: a human listener's reply to this was rated 3 of 3 for empathy; give "
        "only your reply."
    )
    # a dropped field still counts as a leak in the student's input
    assert "rating_human=3" in privileged.privileged_leaks("rated 3 of 3", rows[0], "")


# --- the gate -------------------------------------------------------------------------------


def _logits(model, block, gate: float) -> torch.Tensor:
    ids = torch.tensor([[1, 4, 8, 2, 9, 3]])
    priv_ids = torch.tensor([[5, 6, 7, 0]])
    priv_mask = torch.tensor([[1, 1, 1, 0]])
    with torch.no_grad(), attention.multi_source(model, None, None, None, 0.0) as tap:
        model(input_ids=priv_ids, attention_mask=priv_mask)
    encoded = tap.features
    with attention.multi_source(model, block, encoded, priv_mask, gate):
        return model(input_ids=ids).logits


def test_at_step_0_the_block_changes_nothing_and_the_gate_then_opens() -> None:
    model = tiny_llama()
    plain = _logits(model, None, 0.0).detach()
    block = attention.PrivilegedCrossAttention(32, 4)  # gate_init 0: closed
    with_block = _logits(model, block, attention.gate_value(0, 10, 1.0, 0.75))
    assert torch.equal(with_block.detach(), plain)
    # the loss reaches the learned gate, so it can open (tanh'(0) = 1)
    with_block.logsumexp(-1).sum().backward()
    assert block.alpha.grad is not None and block.alpha.grad.abs().item() > 0
    # the ablation (no learned gate) perturbs the first step's logits
    open_block = attention.PrivilegedCrossAttention(32, 4, gate_init=None)
    assert not torch.allclose(_logits(model, open_block, 1.0).detach(), plain, atol=1e-4)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "step"])
def test_every_schedule_starts_at_gate_start_and_ends_at_exactly_zero(schedule) -> None:
    values = [attention.gate_value(s, 8, 0.5, 0.5, schedule) for s in range(9)]
    assert values[0] == 0.5 and values[4:] == [0.0] * 5
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_new_parameters_keep_float32_master_weights_under_a_bf16_student() -> None:
    model = tiny_llama(torch.bfloat16)
    block = attention.PrivilegedCrossAttention(32, 4, gate_init=0.5).to(torch.float32)
    out = _logits(model, block, 1.0)
    assert out.dtype == torch.bfloat16
    out.float().logsumexp(-1).sum().backward()
    weight = block.attention.in_proj_weight
    assert weight.dtype == torch.float32 and weight.grad.dtype == torch.float32
    before = weight.detach().clone()
    torch.optim.AdamW(block.parameters(), lr=5e-5, weight_decay=0.0).step()
    moved = (weight.detach() - before).abs()
    # AdamW's first step moves a weight by lr * g / (|g| + eps): about lr wherever |g| >> eps
    # (1e-8); in bf16 (8-bit mantissa) the same update of a weight near 0.1 rounds to nothing
    assert moved[weight.grad.abs() > 1e-6].min().item() == pytest.approx(5e-5, rel=0.02)
    probe = torch.tensor(0.1, dtype=torch.bfloat16)
    assert probe + torch.tensor(5e-5, dtype=torch.bfloat16) == probe
