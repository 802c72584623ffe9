"""OpenAI embedding models as a classifier's sentence embeddings (``embedding.backend: openai``).

The companion study (Xie et al. 2024, arXiv:2412.20264) embedded its texts with OpenAI's
text-embedding-3-small; this is that option beside the offline MiniLM.

API (https://platform.openai.com/docs/api-reference/embeddings/create, SDK
``client.embeddings.create``): ``input`` is a list of non-empty strings, at most 2048 of them and
300,000 tokens summed over one request. Each ``data[]`` item carries the ``index`` of its input:
vectors are put back in input order by it, never by position. Without ``encoding_format`` the SDK
asks for base64 (little-endian float32) and decodes it itself (``lib/_parsing/_embeddings.py``;
``resources/embeddings.py`` at the 1.55.3 floor); a base64 string that still reaches us (a caller
asked for base64 explicitly) is decoded here the same way.

Retries and rate limits are the LLM layer's: SDK retries off, ``llm/retry.py`` (exponential
backoff, the server's ``Retry-After``), ``openai_backend._translate`` (429/408/409/5xx and
connection errors transient, other 4xx permanent), ``llm/limits.py`` (concurrency, requests and
tokens per minute shared by every process of the account). Wrapped in ``CachedEmbedder``, each
slice of ``commit_every`` texts is stored as soon as it is back, so a crash loses at most one
slice and a rerun pays only for the texts not stored yet. The key is read from the environment
and never stored: the cache key and the rate-limit account name the variable, not its value.
Spend is held to ``llm.budget_usd`` like a chat call's (``llm/budget.py``): each request
reserves its worst case (its texts' UTF-8 bytes as input tokens) in the LLM cache database
before it is sent, and the billed ``usage.prompt_tokens`` replaces it as a ledger charge.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..llm.backends.base import split_batches
from ..llm.budget import SharedBudget
from ..llm.errors import BudgetExceededError, LLMError, PermanentError, TransientError
from ..llm.pricing import FREE, Price, approx_tokens

log = logging.getLogger("empathy_distill.llm")

OPENAI = "openai"
OPENAI_COMPATIBLE = "openai_compatible"
BACKENDS = (OPENAI, OPENAI_COMPATIBLE)
#: The API's per-request limits (embeddings.create docs, quoted in the SDK's docstring).
MAX_INPUTS = 2048
MAX_REQUEST_TOKENS = 300_000
#: chars/4 only estimates the tokenizer's count: batches are cut well below the real limit.
REQUEST_TOKEN_BUDGET = MAX_REQUEST_TOKENS // 2


def embedder_name(backend: str, model: str, base_url: str | None = None) -> str:
    """The cache's model name: the provider and its model (and the server, for a local one), so
    MiniLM, OpenAI and a local server's vectors never share an entry."""
    if backend == OPENAI_COMPATIBLE:
        return f"{backend}:{base_url}:{model}"
    return f"{backend}:{model}"


def batches(
    texts: Sequence[str], batch_size: int, token_budget: int = REQUEST_TOKEN_BUDGET
) -> list[list[int]]:
    """Indices of ``texts`` cut into consecutive requests of at most ``batch_size`` inputs
    (and ``MAX_INPUTS``) and ``token_budget`` estimated tokens."""
    return split_batches(
        range(len(texts)),
        lambda i: approx_tokens(texts[i]),
        min(batch_size, MAX_INPUTS),
        token_budget,
    )


def decode_vector(embedding: Any) -> np.ndarray:
    """One ``data[].embedding``: a list of floats, or base64 of little-endian float32."""
    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4").astype(np.float32)
    return np.asarray(embedding, dtype=np.float32)


def vectors_in_order(data: Sequence[Any], n: int) -> np.ndarray:
    """The ``data`` items of one response as an (n, dim) array in input order (by ``index``)."""
    found: dict[int, np.ndarray] = {}
    for item in data:
        index = item["index"] if isinstance(item, dict) else item.index
        vector = item["embedding"] if isinstance(item, dict) else item.embedding
        found[int(index)] = decode_vector(vector)
    if sorted(found) != list(range(n)):
        raise TransientError(
            f"malformed embeddings response: indices {sorted(found)[:10]} for {n} inputs"
        )
    dims = {v.shape for v in found.values()}
    if len(dims) != 1:
        raise TransientError(f"malformed embeddings response: vectors of shapes {sorted(dims)}")
    return np.stack([found[i] for i in range(n)])


class OpenAIEmbedder:
    """``Embedder`` over the embeddings API: batched, concurrent, retried, rate-limited."""

    def __init__(
        self,
        model: str,
        api_key: str,
        *,
        backend: str = OPENAI,
        base_url: str | None = None,
        api_key_env: str | None = None,
        batch_size: int = 256,
        concurrency: int = 4,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        max_retries: int = 8,
        timeout_s: float = 120.0,
        limits_dir: str | Path | None = None,
        encoding_format: str | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        budget: SharedBudget | None = None,
        price: Price = FREE,
    ) -> None:
        self.model = model
        self.budget = budget
        self.price = price
        self.name = embedder_name(backend, model, base_url)
        self._api_key = api_key
        self.backend = backend
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.rpm = requests_per_minute
        self.tpm = tokens_per_minute
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.limits_dir = Path(limits_dir) if limits_dir else None
        self.encoding_format = encoding_format
        self.sleep = sleep
        #: What CachedEmbedder stores at once: one round of concurrent requests.
        self.commit_every = batch_size * concurrency
        #: Requests answered and the tokens the API billed for them (``usage.prompt_tokens``).
        self.requests = 0
        self.prompt_tokens = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, 0), np.float32)
        if any(not t for t in texts):
            raise LLMError(f"embedding model {self.model!r}: the API refuses an empty text")
        return asyncio.run(self._encode(texts))

    async def _encode(self, texts: list[str]) -> np.ndarray:
        import openai

        from ..llm.limits import RateLimits

        client = openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self.base_url,
            max_retries=0,  # retries are ours (llm/retry.py), honouring Retry-After
            timeout=self.timeout_s,
        )
        account = "|".join(
            ("embeddings", self.backend, self.base_url or "", self.model, self.api_key_env or "")
        )
        limits = None
        if self.limits_dir is not None:
            limits = RateLimits(
                self.concurrency,
                self.rpm,
                self.tpm,
                shared_dir=self.limits_dir,
                account=account,
            )
        gate = asyncio.Semaphore(self.concurrency)
        try:
            # return_exceptions: a request refused by the budget must not cancel the ones in
            # flight (they are paid for: their charges must reach the ledger).
            parts = await asyncio.gather(
                *(
                    self._request(client, limits, gate, [texts[i] for i in chunk])
                    for chunk in batches(texts, self.batch_size)
                ),
                return_exceptions=True,
            )
        finally:
            await client.close()
            if limits is not None:
                limits.close()
        for part in parts:
            if isinstance(part, BaseException):
                raise part
        return np.concatenate(parts)

    async def _request(
        self, client: Any, limits: Any, gate: asyncio.Semaphore, texts: list[str]
    ) -> np.ndarray:
        import openai

        from ..llm.retry import with_retries

        tokens = sum(approx_tokens(t) for t in texts)
        extra = {} if self.encoding_format is None else {"encoding_format": self.encoding_format}

        reservation: str | None = None
        what = f"embeddings of {len(texts)} text(s) ({self.model})"

        async def call() -> np.ndarray:
            nonlocal reservation
            async with gate:
                if self.budget is not None and reservation is None:
                    worst = self.price.cost(sum(len(t.encode("utf-8")) for t in texts), 0)
                    reservation = await self.budget.areserve(worst, what)
                if limits is None:
                    response = await self._create(client, texts, extra)
                else:
                    async with limits.slot(tokens):
                        response = await self._create(client, texts, extra)
            vectors = vectors_in_order(response.data, len(texts))
            usage = getattr(response, "usage", None)
            billed = int(getattr(usage, "prompt_tokens", 0) or 0)
            self.requests += 1
            self.prompt_tokens += billed
            if self.budget is not None and reservation is not None:
                self.budget.cache.add_charge(what, self.price.cost(billed, 0), [reservation])
                reservation = None
            return vectors

        try:
            return await with_retries(call, self.max_retries, sleep=self.sleep)
        except BudgetExceededError:
            raise
        except (TransientError, PermanentError, openai.OpenAIError) as exc:
            raise LLMError(
                f"embedding model {self.model!r} ({self.backend}): {len(texts)} texts not"
                f" embedded: {exc}"
            ) from exc
        finally:
            if self.budget is not None and reservation is not None:
                self.budget.release(reservation)

    async def _create(self, client: Any, texts: list[str], extra: dict[str, Any]) -> Any:
        import openai

        from ..llm.backends.openai_backend import _translate

        try:
            return await client.embeddings.create(input=texts, model=self.model, **extra)
        except openai.OpenAIError as exc:
            raise _translate(exc) from exc
        except ValueError as exc:  # the SDK's parser: no data, undecodable base64
            raise TransientError(f"malformed embeddings response: {exc}") from exc


def make_openai_embedder(
    endpoint: dict[str, Any],
    limits_dir: str | Path | None,
    budget: SharedBudget | None = None,
    price: Price = FREE,
) -> OpenAIEmbedder:
    """An embedder for a validated ``embedding`` block (identity and operational keys); the key
    from the environment (``api_key_env``, else ``OPENAI_API_KEY`` for backend openai);
    ``budget`` and ``price``: its requests are reserved and charged in the LLM ledger."""
    from ..llm.backends import PLACEHOLDER_KEY

    backend = endpoint["backend"]
    env = endpoint.get("api_key_env") or ("OPENAI_API_KEY" if backend == OPENAI else None)
    key = os.environ.get(env) if env else None
    if not key:
        if backend == OPENAI:
            raise LLMError(
                f"embedding model {endpoint['model']!r} (backend openai) needs an API key in the"
                f" environment variable {env}; it is not set"
            )
        key = PLACEHOLDER_KEY  # a local server without a key
    return OpenAIEmbedder(
        endpoint["model"],
        key,
        backend=backend,
        base_url=endpoint.get("base_url"),
        api_key_env=env,
        batch_size=int(endpoint["batch_size"]),
        concurrency=int(endpoint["concurrency"]),
        requests_per_minute=endpoint.get("requests_per_minute"),
        tokens_per_minute=endpoint.get("tokens_per_minute"),
        max_retries=int(endpoint["max_retries"]),
        timeout_s=float(endpoint["timeout_s"]),
        limits_dir=limits_dir,
        budget=budget,
        price=price,
    )
