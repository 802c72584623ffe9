"""One score_answers job per scorer: its spec names every answer set of the grid, it writes each
set's scores file exactly as scoring that set alone would, it sends its requests as one set (one
budget projection, one batch), a killed job pays nothing twice on rerun, a local scorer is loaded
once, and the jobs together send what ``empathy-distill cost`` prices."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from empathy_distill import cost
from empathy_distill.core import grid, runtime, specs
from empathy_distill.core.config import load_config, validate_config
from empathy_distill.core.judges import calls_llm
from empathy_distill.distillation.sets import improve_human_sources
from empathy_distill.evaluation.records import read_jsonl, write_jsonl
from empathy_distill.evaluation.scoring import score
from empathy_distill.evaluation.scoring import specs as scoring_specs
from empathy_distill.evaluation.scoring.prompts import scoring_prompt
from empathy_distill.llm.pricing import PriceTable, approx_request_tokens
from tests.conftest import REPO_ROOT, SHIPPED_PROMPTS
from tests.servers.openai_server import OpenAIServer
from tests.test_llm_resume import query, wait_for
from tests.workflow_helpers import run_snakemake

PRICES = REPO_ROOT / "resources" / "prices.yaml"
SCORING_PROMPTS = REPO_ROOT / "resources" / "scoring_prompts.json"
CHAT = "POST /v1/chat/completions"
#: The answer sets of a grid of one student, two direct configurations, SFT only, vs_base.
MODELS = ("s--direct--chatgpt--sft", "s--direct--llama--sft")
BASE = "s--base"
TAGS = (MODELS[0], BASE, MODELS[1])  # grid.answer_tags: pair by pair, model then opponent
DIALOGUES = 6


def rate_by_length(messages: list[dict]) -> str:
    """A rating scorer's reply (1-3) read from the answer's length: each answer set scores
    differently, so a file holding another set's records would show."""
    answer = messages[-1]["content"].split("Response: '", 1)[1]
    return str(1 + len(answer) % 3)


def grid_config(scorer: dict, tmp_path: Path, **llm) -> dict:
    """A validated config of that small grid whose one scorer ``r`` (kind rating) is
    ``scorer``."""
    return validate_config(
        {
            "prompts": str(SHIPPED_PROMPTS),
            "llm": {"cache_dir": str(tmp_path / "cache"), "price_table": str(PRICES), **llm},
            "distillation": {"methods": {"direct": ["chatgpt", "llama"]}},
            "students": {"s": {"model": "m", "template": "llama3"}},
            "grid": {"students": ["s"], "judges": ["j"], "methods": ["sft"]},
            "judges": {"j": {"backend": "offline", "model": "ratings"}},
            "evaluation": {"comparisons": ["vs_base"]},
            "scoring": {
                "prompts": str(SCORING_PROMPTS),
                "scorers": {"r": {"kind": "rating", **scorer}},
                "grid": ["r"],
            },
        }
    )


def write_answers(root: Path, tags: tuple[str, ...] = TAGS) -> None:
    """The test split and the answer sets the job reads (``grid.answer_path``), each set's
    answers its own (every request of the job a different conversation)."""
    rows = [(f"d{i}", f"situation {i}", f"utterance {i}") for i in range(DIALOGUES)]
    split = "dialog_id,situation,speaker_uttr\n" + "".join(",".join(r) + "\n" for r in rows)
    (root / "test.csv").write_text(split, encoding="utf-8")
    for k, tag in enumerate(tags):
        write_jsonl(
            root / grid.answer_path(tag),
            [
                {"dialog_id": d, "prompt": "", "answer": f"answer {i}{'!' * k}", "generation": {}}
                for i, (d, _, _) in enumerate(rows)
            ],
        )


def job_argv(spec: dict, root: Path) -> list[str]:
    return ["--spec", specs.dumps(spec), "--test", str(root / "test.csv"), "--root", str(root)]


def local_scorer(server: OpenAIServer) -> dict:
    return {"backend": "openai_compatible", "model": "local-scorer", "base_url": server.url}


def test_the_spec_names_every_answer_set_in_grid_order(tmp_path):
    config = grid_config({"backend": "openai", "model": "gpt-4o-mini"}, tmp_path)
    spec = specs.build("score_answers", config, "r")
    assert spec["answer_tags"] == list(TAGS)
    # the rest is the scorer's identity, as before (what its scores depend on); score_responses'
    # spec (the dataset's responses) is that identity alone
    assert {k: v for k, v in spec.items() if k != "answer_tags"} == scoring_specs.score_answers(
        config, "r"
    )
    assert specs.build("score_responses", config, "r") == scoring_specs.score_answers(config, "r")
    manifest = scoring_specs.answer_set_manifest(spec)
    assert [e["path"] for e in manifest] == [
        "results/scores/r/s/direct/chatgpt/sft.jsonl",
        "results/scores/r/s/base.jsonl",
        "results/scores/r/s/direct/llama/sft.jsonl",
    ]
    assert [e["answers_path"] for e in manifest] == [
        "results/answers/s/direct/chatgpt/sft.jsonl",
        "results/answers/s/base.jsonl",
        "results/answers/s/direct/llama/sft.jsonl",
    ]


def test_each_file_holds_what_scoring_its_set_alone_gives(tmp_path, monkeypatch, capsys):
    write_answers(tmp_path)
    with OpenAIServer(answer_fn=rate_by_length) as server:
        config = grid_config(local_scorer(server), tmp_path)
        spec = specs.build("score_answers", config, "r")
        monkeypatch.setenv(runtime.RUNTIME_ENV, json.dumps(runtime.runtime_part(config)))
        assert score.main(job_argv(spec, tmp_path)) == 0
        # one request set: every answer of every set, each conversation asked once
        assert server.counts[CHAT] == len(TAGS) * DIALOGUES
        assert set(server.answered.values()) == {1}
        out = capsys.readouterr().out
        assert f"scorer r: {len(TAGS)} answer sets" in out
        assert out.count(f"{DIALOGUES} answers scored, 0 invalid replies, 0 refused") == len(TAGS)
        alone_ask = server_free_ask(config)
        for tag in TAGS:
            written = read_jsonl(tmp_path / grid.score_path("r", tag))
            items = score.score_items(tmp_path / "test.csv", tmp_path / grid.answer_path(tag))
            assert written == score.run_scorer(spec, items, ask=alone_ask)
            assert [r["dialog_id"] for r in written] == [f"d{i}" for i in range(DIALOGUES)]
        assert server.counts[CHAT] == len(TAGS) * DIALOGUES  # alone: all from the cache
    # the sets' answers differ in length, so their scores differ: no set got another's records
    scores = {tag: read_jsonl(tmp_path / grid.score_path("r", tag))[0]["scores"] for tag in TAGS}
    assert len({tuple(s) for s in scores.values()}) == len(TAGS)


def server_free_ask(config: dict):
    """The LLM layer's client for scorer ``r`` (answers come from the cache the job filled)."""
    spec = scoring_specs.score_answers(config, "r")
    return score.client_ask(spec, runtime.runtime_part(config))


def test_a_killed_score_job_pays_nothing_twice(tmp_path):
    """kill -9 halfway through the job's requests, run it again: every conversation answered
    (paid) once over both runs, and no scores file of the killed run left behind."""
    write_answers(tmp_path)
    total = len(TAGS) * DIALOGUES
    with OpenAIServer(answer_fn=rate_by_length) as server:
        # one request at a time, so that exactly half are answered before the hold
        config = grid_config({**local_scorer(server), "concurrency": 1}, tmp_path)
        spec = specs.build("score_answers", config, "r")
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT / "workflow"),
            runtime.RUNTIME_ENV: json.dumps(runtime.runtime_part(config)),
        }
        command = [sys.executable, "-m", "empathy_distill.evaluation.scoring.score"]
        command += job_argv(spec, tmp_path)
        server.hold_after = total // 2  # answer half, then hang like a dying connection
        first = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE)
        cached = "SELECT COUNT(*) FROM responses"
        wait_for(lambda: query(tmp_path / "cache", cached) == total // 2)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert not (tmp_path / "results" / "scores").exists()
        server.release.set()  # held requests now fail: they were never answered
        server.hold_after = None
        second = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
        assert second.returncode == 0, second.stderr[-3000:]
        assert len(server.answered) == total and set(server.answered.values()) == {1}
    for tag in TAGS:
        assert len(read_jsonl(tmp_path / grid.score_path("r", tag))) == DIALOGUES


def test_the_job_projects_all_its_sets_against_the_budget_and_sends_one_batch(
    tmp_path, monkeypatch, capsys
):
    """The budget check before anything is sent covers the whole job: a budget that one set's
    requests fit but not all three refuses the job, nothing sent. With room, the job's requests
    go in one batch (a job per answer set made one batch, one wait of up to a day, per set)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    write_answers(tmp_path)
    with OpenAIServer(answer_fn=rate_by_length) as server:
        endpoint = {
            "backend": "openai",
            "model": "gpt-4o-mini",
            "base_url": server.url,
            "mode": "batch",
            "poll_interval_s": 0.01,
            "max_retries": 1,
            "max_new_tokens": 16,
        }
        config = grid_config(endpoint, tmp_path)
        spec = specs.build("score_answers", config, "r")
        price = PriceTable.load(PRICES).price("openai", "gpt-4o-mini", "batch")
        prompt = scoring_prompt("rating", spec["variant"], str(SCORING_PROMPTS))

        def projected(tag: str) -> float:  # the set's requests at their worst-case answers
            items = score.score_items(tmp_path / "test.csv", tmp_path / grid.answer_path(tag))
            requests = score.build_requests(
                items, prompt, "gpt-4o-mini", spec["endpoint"]["sampling"]
            )
            return sum(price.cost(approx_request_tokens(r), 16) for r in requests)

        whole = sum(projected(tag) for tag in TAGS)
        budget = 0.9 * whole
        assert all(projected(tag) < budget for tag in TAGS)  # each set alone would be sent
        tight = grid_config(endpoint, tmp_path, budget_usd=budget)
        monkeypatch.setenv(runtime.RUNTIME_ENV, json.dumps(runtime.runtime_part(tight)))
        assert score.main(job_argv(spec, tmp_path)) == 1
        assert "error:" in capsys.readouterr().err
        assert server.bodies == [] and server.batches == {}  # nothing sent, nothing billed
        assert not (tmp_path / "results" / "scores").exists()

        room = grid_config(endpoint, tmp_path, budget_usd=10 * whole)
        monkeypatch.setenv(runtime.RUNTIME_ENV, json.dumps(runtime.runtime_part(room)))
        assert score.main(job_argv(spec, tmp_path)) == 0
        sizes = [b["request_counts"]["total"] for b in server.batches.values()]
        assert sizes == [len(TAGS) * DIALOGUES]
    for tag in TAGS:
        assert len(read_jsonl(tmp_path / grid.score_path("r", tag))) == DIALOGUES


def test_an_offline_scorer_is_applied_once_for_all_the_sets(tmp_path, monkeypatch):
    """A fitted local model (backend offline) is loaded and run once per job: one call over
    every answer of every set, whose records are cut back into the sets in order."""
    write_answers(tmp_path)
    calls = []

    def fake_score_offline(spec, items, embedder=None):  # records as the real one's, per item
        calls.append([i.dialog_id for i in items])
        return [{"dialog_id": i.dialog_id, "answer": i.answer} for i in items]

    monkeypatch.setattr(score, "score_offline", fake_score_offline)
    spec = {"scorer": "o", "kind": "subfactors", "backend": "offline", "answer_tags": list(TAGS)}
    scored = score.score_answer_sets(spec, tmp_path / "test.csv", tmp_path)
    assert len(calls) == 1 and len(calls[0]) == len(TAGS) * DIALOGUES
    for k, tag in enumerate(TAGS):
        records = scored[grid.score_path("o", tag)]
        assert [r["answer"] for r in records] == [f"answer {i}{'!' * k}" for i in range(DIALOGUES)]


def test_the_score_jobs_send_what_the_cost_projection_prices(train, test_split):
    """The default grid (config.yaml): each LLM scorer's job sends answer sets x test dialogues
    requests, which is the sum of that scorer's rows over the kinds of answer set (base, model,
    teacher), so the projected total (``empathy-distill cost``) is unchanged by the regrouping."""
    config = load_config(REPO_ROOT / "config.yaml", {"prompts": str(SHIPPED_PROMPTS)})
    train3, test = train.head(3), test_split.head(4)
    rows = cost.project(config, train3, test, improve_human_sources(train3))
    llm_scorers = [
        name for name in grid.scorers(config) if calls_llm(config["scoring"]["scorers"][name])
    ]
    assert llm_scorers == ["gpt4o_mini_subfactors"]  # minilm_subfactors is offline: no row
    for name in grid.scorers(config):
        spec = specs.build("score_answers", config, name)
        answer_rows = [
            r for r in rows if r.stage == f"scorer:{name}" and not r.part.startswith("responses_")
        ]
        requests = sum(r.requests for r in answer_rows)
        job = len(spec["answer_tags"]) * len(test) if name in llm_scorers else 0
        assert requests == job
    # 129 answer sets in the default grid (docs/running.md)
    assert len(specs.build("score_answers", config, llm_scorers[0])["answer_tags"]) == 129


def test_the_rule_runs_one_job_per_scorer_and_its_rerun_pays_nothing(dataset_path, tmp_path):
    """The real rule (snakemake, its shell command, runtime part and log) on answers already
    there: one score_answers job writes every set's file; a deleted file reruns the job, whose
    requests all come from the cache."""
    work = tmp_path / "work"
    (work / "results" / "data").mkdir(parents=True)
    tags = tuple(t.replace("s--", "tiny--") for t in TAGS)
    write_answers(work, tags)
    (work / "test.csv").rename(work / grid.TEST_CSV)
    targets = [grid.score_path("r", tag) for tag in tags]
    with OpenAIServer(answer_fn=rate_by_length) as server:
        overlay = {
            "dataset": {"path": str(dataset_path)},
            "llm": {"cache_dir": str(work / "cache")},
            # overlays merge mappings: the improve methods of config.yaml are emptied
            "distillation": {
                "methods": {"direct": ["chatgpt", "llama"], "improve_human": [], "improve_llm": []}
            },
            "grid": {"students": ["tiny"], "judges": ["offline"], "methods": ["sft"]},
            "evaluation": {"comparisons": ["vs_base"]},
            "scoring": {
                "prompts": str(SCORING_PROMPTS),
                "scorers": {"r": {"kind": "rating", **local_scorer(server)}},
                "grid": ["r"],
            },
        }

        def run(*args):
            return run_snakemake(work, overlay, "--allowed-rules", "score_answers", *args)

        done = run("--cores", "1", *targets)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        stats = re.findall(r"^score_answers\s+(\d+)$", done.stdout + done.stderr, flags=re.M)
        assert stats and set(stats) == {"1"}  # the job stats: one job
        assert server.counts[CHAT] == len(tags) * DIALOGUES
        log = (work / "logs" / "scores" / "r" / "answer_sets.log").read_text()
        assert f"scorer r: {len(tags)} answer sets" in log
        again = run("-n", *targets)
        assert "Nothing to be done" in again.stdout + again.stderr
        first = read_jsonl(work / targets[0])
        (work / targets[0]).unlink()
        rerun = run("--cores", "1", *targets)
        assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-3000:]
        assert server.counts[CHAT] == len(tags) * DIALOGUES
    assert read_jsonl(work / targets[0]) == first


@pytest.mark.parametrize("bad", ["no answer", "missing file"])
def test_a_missing_answer_is_named_before_any_request(tmp_path, monkeypatch, capsys, bad):
    write_answers(tmp_path)
    broken = tmp_path / grid.answer_path(MODELS[1])
    if bad == "missing file":
        broken.unlink()
    else:
        write_jsonl(broken, read_jsonl(broken)[:-1])
    with OpenAIServer(answer_fn=rate_by_length) as server:
        config = grid_config(local_scorer(server), tmp_path)
        monkeypatch.setenv(runtime.RUNTIME_ENV, json.dumps(runtime.runtime_part(config)))
        spec = specs.build("score_answers", config, "r")
        assert score.main(job_argv(spec, tmp_path)) == 1
        assert server.counts[CHAT] == 0
    assert "direct/llama/sft.jsonl" in capsys.readouterr().err
