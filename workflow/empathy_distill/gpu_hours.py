"""Will the grid fit the night? GPU hours and wall time on N GPUs of one machine, projected
before any GPU is asked for (``empathy-distill gpu-hours``; docs/gpu.md "GPU hours").

How it counts (approximations, stated):

* Training tokens per job: the sets the workflow will train on, built by the distillation's own
  functions (``distillation.sets``, ``distillation.teacher.improve_llm_sources``) from the train
  split; where the teacher's text does not exist yet it is a stand-in of
  ``TEACHER_ANSWER_TOKENS`` tokens, as the cost projection counts it (``cost.stand_in``). Tokens
  are ``ceil(chars / 4)`` per message plus ``TOKENS_PER_MESSAGE`` (``llm.pricing``), times the
  job's ``num_train_epochs``. SFT: prompt + target; DPO: prompt + chosen and prompt + rejected.
* PRIDE (``training.pride``) trains on the SFT set; per epoch it costs the student's training
  tokens and its privileged pass (``privileged_block``, over every configured privileged field:
  the scoring study's as stand-ins of their mean length, ``study_fields.STAND_IN``). The
  teacher's forward pass over the teacher's prompt (``teacher_prompt``) + target is counted
  once per configuration, in a job of its own on the teacher's GPUs (rule
  pride_teacher_outputs, ``teacher_outputs: precomputed``, the default), or every epoch inside
  the training job (``online``, the ablation).
* Answers: every answer set of the grid, ``len(test) x generation.max_new_tokens`` new tokens
  (the cap: an upper bound), at the generation engine's rate (``generation.engine``).
* Scorers: a transformers fine-tuned scorer of ``scoring.grid`` (rule finetune_scorer): its
  examples (``scoring.train_data.examples``) x epochs.
* Time of a job = tokens / (tokens/s of its part and model) + the model's load time; its GPUs
  are the rule's resources (``training.resources`` and per-student overrides, the PRIDE layers,
  ``generation.resources``); GPU hours = GPUs x time. Jobs that ask for no GPU are left out.
* The throughput table (``resources/gpu_throughput.yaml``, sources and assumptions in it) is
  keyed by model id; ``--measured results/gpu_smoke.json`` replaces the rows of the model the
  smoke run measured, and only those (SmolLM2's rates say nothing of an 8B model).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from . import stages as _stages  # noqa: F401  (registers the spec builders read below)
from .core import grid, specs
from .core.config import resolve_resource
from .core.prompts import Prompts
from .cost import stand_in
from .distillation import sets
from .distillation.requests import TEACHER_ANSWER_TOKENS
from .distillation.teacher import improve_llm_sources
from .gpu_packing import GpuJob, Schedule, pack
from .gpu_throughput import DEFAULT_TABLE, apply_measured, load_table, rate
from .llm.finetune_data import example_tokens
from .llm.pricing import TOKENS_PER_MESSAGE, approx_tokens
from .training.pride import config as pride_config
from .training.pride.privileged import PRIVILEGED_FIELDS, privileged_block, teacher_prompt
from .training.pride.study_fields import with_stand_ins

PARTS = ("sft", "dpo", "pride_teacher", "pride", "answers", "scorers")
PAPER_METHODS = ["sft", "dpo"]


# --- token counts --------------------------------------------------------------------------


def sft_tokens(record: dict) -> int:
    return sum(approx_tokens(m["content"]) + TOKENS_PER_MESSAGE for m in record["messages"])


def dpo_tokens(record: dict) -> int:
    """Prompt + chosen and prompt + rejected: both sequences go through the model."""
    prompt = sum(approx_tokens(m["content"]) + TOKENS_PER_MESSAGE for m in record["messages"])
    answers = (record["chosen"], record["rejected"])
    return sum(prompt + approx_tokens(a["content"]) + TOKENS_PER_MESSAGE for a in answers)


def training_sets(
    config: dict, train: pd.DataFrame, prompts: Prompts
) -> dict[tuple[str, str], tuple[list[dict], list[dict]]]:
    """(method, strategy) -> (SFT records, DPO records) as the workflow will build them, with
    stand-ins for the teacher's texts."""
    answer = stand_in(TEACHER_ANSWER_TOKENS)
    teacher_text = {str(d): answer for d in train["dialog_id"]}
    distillation = config["distillation"]
    out = {}
    for dc in grid.data_configs(config):
        if dc.method == "direct":
            records = sets.direct_records(
                train, dc.strategy, prompts, distillation["direct_dpo_filter"]
            )
        else:
            if dc.method == "improve_human":
                sources = sets.improve_human_sources(train)
            else:
                sample = distillation["improve_llm_sft_sample"]
                sources = improve_llm_sources(train, teacher_text, sample["n"], sample["seed"])
            sources = sources.assign(dialog_id=sources["dialog_id"].astype(str))
            parts = [
                sets.improved_records(sources, teacher_text, prompts)
                for _ in sets.teacher_files_for(dc.strategy)
            ]
            records = sets.pooled(parts)
        out[(dc.method, dc.strategy)] = records
    return out


def pride_tokens(
    sft: list[dict], train: pd.DataFrame, fields: list[str] | None = None
) -> tuple[int, int, int]:
    """(student, privileged pass, teacher) tokens of one PRIDE epoch over an SFT set, the
    teacher shown the privileged ``fields`` (training.pride.privileged_fields; the scoring
    study's as stand-ins of their mean length, ``study_fields.STAND_IN``)."""
    fields = list(PRIVILEGED_FIELDS) if fields is None else fields
    rows = with_stand_ins(sft, {str(r["dialog_id"]): r for r in train.to_dict("records")}, fields)
    student = privileged = teacher = 0
    for record in sft:
        row = rows[str(record["dialog_id"])]
        user, target = (m["content"] for m in record["messages"])
        student += sft_tokens(record)
        privileged += approx_tokens(privileged_block(row, None, fields))
        teacher += approx_tokens(teacher_prompt(user, row, None, fields)) + approx_tokens(target)
        teacher += 2 * TOKENS_PER_MESSAGE
    return student, privileged, teacher


# --- jobs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """A GPU job with its time; ``student`` for the per-part breakdown."""

    gpu: GpuJob
    student: str
    tokens: int


def train_resources(config: dict, student: str) -> dict:
    """As workflow/rules/functions/train.smk: training.resources, then the student's overrides."""
    own = config["training"]["per_student"].get(student, {}).get("resources", {})
    return {**config["training"]["resources"], **own}


def generation_resources(config: dict, student: str) -> dict:
    """As workflow/rules/common.smk: generation.resources, then the student's overrides."""
    own = config["generation"]["per_student"].get(student, {}).get("resources", {})
    return {**config["generation"]["resources"], **own}


def model_id(config: dict, key: str) -> str:
    return config["students"][key]["model"]


def _epochs(config: dict, student: str, method: str, strategy: str, stage: str) -> float:
    return float(
        json.loads(specs.build("train", config, student, method, strategy, stage))[
            "num_train_epochs"
        ]
    )


def _job(name, part, student, gpus, seconds, tokens, after=()) -> Job:
    return Job(GpuJob(name, int(gpus), seconds, part, tuple(after)), student, int(tokens))


def training_jobs(config: dict, train: pd.DataFrame, table: dict) -> list[Job]:
    prompts = Prompts(resolve_resource(config["prompts"]))
    data = training_sets(config, train, prompts)
    stages = grid.stages(config)
    jobs = []
    for student in grid.students(config):
        model = model_id(config, student)
        load = table.get(model, {}).get("load_s", 0.0)
        gpus = train_resources(config, student)["gpu"]
        for (method, strategy), (sft, dpo) in data.items():
            stem = f"{student}/{method}/{strategy}"
            if "sft" in stages:
                tokens = sum(map(sft_tokens, sft)) * _epochs(
                    config, student, method, strategy, "sft"
                )
                seconds = tokens / rate(table, model, "lora_sft") + load
                jobs.append(_job(f"{stem}/sft", "sft", student, gpus, seconds, tokens))
            if "dpo" in stages:
                tokens = sum(map(dpo_tokens, dpo)) * _epochs(
                    config, student, method, strategy, "dpo"
                )
                seconds = tokens / rate(table, model, "lora_dpo") + load
                after = [f"{stem}/sft"] if "sft" in stages else []
                jobs.append(_job(f"{stem}/dpo", "dpo", student, gpus, seconds, tokens, after))
            if "pride" in stages:
                jobs += pride_jobs(config, table, student, method, strategy, sft, train)
    kept = [j for j in jobs if j.gpu.gpus > 0]
    names = {j.gpu.name for j in kept}  # a job that waits for a CPU job waits for nothing here
    return [
        replace(j, gpu=replace(j.gpu, after=tuple(a for a in j.gpu.after if a in names)))
        for j in kept
    ]


def pride_jobs(config, table, student, method, strategy, sft, train) -> list[Job]:
    """PRIDE's training job (student training + its privileged pass, every epoch) and, with
    precomputed teacher outputs, the teacher's job (one forward pass per example, once); online,
    the teacher's forward pass every epoch inside the training job, on the teacher's GPUs."""
    model = model_id(config, student)
    options = pride_config.merged_options(config, student)
    teacher = model_id(config, pride_config.teacher_of(config, student, options))
    epochs = _epochs(config, student, method, strategy, "pride")
    s_tokens, p_tokens, t_tokens = pride_tokens(sft, train, options["privileged_fields"])
    teacher_s = t_tokens / rate(table, teacher, "forward")
    student_s = epochs * (
        s_tokens / rate(table, model, "pride_student") + p_tokens / rate(table, model, "forward")
    )
    load, teacher_load = (table.get(m, {}).get("load_s", 0.0) for m in (model, teacher))
    name = f"{student}/{method}/{strategy}/pride"
    after_sft = [f"{student}/{method}/{strategy}/sft"] if "sft" in grid.stages(config) else []
    teacher_after = after_sft if options["teacher"] == pride_config.SFT_TEACHER else []
    gpus = pride_config.train_resources(config, student)["gpu"]
    if options["teacher_outputs"] == pride_config.ONLINE:
        seconds = student_s + epochs * teacher_s + load + (teacher_load if teacher != model else 0)
        tokens = epochs * (s_tokens + t_tokens)
        return [_job(name, "pride", student, gpus, seconds, tokens, teacher_after)]
    teacher_gpus = pride_config.teacher_resources(config, student)["gpu"]
    outputs = f"{name}:teacher_outputs"
    return [
        _job(
            outputs,
            "pride_teacher",
            student,
            teacher_gpus,
            teacher_s + teacher_load,
            t_tokens,
            teacher_after,
        ),
        _job(name, "pride", student, gpus, student_s + load, epochs * s_tokens, [outputs]),
    ]


def answer_jobs(config: dict, test_dialogues: int, table: dict) -> list[Job]:
    engine = config["generation"]["engine"]
    new_tokens = test_dialogues * int(config["generation"]["max_new_tokens"])
    jobs = []
    for tag in grid.answer_tags(config):
        info = grid.parse_tag(tag)
        if info["kind"] == "teacher":  # the teacher's answers: rule teacher_initial (its API)
            continue
        student = info["student"]
        model = model_id(config, student)
        seconds = new_tokens / rate(table, model, f"generate_{engine}")
        seconds += table.get(model, {}).get("load_s", 0.0)
        after = []
        if info["kind"] == "model":
            after = ["/".join((student, info["method"], info["strategy"], info["stage"]))]
        gpus = generation_resources(config, student)["gpu"]
        jobs.append(_job(f"answer:{tag}", "answers", student, gpus, seconds, new_tokens, after))
    return [j for j in jobs if j.gpu.gpus > 0]


def scorer_jobs(config: dict, train: pd.DataFrame, table: dict) -> list[Job]:
    """Fine-tuned scorers trained locally (transformers backend): LoRA SFT of their base."""
    from .evaluation.scoring import train_data

    jobs = []
    for name in grid.scorers(config):
        scorer = config["scoring"]["scorers"][name]
        if not scorer.get("finetune") or scorer["backend"] != "transformers":
            continue
        spec = specs.build("finetune_scorer", config, name)
        examples = train_data.examples(train, specs.build("scorer_train_data", config, name))
        per_epoch = sum(example_tokens(e["messages"], f"scorer {name}") for e in examples)
        tokens = per_epoch * float(spec["llamafactory"]["num_train_epochs"])
        model = spec["base_model"]
        seconds = tokens / rate(table, model, "lora_sft") + table.get(model, {}).get("load_s", 0.0)
        own = scorer["finetune"].get("resources") or {}
        gpus = {**config["training"]["resources"], **own}["gpu"]
        jobs.append(_job(f"finetune_scorer:{name}", "scorers", name, gpus, seconds, tokens))
    return [j for j in jobs if j.gpu.gpus > 0]


def grid_jobs(
    config: dict, train: pd.DataFrame, test_dialogues: int, table: dict, scorer_train=None
) -> list[Job]:
    """Every GPU job of the grid; answers wait for their model, DPO for its SFT."""
    jobs = training_jobs(config, train, table)
    names = {j.gpu.name for j in jobs}
    for job in answer_jobs(config, test_dialogues, table):  # a CPU-trained model: no wait
        after = tuple(a for a in job.gpu.after if a in names)
        jobs.append(replace(job, gpu=replace(job.gpu, after=after)))
    return jobs + scorer_jobs(config, train if scorer_train is None else scorer_train, table)


# --- the report ----------------------------------------------------------------------------


@dataclass
class Projection:
    title: str
    jobs: list[Job]
    schedule: Schedule

    def part_hours(self) -> pd.DataFrame:
        rows = [
            {
                "part": j.gpu.part,
                "who": j.student,
                "jobs": 1,
                "gpus": j.gpu.gpus,
                "tokens": j.tokens,
                "gpu_hours": j.gpu.gpus * j.gpu.seconds / 3600.0,
            }
            for j in self.jobs
        ]
        frame = pd.DataFrame(rows, columns=["part", "who", "jobs", "gpus", "tokens", "gpu_hours"])
        table = (
            frame.groupby(["part", "who"], sort=False)
            .agg(
                jobs=("jobs", "sum"),
                gpus=("gpus", "max"),
                tokens=("tokens", "sum"),
                gpu_hours=("gpu_hours", "sum"),
            )
            .reset_index()
        )
        total = table["gpu_hours"].sum()
        table["share"] = table["gpu_hours"] / total if total else 0.0
        return table

    def total_gpu_hours(self) -> float:
        return self.schedule.gpu_hours(j.gpu for j in self.jobs)


def project(title: str, config: dict, train, test_dialogues, table, gpus, scorer_train=None):
    jobs = grid_jobs(config, train, test_dialogues, table, scorer_train)
    return Projection(title, jobs, pack([j.gpu for j in jobs], gpus))


def render(projection: Projection) -> str:
    table = projection.part_hours()
    lines = [
        f"== {projection.title}: {len(projection.jobs)} GPU jobs on {projection.schedule.gpus} GPUs"
    ]
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        lines.append(
            table.to_string(
                index=False,
                formatters={
                    "tokens": "{:,.0f}".format,
                    "gpu_hours": "{:,.1f}".format,
                    "share": "{:.0%}".format,
                },
            )
        )
    by_part = table.groupby("part", sort=False)["gpu_hours"].sum()
    total = projection.total_gpu_hours()
    parts = (
        ", ".join(f"{p} {h:,.1f} h ({h / total:.0%})" for p, h in by_part.items()) if total else ""
    )
    top = table.loc[table["gpu_hours"].idxmax()] if len(table) else None
    lines.append(f"GPU hours: {total:,.1f} ({parts})")
    lines.append(
        f"wall time on {projection.schedule.gpus} GPUs: "
        f"{projection.schedule.makespan_s / 3600:,.1f} h (list scheduling, longest first)"
    )
    if top is not None:
        lines.append(
            f"largest part: {top['part']} of {top['who']}, {top['gpu_hours']:,.1f} GPU h "
            f"({top['share']:.0%} of the GPU hours)"
        )
    return "\n".join(lines)


def paper_only(config: dict) -> dict:
    """The paper's own methods: ``grid.methods: [sft, dpo]`` (PRIDE and its comparison out)."""
    grid_part = {**config["grid"], "methods": PAPER_METHODS}
    evaluation = {**config["evaluation"]}
    evaluation["comparisons"] = [c for c in evaluation["comparisons"] if c != "pride_vs_dpo"]
    return {**config, "grid": grid_part, "evaluation": evaluation}


def run(
    config: dict,
    train_csv: str | Path,
    test_csv: str | Path,
    gpus: int,
    table_path: str | Path = DEFAULT_TABLE,
    measured: str | Path | None = None,
    scorer_train_csv: str | Path | None = None,
) -> list[Projection]:
    """Print the projection of ``config`` and of its paper-only grid on ``gpus`` GPUs."""
    from .data.dataset import load_dataset

    table = load_table(resolve_resource(str(table_path)))
    if measured:
        for row in apply_measured(table, measured):
            print(f"measured (replaces the table's row): {row}")
    train = load_dataset(train_csv)
    test_dialogues = len(pd.read_csv(test_csv, usecols=["dialog_id"]))
    scorer_train = load_dataset(scorer_train_csv) if scorer_train_csv else None
    out = []
    for title, grid_config in (
        ("grid as configured", config),
        ("paper only (grid.methods: [sft, dpo])", paper_only(config)),
    ):
        projection = project(title, grid_config, train, test_dialogues, table, gpus, scorer_train)
        print(render(projection) + "\n")
        out.append(projection)
    print("Projections from token counts (chars/4) and the throughput table, not measurements.")
    return out


def shares(projection: Projection) -> dict[str, float]:
    """part -> share of the GPU hours (for docs and tests)."""
    table = projection.part_hours()
    total = table["gpu_hours"].sum()
    return {p: h / total for p, h in table.groupby("part")["gpu_hours"].sum().items()}
