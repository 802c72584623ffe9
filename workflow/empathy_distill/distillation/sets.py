"""Distillation sets (SFT examples and DPO pairs) as Xie et al. (2025) build them.

Rules, from the paper's public code (README: "Where this differs from the reference code"):

* Every SFT dialogue gives TWO examples with the same student prompt: one whose target is the
  human response and one whose target is the LLM (or teacher-improved) response.
* Every DPO pair has the student prompt, chosen = the LLM / improved response, rejected = the
  human response (also for improve_llm, whose teacher draft is never the rejected side).
* direct: SFT = human rated 3 AND that LLM rated 3; DPO = human rated 1 or 2 AND that LLM rated 3
  (the stated rule). ``as_coded`` reproduces the reference's precedence bug
  ``(h == 2) | (h == 1) & (x == 3)``, which takes every human-2 row whatever the LLM's rating.
* improve_human: SFT sources = train dialogues whose human response is rated 3, DPO sources =
  human rated 1 or 2; the teacher rewrites the human response.
* combined_single_dimensions pools the three single-dimension sets.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from ..core import strategies
from ..core.errors import DatasetError
from ..core.prompts import Prompts
from ..data.dataset import LLM_RESPONDERS, rating_column, response_column

# The improve_human sources are the data stage's (a data job writes them); the sets read them.
from ..data.sources import SOURCE_COLUMNS as SOURCE_COLUMNS
from ..data.sources import improve_human_sources as improve_human_sources
from .formats import dpo_record, sft_record

DPO_FILTERS = ("intended", "as_coded")


def direct_sft_mask(train: pd.DataFrame, llm: str) -> pd.Series:
    return (train[rating_column("human")] == 3) & (train[rating_column(llm)] == 3)


def direct_dpo_mask(train: pd.DataFrame, llm: str, dpo_filter: str = "intended") -> pd.Series:
    human, other = train[rating_column("human")], train[rating_column(llm)]
    if dpo_filter == "intended":
        return human.isin([1, 2]) & (other == 3)
    if dpo_filter == "as_coded":
        return (human == 2) | ((human == 1) & (other == 3))
    raise ValueError(f"direct_dpo_filter must be one of {DPO_FILTERS}, got {dpo_filter!r}")


def _prompt(prompts: Prompts, row: pd.Series) -> str:
    return prompts.student_train(row["situation"], row["speaker_uttr"])


def direct_records(
    train: pd.DataFrame, strategy: str, prompts: Prompts, dpo_filter: str = "intended"
) -> tuple[list[dict], list[dict]]:
    """(SFT records, DPO records) for one direct source LLM or ``all`` four pooled."""
    if strategy not in strategies.direct_names():
        raise ValueError(
            f"unknown direct strategy {strategy!r}; expected one of {strategies.direct_names()}"
        )
    llms: Sequence[str] = strategies.direct_sources(strategy)
    if any(llm not in LLM_RESPONDERS for llm in llms):
        raise ValueError(f"direct strategy {strategy!r}: {llms} are not all dataset responders")
    sft: list[dict] = []
    dpo: list[dict] = []
    human = response_column("human")
    for llm in llms:
        target = response_column(llm)
        for _, row in train[direct_sft_mask(train, llm)].iterrows():
            prompt = _prompt(prompts, row)
            sft.append(sft_record(row["dialog_id"], prompt, row[human]))
            sft.append(sft_record(row["dialog_id"], prompt, row[target]))
        for _, row in train[direct_dpo_mask(train, llm, dpo_filter)].iterrows():
            dpo.append(dpo_record(row["dialog_id"], _prompt(prompts, row), row[target], row[human]))
    return sft, dpo


def read_teacher_file(path: str | Path) -> tuple[dict[str, str], dict[str, str]]:
    """(dialog_id -> improved response, dialog_id -> refusal reason) of a teacher output file.

    A record with a non-null ``refusal`` is an item the provider refused (a safety block,
    written by ``teacher.py``): it has no improved response and goes in the second mapping.
    """
    improved: dict[str, str] = {}
    refused: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                dialog_id, text = item["dialog_id"], item["improved_response"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise DatasetError(
                    f"{path}:{line_no}: expected a JSON object with dialog_id and "
                    f"improved_response ({exc})"
                ) from exc
            if dialog_id in improved or dialog_id in refused:
                raise DatasetError(f"{path}:{line_no}: dialog_id {dialog_id!r} appears twice")
            if item.get("refusal") is not None:
                refused[dialog_id] = str(item["refusal"])
            else:
                improved[dialog_id] = text
    return improved, refused


def read_teacher_outputs(path: str | Path) -> dict[str, str]:
    """dialog_id -> improved response from a ``results/teacher/{method}/{strategy}.jsonl`` file
    (refused items left out; see :func:`read_teacher_file`)."""
    return read_teacher_file(path)[0]


def improved_records(
    sources: pd.DataFrame,
    improved: dict[str, str],
    prompts: Prompts,
    origin: str = "teacher outputs",
    refused: Mapping[str, str] | None = None,
) -> tuple[list[dict], list[dict]]:
    """Turn teacher rewrites into (SFT records, DPO records) for one improve strategy.

    Every source dialogue must have a non-empty rewrite (a gap would silently shrink the set),
    except the ones in ``refused``: the teacher's provider refused them, so they are left out
    of both sets on purpose (the caller reports how many).
    """
    refused = refused or {}
    missing = [
        d for d in sources["dialog_id"] if d not in refused and not str(improved.get(d, "")).strip()
    ]
    if missing:
        n_refused = sum(d in refused for d in sources["dialog_id"])
        raise DatasetError(
            f"{origin}: no improved response for {len(missing)} source "
            f"dialogue(s), e.g. {missing[:5]}; expected one per source row "
            f"({n_refused} other(s) were refused by the teacher and are left out)"
        )
    sft: list[dict] = []
    dpo: list[dict] = []
    for _, row in sources.iterrows():
        if row["dialog_id"] in refused:
            continue
        prompt = _prompt(prompts, row)
        better = improved[row["dialog_id"]].strip()
        if row["role"] == "sft":
            sft.append(sft_record(row["dialog_id"], prompt, row["human_response"]))
            sft.append(sft_record(row["dialog_id"], prompt, better))
        elif row["role"] == "dpo":
            dpo.append(dpo_record(row["dialog_id"], prompt, better, row["human_response"]))
        else:
            raise DatasetError(
                f"{origin}: source {row['dialog_id']!r} has role {row['role']!r}; "
                "expected 'sft' or 'dpo'"
            )
    return sft, dpo


def pooled(parts: Iterable[tuple[list[dict], list[dict]]]) -> tuple[list[dict], list[dict]]:
    """Concatenate (SFT, DPO) sets, as the reference pools the single-dimension sets."""
    sft: list[dict] = []
    dpo: list[dict] = []
    for part_sft, part_dpo in parts:
        sft += part_sft
        dpo += part_dpo
    return sft, dpo


def teacher_files_for(strategy: str) -> tuple[str, ...]:
    """Teacher output files (strategies) a set is built from."""
    return strategies.teacher_files(strategy)
