"""``empathy-distill batches``: lists the cache's batches and cancels the unneeded ones through
the real SDKs (openai ``batches.cancel``, google-genai ``batches.cancel``) against the fakes."""

from __future__ import annotations

import asyncio
import math

import pytest

from empathy_distill import batch_admin
from empathy_distill.cli import load_configs, main
from empathy_distill.llm import batches
from empathy_distill.llm.backends import make_backend
from empathy_distill.llm.cache import ResponseCache
from empathy_distill.llm.pricing import PriceTable
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
        config["scoring"]["grid"] = []  # gpt-4o-mini scores nothing: its old batch is unneeded
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
        # an old judge, still defined but not in grid.judges: its batch is unneeded, and is
        # cancelled at the URL and with the key variable that judge names
        config["judges"]["old"] = {**gemini_old, "base_url": gemini_server.url}
        splits = {"train": str(tmp_path / "none.csv"), "test": None, "improve_human": None}

        assert batch_admin.run(config, False, splits) == 0  # listing cancels nothing
        listing = capsys.readouterr().out
        assert stale in listing and kept in listing and "no: no endpoint" in listing
        assert openai_server.batches[stale]["status"] != "cancelled"

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


def record(cache, tag, model, texts, batch_id):
    requests = [ChatRequest(model, (Message("user", t),)) for t in texts]
    cache.add_submission(tag, "openai", model, requests)
    cache.set_batch_id(tag, batch_id)
    return {r.key for r in requests}


def test_teacher_batches_are_unneeded_when_no_key_is_a_current_teacher_request(tmp_path):
    cache = ResponseCache(tmp_path)
    current = record(cache, "ed-current", "gpt-4o", ["new prompt 1", "old prompt"], "b1")
    record(cache, "ed-stale", "gpt-4o", ["old prompt 2", "old prompt 3"], "b2")
    record(cache, "ed-other", "gpt-4o-mini", ["x"], "b3")
    rows = batches.list_batches(cache, PriceTable.load(REPO_ROOT / "resources" / "prices.yaml"))
    assert [r.requests for r in rows] == [2, 2, 1]
    # est. cost: ceil(chars / 4) + 3 per message + 3 input tokens and 256 output tokens per
    # request, at the batch prices of resources/prices.yaml (gpt-4o: 1.25 / 5.00 per 1M)
    stale = sum(
        (math.ceil(len(t) / 4) + 6) * 1.25 + 256 * 5.00 for t in ("old prompt 2", "old prompt 3")
    )
    assert rows[1].est_cost_usd == pytest.approx(stale / 1e6)
    teacher_only = {"teacher": {"backend": "openai", "model": "gpt-4o"}}
    teacher_keys = set(list(current)[:1])  # one key of ed-current is still sent
    flagged = {r.tag: why for r, why in batches.unneeded(rows, teacher_only, teacher_keys, cache)}
    assert set(flagged) == {"ed-stale", "ed-other"}
    assert "teacher request" in flagged["ed-stale"] and "gpt-4o-mini" in flagged["ed-other"]
    # the same model also judges: its requests cannot be enumerated, so the batch is kept
    shared = {**teacher_only, "judges.gpt4o": {"backend": "openai", "model": "gpt-4o"}}
    flagged = {r.tag for r, _ in batches.unneeded(rows, shared, teacher_keys, cache)}
    assert flagged == {"ed-other"}
    # without the split tables the teacher's requests are unknown: nothing of gpt-4o is flagged
    assert {r.tag for r, _ in batches.unneeded(rows, teacher_only, None, cache)} == {"ed-other"}
    assert rows[2].est_cost_usd == pytest.approx((7 * 0.075 + 256 * 0.30) / 1e6)  # gpt-4o-mini
    # with the config's worst case for that model (e.g. a scorer's max_new_tokens of 64)
    prices = PriceTable.load(REPO_ROOT / "resources" / "prices.yaml")
    capped = batches.list_batches(cache, prices, output_tokens={("openai", "gpt-4o-mini"): 64})
    assert capped[2].est_cost_usd == pytest.approx((7 * 0.075 + 64 * 0.30) / 1e6)


def test_the_command_without_a_cache_says_so(tmp_path, capsys):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(f"llm: {{cache_dir: {tmp_path / 'none'}}}\n")
    assert main(["batches", "--configfile", str(REPO_ROOT / "config.yaml"), str(overlay)]) == 0
    assert "no batches" in capsys.readouterr().out
