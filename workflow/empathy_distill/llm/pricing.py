"""Prices and token estimates: what a request will cost before it is sent.

Token counts before sending are an approximation: no tokenizer can be downloaded offline
(tiktoken fetches its BPE files from the network), so a text counts ``ceil(chars / 4)`` tokens,
OpenAI's published rule of thumb for English, plus the chat overhead of OpenAI's cookbook
(3 tokens per message and 3 to prime the reply). Costs of answers received use the provider's
reported usage, never the estimate.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import LLMError
from .request import ChatRequest

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3
#: Backends that run on the user's own hardware: no price needed, cost 0.
FREE_BACKENDS = ("openai_compatible", "transformers")
MODES = ("realtime", "batch")


def approx_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def approx_request_tokens(request: ChatRequest) -> int:
    """Estimated input tokens of a chat request (see module docstring)."""
    return (
        sum(approx_tokens(m.content) + TOKENS_PER_MESSAGE for m in request.messages)
        + TOKENS_PER_REPLY
    )


@dataclass(frozen=True)
class Price:
    """USD per one million tokens."""

    input: float
    output: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


FREE = Price(0.0, 0.0)


class PriceTable:
    """``resources/prices.yaml``: ``models: {name: {realtime: {input, output}, batch: {...}}}``
    and ``retired: {name: shutdown date}`` (models their provider has shut down)."""

    def __init__(
        self,
        models: dict[str, dict[str, Price]],
        source: str = "<memory>",
        retired: dict[str, str] | None = None,
    ) -> None:
        self.models = models
        self.source = source
        self.retired = dict(retired or {})

    @classmethod
    def load(cls, path: str | Path) -> PriceTable:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError as exc:
            raise LLMError(f"price table not found: {path}") from exc
        models: dict[str, dict[str, Price]] = {}
        for name, modes in (raw.get("models") or {}).items():
            models[str(name)] = {}
            for mode, price in (modes or {}).items():
                if mode not in MODES or not isinstance(price, dict):
                    raise LLMError(
                        f"{path}: models.{name}.{mode} must be one of {MODES} with input/output"
                    )
                try:
                    models[str(name)][mode] = Price(float(price["input"]), float(price["output"]))
                except (KeyError, TypeError, ValueError) as exc:
                    raise LLMError(
                        f"{path}: models.{name}.{mode} needs numeric 'input' and 'output'"
                        " (USD per 1M tokens)"
                    ) from exc
        return cls(models, str(path), _retired(raw.get("retired"), path))

    def price(self, backend: str, model: str, mode: str) -> Price:
        """Price of ``model`` in ``mode``; a paid model missing from the table is an error."""
        if backend in FREE_BACKENDS:
            return FREE
        if model in self.retired:
            raise LLMError(
                f"model {model!r} (backend {backend}) was retired by its provider on"
                f" {self.retired[model]} (retired: in {self.source}); pick a current model"
            )
        entry = self.models.get(model)
        if entry is None:
            raise LLMError(
                f"model {model!r} (backend {backend}) has no price in {self.source}: add"
                f" 'models: {{{model}: {{{mode}: {{input: ..., output: ...}}}}}}' (USD per 1M"
                " tokens) before spending money on it"
            )
        if mode not in entry:
            raise LLMError(f"model {model!r} has no {mode!r} price in {self.source}")
        return entry[mode]


def _retired(raw: object, path: Path) -> dict[str, str]:
    """``retired:`` of the price file as {model: ISO date}."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise LLMError(f"{path}: 'retired' must map model names to shutdown dates (YYYY-MM-DD)")
    retired = {}
    for name, when in raw.items():
        if not isinstance(when, datetime.date):
            raise LLMError(
                f"{path}: retired.{name} must be a shutdown date YYYY-MM-DD, got {when!r}"
            )
        retired[str(name)] = when.isoformat()
    return retired
