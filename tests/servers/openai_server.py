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
  ``max_completion_tokens``, https://platform.openai.com/docs/guides/reasoning).
* Batch output and error files (https://platform.openai.com/docs/guides/batch): UTF-8 JSONL,
  one object per "\n"; strings are not ASCII-escaped, so an answer may hold U+2028. A request
  the endpoint rejected goes to the error file with ``response.status_code`` and
  ``response.body.error``. A batch failing validation ends ``failed`` with ``errors.data[]`` of
  ``{code, message, param, line}`` (Batch object,
  https://platform.openai.com/docs/api-reference/batch/object).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
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


@dataclass
class Fault:
    """One scripted failure of a chat request: HTTP ``status`` or a ``malformed`` body."""

    status: int = 500
    retry_after: float | None = None
    malformed: bool = False


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
        self.reasoning_tokens = 0  # hidden reasoning tokens billed with every answer
        self.bodies: list[dict[str, Any]] = []  # every chat body, real time and batch lines

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
        if method == "POST" and path == "/v1/files":
            return self._upload(headers, body)
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
        if method == "GET" and path.startswith("/v1/batches/"):
            return self._retrieve_batch(path.split("/")[3])
        return Reply(404, {"error": {"message": f"no route {method} {path}"}})

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
        if TOO_LONG in body["messages"][-1]["content"]:
            return {
                "message": "This model's maximum context length is 128000 tokens. However,"
                " your messages resulted in 130000 tokens.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        return None

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body["messages"]
        last = messages[-1]["content"]
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        finish = "stop"
        if REFUSE in last:
            message["refusal"] = text = REFUSAL_TEXT
        elif FILTER in last:
            text, finish = "", "content_filter"
        else:
            message["content"] = text = self.answer_fn(messages)
        prompt = sum(approx_tokens(m["content"]) for m in messages)
        output = approx_tokens(text) + self.reasoning_tokens
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
            headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            return Reply(
                fault.status,
                {"error": {"message": f"scripted {fault.status}", "type": "test"}},
                headers,
            )
        if not self.wait_latency_and_gate():
            return Reply(
                503, raw=b'{"error": {"message": "held request released", "type": "test"}}'
            )
        if (error := self.rejection(body)) is not None:
            return Reply(400, {"error": error})
        reply = self.completion(body)
        self.note_answered(cid)
        return Reply(200, reply)

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
        return Reply(
            200,
            {
                "id": file_id,
                "object": "file",
                "bytes": len(data),
                "created_at": int(time.time()),
                "filename": filename or "upload",
                "purpose": fields["purpose"][1].decode(),
                "status": "processed",
            },
        )

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
        if kind == "lost" and what == "drop":  # created, then the connection drops
            return Reply(drop=True)
        if kind == "lost":  # created, then the reply is a server error
            error = {"message": "scripted error", "type": "server_error"}
            return Reply(int(what), {"error": error})
        return Reply(200, batch)

    def _retrieve_batch(self, batch_id: str) -> Reply:
        batch = self.batches.get(batch_id)
        if batch is None:
            return Reply(404, {"error": {"message": f"no batch {batch_id}"}})
        with self.lock:
            if batch["status"] in ("validating", "in_progress"):
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
                        "body": self.completion(line["body"]),
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
