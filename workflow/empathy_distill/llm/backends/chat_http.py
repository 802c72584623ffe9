"""Real-time chat completions posted straight through one aiohttp session.

WHY not the openai SDK for this one call: its generic request machinery (options models, URL
and header merging in httpx, then the aiohttp adapter) costs about 0.7 ms of CPU per request,
twice what the HTTP exchange itself costs. At 32 requests in flight against a fast server
(a local vLLM, or the 50 ms test server of ``benchmarks/teacher_throughput.py``) that CPU, not
the server, set the pace: the client reached 72% of the ideal throughput. The request is a
plain JSON POST with a bearer key, so it is sent here with the same body and headers, and the
SDK keeps doing everything else (files, batches). Errors map onto the retry classes exactly as
the SDK's do (``openai_backend._translate``): 408/409/429/5xx and connection problems are
transient (with the server's ``Retry-After``), any other 4xx is permanent.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from ..errors import PermanentError, TransientError
from ..retry import is_retryable_status, parse_retry_after


def error_message(raw: bytes) -> str:
    """The ``error.message`` of an OpenAI-style error body, else the body's start."""
    try:
        error = json.loads(raw).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        return error
    return raw[:200].decode("utf-8", "replace") or "(empty body)"


class ChatPoster:
    """POST ``{base_url}/chat/completions``; the parsed JSON body or a retry-class error."""

    def __init__(self, base_url: str, headers: dict[str, str], timeout_s: float) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            **headers,
        }
        # Like the SDK's timeout: a bound on connecting and on each read, not on the whole call.
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeout_s, sock_read=timeout_s
        )
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        """Created on first use: a session belongs to the event loop that runs it."""
        if self._session is None or self._session.closed:
            # limit=0: the client's semaphore (RateLimits) is what caps requests in flight.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), timeout=self.timeout
            )
        return self._session

    async def post(self, body: dict[str, Any]) -> Any:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            async with self._open().post(self.url, data=data, headers=self.headers) as response:
                raw = await response.read()
                status = response.status
                headers = response.headers
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc
        if status >= 400:
            message = f"HTTP {status}: {error_message(raw)}"
            if is_retryable_status(status):
                raise TransientError(message, parse_retry_after(headers))
            raise PermanentError(message)
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise TransientError(f"malformed response body (not JSON): {exc}") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
