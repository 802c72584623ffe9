"""A tiny threaded HTTP server on 127.0.0.1 for tests: subclasses implement ``handle``."""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: answer_fn(messages) -> text, messages as [{"role", "content"}, ...] in OpenAI form.
AnswerFn = Callable[[list[dict[str, str]]], str]


def default_answer(messages: list[dict[str, str]]) -> str:
    """Deterministic, distinct per conversation: 'reply-<12 hex of the messages>'."""
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
    return f"reply-{digest[:12]}"


def conversation_id(messages: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()


def approx_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


class Reply:
    def __init__(
        self,
        status: int = 200,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
        drop: bool = False,
    ) -> None:
        #: Close the connection without any response (a reset connection for the client).
        self.drop = drop
        self.status = status
        self.headers = headers or {}
        self.content_type = content_type
        self.raw = raw if raw is not None else json.dumps(body if body is not None else {}).encode()


class LocalHTTPServer(ThreadingHTTPServer):
    # listen() runs in the constructor, so the backlog must be a class attribute: set on the
    # instance afterwards it had no effect and the backlog stayed 5. Clients opening 32
    # connections at once then overflowed the accept queue; the kernel dropped their handshake
    # ACKs and the requests waited for a retransmission ~1 s later (benchmarks/
    # teacher_throughput.py saw p99 latencies of 1.07 s at 50 ms of scripted latency).
    request_queue_size = 256
    daemon_threads = True


class LocalServer:
    """Start with ``start()`` (or as a context manager); counts every request it receives."""

    def __init__(self, answer_fn: AnswerFn | None = None, latency: float = 0.0) -> None:
        self.answer_fn = answer_fn or default_answer
        self.latency = latency
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()  # "METHOD /path" -> requests received
        self.received: Counter[str] = Counter()  # conversation id -> chat requests received
        self.answered: Counter[str] = Counter()  # conversation id -> answers delivered
        self.seen_headers: list[dict[str, str]] = []
        self.request_times: list[tuple[float, str]] = []
        # After this many answers, hold further chat requests until ``release`` is set.
        self.hold_after: int | None = None
        self.release = threading.Event()
        self._httpd: LocalHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle -------------------------------------------------------------------------------
    def start(self) -> LocalServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in separate writes: without TCP_NODELAY, Nagle's algorithm
            # and the client's delayed ACK add ~40 ms to every keep-alive response.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                return

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                with server.lock:
                    server.counts[f"{method} {parts.path}"] += 1
                    server.seen_headers.append(dict(self.headers))
                    server.request_times.append((time.monotonic(), parts.path))
                try:
                    reply = server.handle(
                        method, parts.path, parse_qs(parts.query), dict(self.headers), body
                    )
                except Exception as exc:  # a bug in the test server must be visible
                    reply = Reply(599, {"error": {"message": f"test server bug: {exc!r}"}})
                if reply.drop:
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.raw)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(reply.raw)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

        self._httpd = LocalHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # Helpers for subclasses ------------------------------------------------------------------
    def wait_latency_and_gate(self) -> bool:
        """Sleep ``latency``; False if the request was held (it then gets a 503, no answer)."""
        if self.latency:
            time.sleep(self.latency)
        if self.hold_after is not None:
            with self.lock:
                held = sum(self.answered.values()) >= self.hold_after
            if held:
                self.release.wait()
                return False
        return True

    def note_received(self, messages: list[dict[str, str]]) -> str:
        cid = conversation_id(messages)
        with self.lock:
            self.received[cid] += 1
        return cid

    def note_answered(self, cid: str) -> None:
        with self.lock:
            self.answered[cid] += 1

    def handle(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> Reply:
        raise NotImplementedError
