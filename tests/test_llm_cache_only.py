"""``llm.cache_only``: a run against an archived cache sends nothing and allows retired models.

The paper's Gemini judge (gemini-2.0-flash) was shut down on 2026-06-01; the
``workflow/profiles/paper-models`` overlay names it for runs whose answers are all in an archived
cache. Through the real openai SDK against the fake server: what the cache holds is answered,
what it does not hold stops the call before anything is sent, and no key or price is needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from empathy_distill.core.config import load_config
from empathy_distill.llm import settings
from empathy_distill.llm.client import make_client
from empathy_distill.llm.errors import LLMError
from empathy_distill.llm.request import ChatRequest, Message
from empathy_distill.startup import endpoint_problems, require_keys
from tests.servers.openai_server import OpenAIServer

from .conftest import REPO_ROOT

PRICES = REPO_ROOT / "resources" / "prices.yaml"
OVERLAY = REPO_ROOT / "workflow/profiles/paper-models/config.paper-models.yaml"


@pytest.fixture(autouse=True)
def default_settings():
    settings.configure(None)
    yield
    settings.configure(None)


def ask(text: str, model: str = "gpt-4o") -> ChatRequest:
    return ChatRequest(model, (Message("user", text),))


def client(server: OpenAIServer, cache: Path, model: str = "gpt-4o"):
    endpoint = {"backend": "openai", "model": model, "base_url": server.url, "max_retries": 0}
    return make_client(endpoint, cache_dir=cache, price_table=PRICES, show_progress=False)


def test_cached_answers_come_back_and_nothing_else_is_sent(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with OpenAIServer() as server:
        cached = client(server, tmp_path).complete([ask("archived")])[0].text
        sent = sum(server.counts.values())
        settings.configure({"cache_only": True})
        monkeypatch.delenv("OPENAI_API_KEY")  # no key is needed to read the cache
        archive = client(server, tmp_path)
        assert archive.complete([ask("archived")])[0].text == cached
        with pytest.raises(LLMError, match=r"llm\.cache_only: 1 of 2 request\(s\)"):
            archive.complete([ask("archived"), ask("new")])
        assert sum(server.counts.values()) == sent  # not one request more


def test_a_retired_model_is_priced_only_outside_a_cache_only_run(tmp_path) -> None:
    retired = {"backend": "gemini", "model": "gemini-2.0-flash"}
    with pytest.raises(LLMError, match="retired"):
        make_client(retired, cache_dir=tmp_path, price_table=PRICES)
    settings.configure({"cache_only": True})
    archive = make_client(retired, cache_dir=tmp_path, price_table=PRICES, show_progress=False)
    assert archive.price.cost(10**6, 10**6) == 0.0  # it sends nothing, so it bills nothing


def test_the_paper_models_overlay_passes_start_up_only_as_cache_only(monkeypatch) -> None:
    for name in ("OPENAI_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    overlay = yaml.safe_load(OVERLAY.read_text())
    assert overlay["judges"]["gemini"]["model"] == "gemini-2.0-flash"
    config = load_config(REPO_ROOT / "config.yaml", overlay)
    assert config["llm"]["cache_only"] is True
    assert endpoint_problems(config) == []
    require_keys(config, [("judge_vs_teacher", {"judge": "gemini"})])  # no key, no error
    overlay["llm"]["cache_only"] = False
    live = load_config(REPO_ROOT / "config.yaml", overlay)
    problems = endpoint_problems(live)
    assert any("judges.gemini.model" in p and "retired" in p for p in problems), problems
