"""Multi-source attention: the student also attends to the encoded privileged text in training.

The path is one gated cross-attention block after the student's last layer (on the output of
its final norm, i.e. what the LM head reads):

    h' = h + gate(step) * CrossAttention(query=h, key=value=E_priv)

``E_priv`` is the privileged block (:mod:`.privileged`) encoded by the student's own frozen base
model (adapter disabled, no gradient): the student reads the privileged information in its own
representation space. ``gate(step)`` is a schedule, not a learned value: it falls linearly from
``gate_start`` to exactly 0 at ``anneal_fraction`` of the steps and stays 0 after, so the LoRA
adapter spends the last part of training without the path and learns to do without it.

At the end the gate is 0, the hook is removed and the block is not saved: the adapter that is
written is an ordinary LoRA adapter over the base model, and inference (the answer rule, LLaMA-
Factory's template, the plain prompt) has no privileged input to give and no path to give it to.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def gate_value(step: int, total_steps: int, gate_start: float, anneal_fraction: float) -> float:
    """The path's weight at optimizer ``step`` (0-based): linear to 0, then 0."""
    end = max(1, round(anneal_fraction * total_steps))
    return 0.0 if step >= end else gate_start * (1 - step / end)


def final_norm(model: torch.nn.Module) -> torch.nn.Module:
    """The last norm of a decoder-only transformers model (PEFT-wrapped or not)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder()
    norm = getattr(decoder, "norm", None)
    if norm is None:
        raise TypeError(f"{type(base).__name__}: no final norm (decoder.norm) to attach to")
    return norm


class PrivilegedCrossAttention(torch.nn.Module):
    """Cross-attention from the student's hidden states to the privileged encoding."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attention = torch.nn.MultiheadAttention(width, heads, batch_first=True, bias=False)

    def forward(
        self, hidden: torch.Tensor, privileged: torch.Tensor, privileged_mask: torch.Tensor
    ) -> torch.Tensor:
        """``privileged_mask``: (batch, n_priv), True at real tokens."""
        out, _ = self.attention(
            hidden.to(self.attention.in_proj_weight.dtype),
            privileged,
            privileged,
            key_padding_mask=~privileged_mask.bool(),
            need_weights=False,
        )
        return out.to(hidden.dtype)


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
