"""What the configured grid will cost on the paid APIs, computed before anything is spent.

``python -m empathy_distill.cost --config config.yaml`` prints one row per teacher step, per
judge x comparison kind and per empathy scorer x kind of answer set, and the total, and writes
them to ``results/costs/projection.csv``.

How it counts (documented approximations, see ``llm/pricing.py``):

* Teacher requests are built exactly as the teacher stage builds them
  (``distillation/requests.py``), from ``results/data/train.csv`` / ``test.csv`` and the
  improve_human sources. Texts that do not exist yet (the teacher's initial responses that
  improve_llm rewrites, earlier answers of the sequential chain) are stand-ins of
  ``TEACHER_ANSWER_TOKENS`` tokens. Identical requests are counted once (the sequential chain's
  first turn is the improve_cognitive request), and requests already answered in the cache
  cost nothing.
* Every teacher answer is assumed to be ``TEACHER_ANSWER_TOKENS`` (130) tokens: the prompts ask
  for at most 97 words, so this is an upper estimate; a thinking teacher adds its
  ``thinking_budget`` per request.
* Judge requests: every comparison of ``grid.comparisons(config)`` on every test dialogue, in 2
  orders (1 if ``evaluation.paper_faithful``), with ``Prompts.judge_messages`` and an answer of
  ``generation.max_new_tokens`` tokens per side; each verdict is counted at its worst case, the
  judge's output cap plus its thinking budget (``llm.capabilities.worst_case_output_tokens``,
  the figure the LLM client's budget check uses too).
* Empathy scorer requests (``scoring.grid``): every answer set of ``grid.answer_tags`` on every
  test dialogue, with the study's prompt (``evaluation/scoring/prompts.py``) and an answer of
  ``generation.max_new_tokens`` tokens (the teacher's: ``TEACHER_ANSWER_TOKENS``); the reply is
  counted at its worst case, as a judge's. With the answer sets, each LLM scorer scores the
  dataset's own responses of the test split (and the scorers' train dialogues,
  ``scoring.train_dialogues``, when ``scoring.human_responses`` lists train): 5 per dialogue,
  their real texts (``evaluation/scoring/responses.py``). An OpenAI fine-tuned scorer's
  examples come from the same train dialogues.
* A classifier scorer with an OpenAI embedding model (``embedding.backend: openai``) embeds
  every response of the scorers' train dialogues and of the test split (their real texts) and
  every answer set's answers (stand-ins as above), each as the study's ``Situation: ...;
  Speaker Utterance: ...; Response: ...`` text: ``ceil(chars / 4)`` tokens per text x the
  model's input price; texts already in the embedding cache cost nothing.
* Input tokens: ``ceil(chars / 4)`` per message + chat overhead (no tokenizer is available
  offline). Prices: ``llm.price_table``, batch or real-time price by each endpoint's ``mode``.
* ``llm.budget_usd``: the command fails when the projection plus what the cache records as
  already spent exceeds it; the LLM client checks the same cap again before every submission.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .core import grid, runtime, specs, strategies
from .core.atomic import write_csv
from .core.command import run_cli
from .core.config import resolve_resource
from .core.errors import ConfigError, EmpathyDistillError
from .core.judges import calls_llm
from .core.prompts import Prompts
from .core.readers import read_table
from .distillation.requests import (
    TEACHER_ANSWER_TOKENS,
    improve_request,
    initial_request,
    sequential_request,
    sequential_turns,
)
from .distillation.sets import SOURCE_COLUMNS
from .evaluation.scoring.prompts import scoring_prompt
from .evaluation.scoring.responses import llm_scorers, response_items, scored_splits
from .evaluation.scoring.score import ScoreItem
from .evaluation.scoring.score import build_requests as build_score_requests
from .llm.cache import CACHE_FILE, ResponseCache
from .llm.capabilities import projected_output_tokens, worst_case_output_tokens
from .llm.errors import BudgetExceededError
from .llm.pricing import Price, PriceTable, approx_request_tokens, approx_tokens
from .llm.request import ChatRequest, Message
from .startup import embedding_endpoint

PROJECTION_COLUMNS = (
    "stage",
    "part",
    "backend",
    "model",
    "mode",
    "requests",
    "cached",
    "input_tokens",
    "output_tokens",
    "cost_usd",
)


@dataclass
class ProjectionRow:
    stage: str
    part: str
    backend: str
    model: str
    mode: str
    requests: int
    cached: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


def stand_in(tokens: int) -> str:
    """A text that counts exactly ``tokens`` approximate tokens."""
    return "x" * (4 * tokens)


def teacher_requests(
    config: dict[str, Any],
    prompts: Prompts,
    train: pd.DataFrame,
    test: pd.DataFrame,
    human_sources: pd.DataFrame | None,
) -> dict[str, list[ChatRequest]]:
    """part name -> the teacher requests of that step, as the teacher stage will send them."""
    endpoint = config["teacher"]
    model, sampling = endpoint["model"], dict(endpoint["sampling"])
    methods = config["distillation"]["methods"]
    parts: dict[str, list[ChatRequest]] = {}
    if methods.get("improve_llm") or grid.TEACHER_TAG in grid.answer_tags(config):
        parts["initial"] = [
            initial_request(prompts, model, sampling, r["situation"], r["speaker_uttr"])
            for table in (train, test)
            for _, r in table.iterrows()
        ]
    answer = stand_in(TEACHER_ANSWER_TOKENS)
    for method in grid.IMPROVE_METHODS:
        calls = grid.teacher_strategies(config, method)
        if not calls:
            continue
        if method == "improve_human":
            if human_sources is None:
                raise EmpathyDistillError("improve_human is in the grid but has no sources table")
            sources = [
                (r["situation"], r["speaker_uttr"], r["source_response"])
                for _, r in human_sources.iterrows()
            ]
        else:  # the teacher's own initial responses, not written yet
            sources = [(r["situation"], r["speaker_uttr"], answer) for _, r in train.iterrows()]
        for strategy in calls:
            if strategies.kind(strategy) == strategies.SEQUENTIAL:
                requests = [
                    sequential_request(
                        prompts, model, sampling, strategy, s, u, resp, [answer] * turn
                    )
                    for s, u, resp in sources
                    for turn in range(sequential_turns(prompts, strategy))
                ]
            else:
                requests = [
                    improve_request(prompts, model, sampling, strategy, s, u, resp)
                    for s, u, resp in sources
                ]
            parts[f"{method}/{strategy}"] = requests
    return parts


def judge_token_counts(
    config: dict[str, Any], prompts: Prompts, test: pd.DataFrame
) -> dict[str, tuple[int, int]]:
    """comparison kind -> (requests, input tokens) of ONE judge over the whole grid."""
    orders = 1 if config["evaluation"]["paper_faithful"] else 2
    answer = stand_in(int(config["generation"]["max_new_tokens"]))
    per_dialogue = 0
    for _, row in test.iterrows():
        system, user = prompts.judge_messages(row["situation"], row["speaker_uttr"], answer, answer)
        request = ChatRequest("judge", (Message("system", system), Message("user", user)))
        per_dialogue += approx_request_tokens(request)
    counts: dict[str, tuple[int, int]] = {}
    for pair in grid.comparisons(config):
        requests, tokens = counts.get(pair.kind, (0, 0))
        counts[pair.kind] = (requests + orders * len(test), tokens + orders * per_dialogue)
    return counts


def project(
    config: dict[str, Any],
    train: pd.DataFrame,
    test: pd.DataFrame,
    human_sources: pd.DataFrame | None = None,
    cache: ResponseCache | None = None,
    scorer_train: pd.DataFrame | None = None,
) -> list[ProjectionRow]:
    """Rows of the grid's paid calls. ``scorer_train``: the scorers' train dialogues
    (scoring.train_dialogues; results/data/scorer_train.csv), ``train`` when not given."""
    prompts = Prompts(resolve_resource(config["prompts"]))
    prices = PriceTable.load(resolve_resource(config["llm"]["price_table"]))
    rows: list[ProjectionRow] = []
    if config.get("teacher"):
        endpoint = config["teacher"]
        price = prices.price(endpoint["backend"], endpoint["model"], endpoint["mode"])
        parts = teacher_requests(config, prompts, train, test, human_sources)
        seen: set[str] = set()
        for part, requests in parts.items():
            fresh = [r for r in _unique(requests) if r.key not in seen]
            seen.update(r.key for r in fresh)
            cached = set(cache.get_many(r.key for r in fresh)) if cache else set()
            paid = [r for r in fresh if r.key not in cached]
            tokens_in = sum(approx_request_tokens(r) for r in paid)
            tokens_out = projected_output_tokens(endpoint, TEACHER_ANSWER_TOKENS) * len(paid)
            rows.append(
                ProjectionRow(
                    "teacher",
                    part,
                    endpoint["backend"],
                    endpoint["model"],
                    endpoint["mode"],
                    len(fresh),
                    len(cached),
                    tokens_in,
                    tokens_out,
                    price.cost(tokens_in, tokens_out),
                )
            )
    judge_counts = None
    for name, raw in sorted(config.get("judges", {}).items()):  # as the rule's sorted spec
        if not calls_llm(raw):  # a scorer judge makes no LLM calls
            continue
        endpoint = raw
        price = prices.price(endpoint["backend"], endpoint["model"], endpoint["mode"])
        if judge_counts is None:
            judge_counts = judge_token_counts(config, prompts, test)
        for kind, (requests, tokens_in) in judge_counts.items():
            tokens_out = worst_case_output_tokens(endpoint) * requests
            rows.append(
                ProjectionRow(
                    f"judge:{name}",
                    kind,
                    endpoint["backend"],
                    endpoint["model"],
                    endpoint["mode"],
                    requests,
                    0,
                    tokens_in,
                    tokens_out,
                    price.cost(tokens_in, tokens_out),
                )
            )
    rows += scorer_rows(config, test, prices, train if scorer_train is None else scorer_train)
    return rows


#: The tables score_responses reads per split (rules scorer_train_split and split_dataset).
SPLIT_FILES = {"train": grid.SCORER_TRAIN_CSV, "test": grid.TEST_CSV}


def scorer_rows(
    config: dict[str, Any], test: pd.DataFrame, prices: PriceTable, train: pd.DataFrame
) -> list[ProjectionRow]:
    """One row per (scorer of ``scoring.grid``, kind of answer set: base, model, teacher), and
    per split of the dataset's responses it scores (``responses_test``, ``responses_train``)."""
    rows = []
    tags = grid.answer_tags(config)
    for name in grid.scorers(config):
        scorer = config["scoring"]["scorers"][name]
        if (embedding := embedding_endpoint(config, name)) is not None:
            rows += embedding_rows(config, name, embedding, test, train, prices)
        if not calls_llm(scorer):
            continue
        spec = specs.score_answers(config, name)
        prompt = scoring_prompt(spec["kind"], spec["variant"], resolve_resource(spec["prompts"]))
        price = prices.price(scorer["backend"], scorer["model"], scorer["mode"])
        if scorer.get("finetune") and scorer["backend"] == "openai":
            training, price = openai_finetune_projection(config, name, prices, train)
            rows.append(training)
        per_kind: dict[str, list[int]] = {}
        for tag in tags:
            kind = grid.parse_tag(tag)["kind"]
            length = (
                TEACHER_ANSWER_TOKENS
                if kind == "teacher"
                else int(config["generation"]["max_new_tokens"])
            )
            items = [
                ScoreItem(str(r["dialog_id"]), r["situation"], r["speaker_uttr"], stand_in(length))
                for _, r in test.iterrows()
            ]
            counts = per_kind.setdefault(kind, [0, 0])
            requests = build_score_requests(items, prompt, scorer["model"], scorer["sampling"])
            counts[0] += len(requests)
            counts[1] += sum(approx_request_tokens(r) for r in requests)
        # the dataset's own human-rated responses (score_responses), their real texts
        for split in scored_splits(config) if name in llm_scorers(config) else []:
            frame = train if split == "train" else test
            items = [r.item for r in response_items(frame, SPLIT_FILES[split])]
            requests = build_score_requests(items, prompt, scorer["model"], scorer["sampling"])
            per_kind[f"responses_{split}"] = [
                len(requests),
                sum(approx_request_tokens(r) for r in requests),
            ]
        for kind, (requests, tokens_in) in per_kind.items():
            tokens_out = worst_case_output_tokens(scorer, scorer["sampling"]) * requests
            rows.append(
                ProjectionRow(
                    f"scorer:{name}",
                    kind,
                    scorer["backend"],
                    scorer["model"],
                    scorer["mode"],
                    requests,
                    0,
                    tokens_in,
                    tokens_out,
                    price.cost(tokens_in, tokens_out),
                )
            )
    return rows


def embedding_texts(
    config: dict[str, Any], test: pd.DataFrame, train: pd.DataFrame
) -> dict[str, list[str]]:
    """part -> the texts a classifier embeds (``study_text``): every response of the scorers'
    train dialogues and of the test split (rule train_classifier_scorer, real texts), and per
    kind of answer set every test dialogue with a stand-in answer (rule score_answers)."""
    from .evaluation.scoring.classifier.features import study_text

    parts: dict[str, list[str]] = {}
    for split, frame in (("train", train), ("test", test)):
        parts[f"embedding/responses_{split}"] = [
            study_text(r.item.situation, r.item.speaker_uttr, r.item.answer)
            for r in response_items(frame, SPLIT_FILES[split])
        ]
    for tag in grid.answer_tags(config):
        kind = grid.parse_tag(tag)["kind"]
        length = (
            TEACHER_ANSWER_TOKENS
            if kind == "teacher"
            else int(config["generation"]["max_new_tokens"])
        )
        answer = stand_in(length)
        parts.setdefault(f"embedding/{kind}", []).extend(
            study_text(r["situation"], r["speaker_uttr"], answer) for _, r in test.iterrows()
        )
    return parts


def embedding_rows(
    config: dict[str, Any],
    name: str,
    endpoint: dict[str, Any],
    test: pd.DataFrame,
    train: pd.DataFrame,
    prices: PriceTable,
) -> list[ProjectionRow]:
    """A classifier with an OpenAI embedding model: per part, the texts embedded (``requests``
    counts texts, the API's inputs), those already in the embedding cache (free), and the
    input tokens of the others x the model's price (embeddings have no output tokens)."""
    from .evaluation.embeddings import CACHE_FILE, stored_texts
    from .evaluation.openai_embeddings import embedder_name

    price = prices.price(endpoint["backend"], endpoint["model"], endpoint["mode"])
    model_name = embedder_name(endpoint["backend"], endpoint["model"], endpoint.get("base_url"))
    cache_path = Path(config["llm"]["cache_dir"]) / CACHE_FILE
    rows = []
    for part, texts in embedding_texts(config, test, train).items():
        stored = stored_texts(cache_path, model_name, texts)
        tokens = sum(approx_tokens(t) for t in texts if t not in stored)
        rows.append(
            ProjectionRow(
                f"scorer:{name}",
                part,
                endpoint["backend"],
                endpoint["model"],
                endpoint["mode"],
                len(texts),
                sum(t in stored for t in texts),
                tokens,
                0,
                price.cost(tokens, 0),
            )
        )
    return rows


def openai_finetune_projection(
    config: dict[str, Any], name: str, prices: PriceTable, train: pd.DataFrame
) -> tuple[ProjectionRow, Price]:
    """An OpenAI fine-tuned scorer: the training row (the examples rule scorer_train_data will
    write, their estimated tokens x epochs x the training price, as the job projects it before
    it uploads) and the price of using the fine-tuned model."""
    from .evaluation.scoring import train_data
    from .evaluation.scoring.finetune_openai import fine_tune_request
    from .llm.finetune import default_epochs
    from .llm.finetune_data import example_tokens

    examples = train_data.examples(train, specs.scorer_train_data(config, name))
    tokens = sum(example_tokens(e["messages"], f"scorer {name}") for e in examples)
    request = fine_tune_request(specs.finetune_scorer(config, name))
    epochs = request.hyperparameters.get("n_epochs") or default_epochs(len(examples))
    price = prices.fine_tuning_price(request.base_model, f"scorer {name}")
    trained = tokens * int(epochs)
    row = ProjectionRow(
        f"scorer:{name}",
        "fine_tuning",
        "openai",
        request.base_model,
        "training",
        len(examples),
        0,
        trained,
        0,
        price.training_cost(trained),
    )
    return row, price.modes[config["scoring"]["scorers"][name]["mode"]]


def _unique(requests: Iterable[ChatRequest]) -> list[ChatRequest]:
    return list({r.key: r for r in requests}.values())


def projection_table(rows: list[ProjectionRow]) -> pd.DataFrame:
    table = pd.DataFrame([asdict(r) for r in rows], columns=list(PROJECTION_COLUMNS))
    total = {
        c: table[c].sum()
        for c in ("requests", "cached", "input_tokens", "output_tokens", "cost_usd")
    }
    total.update(stage="TOTAL", part="", backend="", model="", mode="")
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def check_budget(total_usd: float, budget_usd: float | None, spent_usd: float) -> None:
    if budget_usd is not None and spent_usd + total_usd > budget_usd + 1e-12:
        raise BudgetExceededError(
            f"projected cost ${total_usd:.2f} + ${spent_usd:.2f} already spent exceeds"
            f" llm.budget_usd = ${budget_usd:.2f}: shrink the grid, switch to batch mode or raise"
            " the cap"
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m empathy_distill.cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    specs.add_spec_arguments(parser)
    parser.add_argument("--train", default="results/data/train.csv")
    parser.add_argument("--test", default="results/data/test.csv")
    parser.add_argument(
        "--improve-human-sources", help="results/data/sources/improve_human.csv (if in the grid)"
    )
    parser.add_argument(
        "--scorer-train", help="results/data/scorer_train.csv (if a scorer is in the grid)"
    )
    parser.add_argument("--output", default="results/costs/projection.csv")
    return parser


def run_projection(
    config: dict[str, Any],
    train_csv: str | Path,
    test_csv: str | Path,
    human_sources_csv: str | Path | None,
    output: str | Path,
    scorer_train_csv: str | Path | None = None,
) -> float:
    """Project, print and write the cost of ``config`` (the validated config, runtime part
    included: the budget cap is checked); return the projected total in USD."""
    columns = ["dialog_id", "situation", "speaker_uttr"]
    train = read_table(train_csv, columns)
    test = read_table(test_csv, columns)
    human = None
    if config["distillation"]["methods"].get("improve_human"):
        if human_sources_csv is None:
            raise ConfigError(
                "distillation.methods has improve_human: pass --improve-human-sources"
            )
        human = read_table(human_sources_csv, SOURCE_COLUMNS)
    cache_dir = Path(config["llm"]["cache_dir"])
    cache = ResponseCache(cache_dir) if (cache_dir / CACHE_FILE).exists() else None
    scorer_train = None
    if grid.scorers(config):
        if scorer_train_csv is None:
            raise ConfigError("scoring.grid has scorers: pass --scorer-train")
        scorer_train = read_table(scorer_train_csv, columns)
    table = projection_table(project(config, train, test, human, cache, scorer_train))
    write_csv(output, table)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(table.to_string(index=False, float_format=lambda v: f"{v:,.4f}"))
    total = float(table["cost_usd"].iloc[-1])
    print(f"\nprojected total: ${total:,.2f} (token counts approximate: chars/4)")
    check_budget(total, config["llm"]["budget_usd"], cache.spent_usd() if cache else 0.0)
    return total


def _run(args: argparse.Namespace) -> None:
    # The projection walks the whole grid: the spec is the config's identity; the runtime part
    # brings the budget cap back.
    spec, run = specs.from_args(args, specs.cost, with_runtime=True)
    config = runtime.merge(spec, run or {})
    run_projection(
        config, args.train, args.test, args.improve_human_sources, args.output, args.scorer_train
    )


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
