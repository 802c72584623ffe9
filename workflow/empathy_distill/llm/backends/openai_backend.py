"""OpenAI chat completions: real time (async) and the Batch API; also any OpenAI-compatible server.

Batch API (https://platform.openai.com/docs/guides/batch): a JSONL file of
``{custom_id, method, url, body}`` lines is uploaded with purpose ``batch``, a batch is created
with ``completion_window: 24h``, polled, and its output and error files are read back. Lines are
joined to requests by ``custom_id`` (our request key), never by line order.
"""

from __future__ import annotations

import importlib
import json
import logging
from typing import Any

import openai

from ..capabilities import OutputLimits, openai_body_options
from ..errors import AccountStoppedError, BillingError, PermanentError, TransientError
from ..request import Answer, ChatRequest, canonical_json
from ..retry import is_retryable_status, parse_retry_after
from .base import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    RUNNING,
    TERMINAL,
    Backend,
    BatchPoll,
    BatchResults,
    jsonl_lines,
    usage_dict,
)
from .openai_queue import REFUSAL_CODE, BatchQueue

log = logging.getLogger("empathy_distill.llm")
CHAT_ENDPOINT = "/v1/chat/completions"
TAG_METADATA = "empathy_distill_tag"
_STATES = {
    "completed": COMPLETED,
    "failed": FAILED,
    "expired": EXPIRED,
    "cancelled": CANCELLED,
}
#: ``errors.data[].code`` of a batch that failed validation because of its input file: the same
#: requests fail the same way again (https://platform.openai.com/docs/guides/batch, Batch object
#: https://platform.openai.com/docs/api-reference/batch/object). Any other code is treated as
#: transient, notably ``token_limit_exceeded`` (the organisation's enqueued-token limit, which
#: frees up as running batches finish): its requests go again, in smaller batches, once the
#: queue has drained (openai_queue.py), never as the same batch.
DETERMINISTIC_BATCH_CODES = frozenset(
    {
        "invalid_json_line",
        "duplicate_custom_id",
        "url_mismatch",
        "model_mismatch",
        "model_not_found",
        "empty_file",
        "too_many_tasks",
        "missing_required_parameter",
        "invalid_request",
    }
)
#: Per-request error codes (error file) that recur on every attempt; an HTTP status on the item
#: decides first (4xx other than 408/409/429 is deterministic).
DETERMINISTIC_ITEM_CODES = frozenset(
    {"context_length_exceeded", "invalid_request_error", "invalid_prompt", "model_not_found"}
)
#: The 429 that is no rate limit: the account has no credit or quota left ("You exceeded your
#: current quota, please check your plan and billing details", type and code
#: ``insufficient_quota``, https://platform.openai.com/docs/guides/error-codes). Waiting does not
#: help, so it stops every request at once with the provider's message.
BILLING_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})


def _error_code(exc: openai.APIStatusError) -> str | None:
    body = exc.body if isinstance(exc.body, dict) else {}
    body = body.get("error", body) if isinstance(body.get("error"), dict) else body
    return getattr(exc, "code", None) or body.get("code") or body.get("type")


def _translate(exc: Exception) -> Exception:
    """Map an openai SDK error onto the retry classes."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = f"HTTP {status}: {exc.message}"
        if _error_code(exc) in BILLING_CODES:
            return BillingError(
                f"OpenAI refused for billing ({message}). Retrying cannot help: add credit or"
                " raise the organisation's budget (https://platform.openai.com/settings/"
                "organization/billing) and rerun; answers received so far are cached."
            )
        if is_retryable_status(status):
            return TransientError(message, parse_retry_after(exc.response.headers))
        return PermanentError(message)
    if isinstance(exc, openai.APIConnectionError | openai.APITimeoutError):
        return TransientError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, openai.APIResponseValidationError | ValueError):
        return TransientError(f"malformed response: {exc}")
    return exc


def _usage(body: dict[str, Any]) -> dict[str, int]:
    """Billed tokens of a chat.completion body.

    In the Chat Completions API ``usage.completion_tokens`` already includes the reasoning
    tokens of reasoning models; ``completion_tokens_details.reasoning_tokens`` is a breakdown of
    it, not an addition (https://platform.openai.com/docs/api-reference/chat/object#chat/object-usage,
    https://platform.openai.com/docs/guides/reasoning). So output = completion_tokens, counted
    once; the reasoning part is kept beside it for the record.
    """
    usage = body.get("usage") or {}
    details = usage.get("completion_tokens_details") or {}
    return usage_dict(
        usage.get("prompt_tokens"),
        usage.get("completion_tokens"),
        reasoning_tokens=details.get("reasoning_tokens") if isinstance(details, dict) else None,
    )


def answer_from_body(body: Any, fallback_model: str) -> Answer:
    """Text (or refusal), model and usage of a chat.completion body (dict or SDK object).

    A safety block is a final answer, never retried: ``finish_reason: "content_filter"`` (the
    content was omitted by the content filter) or a non-null ``message.refusal`` (the model's
    refusal text), https://platform.openai.com/docs/api-reference/chat/object.
    """
    if not isinstance(body, dict):
        body = body.model_dump() if hasattr(body, "model_dump") else None
    try:
        choice = body["choices"][0]
        message = choice.get("message") or {}
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise TransientError(f"malformed response body: no choices[0].message ({exc})") from exc
    model = body.get("model") or fallback_model
    refusal = message.get("refusal")
    if refusal or choice.get("finish_reason") == "content_filter":
        reason = f"refusal: {refusal}" if refusal else "finish_reason content_filter"
        return Answer(text="", model=model, usage=_usage(body), refusal=f"openai: {reason}")
    content = message.get("content")
    if not isinstance(content, str):
        raise TransientError("malformed response body: message content is not text")
    return Answer(text=content, model=model, usage=_usage(body))


def response_class(http_client: Any) -> type:
    """The response class of the SDK's own transport, which ``post(cast_to=...)`` must name.

    openai 1.x/2.x send through ``httpx``, 3.x through ``httpx2``; the SDK accepts as
    ``cast_to`` only the response type of its transport (``_response.py`` / ``_legacy_response.py``,
    ``_parse``). Whether ``httpx2`` is importable says nothing: google-genai may pull it next to
    an openai 2.x that still uses ``httpx``. So walk the transport client's classes to the
    ``httpx``/``httpx2`` AsyncClient it derives from and take that package's Response.
    """
    for cls in type(http_client).__mro__:
        package = cls.__module__.split(".")[0]
        if package in ("httpx", "httpx2") and cls.__name__ == "AsyncClient":
            return importlib.import_module(package).Response
    raise TypeError(
        f"the openai SDK's transport {type(http_client).__qualname__} is not an httpx/httpx2"
        " AsyncClient; this openai version is not supported"
    )


def _http_client(timeout_s: float) -> Any:
    """aiohttp transport when the SDK has it: its connection handling costs about half the CPU
    of the default pool per request, which is what limits throughput at high concurrency."""
    try:
        return openai.DefaultAioHttpClient(timeout=timeout_s)
    except (AttributeError, RuntimeError):
        return None


def _item_error(item: dict[str, Any]) -> tuple[str, bool]:
    """Message of a failed batch line, and whether resubmitting it would fail the same way.

    The error sits in ``error`` ({code, message}) or, for requests the model endpoint rejected,
    in ``response.body.error`` ({message, type, param, code}) with ``response.status_code``
    (https://platform.openai.com/docs/guides/batch, "batch output" / error file).
    """
    response = item.get("response") or {}
    status = response.get("status_code")
    error = item.get("error") or (response.get("body") or {}).get("error") or {}
    if not isinstance(error, dict):
        error = {"message": str(error)}
    code = error.get("code") or error.get("type")
    if code in BILLING_CODES:
        deterministic = True  # no credit: the same line fails again until billing is fixed
    elif isinstance(status, int) and status >= 400:
        deterministic = not is_retryable_status(status)
    else:
        deterministic = code in DETERMINISTIC_ITEM_CODES or error.get("type") in (
            DETERMINISTIC_ITEM_CODES
        )
    return (f"batch item failed (HTTP {status}, {code}): {error.get('message')}", deterministic)


class OpenAIBackend(Backend):
    name = "openai"
    supports_batch = True

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        timeout_s: float = 120,
        name: str = "openai",
        max_enqueued_tokens: int | None = None,
        limits: OutputLimits | None = None,
    ) -> None:
        self.name = name
        #: This process's share of the organisation's batch queue (``llm.openai.
        #: max_enqueued_tokens`` of the model, or what refusals taught).
        self.queue = BatchQueue(max_enqueued_tokens)
        #: Set once billing refuses: later calls fail at once, unsent.
        self.exhausted: AccountStoppedError | None = None
        #: The endpoint's output cap and thinking settings, added to every request body.
        self.limits = limits
        # max_retries=0: our retry policy (retry.py) decides, the SDK must not retry on its own.
        self.client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=timeout_s,
            http_client=_http_client(timeout_s),
        )
        self._raw_response = response_class(self.client._client)

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        """The request body: sampling and output cap as the model accepts them
        (``llm/capabilities.py``; a local OpenAI-compatible server gets them as given)."""
        options = openai_body_options(
            request.model, request.sampling, self.limits, hosted=self.name == "openai"
        )
        if self.limits is not None and self.limits.dropped and not self._warned:
            self._warned = True
            log.warning(
                "%s refuses %s other than its default: left out of its requests"
                " (resources/model_capabilities.yaml)",
                request.model,
                ", ".join(self.limits.dropped),
            )
        return {
            "model": request.model,
            "messages": [m.as_dict() for m in request.messages],
            **options,
        }

    _warned = False

    def _stop(self, exc: Exception) -> Exception:
        if isinstance(exc, AccountStoppedError):
            self.exhausted = exc
        return exc

    async def agenerate(self, request: ChatRequest) -> Answer:
        if self.exhausted is not None:
            raise self.exhausted
        try:
            # The SDK's generic post (auth, headers, errors, timeouts) without its per-call
            # TypedDict transform and pydantic parsing, which cost more CPU than the request
            # itself at high concurrency (see benchmarks/teacher_throughput.py).
            raw = await self.client.post(
                "/chat/completions", body=self._body(request), cast_to=self._raw_response
            )
            body = json.loads(raw.text)
        except openai.OpenAIError as exc:
            raise self._stop(_translate(exc)) from exc
        except ValueError as exc:
            raise TransientError(f"malformed response body (not JSON): {exc}") from exc
        return answer_from_body(body, request.model)

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
        if self.exhausted is not None:
            coro.close()
            raise self.exhausted
        try:
            return await coro
        except openai.OpenAIError as exc:
            raise self._stop(_translate(exc)) from exc

    def plan_batches(self, requests: list[ChatRequest]) -> list[list[ChatRequest]]:
        """Chunks cut to the enqueued-token limit, as many as the queue takes now."""
        return self.queue.plan(requests, super().plan_batches)

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
        self.queue.submitted(batch.id, requests)
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
        errors = list(batch.errors.data or []) if batch.errors else []
        detail = "; ".join(
            f"{e.code}: {e.message}" + (f" (line {e.line})" if e.line is not None else "")
            for e in errors
        )
        state = _STATES.get(batch.status, RUNNING)
        if state == FAILED and any(e.code == REFUSAL_CODE for e in errors):
            self.queue.refused(batch_id)
        elif state in TERMINAL:
            self.queue.finished(batch_id)
        else:
            self.queue.running(batch_id)
        deterministic = (
            state == FAILED
            and bool(errors)
            and all(e.code in DETERMINISTIC_BATCH_CODES for e in errors)
        )
        return BatchPoll(state, detail or batch.status, deterministic)

    async def _file_lines(self, file_id: str | None) -> list[str]:
        """Lines of a result file, split on "\\n" only: JSON strings may hold U+2028, U+2029
        or U+0085, on which ``str.splitlines`` would also cut (and lose) an answer."""
        if not file_id:
            return []
        content = await self._call(self.client.files.content(file_id))
        return jsonl_lines(content.content)

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
                results.deterministic.discard(key)
            except TransientError as exc:
                results.errors.setdefault(key, str(exc))
            return
        if key in results.answers:
            return
        message, deterministic = _item_error(item)
        results.errors[key] = message
        if deterministic:
            results.deterministic.add(key)
        else:
            results.deterministic.discard(key)

    async def cancel_batch(self, batch_id: str) -> None:
        await self._call(self.client.batches.cancel(batch_id))

    async def aclose(self) -> None:
        await self.client.close()
