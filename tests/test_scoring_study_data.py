"""The scoring study's published files: pinned, validated with errors naming file/row/column,
and the same dialogues as the main dataset (data/scoring_study.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from empathy_distill.core.errors import DatasetError
from empathy_distill.data import scoring_study as study
from empathy_distill.data.dataset import load_dataset
from empathy_distill.evaluation.scoring.study_reproduction_job import read_study

from .conftest import REPO_ROOT

PINNED = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())["scoring"]["study_data"]


def test_config_pins_the_four_files_at_the_studys_first_commit() -> None:
    """The README of shared/data/scoring_study gives these hashes; the URL names commit 062fd10."""
    assert PINNED["url"].endswith("/062fd10fd80c4a1a61d21e5b63e929bd79612f8d")
    assert PINNED["url"].startswith(
        "https://raw.githubusercontent.com/henryjxie/Scoring-with-Large-Language-Models/"
    )
    assert set(PINNED["files"]) == set(study.FILES)
    assert PINNED["files"]["15v2_w_miti.csv"].startswith("2cef425b55dae0b7")


def test_the_real_files_validate_and_match_the_main_dataset(scoring_study_dir, paper_dataset):
    tables = {name: study.load(scoring_study_dir / name) for name in study.FILES}
    assert len(tables[study.DIALOGUES]) == 2000
    assert len(tables[study.SUBFACTOR_SCORES]) == 6000
    study.cross_check(tables[study.DIALOGUES], paper_dataset)
    study.balanced_in_order(tables[study.BALANCED_FEATURES], tables[study.BALANCED])
    # the balanced set's 0/1 MITI columns are its text file's code lists, in the study's order
    vectors = [study.miti_vector(study.parse_miti(c)) for c in tables[study.BALANCED]["miti"]]
    assert (tables[study.BALANCED_FEATURES][list(study.MITI_CODES)].to_numpy() == vectors).all()
    # two responses lack gpt-4o-mini's five compassionate scores (0 in the published file)
    scores = tables[study.SUBFACTOR_SCORES]
    assert (scores[list(study.SUBFACTORS)] == study.MISSING_SCORE).any(axis=1).sum() == 2


@pytest.fixture
def copy_of(scoring_study_dir, tmp_path):
    """A writable copy of one of the study's files, as a DataFrame to corrupt and write back."""

    def make(name: str) -> tuple[Path, pd.DataFrame]:
        path = tmp_path / name
        shutil.copy(scoring_study_dir / name, path)
        return path, pd.read_csv(path)

    return make


def _corrupt(copy_of, name, change) -> str:
    path, table = copy_of(name)
    change(table)
    table.to_csv(path, index=False)
    with pytest.raises(DatasetError) as info:
        study.load(path)
    return str(info.value)


def test_a_missing_column_is_named(copy_of):
    message = _corrupt(
        copy_of, study.BALANCED_FEATURES, lambda t: t.drop(columns=["ofereing-help"], inplace=True)
    )
    assert "15v2_w_miti.csv" in message and "missing column(s) ofereing-help" in message


def test_a_subfactor_score_out_of_range_names_column_and_row(copy_of):
    def change(t):
        t.loc[4, "warmth-in-tone"] = 11

    message = _corrupt(copy_of, study.BALANCED_FEATURES, change)
    assert "column warmth-in-tone: data row(s) 5 have ['11']" in message


def test_a_zero_score_is_refused_in_the_balanced_set(copy_of):
    def change(t):
        t.loc[0, "empowering"] = 0

    assert "column empowering: data row(s) 1" in _corrupt(copy_of, study.BALANCED_FEATURES, change)


def test_a_rating_outside_1_3_is_named(copy_of):
    def change(t):
        t.loc[9, "rating_chatgpt"] = 4

    message = _corrupt(copy_of, study.DIALOGUES, change)
    assert "column rating_chatgpt: data row(s) 10 have ['4']; expected integers 1-3" in message


def test_a_malformed_id_is_named(copy_of):
    def change(t):
        t.loc[2, "dialog-id"] = "hit:1_conv:2_type:llama"

    message = _corrupt(copy_of, study.SUBFACTOR_SCORES, change)
    assert "column dialog-id: data row(s) 3 have ['hit:1_conv:2_type:llama']" in message


def test_an_unknown_miti_code_is_named(copy_of):
    def change(t):
        t.loc[6, "miti"] = "['Affirm', 'Hug']"

    message = _corrupt(copy_of, study.BALANCED, change)
    assert "column miti: data row 7: unknown MITI code(s) ['Hug']" in message


def test_an_unparseable_miti_list_is_named(copy_of):
    def change(t):
        t.loc[0, "miti_human"] = "Affirm, Support"

    message = _corrupt(copy_of, study.DIALOGUES, change)
    assert "column miti_human: data row 1: not a list of MITI codes" in message


def test_an_unbalanced_set_is_refused(copy_of):
    def change(t):
        t.drop(index=[0], inplace=True)

    message = _corrupt(copy_of, study.BALANCED_FEATURES, change)
    assert "640 responses of each rating" in message


def test_a_file_that_is_not_the_pinned_one_names_it_and_both_hashes(scoring_study_dir, tmp_path):
    for name in study.FILES:
        shutil.copy(scoring_study_dir / name, tmp_path / name)
    with open(tmp_path / study.BALANCED, "ab") as handle:
        handle.write(b"\n")
    with pytest.raises(DatasetError) as info:
        read_study(tmp_path, PINNED["files"], None)
    message = str(info.value)
    assert str(tmp_path / study.BALANCED) in message
    assert PINNED["files"][study.BALANCED] in message and "sha256 is " in message


def test_dialogues_in_another_order_are_refused(scoring_study_dir, paper_dataset):
    dialogues = study.load(scoring_study_dir / study.DIALOGUES)
    swapped = dialogues.iloc[[1, 0, *range(2, len(dialogues))]].reset_index(drop=True)
    with pytest.raises(DatasetError, match=r"data row 1: dialog_id 'hit:2179_conv:4359'"):
        study.cross_check(swapped, paper_dataset)
    with pytest.raises(DatasetError, match="has 1999 dialogues, the main dataset 2000"):
        study.cross_check(dialogues.iloc[1:], paper_dataset)


def test_the_synthetic_dataset_is_not_the_studys(scoring_study_dir, dataset_path):
    with pytest.raises(DatasetError, match=r"dataset_and_ratings\.csv has 2000 dialogues"):
        study.cross_check(
            study.load(scoring_study_dir / study.DIALOGUES), load_dataset(dataset_path)
        )
