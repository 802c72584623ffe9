"""Shared-prefix batched decoding (``llm.backends.local_decoding``) on a tiny random Llama: the
prefix is prefilled once, and every answer equals the prompt decoded alone with plain
``generate()`` (no cache copied in, no padding)."""

from __future__ import annotations

import pytest
import torch

from empathy_distill.llm.backends.local_decoding import (
    MIN_SHARED_PREFIX,
    batch_inputs,
    decode_batches,
    prefix_cache,
    shared_prefix_length,
)
from tests.tiny_lm import build_tiny

PARAGRAPH = (
    "Empathy is the ability to understand and share the feelings of another person. You are "
    "engaging in a conversation with a human. Respond in an empathetic manner. Context:"
)
SITUATIONS = (
    " I lost my job today.",
    " My sister is visiting next week and I have not seen her in years!",
    " The exam went badly.",
    " Our dog ran away last night and we searched for hours.",
    " I finally finished the marathon.",
)


@pytest.fixture(scope="module")
def tiny(dataset_csv):
    model, tokenizer = build_tiny(dataset_csv)
    model.eval()
    return model, tokenizer


def test_shared_prefix_length_counts_common_tokens_and_leaves_one_of_each_prompt():
    prefix = list(range(100, 100 + MIN_SHARED_PREFIX + 4))  # 20 shared tokens
    prompts = [[*prefix, 1, 2, 3], [*prefix, 1, 9], [*prefix, 7]]
    assert shared_prefix_length(prompts) == 20  # [1] is shared by two only
    assert shared_prefix_length([[*prefix, 5], prefix]) == 19  # the shorter keeps its last token
    assert shared_prefix_length([[*prefix, 1]]) == 0  # one prompt: nothing to share
    short = list(range(MIN_SHARED_PREFIX - 1))
    assert shared_prefix_length([[*short, 1], [*short, 2]]) == 0  # too short to be worth it


def test_batch_inputs_pad_between_prefix_and_rest_so_positions_match_the_unpadded_prompt():
    ids, mask = batch_inputs([[5, 6, 7, 8], [5, 6, 9]], prefix_length=2, pad_id=0)
    assert ids.tolist() == [[5, 6, 7, 8], [5, 6, 0, 9]]
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 1]]
    # generate() numbers positions by the mask's running sum: token 9 sits at position 2, as in
    # the unpadded prompt [5, 6, 9]
    assert (mask.cumsum(-1) - 1)[1, 3].item() == 2
    plain_ids, plain_mask = batch_inputs([[5, 6, 7], [9]], prefix_length=0, pad_id=0)
    assert plain_ids.tolist() == [[5, 6, 7], [0, 0, 9]]
    assert plain_mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_prefix_cache_and_padding_give_the_unpadded_prompts_next_token_logits(tiny):
    model, tokenizer = tiny
    prompts = [tokenizer(PARAGRAPH + s)["input_ids"] for s in SITUATIONS[:3]]
    length = shared_prefix_length(prompts)
    assert length >= MIN_SHARED_PREFIX
    ids, mask = batch_inputs(prompts, length, pad_id=0)
    past = prefix_cache(model, prompts[0][:length])
    past.batch_repeat_interleave(len(prompts))
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, length:]
    with torch.inference_mode():
        batched = model(
            input_ids=ids[:, length:],
            attention_mask=mask,
            position_ids=positions,
            past_key_values=past,
        ).logits[:, -1]
        for row, prompt in enumerate(prompts):
            alone = model(input_ids=torch.tensor([prompt])).logits[0, -1]
            torch.testing.assert_close(batched[row], alone, rtol=1e-4, atol=1e-5)


def test_batched_answers_equal_each_prompt_decoded_alone_and_the_prefix_is_prefilled_once(tiny):
    model, tokenizer = tiny
    prompts = [tokenizer(PARAGRAPH + s)["input_ids"] for s in SITUATIONS]
    length = shared_prefix_length(prompts)
    expected = []
    with torch.inference_mode():
        for prompt in prompts:
            out = model.generate(
                input_ids=torch.tensor([prompt]),
                max_new_tokens=12,
                do_sample=False,
                eos_token_id=[],
            )
            expected.append(out[0, len(prompt) :].tolist())
    assert len({tuple(e) for e in expected}) > 1  # the prompts are answered differently

    seen: list[int] = []
    hook = model.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(kw["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        got = decode_batches(
            model,
            prompts,
            batch_size=2,
            pad_id=0,
            max_new_tokens=12,
            do_sample=False,
            eos_token_id=[],
        )
    finally:
        hook.remove()
    assert got == expected
    # one forward of the prefix alone, then per batch one prefill of the rests and 11 steps
    widths = sorted((len(prompts[i]) - length for i in range(len(prompts))), reverse=True)
    batches = [widths[i : i + 2] for i in range(0, len(widths), 2)]
    assert seen == [length] + [n for b in batches for n in [max(b)] + [1] * 11]
