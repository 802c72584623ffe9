"""Kill -9 a run halfway, run it again: every answer exactly once, nothing paid twice."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from empathy_distill.llm.pricing import PriceTable
from tests.servers.base import approx_tokens, default_answer
from tests.servers.openai_server import OpenAIServer

REPO = Path(__file__).resolve().parents[1]
N = 40


def start_worker(server, cache_dir, mode, out, cost_report=None):
    env = {**os.environ, "OPENAI_API_KEY": "sk-test", "PYTHONPATH": f"{REPO / 'workflow'}:{REPO}"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.llm_worker",
            server.url,
            str(cache_dir),
            mode,
            str(N),
            str(out),
            *([str(cost_report)] if cost_report else []),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def query(cache_dir, sql):
    path = Path(cache_dir) / "llm_cache.sqlite3"
    if not path.exists():
        return None
    with sqlite3.connect(path, timeout=5) as db:
        try:
            row = db.execute(sql).fetchone()
        except sqlite3.OperationalError:  # tables not created yet
            return None
    return row[0] if row else None


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def check_answers(out):
    answers = json.loads(Path(out).read_text())
    assert len(answers) == N and len({k for k, _ in answers}) == N
    expected = [default_answer([{"role": "user", "content": f"resume {i}"}]) for i in range(N)]
    assert [text for _, text in answers] == expected


def test_realtime_kill_and_resume(tmp_path):
    with OpenAIServer() as server:
        server.hold_after = N // 2  # answer half, then hang like a dying connection
        first = start_worker(server, tmp_path / "cache", "realtime", tmp_path / "a.json")
        wait_for(lambda: query(tmp_path / "cache", "SELECT COUNT(*) FROM responses") == N // 2)
        first.send_signal(signal.SIGKILL)
        first.wait()
        server.release.set()  # held requests now fail: they were never answered
        server.hold_after = None
        second = start_worker(server, tmp_path / "cache", "realtime", tmp_path / "b.json")
        assert second.wait(timeout=120) == 0, second.stdout.read().decode()
        check_answers(tmp_path / "b.json")
        # every conversation answered (paid) exactly once over both runs
        assert len(server.answered) == N and set(server.answered.values()) == {1}
        assert query(tmp_path / "cache", "SELECT COUNT(*) FROM responses") == N


def csv_cost(path):
    with open(path, newline="") as handle:
        return sum(float(row["cost_usd"]) for row in csv.DictReader(handle))


def test_cost_report_keeps_the_spend_of_a_killed_run(tmp_path):
    """The report is written as answers are paid, so SIGKILL (no ``finally``) loses nothing."""
    costs = tmp_path / "costs.csv"
    with OpenAIServer() as server:
        server.hold_after = N // 2
        first = start_worker(server, tmp_path / "cache", "realtime", tmp_path / "a.json", costs)
        wait_for(lambda: query(tmp_path / "cache", "SELECT COUNT(*) FROM responses") == N // 2)
        # the group commit is on disk; its report row follows within the same write
        wait_for(lambda: costs.exists() and abs(csv_cost(costs) - cache_cost(tmp_path)) < 1e-8, 20)
        first.send_signal(signal.SIGKILL)
        first.wait()
        paid_before_kill = cache_cost(tmp_path)
        assert paid_before_kill > 0
        assert csv_cost(costs) == pytest.approx(paid_before_kill, abs=1e-9)
        server.release.set()
        server.hold_after = None
        second = start_worker(server, tmp_path / "cache", "realtime", tmp_path / "b.json", costs)
        assert second.wait(timeout=120) == 0, second.stdout.read().decode()
    # Every answer priced from the server's own token counts, independently of the client.
    price = PriceTable.load(REPO / "resources/prices.yaml").price("openai", "gpt-4o", "realtime")
    expected = 0.0
    for i in range(N):
        messages = [{"role": "user", "content": f"resume {i}"}]
        expected += price.cost(
            approx_tokens(messages[0]["content"]), approx_tokens(default_answer(messages))
        )
    assert cache_cost(tmp_path) == pytest.approx(expected, abs=1e-9)
    assert csv_cost(costs) == pytest.approx(expected, abs=1e-9)  # rows round to 1e-10 each


def cache_cost(tmp_path):
    return query(tmp_path / "cache", "SELECT COALESCE(SUM(cost_usd), 0) FROM responses")


def test_batch_kill_and_resume_polls_the_same_batch(tmp_path):
    with OpenAIServer() as server:
        server.batch_polls_before_done = 10**9  # the batch never finishes during the first run
        first = start_worker(server, tmp_path / "cache", "batch", tmp_path / "a.json")
        wait_for(
            lambda: query(
                tmp_path / "cache", "SELECT batch_id FROM submissions WHERE status='submitted'"
            )
        )
        batch_id = query(tmp_path / "cache", "SELECT batch_id FROM submissions")
        wait_for(lambda: server.counts[f"GET /v1/batches/{batch_id}"] >= 1)
        first.send_signal(signal.SIGKILL)
        first.wait()
        server.batch_polls_before_done = 0
        second = start_worker(server, tmp_path / "cache", "batch", tmp_path / "b.json")
        assert second.wait(timeout=120) == 0, second.stdout.read().decode()
        check_answers(tmp_path / "b.json")
        assert server.counts["POST /v1/batches"] == 1  # never resubmitted
        assert server.counts["POST /v1/files"] == 1
        assert server.counts[f"GET /v1/batches/{batch_id}"] >= 2  # polled again by the rerun
        assert len(server.answered) == N and set(server.answered.values()) == {1}
        assert query(tmp_path / "cache", "SELECT status FROM submissions") == "completed"
