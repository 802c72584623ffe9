"""Pairwise judging: parsing, both orders, ties, invalid answers, planted biases."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from empathy_distill.core import grid, runtime, specs
from empathy_distill.core.config import validate_config
from empathy_distill.core.prompts import Prompts
from empathy_distill.evaluation import judge
from empathy_distill.evaluation import specs as evaluation_specs
from empathy_distill.evaluation.judge import (
    MODEL_FIRST,
    OPPONENT_FIRST,
    PairItem,
    combine_orders,
    judge_with_llm,
    judge_with_scorer,
    parse_verdict,
    run_judge,
)
from empathy_distill.evaluation.records import read_jsonl, write_jsonl
from empathy_distill.evaluation.tables import summarize
from tests.servers.judge_rules import always, prefer_longer, responses_of
from tests.servers.openai_server import OpenAIServer

CHAT = "POST /v1/chat/completions"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1),
        ("2", 2),
        ("2.", 2),
        (" 1\n", 1),
        ("Response 2", 2),
        ("response 1.", 1),
        ("**2**", 2),
        ('"1"', 1),
        ("The better response is 2", 2),
        ("2 - Response 2", 2),
        ("Response 1 is better than Response 2", None),
        ("3", None),
        ("", None),
        (None, None),
        ("I cannot decide.", None),
        ("12", None),
        ("1.5", None),
        ("1 or 2", None),
    ],
)
def test_parse_verdict_is_tolerant_but_strict_about_ambiguity(text, expected):
    assert parse_verdict(text) == expected


def make_items(n: int, longer_every: int = 10, longer_count: int = 7) -> list[PairItem]:
    """Model answer longer than the opponent's in ``longer_count`` of every ``longer_every``."""
    items = []
    for i in range(n):
        long_model = i % longer_every < longer_count
        model = " ".join(["warm"] * (20 + i % 7)) if long_model else "ok " * (3 + i % 3)
        opponent = "fine " * (8 + i % 4)
        items.append(
            PairItem(f"d{i}", f"situation {i}", f"utterance {i}", model.strip(), opponent.strip())
        )
    return items


def rule_ask(rule):
    """An ``ask`` that answers with a rule over the request messages (no server)."""

    def ask(requests):
        return [
            rule([{"role": m.role, "content": m.content} for m in r.messages]) for r in requests
        ]

    return ask


def local_judge_config(server: OpenAIServer, cache_dir) -> dict:
    """A config whose judge ``local`` is the local server, reached through the LLM layer
    (``make_client``, backend openai_compatible), as for any API judge."""
    endpoint = {"backend": "openai_compatible", "model": "local-judge", "base_url": server.url}
    return {
        "judges": {"local": endpoint},
        "llm": {"cache_dir": str(cache_dir)},
        "evaluation": {"paper_faithful": False},
    }


#: The answer tags of the one pair the command-line tests judge (a vs_base comparison).
MODEL_TAG, BASE_TAG = "s--direct--chatgpt--sft", "s--base"


def one_pair(spec: dict) -> dict:
    """A judge job's spec (``specs.judge_job``) judging the pair MODEL_TAG vs BASE_TAG only."""
    return {**spec, "comparison": "vs_base", "pairs": [[MODEL_TAG, BASE_TAG]]}


def write_job_files(root, items, tags=(MODEL_TAG, BASE_TAG)) -> None:
    """The test split and both answer sets of ``items``, where a judge job reads them below
    ``root`` (``grid.answer_path``)."""
    pd.DataFrame(
        {
            "dialog_id": [i.dialog_id for i in items],
            "situation": [i.situation for i in items],
            "speaker_uttr": [i.speaker_uttr for i in items],
        }
    ).to_csv(root / "test.csv", index=False)
    for tag, side in zip(tags, answers(items), strict=True):
        write_jsonl(
            root / grid.answer_path(tag),
            [
                {"dialog_id": d, "prompt": "", "answer": a, "generation": {}, "seed": 0}
                for d, a in side.items()
            ],
        )


def judge_job(config: dict, name: str) -> tuple[dict, dict]:
    """(spec, runtime part) of judge ``name``, as the Snakefile derives them from the config it
    validated (a student is the one key the schema requires)."""
    full = validate_config({"students": {"s": {"model": "m", "template": "t"}}, **config})
    return evaluation_specs.judge(full, name), runtime.runtime_part(full)


class Recording:
    """Wraps a rule and keeps every conversation the server was asked to judge."""

    def __init__(self, rule) -> None:
        self.rule = rule
        self.seen: list[list[dict]] = []

    def __call__(self, messages):
        self.seen.append(messages)
        return self.rule(messages)


def answers(items):
    return (
        {i.dialog_id: i.model_answer for i in items},
        {i.dialog_id: i.opponent_answer for i in items},
    )


def test_requests_carry_the_paper_prompts_in_both_orders(llm_types):
    items = make_items(3)
    seen = []

    def ask(requests):
        seen.extend(requests)
        return ["1"] * len(requests)

    records = judge_with_llm(items, ask, Prompts(), "judge-model", "j")
    assert len(records) == len(seen) == 6
    system, user = Prompts().judge_messages(
        "situation 0", "utterance 0", items[0].model_answer, items[0].opponent_answer
    )
    first = seen[0]
    assert [m.role for m in first.messages] == ["system", "user"]
    assert first.messages[0].content == system and first.messages[1].content == user
    assert responses_of([{"content": seen[1].messages[1].content}]) == (
        items[0].opponent_answer,
        items[0].model_answer,
    )
    assert {r["order"] for r in records} == {MODEL_FIRST, OPPONENT_FIRST}
    assert all(r["request_key"] for r in records)


def test_always_one_judge_gives_all_ties_and_zero_position_consistency(llm_types):
    items = make_items(40)
    records = judge_with_llm(items, rule_ask(always("1")), Prompts(), "m", "j")
    stats = summarize(records, *answers(items))
    assert stats["ties"] == 40 and stats["wins"] == stats["losses"] == 0
    assert stats["position_consistency"] == 0.0
    assert stats["win_rate"] == 0.5


def test_invalid_answers_are_counted_not_losses(llm_types):
    items = make_items(20)

    def rule(messages):
        one, _ = responses_of(messages)
        return "I refuse" if one.startswith("ok") else "1"

    records = judge_with_llm(items, rule_ask(rule), Prompts(), "m", "j")
    stats = summarize(records, *answers(items))
    short = sum(i.model_answer.startswith("ok") for i in items)
    assert stats["invalid"] == short == 6
    assert stats["wins"] + stats["ties"] + stats["losses"] == 20 - short
    assert stats["losses"] == 0


def test_paper_faithful_uses_one_fixed_order_and_counts_invalid_as_loss(llm_types):
    items = make_items(10)
    records = judge_with_llm(items, rule_ask(always("2")), Prompts(), "m", "j", paper_faithful=True)
    assert {r["order"] for r in records} == {OPPONENT_FIRST}
    assert summarize(records, *answers(items), paper_faithful=True)["win_rate"] == 1.0
    records = judge_with_llm(items, rule_ask(always("?")), Prompts(), "m", "j", paper_faithful=True)
    stats = summarize(records, *answers(items), paper_faithful=True)
    assert (stats["win_rate"], stats["invalid"], stats["losses"]) == (0.0, 10, 0)


def test_local_server_longer_preferring_judge_reveals_length_bias(llm_types, tmp_path):
    items = make_items(60)
    rule = Recording(prefer_longer)
    with OpenAIServer(answer_fn=rule) as server:
        spec, run = judge_job(local_judge_config(server, tmp_path / "cache"), "local")
        records = run_judge(spec, items, runtime=run)
        assert server.counts[CHAT] == 120
    assert [m["role"] for m in rule.seen[0]] == ["system", "user"]
    assert all(r["request_key"] for r in records)
    stats = summarize(records, *answers(items))
    assert stats["win_rate"] == pytest.approx(0.7)
    assert stats["position_consistency"] == 1.0
    assert stats["length_slope"] > 0
    assert abs(stats["lc_win_rate"] - stats["win_rate"]) > 0.1


def test_local_server_always_one_judge_is_all_ties(llm_types, tmp_path):
    items = make_items(10)
    with OpenAIServer(answer_fn=always("Response 1")) as server:
        spec, run = judge_job(local_judge_config(server, tmp_path / "cache"), "local")
        records = run_judge(spec, items, runtime=run)
    stats = summarize(records, *answers(items))
    assert (stats["ties"], stats["position_consistency"], stats["invalid"]) == (10, 0.0, 0)
    assert stats["wins"] == stats["losses"] == 0


def test_judge_command_against_local_server_counts_invalid_and_caches(
    tmp_path, capsys, monkeypatch
):
    """``python -m empathy_distill.evaluation.judge`` for an API judge, end to end: test split and
    answer files in, judgments file out; the rerun is answered by the cache alone."""
    items = make_items(12)
    write_job_files(tmp_path, items)

    def rule(messages):  # refuses whenever Response 1 is a short "ok ..." answer
        one, _ = responses_of(messages)
        return "I cannot choose." if one.startswith("ok") else prefer_longer(messages)

    def run(server, out, operational=None):
        config = local_judge_config(server, tmp_path / "cache")
        # as judge.smk passes them: the spec as a param, the runtime part in the environment
        if operational:
            config["judges"]["local"].update(operational)
        spec, run_part = judge_job(config, "local")
        monkeypatch.setenv(runtime.RUNTIME_ENV, json.dumps(run_part))
        argv = ["--spec", specs.dumps(one_pair(spec)), "--root", str(tmp_path)]
        argv += ["--test", str(tmp_path / "test.csv")]
        argv += ["--cost-report", str(tmp_path / "costs.csv")]
        assert judge.main(argv) == 0
        written = tmp_path / grid.judgment_path("local", MODEL_TAG, BASE_TAG)
        return written.rename(out)

    with OpenAIServer(answer_fn=rule) as server:
        run(server, tmp_path / "first.jsonl")
        assert server.counts[CHAT] == 24
        run(server, tmp_path / "again.jsonl", {"concurrency": 1, "max_retries": 2})
        assert server.counts[CHAT] == 24  # the rerun made no request
    first = read_jsonl(tmp_path / "first.jsonl")
    assert first == read_jsonl(tmp_path / "again.jsonl")
    short = sum(i.model_answer.startswith("ok") for i in items)  # model answer as Response 1
    assert sum(r["verdict"] is None for r in first) == short == 3
    assert f"1 pairs, 24 judgments, {short} invalid" in capsys.readouterr().out
    stats = summarize(first, *answers(items))
    assert stats["invalid"] == short and stats["wins"] == 12 - short
    costs = pd.read_csv(tmp_path / "costs.csv")
    calls = costs[costs["requests"].notna()]  # one summary row per call; spend rows have none
    assert costs["answered"].sum() == 24 and calls["cached"].tolist() == [0, 24]


def test_combine_orders_flip_is_tie_agreement_stands():
    def rec(d, order, winner):
        return {"dialog_id": d, "order": order, "winner": winner}

    records = [
        rec("a", MODEL_FIRST, "model"),
        rec("a", OPPONENT_FIRST, "model"),
        rec("b", MODEL_FIRST, "model"),
        rec("b", OPPONENT_FIRST, "opponent"),
        rec("c", MODEL_FIRST, None),
        rec("c", OPPONENT_FIRST, "model"),
    ]
    assert [o.outcome for o in combine_orders(records)] == [1, 0, None]


def test_scorer_judge_ties_below_margin():
    items = [PairItem("a", "s", "u", "good", "bad"), PairItem("b", "s", "u", "same", "same2")]
    scores = {"good": 3.0, "bad": 1.0, "same": 2.0, "same2": 2.01}

    def score(situations, utterances, responses):
        return [scores[r] for r in responses]

    records = judge_with_scorer(items, score, "offline", margin=0.05)
    assert [o.outcome for o in combine_orders(records)] == [1, 0]
    assert json.loads(records[0]["raw"]) == {"score_1": 3.0, "score_2": 1.0}
