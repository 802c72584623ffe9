"""The study protocol's paid calls: an OpenAI scorer of ``scoring.study_protocol`` is fine-tuned
on the study's 80% (4 epochs) and then rates its 20% at the fine-tuned model's prices.

Both counted from the real texts of the study's balanced set, split and prompted exactly as the
jobs do (``study_finetune_data``): the training file's estimated tokens x the study's epochs x
the training price, as ``llm/finetune.py`` projects it before it uploads; and one request per
test response, its reply at the worst case, as every scorer row.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..core.config import resolve_resource
from ..evaluation.scoring import specs as scoring_specs
from ..evaluation.scoring import study_finetune_data, study_protocol
from ..evaluation.scoring.finetune_openai import fine_tune_request
from ..evaluation.scoring.prompts import scoring_prompt
from ..evaluation.scoring.score import ScoreItem
from ..evaluation.scoring.score import build_requests as build_score_requests
from ..llm.capabilities import worst_case_output_tokens
from ..llm.finetune_data import example_tokens
from ..llm.pricing import PriceTable, approx_request_tokens
from .rows import ProjectionRow

#: The parts of a study-protocol scorer's rows (``part`` column of the projection).
TRAINING_PART = f"fine_tuning/{study_protocol.STUDY_BALANCED}"
SCORING_PART = f"responses_{study_protocol.STUDY_BALANCED}_test"


def paid_scorers(config: dict[str, Any]) -> list[str]:
    """Scorers of the study's protocol fine-tuned through OpenAI (a local one is free)."""
    defined = config["scoring"]["scorers"]
    return [n for n in study_protocol.scorers(config) if defined[n]["backend"] == "openai"]


def study_rows(
    config: dict[str, Any], prices: PriceTable, balanced: pd.DataFrame
) -> list[ProjectionRow]:
    """Per paid scorer of the study's protocol: its training row and its scoring row."""
    rows = []
    block = study_protocol.settings(config)
    train, test = study_finetune_data.split_rows(balanced, block["max_train"], block["max_test"])
    for name in paid_scorers(config):
        scorer = config["scoring"]["scorers"][name]
        examples = study_finetune_data.examples(
            train, scoring_specs.study_scorer_data(config, name)
        )
        tokens = sum(example_tokens(e["messages"], f"scorer {name}") for e in examples)
        request = fine_tune_request(scoring_specs.finetune_study_scorer(config, name))
        trained = tokens * int(request.hyperparameters["n_epochs"])
        price = prices.fine_tuning_price(request.base_model, f"scorer {name}")
        stage = f"scorer:{name}"
        rows.append(
            ProjectionRow(
                stage,
                TRAINING_PART,
                "openai",
                request.base_model,
                "training",
                len(examples),
                0,
                trained,
                0,
                price.training_cost(trained),
            )
        )
        spec = scoring_specs.score_study_test(config, name)
        prompt = scoring_prompt(spec["kind"], spec["variant"], resolve_resource(spec["prompts"]))
        items = [
            ScoreItem(r["unified_dialog_id"], r["situation"], r["speaker_uttr"], r["response"])
            for r in test.to_dict("records")
        ]
        requests = build_score_requests(items, prompt, scorer["model"], scorer["sampling"])
        tokens_in = sum(approx_request_tokens(r) for r in requests)
        tokens_out = worst_case_output_tokens(scorer, scorer["sampling"]) * len(requests)
        rows.append(
            ProjectionRow(
                stage,
                SCORING_PART,
                "openai",
                scorer["model"],
                scorer["mode"],
                len(requests),
                0,
                tokens_in,
                tokens_out,
                price.modes[scorer["mode"]].cost(tokens_in, tokens_out),
            )
        )
    return rows
