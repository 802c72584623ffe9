"""Server-asked waits, billing refusals and quotas, through the real SDKs against the fakes.

The fakes send the providers' bodies (tests/servers/*_server.py): OpenAI's ``Retry-After`` /
``retry-after-ms`` headers and its 429 ``insufficient_quota``; Gemini's ``RetryInfo`` delay and
``QuotaFailure`` violations, its depleted-prepayment 429, its enable-billing 400 and an
``ErrorInfo`` BILLING_DISABLED. No test sleeps: the client's sleep is replaced by one that
records the seconds it was asked to wait.
"""

from __future__ import annotations

import logging

import pytest

from empathy_distill.llm import ChatRequest, LLMError, Message, make_client, settings
from empathy_distill.llm.retry import BACKOFF_MAX_S
from tests.servers.base import default_answer
from tests.servers.gemini_server import GeminiFault, GeminiServer
from tests.servers.openai_server import Fault, OpenAIServer

GEMINI = "gemini-3.5-flash"
OPENAI = "gpt-retry-test"
PRICES_YAML = f"""
models:
  {OPENAI}:
    realtime: {{input: 2.50, output: 10.00}}
    batch: {{input: 1.25, output: 5.00}}
  {GEMINI}:
    realtime: {{input: 1.50, output: 9.00}}
    batch: {{input: 0.75, output: 4.50}}
"""
PER_MINUTE = "GenerateRequestsPerMinutePerProjectPerModel"
PER_DAY = "GenerateRequestsPerDayPerProjectPerModel"


@pytest.fixture(autouse=True)
def keys_and_settings(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    monkeypatch.setenv("GEMINI_API_KEY", "gm-test-0123456789")
    yield
    settings.configure(None)


@pytest.fixture
def oai():
    with OpenAIServer() as srv:
        yield srv


@pytest.fixture
def gem():
    with GeminiServer() as srv:
        yield srv


def client_for(backend, model, url, tmp_path, **extra):
    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICES_YAML)
    endpoint = {
        "backend": backend,
        "model": model,
        "base_url": url,
        "max_retries": 8,
        "concurrency": 1,
        **extra,
    }
    client = make_client(
        endpoint, cache_dir=tmp_path / "cache", price_table=prices, show_progress=False
    )
    client.sleeps = []

    async def record(seconds: float) -> None:
        client.sleeps.append(seconds)

    client.sleep = record
    return client


def requests(model, *texts):
    return [ChatRequest(model, (Message("user", t),)) for t in texts]


def chat_calls(srv) -> int:
    return sum(
        n
        for route, n in srv.counts.items()
        if route.endswith((":generateContent", "/chat/completions"))
    )


# Retry-After above the old 120 s cut ------------------------------------------------------------
def test_openai_retry_after_of_five_minutes_is_waited_in_full_and_said(oai, tmp_path, caplog):
    oai.faults.append(Fault(429, retry_after=300))
    [request] = requests(OPENAI, "wait for it")
    client = client_for("openai", OPENAI, oai.url, tmp_path)
    with caplog.at_level(logging.INFO, logger="empathy_distill.llm"):
        [out] = client.complete([request])
    assert out.text == default_answer([m.as_dict() for m in request.messages])
    assert client.sleeps == [300.0] and BACKOFF_MAX_S < 300.0
    assert "waiting 300 s as the server asked" in caplog.text
    assert chat_calls(oai) == 2


def test_openai_retry_after_ms_is_honoured(oai, tmp_path):
    oai.faults.append(Fault(429, retry_after_ms=1500))
    client = client_for("openai", OPENAI, oai.url, tmp_path)
    client.complete(requests(OPENAI, "ms"))
    assert client.sleeps == [1.5]


def test_a_wait_over_the_cap_stops_at_once_naming_both(oai, tmp_path):
    oai.faults.extend([Fault(429, retry_after=3600)] * 9)
    client = client_for("openai", OPENAI, oai.url, tmp_path)
    with pytest.raises(LLMError) as info:
        client.complete(requests(OPENAI, "too long"))
    message = str(info.value)
    assert "3600 s" in message and "llm.retry.max_wait_s = 900 s" in message
    assert client.sleeps == [] and chat_calls(oai) == 1


def test_the_cap_is_configurable(oai, tmp_path):
    settings.configure({"retry": {"max_wait_s": 7200}})
    oai.faults.append(Fault(429, retry_after=3600))
    client = client_for("openai", OPENAI, oai.url, tmp_path)
    client.complete(requests(OPENAI, "patient"))
    assert client.sleeps == [3600.0]


def test_gemini_retry_delay_over_the_cap_stops(gem, tmp_path):
    gem.faults.extend([GeminiFault(429, retry_delay="1800s", quota_id=PER_MINUTE)] * 9)
    client = client_for("gemini", GEMINI, gem.url, tmp_path)
    with pytest.raises(LLMError, match="1800 s"):
        client.complete(requests(GEMINI, "slow"))
    assert client.sleeps == [] and chat_calls(gem) == 1


# Billing: stop at once, with the provider's message ----------------------------------------------
def test_openai_insufficient_quota_stops_every_request_at_once(oai, tmp_path):
    oai.faults.extend([Fault(429, code="insufficient_quota")] * 30)
    batch = requests(OPENAI, "b0", "b1", "b2")
    client = client_for("openai", OPENAI, oai.url, tmp_path)
    with pytest.raises(LLMError) as info:
        client.complete(batch)
    message = str(info.value)
    assert "3 of 3 request(s)" in message
    assert "You exceeded your current quota, please check your plan and billing" in message
    assert client.sleeps == []
    assert chat_calls(oai) == 1  # the other two were never sent


def test_openai_rate_limit_429_is_still_retried(oai, tmp_path):
    oai.faults.append(Fault(429, code="rate_limit_exceeded", retry_after=2))
    client = client_for("openai", OPENAI, oai.url, tmp_path)
    client.complete(requests(OPENAI, "busy"))
    assert client.sleeps == [2.0] and chat_calls(oai) == 2


@pytest.mark.parametrize(
    "fault",
    [
        GeminiFault(
            429,
            message="Your prepayment credits are depleted. Please go to AI Studio at"
            " https://ai.studio/projects to manage your project and billing.",
        ),
        GeminiFault(
            400,
            message="Gemini API free tier is not available in your country. Please enable"
            " billing on your project in Google AI Studio.",
        ),
        GeminiFault(403, message="Billing is required.", reason="BILLING_DISABLED"),
    ],
    ids=["prepayment-depleted", "enable-billing", "billing-disabled"],
)
def test_gemini_billing_refusals_stop_at_once(gem, tmp_path, fault):
    gem.faults.extend([fault] * 30)
    client = client_for("gemini", GEMINI, gem.url, tmp_path)
    with pytest.raises(LLMError) as info:
        client.complete(requests(GEMINI, "g0", "g1", "g2"))
    assert "refused for billing" in str(info.value) and fault.message in str(info.value)
    assert client.sleeps == [] and chat_calls(gem) == 1


def test_gemini_quota_429_that_mentions_billing_is_no_billing_refusal(gem, tmp_path):
    # the API's ordinary quota text says "check your plan and billing details": a rate limit
    gem.faults.append(GeminiFault(429, retry_delay="5s", quota_id=PER_MINUTE))
    client = client_for("gemini", GEMINI, gem.url, tmp_path)
    client.complete(requests(GEMINI, "advice"))
    assert client.sleeps == [5.0] and chat_calls(gem) == 2


# Per-day quota: stops only when it is the one violated ------------------------------------------
def test_per_minute_violation_listed_with_the_daily_quota_is_retried(gem, tmp_path):
    gem.faults.append(GeminiFault(429, retry_delay="17s", quota_ids=(PER_MINUTE, PER_DAY)))
    [request] = requests(GEMINI, "minute")
    client = client_for("gemini", GEMINI, gem.url, tmp_path)
    [out] = client.complete([request])
    assert out.text == default_answer([m.as_dict() for m in request.messages])
    assert client.sleeps == [17.0] and chat_calls(gem) == 2


def test_per_day_violation_alone_stops_at_once(gem, tmp_path):
    gem.faults.extend([GeminiFault(429, retry_delay="60s", quota_ids=(PER_DAY,))] * 9)
    client = client_for("gemini", GEMINI, gem.url, tmp_path)
    with pytest.raises(LLMError, match=PER_DAY):
        client.complete(requests(GEMINI, "d0", "d1"))
    assert client.sleeps == [] and chat_calls(gem) == 1
