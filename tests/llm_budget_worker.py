"""Subprocess of the budget tests: one job's share of requests under a shared budget cap.

``python -m tests.llm_budget_worker BASE_URL CACHE_DIR BUDGET_USD PREFIX N MAX_TOKENS OUT``

Writes ``{"answered": n, "error": message | null}`` to OUT: a job that reaches the cap keeps
(caches) what it bought and reports BudgetExceededError, as a teacher job would.
"""

from __future__ import annotations

import json
import sys

from empathy_distill.llm import BudgetExceededError, ChatRequest, Message, make_client
from empathy_distill.llm.cache import ResponseCache

#: Every prompt is this many ASCII characters (so this many UTF-8 bytes).
PROMPT_CHARS = 40


def prompt(prefix: str, i: int) -> str:
    return f"{prefix} {i:04d} ".ljust(PROMPT_CHARS, "x")


def main() -> None:
    base_url, cache_dir, budget, prefix, n, max_tokens, out = sys.argv[1:8]
    endpoint = {
        "backend": "openai",
        "model": "gpt-4o",
        "base_url": base_url,
        "mode": "realtime",
        "concurrency": 2,
        "max_retries": 2,
        "max_new_tokens": int(max_tokens),
    }
    sampling = {"temperature": 0, "max_tokens": int(max_tokens)}
    requests = [
        ChatRequest("gpt-4o", (Message("user", prompt(prefix, i)),), sampling)
        for i in range(int(n))
    ]
    client = make_client(
        endpoint,
        cache_dir=cache_dir,
        price_table="resources/prices.yaml",
        budget_usd=float(budget),
        show_progress=False,
    )
    error = None
    try:
        # Projected with short answers (as the teacher projects its typical answer length), so
        # that the projection made before sending never refuses the job: the cap must hold
        # through the reservations alone, whatever the answers' real length.
        client.complete(requests, desc=f"budget {prefix}", expected_output_tokens=1)
    except BudgetExceededError as exc:
        error = str(exc)
    answered = len(ResponseCache(cache_dir).get_many(r.key for r in requests))
    with open(out, "w") as handle:
        json.dump({"answered": answered, "error": error}, handle)


if __name__ == "__main__":
    main()
