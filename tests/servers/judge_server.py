"""A local OpenAI-compatible judge: ``POST /v1/chat/completions`` answered by a pluggable rule.

The rule gets the request's messages and returns the judge's text, so a test can plant a known
bias (always "1", always the longer response) and check that the pipeline finds it. Requests are
counted so tests can check caching and that every pair was asked in both orders.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

from .base import LocalHTTPServer

Rule = Callable[[list[dict]], str]
_RESPONSES = re.compile(r"\nResponse 1: (?P<one>.*) \nResponse 2: (?P<two>.*)\Z", re.DOTALL)


def responses_of(messages: list[dict]) -> tuple[str, str]:
    """The two responses a judge prompt compares (the paper's user-prompt layout)."""
    match = _RESPONSES.search(messages[-1]["content"])
    if match is None:
        raise ValueError("not a pairwise judge prompt")
    return match["one"], match["two"]


def always(text: str) -> Rule:
    return lambda messages: text


def prefer_longer(messages: list[dict]) -> str:
    one, two = responses_of(messages)
    return "1" if len(one.split()) >= len(two.split()) else "2"


class JudgeServer:
    """Threaded HTTP server on 127.0.0.1 (random free port); use as a context manager."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self.send_error(404)
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append(body)
                text = server.rule(body["messages"])
                payload = {
                    "id": f"chatcmpl-{len(server.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": text},
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
                }
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = LocalHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> JudgeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
