"""Shared fixtures of the evaluation tests."""

from __future__ import annotations

import importlib.machinery
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO.parent / "shared/data/dataset.csv"


def _stub_broken_torchaudio() -> None:
    """LLaMA-Factory imports torchaudio at module level but never uses it for text; where the
    installed build's native library does not load (CPU machines with PyPI's CUDA build), give
    it an empty module so the template code imports."""
    try:
        import torchaudio  # noqa: F401
    except (OSError, ImportError):
        for name in [n for n in sys.modules if n.startswith("torchaudio")]:
            del sys.modules[name]
        stub = types.ModuleType("torchaudio")
        stub.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
        stub.__version__ = "0.0.0"
        sys.modules["torchaudio"] = stub


_stub_broken_torchaudio()


@pytest.fixture(scope="session")
def dataset_csv() -> Path:
    if not DATASET.exists():
        pytest.skip(f"dataset not found at {DATASET}")
    return DATASET


@pytest.fixture(scope="session")
def split(dataset_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """train.csv / test.csv by the reference rule (test: fewer than 2 of 5 responses rated 3)."""
    import pandas as pd

    frame = pd.read_csv(dataset_csv)
    responders = ("human", "chatgpt_empathy", "llama_empathy", "gemini_empathy", "mixtral_empathy")
    n_good = sum((frame[f"rating_{r}"] == 3).astype(int) for r in responders)
    out = tmp_path_factory.mktemp("split")
    frame[n_good >= 2].to_csv(out / "train.csv", index=False)
    frame[n_good < 2].to_csv(out / "test.csv", index=False)
    return {"train": out / "train.csv", "test": out / "test.csv"}


@pytest.fixture(scope="session")
def llm_types() -> types.ModuleType:
    """``empathy_distill.llm`` (Message, ChatRequest). Until the LLM layer is merged into this
    branch, a minimal stand-in with the same constructor signatures is registered instead."""
    try:
        import empathy_distill.llm as llm

        return llm
    except ImportError:
        import hashlib
        import json
        from dataclasses import dataclass, field

        @dataclass(frozen=True)
        class Message:
            role: str
            content: str

        @dataclass(frozen=True)
        class ChatRequest:
            model: str
            messages: tuple
            sampling: dict = field(default_factory=dict)

            @property
            def key(self) -> str:
                payload = [self.model, [(m.role, m.content) for m in self.messages], self.sampling]
                return hashlib.sha256(json.dumps(payload).encode()).hexdigest()

        module = types.ModuleType("empathy_distill.llm")
        module.Message, module.ChatRequest = Message, ChatRequest
        sys.modules["empathy_distill.llm"] = module
        return module
