"""Kill -9 a run halfway, run it again: every answer exactly once, nothing paid twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.servers.base import default_answer
from tests.servers.openai_server import OpenAIServer

REPO = Path(__file__).resolve().parents[1]
N = 40


def start_worker(server, cache_dir, mode, out):
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
