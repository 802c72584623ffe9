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
    assert set(config["students"]) == {"llama31_8b", "mistral_7b", "tiny"}
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
