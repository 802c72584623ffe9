"""Grouped-query attention without copying the KV cache, for generation on CPU.

transformers' SDPA path repeats every key/value head to the number of query heads whenever an
attention mask is present (always, with left-padded batches), because CUDA's fused kernels fall
back to the math kernel for ``enable_gqa`` with a mask. On CPU there is no such trade-off: the
repeat is a full copy of the KV cache per layer and decode step (a fifth of the tiny student's
batched generation time, measured with torch.profiler; a real 8B student with 32 query / 8 KV
heads copies 4x its cache). Here SDPA gets ``enable_gqa=True`` instead; the results are bitwise
identical (tests/test_generate.py).
"""

from __future__ import annotations

from typing import Any

NAME = "sdpa_native_gqa"


def _attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **_: Any,
) -> tuple[Any, None]:
    import torch

    causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
    causal = bool(query.shape[2] > 1 and attention_mask is None and causal)
    output = torch.nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=dropout,
        scale=scaling,
        is_causal=causal,
        enable_gqa=True,
    )
    return output.transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, _attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def use_native_gqa(model: Any) -> bool:
    """Switch a CPU model that uses SDPA with grouped KV heads to the copy-free path.

    Returns whether it switched. Other devices, attention implementations and models without
    grouped heads are left alone.
    """
    config = model.config
    heads = getattr(config, "num_attention_heads", None)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    if model.device.type != "cpu" or not heads or kv_heads == heads:
        return False
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    _register()
    model.set_attn_implementation(NAME)
    return True
