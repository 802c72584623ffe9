"""Result lines that were paid for but could not be read, kept beside the cache.

WHY: a batch result line that fails to parse (even after unknown fields are dropped) is a final
error of its request: resubmitting would buy the answer a second time. The line itself holds
the paid answer and its usage, so it is appended, as received, to
``<cache_dir>/unreadable/<backend>-<batch id>.jsonl`` (one ``{"key", "batch_id", "line"}`` object
per line) where a newer version of this code, or a person, can still read it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

UNREADABLE_DIR = "unreadable"


def keep_unreadable(
    cache_dir: str | Path, backend: str, batch_id: str, lines: Mapping[str, str]
) -> Path:
    """Append the raw ``lines`` (request key -> result line) of one batch; the file's path."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{backend}-{batch_id}")
    path = Path(cache_dir) / UNREADABLE_DIR / f"{safe}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        for key, line in lines.items():
            record = {"key": key, "batch_id": batch_id, "line": line}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
