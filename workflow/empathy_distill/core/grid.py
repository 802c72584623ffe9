"""The experiment grid: which data configurations, models, answer sets and comparisons exist.

One source of truth for Snakemake (``workflow/rules/common.smk`` wraps these functions) and for
the Python stages, so that ``snakemake -n`` and the code always agree on what the grid is.

Naming: ``method`` x ``strategy`` is a data configuration, ``student`` a key of
``config.students``, ``stage`` a training method of ``training.methods`` selected by
``grid.methods``, ``judge`` a key of ``config.judges``. An *answer tag* names one set of
answers to the test dialogues:
``teacher``, ``{student}--base`` or ``{student}--{method}--{strategy}--{stage}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from pathlib import PurePath

from . import strategies
from .methods import DEFAULT_GRID_METHODS, STAGES, final_stages

METHODS = ("direct", "improve_human", "improve_llm")
IMPROVE_METHODS = ("improve_human", "improve_llm")
COMPARISONS = ("vs_base", "vs_naive", "dpo_vs_sft", "vs_teacher", "pride_vs_dpo")
TAG_SEPARATOR = "--"
PAIR_SEPARATOR = "__vs__"
TEACHER_TAG = "teacher"
#: Where results live (Snakemake wildcards in braces): the one spelling of each path, used by
#: the rules' outputs and by the path functions below.
ANSWERS = "results/answers/{student}/{variant}.jsonl"
TEACHER_ANSWERS = "results/answers/teacher.jsonl"
JUDGMENTS = "results/judgments/{judge}/{model}" + PAIR_SEPARATOR + "{opponent}.jsonl"
#: One judge job per judge and comparison kind writes that kind's judgment files (rule
#: ``judge_<kind>``, wildcard ``judge``): 10 jobs for the default grid instead of 760, each
#: one process start and one Batch API round trip; the LLM cache makes a rerun pay nothing twice.
JUDGE_RULE_PREFIX = "judge_"
#: What a judge job wrote (its pair files with their sha256), written last: the table rules take
#: these few files as inputs instead of every pair file (760 in the default grid), which made
#: a quarter of the dry run's DAG building (docs/benchmarks.md).
JUDGE_JOB_FILES = "results/judgments/{judge}/{comparison}.files.json"
#: A scorer's scores of one answer set: ``{answers}`` is the answers file's path below
#: results/answers/ without .jsonl (``teacher``, ``<student>/base``, ``<student>/<m>/<s>/<stage>``).
SCORES = "results/scores/{scorer}/{answers}.jsonl"
ANSWERS_ROOT = "results/answers"
#: A trained model's LoRA adapter folder (the training rules' output).
MODELS = "results/models/{student}/{method}/{strategy}/{stage}"
#: The files of such a folder a model's loader reads besides the base model (PEFT's names).
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
#: The dataset's split (rule split_dataset) and the scorers' own train dialogues
#: (scoring.train_dialogues, rule scorer_train_split: not cut by dataset.max_train_dialogues).
TRAIN_CSV = "results/data/train.csv"
TEST_CSV = "results/data/test.csv"
SCORER_TRAIN_CSV = "results/data/scorer_train.csv"
#: Figures per judge (empathy_distill.evaluation.figures draws them).
FIGURE_KINDS = ("heatmap", "targeted_vs_naive", "sft_vs_dpo")


@dataclass(frozen=True, order=True)
class DataConfig:
    method: str
    strategy: str

    @property
    def needs_teacher(self) -> bool:
        return self.method in IMPROVE_METHODS


@dataclass(frozen=True, order=True)
class Model:
    """One trained model: a student fine-tuned on a data configuration up to a stage."""

    student: str
    method: str
    strategy: str
    stage: str

    @property
    def tag(self) -> str:
        return TAG_SEPARATOR.join((self.student, self.method, self.strategy, self.stage))


@dataclass(frozen=True, order=True)
class Comparison:
    """A judged pair: ``model`` (the candidate) against ``opponent`` on the same test dialogues."""

    kind: str
    model: str  # answer tag
    opponent: str  # answer tag

    @property
    def name(self) -> str:
        return f"{self.model}{PAIR_SEPARATOR}{self.opponent}"


def data_configs(config: dict) -> list[DataConfig]:
    methods = config["distillation"]["methods"]
    return [DataConfig(m, s) for m in METHODS for s in methods.get(m, [])]


def teacher_strategies(config: dict, method: str) -> list[str]:
    """Strategies of an improve method that need teacher calls (combined reuses its parts)."""
    wanted = config["distillation"]["methods"].get(method, [])
    calls: list[str] = []
    for strategy in wanted:
        calls.extend(p for p in strategies.teacher_files(strategy) if p not in calls)
    return calls


def students(config: dict) -> list[str]:
    """Students selected for this run (``grid.students``), each defined under ``students``."""
    return list(config["grid"]["students"])


def judges(config: dict) -> list[str]:
    """Judges selected for this run (``grid.judges``), each defined under ``judges``."""
    return list(config["grid"]["judges"])


def stages(config: dict) -> list[str]:
    """Training methods this run trains (``grid.methods``), in registry (training) order."""
    selected = config.get("grid", {}).get("methods", DEFAULT_GRID_METHODS)
    return [stage for stage in STAGES if stage in selected]


def models(config: dict) -> list[Model]:
    return [
        Model(st, dc.method, dc.strategy, stage)
        for st, dc, stage in product(students(config), data_configs(config), stages(config))
    ]


def base_tag(student: str) -> str:
    return f"{student}{TAG_SEPARATOR}base"


def parse_tag(tag: str) -> dict[str, str]:
    """Inverse of the tag naming: {'kind': teacher|base|model, 'student', 'method', ...}."""
    if tag == TEACHER_TAG:
        return {"kind": "teacher"}
    parts = tag.split(TAG_SEPARATOR)
    if len(parts) == 2 and parts[1] == "base":
        return {"kind": "base", "student": parts[0]}
    if len(parts) == 4:
        student, method, strategy, stage = parts
        return {
            "kind": "model",
            "student": student,
            "method": method,
            "strategy": strategy,
            "stage": stage,
        }
    raise ValueError(f"not an answer tag: {tag!r}")


def answer_path(tag: str) -> str:
    """File holding the answers of ``tag`` to the test dialogues."""
    info = parse_tag(tag)
    if info["kind"] == "teacher":
        return TEACHER_ANSWERS
    if info["kind"] == "base":
        return ANSWERS.format(student=info["student"], variant="base")
    variant = "/".join((info["method"], info["strategy"], info["stage"]))
    return ANSWERS.format(student=info["student"], variant=variant)


def adapter_dir(tag: str) -> str | None:
    """The LoRA adapter folder of the trained model ``tag``; None for a base model."""
    info = parse_tag(tag)
    if info["kind"] == "teacher":
        raise ValueError("the teacher has no adapter")
    if info["kind"] == "base":
        return None
    return MODELS.format(**{k: info[k] for k in ("student", "method", "strategy", "stage")})


def score_path(scorer: str, tag: str) -> str:
    """File holding ``scorer``'s scores of the answer set ``tag``."""
    stem = PurePath(answer_path(tag)).relative_to(ANSWERS_ROOT).with_suffix("")
    return SCORES.format(scorer=scorer, answers=stem.as_posix())


def scorers(config: dict) -> list[str]:
    """Empathy scorers selected for this run (``scoring.grid``; none by default)."""
    return list(config.get("scoring", {}).get("grid", []))


def judgment_path(judge: str, model_tag: str, opponent_tag: str) -> str:
    """File holding ``judge``'s verdicts on ``model_tag`` against ``opponent_tag``."""
    return JUDGMENTS.format(judge=judge, model=model_tag, opponent=opponent_tag)


def judge_job_files_path(judge: str, comparison: str) -> str:
    """The record of what judge ``judge``'s job of comparison kind ``comparison`` wrote."""
    return JUDGE_JOB_FILES.format(judge=judge, comparison=comparison)


def tag_of_answer_path(path: str | PurePath) -> str:
    """Inverse of ``answer_path`` (whatever folders hold ``answers/``): a job handed its answers
    files by the rule names each one from its path, without reading the config."""
    parts = PurePath(path).parts
    stem = PurePath(path).with_suffix("").parts
    candidates = [stem[-1]]  # the teacher
    if len(stem) >= 2 and stem[-1] == "base":
        candidates.append(base_tag(stem[-2]))
    if len(stem) >= 4:
        candidates.append(TAG_SEPARATOR.join(stem[-4:]))
    for tag in candidates:
        try:
            expected = PurePath(answer_path(tag)).parts[1:]  # answers/..., without results/
        except ValueError:
            continue
        if parts[-len(expected) :] == expected:
            return tag
    raise ValueError(
        f"{path}: not an answers file (expected answers/teacher.jsonl, "
        "answers/<student>/base.jsonl or answers/<student>/<method>/<strategy>/<stage>.jsonl)"
    )


def comparisons(config: dict) -> list[Comparison]:
    """Every pair the configured evaluation judges, without duplicates, in a stable order."""
    kinds = config.get("evaluation", {}).get("comparisons", list(COMPARISONS))
    teacher_in_grid = bool(config.get("teacher")) and "vs_teacher" in kinds
    pairs: list[Comparison] = []
    for model in models(config):
        if "vs_base" in kinds:
            pairs.append(Comparison("vs_base", model.tag, base_tag(model.student)))
        if (
            "vs_naive" in kinds
            and model.method in IMPROVE_METHODS
            and model.strategy != strategies.BASELINE
            and strategies.BASELINE in config["distillation"]["methods"].get(model.method, [])
        ):
            naive = Model(model.student, model.method, strategies.BASELINE, model.stage)
            pairs.append(Comparison("vs_naive", model.tag, naive.tag))
        if "dpo_vs_sft" in kinds and model.stage == "dpo":
            sft = Model(model.student, model.method, model.strategy, "sft")
            pairs.append(Comparison("dpo_vs_sft", model.tag, sft.tag))
        if (
            "pride_vs_dpo" in kinds and model.stage == "pride" and "dpo" in stages(config)
        ):  # PRIDE next to SFT->DPO on the same student and data configuration
            dpo = Model(model.student, model.method, model.strategy, "dpo")
            pairs.append(Comparison("pride_vs_dpo", model.tag, dpo.tag))
        if teacher_in_grid and model.stage in final_stages():
            pairs.append(Comparison("vs_teacher", model.tag, TEACHER_TAG))
    if teacher_in_grid:
        pairs.extend(Comparison("vs_teacher", base_tag(s), TEACHER_TAG) for s in students(config))
    return pairs


def judge_rule(kind: str) -> str:
    """The rule whose jobs judge every pair of comparison ``kind`` (one job per judge)."""
    if kind not in COMPARISONS:
        raise ValueError(f"not a comparison kind: {kind!r} (kinds: {', '.join(COMPARISONS)})")
    return JUDGE_RULE_PREFIX + kind


#: Every judge rule, in comparison order.
JUDGE_RULES = tuple(judge_rule(kind) for kind in COMPARISONS)


def comparisons_by_kind(config: dict) -> dict[str, list[Comparison]]:
    """The grid's comparisons grouped by kind (kinds without a pair left out), each group in
    :func:`comparisons` order: what one judge job of each kind judges."""
    groups: dict[str, list[Comparison]] = {}
    for pair in comparisons(config):
        groups.setdefault(pair.kind, []).append(pair)
    return {kind: groups[kind] for kind in COMPARISONS if kind in groups}


def comparison_kind(model: str, opponent: str) -> str:
    """The comparison a judged pair belongs to, from its two tags (inverse of
    :func:`comparisons`, for readers that have only the judgments file's name)."""
    mine, theirs = parse_tag(model), parse_tag(opponent)
    if theirs["kind"] == "teacher":
        return "vs_teacher"
    if theirs["kind"] == "base":
        return "vs_base"
    if (mine.get("stage"), theirs.get("stage")) == ("pride", "dpo"):
        return "pride_vs_dpo"
    if mine.get("stage") != theirs.get("stage"):
        return "dpo_vs_sft"
    return "vs_naive"


def answer_tags(config: dict) -> list[str]:
    """Every answer set the evaluation needs (models, base students, the teacher)."""
    tags: dict[str, None] = {}
    for pair in comparisons(config):
        tags.setdefault(pair.model)
        tags.setdefault(pair.opponent)
    return list(tags)
