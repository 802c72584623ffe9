"""An OpenAI-compatible HTTP server on 127.0.0.1 that the real ``openai`` client talks to.

Serves chat completions, file upload/content, and batches (create, retrieve, list). Faults are
scripted: latency, 429 with Retry-After, 5xx, malformed bodies, a lost batch line, failed or
erroring batch items, a batch that ends ``failed`` or ``expired``, a batch created whose create
reply is lost (500 or a dropped connection). ``answer_fn(messages) -> str`` decides every answer,
so the same server is a teacher or a rule-based judge, e.g.::

    with OpenAIServer(answer_fn=lambda messages: "1") as server:
        endpoint = {"backend": "openai_compatible", "model": "gpt-4o", "base_url": server.url}

What it models of the real API, as documented (and as the openai SDK parses it):

* Chat completion object (https://platform.openai.com/docs/api-reference/chat/object):
  ``usage.completion_tokens`` includes reasoning tokens, broken down in
  ``usage.completion_tokens_details.reasoning_tokens`` (``reasoning_tokens`` per answer here);
  a safety block is ``finish_reason: "content_filter"`` (content omitted) or a non-null
  ``message.refusal`` (last user turn containing ``FILTER`` / ``REFUSE``).
* Errors (https://platform.openai.com/docs/guides/error-codes): a prompt over the context
  window (``TOO_LONG``) is HTTP 400 ``invalid_request_error`` / ``context_length_exceeded``;
  reasoning models reject ``max_tokens`` with 400 ``unsupported_parameter`` (they take
  ``max_completion_tokens``, https://platform.openai.com/docs/guides/reasoning), and a
  ``temperature`` / ``top_p`` other than 1 with 400 ``unsupported_value`` (bodies as reported in
  the issue threads cited at ``rejection``); other models reject ``reasoning_effort``.
* Batch output and error files (https://platform.openai.com/docs/guides/batch): UTF-8 JSONL,
  one object per "\n"; strings are not ASCII-escaped, so an answer may hold U+2028. A request
  the endpoint rejected goes to the error file with ``response.status_code`` and
  ``response.body.error``. A batch failing validation ends ``failed`` with ``errors.data[]`` of
  ``{code, message, param, line}`` (Batch object,
  https://platform.openai.com/docs/api-reference/batch/object).
* The organisation's batch queue (Batch guide, "Rate limits": enqueued prompt tokens per
  model): with ``enqueued_token_limit`` set, a batch whose prompt tokens (this server's count)
  would take the tokens of the batches still ``validating``/``in_progress`` past it is created,
  then fails validation: ``status: failed``, ``errors.data[0].code: token_limit_exceeded`` and
  the API's message ("Enqueued token limit reached for <model> in organization <org>. Limit:
  <n> enqueued tokens. Please try again once some in_progress batches have been completed.").
* Billing: a Fault with ``code="insufficient_quota"`` is the 429 the API sends when the account
  has no credit ("You exceeded your current quota, please check your plan and billing
  details...", type and code ``insufficient_quota``, error-codes guide); ``retry_after_ms``
  sends the ``retry-after-ms`` header the API adds to rate-limit 429s (the openai SDK reads it
  first, ``_base_client._parse_retry_after_header``).
* Fine-tuning (https://platform.openai.com/docs/api-reference/fine-tuning, object shapes as the
  SDK parses them: ``openai/types/fine_tuning/fine_tuning_job.py``, ``fine_tuning_job_event.py``,
  routes as ``openai/resources/fine_tuning/jobs/jobs.py`` calls them): ``POST /v1/files``
  (purpose ``fine-tune``), ``GET /v1/files`` (list, ``purpose`` filter), ``POST /v1/fine_tuning/
  jobs``, ``GET /v1/fine_tuning/jobs`` (newest first, ``limit``/``after``, ``metadata[k]=v``
  filter), ``GET .../jobs/{id}``, ``GET .../jobs/{id}/events``, ``POST .../jobs/{id}/cancel``.
  Each retrieve moves a job one step along ``validating_files`` -> ``queued`` -> ``running`` ->
  ``succeeded``; ``fine_tuned_model`` and ``trained_tokens`` stay null until it succeeds,
  ``estimated_finish`` is set while it runs. A file of fewer than 10 examples fails validation
  (``error: {code: invalid_n_examples, message, param: training_file}``, the documented minimum,
  https://platform.openai.com/docs/guides/fine-tuning); ``ft_outcomes`` scripts a failure while
  running; ``ft_faults`` a 429 (with Retry-After) or 5xx on the next call of one operation;
  ``create_job_faults`` a job created whose create reply is lost.
* Embeddings (https://platform.openai.com/docs/api-reference/embeddings/create and the object
  https://platform.openai.com/docs/api-reference/embeddings/object; the SDK's
  ``resources/embeddings.py`` and ``lib/_parsing/_embeddings.py``): ``POST /v1/embeddings`` with
  ``input`` (a string or a list of at most 2048 non-empty strings, 300,000 tokens summed) answers
  ``{"object": "list", "data": [{"object": "embedding", "index": i, "embedding": ...}],
  "model", "usage": {"prompt_tokens", "total_tokens"}}``. ``embedding`` is a list of floats, or
  with ``encoding_format: "base64"`` (what the SDK sends when its caller gives none) the base64 of
  the little-endian float32 bytes, which the SDK decodes. ``data`` comes back shuffled (the API
  promises only ``index``); a limit exceeded is HTTP 400 ``invalid_request_error``;
  ``embedding_faults`` scripts a 429 with Retry-After (or a 5xx) on the next requests.
  ``embed_fn(text) -> list[float]`` decides the vectors (default: 8 hash-derived numbers).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import random
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from typing import Any

from .base import AnswerFn, LocalServer, Reply, approx_tokens, conversation_id

#: Markers in the last user turn that script what the model does with a request.
REFUSE = "[refuse]"
FILTER = "[content_filter]"
TOO_LONG = "[too long]"
REFUSAL_TEXT = "I'm sorry, but I can't help with that."
#: Model names taken as reasoning models (max_completion_tokens, reasoning-token usage).
REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")


#: The embeddings API's per-request limits (embeddings.create docs).
MAX_EMBEDDING_INPUTS = 2048
MAX_EMBEDDING_TOKENS = 300_000


def hash_embedding(text: str, dim: int = 8) -> list[float]:
    """A deterministic vector per text, float32-exact (so float and base64 forms agree)."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [struct.unpack("<f", struct.pack("<f", (b - 127.5) / 127.5))[0] for b in digest[:dim]]


@dataclass
class Fault:
    """One scripted failure of a chat request: HTTP ``status`` or a ``malformed`` body."""

    status: int = 500
    retry_after: float | None = None
    malformed: bool = False
    code: str | None = None  # error.code (and type), e.g. "insufficient_quota"
    retry_after_ms: float | None = None


#: The API's text for a 429 ``insufficient_quota`` (error-codes guide).
INSUFFICIENT_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more"
    " information on this error, read the docs:"
    " https://platform.openai.com/docs/guides/error-codes/api-errors."
)


def fault_reply(fault: Fault) -> Reply:
    """The error reply of a scripted chat fault: status, headers and the API's error body."""
    headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
    if fault.retry_after_ms is not None:
        headers["retry-after-ms"] = str(fault.retry_after_ms)
    error: dict[str, Any] = {"message": f"scripted {fault.status}", "type": "test"}
    if fault.code == "insufficient_quota":
        error = {"message": INSUFFICIENT_QUOTA, "type": fault.code, "param": None}
    if fault.code is not None:
        error["code"] = fault.code
    return Reply(fault.status, {"error": error}, headers)


def prompt_tokens(line: dict[str, Any]) -> int:
    """This server's prompt tokens of one batch input line."""
    return sum(approx_tokens(m["content"]) for m in line["body"]["messages"])


class OpenAIServer(LocalServer):
    def __init__(self, answer_fn: AnswerFn | None = None, latency: float = 0.0) -> None:
        super().__init__(answer_fn, latency)
        self.faults: deque[Fault] = deque()  # consumed by the next chat requests, in order
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._batch_polls: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._id_lock = threading.Lock()
        # Batch behaviour (applied when a batch finishes, then reset to the defaults).
        self.batch_polls_before_done = 1
        self.batch_outcomes: deque[str] = deque()  # "completed" (default) | "failed" | "expired"
        self.batch_drop_lines = 0  # lose this many output lines of the next finished batch
        self.batch_error_items = 0  # report this many items of the next batch as errors
        self.batch_malformed_lines = 0  # add this many unreadable lines to the next output
        # Next batch creations: "lost:500" / "lost:drop" = created, then the reply is lost (HTTP
        # 500 / connection dropped); "reject:403" = refused with that status, nothing created.
        self.create_batch_faults: deque[str] = deque()
        # The organisation's enqueued-token limit across batches in flight (None: no limit).
        self.enqueued_token_limit: int | None = None
        self.batch_tokens: dict[str, int] = {}  # batch id -> its enqueued prompt tokens
        self._over_limit: set[str] = set()  # batches that fail validation on the queue limit
        self.reasoning_tokens = 0  # hidden reasoning tokens billed with every answer
        self.bodies: list[dict[str, Any]] = []  # every chat body, real time and batch lines
        # Fine-tuning: uploaded file objects, jobs (creation order), their events.
        self.file_objects: dict[str, dict[str, Any]] = {}
        self.ft_jobs: dict[str, dict[str, Any]] = {}
        self.ft_events: dict[str, list[dict[str, Any]]] = {}
        # Next job outcomes: "succeeded" (default) or "failed:<code>" (fails while running).
        self.ft_outcomes: deque[str] = deque()
        # (operation, Fault): the next call of that operation ("upload", "create", "retrieve",
        # "list") gets the fault's status instead of an answer; nothing happens on the server.
        self.ft_faults: deque[tuple[str, Fault]] = deque()
        # Next job creations: "lost:500" / "lost:drop" = created, then the reply is lost.
        self.create_job_faults: deque[str] = deque()
        self.ft_trained_epochs_auto = 3  # what n_epochs "auto" resolves to on this server
        # Embeddings: the vector of a text, every request body, scripted faults (in order).
        self.embed_fn: Callable[[str], list[float]] = hash_embedding
        self.embedding_bodies: list[dict[str, Any]] = []
        self.embedding_faults: deque[Fault] = deque()
        # The bill: what the API charges for, as it charges it (usage of every answer sent, by
        # mode; embedding input tokens; trained tokens of succeeded jobs). ``fill_to_limit``:
        # every answer is as long as the request's max_tokens / max_completion_tokens allow,
        # the longest (dearest) answer a request can get.
        self.fill_to_limit = False
        self._bill_lock = threading.Lock()
        self.bill: dict[str, dict[str, int]] = {
            mode: {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0}
            for mode in ("realtime", "batch", "embeddings", "training")
        }

    def charge(self, mode: str, prompt: int, completion: int = 0) -> None:
        with self._bill_lock:
            entry = self.bill[mode]
            entry["requests"] += 1
            entry["prompt_tokens"] += prompt
            entry["completion_tokens"] += completion

    def bill_usd(self, prices: dict[str, tuple[float, float]]) -> float:
        """The bill priced: ``prices[mode] = (input, output)`` USD per 1M tokens (training:
        (per 1M trained tokens, 0))."""
        with self._bill_lock:
            return sum(
                (e["prompt_tokens"] * prices[m][0] + e["completion_tokens"] * prices[m][1]) / 1e6
                for m, e in self.bill.items()
                if e["requests"]
            )

    @property
    def url(self) -> str:
        """base_url for the openai client."""
        return f"{self.root}/v1"

    def _new_id(self, prefix: str) -> str:
        with self._id_lock:
            return f"{prefix}-{next(self._ids)}"

    # Routing ---------------------------------------------------------------------------------
    def handle(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> Reply:
        if method == "POST" and path == "/v1/chat/completions":
            return self._chat(json.loads(body))
        if method == "POST" and path == "/v1/embeddings":
            return self._embeddings(json.loads(body))
        if (fault := self._ft_fault(method, path)) is not None:
            return fault
        if method == "POST" and path == "/v1/files":
            return self._upload(headers, body)
        if method == "GET" and path == "/v1/files":
            purpose = query.get("purpose", [None])[0]
            data = [f for f in self.file_objects.values() if purpose in (None, f["purpose"])]
            return Reply(200, {"object": "list", "data": data[::-1], "has_more": False})
        if path.startswith("/v1/fine_tuning/jobs"):
            return self._fine_tuning(method, path, query, body)
        if method == "GET" and path.startswith("/v1/files/") and path.endswith("/content"):
            file_id = path.split("/")[3]
            if file_id not in self.files:
                return Reply(404, {"error": {"message": f"no file {file_id}"}})
            return Reply(200, raw=self.files[file_id], content_type="application/octet-stream")
        if method == "POST" and path == "/v1/batches":
            return self._create_batch(json.loads(body))
        if method == "GET" and path == "/v1/batches":
            data = list(reversed(self.batches.values()))
            return Reply(
                200,
                {
                    "object": "list",
                    "data": data,
                    "has_more": False,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None,
                },
            )
        if method == "POST" and path.startswith("/v1/batches/") and path.endswith("/cancel"):
            return self._cancel_batch(path.split("/")[3])
        if method == "GET" and path.startswith("/v1/batches/"):
            return self._retrieve_batch(path.split("/")[3])
        return Reply(404, {"error": {"message": f"no route {method} {path}"}})

    def _cancel_batch(self, batch_id: str) -> Reply:
        """``POST /v1/batches/{id}/cancel`` (https://platform.openai.com/docs/api-reference/batch/
        cancel; the SDK's ``resources/batches.py`` ``cancel``): a running batch turns
        ``cancelling`` and, at its next retrieve, ``cancelled``; a finished one is a 400."""
        batch = self.batches.get(batch_id)
        if batch is None:
            return Reply(404, {"error": {"message": f"no batch {batch_id}"}})
        if batch["status"] in ("completed", "failed", "expired", "cancelled"):
            return Reply(
                400,
                {
                    "error": {
                        "message": f"Cannot cancel a batch with status '{batch['status']}'.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
            )
        batch["status"] = "cancelled"
        batch["cancelled_at"] = int(time.time())
        self.counts["cancelled"] = self.counts.get("cancelled", 0) + 1
        return Reply(200, {**batch, "status": "cancelling"})

    # Chat ------------------------------------------------------------------------------------
    @staticmethod
    def rejection(body: dict[str, Any]) -> dict[str, Any] | None:
        """The 400 error body the API answers this request with, or None if it is valid."""
        reasoning = str(body["model"]).startswith(REASONING_PREFIXES)
        if reasoning and "max_tokens" in body:
            return {
                "message": "Unsupported parameter: 'max_tokens' is not supported with this"
                " model. Use 'max_completion_tokens' instead.",
                "type": "invalid_request_error",
                "param": "max_tokens",
                "code": "unsupported_parameter",
            }
        for param in ("temperature", "top_p"):
            # Reasoning models refuse any value but the default 1, with these exact bodies
            # (gpt-5: github.com/gabrii/Cursor-Azure-GPT-5/issues/33; o1-mini:
            # github.com/OpenHands/OpenHands/issues/4131; o3 / o3-mini:
            # github.com/BeehiveInnovations/pal-mcp-server/issues/78).
            if reasoning and param in body and body[param] != 1:
                return {
                    "message": f"Unsupported value: '{param}' does not support {body[param]!r}"
                    " with this model. Only the default (1) value is supported.",
                    "type": "invalid_request_error",
                    "param": param,
                    "code": "unsupported_value",
                }
        if not reasoning and "reasoning_effort" in body:
            return {
                "message": "Unsupported parameter: 'reasoning_effort' is not supported with this"
                " model.",
                "type": "invalid_request_error",
                "param": "reasoning_effort",
                "code": "unsupported_parameter",
            }
        if TOO_LONG in body["messages"][-1]["content"]:
            return {
                "message": "This model's maximum context length is 128000 tokens. However,"
                " your messages resulted in 130000 tokens.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        return None

    def completion(self, body: dict[str, Any], mode: str = "realtime") -> dict[str, Any]:
        messages = body["messages"]
        last = messages[-1]["content"]
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        finish = "stop"
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if REFUSE in last:
            message["refusal"] = text = REFUSAL_TEXT
        elif FILTER in last:
            text, finish = "", "content_filter"
        elif self.fill_to_limit and limit is not None:
            # reasoning tokens count against the limit (the API docs of max_completion_tokens)
            text = "word" * max(0, int(limit) - self.reasoning_tokens)
            message["content"], finish = text, "length"
        else:
            message["content"] = text = self.answer_fn(messages)
        prompt = sum(approx_tokens(m["content"]) for m in messages)
        output = approx_tokens(text) + self.reasoning_tokens
        self.charge(mode, prompt, output)
        return {
            "id": self._new_id("chatcmpl"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": output,
                "total_tokens": prompt + output,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": self.reasoning_tokens,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
        }

    def _chat(self, body: dict[str, Any]) -> Reply:
        cid = self.note_received(body["messages"])
        with self.lock:
            self.bodies.append(body)
            fault = self.faults.popleft() if self.faults else None
        if fault is not None:
            if fault.malformed:
                return Reply(200, raw=b'{"choices": [ this is not json')
            return fault_reply(fault)
        if not self.wait_latency_and_gate():
            return Reply(
                503, raw=b'{"error": {"message": "held request released", "type": "test"}}'
            )
        if (error := self.rejection(body)) is not None:
            return Reply(400, {"error": error})
        reply = self.completion(body)
        self.note_answered(cid)
        return Reply(200, reply)

    # Embeddings ------------------------------------------------------------------------------
    def _embeddings(self, body: dict[str, Any]) -> Reply:
        with self.lock:
            self.embedding_bodies.append(body)
            fault = self.embedding_faults.popleft() if self.embedding_faults else None
        if fault is not None:
            headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            kind = "rate_limit_exceeded" if fault.status == 429 else "server_error"
            error = {"message": f"scripted {fault.status}", "type": kind}
            return Reply(fault.status, {"error": error}, headers)
        inputs = body["input"]
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        tokens = sum(approx_tokens(t) for t in inputs)
        invalid = {"type": "invalid_request_error", "param": None, "code": None}
        if not inputs or len(inputs) > MAX_EMBEDDING_INPUTS or any(t == "" for t in inputs):
            message = "'$.input' is invalid. Please check the API reference."
            return Reply(400, {"error": {"message": message, **invalid}})
        if tokens > MAX_EMBEDDING_TOKENS:
            message = f"Requested {tokens} tokens, max {MAX_EMBEDDING_TOKENS} tokens per request"
            return Reply(400, {"error": {"message": message, **invalid}})
        self.charge("embeddings", tokens)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector = [float(x) for x in self.embed_fn(text)]
            packed = struct.pack(f"<{len(vector)}f", *vector)
            value: Any = base64.b64encode(packed).decode() if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": value})
        # Shuffled (never the input order when there are two or more): the API promises
        # only ``index``.
        order = list(range(len(data)))
        random.Random(len(data)).shuffle(order)
        if len(order) > 1 and order == sorted(order):
            order.reverse()
        return Reply(
            200,
            {
                "object": "list",
                "data": [data[i] for i in order],
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    # Files -----------------------------------------------------------------------------------
    def _upload(self, headers: dict[str, str], body: bytes) -> Reply:
        content_type = next(v for k, v in headers.items() if k.lower() == "content-type")
        message = BytesParser(policy=policy.default).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[name] = (part.get_filename(), part.get_payload(decode=True))
        filename, data = fields["file"]
        file_id = self._new_id("file")
        self.files[file_id] = data
        uploaded = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename or "upload",
            "purpose": fields["purpose"][1].decode(),
            "status": "processed",
        }
        with self.lock:
            self.file_objects[file_id] = uploaded
        return Reply(200, uploaded)

    # Batches ---------------------------------------------------------------------------------
    def _create_batch(self, body: dict[str, Any]) -> Reply:
        if body["input_file_id"] not in self.files:
            return Reply(400, {"error": {"message": "unknown input_file_id"}})
        batch_id = self._new_id("batch")
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "input_file_id": body["input_file_id"],
            "completion_window": body["completion_window"],
            "status": "validating",
            "created_at": int(time.time()),
            "metadata": body.get("metadata"),
            "output_file_id": None,
            "error_file_id": None,
            "errors": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
        }
        with self.lock:
            fault = self.create_batch_faults.popleft() if self.create_batch_faults else ""
            kind, _, what = fault.partition(":")
            if kind == "reject":  # refused, nothing created (e.g. 403 for a key without access)
                error = {"message": "scripted refusal", "type": "invalid_request_error"}
                return Reply(int(what), {"error": error})
            self.batches[batch_id] = batch
            self._batch_polls[batch_id] = 0
            self._enqueue_locked(batch_id, body)
        if kind == "lost" and what == "drop":  # created, then the connection drops
            return Reply(drop=True)
        if kind == "lost":  # created, then the reply is a server error
            error = {"message": "scripted error", "type": "server_error"}
            return Reply(int(what), {"error": error})
        return Reply(200, batch)

    def _enqueue_locked(self, batch_id: str, body: dict[str, Any]) -> None:
        """Count the batch's prompt tokens; mark it to fail if the queue has no room."""
        lines = [json.loads(x) for x in self.files[body["input_file_id"]].split(b"\n") if x]
        tokens = sum(prompt_tokens(line) for line in lines)
        self.batch_tokens[batch_id] = tokens
        if self.enqueued_token_limit is None:
            return
        queued = sum(
            self.batch_tokens[b["id"]]
            for b in self.batches.values()
            if b["id"] != batch_id
            and b["id"] not in self._over_limit
            and b["status"] in ("validating", "in_progress")
        )
        if queued + tokens > self.enqueued_token_limit:
            self._over_limit.add(batch_id)

    def _refuse_locked(self, batch: dict[str, Any]) -> None:
        """Fail a batch on the enqueued-token limit, as the API does during validation."""
        model = json.loads(self.files[batch["input_file_id"]].split(b"\n")[0])["body"]["model"]
        batch["status"] = "failed"
        batch["failed_at"] = int(time.time())
        batch["errors"] = {
            "object": "list",
            "data": [
                {
                    "code": "token_limit_exceeded",
                    "message": f"Enqueued token limit reached for {model} in organization"
                    f" org-empathy-test. Limit: {self.enqueued_token_limit:,} enqueued tokens."
                    " Please try again once some in_progress batches have been completed.",
                    "param": None,
                    "line": None,
                }
            ],
        }

    def _retrieve_batch(self, batch_id: str) -> Reply:
        batch = self.batches.get(batch_id)
        if batch is None:
            return Reply(404, {"error": {"message": f"no batch {batch_id}"}})
        with self.lock:
            if batch_id in self._over_limit and batch["status"] == "validating":
                self._refuse_locked(batch)
            elif batch["status"] in ("validating", "in_progress"):
                self._batch_polls[batch_id] += 1
                if self._batch_polls[batch_id] > self.batch_polls_before_done:
                    self._finish(batch)
                else:
                    batch["status"] = "in_progress"
        return Reply(200, batch)

    def _finish(self, batch: dict[str, Any]) -> None:
        """Answer the batch's lines (called with the lock held)."""
        outcome = self.batch_outcomes.popleft() if self.batch_outcomes else "completed"
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]].split(b"\n") if x]
        batch["request_counts"]["total"] = len(lines)
        if outcome.startswith("failed"):
            # "failed" = the enqueued-token limit (transient); "failed:<code>" = that code
            code = outcome.partition(":")[2] or "token_limit_exceeded"
            batch["status"] = "failed"
            batch["errors"] = {
                "object": "list",
                "data": [
                    {
                        "code": code,
                        "message": f"the test server failed this batch ({code})",
                        "param": None,
                        "line": 1 if code == "invalid_json_line" else None,
                    }
                ],
            }
            return
        # An expired batch finished only its first half.
        lines_done = lines[: len(lines) // 2] if outcome == "expired" else lines
        outputs, errors = [], []
        for index, line in enumerate(lines_done):
            cid = self._received_locked(line["body"]["messages"])
            self.bodies.append(line["body"])
            if (error := self.rejection(line["body"])) is not None:
                errors.append(
                    {
                        "id": self._new_id("batch_req"),
                        "custom_id": line["custom_id"],
                        "response": {
                            "status_code": 400,
                            "request_id": "r",
                            "body": {"error": error},
                        },
                        "error": None,
                    }
                )
                continue
            if index < self.batch_error_items:
                errors.append(
                    {
                        "id": self._new_id("req"),
                        "custom_id": line["custom_id"],
                        "response": {
                            "status_code": 500,
                            "body": {"error": {"message": "scripted item error"}},
                        },
                        "error": None,
                    }
                )
                continue
            if index >= len(lines_done) - self.batch_drop_lines:
                continue  # the line is lost
            outputs.append(
                {
                    "id": self._new_id("req"),
                    "custom_id": line["custom_id"],
                    "response": {
                        "status_code": 200,
                        "request_id": "r",
                        "body": self.completion(line["body"], "batch"),
                    },
                    "error": None,
                }
            )
            self.answered[cid] += 1
        # Output lines are shuffled so that joining by order would be wrong.
        outputs.reverse()
        raw = "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in outputs)
        raw += "this is not json\n" * self.batch_malformed_lines
        batch["output_file_id"] = self._store_locked(raw.encode("utf-8"))
        if errors:
            batch["error_file_id"] = self._store_locked(
                "".join(json.dumps(e) + "\n" for e in errors).encode()
            )
        batch["status"] = outcome
        batch["request_counts"]["completed"] = len(outputs)
        batch["request_counts"]["failed"] = len(errors)
        self.batch_drop_lines = self.batch_error_items = self.batch_malformed_lines = 0

    def _received_locked(self, messages: list[dict[str, str]]) -> str:
        cid = conversation_id(messages)
        self.received[cid] += 1
        return cid

    def _store_locked(self, data: bytes) -> str:
        file_id = self._new_id("file")
        self.files[file_id] = data
        return file_id

    # Fine-tuning -----------------------------------------------------------------------------
    def _ft_fault(self, method: str, path: str) -> Reply | None:
        """A scripted fault for this fine-tuning call, if the next one is for its operation."""
        operation = {
            ("POST", "/v1/files"): "upload",
            ("GET", "/v1/files"): "list_files",
            ("POST", "/v1/fine_tuning/jobs"): "create",
            ("GET", "/v1/fine_tuning/jobs"): "list",
        }.get((method, path))
        if method == "GET" and path.startswith("/v1/fine_tuning/jobs/") and path.count("/") == 4:
            operation = "retrieve"
        with self.lock:
            if not self.ft_faults or self.ft_faults[0][0] != operation:
                return None
            _, fault = self.ft_faults.popleft()
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        kind = "rate_limit_exceeded" if fault.status == 429 else "server_error"
        return Reply(
            fault.status, {"error": {"message": f"scripted {fault.status}", "type": kind}}, headers
        )

    def _fine_tuning(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> Reply:
        parts = path.split("/")  # ["", "v1", "fine_tuning", "jobs", id, action]
        if method == "POST" and len(parts) == 4:
            return self._create_job(json.loads(body))
        if method == "GET" and len(parts) == 4:
            return self._list_jobs(query)
        job = self.ft_jobs.get(parts[4])
        if job is None:
            error = {
                "message": f"No such fine-tuning job: {parts[4]}",
                "type": "invalid_request_error",
            }
            return Reply(404, {"error": error})
        action = parts[5] if len(parts) > 5 else ""
        if method == "GET" and action == "":
            with self.lock:
                self._advance(job)
            return Reply(200, job)
        if method == "GET" and action == "events":
            events = self.ft_events[job["id"]][::-1]  # newest first
            limit = int(query.get("limit", ["20"])[0])
            return Reply(
                200, {"object": "list", "data": events[:limit], "has_more": len(events) > limit}
            )
        if method == "POST" and action == "cancel":
            with self.lock:
                if job["status"] in ("succeeded", "failed", "cancelled"):
                    error = {
                        "message": f"Job {job['id']} has already {job['status']}",
                        "type": "invalid_request_error",
                    }
                    return Reply(400, {"error": error})
                job["status"] = "cancelled"
                job["finished_at"] = int(time.time())
                job["estimated_finish"] = None
                self._event(job, "Fine-tuning job cancelled")
            return Reply(200, job)
        return Reply(404, {"error": {"message": f"no route {method} {path}"}})

    def _create_job(self, body: dict[str, Any]) -> Reply:
        upload = self.file_objects.get(body.get("training_file", ""))
        if upload is None or upload["purpose"] != "fine-tune":
            error = {
                "message": f"invalid training_file: {body.get('training_file')}",
                "type": "invalid_request_error",
                "param": "training_file",
                "code": None,
            }
            return Reply(400, {"error": error})
        hyper = dict(body.get("hyperparameters") or {})
        for name in ("n_epochs", "batch_size", "learning_rate_multiplier"):
            hyper.setdefault(name, "auto")
        job_id = self._new_id("ftjob")
        job = {
            "id": job_id,
            "object": "fine_tuning.job",
            "created_at": int(time.time()),
            "error": None,
            "fine_tuned_model": None,
            "finished_at": None,
            "hyperparameters": hyper,
            "model": body["model"],
            "organization_id": "org-empathy-test",
            "result_files": [],
            "seed": body.get("seed") if body.get("seed") is not None else 42,
            "status": "validating_files",
            "trained_tokens": None,
            "training_file": body["training_file"],
            "validation_file": body.get("validation_file"),
            "integrations": None,
            "estimated_finish": None,
            "metadata": body.get("metadata"),
            "user_provided_suffix": body.get("suffix"),
            "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
        }
        with self.lock:
            fault = self.create_job_faults.popleft() if self.create_job_faults else ""
            self.ft_jobs[job_id] = job
            self.ft_events[job_id] = []
            self._event(job, f"Created fine-tuning job: {job_id}")
        kind, _, what = fault.partition(":")
        if kind == "lost" and what == "drop":
            return Reply(drop=True)
        if kind == "lost":
            return Reply(
                int(what), {"error": {"message": "scripted error", "type": "server_error"}}
            )
        return Reply(200, job)

    def _list_jobs(self, query: dict[str, list[str]]) -> Reply:
        wanted = {
            k[len("metadata[") : -1]: v[0]
            for k, v in query.items()
            if k.startswith("metadata[") and k.endswith("]")
        }
        jobs = [
            j
            for j in reversed(self.ft_jobs.values())
            if all((j["metadata"] or {}).get(k) == v for k, v in wanted.items())
        ]
        if "after" in query:
            ids = [j["id"] for j in jobs]
            after = query["after"][0]
            jobs = jobs[ids.index(after) + 1 :] if after in ids else []
        limit = int(query.get("limit", ["20"])[0])
        return Reply(200, {"object": "list", "data": jobs[:limit], "has_more": len(jobs) > limit})

    def _event(self, job: dict[str, Any], message: str, level: str = "info") -> None:
        """Append a fine_tuning.job.event (called with the lock held)."""
        self.ft_events[job["id"]].append(
            {
                "id": self._new_id("ftevent"),
                "object": "fine_tuning.job.event",
                "created_at": int(time.time()),
                "level": level,
                "message": message,
                "data": {},
                "type": "message",
            }
        )

    def _advance(self, job: dict[str, Any]) -> None:
        """One step of the job's life per retrieve (called with the lock held)."""
        status = job["status"]
        if status == "validating_files":
            examples = [x for x in self.files[job["training_file"]].split(b"\n") if x.strip()]
            if len(examples) < 10:
                self._fail(
                    job,
                    "invalid_n_examples",
                    f"Training file has {len(examples)} example(s), but must have at least 10"
                    " examples",
                    "training_file",
                )
            else:
                job["status"] = "queued"
                self._event(job, "Files validated, moving job to queued state")
        elif status == "queued":
            job["status"] = "running"
            job["estimated_finish"] = int(time.time()) + 600
            self._event(job, "Fine-tuning job started")
        elif status == "running":
            outcome = self.ft_outcomes.popleft() if self.ft_outcomes else "succeeded"
            if outcome.startswith("failed"):
                code = outcome.partition(":")[2] or "server_error"
                self._fail(job, code, f"the test server failed this job ({code})", None)
                return
            if job["hyperparameters"]["n_epochs"] == "auto":
                job["hyperparameters"]["n_epochs"] = self.ft_trained_epochs_auto
            job["status"] = "succeeded"
            job["trained_tokens"] = self.file_tokens(job["training_file"]) * int(
                job["hyperparameters"]["n_epochs"]
            )
            self.charge("training", job["trained_tokens"])
            suffix = job["user_provided_suffix"] or ""
            job["fine_tuned_model"] = f"ft:{job['model']}:empathy-test:{suffix}:{job['id'][6:]}"
            job["finished_at"] = int(time.time())
            job["estimated_finish"] = None
            job["result_files"] = [self._store_locked(b"step,train_loss\n1,0.5\n")]
            self._event(job, "The job has successfully completed")

    def file_tokens(self, file_id: str) -> int:
        """Tokens this server bills per epoch of a training file: its message texts only."""
        total = 0
        for line in self.files[file_id].split(b"\n"):
            if line.strip():
                total += sum(approx_tokens(m["content"]) for m in json.loads(line)["messages"])
        return total

    def _fail(self, job: dict[str, Any], code: str, message: str, param: str | None) -> None:
        job["status"] = "failed"
        job["error"] = {"code": code, "message": message, "param": param}
        job["finished_at"] = int(time.time())
        job["estimated_finish"] = None
        self._event(job, f"Fine-tuning job failed: {message}", level="error")
