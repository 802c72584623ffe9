"""Google Gemini through google-genai: real time (``client.aio.models.generate_content``) and
Batch Mode (``client.batches.create`` with inlined requests, https://ai.google.dev/gemini-api/docs/batch-mode).

System text goes into ``system_instruction`` (Gemini has no system role); assistant turns become
``model`` turns. Each inlined batch request carries our request key in ``metadata.key`` so that
responses are joined by key, not by position.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from ..errors import PermanentError, TransientError
from ..request import Answer, ChatRequest, canonical_json
from ..retry import is_retryable_status, parse_retry_after
from .base import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    RUNNING,
    Backend,
    BatchPoll,
    BatchResults,
    usage_dict,
)

KEY_METADATA = "key"
#: Inlined batch requests are limited to 20 MB per job.
INLINE_MAX_BYTES = 20_000_000
_STATES = {
    "JOB_STATE_SUCCEEDED": COMPLETED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": COMPLETED,
    "JOB_STATE_FAILED": FAILED,
    "JOB_STATE_EXPIRED": EXPIRED,
    "JOB_STATE_CANCELLED": CANCELLED,
}
#: Sampling keys named the OpenAI way, mapped onto GenerateContentConfig fields.
_SAMPLING_ALIASES = {"max_tokens": "max_output_tokens", "stop": "stop_sequences"}

try:  # the SDK uses aiohttp for async calls when it is installed
    import aiohttp

    _TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
        httpx.TransportError,
        aiohttp.ClientError,
        asyncio.TimeoutError,
    )
except ImportError:  # pragma: no cover - depends on the environment
    _TRANSPORT_ERRORS = (httpx.TransportError, asyncio.TimeoutError)


def _headers(exc: genai_errors.APIError) -> dict[str, str] | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return dict(headers) if headers is not None else None


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, genai_errors.APIError):
        code = int(exc.code or 0)
        message = f"HTTP {code}: {exc.message}"
        if is_retryable_status(code):
            return TransientError(message, parse_retry_after(_headers(exc)))
        return PermanentError(message)
    if isinstance(exc, _TRANSPORT_ERRORS):
        return TransientError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, ValueError):  # JSON decoding of a malformed body
        return TransientError(f"malformed response: {exc}")
    return exc


def split_messages(request: ChatRequest) -> tuple[str | None, list[types.Content]]:
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    contents = [
        types.Content(
            role="model" if m.role == "assistant" else "user", parts=[types.Part(text=m.content)]
        )
        for m in request.messages
        if m.role != "system"
    ]
    return (system or None), contents


def generation_config(request: ChatRequest) -> types.GenerateContentConfig:
    system, _ = split_messages(request)
    sampling = {_SAMPLING_ALIASES.get(k, k): v for k, v in request.sampling.items()}
    return types.GenerateContentConfig(system_instruction=system, **sampling)


def answer_from_response(response: types.GenerateContentResponse, model: str) -> Answer:
    try:
        text = response.text
    except (ValueError, AttributeError) as exc:
        raise TransientError(f"malformed Gemini response: {exc}") from exc
    if text is None:
        reason = ""
        if response.candidates:
            reason = f" (finish reason {response.candidates[0].finish_reason})"
        raise TransientError(f"Gemini response has no text{reason}")
    meta = response.usage_metadata
    return Answer(
        text=text,
        model=response.model_version or model,
        usage=usage_dict(
            meta.prompt_token_count if meta else 0,
            meta.candidates_token_count if meta else 0,
        ),
    )


class GeminiBackend(Backend):
    name = "gemini"
    supports_batch = True
    max_batch_bytes = INLINE_MAX_BYTES

    def __init__(self, api_key: str, base_url: str | None = None, timeout_s: float = 120) -> None:
        # attempts=1: the SDK never retries by itself; retry.py owns the policy.
        options = types.HttpOptions(
            base_url=base_url,
            timeout=int(timeout_s * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        self.client = genai.Client(api_key=api_key, http_options=options)

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except BaseException as exc:
            translated = _translate(exc)
            if translated is exc:
                raise
            raise translated from exc

    async def agenerate(self, request: ChatRequest) -> Answer:
        _, contents = split_messages(request)
        response = await self._call(
            self.client.aio.models.generate_content(
                model=request.model, contents=contents, config=generation_config(request)
            )
        )
        return answer_from_response(response, request.model)

    # Batch Mode -----------------------------------------------------------------------------
    def _inlined(self, request: ChatRequest) -> types.InlinedRequest:
        _, contents = split_messages(request)
        return types.InlinedRequest(
            contents=contents,
            config=generation_config(request),
            metadata={KEY_METADATA: request.key},
        )

    def batch_line(self, request: ChatRequest) -> bytes:
        dumped = self._inlined(request).model_dump(mode="json", exclude_none=True)
        return canonical_json(dumped).encode("utf-8")

    async def submit_batch(self, tag: str, requests: list[ChatRequest]) -> str:
        models = {r.model for r in requests}
        if len(models) != 1:
            raise PermanentError(f"a Gemini batch needs one model, got {sorted(models)}")
        job = await self._call(
            self.client.aio.batches.create(
                model=models.pop(),
                src=[self._inlined(r) for r in requests],
                config=types.CreateBatchJobConfig(display_name=tag),
            )
        )
        return job.name

    async def find_batch(self, tag: str) -> str | None:
        pager = await self._call(self.client.aio.batches.list())
        async for job in pager:
            if job.display_name == tag:
                return job.name
        return None

    async def poll_batch(self, batch_id: str) -> BatchPoll:
        job = await self._call(self.client.aio.batches.get(name=batch_id))
        state = job.state.value if job.state is not None else "JOB_STATE_UNSPECIFIED"
        detail = job.error.message if job.error and job.error.message else state
        return BatchPoll(_STATES.get(state, RUNNING), detail)

    async def batch_results(self, batch_id: str) -> BatchResults:
        job = await self._call(self.client.aio.batches.get(name=batch_id))
        results = BatchResults()
        inlined = (job.dest.inlined_responses if job.dest else None) or []
        for item in inlined:
            key = (item.metadata or {}).get(KEY_METADATA)
            if not key:
                results.malformed += 1
                continue
            if item.error is not None or item.response is None:
                message = item.error.message if item.error else "no response"
                results.errors[key] = f"batch item failed: {message}"
                continue
            try:
                results.answers[key] = answer_from_response(item.response, job.model or "")
            except TransientError as exc:
                results.errors[key] = str(exc)
        return results

    async def aclose(self) -> None:
        with contextlib.suppress(AttributeError, RuntimeError):  # older SDKs: no aclose
            await self.client.aio.aclose()
