"""The record a judge job writes last (``grid.JUDGE_JOB_FILES``): every judgment file it wrote,
with its sha256 and number of judgments.

The table rules take these records as inputs instead of the pair files themselves (760 in the
default grid, a quarter of the dry run's DAG building); a job that reads judgments through a
record checks each file against it, so a pair file changed after its judge job stops the job,
naming the file, instead of entering a table unnoticed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.atomic import write_json
from ..data.dataset import sha256_of
from .records import AnswersError


def write(judge: str, comparison: str, files: Mapping[str, int], root: Path, out: Path) -> None:
    """``files``: judgment file (relative to ``root``) -> its number of judgments, in order."""
    entries = [
        {"path": path, "sha256": sha256_of(root / path), "judgments": count}
        for path, count in files.items()
    ]
    write_json(out, {"judge": judge, "comparison": comparison, "files": entries}, indent=1)


def judgment_files(records: Sequence[str | Path], root: Path = Path(".")) -> list[str]:
    """The judgment files the records name, in record order, each checked against its sha256."""
    paths = []
    for record_path in records:
        try:
            record: dict[str, Any] = json.loads(Path(record_path).read_text(encoding="utf-8"))
            entries = record["files"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AnswersError(f"{record_path}: not a judge job's record ({exc})") from exc
        for entry in entries:
            path = root / entry["path"]
            if not path.is_file() or sha256_of(path) != entry["sha256"]:
                raise AnswersError(
                    f"{path}: missing or changed since its judge job wrote it ({record_path});"
                    f" rerun that job (snakemake --forcerun judge_{record['comparison']})"
                )
            paths.append(entry["path"])
    return paths


def check_covered(paths: Sequence[str], records: Sequence[str | Path], root: Path) -> None:
    """Every judgment file a table reads (``paths``, from its spec's manifest) must be one the
    judge jobs' records name, unchanged since (``judgment_files`` checks each sha256): a table
    never reads a file its judge job did not write as it is now."""
    recorded = set(judgment_files(records, root))
    unrecorded = [path for path in paths if path not in recorded]
    if unrecorded:
        raise AnswersError(
            f"{len(unrecorded)} judgment file(s) of the table's manifest are in no judge job's"
            f" record ({', '.join(str(r) for r in records) or 'none given'}): "
            + ", ".join(unrecorded[:5])
            + (" ..." if len(unrecorded) > 5 else "")
        )
