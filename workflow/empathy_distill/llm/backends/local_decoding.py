"""Batched decoding with a local Hugging Face model, sharing the prompts' common prefix.

WHY: on a CPU, prefill is a large share of generation. The paper's student prompt opens with the
same 230-word paragraph on empathy for every dialogue (274 of SmolLM2's ~335 prompt tokens
with its chat template), and a scorer's or teacher's instructions repeat the same way. That
prefix's keys and values are computed once and copied into every batch instead of once per
prompt. Prompts are sorted by length so a batch holds similar lengths (little padding). Both the
students' answers (``evaluation.generate``) and the ``transformers`` LLM backend (teacher,
scorers) decode here.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from .cpu_attention import use_native_gqa

#: A shared prompt prefix shorter than this is prefilled with each batch (not worth a cache).
MIN_SHARED_PREFIX = 16


def shared_prefix_length(prompt_ids: Sequence[Sequence[int]]) -> int:
    """Tokens every prompt starts with, leaving each prompt at least one token of its own
    (generate() needs one uncached token per row); 0 below ``MIN_SHARED_PREFIX``."""
    if len(prompt_ids) < 2:
        return 0
    shortest = min(len(ids) for ids in prompt_ids)
    first = prompt_ids[0]
    length = 0
    while length < shortest - 1 and all(ids[length] == first[length] for ids in prompt_ids):
        length += 1
    return length if length >= MIN_SHARED_PREFIX else 0


def prefix_cache(model: Any, prefix: Sequence[int]) -> Any:
    """The KV cache of ``prefix`` alone (batch 1), to be copied into every batch."""
    import torch

    with torch.inference_mode():
        out = model(input_ids=torch.tensor([list(prefix)], device=model.device), use_cache=True)
    return out.past_key_values


def batch_inputs(
    chunk: Sequence[Sequence[int]], prefix_length: int, pad_id: int
) -> tuple[Any, Any]:
    """(input_ids, attention_mask): the shared prefix, then each prompt's rest padded on its left.

    With no shared prefix this is plain left padding. With one, the padding sits between the
    prefix and the rest, masked out; generate() numbers positions by the attention mask's running
    sum, so every token keeps the position it has in the unpadded prompt.
    """
    import torch

    rests = [ids[prefix_length:] for ids in chunk]
    width = prefix_length + max(len(rest) for rest in rests)
    input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(chunk), width), dtype=torch.long)
    if prefix_length:
        input_ids[:, :prefix_length] = torch.tensor(list(chunk[0][:prefix_length]))
        attention[:, :prefix_length] = 1
    for row, rest in enumerate(rests):
        input_ids[row, width - len(rest) :] = torch.tensor(list(rest), dtype=torch.long)
        attention[row, width - len(rest) :] = 1
    return input_ids, attention


def decode_batches(
    model: Any,
    prompt_ids: Sequence[Sequence[int]],
    batch_size: int,
    pad_id: int,
    before_batch: Any = None,
    **generate_kwargs: Any,
) -> list[list[int]]:
    """Every new token generate() returns per prompt (padding after a stop included), in input
    order. ``before_batch(indices)`` runs before each batch (e.g. to seed its sampling);
    ``generate_kwargs`` go to ``model.generate`` unchanged.
    """
    import torch

    use_native_gqa(model)
    order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))
    prefix_length = shared_prefix_length(prompt_ids)
    shared = prefix_cache(model, prompt_ids[0][:prefix_length]) if prefix_length else None
    results: list[list[int]] = [[] for _ in prompt_ids]
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        input_ids, attention = batch_inputs([prompt_ids[i] for i in chunk], prefix_length, pad_id)
        cached: dict[str, Any] = {}
        if shared is not None:
            past = copy.deepcopy(shared)
            past.batch_repeat_interleave(len(chunk))
            cached["past_key_values"] = past
        if before_batch is not None:
            before_batch(chunk)
        with torch.inference_mode():
            output = model.generate(
                input_ids=input_ids.to(model.device),
                attention_mask=attention.to(model.device),
                pad_token_id=pad_id,
                use_cache=True,
                **cached,
                **generate_kwargs,
            )
        for row, i in enumerate(chunk):
            results[i] = output[row, input_ids.shape[1] :].tolist()
    return results
