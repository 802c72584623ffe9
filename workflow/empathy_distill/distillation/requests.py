"""The teacher's requests, built in one place so the teacher stage (``teacher.py``) and the cost
projection (``cost.py``) send and count byte-identical prompts (same cache keys)."""

from __future__ import annotations

from collections.abc import Sequence

from ..core import strategies
from ..core.prompts import Prompts
from ..llm import ChatRequest, Message

#: Assumed length of a teacher answer before it exists: the prompts ask for "a maximum of 97
#: words", ~130 tokens. Feeds the budget check and the cost projection (an upper estimate).
TEACHER_ANSWER_TOKENS = 130


def initial_request(
    prompts: Prompts, model: str, sampling: dict, situation: str, speaker_uttr: str
) -> ChatRequest:
    return ChatRequest(
        model, (Message("user", prompts.teacher_initial(situation, speaker_uttr)),), sampling
    )


def improve_request(
    prompts: Prompts,
    model: str,
    sampling: dict,
    strategy: str,
    situation: str,
    speaker_uttr: str,
    response: str,
) -> ChatRequest:
    text = prompts.teacher_improve(strategy, situation, speaker_uttr, response)
    return ChatRequest(model, (Message("user", text),), sampling)


def sequential_request(
    prompts: Prompts,
    model: str,
    sampling: dict,
    strategy: str,
    situation: str,
    speaker_uttr: str,
    response: str,
    previous_answers: Sequence[str] = (),
) -> ChatRequest:
    """Turn ``len(previous_answers) + 1`` of the sequential ``strategy``'s chain (turn 1 is its
    single-turn strategy's request, e.g. improve_cognitive)."""
    first = improve_request(
        prompts, model, sampling, strategies.first_turn(strategy), situation, speaker_uttr, response
    )
    later_turns = prompts.teacher_sequential_turns(strategy)
    if len(previous_answers) > len(later_turns):
        raise ValueError(f"the sequential chain has {len(later_turns) + 1} turns")
    messages = list(first.messages)
    for answer, user_turn in zip(previous_answers, later_turns, strict=False):
        messages += [Message("assistant", answer), Message("user", user_turn)]
    return ChatRequest(model, tuple(messages), sampling)


def sequential_turns(prompts: Prompts, strategy: str) -> int:
    return len(prompts.teacher_sequential_turns(strategy)) + 1
