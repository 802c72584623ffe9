"""PRIDE on the paper grid: on by default (config.yaml; the paper-only flag: tests/
test_workflow_data.py), the GPU defaults (teachers, resources), the start-up checks of
training.pride and the planning of its jobs.

Expected counts are derived here from the paper grid's shape (21 data configurations, 2 GPU
students), not read from the code under test.
"""

from __future__ import annotations

import pytest

from empathy_distill.core import grid
from empathy_distill.core.config import load_config
from empathy_distill.core.errors import ConfigError
from empathy_distill.evaluation import specs as evaluation_specs
from empathy_distill.training.pride import config as pride_config

from .conftest import REPO_ROOT
from .workflow_helpers import run_snakemake

CONFIGS = 21  # 5 direct + 8 improve_human + 8 improve_llm
GPU_STUDENTS = ("llama31_8b", "mistral_7b")


def _paper_config(**grid: object) -> dict:
    return load_config(REPO_ROOT / "config.yaml", {"grid": grid} if grid else None)


def _blocks(output: str, rule: str) -> list[str]:
    return [b for b in output.split("\nrule ") if b.startswith(f"{rule}:")]


def _resources(block: str) -> dict[str, str]:
    line = block.split("resources:", 1)[1].splitlines()[0]
    return dict(item.strip().split("=", 1) for item in line.split(","))


def test_the_default_plans_pride_for_both_gpu_students_and_keeps_sft_dpo(dataset_path, tmp_path):
    result = run_snakemake(tmp_path, {"dataset": {"path": str(dataset_path)}}, "-n")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    pride = _blocks(output, "train_pride")
    assert len(pride) == CONFIGS * len(GPU_STUDENTS)
    by_student: dict[str, list[dict]] = {s: [] for s in GPU_STUDENTS}
    for block in pride:
        wildcards = block.split("wildcards:", 1)[1].splitlines()[0]
        assert "stage=pride" in wildcards
        student = wildcards.split("student=", 1)[1].split(",")[0]
        method, strategy = (
            wildcards.split(f"{k}=", 1)[1].split(",")[0] for k in ("method", "strategy")
        )
        by_student[student].append(_resources(block))
        inputs = block.split("input:", 1)[1].splitlines()[0]
        assert "/sft.json" in inputs
        # precomputed teacher outputs (the default): training reads them, loads no teacher
        manifest = f"results/pride/teacher_outputs/{student}/{method}/{strategy}/manifest.json"
        assert manifest in inputs, wildcards
        assert "/sft/adapter_model" not in inputs and "Llama-3.1-70B" not in inputs
    # one teacher-outputs job per PRIDE job, with the teacher's resources
    outputs = _blocks(output, "pride_teacher_outputs")
    assert len(outputs) == len(pride)
    teacher_gpus: dict[str, set[str]] = {s: set() for s in GPU_STUDENTS}
    for block in outputs:
        wildcards = block.split("wildcards:", 1)[1].splitlines()[0]
        student = wildcards.split("student=", 1)[1].split(",")[0]
        teacher_gpus[student].add(_resources(block)["gpu"])
        inputs = block.split("input:", 1)[1].splitlines()[0]
        assert "/sft.json" in inputs and "results/data/train.csv" in inputs
        # mistral_7b is taught by its configuration's SFT model, so its teacher waits for that
        # adapter; llama31_8b's teacher is the 70B model, which needs no SFT adapter
        assert ("/sft/adapter_model" in inputs) == (student == "mistral_7b"), wildcards
    # llama31_8b: the 70B teacher over 4 GPUs (and its own reasoning, one job), its training on
    # the student's one GPU; mistral_7b: its SFT model on one
    assert teacher_gpus == {"llama31_8b": {"4"}, "mistral_7b": {"1"}}
    assert len(_blocks(output, "pride_reasoning")) == 1
    assert _resources(_blocks(output, "pride_reasoning")[0])["gpu"] == "4"
    assert {r["gpu"] for r in by_student["llama31_8b"]} == {"1"}
    assert {r["gpu"] for r in by_student["mistral_7b"]} == {"1"}
    assert all(len(v) == CONFIGS for v in by_student.values())
    # the paper's jobs are the paper's: 42 SFT + 42 DPO, one GPU each, in the train rule
    train = _blocks(output, "train")
    assert len(train) == 2 * CONFIGS * len(GPU_STUDENTS)
    assert all(_resources(b)["gpu"] == "1" for b in train)
    assert not any("stage=pride" in b for b in train)
    # every trained model answers: 2 base + 21 x 2 x 3 trained
    assert len(_blocks(output, "answer")) == 2 + CONFIGS * len(GPU_STUDENTS) * 3


def test_gpu_defaults_name_same_family_teachers_without_downloading(monkeypatch) -> None:
    import huggingface_hub

    def refuse(*_args, **_kwargs):
        raise AssertionError("planning downloaded a tokenizer file")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    config = _paper_config()
    assert config["grid"]["methods"] == ["sft", "dpo", "pride"]
    pride_config.validate(config)
    llama = pride_config.build_settings(config, "llama31_8b", "direct", "chatgpt")
    assert llama["teacher"] == "llama31_70b_instruct"
    assert llama["teacher_model"] == "meta-llama/Llama-3.1-70B-Instruct"
    assert llama["teacher_template"] == llama["template"] == "llama3"
    assert llama["teacher_device_map"] == "auto"
    assert llama["teacher_mode"] == "model" and llama["teacher_adapter"] is None
    assert llama["reasoning"]["file"] == "results/pride/reasoning/llama31_70b_instruct.jsonl"
    mistral = pride_config.build_settings(config, "mistral_7b", "direct", "chatgpt")
    assert mistral["teacher"] == "mistral_7b"
    assert mistral["teacher_model"] == mistral["model_name_or_path"] == "mistralai/Mistral-7B-v0.3"
    assert mistral["teacher_device_map"] is None
    # no PRIDE default distils toward an un-tuned base: mistral's teacher is its SFT model
    assert mistral["teacher_mode"] == "sft"
    assert mistral["teacher_adapter"] == "results/models/mistral_7b/direct/chatgpt/sft"
    assert "reasoning" not in mistral  # a base model's SFT adapter cannot write an analysis
    # the 70B teacher's 4 GPUs go to its jobs (pride_teacher_outputs, pride_reasoning); the
    # PRIDE training job reads its outputs on the student's GPU
    assert pride_config.teacher_resources(config, "llama31_8b") == {
        "gpu": 4,
        "mem_mb": 128000,
        "runtime": 240,
        "threads": 16,
        "nproc_per_node": 1,
    }
    assert pride_config.train_resources(config, "llama31_8b") == config["training"]["resources"]
    assert pride_config.train_resources(config, "mistral_7b") == config["training"]["resources"]
    assert pride_config.teacher_resources(config, "mistral_7b") == config["training"]["resources"]
    # the online ablation loads the teacher in training: the job asks for the teacher's
    config["training"]["pride"]["teacher_outputs"] = "online"
    assert pride_config.train_resources(config, "llama31_8b")["gpu"] == 4


def test_resources_layer_in_order() -> None:
    config = {
        "training": {
            "resources": {"gpu": 1, "mem_mb": 10, "runtime": 5, "threads": 2},
            "pride": {"resources": {"gpu": 2, "mem_mb": 20}},
            "per_student": {
                "s": {"resources": {"mem_mb": 30}, "pride": {"resources": {"runtime": 7}}}
            },
        }
    }
    got = pride_config.train_resources(config, "s")
    assert got == {"gpu": 2, "mem_mb": 30, "runtime": 7, "threads": 2}
    config["training"]["pride"]["teacher_resources"] = {"gpu": 3, "threads": 9}
    config["training"]["per_student"]["s"]["pride"]["teacher_resources"] = {"runtime": 11}
    assert pride_config.train_resources(config, "s") == got  # training: no teacher layer
    assert pride_config.teacher_resources(config, "s") == {
        "gpu": 3,
        "mem_mb": 30,
        "runtime": 11,
        "threads": 9,
    }
    assert pride_config.train_resources(config, "other") == {
        "gpu": 2,
        "mem_mb": 20,
        "runtime": 5,
        "threads": 2,
    }


@pytest.mark.parametrize(
    ("student", "teacher", "message"),
    [
        ("tiny", "smollm2_135m", r"builtin:tiny and builtin:smollm2_135m have different"),
        ("llama31_8b", "mistral_7b", r"chat templates 'llama3' and 'mistral' differ"),
    ],
)
def test_a_teacher_of_another_family_is_refused_at_planning(student, teacher, message) -> None:
    config = _paper_config(students=[student])
    config["training"]["per_student"].setdefault(student, {})["pride"] = {"teacher": teacher}
    with pytest.raises(ConfigError, match=rf"training\.pride\.teacher \(student {student}\).*"):
        pride_config.validate(config)
    with pytest.raises(ConfigError, match=message):
        pride_config.validate(config)


# --- comparisons ----------------------------------------------------------------------------


def _kinds(config: dict) -> dict[str, int]:
    counts: dict[str, int] = {}
    for pair in grid.comparisons(config):
        counts[pair.kind] = counts.get(pair.kind, 0) + 1
    return counts


def test_pride_models_meet_dpo_and_the_teacher_and_the_papers_pairs_stay() -> None:
    students, targeted = len(GPU_STUDENTS), 7 * 2  # 7 targeted strategies x 2 improve methods
    paper = _kinds(_paper_config(methods=["sft", "dpo"]))
    assert paper == {
        "vs_base": CONFIGS * students * 2,
        "vs_naive": targeted * students * 2,
        "dpo_vs_sft": CONFIGS * students,
        "vs_teacher": CONFIGS * students + students,  # DPO models + base students
    }
    assert sum(paper.values()) == 226
    with_pride = _kinds(_paper_config())  # the default
    assert with_pride == {
        "vs_base": CONFIGS * students * 3,
        "vs_naive": targeted * students * 3,
        "dpo_vs_sft": CONFIGS * students,
        "vs_teacher": CONFIGS * students * 2 + students,  # DPO and PRIDE models + base
        "pride_vs_dpo": CONFIGS * students,
    }
    assert sum(with_pride.values()) == 380
    pairs = grid.comparisons(_paper_config())
    for pair in pairs:  # the readers' inverse agrees with the grid
        assert grid.comparison_kind(pair.model, pair.opponent) == pair.kind
    pride_vs_dpo = [p for p in pairs if p.kind == "pride_vs_dpo"]
    assert pride_vs_dpo[0].model.endswith("--pride")
    assert pride_vs_dpo[0].opponent == pride_vs_dpo[0].model.replace("--pride", "--dpo")
    # without DPO in the grid there is nothing to set PRIDE against
    assert "pride_vs_dpo" not in _kinds(_paper_config(methods=["sft", "pride"]))


def test_tables_figures_and_examples_show_pride_rows_without_special_cases(tmp_path) -> None:
    from empathy_distill.core.config import validate_config
    from empathy_distill.core.prompts import Prompts
    from empathy_distill.evaluation import examples, figures, tables
    from empathy_distill.evaluation.judge import PairItem, judge_with_llm
    from empathy_distill.evaluation.records import read_answers, write_jsonl

    from .servers.judge_rules import prefer_longer
    from .test_eval_judge import rule_ask

    n = 12
    config = validate_config(
        {
            "students": {"tiny": {"model": "builtin:tiny", "template": "default"}},
            "distillation": {"methods": {"direct": ["chatgpt"]}},
            "teacher": {"backend": "openai_compatible", "model": "t"},
            "judges": {"local": {"backend": "openai_compatible", "model": "j"}},
            "grid": {"students": ["tiny"], "judges": ["local"], "methods": ["sft", "dpo", "pride"]},
            "evaluation": {"bootstrap_samples": 200},
        }
    )
    for k, tag in enumerate(grid.answer_tags(config)):
        rows = [
            {"dialog_id": f"d{i}", "prompt": "p", "answer": "word " * (3 + (i * k) % 7)}
            for i in range(n)
        ]
        rows = [r | {"generation": {}, "seed": 0} for r in rows]
        write_jsonl(tmp_path / grid.answer_path(tag), rows)
    files = []
    for pair in grid.comparisons(config):
        mine = read_answers(tmp_path / grid.answer_path(pair.model))
        theirs = read_answers(tmp_path / grid.answer_path(pair.opponent))
        items = [PairItem(d, "s", "u", mine[d], theirs[d]) for d in mine]
        path = tmp_path / grid.judgment_path("local", pair.model, pair.opponent)
        write_jsonl(path, judge_with_llm(items, rule_ask(prefer_longer), Prompts(), "j", "local"))
        files.append(path)
    table = tables.win_rate_table(evaluation_specs.win_rates(config), tmp_path)
    pride = table[table["stage"] == "pride"]
    # 1 student x 1 data configuration: vs base, vs the DPO model, vs the teacher
    assert sorted(pride["comparison"]) == ["pride_vs_dpo", "vs_base", "vs_teacher"]
    assert (pride["n"] == n).all()
    row = pride[pride["comparison"] == "pride_vs_dpo"].iloc[0]
    assert row["opponent"] == "tiny--direct--chatgpt--dpo"
    kinds = {examples.read_judged(f).kind for f in files if "--pride__vs__" in f.name}
    assert kinds == {"pride_vs_dpo", "vs_base", "vs_teacher"}
    for kind, draw in (("heatmap", figures.heatmap), ("sft_vs_dpo", figures.sft_vs_dpo)):
        draw(table, "local", tmp_path / f"{kind}.png")
        assert (tmp_path / f"{kind}.png").stat().st_size > 0


# --- start-up checks ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pride", "message"),
    [
        ({"anneal_fraction": 2}, "training.pride (student llama31_8b).anneal_fraction: expected"),
        ({"weight": {"ce": 1}}, "training.pride: unknown PRIDE key(s) weight"),
        ({"weights": {"kl": 1}}, "training.pride (student llama31_8b).weights: unknown term(s) kl"),
        ({"teacher": "gpt5"}, "training.pride.teacher: 'gpt5' is not defined under students"),
        ({"resources": {"gpu": "two"}}, "training.pride.resources.gpu: expected an integer >= 0"),
        ({"teacher_device_map": "balanced"}, ".teacher_device_map: expected null or 'auto'"),
        (
            {"reasoning": {"batch_size": 0}},
            # llama31_8b's own layer turns reasoning on (true), so mistral_7b's is the bad one
            "training.pride (student mistral_7b).reasoning.batch_size: expected an integer >= 1",
        ),
    ],
    ids=[
        "range",
        "unknown-key",
        "unknown-term",
        "no-teacher",
        "resource",
        "device-map",
        "reasoning",
    ],
)
def test_bad_pride_keys_stop_the_dry_run_before_any_job(dataset_path, tmp_path, pride, message):
    """Checked when the Snakefile loads, even with PRIDE not in grid.methods (the paper-only
    grid)."""
    overlay = {
        "dataset": {"path": str(dataset_path)},
        "grid": {"methods": ["sft", "dpo"]},
        "training": {"pride": pride},
    }
    result = run_snakemake(tmp_path, overlay, "-n")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in output, output[-2000:]
    assert not (tmp_path / "results").exists()


def test_validate_config_names_the_bad_pride_key(tmp_path) -> None:
    from .test_cli import cli

    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("training:\n  per_student:\n    mistral_7b:\n      pride: {lora_rank: 0}\n")
    result = cli("validate-config", "--configfile", REPO_ROOT / "config.yaml", overlay)
    assert result.returncode == 1
    assert "training.pride (student mistral_7b).lora_rank: expected an integer >= 1" in (
        result.stderr
    )


def test_a_pride_job_waits_for_a_built_in_teacher(dataset_path, tmp_path) -> None:
    """A hub-id SmolLM2 student taught by the built-in SmolLM2 (the same tokenizer): the job
    that runs the teacher (pride_teacher_outputs) needs the teacher's built files, so the build
    job is planned before it; train_pride reads its outputs and never the teacher."""
    overlay = {
        "dataset": {"path": str(dataset_path)},
        "students": {
            "smollm2_hub": {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "template": "smollm2"}
        },
        "distillation": {
            "methods": {"direct": ["chatgpt"], "improve_human": [], "improve_llm": []}
        },
        "grid": {"students": ["smollm2_hub"], "judges": ["offline"], "methods": ["pride"]},
        "training": {"pride": {"teacher": "smollm2_135m"}},
        "evaluation": {"comparisons": ["vs_base"]},
    }
    target = "results/models/smollm2_hub/direct/chatgpt/pride/adapter_model.safetensors"
    result = run_snakemake(tmp_path, overlay, "-n", target)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    (block,) = _blocks(output, "pride_teacher_outputs")
    inputs = block.split("input:", 1)[1].splitlines()[0]
    assert "results/students/smollm2_135m/config.json" in inputs
    assert len(_blocks(output, "build_smollm2_student")) == 1
    (block,) = _blocks(output, "train_pride")
    inputs = block.split("input:", 1)[1].splitlines()[0]
    assert "results/students/smollm2_135m/config.json" not in inputs
    assert "results/pride/teacher_outputs/smollm2_hub/direct/chatgpt/manifest.json" in inputs


def test_the_cpu_reproduction_plans_a_pride_smollm2_student_next_to_dpo(dataset_path, tmp_path):
    """cpu-small: a PRIDE SmolLM2 per data configuration (taught by its SFT model), its answers
    and its judgments against the SFT->DPO student of the same data (pride_vs_dpo)."""
    import yaml

    profile = REPO_ROOT / "workflow/profiles/cpu-small/config.cpu-small.yaml"
    overlay = yaml.safe_load(profile.read_text())
    overlay["dataset"]["path"] = str(dataset_path)
    result = run_snakemake(tmp_path, overlay, "-n")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    configs = 3  # direct/chatgpt, improve_human/{naive_prompt, improve_all_three_dimensions}
    pride = _blocks(output, "train_pride")
    assert len(pride) == configs
    assert all(_resources(b)["mem_mb"] == "16000" and _resources(b)["gpu"] == "0" for b in pride)
    # the SFT teacher runs once per configuration, after SFT; training reads its outputs
    outputs = _blocks(output, "pride_teacher_outputs")
    assert len(outputs) == configs
    assert all(_resources(b)["gpu"] == "0" for b in outputs)
    assert all("/sft/adapter_model" in b.split("input:", 1)[1].splitlines()[0] for b in outputs)
    assert all("teacher_outputs/" in b.split("input:", 1)[1].splitlines()[0] for b in pride)
    # one judge job (the offline judge) writes every pride_vs_dpo pair's file
    (judge,) = _blocks(output, "judge_pride_vs_dpo")
    assert judge.split("wildcards:", 1)[1].splitlines()[0].strip() == "judge=offline"
    files = judge.split("output:", 1)[1].splitlines()[0].strip().split(", ")
    # the pair files, then the record of them that the tables read (grid.JUDGE_JOB_FILES)
    assert files[-1] == "results/judgments/offline/pride_vs_dpo.files.json"
    pride_vs_dpo = [f for f in files if f.endswith("--dpo.jsonl") and "--pride__vs__" in f]
    assert len(pride_vs_dpo) == len(files) - 1 == configs
