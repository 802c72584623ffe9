"""Batched generation on a tiny random Llama model: equality with one-at-a-time, templates,
end-of-turn stop, seeds, adapters, and the command line."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from empathy_distill.core.config import validate_config
from empathy_distill.core.errors import ConfigError
from empathy_distill.core.prompts import Prompts
from empathy_distill.evaluation import specs as evaluation_specs
from empathy_distill.evaluation.generate import (
    GenerationSettings,
    answer_test,
    cut_base_answer,
    hit_token_cap,
    llamafactory_template,
    load_model,
    main,
    torch_dtype,
)
from empathy_distill.evaluation.records import read_jsonl, read_split
from tests.tiny_lm import build_tiny

TEMPLATE = "default"  # a LLaMA-Factory template that needs no extra special tokens


@pytest.fixture(scope="module")
def tiny(dataset_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    model, tokenizer = build_tiny(dataset_csv, out)
    return model, tokenizer, out


@pytest.fixture(scope="module")
def test_rows(split):
    return read_split(split["test"]).head(12)


def schema_generation(**kw) -> dict:
    """The ``generation`` block of an answer job's spec: the schema's defaults, then ``kw``."""
    config = validate_config({"students": {"s": {"model": "m", "template": "t"}}})
    return {**evaluation_specs.answer(config, "s")["generation"], **kw}


def settings(**kw) -> GenerationSettings:
    return GenerationSettings(**schema_generation(**{"max_new_tokens": 16, "batch_size": 6, **kw}))


@pytest.mark.parametrize("template", [None, TEMPLATE])
def test_batched_equals_one_at_a_time_under_greedy(tiny, test_rows, template):
    model, tokenizer, _ = tiny
    batched = answer_test(
        test_rows, "tiny", settings(), Prompts(), template, model=model, tokenizer=tokenizer
    )
    single = answer_test(
        test_rows,
        "tiny",
        settings(batch_size=1),
        Prompts(),
        template,
        model=model,
        tokenizer=tokenizer,
    )
    assert [r["answer"] for r in batched] == [r["answer"] for r in single]
    assert [r["dialog_id"] for r in batched] == test_rows["dialog_id"].tolist()
    assert any(r["answer"] for r in batched)


def test_prompts_base_raw_text_finetuned_training_template(tiny, test_rows):
    model, tokenizer, _ = tiny
    row = test_rows.iloc[0]
    base = answer_test(
        test_rows.head(1),
        "tiny",
        settings(max_new_tokens=2),
        Prompts(),
        None,
        model=model,
        tokenizer=tokenizer,
    )[0]
    assert base["prompt"] == Prompts().student_test_base(row.situation, row.speaker_uttr)
    assert base["generation"]["prompt"] == "student_test_base"
    tuned = answer_test(
        test_rows.head(1),
        "tiny",
        settings(max_new_tokens=2),
        Prompts(),
        TEMPLATE,
        model=model,
        tokenizer=tokenizer,
    )[0]
    user = Prompts().student_train(row.situation, row.speaker_uttr)
    template = llamafactory_template(tokenizer, TEMPLATE)
    ids, _ = template.encode_oneturn(
        tokenizer, [{"role": "user", "content": user}, {"role": "assistant", "content": ""}]
    )
    assert tuned["prompt"] == tokenizer.decode(ids)
    assert tuned["prompt"].startswith("Human: ") and tuned["prompt"].endswith("\nAssistant:")
    assert tuned["generation"]["template"] == TEMPLATE
    assert set(tuned) == {
        "dialog_id",
        "prompt",
        "answer",
        "hit_token_cap",
        "new_tokens",
        "generation",
        "seed",
    }
    assert tuned["generation"]["max_new_tokens"] == 2 and tuned["generation"]["do_sample"] is False


def answers_with_biased_stop(tiny, test_rows, bias: float) -> list[dict]:
    """Fine-tuned answers with ``bias`` added to the end-of-turn token's logit."""
    model, tokenizer, _ = tiny
    head = model.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    biased.weight.data.copy_(head.weight.data)
    biased.bias.data.zero_()
    biased.bias.data[tokenizer.eos_token_id] = bias
    model.lm_head = biased
    try:
        return answer_test(
            test_rows.head(3),
            "tiny",
            settings(),
            Prompts(),
            TEMPLATE,
            model=model,
            tokenizer=tokenizer,
        )
    finally:
        model.lm_head = head


def test_generation_stops_at_end_of_turn(tiny, test_rows):
    # Make the end-of-turn token the only sensible next token: answers must come back empty
    # (stop token excluded) and not run on to max_new_tokens.
    rows = answers_with_biased_stop(tiny, test_rows, 1e4)
    assert [r["answer"] for r in rows] == ["", "", ""]
    assert [r["hit_token_cap"] for r in rows] == [False, False, False]
    assert [r["new_tokens"] for r in rows] == [0, 0, 0]  # the stop token is not counted
    assert tiny[1].eos_token_id in rows[0]["generation"]["stop_token_ids"]


def test_answers_that_never_stop_are_flagged_as_cut_by_the_cap(tiny, test_rows):
    rows = answers_with_biased_stop(tiny, test_rows, -1e4)  # end of turn never chosen
    assert [r["hit_token_cap"] for r in rows] == [True, True, True]
    cap = settings().max_new_tokens
    assert [r["new_tokens"] for r in rows] == [cap, cap, cap]


def test_base_answer_cut_at_next_dialogue_field_did_not_hit_the_cap():
    four = [5, 6, 7, 8]
    assert hit_token_cap(four, "So sorry.\nContext: another", 4, finetuned=False) is False
    assert hit_token_cap(four, "So sorry to hear", 4, finetuned=False) is True
    assert hit_token_cap(four, "So sorry.\nContext: kept", 4, finetuned=True) is True
    assert hit_token_cap(four[:3], "So sorry", 4, finetuned=True) is False


def test_sampling_is_reproducible_with_seed(tiny, test_rows):
    model, tokenizer, _ = tiny
    runs = [
        answer_test(
            test_rows.head(4),
            "tiny",
            settings(do_sample=True, seed=s),
            Prompts(),
            TEMPLATE,
            model=model,
            tokenizer=tokenizer,
        )
        for s in (7, 7, 8)
    ]
    answers = [[r["answer"] for r in run] for run in runs]
    assert answers[0] == answers[1] != answers[2]
    assert runs[0][0]["seed"] == 7


def test_cut_base_answer_stops_at_next_dialogue_field():
    assert cut_base_answer(" I am sorry.\nContext: next one") == "I am sorry."
    assert cut_base_answer("Great!\n\nSpeaker Utterance: hi") == "Great!"
    assert cut_base_answer("Fine. Response: kept") == "Fine. Response: kept"


def test_command_line_with_lora_adapter(tiny, split, tmp_path):
    from peft import LoraConfig, get_peft_model

    model, _, model_dir = tiny
    base_copy = type(model)(model.config)
    base_copy.load_state_dict(model.state_dict())
    lora = get_peft_model(
        base_copy, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    adapter = tmp_path / "adapter"
    lora.save_pretrained(adapter)
    test_csv = tmp_path / "test.csv"
    read_split(split["test"]).head(3).to_csv(test_csv, index=False)
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps(
            {
                "students": {"tiny": {"model": "builtin:tiny", "template": TEMPLATE}},
                "generation": {"max_new_tokens": 8, "batch_size": 2},
            }
        )
    )
    out = tmp_path / "answers.jsonl"
    common = ["--config", str(config), "--student", "tiny", "--test", str(test_csv)]
    common += ["--model-path", str(model_dir)]
    assert main([*common, "--adapter", str(adapter), "--out", str(out)]) == 0
    rows = read_jsonl(out)
    assert len(rows) == 3
    assert rows[0]["generation"]["adapter"] == str(adapter)
    assert rows[0]["generation"]["template"] == TEMPLATE
    base_out = tmp_path / "base.jsonl"
    assert main([*common, "--out", str(base_out)]) == 0
    assert [r["prompt"] for r in read_jsonl(base_out)] != [r["prompt"] for r in rows]


def test_native_gqa_on_cpu_matches_stock_sdpa_bitwise(dataset_csv, monkeypatch):
    """The copy-free GQA attention gives the same logits and greedy tokens as transformers' SDPA."""
    import empathy_distill.evaluation.generate as generate
    import empathy_distill.llm.backends.local_decoding as local_decoding
    from empathy_distill.llm.backends.cpu_attention import NAME

    model, tokenizer = build_tiny(dataset_csv)
    tokenizer.padding_side = "left"
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    texts = ("I lost my job today and I do not know what to do.", "We won the cup!")
    prompts = [tokenizer(t)["input_ids"] for t in texts]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = (torch.arange(width) >= torch.tensor([[width - len(p)] for p in prompts])).long()

    def forward() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            padded = model(input_ids=ids, attention_mask=mask).logits
            causal = model(input_ids=ids[:1]).logits  # no mask: SDPA's is_causal path
        return padded, causal

    with monkeypatch.context() as patch:
        patch.setattr(local_decoding, "use_native_gqa", lambda model: False)
        stock_tokens = generate.generate_ids(model, tokenizer, prompts, settings(batch_size=2), [2])
    assert model.config._attn_implementation == "sdpa"
    stock_padded, stock_causal = forward()
    native_tokens = generate.generate_ids(model, tokenizer, prompts, settings(batch_size=2), [2])
    assert model.config._attn_implementation == NAME
    native_padded, native_causal = forward()
    assert native_tokens == stock_tokens and any(native_tokens)
    assert torch.equal(native_padded, stock_padded)
    assert torch.equal(native_causal, stock_causal)


def test_native_gqa_leaves_models_without_grouped_heads_alone(dataset_csv):
    from empathy_distill.llm.backends.cpu_attention import use_native_gqa
    from tests.tiny_lm import build_model

    model = build_model(vocab_size=64)
    model.config.num_key_value_heads = model.config.num_attention_heads
    assert not use_native_gqa(model)
    assert model.config._attn_implementation == "sdpa"


class FakeVLLM:
    """Records what ``generate_ids_vllm`` asks of vLLM (no GPU here); answers with fixed ids."""

    def __init__(self, replies: list[list[int]]) -> None:
        self.replies, self.engine_kwargs, self.calls = replies, {}, []

    def module(self):
        import types

        fake = self

        class LLM:
            def __init__(self, **kwargs):
                fake.engine_kwargs = kwargs

            def generate(self, prompts, params, lora_request=None):
                fake.calls.append((prompts, params, lora_request))
                return [
                    types.SimpleNamespace(outputs=[types.SimpleNamespace(token_ids=ids)])
                    for ids in fake.replies
                ]

        vllm = types.ModuleType("vllm")
        vllm.LLM = LLM
        vllm.SamplingParams = lambda **kw: kw
        inputs = types.ModuleType("vllm.inputs")
        inputs.TokensPrompt = lambda prompt_token_ids: {"prompt_token_ids": prompt_token_ids}
        lora = types.ModuleType("vllm.lora.request")
        lora.LoRARequest = lambda name, id_, path: (name, id_, path)
        return {"vllm": vllm, "vllm.inputs": inputs, "vllm.lora": lora, "vllm.lora.request": lora}


def test_vllm_path_maps_settings_adapter_and_stop_tokens(tmp_path, monkeypatch):
    """The vLLM fast path (GPU only) gets greedy as temperature 0, the template's stop ids, the
    LoRA adapter with its rank, a context sized to the requests; answers are cut at stop ids."""
    from empathy_distill.evaluation.generate import generate_ids_vllm

    fake = FakeVLLM(replies=[[5, 6, 2, 9], [7]])
    for name, module in fake.module().items():
        monkeypatch.setitem(sys.modules, name, module)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 24}))
    prompts = [[1, 3, 4], [1, 3]]
    out = generate_ids_vllm(
        "base", adapter, prompts, settings(max_new_tokens=20), [2, 8], revision="abc123"
    )
    assert out == [[5, 6], [7]]
    assert fake.engine_kwargs == {
        "model": "base",
        "revision": "abc123",  # weights and tokenizer of the commit the student was trained on
        "tokenizer_revision": "abc123",
        "seed": 0,
        "max_model_len": 23,
        "enable_lora": True,
        "max_lora_rank": 32,  # r=24 rounded up to a rank vLLM accepts
    }
    ((requests, params, lora),) = fake.calls
    assert requests == [{"prompt_token_ids": [1, 3, 4]}, {"prompt_token_ids": [1, 3]}]
    assert params == {
        "max_tokens": 20,
        "temperature": 0.0,
        "top_p": 1.0,
        "seed": 0,
        "stop_token_ids": [2, 8],
    }
    assert lora == ("adapter", 1, str(adapter))
    generate_ids_vllm("base", None, prompts, settings(do_sample=True, temperature=0.7), [2])
    assert fake.engine_kwargs["enable_lora"] is False and "max_lora_rank" not in fake.engine_kwargs
    assert fake.engine_kwargs["revision"] is fake.engine_kwargs["tokenizer_revision"] is None
    assert fake.calls[-1][1]["temperature"] == 0.7 and fake.calls[-1][2] is None
    # vLLM's allowed ranks are 1, 8, 16, 32, 64, 128, 256, 320, 512 (vllm/config/lora.py)
    for rank, served in [(1, 1), (4, 8), (8, 8), (17, 32), (300, 320), (512, 512)]:
        (adapter / "adapter_config.json").write_text(json.dumps({"r": rank}))
        generate_ids_vllm("base", adapter, prompts, settings(), [2])
        assert fake.engine_kwargs["max_lora_rank"] == served, rank
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 1024}))
    with pytest.raises(ConfigError, match=r"adapter_config.json: LoRA rank r=1024"):
        generate_ids_vllm("base", adapter, prompts, settings(), [2])


def test_vllm_path_gets_the_students_revision(tiny, test_rows, monkeypatch):
    """answer_test hands the pinned revision to the vLLM engine, as to the transformers path."""
    _, tokenizer, _ = tiny
    fake = FakeVLLM(replies=[[5], [7]])
    for name, module in fake.module().items():
        monkeypatch.setitem(sys.modules, name, module)
    rows = answer_test(
        test_rows.head(2),
        "org/student",
        settings(engine="vllm"),
        Prompts(),
        tokenizer=tokenizer,
        revision="0123abcd",
    )
    assert len(rows) == 2
    assert fake.engine_kwargs["revision"] == fake.engine_kwargs["tokenizer_revision"] == "0123abcd"


def test_generation_dtype_defaults_to_float32_on_cpu_and_bfloat16_on_request(tiny) -> None:
    assert schema_generation()["dtype"] == "auto"
    assert torch_dtype("auto", "cpu") is torch.float32
    assert torch_dtype("auto", "cuda:0") is torch.bfloat16
    assert torch_dtype("bfloat16", "cpu", cpu_bf16=True) is torch.bfloat16
    assert torch_dtype("bfloat16", "cpu", cpu_bf16=False) is torch.float32  # emulated: slower
    _, _, path = tiny
    default = load_model(path, device="cpu")
    assert {p.dtype for p in default.parameters()} == {torch.float32}
    half = load_model(path, device="cpu", dtype="bfloat16")
    native = torch_dtype("bfloat16", "cpu")  # bfloat16 where this CPU computes it natively
    assert {p.dtype for p in half.parameters()} == {native}
    with pytest.raises(ConfigError, match="dtype"):
        validate_config({"students": {}, "generation": {"dtype": "float16"}})
