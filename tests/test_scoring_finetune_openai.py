"""The OpenAI fine-tuning flow of a fine-tuned scorer (upload -> job -> poll -> model id) through
the real openai SDK against the fake API server: resume after a crash at every step without a
second upload or job, failures, local refusal, prices and cost, and no key anywhere."""

from __future__ import annotations

import asyncio
import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from empathy_distill.core import runtime
from empathy_distill.evaluation.scoring import specs as scoring_specs
from empathy_distill.evaluation.scoring.finetune_openai import fine_tune
from empathy_distill.llm import ChatRequest, LLMError, Message, make_client
from empathy_distill.llm.cache import CACHE_FILE, ResponseCache
from empathy_distill.llm.errors import BudgetExceededError
from empathy_distill.llm.finetune import FineTuner, FineTuneRequest
from empathy_distill.llm.finetune_data import TrainingFile
from empathy_distill.llm.pricing import Price, PriceTable
from tests.servers.openai_server import Fault, OpenAIServer

REPO = Path(__file__).resolve().parents[1]
PRICES = REPO / "resources" / "prices.yaml"
SECRET = "sk-test-finetune-0123456789"
BASE = "gpt-4o-mini-2024-07-18"
#: Published prices (https://openai.com/api/pricing/), USD per 1M tokens, gpt-4o-mini fine-tuning.
TRAINING_PER_M = 3.00
FT_INPUT, FT_OUTPUT = 0.30, 1.20
FT_BATCH_INPUT, FT_BATCH_OUTPUT = 0.15, 0.60


class Crash(Exception):
    """Stands for the process dying at a hook point (nothing after it runs)."""


@pytest.fixture
def server():
    with OpenAIServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)


def examples(n: int) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "system", "content": "Rate the empathy of the response from 1 to 3."},
                {"role": "user", "content": f"Situation {i}: my dog is ill.\nResponse: sorry {i}"},
                {"role": "assistant", "content": str(1 + i % 3)},
            ]
        }
        for i in range(n)
    ]


def write_train(tmp_path: Path, n: int = 12) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in examples(n)), encoding="utf-8")
    return path


def spec_for(server: OpenAIServer, tmp_path: Path, **finetune) -> dict:
    return {
        "scorer": "gpt4o_mini_ft",
        "endpoint": {"backend": "openai", "model": BASE, "base_url": server.url, "mode": "batch"},
        "finetune": {"epochs": 2, "seed": 7, "suffix": "empathy", **finetune},
        "cache_dir": str(tmp_path / "cache"),
        "price_table": str(PRICES),
    }


def run_part(budget: float | None = None, poll: float = 0.01) -> dict:
    run = {"scoring": {"scorers": {"gpt4o_mini_ft": {"poll_interval_s": poll, "max_retries": 3}}}}
    if budget is not None:
        run["llm"] = {"budget_usd": budget}
    return run


async def no_sleep(seconds: float) -> None:
    return None


def crash_at(point: str, times: int = 1):
    left = [times]

    def hook(where: str) -> None:
        if where == point and left[0] > 0:
            left[0] -= 1
            raise Crash(point)

    return hook


def estimated_tokens(rows: list[dict]) -> int:
    """ceil(chars / 4) + 3 per message, + 3 per example (the documented estimate)."""
    return sum(sum(math.ceil(len(m["content"]) / 4) + 3 for m in e["messages"]) + 3 for e in rows)


def ft_calls(server: OpenAIServer) -> dict[str, int]:
    return {
        "uploads": server.counts["POST /v1/files"],
        "creates": server.counts["POST /v1/fine_tuning/jobs"],
    }


def go(spec, tmp_path, train, run=None, **kw):
    return fine_tune(
        spec,
        run or run_part(),
        train,
        tmp_path / "model.json",
        tmp_path / "costs.csv",
        sleep=no_sleep,
        **kw,
    )


def test_full_flow_writes_the_model_id_with_one_file_and_one_job(server, tmp_path):
    train = write_train(tmp_path)
    model = go(spec_for(server, tmp_path), tmp_path, train)
    assert len(server.file_objects) == 1 and len(server.ft_jobs) == 1
    (job,) = server.ft_jobs.values()
    (upload,) = server.file_objects.values()
    assert upload["purpose"] == "fine-tune" and server.files[upload["id"]] == train.read_bytes()
    assert job["model"] == BASE and job["hyperparameters"]["n_epochs"] == 2
    assert job["seed"] == 7 and job["user_provided_suffix"] == "empathy"
    assert job["fine_tuned_model"].startswith(f"ft:{BASE}:") and job["status"] == "succeeded"
    trained = server.file_tokens(upload["id"]) * 2
    assert model == {
        "model": job["fine_tuned_model"],
        "base_model": BASE,
        "backend": "openai",
        "job_id": job["id"],
        "trained_tokens": trained,
        "trained_examples": 12,
    }
    assert json.loads((tmp_path / "model.json").read_text()) == model
    # the actual cost in the report: trained_tokens x $3.00 / 1M, recomputed here
    rows = list(csv.DictReader((tmp_path / "costs.csv").open()))
    assert [(r["mode"], int(r["input_tokens"])) for r in rows] == [("training", trained)]
    assert float(rows[0]["cost_usd"]) == pytest.approx(trained * TRAINING_PER_M / 1e6)
    # the projection before creation: estimated file tokens x 2 epochs x $3.00 / 1M
    state = ResponseCache(tmp_path / "cache").finetune_state(
        FineTuneRequest(BASE, {"n_epochs": 2}, 7, "empathy").key(
            TrainingFile(train, train.read_bytes(), _sha(train), 12, 0)
        )
    )
    projected_tokens = estimated_tokens(examples(12)) * 2
    assert state["projected_tokens"] == projected_tokens
    assert state["projected_usd"] == pytest.approx(projected_tokens * TRAINING_PER_M / 1e6)
    # the budget ledger counts the training spend
    assert ResponseCache(tmp_path / "cache").spent_usd() == pytest.approx(trained * 3.0 / 1e6)
    # a rerun asks the server nothing and reports no second cost
    before = sum(server.counts.values())
    assert go(spec_for(server, tmp_path), tmp_path, train) == model
    assert sum(server.counts.values()) == before
    assert len(list(csv.DictReader((tmp_path / "costs.csv").open()))) == 1


def test_a_scorer_of_the_config_reaches_the_api_with_its_settings_only(server, tmp_path):
    """The spec the rule finetune_scorer hands over (scoring_specs.finetune_scorer, from a validated
    config) carries the OpenAI settings, none of the transformers defaults."""
    import yaml

    from empathy_distill.core.config import validate_config

    config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    config["scoring"]["scorers"]["api_rating"] = {
        "kind": "rating",
        "backend": "openai",
        "model": "gpt-4o-mini",
        "base_url": server.url,
        "finetune": {
            "base_model": BASE,
            "epochs": 2,
            "batch_size": 4,
            "learning_rate_multiplier": 0.5,
            "suffix": "empathy",
        },
    }
    config["llm"]["cache_dir"] = str(tmp_path / "cache")
    spec = scoring_specs.finetune_scorer(validate_config(config), "api_rating")
    assert "llamafactory" not in spec and "lora_rank" not in spec["finetune"]
    model = go(spec, tmp_path, write_train(tmp_path), run=run_part_for("api_rating"))
    (job,) = server.ft_jobs.values()
    assert job["model"] == BASE and job["user_provided_suffix"] == "empathy"
    assert job["hyperparameters"]["n_epochs"] == 2
    assert job["hyperparameters"]["batch_size"] == 4
    assert job["hyperparameters"]["learning_rate_multiplier"] == 0.5
    assert model["model"] == job["fine_tuned_model"]


def run_part_for(scorer: str) -> dict:
    return {"scoring": {"scorers": {scorer: {"poll_interval_s": 0.01, "max_retries": 3}}}}


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("point", ["uploaded", "upload_saved", "created", "job_saved", "polled"])
def test_crash_at_any_step_resumes_without_a_second_upload_or_job(server, tmp_path, point):
    """'uploaded' = file uploaded, its id not saved; 'created' = job created, its id not saved;
    'polled' = while polling."""
    train = write_train(tmp_path)
    spec = spec_for(server, tmp_path)
    with pytest.raises(Crash):
        go(spec, tmp_path, train, hook=crash_at(point))
    assert not (tmp_path / "model.json").exists()
    model = go(spec, tmp_path, train)
    assert ft_calls(server) == {"uploads": 1, "creates": 1}
    assert len(server.ft_jobs) == 1 and model["job_id"] in server.ft_jobs
    assert model["model"] == server.ft_jobs[model["job_id"]]["fine_tuned_model"]


def test_a_killed_process_mid_poll_resumes_the_same_job(server, tmp_path):
    """SIGKILL (no cleanup at all) while the job runs; the rerun polls the same job."""
    train = write_train(tmp_path)
    spec = spec_for(server, tmp_path)
    env = {
        **os.environ,
        runtime.RUNTIME_ENV: json.dumps(run_part(poll=300)),
        "PYTHONPATH": str(REPO / "workflow"),
    }
    command = [
        sys.executable,
        "-m",
        "empathy_distill.evaluation.scoring.finetune_openai",
        "--spec",
        json.dumps(spec),
        "--train",
        str(train),
        "--out",
        str(tmp_path / "model.json"),
    ]
    with open(tmp_path / "child.log", "w") as log:
        child = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + 120
        while not server.ft_jobs or server.ft_jobs[next(iter(server.ft_jobs))]["status"] in (
            "validating_files",
        ):
            assert child.poll() is None, (tmp_path / "child.log").read_text()
            assert time.monotonic() < deadline, "the child never polled its job"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
    (job_id,) = server.ft_jobs
    assert server.ft_jobs[job_id]["status"] == "queued"  # polled once, then killed
    model = go(spec, tmp_path, train)
    assert model["job_id"] == job_id and ft_calls(server) == {"uploads": 1, "creates": 1}
    assert SECRET not in (tmp_path / "child.log").read_text()


def test_a_lost_create_reply_is_found_again_not_created_twice(server, tmp_path):
    server.create_job_faults.append("lost:500")
    model = go(spec_for(server, tmp_path), tmp_path, write_train(tmp_path))
    assert len(server.ft_jobs) == 1 and model["job_id"] in server.ft_jobs


def test_rate_limit_and_a_server_error_are_retried(server, tmp_path):
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    server.ft_faults.extend(
        [("upload", Fault(429, retry_after=7)), ("create", Fault(500)), ("retrieve", Fault(503))]
    )
    spec = spec_for(server, tmp_path)
    model = fine_tune(spec, run_part(), write_train(tmp_path), tmp_path / "m.json", sleep=sleep)
    assert 7.0 in waits  # the server's Retry-After, honoured
    assert not server.ft_faults and len(server.ft_jobs) == 1 and len(server.file_objects) == 1
    assert model["model"].startswith("ft:")


def test_failed_job_is_a_clear_error_with_code_and_job_id(server, tmp_path):
    server.ft_outcomes.append("failed:server_error")
    spec = spec_for(server, tmp_path)
    train = write_train(tmp_path)
    with pytest.raises(LLMError) as failed:
        go(spec, tmp_path, train)
    (job_id,) = server.ft_jobs
    message = str(failed.value)
    assert "failed" in message and "server_error" in message and job_id in message
    assert "the test server failed this job" in message
    # a rerun reports the recorded failure without asking the server anything
    before = sum(server.counts.values())
    with pytest.raises(LLMError, match="server_error"):
        go(spec, tmp_path, train)
    assert sum(server.counts.values()) == before
    # on request, a new job from the same uploaded file
    model = go(spec, tmp_path, train, retry_failed=True)
    assert len(server.ft_jobs) == 2 and len(server.file_objects) == 1
    assert model["job_id"] != job_id


def test_the_servers_validation_failure_reaches_the_user(server, tmp_path):
    """Fewer than 10 examples, if they ever reach the API: the job fails ``invalid_n_examples``."""
    train = write_train(tmp_path, 5)
    data = train.read_bytes()
    few = TrainingFile(train, data, _sha(train), 5, 100)
    price = PriceTable.load(PRICES).fine_tuning_price(BASE)

    async def run() -> None:
        client = openai.AsyncOpenAI(api_key=SECRET, base_url=server.url, max_retries=0)
        tuner = FineTuner(client, ResponseCache(tmp_path / "c"), price, sleep=no_sleep)
        try:
            await tuner.run(few, FineTuneRequest(BASE, {}))
        finally:
            await client.close()

    with pytest.raises(LLMError, match="invalid_n_examples") as failed:
        asyncio.run(run())
    assert "at least 10 examples" in str(failed.value) and "training_file" in str(failed.value)


def test_cancelled_job_is_a_clear_error(server, tmp_path):
    def cancel(point: str) -> None:
        if point == "polled" and not cancel.done:
            cancel.done = True
            client = openai.OpenAI(api_key=SECRET, base_url=server.url, max_retries=0)
            client.fine_tuning.jobs.cancel(next(iter(server.ft_jobs)))

    cancel.done = False
    with pytest.raises(LLMError, match="cancelled"):
        go(spec_for(server, tmp_path), tmp_path, write_train(tmp_path), hook=cancel)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (None, "9 training example"),
        ('{"messages": [{"role": "user", "content": "hi"}]}\n', "line 1: the last message"),
        ('{"messages": [{"role": "bot", "content": "hi"}]}\n', "line 1: messages[0]"),
        ("not json\n", "line 1: not JSON"),
    ],
)
def test_bad_training_files_are_refused_before_any_request(server, tmp_path, lines, expected):
    train = write_train(tmp_path, 9)
    if lines is not None:
        train.write_text(lines + "".join(json.dumps(e) + "\n" for e in examples(12)))
    with pytest.raises(LLMError, match=re.escape(expected)) as refused:
        go(spec_for(server, tmp_path), tmp_path, train)
    assert str(train) in str(refused.value)
    assert sum(server.counts.values()) == 0


def test_over_budget_is_refused_before_any_request(server, tmp_path):
    train = write_train(tmp_path)
    projected = estimated_tokens(examples(12)) * 2 * TRAINING_PER_M / 1e6
    with pytest.raises(BudgetExceededError, match=r"llm\.budget_usd"):
        go(spec_for(server, tmp_path), tmp_path, train, run=run_part(budget=projected * 0.99))
    assert sum(server.counts.values()) == 0
    go(spec_for(server, tmp_path), tmp_path, train, run=run_part(budget=projected * 1.01))
    assert len(server.ft_jobs) == 1


@pytest.mark.parametrize(
    ("finetune", "expected"),
    [
        ({"lora_rank": 8}, "finetune.lora_rank: not a setting"),
        ({"n_epochs": 3}, "epochs or n_epochs, not both"),
        ({"epochs": 0}, "finetune.epochs must be a positive int"),
        ({"suffix": "x" * 65}, "finetune.suffix must be a string"),
        ({"base_model": "builtin:smollm2_135m"}, "finetune.base_model"),
    ],
)
def test_bad_finetune_settings_are_refused_naming_the_key(server, tmp_path, finetune, expected):
    with pytest.raises(Exception, match=expected):
        go(spec_for(server, tmp_path, **finetune), tmp_path, write_train(tmp_path))
    assert sum(server.counts.values()) == 0


def test_fine_tuned_model_names_are_priced_at_their_bases_fine_tuned_rates(server, tmp_path):
    table = PriceTable.load(PRICES)
    name = f"ft:{BASE}:my-org:empathy:AbC123"
    assert table.price("openai", name, "realtime") == Price(FT_INPUT, FT_OUTPUT)
    assert table.price("openai", name, "batch") == Price(FT_BATCH_INPUT, FT_BATCH_OUTPUT)
    assert table.fine_tuning_price(BASE).training == TRAINING_PER_M
    with pytest.raises(LLMError, match="fine_tuning"):
        table.price("openai", "ft:gpt-9:org::x", "realtime")
    # a scorer calling the fine-tuned model pays those rates for the usage the server reports
    client = make_client(
        {"backend": "openai", "model": name, "base_url": server.url, "max_retries": 0},
        cache_dir=tmp_path / "cache",
        price_table=PRICES,
        show_progress=False,
    )
    request = ChatRequest(model=name, messages=(Message("user", "rate this"),))
    (reply,) = client.complete([request])
    cost = (reply.usage["input_tokens"] * FT_INPUT + reply.usage["output_tokens"] * FT_OUTPUT) / 1e6
    assert client.cache.spent_usd() == pytest.approx(cost)


def test_the_api_key_is_never_written_or_logged(server, tmp_path, caplog, capfd):
    caplog.set_level("DEBUG")
    server.ft_outcomes.append("failed:server_error")
    spec = spec_for(server, tmp_path)
    train = write_train(tmp_path)
    with pytest.raises(LLMError) as failed:
        go(spec, tmp_path, train)
    go(spec, tmp_path, train, retry_failed=True)
    written = [tmp_path / "model.json", tmp_path / "costs.csv"]
    written += sorted((tmp_path / "cache").iterdir())
    assert any(p.name == CACHE_FILE for p in written)
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
    captured = capfd.readouterr()
    assert SECRET not in caplog.text + captured.out + captured.err + str(failed.value)


def test_fake_lists_pages_events_and_refuses_a_second_cancel(server, tmp_path):
    """The fake's list pagination (limit/after, metadata filter), events and cancel, through
    the SDK's own paginator and models."""
    client = openai.OpenAI(api_key=SECRET, base_url=server.url, max_retries=0)
    upload = client.files.create(
        file=("t.jsonl", write_train(tmp_path).read_bytes()), purpose="fine-tune"
    )
    ids = [
        client.fine_tuning.jobs.create(
            model=BASE, training_file=upload.id, extra_body={"metadata": {"k": str(i % 2)}}
        ).id
        for i in range(3)
    ]
    assert [j.id for j in client.fine_tuning.jobs.list(limit=1)] == ids[::-1]
    tagged = client.fine_tuning.jobs.list(extra_query={"metadata[k]": "0"})
    assert [j.id for j in tagged] == [ids[2], ids[0]]
    job = client.fine_tuning.jobs.retrieve(ids[0])
    assert job.status == "queued" and job.fine_tuned_model is None and job.trained_tokens is None
    assert client.fine_tuning.jobs.cancel(ids[0]).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.cancel(ids[0])
    events = client.fine_tuning.jobs.list_events(ids[0], limit=10).data
    assert events[0].message == "Fine-tuning job cancelled" and len(events) == 3
