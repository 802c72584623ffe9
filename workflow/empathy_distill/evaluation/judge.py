"""Pairwise judging of two answer sets on the test dialogues, debiased for position.

Every pair is asked in both orders (the model's answer as Response 1, then as Response 2); a
verdict that flips with the order is a tie, as in MT-Bench (Zheng et al. 2023, arXiv:2306.05685).
An answer that is not a clear "1" or "2" after tolerant parsing is recorded as invalid and
reported, never silently counted as a loss. ``paper_faithful`` reproduces the protocol of Xie et
al. (SIGDIAL 2025): one fixed order with the opponent (the base model) as Response 1, no ties,
wins divided by the number of dialogues.

The judge prompts are the paper's, byte for byte (``Prompts.judge_messages``); for Gemini the
LLM layer sends the system message as ``system_instruction``. API calls go through
``empathy_distill.llm`` (cache, batch, retries, cost); the core takes an ``ask`` callable so
that tests can plug in a rule. A job takes its spec (``specs.judge``) as ``--spec`` and the
judge's operational keys from ``$EMPATHY_DISTILL_RUNTIME`` (``runtime.py``).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import grid, specs
from ..core.command import run_cli
from ..core.config import resolve_resource
from ..core.errors import ConfigError
from ..core.judges import kind_of
from ..core.prompts import Prompts
from . import judge_records
from . import specs as evaluation_specs
from .records import AnswersError, read_answers, read_split, write_jsonl

MODEL_FIRST = "model_first"  # the model's answer is Response 1
OPPONENT_FIRST = "opponent_first"  # the opponent's answer is Response 1 (the paper's order)
ORDERS = (MODEL_FIRST, OPPONENT_FIRST)

#: ask(requests) -> one reply per request, in order: a str, or an object with ``.text`` (and
#: ``.key``), such as the LLM layer's ``ChatResponse``.
AskFn = Callable[[list[Any]], Sequence[Any]]


@dataclass(frozen=True)
class PairItem:
    """One test dialogue with the two answers to compare."""

    dialog_id: str
    situation: str
    speaker_uttr: str
    model_answer: str
    opponent_answer: str


_STRIP = str.maketrans("", "", "*_`\"'#")
_VERDICT = re.compile(r"(?<![\d.])([12])(?![\d]|\.\d)")


def parse_verdict(text: str | None) -> int | None:
    """1 or 2 when the judge's answer names exactly one response; None when it is not clear.

    Tolerant of the forms judges actually produce ("1", "2.", "Response 2", "**2**", "I pick 1")
    but strict about ambiguity: text mentioning both 1 and 2 (e.g. "Response 1 is worse than
    Response 2"), other numbers only, or nothing at all is invalid.
    """
    if text is None:
        return None
    cleaned = text.translate(_STRIP).strip()
    if not cleaned or len(cleaned) > 200:
        return None
    found = set(_VERDICT.findall(cleaned))
    if len(found) != 1:
        return None
    return int(found.pop())


def winner_of(verdict: int | None, order: str) -> str | None:
    """Which side a verdict (1, 2, 0 = tie, None = invalid) favours in a given order."""
    if verdict is None:
        return None
    if verdict == 0:
        return "tie"
    model_position = 1 if order == MODEL_FIRST else 2
    return "model" if verdict == model_position else "opponent"


_SIGN = {"model": 1, "tie": 0, "opponent": -1}


@dataclass(frozen=True)
class DialogueOutcome:
    """The combined verdict of one dialogue: +1 model wins, 0 tie, -1 loss, None invalid."""

    dialog_id: str
    outcome: int | None
    by_order: dict[str, int | None]  # order -> the model's outcome in that order


def combine_orders(records: Sequence[dict], paper_faithful: bool = False) -> list[DialogueOutcome]:
    """One outcome per dialogue from its per-order records, in first-seen dialogue order.

    Both orders: equal verdicts stand, a flip is a tie, an invalid answer in either order makes
    the dialogue invalid (reported, excluded from the win rate). ``paper_faithful``: the single
    fixed-order verdict, and an invalid answer is a loss, as the paper counted it.
    """
    wanted = orders_for(paper_faithful)
    grouped: dict[str, dict[str, int | None]] = {}
    for record in records:
        if record["order"] not in wanted:
            continue
        by_order = grouped.setdefault(record["dialog_id"], {})
        if record["order"] in by_order:
            raise AnswersError(
                f"dialogue {record['dialog_id']!r} judged twice in order {record['order']}"
            )
        winner = record.get("winner")
        by_order[record["order"]] = None if winner is None else _SIGN[winner]
    outcomes = []
    for dialog_id, by_order in grouped.items():
        missing = [o for o in wanted if o not in by_order]
        if missing:
            raise AnswersError(f"dialogue {dialog_id!r} has no judgment in order {missing[0]}")
        values = [by_order[o] for o in wanted]
        if paper_faithful:
            outcome = -1 if values[0] is None else values[0]
        elif any(v is None for v in values):
            outcome = None
        else:
            outcome = values[0] if values[0] == values[1] else 0
        outcomes.append(DialogueOutcome(dialog_id, outcome, by_order))
    return outcomes


def orders_for(paper_faithful: bool) -> tuple[str, ...]:
    return (OPPONENT_FIRST,) if paper_faithful else ORDERS


def _responses(item: PairItem, order: str) -> tuple[str, str]:
    if order == MODEL_FIRST:
        return item.model_answer, item.opponent_answer
    return item.opponent_answer, item.model_answer


def build_requests(
    items: Sequence[PairItem],
    prompts: Prompts,
    model: str,
    sampling: dict | None = None,
    paper_faithful: bool = False,
) -> list[tuple[PairItem, str, Any]]:
    """(item, order, ChatRequest) for every pair and order: system + user message, exact texts."""
    from ..llm import ChatRequest, Message

    out = []
    for item in items:
        for order in orders_for(paper_faithful):
            first, second = _responses(item, order)
            system, user = prompts.judge_messages(item.situation, item.speaker_uttr, first, second)
            request = ChatRequest(
                model=model,
                messages=(Message("system", system), Message("user", user)),
                sampling=dict(sampling or {}),
            )
            out.append((item, order, request))
    return out


def _record(
    item: PairItem, order: str, raw: str, verdict: int | None, key: str | None, judge: str
) -> dict:
    return {
        "dialog_id": item.dialog_id,
        "order": order,
        "model_position": 1 if order == MODEL_FIRST else 2,
        "raw": raw,
        "verdict": verdict,
        "winner": winner_of(verdict, order),
        "request_key": key,
        "judge": judge,
    }


def judge_with_llm(
    items: Sequence[PairItem],
    ask: AskFn,
    prompts: Prompts,
    model: str,
    judge: str,
    sampling: dict | None = None,
    paper_faithful: bool = False,
) -> list[dict]:
    """Ask an LLM judge every pair (both orders unless paper_faithful); one record per call."""
    triples = build_requests(items, prompts, model, sampling, paper_faithful)
    replies = list(ask([request for _, _, request in triples]))
    if len(replies) != len(triples):
        raise AnswersError(f"judge {judge}: {len(replies)} replies for {len(triples)} requests")
    records = []
    for (item, order, request), reply in zip(triples, replies, strict=True):
        text = reply if isinstance(reply, str) else reply.text
        key = getattr(reply, "key", None) or getattr(request, "key", None)
        refusal = getattr(reply, "refusal", None)
        # A refused judgment (the provider's safety block) is an invalid verdict with its reason
        # recorded: reported with the other invalid verdicts, never a win or a loss.
        verdict = None if refusal is not None else parse_verdict(text)
        record = _record(item, order, text, verdict, key, judge)
        record["refusal"] = refusal
        records.append(record)
    return records


def judge_with_scorer(
    items: Sequence[PairItem],
    score: Callable[[list[str], list[str], list[str]], Sequence[float]],
    judge: str,
    margin: float,
    paper_faithful: bool = False,
) -> list[dict]:
    """Judge by a per-response score (the offline judge): higher wins, |difference| < margin ties.

    Position cannot matter to a scorer, so both orders agree by construction; they are still
    written so every judge's files have the same shape. Under ``paper_faithful`` there are no
    ties: an exact draw goes to Response 1, as a judge forced to pick would.
    """
    situations = [i.situation for i in items] * 2
    utterances = [i.speaker_uttr for i in items] * 2
    answers = [i.model_answer for i in items] + [i.opponent_answer for i in items]
    values = list(score(situations, utterances, answers))
    n = len(items)
    records = []
    for k, item in enumerate(items):
        s_model, s_opp = float(values[k]), float(values[n + k])
        for order in orders_for(paper_faithful):
            first, second = (s_model, s_opp) if order == MODEL_FIRST else (s_opp, s_model)
            if paper_faithful:
                verdict = 1 if first >= second else 2
            elif abs(first - second) < margin:
                verdict = 0
            else:
                verdict = 1 if first > second else 2
            raw = json.dumps({"score_1": round(first, 6), "score_2": round(second, 6)})
            records.append(_record(item, order, raw, verdict, None, judge))
    return records


def pair_items(
    test_csv: str | Path, model_answers: str | Path, opponent_answers: str | Path
) -> list[PairItem]:
    """Join the test dialogues with both answer sets; every test dialogue needs both answers."""
    test = read_split(test_csv)
    return _join(
        test,
        (model_answers, read_answers(model_answers)),
        (opponent_answers, read_answers(opponent_answers)),
    )


def _join(
    test: Any, model: tuple[str | Path, dict[str, str]], opponent: tuple[str | Path, dict[str, str]]
) -> list[PairItem]:
    """The items of one pair: each test dialogue with its answer from both (path, answers)."""
    items = []
    for row in test.itertuples(index=False):
        for path, answers in (model, opponent):
            if row.dialog_id not in answers:
                raise AnswersError(f"{path}: no answer for test dialogue {row.dialog_id!r}")
        items.append(
            PairItem(
                row.dialog_id,
                str(row.situation),
                str(row.speaker_uttr),
                model[1][row.dialog_id],
                opponent[1][row.dialog_id],
            )
        )
    return items


def llm_verdicts(
    spec: dict,
    items: Sequence[Any],
    *,
    ask: AskFn | None = None,
    cost_report: str | Path | None = None,
    runtime: dict | None = None,
) -> list[dict]:
    """Verdicts of the LLM judge of ``spec`` (``specs.judge``; ``judges.LLMJudge.runner``)."""
    endpoint = spec["endpoint"]
    prompts = Prompts(resolve_resource(spec["prompts"]))
    ask = ask or client_ask(spec, runtime or {}, cost_report)
    return judge_with_llm(
        items,
        ask,
        prompts,
        endpoint["model"],
        spec["judge"],
        endpoint["sampling"],
        spec["paper_faithful"],
    )


def scorer_verdicts(
    judge: Any, spec: dict, items: Sequence[Any], scorer_file: str | Path | None
) -> list[dict]:
    """Verdicts of a scorer judge (``judges.ScorerJudge.runner``): the fitted scorer in
    ``scorer_file`` rates each answer, with the spec's tie margin."""
    if scorer_file is None:
        raise ConfigError(
            f"judge {spec['judge']!r} is a {judge.backend} scorer: pass the fitted scorer"
            f" ({judge.model_file}) as --scorer"
        )
    scorer = judge.load(scorer_file)
    return judge_with_scorer(
        items, scorer.score, spec["judge"], spec["endpoint"]["margin"], spec["paper_faithful"]
    )


def client_ask(spec: dict, run: dict, cost_report: str | Path | None = None) -> AskFn:
    """The default ``ask``: the LLM layer's client for the spec's judge, with the runtime
    part's operational keys (concurrency, rate limits, retries, budget)."""
    from ..llm.job import job_client

    judge = spec["judge"]
    client = job_client(spec, run, "judges", judge, cost_report=cost_report)
    return lambda requests: client.complete(requests, desc=f"judge {judge}")


def run_judge(
    spec: dict,
    items: Sequence[PairItem],
    ask: AskFn | None = None,
    scorer: str | Path | None = None,
    cost_report: str | Path | None = None,
    runtime: dict | None = None,
) -> list[dict]:
    """Judge ``items`` with the judge of ``spec`` (``specs.judge``), whatever its kind."""
    return kind_of(spec["endpoint"]).verdicts(
        spec, items, ask=ask, scorer_file=scorer, cost_report=cost_report, runtime=runtime
    )


def judge_pairs(
    spec: dict,
    test_csv: str | Path,
    root: str | Path = ".",
    ask: AskFn | None = None,
    scorer: str | Path | None = None,
    cost_report: str | Path | None = None,
    runtime: dict | None = None,
) -> dict[str, list[dict]]:
    """Judgment file path -> records, for every pair of a judge job's spec
    (``specs.judge_job``), paths relative to ``root``.

    All pairs go to the judge at once: an LLM judge gets one request set (one budget projection
    over the job, then a reservation per request or batch; in batch mode one submission instead
    of one per pair, each a wait of up to a day); a scorer judge is loaded once. Each answer set
    is read once, however many pairs share it (a base model's answers serve every vs_base pair).
    """
    root = Path(root)
    test = read_split(test_csv)
    read: dict[str, dict[str, str]] = {}

    def answers_of(path: str) -> tuple[Path, dict[str, str]]:
        if path not in read:
            read[path] = read_answers(root / path)
        return root / path, read[path]

    manifest = evaluation_specs.pair_manifest(spec)
    groups = [
        _join(test, answers_of(e["model_answers"]), answers_of(e["opponent_answers"]))
        for e in manifest
    ]
    flat = [item for items in groups for item in items]
    records = run_judge(spec, flat, ask, scorer, cost_report, runtime)
    per_item = len(orders_for(spec["paper_faithful"]))
    if len(records) != per_item * len(flat):
        raise AnswersError(
            f"judge {spec['judge']}: {len(records)} verdicts for {len(flat)} dialogues x"
            f" {per_item} order(s)"
        )
    out: dict[str, list[dict]] = {}
    start = 0
    for entry, items in zip(manifest, groups, strict=True):
        end = start + per_item * len(items)
        out[entry["path"]] = records[start:end]
        start = end
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Judge every pair of one comparison kind (a judge job) pairwise."
    )
    specs.add_spec_arguments(parser)
    parser.add_argument("--judge", help="with --config: a key of config.judges")
    parser.add_argument(
        "--comparison", choices=grid.COMPARISONS, help="with --config: the comparison kind"
    )
    parser.add_argument("--test", required=True, help="results/data/test.csv")
    parser.add_argument(
        "--scorer", help="the fitted scorer a scorer judge rates with (its rule's input)"
    )
    parser.add_argument("--cost-report", help="CSV the LLM layer appends its costs to")
    parser.add_argument(
        "--files-out",
        help="JSON naming every judgment file written, with its sha256 (written last)",
    )
    parser.add_argument(
        "--root", default=".", help="directory holding results/ (answers in, judgments out)"
    )
    return parser


def _run(args: argparse.Namespace) -> None:
    if args.config and not (args.judge and args.comparison):
        raise ConfigError(
            "--config needs --judge (a key of config.judges) and --comparison (a kind)"
        )
    spec, run = specs.from_args(
        args,
        lambda config: evaluation_specs.judge_job(config, args.judge, args.comparison),
        # a scorer judge makes no requests: only an LLM judge needs the runtime part
        with_runtime=lambda spec: kind_of(spec["endpoint"]).calls_llm,
    )
    judged = judge_pairs(
        spec, args.test, args.root, scorer=args.scorer, cost_report=args.cost_report, runtime=run
    )
    for path, records in judged.items():
        write_jsonl(Path(args.root) / path, records)
    if args.files_out:
        counts = {path: len(records) for path, records in judged.items()}
        judge_records.write(
            spec["judge"], spec["comparison"], counts, Path(args.root), Path(args.files_out)
        )
    records = [r for rs in judged.values() for r in rs]
    invalid = sum(r["verdict"] is None for r in records)
    refused = sum(r.get("refusal") is not None for r in records)
    print(
        f"judge {spec['judge']}, {spec['comparison']}: {len(judged)} pairs, {len(records)}"
        f" judgments, {invalid} invalid ({refused} refused by the provider)"
    )


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
