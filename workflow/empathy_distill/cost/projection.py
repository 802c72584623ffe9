"""Pricing: the grid's paid calls (teacher, judges, scorers) as rows of tokens x the price table.

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
* An OpenAI scorer of ``scoring.study_protocol`` is also fine-tuned on the 80% of the study's
  balanced set and rates its 20% (``study_scorers.py``: real texts, the study's 4 epochs).
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

from typing import Any

import pandas as pd

from ..core.config import resolve_resource
from ..core.judges import calls_llm
from ..core.prompts import Prompts
from ..distillation.requests import (
    TEACHER_ANSWER_TOKENS,
)
from ..llm.cache import ResponseCache
from ..llm.capabilities import projected_output_tokens, worst_case_output_tokens
from ..llm.pricing import PriceTable, approx_request_tokens
from .requests import judge_token_counts, teacher_requests
from .rows import ProjectionRow, unique
from .scorers import scorer_rows
from .study_scorers import study_rows


def project(
    config: dict[str, Any],
    train: pd.DataFrame,
    test: pd.DataFrame,
    human_sources: pd.DataFrame | None = None,
    cache: ResponseCache | None = None,
    scorer_train: pd.DataFrame | None = None,
    study_balanced: pd.DataFrame | None = None,
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
            fresh = [r for r in unique(requests) if r.key not in seen]
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
    if study_balanced is not None:  # OpenAI scorers of scoring.study_protocol (study_scorers)
        rows += study_rows(config, prices, study_balanced)
    return rows


#: The tables score_responses reads per split (rules scorer_train_split and split_dataset).
