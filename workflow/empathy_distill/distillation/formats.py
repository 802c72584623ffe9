"""LLaMA-Factory dataset files: records, ``dataset_info.json`` entries and a strict validator.

LLaMA-Factory (sharegpt formatting) silently skips examples whose roles do not alternate or that
end on the wrong turn, so a malformed set would train on less data without a word. Every set this
workflow writes goes through :func:`validate_records` first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from ..core.atomic import atomic_write
from ..core.errors import LlamaFactoryFormatError
from ..core.methods import TRAINING_SETS

MAX_PROBLEMS_SHOWN = 5


def user(content: str) -> dict:
    return {"role": "user", "content": content}


def assistant(content: str) -> dict:
    return {"role": "assistant", "content": content}


def sft_record(dialog_id: str, prompt: str, target: str) -> dict:
    return {"dialog_id": dialog_id, "messages": [user(prompt), assistant(target)]}


def dpo_record(dialog_id: str, prompt: str, chosen: str, rejected: str) -> dict:
    return {
        "dialog_id": dialog_id,
        "messages": [user(prompt)],
        "chosen": assistant(chosen),
        "rejected": assistant(rejected),
    }


def dataset_key(method: str, strategy: str, stage: str) -> str:
    """Name of a set in dataset_info.json (what LLaMA-Factory's ``dataset:`` refers to)."""
    return f"{method}__{strategy}__{stage}"


def dataset_info_entry(file_name: str, stage: str) -> dict:
    columns = {"messages": "messages"}
    if stage == "dpo":
        columns |= {"chosen": "chosen", "rejected": "rejected"}
    entry = {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": columns,
        "tags": {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
        },
    }
    if stage == "dpo":
        entry["ranking"] = True
    return entry


def _turn_problems(messages: object, stage: str) -> list[str]:
    if not isinstance(messages, list) or not messages:
        return ["'messages' must be a non-empty list"]
    problems = []
    for i, turn in enumerate(messages):
        if not isinstance(turn, dict) or set(turn) != {"role", "content"}:
            problems.append(f"turn {i} must be {{role, content}}")
            continue
        expected = "user" if i % 2 == 0 else "assistant"
        if turn["role"] != expected:
            problems.append(
                f"turn {i} has role {turn['role']!r}, expected {expected!r} "
                "(roles must alternate, starting with user)"
            )
        if not isinstance(turn["content"], str) or not turn["content"].strip():
            problems.append(f"turn {i} has empty content")
    last = messages[-1].get("role") if isinstance(messages[-1], dict) else None
    if stage == "sft" and last != "assistant":
        problems.append("an SFT example must end with an assistant turn")
    if stage == "dpo" and last != "user":
        problems.append("a DPO prompt must end with a user turn")
    return problems


def record_problems(record: object, stage: str) -> list[str]:
    if not isinstance(record, dict):
        return ["record must be a JSON object"]
    problems = []
    if not str(record.get("dialog_id", "")).strip():
        problems.append("missing dialog_id")
    problems += _turn_problems(record.get("messages"), stage)
    if stage == "dpo":
        for side in ("chosen", "rejected"):
            answer = record.get(side)
            if not isinstance(answer, dict) or answer.get("role") != "assistant":
                problems.append(f"'{side}' must be one assistant message")
            elif not isinstance(answer.get("content"), str) or not answer["content"].strip():
                problems.append(f"'{side}' has empty content")
    return problems


def validate_records(records: Iterable[dict], stage: str, source: str) -> None:
    """Raise LlamaFactoryFormatError naming the first bad records of ``source``."""
    if stage not in TRAINING_SETS:
        raise ValueError(f"set kind must be one of {TRAINING_SETS}, got {stage!r}")
    found = []
    count = 0
    for index, record in enumerate(records):
        count += 1
        problems = record_problems(record, stage)
        if problems:
            dialog_id = record.get("dialog_id", "?") if isinstance(record, dict) else "?"
            found.append(f"record {index} ({dialog_id}): " + "; ".join(problems))
    if count == 0:
        found.append("the set is empty")
    if found:
        shown = "\n  ".join(found[:MAX_PROBLEMS_SHOWN])
        more = (
            f"\n  ... and {len(found) - MAX_PROBLEMS_SHOWN} more"
            if len(found) > MAX_PROBLEMS_SHOWN
            else ""
        )
        raise LlamaFactoryFormatError(
            f"{source}: {len(found)} malformed {stage.upper()} "
            f"record(s) LLaMA-Factory would drop:\n  {shown}{more}"
        )


def write_set(records: list[dict], path: str | Path, stage: str) -> None:
    """Validate, then write a set as one JSON array (LLaMA-Factory reads .json arrays)."""
    validate_records(records, stage, str(path))
    with atomic_write(path) as handle:
        json.dump(records, handle, ensure_ascii=False, indent=1)


def read_set(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_json(data: object, path: str | Path) -> None:
    with atomic_write(path) as handle:
        json.dump(data, handle, ensure_ascii=False, indent=2, sort_keys=True)
        handle.write("\n")
