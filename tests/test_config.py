from __future__ import annotations

import pytest
import yaml

from empathy_distill.core.config import load_config, validate_config
from empathy_distill.core.errors import ConfigError
from empathy_distill.distillation import specs as distillation_specs
from empathy_distill.evaluation import specs as evaluation_specs
from empathy_distill.training import specs as training_specs

from .conftest import REPO_ROOT

CONFIG = REPO_ROOT / "config.yaml"


def test_default_config_is_valid_and_complete():
    config = load_config(CONFIG)
    assert config["dataset"]["path"] == "resources/dataset.csv"
    assert config["distillation"]["direct_dpo_filter"] == "intended"
    assert config["grid"] == {
        "students": ["llama31_8b", "mistral_7b"],
        "judges": ["gpt4o", "gemini"],
        "methods": ["sft", "dpo", "pride"],  # the paper's SFT then DPO, and PRIDE
    }
    # llama31_70b_instruct: PRIDE's teacher of llama31_8b, not a student of the grid
    assert set(config["students"]) == {
        "llama31_8b",
        "llama31_70b_instruct",
        "mistral_7b",
        "tiny",
        "smollm2_135m",
    }
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
    assert config["grid"] == {"students": ["a"], "judges": ["j"], "methods": ["sft", "dpo"]}


def test_grid_methods_must_be_registered_and_complete():
    with pytest.raises(ConfigError, match=r"'kto' is not a registered training method"):
        load_config(CONFIG, {"grid": {"methods": ["sft", "kto"]}})
    with pytest.raises(ConfigError, match=r"'dpo' continues 'sft', which is not selected"):
        load_config(CONFIG, {"grid": {"methods": ["dpo"]}})


def test_grid_selection_must_name_defined_entries():
    with pytest.raises(ConfigError, match=r"config\['grid'\]\['judges'\]: 'gpt5' is not defined"):
        load_config(CONFIG, {"grid": {"judges": ["gpt4o", "gpt5"]}})


def test_runtime_part_holds_the_operational_keys_and_merges_back():
    from empathy_distill.core import runtime

    config = load_config(CONFIG)
    identity, run = runtime.split(config)
    assert identity["teacher"] == {
        key: config["teacher"][key]
        for key in (
            "backend",
            "model",
            "mode",
            "base_url",
            "sampling",
            "max_new_tokens",
            "thinking_budget",
            "reasoning_effort",
            "margin",
        )
    }
    assert set(run["teacher"]) == set(runtime.OPERATIONAL_ENDPOINT_KEYS)
    assert run["judges"]["gpt4o"]["concurrency"] == 32
    assert "budget_usd" not in identity["llm"] and "cache_dir" in identity["llm"]
    assert run["llm"] == {
        "budget_usd": None,
        "expected_run_days": 7,
        "retry": {"max_wait_s": 900},
        "openai": {"max_enqueued_tokens": {}},
        "cache_only": False,
    }
    assert not {"retry", "openai"} & set(identity["llm"])  # no rerun trigger
    assert "placement" not in identity  # which GPUs a job uses never reruns it
    assert run["placement"] == {"gpus": None, "slots_dir": ".snakemake/gpu-slots"}
    assert "resources" not in identity["training"] and "resources" not in identity["generation"]
    assert "per_student" not in identity["generation"]
    assert "resources" not in identity["training"]["per_student"]["tiny"]
    assert run["training"]["per_student"]["tiny"]["resources"]["gpu"] == 0
    assert identity["training"]["per_student"]["tiny"]["common"]["bf16"] is False
    assert config["teacher"]["concurrency"] == 32  # the input is not modified
    # the two parts give the whole config back (what the report's nested run is given)
    assert runtime.merge(identity, run) == config
    tuned = load_config(
        CONFIG,
        {
            "teacher": {"concurrency": 2},
            "llm": {"budget_usd": 5.0},
            "judges": {"gpt4o": {"requests_per_minute": 60}},
            "training": {"resources": {"gpu": 4}},
            "generation": {"per_student": {"tiny": {"resources": {"mem_mb": 10}}}},
            "placement": {"gpus": 8},
        },
    )
    assert runtime.identity(tuned) == identity
    assert runtime.runtime_part(tuned) != run
    retuned = load_config(CONFIG, {"judges": {"gpt4o": {"model": "gpt-4o-mini"}}})
    assert runtime.identity(retuned) != identity


def test_every_spec_ignores_operational_keys_and_follows_what_shapes_outputs():
    """A job's spec is its only param: tuning a runtime setting changes no spec (nothing
    reruns), a setting that shapes the output changes exactly the specs of its jobs."""
    from empathy_distill.core import grid, specs

    def all_specs(config):
        out = {
            "teacher": distillation_specs.teacher(config),
            "llm_sources": distillation_specs.llm_sources(config),
            "cost": specs.build("cost", config),
            "report": evaluation_specs.report(config),
            "offline_judge": evaluation_specs.offline_judge(config),
            "win_rates": evaluation_specs.win_rates(config),
            "judge_agreement": evaluation_specs.judge_agreement(config),
        }
        out.update({f"judge:{j}": evaluation_specs.judge(config, j) for j in config["judges"]})
        out.update({f"answer:{s}": evaluation_specs.answer(config, s) for s in config["students"]})
        out.update(
            {
                f"train:{m.tag}": training_specs.train(
                    config, m.student, m.method, m.strategy, m.stage
                )
                for m in grid.models(config)[:4]
            }
        )
        return out

    base = all_specs(load_config(CONFIG))
    tuned = load_config(
        CONFIG,
        {
            "teacher": {"concurrency": 2, "max_retries": 1, "poll_interval_s": 5},
            "llm": {"budget_usd": 5.0},
            "judges": {"gpt4o": {"requests_per_minute": 60, "timeout_s": 9, "batch_size": 2}},
            "training": {"resources": {"gpu": 4, "mem_mb": 1000}},
            "generation": {"resources": {"runtime": 5}},
        },
    )
    assert all_specs(tuned) == base
    margin = all_specs(load_config(CONFIG, {"judges": {"offline": {"margin": 0.2}}}))
    changed = {name for name in base if margin[name] != base[name]}
    # the offline judge (not in the paper grid's judges) is part of the cost and report specs
    assert changed == {"judge:offline", "offline_judge", "cost", "report"}
    seed = all_specs(load_config(CONFIG, {"generation": {"seed": 1}}))
    changed = {name for name in base if seed[name] != base[name]}
    assert changed == {*(n for n in base if n.startswith("answer:")), "cost", "report"}
