"""The run's operational settings of the LLM layer (``llm.retry``, ``llm.openai``,
``llm.cache_only`` of the config).

WHY a process-wide setting and not a constructor argument: these keys belong to the runtime
part of the config (core/runtime.py, exported once per run in ``$EMPATHY_DISTILL_RUNTIME``),
which is the same for every client a job makes, while the retry loop (``retry.py``) and the
backends are built deep below the client. ``job.job_client`` configures them once per job;
code that makes clients itself (tests, notebooks) gets the schema's defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Default ``llm.retry.max_wait_s``: the longest server-asked wait honoured (15 minutes).
DEFAULT_MAX_WAIT_S = 900.0


@dataclass(frozen=True)
class LLMSettings:
    #: Longest ``Retry-After`` / ``retryDelay`` honoured; a longer one stops the request.
    max_wait_s: float = DEFAULT_MAX_WAIT_S
    #: OpenAI model -> the organisation's batch queue limit (enqueued prompt tokens).
    max_enqueued_tokens: Mapping[str, int] = field(default_factory=dict)
    #: ``llm.cache_only``: answer from the cache alone; a request not in it is an error, never
    #: sent (a run against an archived cache, e.g. of models their provider has retired).
    cache_only: bool = False


_current = LLMSettings()


def configure(llm_runtime: Mapping[str, Any] | None) -> LLMSettings:
    """Set the settings from the runtime part's ``llm`` section (missing keys: defaults)."""
    global _current
    llm_runtime = llm_runtime or {}
    retry = llm_runtime.get("retry") or {}
    openai = llm_runtime.get("openai") or {}
    _current = LLMSettings(
        max_wait_s=float(retry.get("max_wait_s", DEFAULT_MAX_WAIT_S)),
        max_enqueued_tokens=dict(openai.get("max_enqueued_tokens") or {}),
        cache_only=bool(llm_runtime.get("cache_only", False)),
    )
    return _current


def current() -> LLMSettings:
    return _current
