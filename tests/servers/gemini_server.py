"""A Gemini API (v1beta) look-alike on 127.0.0.1 for the real google-genai client.

The SDK is pointed at it with ``http_options=types.HttpOptions(base_url=server.url)``. What it
serves, as the Gemini API documents it and google-genai calls it:

* ``models/{m}:generateContent`` (https://ai.google.dev/api/generate-content), with usage that
  counts thinking tokens (``usageMetadata.thoughtsTokenCount``), and safety blocks for planted
  prompts: ``finishReason`` SAFETY/PROHIBITED_CONTENT/... without content, or
  ``promptFeedback.blockReason`` without candidates.
* Errors as the API sends them (https://ai.google.dev/gemini-api/docs/troubleshooting): a 429
  carries ``google.rpc.QuotaFailure`` and ``google.rpc.RetryInfo`` (``retryDelay: "17s"``) in
  ``error.details`` and no ``Retry-After`` header; a fault can also drop the connection.
* The resumable file upload of ``files.upload`` (``upload/v1beta/files`` start, then the
  ``X-Goog-Upload-URL`` with ``upload, finalize``; google-genai ``_api_client._async_upload_fd``)
  and ``files/{id}:download?alt=media`` (``files.download``).
* Batch Mode (https://ai.google.dev/gemini-api/docs/batch-mode): ``models/{m}:batchGenerateContent``
  from an uploaded JSONL file (``inputConfig.fileName``) whose result file lines are
  ``{"key", "response"}`` in SHUFFLED order; or from inlined requests, whose responses, like the
  real service at times (python-genai issue #2008), do not echo ``metadata`` unless
  ``echo_metadata`` is set. ``batches`` lists in pages (``pageSize``/``pageToken``).

* Awkward batch endings, as the API and google-genai report them: a job that ends
  ``BATCH_STATE_EXPIRED`` (no results; google-genai 1.22 passes that name through unmapped,
  ``_transformers.t_job_state`` maps it only from 1.39) or in a state name no SDK knows
  (``batch_outcomes``); result lines with fields newer than the SDK (``extra_fields``: the
  response's ``modelStatus``, added to google-genai's ``GenerateContentResponse`` only in 1.69,
  an unknown field inside each candidate, and an unknown top-level field of the line); result
  lines whose response is invalid even so (``unreadable_results``); and answers written raw,
  not ASCII-escaped (JSON allows U+2028, U+2029 and U+0085 inside strings), split on "\n" only.
  Batch creations are counted by route in ``counts`` (``POST .../models/m:batchGenerateContent``).

``answer_fn`` gets messages in OpenAI form (system instruction first, ``model`` turns as
``assistant``).
"""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from .base import AnswerFn, LocalServer, Reply, approx_tokens, conversation_id

UPLOAD_PATH = re.compile(r"^/upload/v1(beta)?/files$")
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
#: Planted prompts (last user message) -> ("finish", reason) or ("prompt", block reason).
DEFAULT_BLOCKS = {
    "BLOCK finish SAFETY": ("finish", "SAFETY"),
    "BLOCK finish PROHIBITED_CONTENT": ("finish", "PROHIBITED_CONTENT"),
    "BLOCK finish BLOCKLIST": ("finish", "BLOCKLIST"),
    "BLOCK finish SPII": ("finish", "SPII"),
    "BLOCK finish RECITATION": ("finish", "RECITATION"),
    "BLOCK prompt SAFETY": ("prompt", "SAFETY"),
    "BLOCK prompt PROHIBITED_CONTENT": ("prompt", "PROHIBITED_CONTENT"),
}


@dataclass
class GeminiFault:
    """One scripted failure of a generateContent call.

    ``status`` with the API's JSON error body; for 429 a ``retry_delay`` ("17s") and the
    ``quota_id`` of the violated quota go into ``error.details``. ``retry_after`` adds a
    ``Retry-After`` header (Gemini sends none; only for tests of that path), ``malformed`` sends
    a broken body, ``drop`` closes the connection without a response. ``quota_ids`` lists several
    violated quotas in one QuotaFailure (a per-minute 429 may list the per-day quota next to it);
    ``message`` replaces the API's text (billing refusals: "Your prepayment credits are
    depleted. ..." on a 429, "... enable billing ..." on a 400 FAILED_PRECONDITION) and
    ``reason`` adds a ``google.rpc.ErrorInfo`` with that reason (e.g. ``BILLING_DISABLED``).
    """

    status: int = 500
    retry_after: float | None = None
    malformed: bool = False
    retry_delay: str | None = None
    quota_id: str | None = None
    drop: bool = False
    quota_ids: tuple[str, ...] = ()
    message: str | None = None
    reason: str | None = None


def error_body(status: int, message: str, details: list[dict[str, Any]] | None = None) -> dict:
    names = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED"}
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": names.get(status, "UNAVAILABLE" if status >= 500 else "FAILED_PRECONDITION"),
    }
    if details:
        error["details"] = details
    return {"error": error}


def quota_details(
    model: str, quota_id: str | tuple[str, ...], retry_delay: str | None
) -> list[dict[str, Any]]:
    """``error.details`` of a Gemini 429: the violated quota(s), a help link, the retry delay."""
    ids = (quota_id,) if isinstance(quota_id, str) else quota_id
    details: list[dict[str, Any]] = [
        {
            "@type": QUOTA_FAILURE,
            "violations": [
                {
                    "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                    "quotaId": one,
                    "quotaDimensions": {"location": "global", "model": model},
                    "quotaValue": "1000",
                }
                for one in ids
            ],
        },
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [
                {
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }
            ],
        },
    ]
    if retry_delay is not None:
        details.append({"@type": RETRY_INFO, "retryDelay": retry_delay})
    return details


def to_messages(request: dict[str, Any]) -> list[dict[str, str]]:
    messages = []
    system = request.get("systemInstruction") or request.get("system_instruction")
    if system:
        messages.append({"role": "system", "content": "".join(p["text"] for p in system["parts"])})
    for content in request.get("contents", []):
        role = "assistant" if content.get("role") == "model" else "user"
        messages.append({"role": role, "content": "".join(p["text"] for p in content["parts"])})
    return messages


class GeminiServer(LocalServer):
    def __init__(self, answer_fn: AnswerFn | None = None, latency: float = 0.0) -> None:
        super().__init__(answer_fn, latency)
        self.faults: deque[GeminiFault] = deque()  # consumed by the next generateContent calls
        self.blocks: dict[str, tuple[str, str]] = dict(DEFAULT_BLOCKS)
        self.thinking_tokens = 0  # thoughtsTokenCount of every answer (0 = field absent)
        self.files: dict[str, dict[str, Any]] = {}  # "files/x" -> File resource
        self.file_data: dict[str, bytes] = {}
        self._uploads: dict[str, dict[str, Any]] = {}
        self.upload_starts: list[dict[str, Any]] = []
        self.batches: dict[str, dict[str, Any]] = {}
        self.cancelled: list[str] = []  # batch names cancelled through batches.cancel
        self._inputs: dict[str, tuple[str, list[dict[str, Any]], bool]] = {}
        self._polls: dict[str, int] = {}
        self._ids = itertools.count(1)
        self.batch_polls_before_done = 1
        self.batch_drop_items = 0  # lose this many results of the next finished batch
        # How the next batches end: "succeeded" (default), "expired" (no results) or
        # "state:<NAME>" (that state name, e.g. one no SDK knows).
        self.batch_outcomes: deque[str] = deque()
        self.extra_fields = False  # result lines carry fields newer than the SDK
        self.unreadable_results = 0  # this many results of the next batch are invalid
        self.echo_metadata = False  # inlined batches: copy request metadata into responses
        self.create_reply_status: deque[int] = deque()  # create succeeds, then this reply
        self.list_page_size = 2  # batches per list page when the client asks for none
        self.shuffle = random.Random(0)
        self.requests_seen: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        """base_url for google-genai's HttpOptions."""
        return self.root

    def handle(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> Reply:
        lowered = {k.lower(): v for k, v in headers.items()}
        if method == "POST" and path.endswith(":generateContent"):
            model = path.split("/models/")[1].split(":")[0]
            return self._generate(model, json.loads(body))
        if method == "POST" and UPLOAD_PATH.match(path):  # the SDK uses v1 or v1beta here
            if "upload_id" in query:
                return self._upload_bytes(query["upload_id"][0], lowered, body)
            return self._upload_start(lowered, json.loads(body or b"{}"))
        if method == "GET" and path.endswith(":download"):
            name = "files/" + path.split("/files/")[1].split(":")[0]
            if name not in self.file_data:
                return Reply(404, error_body(404, f"no file {name}"))
            return Reply(200, raw=self.file_data[name], content_type="application/octet-stream")
        if method == "POST" and path.endswith(":batchGenerateContent"):
            model = path.split("/models/")[1].split(":")[0]
            return self._create(model, json.loads(body))
        if method == "GET" and path.rstrip("/").endswith("/batches"):
            return self._list(query)
        if method == "POST" and "/batches/" in path and path.endswith(":cancel"):
            return self._cancel("batches/" + path.split("/batches/")[1].split(":")[0])
        if method == "GET" and "/batches/" in path:
            return self._get("batches/" + path.split("/batches/")[1])
        return Reply(404, error_body(404, f"no route {method} {path}"))

    # Real time -------------------------------------------------------------------------------
    def response_for(self, model: str, request: dict[str, Any]) -> dict[str, Any]:
        messages = to_messages(request)
        prompt = sum(approx_tokens(m["content"]) for m in messages)
        block = self.blocks.get(messages[-1]["content"]) if messages else None
        if block is not None and block[0] == "prompt":
            return {
                "promptFeedback": {"blockReason": block[1]},
                "usageMetadata": {"promptTokenCount": prompt, "totalTokenCount": prompt},
                "modelVersion": model,
            }
        usage = {"promptTokenCount": prompt}
        generation = request.get("generationConfig") or {}
        # thinkingConfig.thinkingBudget caps the thinking (https://ai.google.dev/gemini-api/docs/
        # thinking, "Set budgets on thinking models"); the model may think less. Proto3 JSON
        # accepts a field's lowerCamelCase or its proto name
        # (https://protobuf.dev/programming-guides/json/), and google-genai's realtime path
        # sends thinkingConfig's fields as thinking_budget.
        thinking_config = generation.get("thinkingConfig") or {}
        thought_cap = thinking_config.get("thinkingBudget", thinking_config.get("thinking_budget"))
        thinking = self.thinking_tokens
        if thought_cap is not None:
            thinking = min(thinking, int(thought_cap))
        if thinking:
            usage["thoughtsTokenCount"] = thinking
        budget = generation.get("maxOutputTokens")
        if block is not None:
            candidate: dict[str, Any] = {"finishReason": block[1], "index": 0}
            output = 0
        elif budget is not None and thinking >= int(budget):
            # Thinking counts against maxOutputTokens: a thinking model that spends the whole
            # budget thinking ends with MAX_TOKENS and no text part (reported in
            # googleapis/python-genai issues about empty ``response.text`` on 2.5 models).
            usage["thoughtsTokenCount"] = int(budget)
            candidate = {"finishReason": "MAX_TOKENS", "index": 0}
            output = 0
        else:
            text = self.answer_fn(messages)
            output = approx_tokens(text)
            usage["candidatesTokenCount"] = output
            candidate = {
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": "STOP",
                "index": 0,
            }
        usage["totalTokenCount"] = prompt + output + usage.get("thoughtsTokenCount", 0)
        return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model}

    def _fault_reply(self, model: str, fault: GeminiFault) -> Reply:
        # getattr: an openai_server.Fault (status, retry_after, malformed) works here too.
        if getattr(fault, "drop", False):
            return Reply(drop=True)
        if fault.malformed:
            return Reply(200, raw=b'{"candidates": [ not json')
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        details: list[dict[str, Any]] = []
        custom = getattr(fault, "message", None)
        if fault.status == 429 and custom is None:
            quota = (
                getattr(fault, "quota_ids", ())
                or getattr(fault, "quota_id", None)
                or "GenerateRequestsPerMinutePerProjectPerModel"
            )
            details = quota_details(model, quota, getattr(fault, "retry_delay", None))
        if getattr(fault, "reason", None):
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": fault.reason,
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            )
        message = custom or (
            "You exceeded your current quota, please check your plan and billing details."
            if fault.status == 429
            else f"scripted {fault.status}"
        )
        return Reply(fault.status, error_body(fault.status, message, details or None), headers)

    def _generate(self, model: str, request: dict[str, Any]) -> Reply:
        with self.lock:
            self.requests_seen.append(request)
        cid = self.note_received(to_messages(request))
        with self.lock:
            fault = self.faults.popleft() if self.faults else None
        if fault is not None:
            return self._fault_reply(model, fault)
        if not self.wait_latency_and_gate():
            return Reply(503, error_body(503, "held request released"))
        reply = self.response_for(model, request)
        self.note_answered(cid)
        return Reply(200, reply)

    # Files -----------------------------------------------------------------------------------
    def _upload_start(self, headers: dict[str, str], body: dict[str, Any]) -> Reply:
        if headers.get("x-goog-upload-protocol") != "resumable":
            return Reply(400, error_body(400, "expected X-Goog-Upload-Protocol: resumable"))
        upload_id = f"u{next(self._ids)}"
        self.upload_starts.append(body)
        self._uploads[upload_id] = {
            "file": body.get("file") or {},
            "mime": headers.get("x-goog-upload-header-content-type"),
            "size": int(headers.get("x-goog-upload-header-content-length", "0")),
        }
        url = f"{self.root}/upload/v1beta/files?upload_id={upload_id}&upload_protocol=resumable"
        return Reply(200, {}, {"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"})

    def _upload_bytes(self, upload_id: str, headers: dict[str, str], body: bytes) -> Reply:
        upload = self._uploads.get(upload_id)
        if upload is None:
            return Reply(404, error_body(404, f"no upload {upload_id}"))
        upload.setdefault("data", b"")
        upload["data"] += body
        if "finalize" not in headers.get("x-goog-upload-command", ""):
            return Reply(200, {}, {"X-Goog-Upload-Status": "active"})
        name = f"files/f{next(self._ids)}"
        resource = {
            "name": name,
            "displayName": upload["file"].get("displayName"),
            "mimeType": upload["file"].get("mimeType") or upload["mime"],
            "sizeBytes": str(len(upload["data"])),
            "state": "ACTIVE",
            "source": "UPLOADED",
        }
        self.files[name] = resource
        self.file_data[name] = upload.pop("data")
        return Reply(200, {"file": resource}, {"X-Goog-Upload-Status": "final"})

    # Batch Mode ------------------------------------------------------------------------------
    def _create(self, model: str, body: dict[str, Any]) -> Reply:
        batch = body["batch"]
        source = batch["inputConfig"]
        if "fileName" in source:
            if source["fileName"] not in self.file_data:
                return Reply(400, error_body(400, f"unknown input file {source['fileName']}"))
            raw = self.file_data[source["fileName"]].decode("utf-8").split("\n")
            items, from_file = [json.loads(line) for line in raw if line.strip()], True
        else:
            items, from_file = source["requests"]["requests"], False
        name = f"batches/b{next(self._ids)}"
        with self.lock:
            self._inputs[name] = (model, items, from_file)
            self._polls[name] = 0
            self.batches[name] = {
                "name": name,
                "metadata": {
                    "@type": "type.googleapis.com/"
                    "google.ai.generativelanguage.v1beta.GenerateContentBatch",
                    "model": f"models/{model}",
                    "displayName": batch.get("displayName"),
                    "state": "BATCH_STATE_PENDING",
                    "createTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
            }
            lost = self.create_reply_status.popleft() if self.create_reply_status else None
        if lost is not None:  # created, but the client never learns it
            return Reply(lost, error_body(lost, "internal error"))
        return Reply(200, self.batches[name])

    def _list(self, query: dict[str, list[str]]) -> Reply:
        size = int(query.get("pageSize", [self.list_page_size])[0])
        start = int(query.get("pageToken", ["0"])[0] or 0)
        with self.lock:
            newest_first = list(reversed(self.batches.values()))
        page: dict[str, Any] = {"operations": newest_first[start : start + size]}
        if start + size < len(newest_first):
            page["nextPageToken"] = str(start + size)
        return Reply(200, page)

    def _get(self, name: str) -> Reply:
        operation = self.batches.get(name)
        if operation is None:
            return Reply(404, error_body(404, f"no {name}"))
        with self.lock:
            meta = operation["metadata"]
            if meta["state"] in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"):
                self._polls[name] += 1
                if self._polls[name] > self.batch_polls_before_done:
                    self._finish(name, operation)
                else:
                    meta["state"] = "BATCH_STATE_RUNNING"
        return Reply(200, operation)

    def _cancel(self, name: str) -> Reply:
        """``POST /v1beta/batches/{name}:cancel`` (https://ai.google.dev/api/batch-mode, "Method:
        batches.cancel"; the SDK's ``batches.py`` ``cancel`` posts ``{name}:cancel`` and
        expects an empty body): a pending or running job ends ``BATCH_STATE_CANCELLED``."""
        operation = self.batches.get(name)
        if operation is None:
            return Reply(404, error_body(404, f"no {name}"))
        with self.lock:
            meta = operation["metadata"]
            if meta["state"] in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"):
                meta["state"] = "BATCH_STATE_CANCELLED"
                operation["done"] = True
                self.cancelled.append(name)
        return Reply(200, {})

    def _finish(self, name: str, operation: dict[str, Any]) -> None:
        outcome = self.batch_outcomes.popleft() if self.batch_outcomes else "succeeded"
        if outcome != "succeeded":
            meta = operation["metadata"]
            meta["state"] = (
                "BATCH_STATE_EXPIRED" if outcome == "expired" else outcome.partition(":")[2]
            )
            if outcome == "expired":  # ended before answering: no output, nothing billed
                operation["done"] = True
            return
        model, items, from_file = self._inputs[name]
        keep = items[: len(items) - self.batch_drop_items]
        outputs = []
        for item in keep:
            request = item["request"]
            cid = conversation_id(to_messages(request))
            self.received[cid] += 1
            self.requests_seen.append(request)
            result: dict[str, Any] = {"response": self.response_for(model, request)}
            if self.extra_fields:
                result["response"]["modelStatus"] = {
                    "modelStage": "STABLE",
                    "retirementTime": "2027-06-01T00:00:00Z",
                    "message": "a field newer than the SDK",
                }
                for candidate in result["response"].get("candidates", []):
                    candidate["groundingStatus"] = {"grounded": False}
                result["processingInfo"] = {"region": "test", "attempt": 1}
            if len(outputs) < self.unreadable_results:
                result["response"]["usageMetadata"]["promptTokenCount"] = "not a number"
            if from_file:
                result["key"] = item["key"]
            elif self.echo_metadata and "metadata" in item:
                result["metadata"] = item["metadata"]
            outputs.append(result)
            self.answered[cid] += 1
        self.shuffle.shuffle(outputs)  # joining by position would be wrong
        meta = operation["metadata"]
        if from_file:
            out_name = f"files/batch-{name.split('/')[1]}"
            # UTF-8, not ASCII-escaped: a raw U+2028 in an answer stays one character.
            self.file_data[out_name] = "".join(
                json.dumps(o, ensure_ascii=False) + "\n" for o in outputs
            ).encode("utf-8")
            self.files[out_name] = {"name": out_name, "source": "GENERATED"}
            output: dict[str, Any] = {"responsesFile": out_name}
        else:
            output = {"inlinedResponses": {"inlinedResponses": outputs}}
        meta["output"] = output
        meta["state"] = "BATCH_STATE_SUCCEEDED"
        operation["done"] = True
        operation["response"] = {
            "@type": "type.googleapis.com/"
            "google.ai.generativelanguage.v1beta.GenerateContentBatchOutput",
            **output,
        }
        self.batch_drop_items = self.unreadable_results = 0
