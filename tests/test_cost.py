"""Cost projection: equals sum(tokens x price) on a small grid; the budget cap stops a run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from empathy_distill import cost
from empathy_distill.core.config import validate_config
from empathy_distill.distillation.sets import improve_human_sources
from empathy_distill.llm import LLMError
from tests.conftest import SHIPPED_PROMPTS

PRICES = Path(__file__).resolve().parents[1] / "resources" / "prices.yaml"


def tokens(*texts):
    """Independent re-statement of the documented rule: ceil(chars/4) + 3 per message + 3."""
    return sum(math.ceil(len(t) / 4) + 3 for t in texts) + 3


def small_config(tmp_path, **llm):
    return validate_config(
        {
            "prompts": str(SHIPPED_PROMPTS),
            "llm": {"cache_dir": str(tmp_path / "cache"), "price_table": str(PRICES), **llm},
            "distillation": {
                "methods": {
                    "improve_human": ["improve_cognitive", "improve_three_dimensions_sequentially"]
                }
            },
            "teacher": {"backend": "openai", "model": "gpt-4o", "mode": "batch"},
            "students": {"tiny": {"model": "tiny", "template": "llama3"}},
            "grid": {"students": ["tiny"], "judges": ["gpt4o", "offline"]},
            "generation": {"max_new_tokens": 10},
            "judges": {
                "gpt4o": {"backend": "openai", "model": "gpt-4o", "mode": "realtime"},
                "offline": {"backend": "offline", "model": "ratings"},
            },
            "evaluation": {"comparisons": ["vs_base"]},
        }
    )


def test_projection_equals_tokens_times_prices(tmp_path, train, test_split):
    ref = json.loads(SHIPPED_PROMPTS.read_text(encoding="utf-8"))
    train3, test2 = train.head(3), test_split.head(2)
    sources = improve_human_sources(train3)
    config = small_config(tmp_path)
    rows = cost.project(config, train3, test2, sources)

    answer = "x" * (4 * 130)
    cognitive = [
        ref["teacher"]["improve"]["improve_cognitive"]
        .replace("{context}", r["situation"])
        .replace("{speaker_utterance}", r["speaker_uttr"])
        .replace("{response}", r["source_response"])
        for _, r in sources.iterrows()
    ]
    seq = ref["teacher"]["improve_three_dimensions_sequentially"]
    t_cog = sum(tokens(u) for u in cognitive)
    t_seq = sum(tokens(u, answer, seq["turn2_user"]) for u in cognitive) + sum(
        tokens(u, answer, seq["turn2_user"], answer, seq["turn3_user"]) for u in cognitive
    )
    batch_in, batch_out = 1.25, 5.00  # gpt-4o batch, USD / 1M tokens (resources/prices.yaml)
    expected_teacher = (t_cog * batch_in + 3 * 130 * batch_out) / 1e6 + (
        t_seq * batch_in + 6 * 130 * batch_out
    ) / 1e6

    judge_answer = "x" * 40  # generation.max_new_tokens = 10 tokens per side
    t_judge = 0
    for _, r in test2.iterrows():
        user = (
            ref["judge"]["openai"]["user"]
            .replace("{context}", r["situation"])
            .replace("{speaker_utterance}", r["speaker_uttr"])
            .replace("{response_1}", judge_answer)
            .replace("{response_2}", judge_answer)
        )
        t_judge += tokens(ref["judge"]["openai"]["system"], user)
    comparisons = 1 * 2 * 2  # students x data configs x stages, vs base
    judge_requests = comparisons * len(test2) * 2  # both orders
    # each verdict at its worst case: the judge's output cap (max_new_tokens, schema default 256;
    # gpt-4o does not think), at the realtime output price
    expected_judge = (comparisons * 2 * t_judge * 2.50 + judge_requests * 256 * 10.00) / 1e6

    by_part = {(r.stage, r.part): r for r in rows}
    assert set(by_part) == {
        ("teacher", "improve_human/improve_cognitive"),
        ("teacher", "improve_human/improve_three_dimensions_sequentially"),
        ("judge:gpt4o", "vs_base"),
    }  # offline judge: free; no initial responses needed by this grid
    seq_row = by_part[("teacher", "improve_human/improve_three_dimensions_sequentially")]
    assert seq_row.requests == 6  # turn 1 is the improve_cognitive request, counted once
    assert by_part[("judge:gpt4o", "vs_base")].requests == judge_requests
    teacher_total = sum(r.cost_usd for r in rows if r.stage == "teacher")
    judge_total = by_part[("judge:gpt4o", "vs_base")].cost_usd
    assert teacher_total == pytest.approx(expected_teacher, rel=1e-12)
    assert judge_total == pytest.approx(expected_judge, rel=1e-12)
    table = cost.projection_table(rows)
    assert table["cost_usd"].iloc[-1] == pytest.approx(expected_teacher + expected_judge)


def write_inputs(tmp_path, train, test_split, config):
    train.head(3).to_csv(tmp_path / "train.csv", index=False)
    test_split.head(2).to_csv(tmp_path / "test.csv", index=False)
    improve_human_sources(train.head(3)).to_csv(tmp_path / "human.csv", index=False)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return [
        "--config",
        str(tmp_path / "config.yaml"),
        "--train",
        str(tmp_path / "train.csv"),
        "--test",
        str(tmp_path / "test.csv"),
        "--improve-human-sources",
        str(tmp_path / "human.csv"),
        "--output",
        str(tmp_path / "projection.csv"),
    ]


def test_cost_command_and_budget_cap(tmp_path, train, test_split, capsys):
    args = write_inputs(tmp_path, train, test_split, small_config(tmp_path))
    assert cost.main(args) == 0
    assert "projected total" in capsys.readouterr().out
    assert (tmp_path / "projection.csv").read_text().count("\n") == 5  # header, 3 rows, total
    capped = write_inputs(tmp_path, train, test_split, small_config(tmp_path, budget_usd=0.0001))
    assert cost.main(capped) == 1
    assert "exceeds llm.budget_usd" in capsys.readouterr().err


def test_unpriced_model_is_an_error_before_spending(tmp_path, train, test_split):
    config = small_config(tmp_path)
    config["teacher"]["model"] = "gpt-unknown"
    with pytest.raises(LLMError, match="no price"):
        cost.project(
            config, train.head(3), test_split.head(2), improve_human_sources(train.head(3))
        )
