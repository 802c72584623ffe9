"""Google Gemini through google-genai: real time (``client.aio.models.generate_content``) and
Batch Mode from a JSONL input file (https://ai.google.dev/gemini-api/docs/batch-mode).

System text goes into ``system_instruction`` (Gemini has no system role); assistant turns become
``model`` turns.

WHY a file and not inlined requests: results are joined to requests by the ``key`` of each
input line, which the service copies into the matching output line. Inlined requests carry the
key only in ``metadata``, which the service does not always echo (python-genai issue #2008,
js-genai issue #1191) and whose responses can come back out of order (python-genai #1909); a
batch whose results cannot be joined would be paid again on every resubmission.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
import json
import logging
from typing import Any

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from ..capabilities import OutputLimits
from ..errors import AccountStoppedError, PermanentError, TransientError
from ..request import Answer, ChatRequest, canonical_json
from ..retry import is_retryable_status, parse_retry_after
from .base import Backend, BatchPoll, BatchResults, jsonl_lines, usage_dict
from .gemini_errors import billing_error, quota_error, retry_delay
from .gemini_results import batch_state, parse_response

log = logging.getLogger("empathy_distill.llm")
#: Batch Mode input files may be up to 2 GB.
FILE_MAX_BYTES = 2_000_000_000
#: Inlined requests (only read back from batches created by older versions of this code).
KEY_METADATA = "key"
#: Sampling keys named the OpenAI way, mapped onto GenerateContentConfig fields.
_SAMPLING_ALIASES = {
    "max_tokens": "max_output_tokens",
    "max_completion_tokens": "max_output_tokens",
    "stop": "stop_sequences",
}
#: Finish reasons that mean the provider withheld the answer for its content (types.FinishReason:
#: safety policy, prohibited content, blocklist term, personal data, recitation of a source).
#: They are final: the same request would be blocked again, so they are never retried.
REFUSAL_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors of whichever HTTP stacks google-genai can use here.

    google-genai < 3 sends through httpx, >= 3 through httpx2 (httpx only when installed), and
    its async calls through aiohttp when that is installed (``_api_client._use_aiohttp``). None of
    them is imported unconditionally: a core install need not have httpx.
    """
    found: list[type[BaseException]] = [asyncio.TimeoutError]
    for module, name in (("httpx", "TransportError"), ("httpx2", "TransportError")):
        with contextlib.suppress(ImportError):
            found.append(getattr(importlib.import_module(module), name))
    with contextlib.suppress(ImportError):
        found.append(importlib.import_module("aiohttp").ClientError)
    return tuple(found)


_TRANSPORT_ERRORS = _transport_errors()


class UnjoinableBatchError(PermanentError):
    """A finished batch returned results that name no request: resubmitting would pay again."""


def _headers(exc: genai_errors.APIError) -> dict[str, str] | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    return dict(headers) if headers is not None else None


def _translate(exc: BaseException) -> BaseException:
    if isinstance(exc, genai_errors.APIError):
        code = int(exc.code or 0)
        body = getattr(exc, "details", None)
        message = f"HTTP {code}: {exc.message}"
        if (billing := billing_error(code, str(exc.message or ""), body)) is not None:
            return billing
        if code == 429 and (exhausted := quota_error(body)) is not None:
            return exhausted
        if is_retryable_status(code):
            wait = retry_delay(body)
            return TransientError(
                message, wait if wait is not None else parse_retry_after(_headers(exc))
            )
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


def _sampling(request: ChatRequest, limits: OutputLimits | None = None) -> dict[str, Any]:
    """Generation settings: the request's sampling, then the endpoint's output cap and thinking
    budget (thinking counts against maxOutputTokens, so the cap is answer + budget)."""
    sampling = {_SAMPLING_ALIASES.get(k, k): v for k, v in request.sampling.items()}
    if limits is None:
        return sampling
    budget = limits.thinking_budget
    if "max_output_tokens" in sampling:
        sampling["max_output_tokens"] = int(sampling["max_output_tokens"]) + (budget or 0)
    else:
        sampling["max_output_tokens"] = limits.cap
    if budget is not None and "thinking_config" not in sampling:
        sampling["thinking_config"] = types.ThinkingConfig(thinking_budget=int(budget))
    return sampling


def generation_config(
    request: ChatRequest, limits: OutputLimits | None = None
) -> types.GenerateContentConfig:
    system, _ = split_messages(request)
    try:
        return types.GenerateContentConfig(system_instruction=system, **_sampling(request, limits))
    except ValueError as exc:  # pydantic: an unknown or mistyped sampling key
        raise PermanentError(
            f"{request.describe()}: sampling {request.sampling!r} is not a Gemini generation"
            f" config: {exc}"
        ) from exc


def rest_request(request: ChatRequest, limits: OutputLimits | None = None) -> dict[str, Any]:
    """The request as a REST ``GenerateContentRequest`` (the form a batch input line carries)."""
    system, contents = split_messages(request)
    body: dict[str, Any] = {
        "contents": [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in contents]
    }
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    try:
        config = types.GenerationConfig(**_sampling(request, limits))
    except ValueError as exc:
        raise PermanentError(
            f"{request.describe()}: sampling {request.sampling!r} is not a Gemini generation"
            f" config: {exc}"
        ) from exc
    generation = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    if generation:
        body["generationConfig"] = generation
    return body


def _value(enum_or_str: Any) -> str:
    return str(getattr(enum_or_str, "value", enum_or_str) or "")


def refusal_reason(response: types.GenerateContentResponse) -> str | None:
    """Why Gemini blocked the prompt or withheld the answer, or None if it answered."""
    feedback = response.prompt_feedback
    blocked = _value(feedback.block_reason) if feedback is not None else ""
    if blocked and blocked != "BLOCKED_REASON_UNSPECIFIED":
        return f"gemini: block_reason {blocked}"
    if response.candidates:
        finish = _value(response.candidates[0].finish_reason)
        if finish in REFUSAL_FINISH_REASONS:
            return f"gemini: finish_reason {finish}"
    return None


def usage_of(response: types.GenerateContentResponse) -> dict[str, int]:
    """Billed tokens: thinking tokens are output tokens (missing counts are 0)."""
    meta = response.usage_metadata
    if meta is None:
        return usage_dict(0, 0)
    visible = meta.candidates_token_count or 0
    thinking = getattr(meta, "thoughts_token_count", None) or 0
    return usage_dict(meta.prompt_token_count, visible + thinking)


def _finish_reason(response: types.GenerateContentResponse) -> str:
    return _value(response.candidates[0].finish_reason) if response.candidates else ""


def answer_from_response(response: types.GenerateContentResponse, model: str) -> Answer:
    usage = usage_of(response)
    version = response.model_version or model
    refusal = refusal_reason(response)
    if refusal is not None:
        return Answer(text="", model=version, usage=usage, refusal=refusal)
    try:
        text = response.text
    except (ValueError, AttributeError) as exc:
        raise TransientError(f"malformed Gemini response: {exc}") from exc
    if text is None and _finish_reason(response) == "MAX_TOKENS":
        # Thinking counts against max_output_tokens: the budget went to thoughts and no text is
        # left. Final (and billed): asking again buys the same empty answer.
        return Answer(
            text="",
            model=version,
            usage=usage,
            refusal="gemini: finish_reason MAX_TOKENS before any text (thinking used the whole"
            " max_output_tokens budget; raise max_new_tokens)",
        )
    if text is None:
        reason = ""
        if response.candidates:
            reason = f" (finish reason {_value(response.candidates[0].finish_reason)})"
        raise TransientError(f"Gemini response has no text{reason}")
    return Answer(text=text, model=version, usage=usage)


class GeminiBackend(Backend):
    name = "gemini"
    supports_batch = True
    max_batch_bytes = FILE_MAX_BYTES

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        timeout_s: float = 120,
        limits: OutputLimits | None = None,
    ) -> None:
        #: The endpoint's output cap and thinking budget, added to every request.
        self.limits = limits
        # attempts=1: the SDK never retries by itself; retry.py owns the policy.
        options = types.HttpOptions(
            base_url=base_url,
            timeout=int(timeout_s * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        self.client = genai.Client(api_key=api_key, http_options=options)
        #: Set once a per-day quota is exhausted or billing refuses: later calls fail at once,
        #: unsent.
        self.exhausted: AccountStoppedError | None = None
        #: tag -> uploaded input file, so that a retried submission does not upload again.
        self._uploaded: dict[str, str] = {}
        #: tags whose create call was sent but not confirmed (the reply may have been lost).
        self._unconfirmed: set[str] = set()

    async def _call(self, coro: Any) -> Any:
        if self.exhausted is not None:
            coro.close()
            raise self.exhausted
        try:
            return await coro
        except BaseException as exc:
            translated = _translate(exc)
            if translated is exc:
                raise
            if isinstance(translated, AccountStoppedError):
                self.exhausted = translated
            raise translated from exc

    async def agenerate(self, request: ChatRequest) -> Answer:
        _, contents = split_messages(request)
        response = await self._call(
            self.client.aio.models.generate_content(
                model=request.model,
                contents=contents,
                config=generation_config(request, self.limits),
            )
        )
        return answer_from_response(response, request.model)

    # Batch Mode -----------------------------------------------------------------------------
    def batch_line(self, request: ChatRequest) -> bytes:
        """One line of the JSONL input file: ``{"key": ..., "request": GenerateContentRequest}``."""
        line = {"key": request.key, "request": rest_request(request, self.limits)}
        return (canonical_json(line) + "\n").encode("utf-8")

    async def _upload(self, tag: str, requests: list[ChatRequest]) -> str:
        if tag not in self._uploaded:
            data = b"".join(self.batch_line(r) for r in requests)
            uploaded = await self._call(
                self.client.aio.files.upload(
                    file=io.BytesIO(data),
                    config=types.UploadFileConfig(display_name=tag, mime_type="jsonl"),
                )
            )
            self._uploaded[tag] = uploaded.name
        return self._uploaded[tag]

    async def submit_batch(self, tag: str, requests: list[ChatRequest]) -> str:
        models = {r.model for r in requests}
        if len(models) != 1:
            raise PermanentError(f"a Gemini batch needs one model, got {sorted(models)}")
        if tag in self._unconfirmed and (existing := await self.find_batch(tag)) is not None:
            self._unconfirmed.discard(tag)
            return existing  # an earlier create succeeded but its reply was lost
        file_name = await self._upload(tag, requests)
        self._unconfirmed.add(tag)
        job = await self._call(
            self.client.aio.batches.create(
                model=models.pop(),
                src=file_name,
                config=types.CreateBatchJobConfig(display_name=tag),
            )
        )
        self._unconfirmed.discard(tag)
        self._uploaded.pop(tag, None)
        return job.name

    async def find_batch(self, tag: str) -> str | None:
        """The batch whose display name is ``tag`` (every page of the list), else None."""
        pager = await self._call(self.client.aio.batches.list())
        async for job in pager:
            if job.display_name == tag:
                return job.name
        return None

    async def poll_batch(self, batch_id: str) -> BatchPoll:
        job = await self._call(self.client.aio.batches.get(name=batch_id))
        state = str(job.state.value) if job.state is not None else "JOB_STATE_UNSPECIFIED"
        detail = job.error.message if job.error and job.error.message else state
        return BatchPoll(batch_state(state, batch_id), detail)

    async def batch_results(self, batch_id: str) -> BatchResults:
        job = await self._call(self.client.aio.batches.get(name=batch_id))
        model = job.model or ""
        results = BatchResults()
        unjoinable: list[str] = []
        if job.dest is not None and job.dest.file_name:
            data = await self._call(self.client.aio.files.download(file=job.dest.file_name))
            for number, raw in enumerate(jsonl_lines(bytes(data)), 1):
                if not raw.strip():
                    continue
                try:
                    line = json.loads(raw)
                    key = line.get("key") if isinstance(line, dict) else None
                except ValueError:
                    key, line = None, None
                if not key:
                    unjoinable.append(f"line {number} of {job.dest.file_name}")
                    continue
                _read_line(results, key, line, raw, model, batch_id)
        elif job.dest is not None and job.dest.inlined_responses:
            for number, item in enumerate(job.dest.inlined_responses, 1):
                # getattr: SDKs before ~1.5x drop the metadata of inlined responses.
                key = (getattr(item, "metadata", None) or {}).get(KEY_METADATA)
                if not key:
                    unjoinable.append(f"inlined response {number} (no metadata.{KEY_METADATA})")
                    continue
                error = item.error.message or str(item.error) if item.error is not None else None
                _read_item(results, key, item.response, error, model)
        if unjoinable:
            where = ", ".join(unjoinable[:3]) + (", ..." if len(unjoinable) > 3 else "")
            raise UnjoinableBatchError(
                f"Gemini batch {batch_id} finished but {len(unjoinable)} of its results carry no"
                f" request key ({where})"
                " and cannot be matched to their requests. The batch is not resubmitted, since"
                " every resubmission is paid again; answer these requests in real time"
                " (mode: realtime) instead."
            )
        return results

    async def cancel_batch(self, batch_id: str) -> None:
        await self._call(self.client.aio.batches.cancel(name=batch_id))

    async def aclose(self) -> None:
        with contextlib.suppress(AttributeError, RuntimeError):  # older SDKs: no aclose
            await self.client.aio.aclose()


def _message(error: Any) -> str | None:
    if not error:
        return None
    return str(error.get("message") or error) if isinstance(error, dict) else str(error)


def _read_line(
    results: BatchResults, key: str, line: dict[str, Any], raw: str, model: str, batch_id: str
) -> None:
    """One line of a results file: parsed leniently; a response that still cannot be read is a
    final error of its item (it was answered, and paid: buying it again would pay twice), and
    its raw line is kept."""
    error = line.get("error") or line.get("status")  # a google.rpc.Status
    response = line.get("response")
    if error or not isinstance(response, dict):
        _read_item(results, key, None, _message(error), model)
        return
    try:
        parsed = parse_response(response)
    except ValueError as exc:
        reason = str(exc).split("\n")[0]
        results.errors[key] = (
            f"unreadable result line of Gemini batch {batch_id} ({reason}); kept, not bought again"
        )
        results.deterministic.add(key)
        results.unreadable[key] = raw
        log.warning("Gemini batch %s: the result of %s cannot be read: %s", batch_id, key, exc)
        return
    _read_item(results, key, parsed, None, model)


def _read_item(
    results: BatchResults,
    key: str,
    response: types.GenerateContentResponse | None,
    error: str | None,
    model: str,
) -> None:
    """One batch result: an answer (or refusal), or the service's per-request error."""
    if error or response is None:
        results.errors[key] = f"batch item failed: {error or 'no response'}"
        return
    try:
        results.answers[key] = answer_from_response(response, model)
    except TransientError as exc:
        results.errors[key] = str(exc)
