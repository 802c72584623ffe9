"""Counts of the paper's split and distillation sets (Xie et al., 2025; its code), exactly."""

from __future__ import annotations

import pytest

from empathy_distill.core.prompts import Prompts
from empathy_distill.data.split import good_count
from empathy_distill.distillation import sets
from empathy_distill.distillation.formats import validate_records

DIRECT_COUNTS = {  # strategy: (SFT records, DPO intended, DPO as coded)
    "chatgpt": (1278, 593, 730),
    "llama": (1234, 563, 712),
    "gemini": (1102, 500, 700),
    "mixtral": (1174, 575, 726),
    "all": (4788, 2231, 2868),
}


def test_split_counts(paper_train, paper_test_split):
    train, test_split = paper_train, paper_test_split
    assert len(train) == 1750
    assert len(test_split) == 250
    assert (good_count(test_split) < 2).all()
    assert (good_count(train) >= 2).all()
    assert not set(train["dialog_id"]) & set(test_split["dialog_id"])


@pytest.mark.parametrize("strategy", list(DIRECT_COUNTS))
def test_direct_counts(paper_train, strategy):
    train = paper_train
    n_sft, n_dpo, n_dpo_coded = DIRECT_COUNTS[strategy]
    sft, dpo = sets.direct_records(train, strategy, Prompts(), "intended")
    assert (len(sft), len(dpo)) == (n_sft, n_dpo)
    _, dpo_coded = sets.direct_records(train, strategy, Prompts(), "as_coded")
    assert len(dpo_coded) == n_dpo_coded
    validate_records(sft, "sft", strategy)
    validate_records(dpo, "dpo", strategy)


def test_direct_records_content(train):
    prompts = Prompts()
    sft, dpo = sets.direct_records(train, "chatgpt", prompts)
    row = train[sets.direct_sft_mask(train, "chatgpt")].iloc[0]
    expected_prompt = prompts.student_train(row["situation"], row["speaker_uttr"])
    human, llm = sft[0], sft[1]
    assert human["dialog_id"] == llm["dialog_id"] == row["dialog_id"]
    assert human["messages"][0] == {"role": "user", "content": expected_prompt}
    assert human["messages"][1]["content"] == row["response_human"]
    assert llm["messages"][1]["content"] == row["response_chatgpt_empathy"]
    pair = dpo[0]
    drow = train.set_index("dialog_id").loc[pair["dialog_id"]]
    assert pair["chosen"] == {"role": "assistant", "content": drow["response_chatgpt_empathy"]}
    assert pair["rejected"] == {"role": "assistant", "content": drow["response_human"]}
    assert drow["rating_human"] in (1, 2) and drow["rating_chatgpt_empathy"] == 3


def test_every_sft_user_turn_is_the_filled_student_prompt(train):
    prompts = Prompts()
    by_id = train.set_index("dialog_id")
    sft, dpo = sets.direct_records(train, "all", prompts)
    for record in sft + dpo:
        row = by_id.loc[record["dialog_id"]]
        assert record["messages"][0]["content"] == prompts.student_train(
            row["situation"], row["speaker_uttr"]
        )


def test_improve_human_sources(paper_train):
    train = paper_train
    sources = sets.improve_human_sources(train)
    assert sources["role"].value_counts().to_dict() == {"sft": 950, "dpo": 800}
    assert list(sources.columns) == sets.SOURCE_COLUMNS
    assert (sources["source_response"] == sources["human_response"]).all()


def test_improved_records_from_teacher_outputs(paper_train, tmp_path):
    train = paper_train
    sources = sets.improve_human_sources(train)
    improved = {d: f"Improved answer for {d}." for d in sources["dialog_id"]}
    sft, dpo = sets.improved_records(sources, improved, Prompts())
    assert (len(sft), len(dpo)) == (1900, 800)
    first = sources[sources["role"] == "sft"].iloc[0]
    assert sft[0]["messages"][1]["content"] == first["human_response"]
    assert sft[1]["messages"][1]["content"] == f"Improved answer for {first['dialog_id']}."
    first_dpo = sources[sources["role"] == "dpo"].iloc[0]
    assert dpo[0]["chosen"]["content"] == f"Improved answer for {first_dpo['dialog_id']}."
    assert dpo[0]["rejected"]["content"] == first_dpo["human_response"]
    combined = sets.pooled([(sft, dpo)] * 3)
    assert (len(combined[0]), len(combined[1])) == (5700, 2400)


def test_hand_written_teacher_file_round_trip(tmp_path):
    import pandas as pd

    sources = pd.DataFrame(
        [
            {
                "dialog_id": "d1",
                "role": "sft",
                "situation": "s1",
                "speaker_uttr": "u1",
                "source_response": "h1",
                "human_response": "h1",
            },
            {
                "dialog_id": "d2",
                "role": "dpo",
                "situation": "s2",
                "speaker_uttr": "u2",
                "source_response": "h2",
                "human_response": "h2",
            },
        ]
    )
    path = tmp_path / "naive_prompt.jsonl"
    path.write_text(
        '{"dialog_id": "d1", "improved_response": "better 1"}\n'
        '{"dialog_id": "d2", "improved_response": " better 2 "}\n'
    )
    sft, dpo = sets.improved_records(sources, sets.read_teacher_outputs(path), Prompts())
    assert [r["messages"][1]["content"] for r in sft] == ["h1", "better 1"]
    assert dpo[0]["chosen"]["content"] == "better 2"
    assert dpo[0]["rejected"]["content"] == "h2"


def test_missing_teacher_output_is_an_error(train):
    from empathy_distill.core.errors import DatasetError

    sources = sets.improve_human_sources(train).head(3)
    improved = {sources["dialog_id"][0]: "x", sources["dialog_id"][1]: ""}
    with pytest.raises(DatasetError, match="no improved response for 2 source dialogue"):
        sets.improved_records(sources, improved, Prompts(), "naive.jsonl")
