"""Reasoning and thinking models: requests carry only parameters the model accepts, thinking is
capped by an explicit budget and counted as output, through the real SDKs against the fakes."""

from __future__ import annotations

import datetime

import openai
import pytest

from empathy_distill import startup
from empathy_distill.cli import load_configs
from empathy_distill.llm import lifecycle
from empathy_distill.llm.capabilities import (
    capability,
    projected_output_tokens,
    worst_case_output_tokens,
)
from empathy_distill.llm.client import make_client
from empathy_distill.llm.request import ChatRequest, Message

from .conftest import REPO_ROOT
from .servers.gemini_server import GeminiServer
from .servers.openai_server import OpenAIServer

PRICES_YAML = """models:
  o3:
    realtime: {input: 2.00, output: 8.00}
    batch: {input: 1.00, output: 4.00}
  gpt-4o:
    realtime: {input: 2.50, output: 10.00}
    batch: {input: 1.25, output: 5.00}
  gemini-3.5-flash:
    realtime: {input: 1.50, output: 9.00}
    batch: {input: 0.75, output: 4.50}
"""
#: The scorers' default sampling (the companion study's), which reasoning models refuse.
STUDY_SAMPLING = {"temperature": 0, "top_p": 0.1}


@pytest.fixture
def prices(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text(PRICES_YAML)
    return path


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("GEMINI_API_KEY", "g-test")


def ask(model, texts, sampling):
    return [ChatRequest(model, (Message("user", t),), sampling) for t in texts]


def test_the_fake_refuses_what_the_api_refuses():
    """Sent unchanged through the SDK, the study's sampling gets the API's 400 bodies."""
    with OpenAIServer() as server:
        sdk = openai.OpenAI(api_key="sk-test", base_url=server.url, max_retries=0)
        for model, param in (("o3", "temperature"), ("gpt-5-mini", "temperature")):
            with pytest.raises(openai.BadRequestError) as caught:
                sdk.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "hi"}], **STUDY_SAMPLING
                )
            error = caught.value.body
            assert error["code"] == "unsupported_value" and error["param"] == param
            assert "Only the default (1) value is supported" in error["message"]
        with pytest.raises(openai.BadRequestError, match="max_completion_tokens"):
            sdk.chat.completions.create(
                model="o3", messages=[{"role": "user", "content": "hi"}], max_tokens=5
            )


@pytest.mark.parametrize("mode", ["realtime", "batch"])
def test_reasoning_model_gets_accepted_parameters_and_its_budget(tmp_path, prices, mode, caplog):
    endpoint = {
        "backend": "openai",
        "model": "o3",
        "mode": mode,
        "poll_interval_s": 0.01,
        "max_new_tokens": 20,
        "thinking_budget": 300,
        "reasoning_effort": "low",
    }
    with OpenAIServer() as server:
        server.reasoning_tokens = 40
        client = make_client(
            {**endpoint, "base_url": server.url},
            cache_dir=tmp_path / "cache",
            price_table=prices,
            show_progress=False,
        )
        out = client.complete(ask("o3", ["a", "b"], STUDY_SAMPLING))
        bodies = [b for b in server.bodies if "messages" in b] or server.bodies
    assert all(r.text for r in out)
    for body in bodies:
        assert "temperature" not in body and "top_p" not in body and "max_tokens" not in body
        assert body["max_completion_tokens"] == 320  # answer 20 + thinking 300
        assert body["reasoning_effort"] == "low"
    assert "o3 refuses temperature, top_p" in caplog.text
    # reasoning tokens are billed output: 40 of them in every answer's usage
    assert all(r.usage["output_tokens"] >= 40 for r in out)


def test_non_reasoning_model_keeps_its_sampling(tmp_path, prices):
    with OpenAIServer() as server:
        client = make_client(
            {"backend": "openai", "model": "gpt-4o", "base_url": server.url},
            cache_dir=tmp_path / "cache",
            price_table=prices,
            show_progress=False,
        )
        client.complete(ask("gpt-4o", ["a"], STUDY_SAMPLING))
        body = server.bodies[0]
    assert (body["temperature"], body["top_p"]) == (0, 0.1)
    assert body["max_completion_tokens"] == 256 and "reasoning_effort" not in body


@pytest.mark.parametrize("mode", ["realtime", "batch"])
@pytest.mark.parametrize(
    "budget, answered, thoughts", [(1024, True, 800), (300, True, 300), (None, False, 256)]
)
def test_gemini_thinking_budget_leaves_room_for_the_answer(
    tmp_path, prices, budget, answered, thoughts, mode
):
    """The fake would think 800 tokens, which count against maxOutputTokens: with a budget the
    cap is 256 + budget, thinking stops at the budget and the verdict arrives; without one the
    whole cap (256) goes to thinking and no text is left (a final, billed empty answer)."""
    with GeminiServer() as server:
        server.thinking_tokens = 800
        client = make_client(
            {
                "backend": "gemini",
                "model": "gemini-3.5-flash",
                "base_url": server.url,
                "thinking_budget": budget,
                "mode": mode,
                "poll_interval_s": 0.01,
            },
            cache_dir=tmp_path / "cache",
            price_table=prices,
            show_progress=False,
        )
        out = client.complete(ask("gemini-3.5-flash", ["verdict?"], {}))
    assert bool(out[0].text) is answered
    visible = len(out[0].text) // 4 + (1 if len(out[0].text) % 4 else 0)
    assert out[0].usage["output_tokens"] == thoughts + visible
    # never more than the worst case the projections count
    assert out[0].usage["output_tokens"] <= 256 + (budget or 0)


def test_worst_case_is_cap_plus_thinking():
    endpoint = {"max_new_tokens": 256, "thinking_budget": 512}
    assert worst_case_output_tokens(endpoint) == 768
    assert worst_case_output_tokens(endpoint, {"max_tokens": 4}) == 516
    assert worst_case_output_tokens({"max_new_tokens": 16}) == 16
    # an expected length (the teacher's 130) still pays the whole thinking budget
    assert projected_output_tokens(endpoint, 130) == 642
    assert projected_output_tokens(endpoint) == 768


def test_budget_check_counts_the_thinking_budget(tmp_path, prices):
    """One request at the Gemini realtime price: its worst case is 14 input tokens (the budget's
    bound: 8 UTF-8 bytes + 3 for the message + 3 for the reply) and 256 + 512 output tokens,
    $0.006933; a cap just below that sends nothing, just above it answers."""
    worst = (14 * 1.50 + 768 * 9.00) / 1e6
    request = ask("gemini-3.5-flash", ["verdict?"], {})
    with GeminiServer() as server:
        endpoint = {
            "backend": "gemini",
            "model": "gemini-3.5-flash",
            "base_url": server.url,
            "thinking_budget": 512,
        }
        for cap, sent in ((worst * 0.999, False), (worst * 1.001, True)):
            client = make_client(
                endpoint,
                cache_dir=tmp_path / f"cache{cap}",
                price_table=prices,
                budget_usd=cap,
                show_progress=False,
            )
            before = server.counts.total()
            if sent:
                assert client.complete(request)[0].text
            else:
                with pytest.raises(Exception, match="budget cap"):
                    client.complete(request)
            assert (server.counts.total() > before) is sent


def test_capability_table_lookups():
    assert not capability("o3-mini-2025-01-31").accepts_sampling
    assert capability("gpt-5.1").reasoning_efforts  # a gpt-5 family prefix
    assert capability("ft:gpt-4o-mini-2024-07-18:org::id").accepts_sampling
    assert capability("gemini-3.5-flash").thinking_budget
    assert capability("some-local-model") == capability("other-local-model")


def test_startup_demands_an_explicit_thinking_setting_a_model_takes():
    config = load_configs([str(REPO_ROOT / "config.yaml")])
    assert config["judges"]["gemini"]["thinking_budget"] == 128
    config["judges"]["gemini"]["thinking_budget"] = None
    config["judges"]["gpt4o"]["reasoning_effort"] = "high"
    problems = "\n".join(startup.endpoint_problems(config))
    assert "judges.gemini.thinking_budget: 'gemini-3.5-flash' thinks" in problems
    assert "judges.gpt4o.reasoning_effort: 'gpt-4o' takes none" in problems


def test_startup_refuses_two_different_output_caps_in_one_sampling_block():
    """A request sends one cap (max_completion_tokens on the OpenAI API) while the budget
    reserves the largest one named: two that disagree are a config error naming both; the same
    value twice is harmless."""
    config = load_configs([str(REPO_ROOT / "config.yaml")])
    config["judges"]["gpt4o"]["sampling"] = {"max_tokens": 64, "max_completion_tokens": 256}
    problems = "\n".join(startup.endpoint_problems(config))
    assert "judges.gpt4o.sampling: max_tokens=64, max_completion_tokens=256 are different" in (
        problems
    )
    config["judges"]["gpt4o"]["sampling"] = {"max_tokens": 64, "max_completion_tokens": 64}
    assert "sampling" not in "\n".join(startup.endpoint_problems(config))


# Model lifecycle --------------------------------------------------------------------------------
def at(monkeypatch, day: str) -> None:
    monkeypatch.setattr(lifecycle, "today", lambda: datetime.date.fromisoformat(day))


@pytest.mark.parametrize(
    "day, run_days, refused",
    [
        ("2026-12-03", 7, False),  # shutdown 2026-12-11 is 8 days away
        ("2026-12-04", 7, True),  # 7 days away: the run may still be going
        ("2026-12-07", 3, False),
        ("2026-12-12", 0, True),  # already shut down
    ],
)
def test_startup_refuses_a_model_shut_down_within_the_run(monkeypatch, day, run_days, refused):
    at(monkeypatch, day)
    config = load_configs([str(REPO_ROOT / "config.yaml")])
    config["llm"]["expected_run_days"] = run_days
    config["judges"]["gpt4o"]["model"] = "gpt-5-mini"
    config["judges"]["gpt4o"]["thinking_budget"] = 256
    problems = [p for p in startup.endpoint_problems(config) if "shut" in p]
    assert bool(problems) is refused
    if refused:
        assert problems[0].startswith("judges.gpt4o.model: 'gpt-5-mini'")
        assert "2026-12-11" in problems[0] and "gpt-6.1-terra" in problems[0]
        assert "developers.openai.com/api/docs/deprecations" in problems[0]


def test_every_default_model_is_served_through_the_run(monkeypatch):
    at(monkeypatch, "2026-12-07")
    config = load_configs([str(REPO_ROOT / "config.yaml")])
    assert startup.endpoint_problems(config) == []
    models = startup.planned_models(config, startup.planned_endpoints(config))
    # teacher and judges; gpt-4o-mini scores subfactors (scoring.grid, on by default)
    assert set(models.values()) == {"gpt-4o", "gemini-3.5-flash", "gpt-4o-mini"}


def test_lifecycle_rows_all_cite_their_source():
    for row in lifecycle.load().values():
        assert row.source.startswith("https://") and row.read == "2026-12-07"
