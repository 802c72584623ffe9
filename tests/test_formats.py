from __future__ import annotations

import pytest

from empathy_distill.core.errors import LeakageError, LlamaFactoryFormatError
from empathy_distill.distillation.formats import (
    dataset_info_entry,
    dpo_record,
    sft_record,
    validate_records,
    write_set,
)
from empathy_distill.distillation.leakage import check_no_leakage


def test_valid_records_pass():
    validate_records([sft_record("d", "p", "t")], "sft", "x")
    validate_records([dpo_record("d", "p", "good", "bad")], "dpo", "x")


@pytest.mark.parametrize(
    ("record", "stage", "problem"),
    [
        (
            {"dialog_id": "d", "messages": [{"role": "user", "content": "p"}]},
            "sft",
            "must end with an assistant turn",
        ),
        (
            {
                "dialog_id": "d",
                "messages": [
                    {"role": "assistant", "content": "p"},
                    {"role": "user", "content": "q"},
                ],
            },
            "sft",
            "roles must alternate",
        ),
        (sft_record("d", "p", "  "), "sft", "turn 1 has empty content"),
        (
            {
                **dpo_record("d", "p", "a", "b"),
                "messages": [
                    {"role": "user", "content": "p"},
                    {"role": "assistant", "content": "a"},
                ],
            },
            "dpo",
            "DPO prompt must end with a user turn",
        ),
        (
            {**dpo_record("d", "p", "a", "b"), "chosen": {"role": "user", "content": "a"}},
            "dpo",
            "'chosen' must be one assistant message",
        ),
        (dpo_record("d", "p", "a", ""), "dpo", "'rejected' has empty content"),
        (sft_record("", "p", "t"), "sft", "missing dialog_id"),
    ],
)
def test_malformed_records_are_named(record, stage, problem):
    with pytest.raises(LlamaFactoryFormatError, match=problem) as info:
        validate_records(
            [
                sft_record("ok", "p", "t") if stage == "sft" else dpo_record("ok", "p", "a", "b"),
                record,
            ],
            stage,
            "my_set.json",
        )
    assert "my_set.json" in str(info.value) and "record 1" in str(info.value)


def test_empty_set_is_rejected():
    with pytest.raises(LlamaFactoryFormatError, match="empty"):
        validate_records([], "sft", "x")


def test_write_set_refuses_malformed(tmp_path):
    with pytest.raises(LlamaFactoryFormatError):
        write_set([sft_record("d", "p", "")], tmp_path / "s.json", "sft")
    assert not (tmp_path / "s.json").exists()


def test_dataset_info_entries():
    assert dataset_info_entry("a/dpo.json", "dpo")["ranking"] is True
    sft = dataset_info_entry("a/sft.json", "sft")
    assert "ranking" not in sft and sft["formatting"] == "sharegpt"
    assert sft["tags"] == {
        "role_tag": "role",
        "content_tag": "content",
        "user_tag": "user",
        "assistant_tag": "assistant",
    }


def test_leakage_guard(tmp_path):
    test_csv = tmp_path / "test.csv"
    test_csv.write_text("dialog_id,x\nt1,1\nt2,2\n")
    clean, dirty = tmp_path / "clean.json", tmp_path / "dirty.json"
    write_set([sft_record("a", "p", "t")], clean, "sft")
    write_set([sft_record("a", "p", "t"), sft_record("t2", "p", "t")], dirty, "sft")
    assert check_no_leakage(test_csv, [clean]) == 1
    with pytest.raises(LeakageError, match=r"dirty.json: 1 test dialogue\(s\), e.g. \['t2'\]"):
        check_no_leakage(test_csv, [clean, dirty])
