"""The transformers backend on a tiny random model built in the test (no download)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from empathy_distill.llm import ChatRequest, Message, make_client  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    words = ["<pad>", "<eos>", "<unk>", "user", "assistant", "system", ":", "hello", "kind", "a"]
    vocab = {w: i for i, w in enumerate(words)}
    core = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}assistant :"
    )
    tok.save_pretrained(path)
    config = transformers.LlamaConfig(
        vocab_size=len(words),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
    )
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(path)
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
