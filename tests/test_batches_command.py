"""``empathy-distill batches``: lists the cache's batches and cancels the unneeded ones through
the real SDKs (openai ``batches.cancel``, google-genai ``batches.cancel``) against the fakes."""

from __future__ import annotations

import asyncio

import pytest

from empathy_distill import batch_admin
from empathy_distill.cli import load_configs
from empathy_distill.llm.backends import make_backend
from empathy_distill.llm.cache import ResponseCache
from empathy_distill.llm.request import ChatRequest, Message

from .conftest import REPO_ROOT
from .servers.gemini_server import GeminiServer
from .servers.openai_server import OpenAIServer


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("GEMINI_API_KEY", "g-test")


def submit(cache, endpoint, texts, tag):
    """A batch submitted as the client does: recorded first, then created, id recorded."""
    requests = [ChatRequest(endpoint["model"], (Message("user", t),)) for t in texts]
    cache.add_submission(tag, endpoint["backend"], endpoint["model"], requests)

    async def create():
        backend = make_backend(endpoint)
        try:
            return await backend.submit_batch(tag, requests)
        finally:
            await backend.aclose()

    batch_id = asyncio.run(create())
    cache.set_batch_id(tag, batch_id)
    return batch_id


def test_cancels_only_batches_no_endpoint_needs(tmp_path, capsys):
    with OpenAIServer() as openai_server, GeminiServer() as gemini_server:
        openai_server.batch_polls_before_done = 10**6  # batches keep running
        gemini_server.batch_polls_before_done = 10**6
        config = load_configs([str(REPO_ROOT / "config.yaml")])
        config["llm"]["cache_dir"] = str(tmp_path / "cache")
        config["judges"]["gpt4o"]["base_url"] = openai_server.url
        config["teacher"]["base_url"] = openai_server.url
        scorer = config["scoring"]["scorers"]["gpt4o_mini_rating"]
        for defined in config["scoring"]["scorers"].values():  # defined, not in the grid
            defined["base_url"] = openai_server.url
        config["judges"]["gemini"]["base_url"] = gemini_server.url
        cache = ResponseCache(tmp_path / "cache")
        stale = submit(cache, {**scorer, "mode": "batch"}, ["a", "b"], "ed-stale")
        kept = submit(cache, config["judges"]["gpt4o"], ["c"], "ed-kept")
        gemini_old = {"backend": "gemini", "model": "gemini-3.1-flash-lite"}
        stale_g = submit(
            cache, {**gemini_old, "base_url": gemini_server.url}, ["d"], "ed-stale-gemini"
        )
        # the gemini batch's model is defined nowhere in the config: cancelled with the key of
        # the gemini backend, at the configured judge's URL (same provider)
        config["judges"]["old"] = {**gemini_old, "base_url": gemini_server.url}
        splits = {"train": str(tmp_path / "none.csv"), "test": None, "improve_human": None}

        assert batch_admin.run(config, False, splits) == 0  # listing cancels nothing
        listing = capsys.readouterr().out
        assert stale in listing and kept in listing and "no: no endpoint" in listing
        assert openai_server.batches[stale]["status"] != "cancelled"

        config["judges"].pop("old")
        config["judges"]["old"] = {**gemini_old, "base_url": gemini_server.url}
        config["grid"]["judges"] = ["gpt4o", "gemini"]  # "old" is defined, not in the grid
        cancelled = batch_admin.run(config, True, splits)
    assert cancelled == 2
    assert openai_server.batches[stale]["status"] == "cancelled"
    assert openai_server.batches[kept]["status"] != "cancelled"  # the gpt-4o judge may need it
    assert gemini_server.cancelled == [stale_g]
    states = {tag: status for tag, _, status in cache.all_submissions()}
    assert states == {
        "ed-stale": "cancelled",
        "ed-kept": "submitted",
        "ed-stale-gemini": "cancelled",
    }
