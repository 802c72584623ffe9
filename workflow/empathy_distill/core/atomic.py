"""The one way results are written: to a temporary file beside the target, then renamed.

A killed job never leaves a half-written file that Snakemake or a later step would take for a
finished one (a rename within one folder is atomic on POSIX file systems).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` (``mode`` "w" text, "wb" bytes); on success it
    replaces ``path``, on any error it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as handle:
        handle.write(text)


def write_json(path: str | Path, data: Any, **dump_options: Any) -> None:
    """``data`` as JSON (non-ASCII kept), ending in a newline."""
    write_text(path, json.dumps(data, ensure_ascii=False, **dump_options) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line."""
    with atomic_write(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_csv(path: str | Path, table: Any) -> None:
    """A pandas DataFrame as CSV without its index."""
    with atomic_write(path) as handle:
        table.to_csv(handle, index=False)
