"""One judge job per judge and comparison kind (rules judge_<kind>): its spec names every pair
of the kind, it writes each pair's file exactly as judging that pair alone would, it sends its
requests as one set (one budget projection, one batch), a killed job pays nothing twice on
rerun, and the jobs together send what ``empathy-distill cost`` prices."""

from __future__ import annotations

import hashlib
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
from empathy_distill.core.errors import ConfigError
from empathy_distill.distillation.sets import improve_human_sources
from empathy_distill.evaluation import judge
from empathy_distill.evaluation import specs as evaluation_specs
from empathy_distill.evaluation.records import read_jsonl, write_jsonl
from empathy_distill.llm.pricing import PriceTable, approx_request_tokens
from tests.conftest import REPO_ROOT, SHIPPED_PROMPTS
from tests.servers.judge_rules import prefer_longer
from tests.servers.openai_server import OpenAIServer
from tests.test_eval_judge import make_items, rule_ask
from tests.test_llm_resume import query, wait_for
from tests.workflow_helpers import run_snakemake

PRICES = REPO_ROOT / "resources" / "prices.yaml"
#: Two trained models of one student, each judged against the base model (kind vs_base).
BASE = "s--base"
MODELS = ("s--direct--chatgpt--sft", "s--direct--llama--sft")
DIALOGUES = 6


def grid_config(judge_endpoint: dict, tmp_path: Path, **llm) -> dict:
    """A validated config of a small grid (one student, two direct configurations, SFT only,
    vs_base) whose judge ``j`` is ``judge_endpoint``."""
    return validate_config(
        {
            "prompts": str(SHIPPED_PROMPTS),
            "llm": {"cache_dir": str(tmp_path / "cache"), "price_table": str(PRICES), **llm},
            "distillation": {"methods": {"direct": ["chatgpt", "llama"]}},
            "students": {"s": {"model": "m", "template": "llama3"}},
            "grid": {"students": ["s"], "judges": ["j"], "methods": ["sft"]},
            "judges": {"j": judge_endpoint},
            "evaluation": {"comparisons": ["vs_base"], "paper_faithful": False},
        }
    )


def write_answers(root: Path, base: str = BASE, models: tuple[str, ...] = MODELS) -> None:
    """The test split and the three answer sets the job reads (``grid.answer_path``); the two
    models' answers differ, so every request of the job is a different conversation."""
    items = make_items(DIALOGUES)
    split = "dialog_id,situation,speaker_uttr\n" + "".join(
        f"{i.dialog_id},{i.situation},{i.speaker_uttr}\n" for i in items
    )
    (root / "test.csv").write_text(split, encoding="utf-8")
    answers = {base: [i.opponent_answer for i in items]}
    answers |= {m: [f"{i.model_answer} ({k})" for i in items] for k, m in enumerate(models)}
    for tag, texts in answers.items():
        write_jsonl(
            root / grid.answer_path(tag),
            [
                {"dialog_id": i.dialog_id, "prompt": "", "answer": t, "generation": {}, "seed": 0}
                for i, t in zip(items, texts, strict=True)
            ],
        )


def job_argv(spec: dict, root: Path) -> list[str]:
    return ["--spec", specs.dumps(spec), "--test", str(root / "test.csv"), "--root", str(root)]


def local_judge(server: OpenAIServer) -> dict:
    return {"backend": "openai_compatible", "model": "local-judge", "base_url": server.url}


def test_the_spec_names_every_pair_of_its_kind_in_grid_order(tmp_path):
    config = grid_config({"backend": "offline", "model": "ratings"}, tmp_path)
    spec = specs.build("judge_vs_base", config, "j", "vs_base")
    assert spec["pairs"] == [[m, BASE] for m in MODELS]
    assert spec["comparison"] == "vs_base"
    # the rest is the judge's identity and protocol, as before (what its verdicts depend on)
    rest = {k: v for k, v in spec.items() if k not in ("pairs", "comparison")}
    assert rest == evaluation_specs.judge(config, "j")
    assert [e["path"] for e in evaluation_specs.pair_manifest(spec)] == [
        f"results/judgments/j/{m}__vs__{BASE}.jsonl" for m in MODELS
    ]
    with pytest.raises(ConfigError, match="the grid judges no 'dpo_vs_sft' pair"):
        evaluation_specs.judge_job(config, "j", "dpo_vs_sft")


def test_each_file_holds_what_judging_its_pair_alone_gives(tmp_path, monkeypatch, capsys):
    write_answers(tmp_path)
    with OpenAIServer(answer_fn=prefer_longer) as server:
        config = grid_config(local_judge(server), tmp_path)
        spec = evaluation_specs.judge_job(config, "j", "vs_base")
        monkeypatch.setenv(runtime.RUNTIME_ENV, json.dumps(runtime.runtime_part(config)))
        assert judge.main(job_argv(spec, tmp_path)) == 0
        # one request set: every pair, both orders, each conversation asked once
        assert server.counts["POST /v1/chat/completions"] == len(MODELS) * DIALOGUES * 2
        assert set(server.answered.values()) == {1}
    assert f"{len(MODELS)} pairs, {len(MODELS) * DIALOGUES * 2} judgments" in (
        capsys.readouterr().out
    )
    for model in MODELS:
        written = read_jsonl(tmp_path / grid.judgment_path("j", model, BASE))
        items = judge.pair_items(
            tmp_path / "test.csv",
            tmp_path / grid.answer_path(model),
            tmp_path / grid.answer_path(BASE),
        )
        alone = judge.run_judge(spec, items, ask=rule_ask(prefer_longer))
        assert written == alone
        assert len(written) == DIALOGUES * 2


def test_a_killed_judge_job_pays_nothing_twice(tmp_path):
    """kill -9 halfway through the job's requests, run it again: every conversation answered
    (paid) once over both runs, and no judgment file of the killed run left behind."""
    write_answers(tmp_path)
    total = len(MODELS) * DIALOGUES * 2
    with OpenAIServer(answer_fn=prefer_longer) as server:
        # one request at a time, so that exactly half are answered before the hold
        config = grid_config({**local_judge(server), "concurrency": 1}, tmp_path)
        spec = evaluation_specs.judge_job(config, "j", "vs_base")
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT / "workflow"),
            runtime.RUNTIME_ENV: json.dumps(runtime.runtime_part(config)),
        }
        command = [sys.executable, "-m", "empathy_distill.evaluation.judge"]
        command += job_argv(spec, tmp_path)
        server.hold_after = total // 2  # answer half, then hang like a dying connection
        first = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE)
        cached = "SELECT COUNT(*) FROM responses"
        wait_for(lambda: query(tmp_path / "cache", cached) == total // 2)
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert not (tmp_path / "results" / "judgments").exists()
        server.release.set()  # held requests now fail: they were never answered
        server.hold_after = None
        second = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
        assert second.returncode == 0, second.stderr[-3000:]
        assert len(server.answered) == total and set(server.answered.values()) == {1}
    for model in MODELS:
        assert len(read_jsonl(tmp_path / grid.judgment_path("j", model, BASE))) == DIALOGUES * 2


def test_the_job_projects_all_its_pairs_against_the_budget_and_sends_one_batch(
    tmp_path, monkeypatch, capsys
):
    """The budget check before anything is sent covers the whole job: a budget that one pair's
    requests fit but not both refuses the job, nothing sent. With room, the job's requests go
    in one batch (a job per pair made one batch, one wait of up to a day, per pair)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    write_answers(tmp_path)
    with OpenAIServer(answer_fn=prefer_longer) as server:
        endpoint = {
            "backend": "openai",
            "model": "gpt-4o",
            "base_url": server.url,
            "mode": "batch",
            "poll_interval_s": 0.01,
            "max_retries": 1,
            "max_new_tokens": 16,
        }
        spec = evaluation_specs.judge_job(grid_config(endpoint, tmp_path), "j", "vs_base")
        price = PriceTable.load(PRICES).price("openai", "gpt-4o", "batch")

        def projected(model: str) -> float:  # the pair's requests at their worst-case answers
            items = judge.pair_items(
                tmp_path / "test.csv",
                tmp_path / grid.answer_path(model),
                tmp_path / grid.answer_path(BASE),
            )
            requests = judge.build_requests(
                items, judge.Prompts(SHIPPED_PROMPTS), "gpt-4o", endpoint_sampling(spec)
            )
            return sum(price.cost(approx_request_tokens(r), 16) for _, _, r in requests)

        whole = sum(projected(m) for m in MODELS)
        budget = 0.9 * whole
        assert all(projected(m) < budget for m in MODELS)  # each pair alone would be sent
        tight = grid_config(endpoint, tmp_path, budget_usd=budget)
        monkeypatch.setenv(runtime.RUNTIME_ENV, json.dumps(runtime.runtime_part(tight)))
        assert judge.main(job_argv(spec, tmp_path)) == 1
        assert "error:" in capsys.readouterr().err
        assert server.bodies == [] and server.batches == {}  # nothing sent, nothing billed
        assert not (tmp_path / "results" / "judgments").exists()

        room = grid_config(endpoint, tmp_path, budget_usd=10 * whole)
        monkeypatch.setenv(runtime.RUNTIME_ENV, json.dumps(runtime.runtime_part(room)))
        assert judge.main(job_argv(spec, tmp_path)) == 0
        sizes = [b["request_counts"]["total"] for b in server.batches.values()]
        assert sizes == [len(MODELS) * DIALOGUES * 2]


def endpoint_sampling(spec: dict) -> dict:
    return spec["endpoint"]["sampling"]


def test_the_judge_jobs_send_what_the_cost_projection_prices(train, test_split):
    """The default grid (config.yaml): each LLM judge's job of each kind sends pairs x test
    dialogues x 2 orders requests, which is the cost row of that judge and kind, so the
    projected total (``empathy-distill cost``) is the sum over the judge jobs plus the teacher:
    regrouping the jobs changed no figure."""
    config = load_config(REPO_ROOT / "config.yaml", {"prompts": str(SHIPPED_PROMPTS)})
    train3, test = train.head(3), test_split.head(4)
    rows = cost.project(config, train3, test, improve_human_sources(train3))
    judged = {(r.stage, r.part): r for r in rows if r.stage.startswith("judge:")}
    jobs = {}
    for name in grid.judges(config):
        for kind in grid.comparisons_by_kind(config):
            spec = specs.build(grid.judge_rule(kind), config, name, kind)
            jobs[(f"judge:{name}", kind)] = len(spec["pairs"]) * len(test) * 2
    assert {key: row.requests for key, row in judged.items()} == jobs
    # 380 pairs per judge (docs/running.md), 2 LLM judges, 2 orders
    assert sum(jobs.values()) == 380 * 2 * len(test) * 2
    teacher = sum(r.cost_usd for r in rows if r.stage == "teacher")
    scorers = sum(r.cost_usd for r in rows if r.stage.startswith("scorer"))
    total = sum(r.cost_usd for r in rows)
    assert total == pytest.approx(teacher + scorers + sum(r.cost_usd for r in judged.values()))


def test_the_rule_runs_one_job_per_kind_and_its_rerun_pays_nothing(dataset_path, tmp_path):
    """The real rule (snakemake, its shell command, runtime part and log) on answers already
    there: one judge_vs_base job writes both pairs' files; a deleted file reruns the job, whose
    requests all come from the cache."""
    work = tmp_path / "work"
    (work / "results" / "data").mkdir(parents=True)
    models = tuple(m.replace("s--", "tiny--") for m in MODELS)
    write_answers(work, base="tiny--base", models=models)
    (work / "test.csv").rename(work / grid.TEST_CSV)
    targets = [grid.judgment_path("j", m, "tiny--base") for m in models]
    with OpenAIServer(answer_fn=prefer_longer) as server:
        overlay = {
            "dataset": {"path": str(dataset_path)},
            "llm": {"cache_dir": str(work / "cache")},
            # overlays merge mappings: the improve methods of config.yaml are emptied
            "distillation": {
                "methods": {"direct": ["chatgpt", "llama"], "improve_human": [], "improve_llm": []}
            },
            "grid": {"students": ["tiny"], "judges": ["j"], "methods": ["sft"]},
            "judges": {"j": local_judge(server)},
            "evaluation": {"comparisons": ["vs_base"], "paper_faithful": False},
        }

        def run(*args):
            return run_snakemake(work, overlay, "--allowed-rules", "judge_vs_base", *args)

        done = run("--cores", "1", *targets)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        stats = re.findall(r"^judge_vs_base\s+(\d+)$", done.stdout + done.stderr, flags=re.M)
        assert stats and set(stats) == {"1"}  # the job stats: one job
        assert server.counts["POST /v1/chat/completions"] == len(models) * DIALOGUES * 2
        log = (work / "logs" / "judgments" / "j" / "vs_base.log").read_text()
        assert f"{len(models)} pairs, {len(models) * DIALOGUES * 2} judgments" in log
        again = run("-n", *targets)
        assert "Nothing to be done" in again.stdout + again.stderr
        # the job's last output, the table rules' input: each pair file with its sha256
        record = json.loads((work / "results/judgments/j/vs_base.files.json").read_text())
        assert (record["judge"], record["comparison"]) == ("j", "vs_base")
        assert [f["path"] for f in record["files"]] == targets
        for entry in record["files"]:
            written = (work / entry["path"]).read_bytes()
            assert entry["sha256"] == hashlib.sha256(written).hexdigest()
            assert entry["judgments"] == DIALOGUES * 2
        first = read_jsonl(work / targets[0])
        (work / targets[0]).unlink()
        rerun = run("--cores", "1", *targets)
        assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-3000:]
        assert server.counts["POST /v1/chat/completions"] == len(models) * DIALOGUES * 2
    assert read_jsonl(work / targets[0]) == first
