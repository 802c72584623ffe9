"""The study's fine-tuning protocol (issue 22, item 3): a fine-tuned scorer trained on 80% of the
study's balanced set (4 epochs; OpenAI: lr multiplier 0.5) and tested on the other 20%, its
accuracy a row of the reproduction table beside the classifier cells.

The split against the classifier table's and the study's own script; the OpenAI request the
fake server receives (and nothing created twice on a rerun); the cost projection; a tiny local
run end to end whose table row is checked against the predictions file; the DAG and the config.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.model_selection import train_test_split

from empathy_distill.core import runtime, specs
from empathy_distill.core.config import load_config, validate_config
from empathy_distill.core.errors import ConfigError
from empathy_distill.cost import study_scorers
from empathy_distill.data import scoring_study as study
from empathy_distill.evaluation.records import read_jsonl, write_jsonl
from empathy_distill.evaluation.scoring import (
    finetune_local,
    responses,
    study_finetune_data,
    study_finetune_score,
    study_finetune_table,
    study_protocol,
)
from empathy_distill.evaluation.scoring import specs as scoring_specs
from empathy_distill.evaluation.scoring import study_reproduction as repro
from empathy_distill.evaluation.scoring import study_reproduction_job as repro_job
from empathy_distill.evaluation.scoring.finetune_openai import fine_tune
from empathy_distill.llm.pricing import PriceTable
from tests.servers.openai_server import OpenAIServer

from .conftest import REPO_ROOT
from .workflow_helpers import run_snakemake

PROMPTS = REPO_ROOT / "resources" / "scoring_prompts.json"
PRICES = REPO_ROOT / "resources" / "prices.yaml"
BASE = "gpt-4o-mini-2024-07-18"
FOLDER = "results/scorers/{}/study_balanced"


def shipped() -> dict:
    return yaml.safe_load((REPO_ROOT / "config.yaml").read_text(encoding="utf-8"))


def with_scorer(tmp_path: Path, name: str, entry: dict, **protocol) -> dict:
    """config.yaml with scorer ``name`` on the study's protocol (validated)."""
    config = shipped()
    config["scoring"]["scorers"][name] = entry
    config["scoring"]["prompts"] = str(PROMPTS)
    config["scoring"]["study_protocol"] = {"scorers": [name], **protocol}
    config["llm"]["cache_dir"] = str(tmp_path / "cache")
    config["llm"]["price_table"] = str(PRICES)
    return validate_config(config)


def write_study_data(config: dict, scorer: str, study_dir: Path, work: Path) -> dict[str, Path]:
    """Rule study_scorer_data's command, into ``work``."""
    folder = work / FOLDER.format(scorer)
    out = {
        "train": folder / "train.jsonl",
        "index": folder / "train_index.csv",
        "info": folder / "dataset_info.json",
        "test": folder / "test.csv",
    }
    argv = ["--spec", specs.dumps(scoring_specs.study_scorer_data(config, scorer))]
    argv += ["--balanced", str(study_dir / study.BALANCED), "--out", str(out["train"])]
    argv += ["--index", str(out["index"]), "--dataset-info", str(out["info"])]
    assert study_finetune_data.main([*argv, "--test-out", str(out["test"])]) == 0
    return out


# --- the split ----------------------------------------------------------------------------------
def test_the_20_percent_is_the_classifier_tables_and_the_studys_own(scoring_study_dir, tmp_path):
    balanced = study.load(scoring_study_dir / study.BALANCED)
    features = study.load(scoring_study_dir / study.BALANCED_FEATURES)
    data = repro.load_study(features, balanced, None)
    table_train, table_test = repro.study_split(data.ratings)
    # the study's finetune-gpt-40-mini.py: train_test_split of the DataFrame itself
    theirs_train, theirs_test = train_test_split(
        balanced, test_size=0.2, random_state=42, stratify=balanced["rating"]
    )
    config = with_scorer(
        tmp_path, "smollm2_rating", shipped()["scoring"]["scorers"]["smollm2_rating"]
    )
    out = write_study_data(config, "smollm2_rating", scoring_study_dir, tmp_path)
    test = pd.read_csv(out["test"])
    index = pd.read_csv(out["index"])
    assert list(test["unified_dialog_id"]) == [data.ids[i] for i in table_test]
    assert list(test["unified_dialog_id"]) == list(theirs_test["unified_dialog_id"])
    assert list(index["dialog_id"]) == [data.ids[i] for i in table_train]
    assert list(index["dialog_id"]) == list(theirs_train["unified_dialog_id"])
    assert (len(index), len(test)) == (1536, 384)
    assert not set(index["dialog_id"]) & set(test["unified_dialog_id"])
    assert test["rating"].value_counts().to_dict() == {1: 128, 2: 128, 3: 128}
    # each example: the scorer's prompt of that response, answered by its human rating
    lines = read_jsonl(out["train"])
    first = balanced.set_index("unified_dialog_id").loc[index["dialog_id"][0]]
    assert first["response"] in lines[0]["messages"][1]["content"]
    assert lines[0]["messages"][2] == {"role": "assistant", "content": str(first["rating"])}
    assert list(index["human_rating"]) == [int(m["messages"][2]["content"]) for m in lines]


def test_a_balanced_file_that_is_not_the_pinned_one_is_refused(scoring_study_dir, tmp_path):
    changed = tmp_path / study.BALANCED
    changed.write_bytes((scoring_study_dir / study.BALANCED).read_bytes() + b"\n")
    config = with_scorer(
        tmp_path, "smollm2_rating", shipped()["scoring"]["scorers"]["smollm2_rating"]
    )
    with pytest.raises(study.DatasetError, match=r"sha256 is .* expected 310b08fb"):
        study.read_balanced(
            changed, scoring_specs.study_scorer_data(config, "smollm2_rating")["balanced_sha256"]
        )


# --- OpenAI: what the fake server receives --------------------------------------------------
@pytest.fixture
def server():
    with OpenAIServer(answer_fn=lambda messages: "2") as srv:
        yield srv


def openai_entry(server: OpenAIServer) -> dict:
    return {
        "kind": "rating",
        "backend": "openai",
        "model": "gpt-4o-mini",
        "mode": "realtime",
        "base_url": server.url,
        # the paper-split settings: replaced on the study's protocol (4 epochs, 0.5)
        "finetune": {"base_model": BASE, "epochs": 2, "learning_rate_multiplier": 1.8},
    }


def test_openai_trains_4_epochs_at_half_the_rate_once_and_rates_the_20_percent(
    server, scoring_study_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-study-protocol")
    monkeypatch.chdir(tmp_path)
    config = with_scorer(tmp_path, "api", openai_entry(server), max_train=30, max_test=12)
    config["scoring"]["scorers"]["api"]["poll_interval_s"] = 0.01
    out = write_study_data(config, "api", scoring_study_dir, tmp_path)
    spec = scoring_specs.finetune_study_scorer(config, "api")
    run = runtime.runtime_part(config)
    model_json = tmp_path / FOLDER.format("api") / "model.json"
    model = fine_tune(spec, run, out["train"], model_json, tmp_path / "costs.csv")
    (job,) = server.ft_jobs.values()
    assert job["model"] == BASE
    assert job["hyperparameters"]["n_epochs"] == 4
    assert job["hyperparameters"]["learning_rate_multiplier"] == 0.5
    uploaded = server.files[job["training_file"]]
    assert uploaded == out["train"].read_bytes()  # the 80%'s examples, as written
    assert len(uploaded.splitlines()) == 30
    # a rerun pays nothing again: same model, no second upload or job
    before = (server.counts["POST /v1/files"], server.counts["POST /v1/fine_tuning/jobs"])
    assert fine_tune(spec, run, out["train"], model_json, tmp_path / "costs.csv") == model
    assert (server.counts["POST /v1/files"], server.counts["POST /v1/fine_tuning/jobs"]) == before
    # the tuned model rates the 20%; a rerun is answered by the cache
    monkeypatch.setenv(runtime.RUNTIME_ENV, json.dumps(run))
    argv = ["--spec", specs.dumps(scoring_specs.score_study_test(config, "api"))]
    argv += ["--test", str(out["test"]), "--scorer-model", str(model_json)]
    assert study_finetune_score.main([*argv, "--out", "first.jsonl"]) == 0
    chats = server.counts["POST /v1/chat/completions"]
    assert chats == 12
    assert study_finetune_score.main([*argv, "--out", "second.jsonl"]) == 0
    assert server.counts["POST /v1/chat/completions"] == chats
    first = read_jsonl(tmp_path / "first.jsonl")
    assert first == read_jsonl(tmp_path / "second.jsonl")
    assert {r["model"] for r in first} == {model["model"]}
    test = pd.read_csv(out["test"])
    assert [r["human_rating"] for r in first] == list(test["rating"])


def test_the_cost_projects_the_study_protocols_training_and_scoring(
    server, scoring_study_dir, tmp_path
):
    config = with_scorer(tmp_path, "api", openai_entry(server))
    balanced = study.load(scoring_study_dir / study.BALANCED)
    prices = PriceTable.load(PRICES)
    training, scoring = study_scorers.study_rows(config, prices, balanced)
    # independently: the 80%'s chats, ceil(chars/4) + 3 per message + 3 per example, x 4 epochs
    out = write_study_data(config, "api", scoring_study_dir, tmp_path)
    chats = read_jsonl(out["train"])
    tokens = sum(
        sum(math.ceil(len(m["content"]) / 4) + 3 for m in c["messages"]) + 3 for c in chats
    )
    ft = yaml.safe_load(PRICES.read_text())["fine_tuning"][BASE]
    assert (training.part, training.requests) == ("fine_tuning/study_balanced", 1536)
    assert training.input_tokens == 4 * tokens
    assert training.cost_usd == pytest.approx(4 * tokens * ft["training"] / 1e6)
    assert (scoring.part, scoring.requests, scoring.model) == (
        "responses_study_balanced_test",
        384,
        "gpt-4o-mini",
    )
    assert scoring.cost_usd == pytest.approx(
        (
            scoring.input_tokens * ft["realtime"]["input"]
            + scoring.output_tokens * ft["realtime"]["output"]
        )
        / 1e6
    )
    # a local scorer of the protocol costs nothing
    local = with_scorer(
        tmp_path, "smollm2_rating", shipped()["scoring"]["scorers"]["smollm2_rating"]
    )
    assert study_scorers.study_rows(local, prices, balanced) == []


# --- a tiny local run, end to end ---------------------------------------------------------------
#: As tests/test_scoring_finetune.py's: the tiny student's random lm_head is trained too.
TINY = {
    "base_model": "builtin:tiny",
    "learning_rate": 2.0e-2,
    "batch_size": 8,
    "llamafactory": {"disable_gradient_checkpointing": True, "additional_target": "lm_head"},
}


def independent_accuracy(path: Path) -> tuple[float, int]:
    """From the predictions file's raw replies: a hit is a reply that is exactly the human
    rating's digit (the tiny model is told to answer one digit)."""
    records = read_jsonl(path)
    hits = [r["raw"].strip() == str(r["human_rating"]) for r in records]
    return sum(hits) / len(hits), len(records)


def test_a_tiny_local_run_writes_its_table_row(
    split, scoring_study_dir, paper_dataset_path, tmp_path, monkeypatch
):
    from empathy_distill.training import tiny_model

    monkeypatch.chdir(tmp_path)
    tiny_model.build_tiny_student(split["train"], tmp_path / "results/students/tiny")
    config = shipped()
    config["students"]["tiny"] = {"model": "builtin:tiny", "template": "llama3"}
    entry = {
        "kind": "rating",
        "backend": "transformers",
        "model": "builtin:tiny",
        "max_new_tokens": 4,
        "finetune": TINY,
    }
    config["scoring"]["scorers"]["r"] = entry
    config["scoring"]["prompts"] = str(PROMPTS)
    config["scoring"]["study_protocol"] = {"scorers": ["r"], "max_train": 16, "max_test": 9}
    config["llm"]["cache_dir"] = str(tmp_path / "cache")
    config = validate_config(config)
    out = write_study_data(config, "r", scoring_study_dir, Path("."))
    spec = scoring_specs.finetune_study_scorer(config, "r")
    assert spec["llamafactory"]["num_train_epochs"] == 4.0
    folder = FOLDER.format("r")
    argv = [
        "--spec",
        specs.dumps(spec),
        "--train",
        str(out["train"]),
        "--out",
        f"{folder}/model.json",
    ]
    assert finetune_local.main(argv) == 0
    assert json.loads(Path(f"{folder}/model.json").read_text())["trained_examples"] == 16
    assert Path(f"{folder}/model").is_dir() and not Path("results/scorers/r/model").exists()
    monkeypatch.setenv(runtime.RUNTIME_ENV, json.dumps(runtime.runtime_part(config)))
    argv = ["--spec", specs.dumps(scoring_specs.score_study_test(config, "r"))]
    argv += ["--test", str(out["test"]), "--scorer-model", f"{folder}/model.json"]
    assert study_finetune_score.main([*argv, "--out", f"{folder}/predictions.jsonl"]) == 0
    # the reproduction table's job, narrowed to MITI and the tree (as its own test)
    table_spec = specs.build("scoring_study_reproduction", config)
    assert table_spec["finetuned"] == [
        {
            "scorer": "r",
            "backend": "transformers",
            "base_model": "builtin:tiny",
            "protocols": ["study_balanced"],
            "max_test": 9,
        }
    ]
    table_spec = {**table_spec, "features": ["miti"], "models": ["tree"]}
    table_out = tmp_path / "table.csv"
    argv = ["--spec", specs.dumps(table_spec), "--study-dir", str(scoring_study_dir)]
    argv += ["--dataset", str(paper_dataset_path), "--table-out", str(table_out)]
    argv += ["--by-k-out", str(tmp_path / "by_k.csv"), "--figure-out", str(tmp_path / "f.png")]
    assert repro_job.main(argv) == 0
    table = pd.read_csv(table_out)
    (row,) = table[table["features"] == "finetune:r"].to_dict("records")
    expected, n = independent_accuracy(Path(f"{folder}/predictions.jsonl"))
    assert (row["protocol"], row["model"], row["n_train"], row["n_test"]) == (
        "study_balanced",
        "builtin:tiny",
        16,
        9,
    )
    assert row["accuracy"] == pytest.approx(round(expected, 4)) and n == 9
    assert math.isnan(row["reported"])  # the study fine-tuned no SmolLM2 / tiny model
    # the study's own figure sits beside it, on a row of its own
    (study_row,) = table[table["features"] == "finetune:study"].to_dict("records")
    assert (study_row["reported"], study_row["model"]) == (0.5469, BASE)
    assert "2412.20264" in study_row["reported_source"]
    assert set(table[table["model"] != "builtin:tiny"]["protocol"]) == {"study_balanced"}


def test_predictions_of_another_split_are_refused(scoring_study_dir, tmp_path):
    balanced = study.load(scoring_study_dir / study.BALANCED)
    ids = study_finetune_table.expected_ids(balanced, None)
    path = tmp_path / "p.jsonl"
    write_jsonl(
        path, [{"dialog_id": i, "valid": True, "scores": [1], "human_rating": 1} for i in ids[1:]]
    )
    with pytest.raises(study.DatasetError, match="not the study's 384 test responses"):
        study_finetune_table.read_rated(path, ids)


def test_a_paper_split_row_counts_invalid_replies_as_misses(tmp_path):
    records = [
        {"dialog_id": "a", "valid": True, "scores": [3], "human_rating": 3},
        {"dialog_id": "b", "valid": True, "scores": [2], "human_rating": 3},
        {"dialog_id": "c", "valid": False, "scores": None, "human_rating": 1},
        {"dialog_id": "d", "valid": True, "scores": [1], "human_rating": 1},
    ]
    assert study_finetune_table.accuracy(records) == (0.5, 1)
    assert study_protocol.PAPER_PREDICTIONS.format(scorer="s") == responses.responses_path(
        "s", "test"
    )


# --- config and DAG -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"study_protocol": {"scorers": ["nope"]}}, "'nope' is not defined"),
        ({"study_protocol": {"scorers": ["gpt4o_mini_rating"]}}, "has no finetune block"),
    ],
)
def test_bad_study_protocol_settings_are_refused_naming_the_key(change, named):
    config = shipped()
    config["scoring"].update(copy.deepcopy(change))
    with pytest.raises(ConfigError, match=named):
        validate_config(config)


def test_the_paper_split_specs_do_not_change_with_the_protocol():
    """The study's protocol trains its own model; the paper-split jobs' specs stay as they were."""
    config = load_config(REPO_ROOT / "config.yaml")
    off = copy.deepcopy(config)
    off["scoring"]["study_protocol"]["scorers"] = []
    for rule in ("scorer_train_data", "finetune_scorer", "score_answers"):
        assert specs.build(rule, config, "smollm2_rating") == specs.build(
            rule, off, "smollm2_rating"
        )
    assert "finetuned" not in specs.build("scoring_study_reproduction", off)
    study_spec = specs.build("finetune_study_scorer", config, "smollm2_rating")
    paper_spec = specs.build("finetune_scorer", config, "smollm2_rating")
    assert study_spec["llamafactory"]["output_dir"].endswith("smollm2_rating/study_balanced/lora")
    assert paper_spec["llamafactory"]["num_train_epochs"] == 3.0
    assert study_spec["llamafactory"]["num_train_epochs"] == 4.0


def test_the_dry_run_plans_the_protocol_by_default_and_not_in_the_demo(dataset_path, tmp_path):
    overlay = {"dataset": {"path": str(dataset_path)}}
    result = run_snakemake(tmp_path / "default", overlay, "-n", "-p")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    blocks = {b.split(":", 1)[0]: b for b in output.split("\nrule ")[1:]}
    folder = FOLDER.format("smollm2_rating")
    assert f"--test-out {folder}/test.csv" in blocks["study_scorer_data"]
    assert "resources/scoring_study/unified_balanced_dataset.csv" in blocks["study_scorer_data"]
    tune = blocks["finetune_study_scorer"]
    assert "empathy_distill.evaluation.scoring.finetune_local" in tune
    assert f"--train {folder}/train.jsonl" in tune and f"--out {folder}/model.json" in tune
    assert f"--scorer-model {folder}/model.json" in blocks["score_study_test"]
    assert f"{folder}/predictions.jsonl" in blocks["scoring_study_reproduction"]
    demo = yaml.safe_load(
        (REPO_ROOT / "workflow/profiles/demo/config.demo.yaml").read_text(encoding="utf-8")
    )
    result = run_snakemake(tmp_path / "demo", {**demo, **overlay}, "-n", "--quiet", "rules")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "finetune_study_scorer" not in output and "study_scorer_data" not in output


def test_the_cost_command_reads_the_balanced_set_only_for_an_openai_scorer(server, tmp_path):
    local = load_config(REPO_ROOT / "config.yaml")
    assert study_scorers.paid_scorers(local) == []
    paid = with_scorer(tmp_path, "api", openai_entry(server))
    assert study_scorers.paid_scorers(paid) == ["api"]
    assert np.isclose(study_protocol.STUDY_LR_MULTIPLIER, 0.5) and study_protocol.STUDY_EPOCHS == 4


def test_the_protocol_is_off_with_the_reproduction_table():
    config = shipped()
    config["scoring"]["study_reproduction"] = False
    config = validate_config(config)
    assert study_protocol.scorers(config) == []
    assert study_protocol.settings(config)["scorers"] == ["smollm2_rating"]
    with pytest.raises(ConfigError, match="does not list 'smollm2_rating'"):
        scoring_specs.finetune_study_scorer(config, "smollm2_rating")


def test_the_cost_command_holds_the_study_protocol_to_the_budget(
    server, scoring_study_dir, train, test_split, tmp_path, capsys
):
    """``python -m empathy_distill.cost`` (the cost rule's job) with an OpenAI scorer on the
    study's protocol: its two rows in the table, and a budget below them refused."""
    from empathy_distill import cost
    from empathy_distill.distillation.sets import improve_human_sources

    config = shipped()
    config["scoring"]["scorers"]["api"] = openai_entry(server)
    config["scoring"]["study_protocol"] = {"scorers": ["api"]}
    config["scoring"]["grid"] = []  # the protocol's rows only (the grid's need --scorer-train)
    config["llm"]["cache_dir"] = str(tmp_path / "cache")
    train.head(3).to_csv(tmp_path / "train.csv", index=False)
    test_split.head(2).to_csv(tmp_path / "test.csv", index=False)
    improve_human_sources(train.head(3)).to_csv(tmp_path / "human.csv", index=False)

    def run(budget: float) -> int:
        config["llm"]["budget_usd"] = budget
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        argv = ["--config", str(tmp_path / "config.yaml"), "--train", str(tmp_path / "train.csv")]
        argv += ["--test", str(tmp_path / "test.csv"), "--improve-human-sources"]
        argv += [str(tmp_path / "human.csv"), "--output", str(tmp_path / "projection.csv")]
        argv += ["--study-balanced", str(scoring_study_dir / study.BALANCED)]
        return cost.main(argv)

    assert run(1000.0) == 0
    table = pd.read_csv(tmp_path / "projection.csv")
    mine = table[table["stage"] == "scorer:api"].set_index("part")
    assert mine.loc["fine_tuning/study_balanced", "requests"] == 1536
    assert mine.loc["responses_study_balanced_test", "requests"] == 384
    capsys.readouterr()
    training = float(mine.loc["fine_tuning/study_balanced", "cost_usd"])
    assert run(training / 2) == 1  # the study's fine-tune alone is over it
    assert "exceeds llm.budget_usd" in capsys.readouterr().err
    assert sum(server.counts.values()) == 0  # nothing was asked of the API
