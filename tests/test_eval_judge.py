"""Pairwise judging: parsing, both orders, ties, invalid answers, planted biases."""

from __future__ import annotations

import json

import pytest

from empathy_distill.evaluation.judge import (
    MODEL_FIRST,
    OPPONENT_FIRST,
    PairItem,
    combine_orders,
    judge_with_llm,
    judge_with_scorer,
    parse_verdict,
)
from empathy_distill.evaluation.tables import summarize
from empathy_distill.prompts import Prompts
from tests.servers.judge_server import JudgeServer, always, prefer_longer, responses_of


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


def openai_ask(base_url: str):
    """Thin adapter: the real openai client against the local server (until the LLM layer's
    ``make_client`` with backend openai_compatible is merged into this branch)."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="test-key", max_retries=0)

    def ask(requests):
        out = []
        for r in requests:
            reply = client.chat.completions.create(
                model=r.model,
                messages=[{"role": m.role, "content": m.content} for m in r.messages],
                **r.sampling,
            )
            out.append(reply.choices[0].message.content)
        return out

    return ask


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


def test_local_server_longer_preferring_judge_reveals_length_bias(llm_types):
    items = make_items(60)
    with JudgeServer(prefer_longer) as server:
        records = judge_with_llm(
            items, openai_ask(server.base_url), Prompts(), "local-judge", "local"
        )
        assert len(server.requests) == 120
        assert server.requests[0]["messages"][0]["role"] == "system"
    stats = summarize(records, *answers(items))
    assert stats["win_rate"] == pytest.approx(0.7)
    assert stats["position_consistency"] == 1.0
    assert stats["length_slope"] > 0
    assert abs(stats["lc_win_rate"] - stats["win_rate"]) > 0.1


def test_local_server_always_one_judge_is_all_ties(llm_types):
    items = make_items(10)
    with JudgeServer(always("Response 1")) as server:
        records = judge_with_llm(items, openai_ask(server.base_url), Prompts(), "m", "local")
    stats = summarize(records, *answers(items))
    assert (stats["ties"], stats["position_consistency"], stats["invalid"]) == (10, 0.0, 0)


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
