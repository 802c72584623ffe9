"""The transformers backend on a tiny random model built in the test (no download)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from empathy_distill.llm import ChatRequest, Message, make_client


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny random Llama saved as an HF model directory (tests/tiny_lm builds it)."""
    from tests.tiny_lm import build_model, build_tokenizer

    path = tmp_path_factory.mktemp("tiny")
    tokenizer = build_tokenizer(["user: hello, a kind system", "assistant: hello a a a"] * 20)
    tokenizer.save_pretrained(path)
    build_model(len(tokenizer)).save_pretrained(path)
    return str(path)


def test_local_model_answers_in_batches_and_caches(tiny_model, tmp_path):
    endpoint = {
        "backend": "transformers",
        "model": tiny_model,
        "batch_size": 2,
        "max_new_tokens": 4,
    }
    client = make_client(
        endpoint,
        cache_dir=tmp_path,
        price_table=tmp_path / "none.yaml",
        cost_report=tmp_path / "costs.csv",
        show_progress=False,
    )
    requests = [
        ChatRequest(tiny_model, (Message("system", "kind"), Message("user", text)))
        for text in ("hello", "hello a", "a a a")
    ]
    first = client.complete(requests)
    assert [r.key for r in first] == [r.key for r in requests]
    assert all(isinstance(r.text, str) and r.usage["output_tokens"] <= 4 for r in first)
    assert all(r.usage["input_tokens"] > 0 for r in first)
    again = client.complete(requests)
    assert all(r.cached for r in again) and [r.text for r in again] == [r.text for r in first]
    assert "0.000000" in (tmp_path / "costs.csv").read_text()  # local: free
