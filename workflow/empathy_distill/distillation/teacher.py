"""The teacher stage of Xie et al. (SIGDIAL 2025, arXiv:2507.08151): the teacher's initial
responses, the improve_llm sources drawn from them, and response improvement with every
prompting strategy (the command line is ``teacher_cli.py``, the requests ``requests.py``).

Every request goes through the LLM layer (cache, retries, batch API, budget, cost report). A
provider's refusal (safety block) is a final answer: the item is marked ``refusal`` in the output
and counted in the output's summary, and the job succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..core import strategies
from ..core.atomic import write_json, write_jsonl
from ..core.errors import DatasetError, EmpathyDistillError
from ..core.prompts import Prompts
from ..llm import ChatResponse, LLMClient
from ..llm.job import job_client
from .requests import (
    TEACHER_ANSWER_TOKENS,
    improve_request,
    initial_request,
    sequential_request,
    sequential_turns,
)
from .sets import SOURCE_COLUMNS  # improve_llm sources share the improve_human table's columns

log = logging.getLogger("empathy_distill.distillation.teacher")

#: Paper split of the improve_llm sources (950 SFT / 800 DPO of 1,750 train rows), used to
#: scale the SFT share when a demo run has fewer train rows than ``n``.
PAPER_SFT_FRACTION = 950 / 1750


# improve_llm sources ---------------------------------------------------------------------------
def improve_llm_sources(
    train: pd.DataFrame, initial: dict[str, str], n: int, seed: int
) -> pd.DataFrame:
    """SFT = ``train.sample(n, random_state=seed)`` (train rows in dataset order), DPO = rest."""
    train = train.reset_index(drop=True)
    if len(train) <= n:
        scaled = max(1, min(len(train) - 1, round(len(train) * PAPER_SFT_FRACTION)))
        log.warning(
            "only %d train rows (<= n=%d): SFT share scaled to the paper's 950/1750 -> %d",
            len(train),
            n,
            scaled,
        )
        n = scaled
    sft_index = set(train.sample(n=n, random_state=seed).index)
    missing = [d for d in train["dialog_id"] if d not in initial]
    if missing:
        raise DatasetError(
            f"no teacher initial response for {len(missing)} train dialogue(s), e.g."
            f" {missing[:5]}; run the teacher_initial step first"
        )
    return pd.DataFrame(
        {
            "dialog_id": train["dialog_id"],
            "role": ["sft" if i in sft_index else "dpo" for i in train.index],
            "situation": train["situation"],
            "speaker_uttr": train["speaker_uttr"],
            "source_response": [initial[d] for d in train["dialog_id"]],
            "human_response": train["response_human"],
        }
    )[SOURCE_COLUMNS]


def llm_sources(
    train: pd.DataFrame, initial_rows: Sequence[dict[str, Any]], n: int, seed: int
) -> pd.DataFrame:
    """The improve_llm sources table from the teacher's initial records: the paper's SFT/DPO
    split (``improve_llm_sources``), less the dialogues whose initial response was refused."""
    refused = {r["dialog_id"] for r in initial_rows if r.get("refusal") is not None}
    initial = {r["dialog_id"]: r["response"] for r in initial_rows}
    table = improve_llm_sources(train, initial, n=n, seed=seed)
    if refused:
        # no draft to improve: these dialogues leave the improve_llm sources (the SFT/DPO split
        # above was drawn first, so the others keep their paper role)
        dropped = table["dialog_id"].isin(refused)
        log.warning(
            "%d train dialogue(s) whose initial response was refused by the provider are left"
            " out of the improve_llm sources: %s",
            int(dropped.sum()),
            ", ".join(table.loc[dropped, "dialog_id"].head(10)),
        )
        table = table[~dropped]
    return table


# Initial responses and improvements ----------------------------------------------------------
def make_teacher_client(
    spec: dict[str, Any], run: dict[str, Any], cost_report: str | None
) -> LLMClient:
    """The teacher's client: the spec's endpoint with the runtime part's operational keys."""
    return job_client(spec, run, "teacher", cost_report=cost_report)


def _sampling(client: LLMClient) -> dict:
    return dict(client.endpoint["sampling"])


def run_initial(
    client: LLMClient,
    prompts: Prompts,
    train: pd.DataFrame,
    test: pd.DataFrame,
    out: str | Path,
    answers: str | Path | None,
) -> None:
    sampling = _sampling(client)
    rows = [
        (split, row)
        for split, table in (("train", train), ("test", test))
        for _, row in table.iterrows()
    ]
    requests = [
        initial_request(prompts, client.model, sampling, row["situation"], row["speaker_uttr"])
        for _, row in rows
    ]
    responses = client.complete(
        requests, desc="teacher initial", expected_output_tokens=TEACHER_ANSWER_TOKENS
    )
    records = [
        {
            "dialog_id": row["dialog_id"],
            "split": split,
            "prompt": request.messages[-1].content,
            "response": response.text,
            "refusal": response.refusal,
            "request_key": response.key,
            "model": response.model,
            "usage": response.usage,
        }
        for (split, row), request, response in zip(rows, requests, responses, strict=True)
    ]
    write_jsonl(out, records)
    report_refusals(out, "teacher initial", records)
    if answers is not None:
        generation = {
            "backend": client.backend_name,
            "model": client.model,
            "mode": client.mode,
            "sampling": sampling,
        }
        write_jsonl(
            answers,
            (
                {
                    "dialog_id": r["dialog_id"],
                    "prompt": r["prompt"],
                    "answer": r["response"],
                    "generation": generation,
                    "seed": sampling.get("seed"),
                    # a refused test dialogue keeps its empty answer: judged, it loses
                    **({"refusal": r["refusal"]} if r["refusal"] is not None else {}),
                }
                for r in records
                if r["split"] == "test"
            ),
        )


def summary_path(out: str | Path) -> Path:
    """Where a teacher output's summary (item and refusal counts) is written, next to it."""
    out = Path(out)
    return out.with_name(out.name + ".summary.json")


def report_refusals(out: str | Path, desc: str, records: Sequence[dict[str, Any]]) -> int:
    """Count the items the provider refused; log it and write it to the output's summary.

    A refusal (a safety block) is a final answer, not an error: the job succeeds, the item is
    marked ``refusal`` in the output and ``build_sets`` leaves it out of the training sets.
    """
    refused = [r["dialog_id"] for r in records if r.get("refusal") is not None]
    summary = {"items": len(records), "refused": len(refused), "refused_dialog_ids": refused}
    write_json(summary_path(out), summary, indent=1)
    if refused:
        log.warning(
            "%s: %d of %d item(s) refused by the provider (safety block), marked in %s and left"
            " out of the training sets: %s",
            desc,
            len(refused),
            len(records),
            out,
            ", ".join(map(str, refused[:10])) + (" ..." if len(refused) > 10 else ""),
        )
    else:
        log.info("%s: %d item(s), none refused", desc, len(records))
    return len(refused)


def _add_usage(usages: Iterable[dict[str, int]]) -> dict[str, int]:
    total = {"input_tokens": 0, "output_tokens": 0}
    for usage in usages:
        for name in total:
            total[name] += int(usage.get(name, 0))
    return total


def run_improve(
    client: LLMClient,
    prompts: Prompts,
    method: str,
    strategy: str,
    sources: pd.DataFrame,
    out: str | Path,
) -> None:
    sampling = _sampling(client)
    desc = f"teacher {method} {strategy}"
    rows = [row for _, row in sources.iterrows()]
    try:
        kind = strategies.kind(strategy)
    except KeyError as exc:
        raise EmpathyDistillError(exc.args[0]) from None
    if kind == strategies.SINGLE_TURN:
        requests = [
            improve_request(
                prompts,
                client.model,
                sampling,
                strategy,
                r["situation"],
                r["speaker_uttr"],
                r["source_response"],
            )
            for r in rows
        ]
        finals = client.complete(requests, desc=desc, expected_output_tokens=TEACHER_ANSWER_TOKENS)
        chains: list[list[ChatResponse]] = [[f] for f in finals]
    elif kind == strategies.SEQUENTIAL:
        chains = [[] for _ in rows]
        for turn in range(1, sequential_turns(prompts, strategy) + 1):
            # a chain whose last turn was refused has nothing to continue from: it stops there
            going = [i for i, chain in enumerate(chains) if not chain or chain[-1].refusal is None]
            if not going:
                break
            wave = [
                sequential_request(
                    prompts,
                    client.model,
                    sampling,
                    strategy,
                    rows[i]["situation"],
                    rows[i]["speaker_uttr"],
                    rows[i]["source_response"],
                    [c.text for c in chains[i]],
                )
                for i in going
            ]
            answers = client.complete(
                wave, desc=f"{desc} turn {turn}", expected_output_tokens=TEACHER_ANSWER_TOKENS
            )
            for i, answer in zip(going, answers, strict=True):
                chains[i].append(answer)
    else:
        raise EmpathyDistillError(
            f"strategy {strategy!r} ({kind}) makes no teacher calls of its own (expected one of"
            f" {list(strategies.names(*strategies.TEACHER_CALL_KINDS))}); a pooled strategy"
            " pools the files of its parts"
        )
    records = []
    for row, chain in zip(rows, chains, strict=True):
        record = {
            "dialog_id": row["dialog_id"],
            "strategy": strategy,
            "role": row["role"],
            "source_response": row["source_response"],
            "improved_response": chain[-1].text,
            "refusal": chain[-1].refusal,
            "request_key": chain[-1].key,
            "model": chain[-1].model,
            "usage": _add_usage(c.usage for c in chain),
        }
        if kind == strategies.SEQUENTIAL:  # every turn, up to a refused one
            record["turns"] = [
                {"request_key": c.key, "response": c.text, "usage": c.usage} for c in chain
            ]
        records.append(record)
    write_jsonl(out, records)
    report_refusals(out, desc, records)
