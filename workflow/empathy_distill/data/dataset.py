"""The Welivita & Pu (2024) empathy dataset: download with a pinned checksum, load, validate.

Welivita & Pu, "Are Large Language Models More Empathetic than Humans?" (arXiv:2406.05063): 2,000
EmpatheticDialogues prompts, each answered by a human and four LLMs, each answer rated 1-3 by one
crowd worker. The file has no licence, so the workflow never ships it: it downloads it from the
paper's repository pinned to one commit and refuses any file whose sha256 differs.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
import tempfile
import urllib.request
from pathlib import Path

import pandas as pd

from .. import REPO_ROOT
from ..core.config import read_yaml
from ..core.errors import DatasetError

SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "dataset.schema.yaml"

#: Responder name in the grid -> column suffix in the dataset.
RESPONDERS = {
    "human": "human",
    "chatgpt": "chatgpt_empathy",
    "llama": "llama_empathy",
    "gemini": "gemini_empathy",
    "mixtral": "mixtral_empathy",
}
LLM_RESPONDERS = ("chatgpt", "llama", "gemini", "mixtral")
MAX_ROWS_SHOWN = 5
_LINE_BREAK = re.compile(r"\r\n?")


def response_column(responder: str) -> str:
    return f"response_{RESPONDERS[responder]}"


def rating_column(responder: str) -> str:
    return f"rating_{RESPONDERS[responder]}"


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksum(path: str | Path, expected_sha256: str) -> None:
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise DatasetError(
            f"{path}: sha256 is {actual}, expected {expected_sha256} (config dataset.sha256). "
            "The file is not the pinned dataset; remove it or fix dataset.path."
        )


def download(
    url: str, expected_sha256: str, destination: str | Path, timeout_s: float = 60
) -> Path:
    """Fetch ``url`` to ``destination``; a checksum mismatch deletes the download and fails.

    Writes to a temporary file in the destination folder first, so an interrupted download never
    leaves a partial file where the workflow would take it for the dataset.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=destination.parent, prefix=".download-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as resp:
            shutil.copyfileobj(resp, out)
        actual = sha256_of(tmp)
        if actual != expected_sha256:
            raise DatasetError(
                f"downloaded {url}: sha256 is {actual}, expected {expected_sha256}; the download "
                "was deleted. The pinned file changed or the transfer was corrupted."
            )
        tmp.replace(destination)
    except OSError as exc:
        raise DatasetError(f"could not download the dataset from {url}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return destination


def load_schema() -> dict:
    return read_yaml(SCHEMA_PATH)


def _rows(index: pd.Index) -> str:
    """Human-facing row numbers (1-based data rows, header excluded) of the first offenders."""
    shown = ", ".join(str(i + 1) for i in index[:MAX_ROWS_SHOWN])
    more = f" and {len(index) - MAX_ROWS_SHOWN} more" if len(index) > MAX_ROWS_SHOWN else ""
    return f"row(s) {shown}{more}"


def validation_problems(table: pd.DataFrame, schema: dict | None = None) -> list[str]:
    """Every way ``table`` breaks the dataset schema, each naming column, rows and expectation."""
    schema = schema or load_schema()
    defs = schema.get("$defs", {})
    missing = [c for c in schema["required"] if c not in table.columns]
    if missing:
        return [
            f"missing column(s) {', '.join(missing)}; expected all of: "
            f"{', '.join(schema['required'])}"
        ]
    problems: list[str] = []
    for column, spec in schema["properties"].items():
        spec = {**defs.get(spec.get("$ref", "").rsplit("/", 1)[-1], {}), **spec}
        values = table[column]
        if spec.get("type") == "string":
            text = values.astype("string")
            bad = values.isna() | (text.str.strip().str.len() < spec.get("minLength", 0))
            if bad.any():
                problems.append(
                    f"column {column}: {_rows(table.index[bad])} are empty; expected non-empty text"
                )
        if "enum" in spec:
            numeric = pd.to_numeric(values, errors="coerce")
            bad = ~numeric.isin(spec["enum"])
            if bad.any():
                found = sorted({str(v) for v in values[bad].head(MAX_ROWS_SHOWN)})
                problems.append(
                    f"column {column}: {_rows(table.index[bad])} have {found}; "
                    f"expected one of {spec['enum']}"
                )
        if spec.get("x-unique"):
            dup = values.duplicated(keep=False) & values.notna()
            if dup.any():
                first = values[dup].iloc[0]
                problems.append(
                    f"column {column}: {_rows(table.index[dup])} repeat values "
                    f"(e.g. {first!r}); expected every value to be unique"
                )
    return problems


def _check_complete(path: Path) -> None:
    """Refuse an empty, header-only or cut-off file with one message saying so.

    pandas reads a file cut in the middle of a row as a short last row (one "empty" error per
    missing column) and a cut inside a quoted cell as text running to the end of the file, so
    the records are counted here first, with the physical line where each ends.
    """
    expected = len(load_schema()["required"])
    if path.stat().st_size == 0:
        raise DatasetError(
            f"{path}: the file is empty (0 bytes); expected a CSV header and one row per "
            "dialogue. An interrupted copy or download? Delete it and run the download_dataset "
            "rule, or fix dataset.path."
        )
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle, strict=True)
        header: list[str] | None = None
        rows = 0
        try:
            for record in reader:
                if header is None:
                    header = record
                    continue
                rows += 1
                if len(record) < len(header):
                    where = f"data row {rows} (ending at line {reader.line_num})"
                    is_last = next(reader, None) is None
                    raise DatasetError(
                        f"{path}: {where} has {len(record)} of the header's {len(header)} fields;"
                        + (
                            " the file looks truncated (it ends there). Download it again."
                            if is_last
                            else " expected every row to have them all."
                        )
                    )
        except csv.Error as exc:
            if "unexpected end of data" not in str(exc):
                return  # let pandas report other malformations
            raise DatasetError(
                f"{path}: the file looks truncated: it ends at line {reader.line_num} inside a "
                f"quoted cell of data row {rows + 1}. Download it again."
            ) from exc
    if header is None or not any(cell.strip() for cell in header):
        raise DatasetError(f"{path}: no CSV header; expected the dataset's {expected}+ columns")
    if rows == 0:
        raise DatasetError(
            f"{path}: only a header, no dialogue rows; expected one row per dialogue "
            "(2,000 in the pinned dataset). An interrupted copy? Run download_dataset again."
        )


def normalise_line_endings(table: pd.DataFrame) -> pd.DataFrame:
    """CRLF or CR inside quoted cells -> LF (a file saved on Windows), so no carriage return
    reaches a prompt or a training file."""
    for column in table.columns:
        if table[column].dtype == object:
            table[column] = table[column].map(
                lambda v: _LINE_BREAK.sub("\n", v) if isinstance(v, str) else v
            )
    return table


def load_dataset(path: str | Path) -> pd.DataFrame:
    """Read and validate the dataset; raise DatasetError listing every problem found."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(
            f"{path}: dataset file not found (config dataset.path). Run the "
            "download_dataset rule or point dataset.path at your copy."
        )
    _check_complete(path)
    try:
        table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable CSV file: {exc}") from exc
    problems = validation_problems(table)
    if problems:
        raise DatasetError(f"{path}: invalid dataset:\n  " + "\n  ".join(problems))
    table = normalise_line_endings(table)
    for responder in RESPONDERS:
        table[rating_column(responder)] = table[rating_column(responder)].astype(int)
    return table
