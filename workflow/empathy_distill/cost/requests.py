"""The grid's paid requests, enumerated as the stages build them: the teacher's (exactly, from
``distillation/requests.py``) and the judges' token counts per comparison kind."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..core import grid, strategies
from ..core.errors import EmpathyDistillError
from ..core.prompts import Prompts
from ..distillation.requests import (
    TEACHER_ANSWER_TOKENS,
    improve_request,
    initial_request,
    sequential_request,
    sequential_turns,
)
from ..llm.pricing import approx_request_tokens
from ..llm.request import ChatRequest, Message
from .rows import stand_in


def teacher_requests(
    config: dict[str, Any],
    prompts: Prompts,
    train: pd.DataFrame,
    test: pd.DataFrame,
    human_sources: pd.DataFrame | None,
) -> dict[str, list[ChatRequest]]:
    """part name -> the teacher requests of that step, as the teacher stage will send them."""
    endpoint = config["teacher"]
    model, sampling = endpoint["model"], dict(endpoint["sampling"])
    methods = config["distillation"]["methods"]
    parts: dict[str, list[ChatRequest]] = {}
    if methods.get("improve_llm") or grid.TEACHER_TAG in grid.answer_tags(config):
        parts["initial"] = [
            initial_request(prompts, model, sampling, r["situation"], r["speaker_uttr"])
            for table in (train, test)
            for _, r in table.iterrows()
        ]
    answer = stand_in(TEACHER_ANSWER_TOKENS)
    for method in grid.IMPROVE_METHODS:
        calls = grid.teacher_strategies(config, method)
        if not calls:
            continue
        if method == "improve_human":
            if human_sources is None:
                raise EmpathyDistillError("improve_human is in the grid but has no sources table")
            sources = [
                (r["situation"], r["speaker_uttr"], r["source_response"])
                for _, r in human_sources.iterrows()
            ]
        else:  # the teacher's own initial responses, not written yet
            sources = [(r["situation"], r["speaker_uttr"], answer) for _, r in train.iterrows()]
        for strategy in calls:
            if strategies.kind(strategy) == strategies.SEQUENTIAL:
                requests = [
                    sequential_request(
                        prompts, model, sampling, strategy, s, u, resp, [answer] * turn
                    )
                    for s, u, resp in sources
                    for turn in range(sequential_turns(prompts, strategy))
                ]
            else:
                requests = [
                    improve_request(prompts, model, sampling, strategy, s, u, resp)
                    for s, u, resp in sources
                ]
            parts[f"{method}/{strategy}"] = requests
    return parts


def judge_token_counts(
    config: dict[str, Any], prompts: Prompts, test: pd.DataFrame
) -> dict[str, tuple[int, int]]:
    """comparison kind -> (requests, input tokens) of ONE judge over the whole grid."""
    orders = 1 if config["evaluation"]["paper_faithful"] else 2
    answer = stand_in(int(config["generation"]["max_new_tokens"]))
    per_dialogue = 0
    for _, row in test.iterrows():
        system, user = prompts.judge_messages(row["situation"], row["speaker_uttr"], answer, answer)
        request = ChatRequest("judge", (Message("system", system), Message("user", user)))
        per_dialogue += approx_request_tokens(request)
    counts: dict[str, tuple[int, int]] = {}
    for pair in grid.comparisons(config):
        requests, tokens = counts.get(pair.kind, (0, 0))
        counts[pair.kind] = (requests + orders * len(test), tokens + orders * per_dialogue)
    return counts
