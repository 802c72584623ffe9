"""Backend factory: one endpoint config (``teacher`` / ``judges.<name>``) -> a Backend."""

from __future__ import annotations

import os
from typing import Any

from .. import settings
from ..capabilities import output_limits
from ..errors import LLMError
from .base import Backend

DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "gemini": "GEMINI_API_KEY"}
#: A key an OpenAI-compatible local server ignores (the SDK refuses an empty one).
PLACEHOLDER_KEY = "EMPTY"


def api_key_env(endpoint: dict[str, Any]) -> str | None:
    """Name of the environment variable holding this endpoint's key (never the key itself)."""
    return endpoint.get("api_key_env") or DEFAULT_KEY_ENV.get(endpoint["backend"])


def _require_key(endpoint: dict[str, Any]) -> str:
    env = api_key_env(endpoint)
    key = os.environ.get(env or "")
    if not key:
        raise LLMError(
            f"backend {endpoint['backend']!r} (model {endpoint['model']!r}) needs an API key in"
            f" the environment variable {env}; it is not set"
        )
    return key


def make_backend(endpoint: dict[str, Any]) -> Backend:
    backend = endpoint["backend"]
    timeout = float(endpoint.get("timeout_s", 120))
    if backend == "openai":
        from .openai_backend import OpenAIBackend

        return OpenAIBackend(
            _require_key(endpoint),
            endpoint.get("base_url"),
            timeout,
            max_enqueued_tokens=settings.current().max_enqueued_tokens.get(endpoint["model"]),
            limits=output_limits(endpoint),
        )
    if backend == "openai_compatible":
        from .openai_backend import OpenAIBackend

        if not endpoint.get("base_url"):
            raise LLMError(
                f"backend 'openai_compatible' (model {endpoint['model']!r}) needs base_url,"
                " e.g. http://127.0.0.1:8000/v1"
            )
        env = endpoint.get("api_key_env")
        key = (os.environ.get(env) if env else None) or PLACEHOLDER_KEY
        return OpenAIBackend(
            key,
            endpoint["base_url"],
            timeout,
            name="openai_compatible",
            limits=output_limits(endpoint),
        )
    if backend == "gemini":
        from .gemini_backend import GeminiBackend

        return GeminiBackend(
            _require_key(endpoint), endpoint.get("base_url"), timeout, output_limits(endpoint)
        )
    if backend == "transformers":
        from ...core.students import resolve_model
        from .transformers_backend import TransformersBackend

        return TransformersBackend(
            resolve_model({"model": endpoint["model"]}),
            int(endpoint.get("max_new_tokens", 256)),
            int(endpoint.get("batch_size", 8)),
        )
    raise LLMError(
        f"backend {backend!r} is not an LLM endpoint (expected openai, gemini,"
        " openai_compatible or transformers)"
    )
