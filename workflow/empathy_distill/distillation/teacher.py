"""The teacher stage of Xie et al. (SIGDIAL 2025, arXiv:2507.08151): initial responses and
response improvement with every prompting strategy.

Commands (``python -m empathy_distill.distillation.teacher <command> ...``):

* ``initial``: the teacher's own response to every dialogue (train + test) ->
  ``results/teacher/initial.jsonl``; the test rows also go to ``results/answers/teacher.jsonl``
  (the teacher as a comparator in evaluation).
* ``llm-sources``: ``improve_llm`` sources: ``train.sample(n=950, random_state=42)`` of the train
  rows in dataset order are the SFT sources, the other 800 the DPO sources (the paper's public
  code, ``improve_llm_sft_sample`` in config.yaml).
* ``improve``: one strategy over one method's sources ->
  ``results/teacher/{method}/{strategy}.jsonl``.
  ``improve_three_dimensions_sequentially`` is a 3-turn chat run in waves (all first turns, then
  all second turns, ...); its first turn is exactly the ``improve_cognitive`` request, so it is a
  cache hit when both strategies run.

Every request goes through the LLM layer (cache, retries, batch API, budget, cost report). A job
takes its spec (``specs.teacher``: the teacher's identity, cache, price table) as ``--spec`` and
its runtime settings (rate limits, retries, budget) from ``$EMPATHY_DISTILL_RUNTIME``
(``runtime.py``); by hand, ``--config FILE`` gives both.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..core import runtime, specs, strategies
from ..core.atomic import write_csv, write_json, write_jsonl
from ..core.command import run_cli
from ..core.config import resolve_resource
from ..core.errors import DatasetError, EmpathyDistillError
from ..core.prompts import Prompts
from ..llm import ChatRequest, ChatResponse, LLMClient, Message, make_client
from .sets import SOURCE_COLUMNS  # improve_llm sources share the improve_human table's columns

log = logging.getLogger("empathy_distill.distillation.teacher")

#: Paper split of the improve_llm sources (950 SFT / 800 DPO of 1,750 train rows), used to
#: scale the SFT share when a demo run has fewer train rows than ``n``.
PAPER_SFT_FRACTION = 950 / 1750
#: Assumed length of a teacher answer before it exists: the prompts ask for "a maximum of 97
#: words", ~130 tokens. Feeds the budget check and the cost projection (an upper estimate).
TEACHER_ANSWER_TOKENS = 130
COST_REPORT = "results/costs/teacher.csv"


# Requests (also used by the cost projection, so both build byte-identical prompts) -----------
def initial_request(
    prompts: Prompts, model: str, sampling: dict, situation: str, speaker_uttr: str
) -> ChatRequest:
    return ChatRequest(
        model, (Message("user", prompts.teacher_initial(situation, speaker_uttr)),), sampling
    )


def improve_request(
    prompts: Prompts,
    model: str,
    sampling: dict,
    strategy: str,
    situation: str,
    speaker_uttr: str,
    response: str,
) -> ChatRequest:
    text = prompts.teacher_improve(strategy, situation, speaker_uttr, response)
    return ChatRequest(model, (Message("user", text),), sampling)


def sequential_request(
    prompts: Prompts,
    model: str,
    sampling: dict,
    strategy: str,
    situation: str,
    speaker_uttr: str,
    response: str,
    previous_answers: Sequence[str] = (),
) -> ChatRequest:
    """Turn ``len(previous_answers) + 1`` of the sequential ``strategy``'s chain (turn 1 is its
    single-turn strategy's request, e.g. improve_cognitive)."""
    first = improve_request(
        prompts, model, sampling, strategies.first_turn(strategy), situation, speaker_uttr, response
    )
    later_turns = prompts.teacher_sequential_turns(strategy)
    if len(previous_answers) > len(later_turns):
        raise ValueError(f"the sequential chain has {len(later_turns) + 1} turns")
    messages = list(first.messages)
    for answer, user_turn in zip(previous_answers, later_turns, strict=False):
        messages += [Message("assistant", answer), Message("user", user_turn)]
    return ChatRequest(model, tuple(messages), sampling)


def sequential_turns(prompts: Prompts, strategy: str) -> int:
    return len(prompts.teacher_sequential_turns(strategy)) + 1


# Tables ---------------------------------------------------------------------------------------
def read_table(path: str | Path, required: Iterable[str]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: file not found") from exc
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; expected {list(required)}")
    if table["dialog_id"].duplicated().any():
        dup = table.loc[table["dialog_id"].duplicated(), "dialog_id"].iloc[0]
        raise DatasetError(f"{path}: dialog_id {dup!r} appears more than once")
    return table


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{number}: not a JSON line ({exc})") from exc
    return rows


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


# Stage logic ----------------------------------------------------------------------------------
def make_teacher_client(
    spec: dict[str, Any], run: dict[str, Any], cost_report: str | None
) -> LLMClient:
    """The teacher's client: the spec's endpoint with the runtime part's operational keys."""
    return make_client(
        runtime.endpoint(spec["endpoint"], run, "teacher"),
        cache_dir=spec["cache_dir"],
        price_table=resolve_resource(spec["price_table"]),
        budget_usd=runtime.budget_usd(run),
        cost_report=cost_report,
    )


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


# CLI ------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m empathy_distill.distillation.teacher",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("initial", help="teacher's initial response to every dialogue")
    specs.add_spec_arguments(p)
    p.add_argument("--prompts", required=True, help="prompts.json")
    p.add_argument("--cost-report", default=COST_REPORT, help="CSV to append usage to")
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--out", required=True, help="results/teacher/initial.jsonl")
    p.add_argument("--answers", help="results/answers/teacher.jsonl (test rows)")

    p = sub.add_parser("llm-sources", help="improve_llm sources: SFT sample / DPO rest")
    specs.add_spec_arguments(p)
    p.add_argument("--train", required=True)
    p.add_argument("--initial", required=True)
    p.add_argument("--out", required=True)

    p = sub.add_parser("improve", help="one improvement strategy over one method's sources")
    specs.add_spec_arguments(p)
    p.add_argument("--prompts", required=True, help="prompts.json")
    p.add_argument("--cost-report", default=COST_REPORT, help="CSV to append usage to")
    p.add_argument("--method", required=True, choices=["improve_human", "improve_llm"])
    p.add_argument("--strategy", required=True)
    p.add_argument("--sources", required=True)
    p.add_argument("--out", required=True)
    return top


def _llm_sources(args: argparse.Namespace) -> None:
    sample, _ = specs.from_args(args, specs.llm_sources)
    train = read_table(args.train, ["dialog_id", "situation", "speaker_uttr", "response_human"])
    initial_rows = read_jsonl(args.initial)
    refused = {r["dialog_id"] for r in initial_rows if r.get("refusal") is not None}
    initial = {r["dialog_id"]: r["response"] for r in initial_rows}
    table = improve_llm_sources(train, initial, n=sample["n"], seed=sample["seed"])
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
    write_csv(args.out, table)


def _run(args: argparse.Namespace) -> None:
    if args.command == "llm-sources":
        _llm_sources(args)
        return
    spec, run = specs.from_args(args, specs.teacher, with_runtime=True)
    client = make_teacher_client(spec, run or {}, args.cost_report)
    prompts = Prompts(resolve_resource(args.prompts))
    if args.command == "initial":
        columns = ["dialog_id", "situation", "speaker_uttr"]
        train, test = read_table(args.train, columns), read_table(args.test, columns)
        run_initial(client, prompts, train, test, args.out, args.answers)
    else:
        sources = read_table(args.sources, SOURCE_COLUMNS)
        run_improve(client, prompts, args.method, args.strategy, sources, args.out)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
