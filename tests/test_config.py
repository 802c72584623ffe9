from __future__ import annotations

import pytest
import yaml

from empathy_distill.config import load_config, validate_config
from empathy_distill.errors import ConfigError

from .conftest import REPO_ROOT

CONFIG = REPO_ROOT / "config.yaml"


def test_default_config_is_valid_and_complete():
    config = load_config(CONFIG)
    assert config["dataset"]["path"] == "resources/dataset.csv"
    assert config["distillation"]["direct_dpo_filter"] == "intended"
    assert config["grid"] == {
        "students": ["llama31_8b", "mistral_7b"],
        "judges": ["gpt4o", "gemini"],
    }
    assert set(config["students"]) == {"llama31_8b", "mistral_7b", "tiny", "smollm2_135m"}
    assert set(config["judges"]) == {"gpt4o", "gemini", "offline"}
    assert config["training"]["common"]["lora_rank"] == 8


def test_defaults_are_filled_from_schema():
    config = validate_config(
        {
            "students": {"s": {"model": "m", "template": "llama3"}},
            "grid": {"students": ["s"], "judges": []},
        }
    )
    assert config["dataset"]["sha256"].startswith("d43fe180")
    assert config["distillation"]["improve_llm_sft_sample"] == {"n": 950, "seed": 42}
    assert config["generation"]["max_new_tokens"] == 160
    assert config["students"]["s"]["revision"] is None
    assert config["evaluation"]["paper_faithful"] is False


def test_unknown_key_is_named(tmp_path):
    raw = yaml.safe_load(CONFIG.read_text())
    raw["teacher"]["modle"] = "gpt-4o"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"config\['teacher'\].*'modle' was unexpected"):
        load_config(path)


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"config\['training'\]\['resources'\]\['gpu'\].*integer"):
        load_config(CONFIG, {"training": {"resources": {"gpu": "one"}}})


def test_unknown_strategy_is_rejected():
    with pytest.raises(ConfigError, match=r"improve_human"):
        load_config(CONFIG, {"distillation": {"methods": {"improve_human": ["be_nicer"]}}})


def test_grid_selection_defaults_to_every_defined_entry():
    config = validate_config(
        {
            "students": {"a": {"model": "m", "template": "t"}},
            "judges": {"j": {"backend": "offline", "model": "x"}},
        }
    )
    assert config["grid"] == {"students": ["a"], "judges": ["j"]}


def test_grid_selection_must_name_defined_entries():
    with pytest.raises(ConfigError, match=r"config\['grid'\]\['judges'\]: 'gpt5' is not defined"):
        load_config(CONFIG, {"grid": {"judges": ["gpt4o", "gpt5"]}})


def test_without_operational_keeps_what_shapes_outputs_only():
    from empathy_distill.operational import without_operational

    config = load_config(CONFIG)
    reduced = without_operational(config)
    assert reduced["teacher"] == {
        key: config["teacher"][key]
        for key in ("backend", "model", "mode", "base_url", "sampling", "max_new_tokens")
    }
    assert set(reduced["judges"]["gpt4o"]) == {
        "backend",
        "model",
        "mode",
        "base_url",
        "sampling",
        "max_new_tokens",
        "margin",
    }
    assert "budget_usd" not in reduced["llm"] and "cache_dir" in reduced["llm"]
    assert "resources" not in reduced["training"] and "resources" not in reduced["generation"]
    assert "per_student" not in reduced["generation"]
    assert "resources" not in reduced["training"]["per_student"]["tiny"]
    assert reduced["training"]["per_student"]["tiny"]["common"]["bf16"] is False
    assert reduced["generation"]["max_new_tokens"] == config["generation"]["max_new_tokens"]
    assert config["teacher"]["concurrency"] == 32  # the input is not modified
    tuned = load_config(
        CONFIG,
        {
            "teacher": {"concurrency": 2},
            "llm": {"budget_usd": 5.0},
            "judges": {"gpt4o": {"requests_per_minute": 60}},
            "training": {"resources": {"gpu": 4}},
        },
    )
    assert without_operational(tuned) == reduced
    retuned = load_config(CONFIG, {"judges": {"gpt4o": {"model": "gpt-4o-mini"}}})
    assert without_operational(retuned) != reduced
