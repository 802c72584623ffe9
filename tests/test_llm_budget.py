"""llm.budget_usd is a cap over every process sharing a cache: the fake server's bill never
passes it, and the ledger (the cache database) equals that bill.

Worst case of a request, as the budget reserves it (``llm/budget.py``): its prompt's UTF-8
bytes + 3 tokens per message + 3 for the reply as input tokens (a byte-level BPE token holds
at least one byte), and its ``max_tokens`` as output tokens. The prices are read here from
``resources/prices.yaml`` itself, and the bill is counted by the server from what it answered.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from empathy_distill.llm import BudgetExceededError, ChatRequest, Message, make_client
from empathy_distill.llm.backends.gemini_backend import generation_config
from empathy_distill.llm.budget import (
    FOREIGN_RESERVATION_TTL_S,
    SharedBudget,
    worst_case_output_tokens,
)
from empathy_distill.llm.cache import ResponseCache
from empathy_distill.llm.capabilities import OutputLimits, openai_body_options
from tests.llm_budget_worker import PROMPT_CHARS, prompt
from tests.servers.openai_server import OpenAIServer

REPO = Path(__file__).resolve().parents[1]
PRICES = REPO / "resources" / "prices.yaml"
MAX_TOKENS = 100
WORKERS = 4


def usd_per_token(mode: str) -> tuple[float, float]:
    entry = yaml.safe_load(PRICES.read_text())["models"]["gpt-4o"][mode]
    return entry["input"], entry["output"]


def worst_case_usd(mode: str = "realtime", prompt_bytes: int = PROMPT_CHARS) -> float:
    price_in, price_out = usd_per_token(mode)
    return ((prompt_bytes + 3 + 3) * price_in + MAX_TOKENS * price_out) / 1e6


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with OpenAIServer() as srv:
        yield srv


def bill(server) -> float:
    return server.bill_usd({"realtime": usd_per_token("realtime"), "batch": usd_per_token("batch")})


def child_env() -> dict[str, str]:
    """The test's environment for a child process, with this tree importable (and what the
    test's own PYTHONPATH holds, e.g. older SDKs)."""
    paths = [str(REPO / "workflow"), str(REPO), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "OPENAI_API_KEY": "sk-test", "PYTHONPATH": ":".join(filter(None, paths))}


def run_workers(server, cache_dir, budget, per_worker):
    env = child_env()
    outs = [cache_dir.parent / f"worker{i}.json" for i in range(WORKERS)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.llm_budget_worker",
                server.url,
                str(cache_dir),
                repr(budget),
                f"w{i}",
                str(per_worker),
                str(MAX_TOKENS),
                str(out),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i, out in enumerate(outs)
    ]
    for proc in procs:
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, output.decode()
    return [json.loads(out.read_text()) for out in outs]


def reservations(cache_dir) -> list[tuple]:
    with sqlite3.connect(Path(cache_dir) / "llm_cache.sqlite3") as db:
        return db.execute("SELECT id, amount_usd, pid, batch_tag FROM reservations").fetchall()


def test_four_processes_answers_at_the_limit_never_pass_the_cap(server, tmp_path):
    """Every answer is max_tokens long (the dearest possible); 4 jobs race for a budget of
    exactly 10 worst cases: at most 10 requests reach the server, ledger == bill <= cap."""
    server.fill_to_limit = True
    cap = 10 * worst_case_usd()
    results = run_workers(server, tmp_path / "cache", cap, per_worker=6)
    served = server.bill["realtime"]["requests"]
    assert 1 <= served <= 10
    assert server.bill["realtime"]["completion_tokens"] == served * MAX_TOKENS
    assert bill(server) <= cap + 1e-12
    assert ResponseCache(tmp_path / "cache").spent_usd() == pytest.approx(bill(server), abs=1e-12)
    # every answer the server sent is kept; the jobs that met the cap say what is left
    assert sum(r["answered"] for r in results) == served
    refused = [r["error"] for r in results if r["error"]]
    assert refused and all("is left" in e and "llm.budget_usd" in e for e in refused)
    assert reservations(tmp_path / "cache") == []


def test_short_answers_release_their_reservations_so_more_fit(server, tmp_path):
    """Answers of 50 tokens cost about half the worst case: more than 10 requests fit, the
    bill still stays under the cap and equals the ledger."""
    server.answer_fn = lambda messages: "word" * 50
    cap = 10 * worst_case_usd()
    results = run_workers(server, tmp_path / "cache", cap, per_worker=8)
    served = server.bill["realtime"]["requests"]
    assert served > 10
    assert bill(server) <= cap + 1e-12
    assert ResponseCache(tmp_path / "cache").spent_usd() == pytest.approx(bill(server), abs=1e-12)
    assert sum(r["answered"] for r in results) == served
    assert reservations(tmp_path / "cache") == []


HOLDER = """
import sys, time
from empathy_distill.llm.budget import SharedBudget
from empathy_distill.llm.cache import ResponseCache
budget = SharedBudget(ResponseCache(sys.argv[1]), float(sys.argv[2]))
budget.reserve(float(sys.argv[2]), "held by a process about to be killed")
print("reserved", flush=True)
time.sleep(600)
"""


def test_reservation_of_a_killed_process_is_reclaimed(tmp_path):
    cache_dir = tmp_path / "cache"
    env = child_env()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(cache_dir), "1.0"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "reserved"
        budget = SharedBudget(ResponseCache(cache_dir), 1.0)
        # alive: its reservation holds the whole cap
        assert budget.try_reserve(0.01, "while it lives") is None
        with pytest.raises(BudgetExceededError, match=r"only \$0\.0000 is left"):
            budget.reserve(0.01, "while it lives")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    rid = budget.reserve(0.5, "after the kill")
    assert [r[0] for r in reservations(cache_dir)] == [rid]
    assert budget.left() == pytest.approx(0.5)


def test_holders_and_other_hosts(tmp_path):
    """A dead process's batch reservation stays while the batch is open (the provider still
    bills it); another host's reservation is kept until it is FOREIGN_RESERVATION_TTL_S old."""
    cache = ResponseCache(tmp_path / "cache")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **_out())
    dead_pid = int(dead.stdout)
    req = ChatRequest("gpt-4o", (Message("user", "hi"),))
    cache.add_submission("ed-open", "openai", "gpt-4o", [req])
    now = time.time()
    rows = [
        ("ed-open", 0.2, socket.gethostname(), dead_pid, "ed-open", now),
        ("ed-never", 0.2, socket.gethostname(), dead_pid, "ed-never", now),
        ("far-new", 0.1, "another-host", 1, None, now - 60),
        ("far-old", 0.1, "another-host", 1, None, now - FOREIGN_RESERVATION_TTL_S - 1),
    ]
    with cache.transaction() as db:
        db.executemany(
            "INSERT INTO reservations (id, amount_usd, what, host, pid, pid_start, batch_tag,"
            " created_at) VALUES (?,?,'t',?,?,NULL,?,?)",
            rows,
        )
    budget = SharedBudget(cache, 1.0)
    assert budget.left() == pytest.approx(1.0 - 0.2 - 0.1)
    assert sorted(r[0] for r in reservations(tmp_path / "cache")) == ["ed-open", "far-new"]
    cache.close_submission("ed-open", "completed")
    assert budget.left() == pytest.approx(0.9)


def _out():
    return {"capture_output": True, "text": True, "check": True}


def batch_client(server, tmp_path, budget):
    endpoint = {
        "backend": "openai",
        "model": "gpt-4o",
        "base_url": server.url,
        "mode": "batch",
        "poll_interval_s": 0.01,
        "max_retries": 1,
        "max_new_tokens": MAX_TOKENS,
    }
    return make_client(
        endpoint,
        cache_dir=tmp_path / "cache",
        price_table=PRICES,
        budget_usd=budget,
        show_progress=False,
    )


def batch_requests(n):
    return [
        ChatRequest("gpt-4o", (Message("user", prompt("batch", i)),), {"max_tokens": MAX_TOKENS})
        for i in range(n)
    ]


def test_batch_reserves_at_submission_and_charges_when_read(server, tmp_path):
    server.fill_to_limit = True
    server.batch_polls_before_done = 2
    client = batch_client(server, tmp_path, 6 * worst_case_usd("batch"))
    seen: list[list[tuple]] = []

    async def watch(seconds):  # called between polls: the batch is in flight
        seen.append(reservations(tmp_path / "cache"))
        await asyncio.sleep(0)

    client.sleep = watch
    client.complete(batch_requests(5))
    assert seen, "the batch was never polled twice"
    (tag, amount, _, holder) = seen[0][0]
    assert len(seen[0]) == 1 and holder == tag
    assert amount == pytest.approx(5 * worst_case_usd("batch"))
    assert reservations(tmp_path / "cache") == []
    assert server.bill["batch"]["requests"] == 5
    assert ResponseCache(tmp_path / "cache").spent_usd() == pytest.approx(bill(server), abs=1e-12)
    # what is left after the real charges (prompts bill ~10 tokens, not 46) holds one more
    # worst case: a batch of 3 is cut to its first request, the other 2 are refused
    left = 6 * worst_case_usd("batch") - bill(server)
    assert worst_case_usd("batch") <= left < 2 * worst_case_usd("batch")
    # (a job projected not to fit is refused before anything is sent; this one is projected
    # with 1-token answers, so it starts, and its batch meets the cap)
    with pytest.raises(BudgetExceededError, match=r"2 request\(s\) of a batch"):
        client.complete(batch_requests(8)[5:], expected_output_tokens=1)
    assert [b["request_counts"]["total"] for b in server.batches.values()] == [5, 1]
    assert bill(server) <= 6 * worst_case_usd("batch") + 1e-12
    assert ResponseCache(tmp_path / "cache").spent_usd() == pytest.approx(bill(server), abs=1e-12)
    assert reservations(tmp_path / "cache") == []


def test_finetune_reserves_its_projection_until_trained_tokens_are_charged(tmp_path, monkeypatch):
    """Reserved at creation, held by the job (its process may die: the job is still billed),
    replaced by trained_tokens x the training price when it succeeds."""
    from tests.test_scoring_finetune_openai import (
        TRAINING_PER_M,
        Crash,
        crash_at,
        go,
        run_part,
        spec_for,
        write_train,
    )

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with OpenAIServer() as srv:
        train = write_train(tmp_path)
        with pytest.raises(Crash):
            go(
                spec_for(srv, tmp_path),
                tmp_path,
                train,
                run_part(budget=1.0),
                hook=crash_at("job_saved"),
            )
        ((rid, amount, _, holder),) = reservations(tmp_path / "cache")
        assert rid == holder and holder.startswith("finetune:")
        (state,) = [ResponseCache(tmp_path / "cache").finetune_state(holder[9:])]
        assert amount == pytest.approx(state["projected_usd"]) and amount > 0
        # its process dies: the job runs on at the provider, so the reservation stays
        dead = int(
            subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **_out()).stdout
        )
        with sqlite3.connect(tmp_path / "cache" / "llm_cache.sqlite3") as db:
            db.execute("UPDATE reservations SET pid=?", (dead,))
        budget = SharedBudget(ResponseCache(tmp_path / "cache"), 1.0)
        assert budget.left() == pytest.approx(1.0 - amount)
        go(spec_for(srv, tmp_path), tmp_path, train, run_part(budget=1.0))
        assert reservations(tmp_path / "cache") == []
        billed = srv.bill["training"]["prompt_tokens"]
        assert billed > 0
        assert ResponseCache(tmp_path / "cache").spent_usd() == pytest.approx(
            billed * TRAINING_PER_M / 1e6
        )


def test_embeddings_are_reserved_and_charged_like_chat_calls(tmp_path):
    """Each embeddings request reserves its texts' UTF-8 bytes as input tokens and is charged
    its billed usage.prompt_tokens in the same ledger; a cap below the worst case sends none."""
    from empathy_distill.evaluation.openai_embeddings import OpenAIEmbedder
    from empathy_distill.llm.pricing import Price

    per_m = yaml.safe_load(PRICES.read_text())["models"]["text-embedding-3-small"]["realtime"]
    price = Price(per_m["input"], 0.0)
    texts = [f"text number {i} " * 20 for i in range(12)]  # 12 requests of 1 text
    worst_each = len(texts[0].encode()) * per_m["input"] / 1e6
    with OpenAIServer() as srv:
        cache = ResponseCache(tmp_path / "cache")
        small = SharedBudget(cache, worst_each * 0.99)
        with pytest.raises(BudgetExceededError, match="is left"):
            OpenAIEmbedder(
                "text-embedding-3-small",
                "sk-test",
                base_url=srv.url,
                batch_size=1,
                budget=small,
                price=price,
            ).encode(texts)
        assert srv.bill["embeddings"]["requests"] == 0
        budget = SharedBudget(cache, 1.0)
        embedder = OpenAIEmbedder(
            "text-embedding-3-small",
            "sk-test",
            base_url=srv.url,
            batch_size=1,
            budget=budget,
            price=price,
        )
        assert embedder.encode(texts).shape == (12, 8)
        billed = srv.bill["embeddings"]["prompt_tokens"]
        assert srv.bill["embeddings"]["requests"] == 12 and billed == embedder.prompt_tokens
        assert cache.spent_usd() == pytest.approx(billed * per_m["input"] / 1e6)
        assert reservations(tmp_path / "cache") == []


def test_a_cache_from_before_the_cap_gets_its_running_total_from_its_rows(tmp_path):
    """The ledger's total is kept by triggers; an older cache file (no total) is counted once
    when opened, and later inserts, updates and charges move it."""
    from empathy_distill.llm.request import Answer

    cache = ResponseCache(tmp_path)
    answer = Answer("t", "gpt-4o", {"input_tokens": 1, "output_tokens": 1})
    reqs = [ChatRequest("gpt-4o", (Message("user", f"q{i}"),)) for i in range(3)]
    cache.put_many([(r, answer, 0.125) for r in reqs], backend="openai", mode="realtime")
    cache.save_finetune_state("job", {"step": "succeeded"}, 0.5)
    cache.close()
    with sqlite3.connect(tmp_path / "llm_cache.sqlite3") as db:  # as an older version left it
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'").fetchall():
            db.execute(f"DROP TRIGGER {name}")
        db.execute("DROP TABLE spend_total")
    reopened = ResponseCache(tmp_path)
    assert reopened.spent_usd() == pytest.approx(3 * 0.125 + 0.5)
    reopened.save_finetune_state("job", {"step": "succeeded"}, 0.75)
    reopened.add_charge("embeddings", 0.25)
    assert reopened.spent_usd() == pytest.approx(3 * 0.125 + 0.75 + 0.25)


@pytest.mark.parametrize("endpoint_thinking", [None, 128])
@pytest.mark.parametrize("own", [{}, {"max_output_tokens": 40}])
def test_reservation_is_the_gemini_cap_sent_even_with_the_requests_own_thinking(
    endpoint_thinking, own
) -> None:
    """Gemini bills thinking inside maxOutputTokens, so what a request can be billed is the cap
    the backend sends: the reservation equals it, whatever thinking budget the request asks
    for itself (it was once added on top, reserving the thinking twice)."""
    sampling = {**own, "thinking_config": {"thinking_budget": 500}}
    request = ChatRequest("gemini-3.5-flash", [Message("user", "hi")], sampling)
    limits = OutputLimits(max_new_tokens=64, thinking_budget=endpoint_thinking)
    sent = generation_config(request, limits).max_output_tokens
    reserved = worst_case_output_tokens(request, 64, endpoint_thinking or 0)
    assert reserved == sent == (40 if own else 64) + (endpoint_thinking or 0)


@pytest.mark.parametrize(
    "caps",
    [
        {"max_tokens": 50, "max_completion_tokens": 100},
        {"max_tokens": 100, "max_completion_tokens": 50},
    ],
)
def test_the_reservation_covers_the_cap_the_openai_backend_sends(caps) -> None:
    """A request naming two caps: whichever the OpenAI body sends (the first of its keys), the
    reservation is not below it (it once took the smaller one: 50 reserved, 100 sent)."""
    request = ChatRequest("gpt-4o", [Message("user", "hi")], dict(caps))
    limits = OutputLimits(max_new_tokens=64, thinking_budget=None)
    sent = openai_body_options("gpt-4o", request.sampling, limits, hosted=True)
    reserved = worst_case_output_tokens(request, 64)
    assert sent["max_completion_tokens"] == caps["max_completion_tokens"]
    assert reserved == 100 >= sent["max_completion_tokens"]
