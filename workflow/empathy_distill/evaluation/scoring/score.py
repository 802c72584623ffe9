"""The ``score_answers`` job: every answer of every answer set of the grid scored by one scorer.

Requests go through the LLM layer (cache, real time or Batch API, retries, budget, refusals),
one per test dialogue and answer set, all of the job's at once (one budget projection, one
Batch API submission; the LLM cache is the unit of resume, so a killed job's rerun pays only
what is not cached), with the study's prompt (``prompts.py``) and the scorer's sampling
(temperature 0, top_p 0.1 by default, as the study). Each line of the output holds the
dialogue, its scores in prompt order (or null), whether the reply was valid, why not, the
provider's refusal if any, the model and the token usage. A refused request is counted as
refused, not as invalid; neither is ever given a score. A local scorer (classifier,
offline, a transformers model) is loaded once per job. A job takes its spec
(``specs.score_answers_job``) as ``--spec`` and the scorer's operational keys from
``$EMPATHY_DISTILL_RUNTIME``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core import specs
from ...core.command import run_cli
from ...core.config import resolve_resource
from ...core.errors import ConfigError
from ..records import AnswersError, read_answers, read_split, write_jsonl
from . import specs as scoring_specs
from .finetune import finetuned_spec
from .offline.apply import score_offline
from .parse import parse_reply
from .prompts import CLASSIFIER, ScoringPrompt, scoring_prompt

#: ask(requests) -> one reply per request, in order (the LLM layer's ChatResponse).
AskFn = Callable[[list[Any]], Sequence[Any]]


@dataclass(frozen=True)
class ScoreItem:
    """One test dialogue and the answer to score."""

    dialog_id: str
    situation: str
    speaker_uttr: str
    answer: str


def score_items(test_csv: str | Path, answers_file: str | Path) -> list[ScoreItem]:
    """The test dialogues joined with the answer set; every test dialogue needs an answer."""
    return _items(read_split(test_csv), Path(answers_file))


def build_requests(
    items: Sequence[ScoreItem], prompt: ScoringPrompt, model: str, sampling: dict | None = None
) -> list[Any]:
    """One ChatRequest per item: the study's system and user messages, exact texts."""
    from ...llm import ChatRequest, Message

    requests = []
    for item in items:
        system, user = prompt.messages(item.situation, item.speaker_uttr, item.answer)
        requests.append(
            ChatRequest(
                model=model,
                messages=(Message("system", system), Message("user", user)),
                sampling=dict(sampling or {}),
            )
        )
    return requests


def score_with_llm(
    items: Sequence[ScoreItem],
    ask: AskFn,
    prompt: ScoringPrompt,
    model: str,
    scorer: str,
    sampling: dict | None = None,
) -> list[dict]:
    """Score every item; one record per item, in order."""
    requests = build_requests(items, prompt, model, sampling)
    replies = list(ask(requests))
    if len(replies) != len(requests):
        raise AnswersError(f"scorer {scorer}: {len(replies)} replies for {len(requests)} requests")
    records = []
    for item, request, reply in zip(items, requests, replies, strict=True):
        refusal = getattr(reply, "refusal", None)
        parsed = parse_reply(reply.text, prompt) if refusal is None else None
        records.append(
            {
                "dialog_id": item.dialog_id,
                "scorer": scorer,
                "kind": prompt.kind,
                "variant": prompt.variant,
                "scores": list(parsed.scores) if parsed and parsed.valid else None,
                "valid": bool(parsed and parsed.valid),
                "problem": None if parsed is None else parsed.problem,
                "refusal": refusal,
                "raw": reply.text,
                "model": getattr(reply, "model", model),
                "usage": dict(getattr(reply, "usage", {}) or {}),
                "request_key": request.key,
            }
        )
    return records


def client_ask(spec: dict, run: dict, cost_report: str | Path | None = None) -> AskFn:
    """The LLM layer's client for the spec's scorer, with its operational keys from ``run``."""
    from ...llm.job import job_client

    scorer = spec["scorer"]
    client = job_client(spec, run, "scoring", "scorers", scorer, cost_report=cost_report)
    return lambda requests: client.complete(requests, desc=f"scorer {scorer}")


def run_scorer(
    spec: dict,
    items: Sequence[ScoreItem],
    ask: AskFn | None = None,
    cost_report: str | Path | None = None,
    runtime: dict | None = None,
    answers_file: str | Path | None = None,
) -> list[dict]:
    """Score ``items`` with the scorer of ``spec`` (``specs.score_answers``): through the LLM
    layer, or for kind ``classifier`` and an offline subfactors scorer with its fitted model
    (``answers_file`` names the answer set, whose subfactor scores a subfactor-feature
    classifier reads)."""
    if spec["kind"] == CLASSIFIER:
        from .classifier.apply import score_answer_set

        return score_answer_set(spec, items, answers_file, runtime=runtime)
    if spec.get("backend") == scoring_specs.OFFLINE_BACKEND:  # a fitted local model, no request
        return score_offline(spec, items)
    prompt = scoring_prompt(spec["kind"], spec["variant"], resolve_resource(spec["prompts"]))
    endpoint = spec["endpoint"]
    ask = ask or client_ask(spec, runtime or {}, cost_report)
    return score_with_llm(
        items, ask, prompt, endpoint["model"], spec["scorer"], endpoint["sampling"]
    )


def score_answer_sets(
    spec: dict,
    test_csv: str | Path,
    root: str | Path = ".",
    ask: AskFn | None = None,
    cost_report: str | Path | None = None,
    runtime: dict | None = None,
) -> dict[str, list[dict]]:
    """Scores file path -> records, for every answer set of a score_answers job's spec
    (``specs.score_answers_job``), paths relative to ``root`` (the directory holding results/).

    An LLM scorer gets the job's requests as one set (one budget projection over the job; in
    batch mode one submission, which the LLM layer splits at the provider's limits, instead of
    one per answer set, each a wait of up to a day); a local model is loaded once.
    """
    root = Path(root)
    test = read_split(test_csv)
    manifest = scoring_specs.answer_set_manifest(spec)
    groups = [_items(test, root / e["answers_path"]) for e in manifest]
    if spec["kind"] == CLASSIFIER:  # per answer set: its subfactor features are that set's
        from .classifier.apply import score_answer_sets as classifier_sets

        paths = [e["answers_path"] for e in manifest]
        per_set = classifier_sets(
            spec, list(zip(paths, groups, strict=True)), runtime=runtime, root=root
        )
    else:
        flat = [item for items in groups for item in items]
        records = run_scorer(spec, flat, ask, cost_report, runtime)
        if len(records) != len(flat):
            raise AnswersError(
                f"scorer {spec['scorer']}: {len(records)} records for {len(flat)} answers"
            )
        per_set, start = [], 0
        for items in groups:
            per_set.append(records[start : start + len(items)])
            start += len(items)
    return {e["path"]: records for e, records in zip(manifest, per_set, strict=True)}


def _items(test: Any, answers_file: Path) -> list[ScoreItem]:
    """``score_items`` on a test split already read."""
    answers = read_answers(answers_file)
    items = []
    for row in test.itertuples(index=False):
        if row.dialog_id not in answers:
            raise AnswersError(f"{answers_file}: no answer for test dialogue {row.dialog_id!r}")
        items.append(
            ScoreItem(
                row.dialog_id, str(row.situation), str(row.speaker_uttr), answers[row.dialog_id]
            )
        )
    return items


def scoring_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every scoring job shares (score_answers, score_responses)."""
    parser = argparse.ArgumentParser(description=description)
    specs.add_spec_arguments(parser)
    parser.add_argument("--scorer", help="with --config: a key of config.scoring.scorers")
    parser.add_argument("--cost-report", help="CSV the LLM layer appends its costs to")
    parser.add_argument(
        "--scorer-model", help="a fine-tuned scorer's model.json: score with its model"
    )
    return parser


def scoring_spec(
    args: argparse.Namespace, builder: Callable[[dict, str], dict] = scoring_specs.score_answers
) -> tuple[dict, dict | None]:
    """The job's scorer spec and runtime part, with a fine-tuned scorer's model swapped in
    (``builder``: the spec of the job with --config, the scorer's by default)."""
    if args.config and not args.scorer:
        raise ConfigError("--config needs --scorer (a key of config.scoring.scorers)")
    spec, run = specs.from_args(
        args, lambda config: builder(config, args.scorer), with_runtime=True
    )
    return finetuned_spec(spec, args.scorer_model), run


def write_scores(out: str | Path, records: list[dict], what: str) -> None:
    """Write the records and say how many were invalid or refused (the job's log)."""
    write_jsonl(out, records)
    refused = sum(r["refusal"] is not None for r in records)
    invalid = sum(not r["valid"] for r in records) - refused
    print(
        f"{out}: {len(records)} {what} scored, {invalid} invalid replies,"
        f" {refused} refused by the provider"
    )


def _parser() -> argparse.ArgumentParser:
    parser = scoring_parser("Score every answer set of the grid with one scorer (a job).")
    parser.add_argument("--test", required=True, help="results/data/test.csv")
    parser.add_argument(
        "--root", default=".", help="directory holding results/ (answers in, scores out)"
    )
    return parser


def _run(args: argparse.Namespace) -> None:
    spec, run = scoring_spec(args, scoring_specs.score_answers_job)
    scored = score_answer_sets(
        spec, args.test, args.root, cost_report=args.cost_report, runtime=run
    )
    for path, records in scored.items():
        write_scores(Path(args.root) / path, records, "answers")
    print(f"scorer {spec['scorer']}: {len(scored)} answer sets")


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
