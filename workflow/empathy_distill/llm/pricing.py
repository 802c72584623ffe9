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
#: Prefix of OpenAI fine-tuned model names: ``ft:<base>:<org>[:<suffix>]:<id>``
#: (https://platform.openai.com/docs/guides/fine-tuning, "Use a fine-tuned model").
FINE_TUNED_PREFIX = "ft:"


def fine_tuned_base(model: str) -> str | None:
    """The base model of a fine-tuned model name (``ft:gpt-4o-mini-2024-07-18:org::id`` ->
    ``gpt-4o-mini-2024-07-18``), None for any other name."""
    if not model.startswith(FINE_TUNED_PREFIX):
        return None
    base = model.split(":")[1]
    return base or None


@dataclass(frozen=True)
class FineTuningPrice:
    """A base model's fine-tuning prices: training per 1M training tokens, and the use of the
    fine-tuned model by mode."""

    training: float
    modes: dict[str, Price]

    def training_cost(self, trained_tokens: int) -> float:
        return trained_tokens * self.training / 1_000_000


class PriceTable:
    """``resources/prices.yaml``: ``models: {name: {realtime: {input, output}, batch: {...}}}``,
    ``fine_tuning: {base: {training: USD per 1M, realtime: {...}, batch: {...}}}`` and
    ``retired: {name: shutdown date}`` (models their provider has shut down)."""

    def __init__(
        self,
        models: dict[str, dict[str, Price]],
        source: str = "<memory>",
        retired: dict[str, str] | None = None,
        fine_tuning: dict[str, FineTuningPrice] | None = None,
    ) -> None:
        self.models = models
        self.source = source
        self.retired = dict(retired or {})
        self.fine_tuning = dict(fine_tuning or {})

    @classmethod
    def load(cls, path: str | Path) -> PriceTable:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError as exc:
            raise LLMError(f"price table not found: {path}") from exc
        models = {
            str(name): _modes(modes, f"models.{name}", path)
            for name, modes in (raw.get("models") or {}).items()
        }
        return cls(
            models,
            str(path),
            _retired(raw.get("retired"), path),
            _fine_tuning(raw.get("fine_tuning"), path),
        )

    def price(self, backend: str, model: str, mode: str) -> Price:
        """Price of ``model`` in ``mode``; a paid model missing from the table is an error."""
        if backend in FREE_BACKENDS:
            return FREE
        if (base := fine_tuned_base(model)) is not None:
            modes = self.fine_tuning_price(base, f"fine-tuned model {model!r}").modes
            if mode not in modes:
                raise LLMError(
                    f"fine-tuned model {model!r} has no {mode!r} price under"
                    f" fine_tuning.{base} in {self.source}"
                )
            return modes[mode]
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

    def fine_tuning_price(self, base: str, what: str | None = None) -> FineTuningPrice:
        """Fine-tuning prices of base model ``base``; missing is an error naming the file."""
        entry = self.fine_tuning.get(base)
        if entry is None:
            raise LLMError(
                f"{what or f'fine-tuning {base!r}'}: base model {base!r} has no price under"
                f" 'fine_tuning:' in {self.source}: add 'fine_tuning: {{{base}: {{training: ...,"
                " realtime: {input: ..., output: ...}, batch: {...}}}' (USD per 1M tokens)"
                " before spending money on it"
            )
        return entry


def _modes(raw: object, where: str, path: Path) -> dict[str, Price]:
    """``{realtime: {input, output}, batch: {...}}`` at ``where`` of the price file."""
    modes: dict[str, Price] = {}
    for mode, price in (raw or {}).items():
        if mode not in MODES or not isinstance(price, dict):
            raise LLMError(f"{path}: {where}.{mode} must be one of {MODES} with input/output")
        try:
            modes[mode] = Price(float(price["input"]), float(price["output"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise LLMError(
                f"{path}: {where}.{mode} needs numeric 'input' and 'output' (USD per 1M tokens)"
            ) from exc
    return modes


def _fine_tuning(raw: object, path: Path) -> dict[str, FineTuningPrice]:
    """``fine_tuning:`` of the price file: per base model, training and fine-tuned use prices."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise LLMError(f"{path}: 'fine_tuning' must map base model names to their prices")
    prices = {}
    for base, entry in raw.items():
        entry = dict(entry or {})
        try:
            training = float(entry.pop("training"))
        except (KeyError, TypeError, ValueError) as exc:
            raise LLMError(
                f"{path}: fine_tuning.{base}.training must be a number (USD per 1M training tokens)"
            ) from exc
        prices[str(base)] = FineTuningPrice(training, _modes(entry, f"fine_tuning.{base}", path))
    return prices


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
