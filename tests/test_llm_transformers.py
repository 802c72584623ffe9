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


def test_batched_requests_sharing_a_long_system_prompt_answer_as_each_alone(tiny_model):
    """Batches prefill the requests' common prefix once (``local_decoding``); greedy answers and
    token counts equal those of each request sent on its own (no shared prefix, no padding)."""
    from empathy_distill.llm.backends.local_decoding import MIN_SHARED_PREFIX
    from empathy_distill.llm.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(tiny_model, max_new_tokens=6, batch_size=3)
    system = " ".join(["hello a kind system"] * MIN_SHARED_PREFIX)
    requests = [
        ChatRequest(tiny_model, (Message("system", system), Message("user", text)))
        for text in ("hello", "hello a a kind", "a")
    ]
    together = backend.generate_many(requests)
    alone = [backend.generate_many([request])[0] for request in requests]
    assert [a.text for a in together] == [a.text for a in alone]
    assert [a.usage for a in together] == [a.usage for a in alone]
    encode = backend.tokenizer
    rendered = [encode(backend._render(r), add_special_tokens=False)["input_ids"] for r in requests]
    assert [a.usage["input_tokens"] for a in together] == [len(ids) for ids in rendered]
