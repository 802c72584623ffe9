"""Rule-based judges for the local OpenAI-compatible server (``OpenAIServer(answer_fn=rule)``).

A rule gets the request's messages and returns the judge's text, so a test can plant a known
bias (always "1", always the longer response) and check that the pipeline finds it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Rule = Callable[[list[dict]], str]
_RESPONSES = re.compile(r"\nResponse 1: (?P<one>.*) \nResponse 2: (?P<two>.*)\Z", re.DOTALL)


def responses_of(messages: list[dict]) -> tuple[str, str]:
    """The two responses a judge prompt compares (the paper's user-prompt layout)."""
    match = _RESPONSES.search(messages[-1]["content"])
    if match is None:
        raise ValueError("not a pairwise judge prompt")
    return match["one"], match["two"]


def always(text: str) -> Rule:
    return lambda messages: text


def prefer_longer(messages: list[dict]) -> str:
    one, two = responses_of(messages)
    return "1" if len(one.split()) >= len(two.split()) else "2"
