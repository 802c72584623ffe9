"""The LLaMA-Factory YAML writer, student resolution and the run command's machine adaptation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from empathy_distill.core import students
from empathy_distill.core.config import load_config
from empathy_distill.core.errors import ConfigError, TrainingError
from empathy_distill.core.hardware import cpu_has_native_bf16
from empathy_distill.training import llamafactory_config as lf
from empathy_distill.training import llamafactory_trainer as lft
from empathy_distill.training import run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper_config() -> dict:
    return load_config(REPO / "config.yaml")


def with_training(config: dict, **training: dict) -> dict:
    config = json.loads(json.dumps(config))
    config["training"] |= training
    return config


def test_paper_dpo_yaml_llama(paper_config: dict) -> None:
    args = lf.build_train_args(paper_config, "llama31_8b", "improve_human", "naive_prompt", "dpo")
    written = yaml.safe_load(lf.render_yaml(args))
    assert written == args
    # The paper's hyper-parameters (Xie et al. 2025, section 4) and the llama3 template.
    assert written["finetuning_type"] == "lora"
    assert written["lora_rank"] == 8
    assert math.isclose(written["learning_rate"], 5e-5)
    assert written["num_train_epochs"] == 3.0
    assert written["per_device_train_batch_size"] == 2
    assert written["bf16"] is True
    assert written["pref_beta"] == 0.1
    assert written["pref_loss"] == "sigmoid"
    assert written["template"] == "llama3"
    # LLaMA-Factory defaults the paper did not state, written out.
    assert written["lora_alpha"] == 16
    assert written["lora_dropout"] == 0.0
    assert written["lora_target"] == "all"
    # The job.
    assert written["model_name_or_path"] == "meta-llama/Meta-Llama-3.1-8B"
    # config.yaml pins the commit rule fetch_model downloads; the trainer loads that one.
    assert written["model_revision"] == paper_config["students"]["llama31_8b"]["revision"]
    assert len(written["model_revision"]) == 40
    assert written["stage"] == "dpo"
    assert written["do_train"] is True
    assert written["dataset"] == "improve_human__naive_prompt__dpo"
    assert written["dataset_dir"] == "results/datasets/improve_human/naive_prompt"
    assert written["output_dir"] == "results/models/llama31_8b/improve_human/naive_prompt/dpo"
    assert written["report_to"] == "none"
    assert written["overwrite_output_dir"] is True
    assert written["plot_loss"] is True
    # DPO continues the SFT adapter and its reference is base + SFT adapter = the SFT model.
    sft = "results/models/llama31_8b/improve_human/naive_prompt/sft"
    assert written["adapter_name_or_path"] == sft
    assert written["create_new_adapter"] is False
    assert written["ref_model"] == "meta-llama/Meta-Llama-3.1-8B"
    assert written["ref_model_adapters"] == sft


def test_sft_yaml_has_no_adapter_or_reference(paper_config: dict) -> None:
    args = lf.build_train_args(paper_config, "mistral_7b", "direct", "gemini", "sft")
    assert args["stage"] == "sft"
    assert args["template"] == "mistral"
    assert args["model_name_or_path"] == "mistralai/Mistral-7B-v0.3"
    assert not {"adapter_name_or_path", "ref_model", "ref_model_adapters", "pref_beta"} & set(args)
    assert args["dataset"] == "direct__gemini__sft"


def test_overrides_global_stage_per_student(paper_config: dict) -> None:
    config = with_training(
        paper_config,
        common={**paper_config["training"]["common"], "cutoff_len": 1024, "learning_rate": 1e-4},
        sft={"num_train_epochs": 2.0},
        per_student={
            "mistral_7b": {
                "common": {"learning_rate": 2e-5, "lora_rank": 16},
                "dpo": {"learning_rate": 1e-6, "pref_beta": 0.2},
            }
        },
    )
    llama_sft = lf.build_train_args(config, "llama31_8b", "direct", "all", "sft")
    llama_dpo = lf.build_train_args(config, "llama31_8b", "direct", "all", "dpo")
    mistral_sft = lf.build_train_args(config, "mistral_7b", "direct", "all", "sft")
    mistral_dpo = lf.build_train_args(config, "mistral_7b", "direct", "all", "dpo")
    assert llama_sft["cutoff_len"] == mistral_dpo["cutoff_len"] == 1024  # global
    assert llama_sft["learning_rate"] == 1e-4 and llama_dpo["learning_rate"] == 1e-4
    assert llama_sft["num_train_epochs"] == 2.0  # stage
    assert llama_dpo["num_train_epochs"] == 3.0
    assert "pref_beta" not in llama_sft and llama_dpo["pref_beta"] == 0.1
    assert mistral_sft["learning_rate"] == 2e-5  # per student
    assert mistral_sft["lora_rank"] == 16 and mistral_sft["lora_alpha"] == 32
    assert mistral_dpo["learning_rate"] == 1e-6  # per student and stage
    assert mistral_dpo["pref_beta"] == 0.2
    assert llama_sft["lora_rank"] == 8  # other student untouched


def test_explicit_lora_alpha_is_kept(paper_config: dict) -> None:
    config = with_training(
        paper_config, common={**paper_config["training"]["common"], "lora_alpha": 8}
    )
    assert lf.build_train_args(config, "llama31_8b", "direct", "all", "sft")["lora_alpha"] == 8


@pytest.mark.parametrize("key", ["output_dir", "template", "ref_model", "dataset"])
def test_workflow_keys_cannot_be_overridden(paper_config: dict, key: str) -> None:
    config = with_training(paper_config, dpo={key: "x"})
    with pytest.raises(ConfigError, match=f"training.dpo: {key}"):
        lf.build_train_args(config, "llama31_8b", "direct", "all", "dpo")


def test_revision_and_unknown_student(paper_config: dict) -> None:
    config = json.loads(json.dumps(paper_config))
    config["students"]["llama31_8b"]["revision"] = "0e9e39f249a16976918f6564b8830bc894c89659"
    args = lf.build_train_args(config, "llama31_8b", "direct", "all", "sft")
    assert args["model_revision"] == "0e9e39f249a16976918f6564b8830bc894c89659"
    assert list(args)[:2] == ["model_name_or_path", "model_revision"]
    with pytest.raises(ConfigError, match="no student 'gpt2'"):
        lf.build_train_args(config, "gpt2", "direct", "all", "sft")


def test_job_settings_change_with_any_setting(paper_config: dict) -> None:
    before = lf.job_settings(paper_config, "llama31_8b", "direct", "all", "dpo")
    assert json.loads(before) == lf.build_train_args(
        paper_config, "llama31_8b", "direct", "all", "dpo"
    )
    assert before == lf.job_settings(paper_config, "llama31_8b", "direct", "all", "dpo")
    changed = with_training(paper_config, dpo={"pref_beta": 0.5, "pref_loss": "sigmoid"})
    assert before != lf.job_settings(changed, "llama31_8b", "direct", "all", "dpo")
    assert lf.job_settings(changed, "llama31_8b", "direct", "all", "sft") == lf.job_settings(
        paper_config, "llama31_8b", "direct", "all", "sft"
    )


def test_resolve_model() -> None:
    assert students.resolve_model({"model": "builtin:tiny", "template": "llama3"}) == (
        "results/students/tiny"
    )
    assert (
        students.resolve_model({"model": "builtin:tiny"}, root="/w") == "/w/results/students/tiny"
    )
    assert students.resolve_model({"model": "org/name", "template": "x"}) == "org/name"
    assert students.resolve_model({"model": "/models/my-llama"}) == "/models/my-llama"
    assert students.model_files({"model": "builtin:tiny"}) == [
        f"results/students/tiny/{f}" for f in students.BUILTIN_FILES
    ]
    assert students.model_files({"model": "org/name"}) == []
    with pytest.raises(ConfigError, match="builtin:huge"):
        students.resolve_model({"model": "builtin:huge"})
    with pytest.raises(ConfigError, match="no revision to pin"):
        students.resolve_revision({"model": "builtin:tiny", "revision": "abc"})


def test_cpu_turns_half_precision_off() -> None:
    args = {"bf16": True, "fp16": False, "learning_rate": 5e-5}
    adapted, nproc, notes = lft.adapt_to_machine(args, 4, cuda_available=False)
    assert adapted == {"bf16": False, "fp16": False, "learning_rate": 5e-5}
    assert nproc == 1
    assert any("bf16 turned off" in n for n in notes)
    assert args["bf16"] is True  # input untouched
    same, nproc, notes = lft.adapt_to_machine(args, 4, cuda_available=True)
    assert same == args and nproc == 4 and notes == []
    with pytest.raises(TrainingError, match="fp16: true"):
        lft.adapt_to_machine(args, 1, cuda_available=True, bf16_supported=False)


def test_cpu_keeps_bf16_only_with_use_cpu_on_a_native_bf16_cpu() -> None:
    args = {"bf16": True, "fp16": True, "use_cpu": True}
    kept, _, notes = lft.adapt_to_machine(args, 1, cuda_available=False, cpu_bf16=True)
    assert kept == {"bf16": True, "fp16": False, "use_cpu": True}
    assert any("in bf16" in n for n in notes)
    off, _, notes = lft.adapt_to_machine(args, 1, cuda_available=False, cpu_bf16=False)
    assert off["bf16"] is False and any("no native bf16" in n for n in notes)
    no_flag, _, _ = lft.adapt_to_machine({"bf16": True}, 1, cuda_available=False, cpu_bf16=True)
    assert no_flag["bf16"] is False  # without use_cpu transformers refuses bf16 on a CPU


def test_cpu_bf16_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n")
    assert cpu_has_native_bf16(info) is True
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert cpu_has_native_bf16(info) is False
    assert cpu_has_native_bf16(tmp_path / "missing") is False


def test_launch_env_uses_torchrun_switch() -> None:
    assert "FORCE_TORCHRUN" not in lft.launch_env(1) or lft.launch_env(1)["FORCE_TORCHRUN"] != "1"
    env = lft.launch_env(4)
    assert env["FORCE_TORCHRUN"] == "1" and env["NPROC_PER_NODE"] == "4"


def test_check_inputs_names_what_is_missing(tmp_path: Path) -> None:
    info = tmp_path / "dataset_info.json"
    args = {"dataset_dir": str(tmp_path), "dataset": "direct__all__sft"}
    with pytest.raises(TrainingError, match=r"dataset_info\.json not found"):
        lft.check_inputs(args)
    info.write_text(json.dumps({"direct__all__dpo": {"file_name": "dpo.json"}}))
    with pytest.raises(TrainingError, match="no dataset 'direct__all__sft'"):
        lft.check_inputs(args)
    info.write_text(json.dumps({"direct__all__sft": {"file_name": "sft.json"}}))
    with pytest.raises(TrainingError, match=r"sft\.json, which does not exist"):
        lft.check_inputs(args)
    (tmp_path / "sft.json").write_text("[]")
    lft.check_inputs(args)
    with pytest.raises(TrainingError, match="SFT not trained"):
        lft.check_inputs(args | {"adapter_name_or_path": str(tmp_path / "sft")})


def test_prepare_output_dir_clears_only_its_own(tmp_path: Path) -> None:
    out = tmp_path / "dpo"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(TrainingError, match="refusing to clear"):
        lft.prepare_output_dir(out)
    (out / lft.TRAIN_YAML).write_text("stage: dpo\n")
    (out / "checkpoint-3").mkdir()
    lft.prepare_output_dir(out)
    assert out.is_dir() and not any(out.iterdir())


def test_broken_torchaudio_is_explained() -> None:
    tail = ["OSError: Could not load this library: .../torchaudio/lib/_torchaudio.abi3.so\n"]
    assert "pip uninstall -y torchvision" in lft.diagnose(tail)
    missing = ["ModuleNotFoundError: No module named 'torchaudio'\n"]
    assert "must stay installed" in lft.diagnose(missing)
    assert lft.diagnose(["ValueError: something else\n"]) == ""


def test_main_reports_config_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "students": {"tiny": {"model": "builtin:tiny", "template": "llama3"}},
                "grid": {"students": ["tiny"], "judges": []},
                "training": {"sft": {"output_dir": "elsewhere"}},
            }
        )
    )
    code = run.main(
        [
            "--config",
            str(config),
            "--student",
            "tiny",
            "--method",
            "direct",
            "--strategy",
            "all",
            "--stage",
            "sft",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 1
    assert capsys.readouterr().err.startswith("error: config training.sft: output_dir")


def test_loss_plot_exists_even_without_logged_loss(tmp_path: Path) -> None:
    """LLaMA-Factory skips its plot when fewer steps than logging_steps ran; the rule needs one."""
    history = {"log_history": [{"step": 3, "train_loss": 1.0}]}
    (tmp_path / "trainer_state.json").write_text(json.dumps(history))
    lft.ensure_loss_plot(tmp_path)
    assert (tmp_path / lft.LOSS_PLOT).stat().st_size > 0


def test_committed_argument_table_matches_installed_llamafactory() -> None:
    """workflow/schemas/llamafactory_args.json is what the installed packages generate."""
    from empathy_distill.training import lf_args_table

    generated = lf_args_table.generate()
    assert lf_args_table.render(generated) == lf_args_table.TABLE_PATH.read_text(encoding="utf-8")
    # spot checks against LLaMA-Factory's documented arguments
    arguments = generated["arguments"]
    assert arguments["learning_rate"]["kinds"] == ["float", "int"]
    assert arguments["per_device_train_batch_size"]["kinds"] == ["int"]
    assert "sigmoid" in arguments["pref_loss"]["choices"]


@pytest.mark.parametrize(
    ("layer", "key", "value", "expected"),
    [
        ("common", "num_train_epochs", "three", "'three' is text; expected a number"),
        ("common", "learning_rate", 0, "0 is out of range; expected > 0"),
        ("dpo", "learning_rate", -1.0e-5, "-1e-05 is out of range; expected > 0"),
        ("common", "per_device_train_batch_size", 0, "0 is out of range; expected >= 1"),
        ("sft", "learnin_rate", 1.0e-4, "not a LLaMA-Factory training argument (did you mean"),
        ("common", "learning_rate", "5e-5", "write it with a decimal point"),
        ("dpo", "pref_loss", "sigmod", "'sigmod' is not one of sigmoid"),
        ("common", "bf16", "yes", "'yes' is text; expected true/false"),
    ],
)
def test_bad_training_values_are_named(paper_config, layer, key, value, expected) -> None:
    config = json.loads(json.dumps(paper_config))
    config["training"][layer] = {**config["training"][layer], key: value}
    with pytest.raises(ConfigError) as info:
        lf.validate_training(config)
    assert f"training.{layer}.{key}: " in str(info.value) and expected in str(info.value)


def test_paper_config_training_keys_are_valid(paper_config) -> None:
    assert lf.training_problems(paper_config) == []


def test_per_student_keys_are_checked(paper_config) -> None:
    config = json.loads(json.dumps(paper_config))
    config["training"]["per_student"]["tiny"]["common"]["per_device_train_batch_size"] = 2.5
    assert lf.training_problems(config) == [
        "training.per_student.tiny.common.per_device_train_batch_size: 2.5 is a number;"
        " expected an integer"
    ]
