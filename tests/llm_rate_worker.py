"""Subprocess for the shared rate-limit test: wait for a start signal, then answer N requests.

``python -m tests.llm_rate_worker BASE_URL CACHE_DIR N PREFIX RPM CONCURRENCY READY GO``: writes
READY once imported and the client built, sends nothing before GO exists (so that
workers started one after the other compete over the same seconds).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from empathy_distill.llm import ChatRequest, Message, make_client


def main() -> None:
    base_url, cache_dir, n, prefix, rpm, concurrency, ready, go = sys.argv[1:9]
    endpoint = {
        "backend": "openai_compatible",
        "model": "rate-test",
        "base_url": base_url,
        "concurrency": int(concurrency),
        "requests_per_minute": int(rpm) or None,
        "max_retries": 0,
    }
    client = make_client(endpoint, cache_dir=cache_dir, show_progress=False)
    requests = [
        ChatRequest("rate-test", (Message("user", f"{prefix} {i}"),)) for i in range(int(n))
    ]
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.005)
    client.complete(requests, desc=prefix)


if __name__ == "__main__":
    main()
