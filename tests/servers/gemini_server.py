"""A Gemini API (v1beta) look-alike on 127.0.0.1 for the real google-genai client.

The SDK is pointed at it with ``http_options=types.HttpOptions(base_url=server.url)``. Serves
``models/{m}:generateContent`` and Batch Mode with inlined requests
(``models/{m}:batchGenerateContent``, ``batches/{id}``, ``batches``). Same ``answer_fn`` and
scripted faults as the OpenAI server; messages are handed to ``answer_fn`` in OpenAI form
(system instruction first, ``model`` turns as ``assistant``).
"""

from __future__ import annotations

import itertools
import json
import time
from collections import deque
from typing import Any

from .base import AnswerFn, LocalServer, Reply, approx_tokens, conversation_id
from .openai_server import Fault


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
        self.faults: deque[Fault] = deque()
        self.batches: dict[str, dict[str, Any]] = {}
        self._inputs: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        self._polls: dict[str, int] = {}
        self._ids = itertools.count(1)
        self.batch_polls_before_done = 1
        self.batch_drop_items = 0
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
        if method == "POST" and path.endswith(":generateContent"):
            model = path.split("/models/")[1].split(":")[0]
            return self._generate(model, json.loads(body))
        if method == "POST" and path.endswith(":batchGenerateContent"):
            model = path.split("/models/")[1].split(":")[0]
            return self._create(model, json.loads(body))
        if method == "GET" and path.rstrip("/").endswith("/batches"):
            return Reply(200, {"operations": list(self.batches.values())})
        if method == "GET" and "/batches/" in path:
            return self._get("batches/" + path.split("/batches/")[1])
        return Reply(
            404,
            {"error": {"code": 404, "message": f"no route {method} {path}", "status": "NOT_FOUND"}},
        )

    def response_for(self, model: str, request: dict[str, Any]) -> dict[str, Any]:
        messages = to_messages(request)
        text = self.answer_fn(messages)
        prompt = sum(approx_tokens(m["content"]) for m in messages)
        output = approx_tokens(text)
        return {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": text}]},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": prompt,
                "candidatesTokenCount": output,
                "totalTokenCount": prompt + output,
            },
            "modelVersion": model,
        }

    def _generate(self, model: str, request: dict[str, Any]) -> Reply:
        with self.lock:
            self.requests_seen.append(request)
        cid = self.note_received(to_messages(request))
        with self.lock:
            fault = self.faults.popleft() if self.faults else None
        if fault is not None:
            if fault.malformed:
                return Reply(200, raw=b'{"candidates": [ not json')
            headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            return Reply(
                fault.status,
                {
                    "error": {
                        "code": fault.status,
                        "status": "UNAVAILABLE",
                        "message": f"scripted {fault.status}",
                    }
                },
                headers,
            )
        if not self.wait_latency_and_gate():
            return Reply(
                503,
                raw=b'{"error": {"code": 503, "status": "UNAVAILABLE",'
                b' "message": "held request released"}}',
            )
        reply = self.response_for(model, request)
        self.note_answered(cid)
        return Reply(200, reply)

    def _create(self, model: str, body: dict[str, Any]) -> Reply:
        batch = body["batch"]
        items = batch["inputConfig"]["requests"]["requests"]
        name = f"batches/b{next(self._ids)}"
        self._inputs[name] = (model, items)
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
        return Reply(200, self.batches[name])

    def _get(self, name: str) -> Reply:
        operation = self.batches.get(name)
        if operation is None:
            return Reply(
                404, {"error": {"code": 404, "message": f"no {name}", "status": "NOT_FOUND"}}
            )
        with self.lock:
            meta = operation["metadata"]
            if meta["state"] in ("BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"):
                self._polls[name] += 1
                if self._polls[name] > self.batch_polls_before_done:
                    self._finish(name, meta)
                else:
                    meta["state"] = "BATCH_STATE_RUNNING"
        return Reply(200, operation)

    def _finish(self, name: str, meta: dict[str, Any]) -> None:
        model, items = self._inputs[name]
        keep = items[: len(items) - self.batch_drop_items]
        outputs = []
        for item in keep:
            request = item["request"]
            with_system = dict(request)
            cid = conversation_id(to_messages(with_system))
            self.received[cid] += 1
            self.requests_seen.append(request)
            outputs.append(
                {"response": self.response_for(model, request), "metadata": item.get("metadata")}
            )
            self.answered[cid] += 1
        outputs.reverse()  # joining by position would be wrong
        meta["output"] = {"inlinedResponses": {"inlinedResponses": outputs}}
        meta["state"] = "BATCH_STATE_SUCCEEDED"
        self.batch_drop_items = 0
