"""The scorers learn from their own train dialogues (``scoring.train_dialogues``, default all of
the train split), not from the few that ``dataset.max_train_dialogues`` keeps for distillation:
a small distillation run still trains its classifier and fine-tuned scorer on many ratings.

The expected dialogue ids are derived from the dataset file and the test split, not from the
split code: train = every dialogue of the dataset that is not a test dialogue, in file order.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from empathy_distill.core.config import validate_config
from empathy_distill.core.errors import ConfigError

from .conftest import REPO_ROOT
from .workflow_helpers import run_snakemake

SPLIT_FILES = ("results/data/train.csv", "results/data/test.csv", "results/data/scorer_train.csv")


def overlay(dataset_path: Path, train_dialogues: int | None) -> dict:
    return {
        "dataset": {"path": str(dataset_path), "max_train_dialogues": 3},
        "distillation": {
            "methods": {"direct": ["chatgpt"], "improve_human": [], "improve_llm": []}
        },
        "grid": {"students": ["tiny"], "judges": ["offline"]},
        "evaluation": {"comparisons": ["vs_base"]},
        "scoring": {
            "grid": ["minilm_classifier", "smollm2_rating"],
            "train_dialogues": train_dialogues,
            "human_responses": ["test", "train"],
        },
    }


def ids(path: Path) -> list[str]:
    return pd.read_csv(path, dtype=str)["dialog_id"].tolist()


@pytest.mark.parametrize("train_dialogues", [None, 5])
def test_scorer_train_split_is_cut_by_its_own_setting(dataset_path, tmp_path, train_dialogues):
    result = run_snakemake(
        tmp_path, overlay(dataset_path, train_dialogues), "--cores", "1", *SPLIT_FILES
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    test = ids(tmp_path / "results/data/test.csv")
    every_train = [d for d in ids(dataset_path) if d not in set(test)]
    scorer_train = ids(tmp_path / "results/data/scorer_train.csv")
    expected = every_train if train_dialogues is None else every_train[:train_dialogues]
    assert scorer_train == expected
    assert not set(scorer_train) & set(test)
    # the distillation's train split is still the first 3 dialogues
    assert ids(tmp_path / "results/data/train.csv") == every_train[:3]
    # same rows, same columns as the dataset: the scorers read ratings and annotators from it
    dataset = pd.read_csv(dataset_path, dtype=str).set_index("dialog_id")
    written = pd.read_csv(tmp_path / "results/data/scorer_train.csv", dtype=str)
    columns = ["response_human", "rating_human", "annotator_human"]
    assert written[columns].equals(dataset.loc[expected, columns].reset_index(drop=True))


def test_every_scorer_rule_reads_the_scorer_train_split(dataset_path, tmp_path):
    result = run_snakemake(tmp_path, overlay(dataset_path, None), "-n", "-p")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    blocks: dict[str, list[str]] = {}
    for block in output.split("\nrule ")[1:]:
        blocks.setdefault(block.split(":", 1)[0], []).append(block)
    [classifier] = blocks["train_classifier_scorer"]
    [tune_data] = blocks["scorer_train_data"]
    train_responses = [b for b in blocks["score_responses"] if "responses_train" in b]
    assert len(train_responses) == 1  # smollm2_rating; the classifier has no reply to score
    for block in (classifier, tune_data, *train_responses):
        assert "results/data/scorer_train.csv" in block
        assert "results/data/train.csv" not in block
    # the distillation still reads the cut split
    assert all("results/data/train.csv" in b for b in blocks["direct_sets"])


STUDENTS = {"students": {"s": {"model": "m", "template": "t"}}}


@pytest.mark.parametrize("bad", [0, -3, "all", 2.5])
def test_train_dialogues_must_be_a_positive_integer_or_null(bad):
    with pytest.raises(ConfigError, match=r"(?s)1 problem.*\[.scoring.\]\[.train_dialogues.\]"):
        validate_config({**STUDENTS, "scoring": {"train_dialogues": bad}})


def test_default_is_the_whole_train_split():
    config = validate_config(dict(STUDENTS))
    assert config["scoring"]["train_dialogues"] is None
    shipped = (REPO_ROOT / "config.yaml").read_text()
    assert "train_dialogues: null" in shipped
