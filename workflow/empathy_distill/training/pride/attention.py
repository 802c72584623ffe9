"""Multi-source attention: the student also attends to the encoded privileged text in training.

The path is one gated cross-attention block after the student's last layer (on the output of
its final norm, i.e. what the LM head reads):

    h' = h + schedule(step) * tanh(alpha) * CrossAttention(query=h, key=value=E_priv)

``E_priv`` is the privileged block (:mod:`.privileged`) encoded by the student's own frozen base
model (adapter disabled, no gradient): the student reads the privileged information in its own
representation space.

The gate has two factors. ``tanh(alpha)`` is learned and starts closed (``alpha`` = ``gate_init``,
0 by default), as gated cross-attention usually does (Flamingo, Alayrac et al. 2022): at step 0
the block adds exactly nothing, so its random weights cannot perturb the student's first steps,
and the path opens only as far as the loss asks. ``schedule(step)`` is fixed: it starts at
``gate_start`` and reaches exactly 0 at ``anneal_fraction`` of the steps (``gate_schedule``:
linear, cosine or step) and stays 0 after, so the LoRA adapter spends the last part of training
without the path and learns to do without it.

The block's weights (and the MMD projection's) are new parameters: they stay float32 (master
weights) even when the student is bf16, and the block runs under bf16 autocast there, so an
AdamW update of lr x 1 is not rounded away by bf16's 8-bit mantissa.

At the end the gate is 0, the hook is removed and the block is not saved: the adapter that is
written is an ordinary LoRA adapter over the base model, and inference (the answer rule, LLaMA-
Factory's template, the plain prompt) has no privileged input to give and no path to give it to.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch

from .config import GATE_SCHEDULES


def gate_value(
    step: int,
    total_steps: int,
    gate_start: float,
    anneal_fraction: float,
    schedule: str = "linear",
) -> float:
    """The schedule's factor at optimizer ``step`` (0-based): from ``gate_start`` to 0 at
    ``anneal_fraction`` of the steps (linearly, by a half cosine, or held then dropped), then 0."""
    end = max(1, round(anneal_fraction * total_steps))
    if step >= end:
        return 0.0
    if schedule == "linear":
        return gate_start * (1 - step / end)
    if schedule == "cosine":
        return gate_start * 0.5 * (1 + math.cos(math.pi * step / end))
    if schedule == "step":
        return gate_start
    raise ValueError(f"gate schedule {schedule!r}: expected one of {', '.join(GATE_SCHEDULES)}")


def final_norm(model: torch.nn.Module) -> torch.nn.Module:
    """The last norm of a decoder-only transformers model (PEFT-wrapped or not)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder()
    norm = getattr(decoder, "norm", None)
    if norm is None:
        raise TypeError(f"{type(base).__name__}: no final norm (decoder.norm) to attach to")
    return norm


class PrivilegedCrossAttention(torch.nn.Module):
    """Cross-attention from the student's hidden states to the privileged encoding, times its
    learned gate ``tanh(alpha)``.

    Create it in float32 whatever the student's dtype (its weights are the master copy); a bf16
    or fp16 input runs it under autocast to that dtype, and its output has the input's dtype.
    ``gate_init`` None: no learned gate (factor 1, the block open from the first step with random
    weights): the earlier design, kept as an ablation.
    """

    def __init__(self, width: int, heads: int, gate_init: float | None = 0.0) -> None:
        super().__init__()
        self.attention = torch.nn.MultiheadAttention(width, heads, batch_first=True, bias=False)
        self.alpha = (
            None if gate_init is None else torch.nn.Parameter(torch.tensor(float(gate_init)))
        )

    def gate(self) -> torch.Tensor | float:
        """The learned factor: tanh(alpha), or 1 without a learned gate."""
        return 1.0 if self.alpha is None else torch.tanh(self.alpha)

    def forward(
        self, hidden: torch.Tensor, privileged: torch.Tensor, privileged_mask: torch.Tensor
    ) -> torch.Tensor:
        """``privileged_mask``: (batch, n_priv), True at real tokens."""
        low = hidden.dtype in (torch.bfloat16, torch.float16)
        weights = self.attention.in_proj_weight.dtype
        context = (
            torch.autocast(device_type=hidden.device.type, dtype=hidden.dtype)
            if low and weights == torch.float32
            else nullcontext()
        )
        with context:
            out, _ = self.attention(
                hidden if low else hidden.to(weights),
                privileged if low else privileged.to(weights),
                privileged if low else privileged.to(weights),
                key_padding_mask=~privileged_mask.bool(),
                need_weights=False,
            )
        return (self.gate() * out.float()).to(hidden.dtype)


class FeatureTap:
    """Holds the last hidden states the final norm produced (after the privileged path)."""

    def __init__(self) -> None:
        self.features: torch.Tensor | None = None


@contextmanager
def multi_source(
    model: torch.nn.Module,
    block: PrivilegedCrossAttention | None,
    privileged: torch.Tensor | None,
    privileged_mask: torch.Tensor | None,
    gate: float,
) -> Iterator[FeatureTap]:
    """Run ``model`` with the privileged path at weight ``gate`` (0 or no block: no path).

    Yields a tap with the final hidden states of the forward pass (for the MMD term).
    """
    tap = FeatureTap()
    use_path = block is not None and privileged is not None and gate != 0.0

    def hook(_module: torch.nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if use_path:
            output = output + gate * block(output, privileged, privileged_mask)
        tap.features = output
        return output

    handle = final_norm(model).register_forward_hook(hook)
    try:
        yield tap
    finally:
        handle.remove()
