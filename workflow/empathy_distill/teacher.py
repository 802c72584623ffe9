"""The teacher stage of Xie et al. (SIGDIAL 2025, arXiv:2507.08151): initial responses and
response improvement with every prompting strategy.

Commands (``python -m empathy_distill.teacher <command> ...``):

* ``initial``: the teacher's own response to every dialogue (train + test) ->
  ``results/teacher/initial.jsonl``; the test rows also go to ``results/answers/teacher.jsonl``
  (the teacher as a comparator in evaluation).
* ``llm-sources``: ``improve_llm`` sources: ``train.sample(n=950, random_state=42)`` of the train
  rows in dataset order are the SFT sources, the other 800 the DPO sources (FACTS.md).
* ``improve``: one strategy over one method's sources ->
  ``results/teacher/{method}/{strategy}.jsonl``.
  ``improve_three_dimensions_sequentially`` is a 3-turn chat run in waves (all first turns, then
  all second turns, ...); its first turn is exactly the ``improve_cognitive`` request, so it is a
  cache hit when both strategies run.

Every request goes through the LLM layer (cache, retries, batch API, budget, cost report).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from . import strategies
from .errors import DatasetError, EmpathyDistillError
from .judges import calls_llm
from .llm import ChatRequest, ChatResponse, LLMClient, Message, make_client
from .llm.settings import LLMSettings, add_llm_arguments, llm_settings, resolve_resource
from .prompts import Prompts
from .sets import SOURCE_COLUMNS  # improve_llm sources share the improve_human table's columns

log = logging.getLogger("empathy_distill.teacher")

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


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write atomically (temp file + rename) so a killed job never leaves a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)


def improve_llm_sources(
    train: pd.DataFrame, initial: dict[str, str], n: int = 950, seed: int = 42
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
def _client(settings: LLMSettings) -> LLMClient:
    return make_client(
        settings.endpoint,
        cache_dir=settings.cache_dir,
        price_table=settings.price_table,
        budget_usd=settings.budget_usd,
        cost_report=settings.cost_report,
    )


def _sampling(settings: LLMSettings) -> dict:
    return dict(settings.endpoint.get("sampling") or {})


def run_initial(
    settings: LLMSettings,
    prompts: Prompts,
    train: pd.DataFrame,
    test: pd.DataFrame,
    out: str | Path,
    answers: str | Path | None,
) -> None:
    client = _client(settings)
    sampling = _sampling(settings)
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
    path = summary_path(out)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
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
    settings: LLMSettings,
    prompts: Prompts,
    method: str,
    strategy: str,
    sources: pd.DataFrame,
    out: str | Path,
) -> None:
    client = _client(settings)
    sampling = _sampling(settings)
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


# Snakemake helpers (used by workflow/rules/teacher.smk) ---------------------------------------
def set_key_envvars(endpoints: Iterable[dict[str, Any]]) -> list[str]:
    """API-key variables of these endpoints' backends that are set in the environment.

    Declared with Snakemake ``envvars:`` so they reach jobs without being written anywhere; an
    unset one is left out so a dry run needs no key (the job then fails naming the variable).
    """
    import os

    from .llm.backends import api_key_env

    names = [api_key_env(e) for e in endpoints if e and calls_llm(e)]
    return sorted({n for n in names if n and n in os.environ})


def improve_inputs(config: dict[str, Any], prompts_path: str) -> Any:
    """Input function of rule teacher_improve: the sources, and for a sequential chain the file
    of its first turn's strategy when that strategy is in the grid (its first turn is then a
    cache hit, never paid twice)."""
    from . import grid

    def inputs(wildcards: Any) -> dict[str, str]:
        files = {"sources": f"results/data/sources/{wildcards.method}.csv", "prompts": prompts_path}
        strategy = wildcards.strategy
        if strategies.kind(strategy) == strategies.SEQUENTIAL:
            first = strategies.first_turn(strategy)
            if first in grid.teacher_strategies(config, wildcards.method):
                files["first_turn"] = f"results/teacher/{wildcards.method}/{first}.jsonl"
        return files

    return inputs


def cost_inputs(config: dict[str, Any], train: str, test: str, prompts_path: str) -> Any:
    """Input function of rule cost: the split, and the improve_human sources when in the grid."""

    def inputs(wildcards: Any) -> dict[str, str]:
        files = {"train": train, "test": test, "prompts": prompts_path}
        if config["distillation"]["methods"].get("improve_human"):
            files["human"] = "results/data/sources/improve_human.csv"
        return files

    return inputs


# CLI ------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m empathy_distill.teacher",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("initial", help="teacher's initial response to every dialogue")
    add_llm_arguments(p, COST_REPORT)
    p.add_argument("--prompts", help="prompts.json (default: config prompts)")
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--out", required=True, help="results/teacher/initial.jsonl")
    p.add_argument("--answers", help="results/answers/teacher.jsonl (test rows)")

    p = sub.add_parser("llm-sources", help="improve_llm sources: SFT sample / DPO rest")
    p.add_argument("--config", help="workflow config (distillation.improve_llm_sft_sample)")
    p.add_argument("--train", required=True)
    p.add_argument("--initial", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, help="SFT sample size (default 950 or from --config)")
    p.add_argument("--seed", type=int, help="random_state (default 42 or from --config)")

    p = sub.add_parser("improve", help="one improvement strategy over one method's sources")
    add_llm_arguments(p, COST_REPORT)
    p.add_argument("--prompts", help="prompts.json (default: config prompts)")
    p.add_argument("--method", required=True, choices=["improve_human", "improve_llm"])
    p.add_argument("--strategy", required=True)
    p.add_argument("--sources", required=True)
    p.add_argument("--out", required=True)
    return top


def _prompts(args: argparse.Namespace, settings: LLMSettings) -> Prompts:
    path = args.prompts or (settings.config or {}).get("prompts", "resources/prompts.json")
    return Prompts(resolve_resource(path))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        if args.command == "initial":
            settings = llm_settings(args, "teacher")
            run_initial(
                settings,
                _prompts(args, settings),
                read_table(args.train, ["dialog_id", "situation", "speaker_uttr"]),
                read_table(args.test, ["dialog_id", "situation", "speaker_uttr"]),
                args.out,
                args.answers,
            )
        elif args.command == "llm-sources":
            sample = {"n": 950, "seed": 42}
            if args.config:
                from .config import load_config

                sample = load_config(args.config)["distillation"]["improve_llm_sft_sample"]
            n = args.n if args.n is not None else sample["n"]
            seed = args.seed if args.seed is not None else sample["seed"]
            train = read_table(
                args.train, ["dialog_id", "situation", "speaker_uttr", "response_human"]
            )
            initial_rows = read_jsonl(args.initial)
            refused = {r["dialog_id"] for r in initial_rows if r.get("refusal") is not None}
            initial = {r["dialog_id"]: r["response"] for r in initial_rows}
            table = improve_llm_sources(train, initial, n=n, seed=seed)
            if refused:
                # no draft to improve: these dialogues leave the improve_llm sources (the
                # SFT/DPO split above was drawn first, so the others keep their paper role)
                dropped = table["dialog_id"].isin(refused)
                log.warning(
                    "%d train dialogue(s) whose initial response was refused by the provider"
                    " are left out of the improve_llm sources: %s",
                    int(dropped.sum()),
                    ", ".join(table.loc[dropped, "dialog_id"].head(10)),
                )
                table = table[~dropped]
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(args.out, index=False)
        else:
            settings = llm_settings(args, "teacher")
            run_improve(
                settings,
                _prompts(args, settings),
                args.method,
                args.strategy,
                read_table(args.sources, SOURCE_COLUMNS),
                args.out,
            )
    except EmpathyDistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
