"""What a model accepts (``resources/model_capabilities.yaml``) and what a request may bill.

WHY: reasoning models answer HTTP 400 to sampling parameters other than their defaults and to
``max_tokens``; thinking models bill their thinking as output. The request builders of the
backends and both spend projections (``cost.py`` before the run, the client's budget check
before each call) read the same table and the same worst case, ``worst_case_output_tokens``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import LLMError
from .pricing import fine_tuned_base

TABLE = Path(__file__).resolve().parents[3] / "resources" / "model_capabilities.yaml"
#: Sampling keys a reasoning model refuses unless they carry its default.
SAMPLING_KEYS = (
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "logit_bias",
)
#: Keys naming an output cap, the OpenAI way or the Gemini way.
CAP_KEYS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
#: Those, and the local backends' own: what a request's sampling may cap its answer with.
OUTPUT_CAP_KEYS = (*CAP_KEYS, "max_new_tokens")
DEFAULT_MAX_NEW_TOKENS = 256


@dataclass(frozen=True)
class Capability:
    accepts_sampling: bool = True
    reasoning_efforts: tuple[str, ...] = ()
    thinking_budget: bool = False
    thinks: bool = False


@dataclass(frozen=True)
class OutputLimits:
    """What a backend adds to each request of an endpoint (never part of the request key)."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    thinking_budget: int | None = None
    reasoning_effort: str | None = None
    dropped: list[str] = field(default_factory=list, compare=False)

    @property
    def cap(self) -> int:
        """The output cap sent: the answer plus the thinking allowed (both bill as output)."""
        return self.max_new_tokens + (self.thinking_budget or 0)


@functools.cache
def _table(path: str) -> dict[str, Capability]:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise LLMError(f"model capability table not found: {path}") from exc
    table = {}
    for prefix, entry in (raw.get("models") or {}).items():
        entry = dict(entry or {})
        try:
            table[str(prefix)] = Capability(
                accepts_sampling=bool(entry.pop("accepts_sampling", True)),
                reasoning_efforts=tuple(entry.pop("reasoning_efforts", ()) or ()),
                thinking_budget=bool(entry.pop("thinking_budget", False)),
                thinks=bool(entry.pop("thinks", False)),
            )
        except TypeError as exc:
            raise LLMError(f"{path}: models.{prefix}: {exc}") from exc
        if entry:
            raise LLMError(f"{path}: models.{prefix}: unknown key(s) {sorted(entry)}")
    return table


def capability(model: str, table: str | Path = TABLE) -> Capability:
    """The entry of the longest prefix of ``model`` (its base for a fine-tuned model)."""
    name = fine_tuned_base(model) or model
    entries = _table(str(table))
    matches = [prefix for prefix in entries if name.startswith(prefix)]
    return entries[max(matches, key=len)] if matches else Capability()


def output_limits(endpoint: dict[str, Any]) -> OutputLimits:
    return OutputLimits(
        int(endpoint.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS),
        endpoint.get("thinking_budget"),
        endpoint.get("reasoning_effort"),
    )


def billed_output_cap(sampling: dict | None, max_new_tokens: int, thinking: int | None) -> int:
    """The most output tokens a request can be billed: the largest cap its sampling names (a
    backend sends one of them; the bill cannot pass the largest), else ``max_new_tokens``, plus
    the endpoint's thinking budget (which the backends add to the cap they send). The budget's
    reservation and every cost projection count this one figure."""
    explicit = [int(v) for k, v in (sampling or {}).items() if k in OUTPUT_CAP_KEYS]
    return (max(explicit) if explicit else int(max_new_tokens)) + int(thinking or 0)


def worst_case_output_tokens(endpoint: dict[str, Any], sampling: dict | None = None) -> int:
    """:func:`billed_output_cap` of one request of ``endpoint`` (its config block)."""
    limits = output_limits(endpoint)
    return billed_output_cap(sampling, limits.max_new_tokens, limits.thinking_budget)


def projected_output_tokens(endpoint: dict[str, Any], expected: int | None = None) -> int:
    """Output tokens a projection counts per request: an expected answer length (the teacher's
    130) plus the thinking budget, which a thinking model may spend whatever it answers; with
    no expectation, the worst case."""
    if expected is None:
        return worst_case_output_tokens(endpoint)
    return int(expected) + (output_limits(endpoint).thinking_budget or 0)


def openai_body_options(
    model: str, sampling: dict[str, Any], limits: OutputLimits | None, *, hosted: bool
) -> dict[str, Any]:
    """The sampling and limit keys of a chat-completions body for ``model``.

    ``hosted`` (the OpenAI API): caps go out as ``max_completion_tokens`` (``max_tokens`` is
    refused by reasoning models), refused sampling keys are left out (their names appended to
    ``limits.dropped``), and ``reasoning_effort`` goes to models that take it. A local
    OpenAI-compatible server (free, its own parameter rules) gets the sampling as given.
    """
    options = dict(sampling)
    if not hosted:
        return options
    cap = capability(model)
    explicit = [options.pop(k) for k in CAP_KEYS if k in options]
    if explicit:
        options["max_completion_tokens"] = int(explicit[0]) + (
            (limits.thinking_budget or 0) if limits else 0
        )
    elif limits is not None:
        options["max_completion_tokens"] = limits.cap
    if not cap.accepts_sampling:
        for key in SAMPLING_KEYS:
            if key in options:
                options.pop(key)
                if limits is not None and key not in limits.dropped:
                    limits.dropped.append(key)
    if limits is not None and limits.reasoning_effort and cap.reasoning_efforts:
        options["reasoning_effort"] = limits.reasoning_effort
    return options


def endpoint_problems(where: str, endpoint: dict[str, Any]) -> list[str]:
    """Output caps that disagree, thinking settings ``endpoint`` cannot take, or a thinking
    model left without a budget."""
    problems = []
    caps = {k: v for k, v in (endpoint.get("sampling") or {}).items() if k in CAP_KEYS}
    if len({int(v) for v in caps.values()}) > 1:
        named = ", ".join(f"{k}={v}" for k, v in caps.items())
        problems.append(
            f"{where}.sampling: {named} are different output caps; a request sends one of them"
            " (and the budget reserves the largest): keep one"
        )
    if endpoint.get("backend") not in ("openai", "gemini"):
        return problems
    cap = capability(str(endpoint["model"]))
    model = endpoint["model"]
    effort = endpoint.get("reasoning_effort")
    if effort is not None and effort not in cap.reasoning_efforts:
        allowed = ", ".join(cap.reasoning_efforts) or "none (not a reasoning model)"
        problems.append(
            f"{where}.reasoning_effort: {model!r} takes {allowed}, not {effort!r} ({TABLE.name})"
        )
    budget = endpoint.get("thinking_budget")
    if budget is not None and not (cap.thinking_budget or cap.reasoning_efforts):
        problems.append(
            f"{where}.thinking_budget: {model!r} does not think ({TABLE.name}); remove the key"
        )
    if budget is None and cap.thinks:
        problems.append(
            f"{where}.thinking_budget: {model!r} thinks before it answers and bills the thinking"
            " as output; set thinking_budget (tokens, e.g. 1024) so that the output cap and the"
            " spend projections count it"
        )
    return problems
