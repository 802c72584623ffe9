"""OpenAI chat completions: real time (async) and the Batch API; also any OpenAI-compatible server.

Real-time requests are posted by ``chat_http.ChatPoster`` (same body and headers, a fraction of
the SDK's CPU per request); files and batches go through the SDK.

Batch API (https://platform.openai.com/docs/guides/batch): a JSONL file of
``{custom_id, method, url, body}`` lines is uploaded with purpose ``batch``, a batch is created
with ``completion_window: 24h``, polled, and its output and error files are read back. Lines are
joined to requests by ``custom_id`` (our request key), never by line order.
"""

from __future__ import annotations

import json
from typing import Any

import openai

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
from .chat_http import ChatPoster

CHAT_ENDPOINT = "/v1/chat/completions"
TAG_METADATA = "empathy_distill_tag"
_STATES = {
    "completed": COMPLETED,
    "failed": FAILED,
    "expired": EXPIRED,
    "cancelled": CANCELLED,
}


def _translate(exc: Exception) -> Exception:
    """Map an openai SDK error onto the retry classes."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = f"HTTP {status}: {exc.message}"
        if is_retryable_status(status):
            return TransientError(message, parse_retry_after(exc.response.headers))
        return PermanentError(message)
    if isinstance(exc, openai.APIConnectionError | openai.APITimeoutError):
        return TransientError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, openai.APIResponseValidationError | ValueError):
        return TransientError(f"malformed response: {exc}")
    return exc


def answer_from_body(body: Any, fallback_model: str) -> Answer:
    """Text, model and usage of a chat.completion body (dict or SDK object)."""
    if not isinstance(body, dict):
        body = body.model_dump() if hasattr(body, "model_dump") else None
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise TransientError(
            f"malformed response body: no choices[0].message.content ({exc})"
        ) from exc
    if not isinstance(content, str):
        raise TransientError("malformed response body: message content is not text")
    usage = body.get("usage") or {}
    return Answer(
        text=content,
        model=body.get("model") or fallback_model,
        usage=usage_dict(usage.get("prompt_tokens"), usage.get("completion_tokens")),
    )


def _http_client(timeout_s: float) -> Any:
    """aiohttp transport when the SDK has it: its connection handling costs about half the CPU
    of the default pool per request, which is what limits throughput at high concurrency."""
    try:
        return openai.DefaultAioHttpClient(timeout=timeout_s)
    except (AttributeError, RuntimeError):
        return None


class OpenAIBackend(Backend):
    name = "openai"
    supports_batch = True

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        timeout_s: float = 120,
        name: str = "openai",
    ) -> None:
        self.name = name
        # max_retries=0: our retry policy (retry.py) decides, the SDK must not retry on its own.
        self.client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=timeout_s,
            http_client=_http_client(timeout_s),
        )
        self.chat = ChatPoster(str(self.client.base_url), self._headers(api_key), timeout_s)

    def _headers(self, api_key: str) -> dict[str, str]:
        """What the SDK would send that matters: the key, organization, project, user agent."""
        headers = {"Authorization": f"Bearer {api_key}"}
        for name, value in (
            ("OpenAI-Organization", getattr(self.client, "organization", None)),
            ("OpenAI-Project", getattr(self.client, "project", None)),
            ("User-Agent", getattr(self.client, "user_agent", None)),
        ):
            if isinstance(value, str) and value:
                headers[name] = value
        return headers

    @staticmethod
    def _body(request: ChatRequest) -> dict[str, Any]:
        return {
            "model": request.model,
            "messages": [m.as_dict() for m in request.messages],
            **request.sampling,
        }

    async def agenerate(self, request: ChatRequest) -> Answer:
        return answer_from_body(await self.chat.post(self._body(request)), request.model)

    # Batch API ------------------------------------------------------------------------------
    def batch_line(self, request: ChatRequest) -> bytes:
        line = {
            "custom_id": request.key,
            "method": "POST",
            "url": CHAT_ENDPOINT,
            "body": self._body(request),
        }
        return (canonical_json(line) + "\n").encode("utf-8")

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except openai.OpenAIError as exc:
            raise _translate(exc) from exc

    async def submit_batch(self, tag: str, requests: list[ChatRequest]) -> str:
        data = b"".join(self.batch_line(r) for r in requests)
        upload = await self._call(
            self.client.files.create(file=(f"{tag}.jsonl", data), purpose="batch")
        )
        batch = await self._call(
            self.client.batches.create(
                input_file_id=upload.id,
                endpoint=CHAT_ENDPOINT,
                completion_window="24h",
                metadata={TAG_METADATA: tag},
            )
        )
        return batch.id

    async def find_batch(self, tag: str) -> str | None:
        try:
            async for batch in self.client.batches.list(limit=100):
                if (batch.metadata or {}).get(TAG_METADATA) == tag:
                    return batch.id
        except openai.OpenAIError as exc:
            raise _translate(exc) from exc
        return None

    async def poll_batch(self, batch_id: str) -> BatchPoll:
        batch = await self._call(self.client.batches.retrieve(batch_id))
        detail = ""
        if batch.errors and batch.errors.data:
            detail = "; ".join(f"{e.code}: {e.message}" for e in batch.errors.data)
        return BatchPoll(_STATES.get(batch.status, RUNNING), detail or batch.status)

    async def _file_lines(self, file_id: str | None) -> list[str]:
        if not file_id:
            return []
        content = await self._call(self.client.files.content(file_id))
        return content.text.splitlines()

    async def batch_results(self, batch_id: str) -> BatchResults:
        batch = await self._call(self.client.batches.retrieve(batch_id))
        results = BatchResults()
        for line in await self._file_lines(batch.output_file_id):
            self._read_line(line, results)
        for line in await self._file_lines(batch.error_file_id):
            self._read_line(line, results)
        return results

    @staticmethod
    def _read_line(line: str, results: BatchResults) -> None:
        if not line.strip():
            return
        try:
            item = json.loads(line)
            key = item["custom_id"]
        except (ValueError, KeyError, TypeError):
            results.malformed += 1
            return
        response = item.get("response") or {}
        status = response.get("status_code")
        if status == 200 and not item.get("error"):
            try:
                results.answers[key] = answer_from_body(response.get("body"), "")
                results.errors.pop(key, None)
            except TransientError as exc:
                results.errors.setdefault(key, str(exc))
            return
        error = item.get("error") or (response.get("body") or {}).get("error") or {}
        message = error.get("message") if isinstance(error, dict) else str(error)
        if key not in results.answers:
            results.errors[key] = f"batch item failed (HTTP {status}): {message}"

    async def aclose(self) -> None:
        await self.chat.aclose()
        await self.client.close()
