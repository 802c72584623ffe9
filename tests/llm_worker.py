"""Subprocess for the kill-and-resume tests: answer N requests, write the answers as JSON.

``python -m tests.llm_worker BASE_URL CACHE_DIR MODE N OUT [COST_REPORT]``
"""

from __future__ import annotations

import json
import sys

from empathy_distill.llm import ChatRequest, Message, make_client


def main() -> None:
    base_url, cache_dir, mode, n, out = sys.argv[1:6]
    cost_report = sys.argv[6] if len(sys.argv) > 6 else None
    endpoint = {
        "backend": "openai",
        "model": "gpt-4o",
        "base_url": base_url,
        "mode": mode,
        "concurrency": 4,
        "poll_interval_s": 0.05,
        "max_retries": 2,
    }
    requests = [ChatRequest("gpt-4o", (Message("user", f"resume {i}"),)) for i in range(int(n))]
    client = make_client(
        endpoint,
        cache_dir=cache_dir,
        price_table="resources/prices.yaml",
        cost_report=cost_report,
        show_progress=False,
    )
    answers = client.complete(requests, desc="resume")
    with open(out, "w") as handle:
        json.dump([[a.key, a.text] for a in answers], handle)


if __name__ == "__main__":
    main()
