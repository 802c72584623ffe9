"""Requests and responses of the LLM layer.

A request's identity is the SHA-256 of the canonical JSON of (model, messages, sampling): two
identical requests anywhere in the grid (for instance turn 1 of the sequential strategy and the
``improve_cognitive`` prompt) share one key, so the cache answers them once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    role: str
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"message role must be one of {ROLES}, got {self.role!r}")
        if not isinstance(self.content, str):
            raise TypeError(f"message content must be str, got {type(self.content).__name__}")

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def canonical_json(value: Any) -> str:
    """Stable JSON: sorted keys, no spaces, UTF-8 kept (hash input and cache column)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to ask; frozen so its key cannot drift after it was computed."""

    model: str
    messages: tuple[Message, ...]
    sampling: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", tuple(self.messages))
        object.__setattr__(self, "sampling", dict(self.sampling or {}))
        if not self.messages:
            raise ValueError("a ChatRequest needs at least one message")
        if self.messages[-1].role != "user":
            raise ValueError("the last message of a ChatRequest must be a user turn")

    def payload(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [m.as_dict() for m in self.messages],
            "sampling": self.sampling,
        }

    @cached_property
    def key(self) -> str:
        return hashlib.sha256(canonical_json(self.payload()).encode("utf-8")).hexdigest()

    def __hash__(self) -> int:
        return hash(self.key)

    def describe(self, width: int = 80) -> str:
        """Short human-readable name used in error messages."""
        last = self.messages[-1].content.replace("\n", " ")
        tail = last if len(last) <= width else "..." + last[-width:]
        return f"request {self.key[:12]} ({self.model}, {len(self.messages)} message(s), {tail!r})"

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ChatRequest:
        return cls(
            model=payload["model"],
            messages=tuple(Message(m["role"], m["content"]) for m in payload["messages"]),
            sampling=payload.get("sampling") or {},
        )


@dataclass(frozen=True)
class ChatResponse:
    key: str
    text: str
    model: str
    usage: dict[str, int]
    cached: bool
    #: Why the provider refused to answer (a safety block), else None. A refusal is a final
    #: answer: it is cached like any other and never bought again; ``text`` is then "".
    refusal: str | None = None


@dataclass(frozen=True)
class Answer:
    """What a backend returns for one request (before it becomes a cached ChatResponse).

    ``usage`` holds ``input_tokens`` and ``output_tokens``, where output counts every billed
    output token (visible text plus thinking/reasoning tokens); ``refusal`` is set, with
    ``text`` "", when the provider blocked the request or its answer for its content.
    """

    text: str
    model: str
    usage: dict[str, int]
    refusal: str | None = None
