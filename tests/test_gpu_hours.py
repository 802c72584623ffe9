"""The GPU-hour projection (``empathy-distill gpu-hours``): the packing on a hand-made DAG, the
token counts and job times of a synthetic grid against hand-computed values, the measured file
replacing only its own model's rows, and the command printing both grids."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from empathy_distill import gpu_hours
from empathy_distill.cli import main as cli_main
from empathy_distill.core.config import load_config
from empathy_distill.core.errors import ConfigError
from empathy_distill.core.prompts import Prompts
from empathy_distill.gpu_packing import GpuJob, pack
from empathy_distill.training.pride.privileged import privileged_block, teacher_prompt
from empathy_distill.training.pride.study_fields import STAND_IN

from .conftest import REPO_ROOT

HOUR = 3600.0
LLAMA = "meta-llama/Meta-Llama-3.1-8B"
TEACHER = "meta-llama/Llama-3.1-70B-Instruct"


def test_packing_on_a_hand_made_dag():
    # 2 GPUs. t=0: ready A(4 h), C(2 h, 2 GPUs), B(1 h); longest first: A starts, C does not
    # fit, B starts. t=1: B ends, D (after B, 3 h) is ready and longer than C: D starts.
    # t=4: A and D end, C gets both GPUs, ends at 6.
    jobs = [
        GpuJob("A", 1, 4 * HOUR),
        GpuJob("B", 1, 1 * HOUR),
        GpuJob("C", 2, 2 * HOUR),
        GpuJob("D", 1, 3 * HOUR, after=("B",)),
    ]
    schedule = pack(jobs, gpus=2)
    assert schedule.makespan_s == 6 * HOUR
    assert schedule.times == {
        "A": (0.0, 4 * HOUR),
        "B": (0.0, 1 * HOUR),
        "D": (1 * HOUR, 4 * HOUR),
        "C": (4 * HOUR, 6 * HOUR),
    }
    assert schedule.gpu_hours(jobs) == 4 + 1 + 2 * 2 + 3
    # one GPU: everything in a row
    assert pack(jobs[:2] + jobs[3:], gpus=1).makespan_s == 8 * HOUR


def test_packing_rejects_what_cannot_run():
    with pytest.raises(ConfigError, match="needs 4 GPUs; the machine has 2"):
        pack([GpuJob("big", 4, 1.0)], gpus=2)
    with pytest.raises(ConfigError, match="unknown job"):
        pack([GpuJob("a", 1, 1.0, after=("nope",))], gpus=1)
    with pytest.raises(ConfigError, match="dependency cycle"):
        pack([GpuJob("a", 1, 1.0, after=("b",)), GpuJob("b", 1, 1.0, after=("a",))], gpus=1)


@pytest.fixture
def synthetic(train):
    """3 train dialogues with known texts: one SFT row (human 3, chatgpt 3), one DPO row
    (human 1, chatgpt 3), one in neither set (human 2, chatgpt 2)."""
    rows = train.head(3).copy()
    rows["dialog_id"] = ["d0", "d1", "d2"]
    rows["situation"], rows["speaker_uttr"] = "s", "u"
    rows["response_human"] = ["h" * 44, "h" * 48, "h" * 4]  # 11, 12, 1 tokens
    rows["response_chatgpt_empathy"] = ["c" * 80, "c" * 100, "c" * 4]  # 20, 25, 1
    rows["rating_human"] = [3, 1, 2]
    rows["rating_chatgpt_empathy"] = [3, 3, 2]
    rows["emotion"], rows["plutchik"], rows["sentiment"] = "sad", "sadness", "negative"
    config = load_config(
        REPO_ROOT / "config.yaml",
        {
            "prompts": str(REPO_ROOT / "resources/prompts.json"),
            "distillation": {
                "methods": {"direct": ["chatgpt"], "improve_human": [], "improve_llm": []}
            },
            "grid": {"students": ["llama31_8b"], "methods": ["sft", "dpo", "pride"]},
        },
    )
    return config, rows.reset_index(drop=True)


TABLE = {
    LLAMA: {
        "lora_sft": 100.0,
        "lora_dpo": 50.0,
        "pride_student": 80.0,
        "forward": 400.0,
        "generate_transformers": 20.0,
        "load_s": 10.0,
    },
    TEACHER: {"forward": 40.0, "load_s": 30.0},
}


def test_token_counts_and_times_match_hand_computed_values(synthetic):
    config, train = synthetic
    prompt = Prompts(REPO_ROOT / "resources/prompts.json").student_train("s", "u")
    p = math.ceil(len(prompt) / 4)
    # 3 tokens of chat overhead per message; 3 epochs (config.yaml)
    sft = 3 * ((p + 3 + 11 + 3) + (p + 3 + 20 + 3))  # d0: human and chatgpt targets
    dpo = 3 * ((p + 3 + 25 + 3) + (p + 3 + 12 + 3))  # d1: prompt+chosen, prompt+rejected
    jobs = {j.gpu.name: j for j in gpu_hours.training_jobs(config, train, TABLE)}
    stem = "llama31_8b/direct/chatgpt"
    assert jobs[f"{stem}/sft"].tokens == sft
    assert jobs[f"{stem}/sft"].gpu.seconds == pytest.approx(sft / 100 + 10)
    assert jobs[f"{stem}/dpo"].tokens == dpo
    assert jobs[f"{stem}/dpo"].gpu.seconds == pytest.approx(dpo / 50 + 10)
    assert jobs[f"{stem}/dpo"].gpu.after == (f"{stem}/sft",)
    # PRIDE on the SFT set: student, privileged pass (student), 70B teacher; every epoch
    row = train.iloc[0].to_dict()
    student = (p + 3 + 11 + 3) + (p + 3 + 20 + 3)
    # config.yaml shows the teacher the scoring study's annotations too: one header line and a
    # line per response the study annotated, the human one and (d0's second target is its
    # ChatGPT-empathy response) that one, as stand-ins of the study's mean length
    lines = [
        "Expert annotations of listener replies to this speaker (scoring study):",
        *(
            f"- {label}, {STAND_IN['miti']}; {STAND_IN['subfactors']}"
            for label in ("Human response", "ChatGPT-empathy response")
        ),
    ]
    study = sum(len(line) + 1 for line in lines)  # each with its newline
    assert len(STAND_IN["subfactors"]) == 416 and len(STAND_IN["miti"]) == 36
    privileged = 2 * math.ceil((len(privileged_block(row)) + study) / 4)
    t = math.ceil((len(teacher_prompt(prompt, row)) + study) / 4)
    teacher = (t + 11 + 6) + (t + 20 + 6)
    # the teacher once per configuration, on its 4 GPUs (config.yaml teacher_resources), then
    # 3 epochs of the student on its one GPU reading its outputs
    outputs = jobs[f"{stem}/pride:teacher_outputs"]
    assert outputs.gpu.seconds == pytest.approx(teacher / 40 + 30)
    assert outputs.gpu.gpus == 4 and outputs.tokens == teacher and outputs.gpu.after == ()
    pride = jobs[f"{stem}/pride"]
    assert pride.gpu.seconds == pytest.approx(3 * (student / 80 + privileged / 400) + 10)
    assert pride.gpu.gpus == 1 and pride.gpu.after == (f"{stem}/pride:teacher_outputs",)
    assert jobs[f"{stem}/sft"].gpu.gpus == 1
    # the online ablation: the teacher every epoch, inside the training job, on 4 GPUs
    config["training"]["pride"]["teacher_outputs"] = "online"
    online = {j.gpu.name: j for j in gpu_hours.training_jobs(config, train, TABLE)}
    assert f"{stem}/pride:teacher_outputs" not in online
    expected = 3 * (student / 80 + privileged / 400 + teacher / 40) + 10 + 30
    assert online[f"{stem}/pride"].gpu.seconds == pytest.approx(expected)
    assert online[f"{stem}/pride"].gpu.gpus == 4


def test_answer_jobs_wait_for_their_model(synthetic):
    config, train = synthetic
    jobs = {j.gpu.name: j for j in gpu_hours.grid_jobs(config, train, 250, TABLE)}
    base = jobs["answer:llama31_8b--base"]
    assert base.tokens == 250 * 160 and base.gpu.after == ()
    assert base.gpu.seconds == pytest.approx(250 * 160 / 20 + 10)
    dpo = jobs["answer:llama31_8b--direct--chatgpt--dpo"]
    assert dpo.gpu.after == ("llama31_8b/direct/chatgpt/dpo",)


def test_a_model_missing_from_the_table_is_named(synthetic):
    config, train = synthetic
    with pytest.raises(ConfigError, match=f"no forward for {TEACHER}"):
        gpu_hours.training_jobs(config, train, {LLAMA: TABLE[LLAMA]})


def test_measured_rows_replace_only_their_own_model(tmp_path):
    table = gpu_hours.load_table(REPO_ROOT / gpu_hours.DEFAULT_TABLE)
    before = dict(table[LLAMA])
    smoke = {
        "model_id": "builtin:smollm2_135m",
        "training": {"sft": {"tokens_per_s": 41000.0}, "dpo": {"tokens_per_s": 30000.0}},
        "generation": {"engine": "transformers", "tokens_per_s_wall": 2500.0},
    }
    path = tmp_path / "gpu_smoke.json"
    path.write_text(json.dumps(smoke))
    replaced = gpu_hours.apply_measured(table, path)
    assert len(replaced) == 3
    assert table["builtin:smollm2_135m"] == {
        "lora_sft": 41000.0,
        "lora_dpo": 30000.0,
        "generate_transformers": 2500.0,
    }
    assert table[LLAMA] == before


def test_bad_table_rows_are_named(tmp_path):
    path = tmp_path / "table.yaml"
    path.write_text("models:\n  m:\n    lora_sfft: 3\n")
    with pytest.raises(ConfigError, match=r"models\.m\.lora_sfft: unknown"):
        gpu_hours.load_table(path)


def test_the_command_prints_both_grids(split, capsys):
    assert (
        cli_main(
            [
                "gpu-hours",
                "--configfile",
                str(REPO_ROOT / "config.yaml"),
                "--train",
                str(split["train"]),
                "--test",
                str(split["test"]),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    configured, paper = out.split("== paper only")
    assert "== grid as configured" in configured and "pride" in configured
    assert "pride_teacher" in configured  # the teacher once per configuration, its own jobs
    assert "pride" not in paper and "wall time on 8 GPUs" in paper
    test_dialogues = len(pd.read_csv(split["test"]))
    assert f"{64 * test_dialogues * 160:,}" in configured  # 64 answer sets of llama31_8b


def test_a_local_fine_tuned_scorer_is_a_gpu_job(train):
    from empathy_distill.core import specs
    from empathy_distill.evaluation.scoring import train_data

    config = load_config(REPO_ROOT / "config.yaml", {"scoring": {"grid": ["smollm2_rating"]}})
    table = {"builtin:smollm2_135m": {"lora_sft": 1000.0, "load_s": 5.0}}
    (job,) = gpu_hours.scorer_jobs(config, train, table)
    # one example per rated response of the train dialogues; its chat as the fine-tune sends it:
    # chars/4 per message + 3, + 3 for the reply; config.yaml: 3 epochs
    examples = train_data.examples(
        train, specs.build("scorer_train_data", config, "smollm2_rating")
    )
    per_epoch = sum(
        sum(math.ceil(len(m["content"]) / 4) + 3 for m in e["messages"]) + 3 for e in examples
    )
    assert job.tokens == 3 * per_epoch
    assert job.gpu.seconds == pytest.approx(3 * per_epoch / 1000 + 5)
    assert job.gpu.gpus == 1 and job.gpu.part == "scorers"
