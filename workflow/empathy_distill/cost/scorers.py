"""The empathy scorers' paid calls: rating/subfactor requests per answer set and per dataset
response, OpenAI embeddings of a classifier scorer, an OpenAI fine-tuning job's examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..core import grid
from ..core.config import resolve_resource
from ..core.judges import calls_llm
from ..distillation.requests import (
    TEACHER_ANSWER_TOKENS,
)
from ..evaluation.scoring import specs as scoring_specs
from ..evaluation.scoring.prompts import scoring_prompt
from ..evaluation.scoring.responses import llm_scorers, response_items, scored_splits
from ..evaluation.scoring.score import ScoreItem
from ..evaluation.scoring.score import build_requests as build_score_requests
from ..llm.capabilities import worst_case_output_tokens
from ..llm.pricing import Price, PriceTable, approx_request_tokens, approx_tokens
from ..startup import embedding_endpoint
from .rows import ProjectionRow, stand_in

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
        spec = scoring_specs.score_answers(config, name)
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
    from ..evaluation.scoring.classifier.features import study_text

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
    from ..evaluation.embeddings import CACHE_FILE, stored_texts
    from ..evaluation.openai_embeddings import embedder_name

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
    from ..evaluation.scoring import train_data
    from ..evaluation.scoring.finetune_openai import fine_tune_request
    from ..llm.finetune import default_epochs
    from ..llm.finetune_data import example_tokens

    examples = train_data.examples(train, scoring_specs.scorer_train_data(config, name))
    tokens = sum(example_tokens(e["messages"], f"scorer {name}") for e in examples)
    request = fine_tune_request(scoring_specs.finetune_scorer(config, name))
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
