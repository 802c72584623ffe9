"""Job specs of the evaluation stage's rules (answers, judges, win rates, reference metrics, the
report), registered with ``core.specs`` (the job contract). The scorers' rules have theirs in
``scoring/specs.py``."""

from __future__ import annotations

from typing import Any

from ..core import grid, judges, runtime
from ..core.config import load_schema
from ..core.errors import ConfigError
from ..core.specs import Spec, endpoint_identity, llm_files, register
from .emotion_labels import BASE_SUFFIX, CHAT_SUFFIX, EMOTIONS, QUESTION


@register("report_html")
def report(config: dict) -> Spec:
    """Rule report_html: the config's identity; the nested ``snakemake --report`` gets the whole
    config back with the runtime part (``runtime.merge``), so it plans the DAG of this run."""
    return runtime.identity(config)


def judge(config: dict, name: str) -> Spec:
    """The judge's identity and the protocol its verdicts follow (part of a judge job's spec)."""
    if name not in config["judges"]:
        raise ConfigError(
            f"config['judges'] has no judge {name!r}"
            f" (defined: {', '.join(sorted(config['judges']))})"
        )
    return {
        "judge": name,
        "endpoint": endpoint_identity(config["judges"][name]),
        "paper_faithful": config["evaluation"]["paper_faithful"],
        "prompts": config["prompts"],
        **llm_files(config),
    }


@register(*grid.JUDGE_RULES)
def judge_job(config: dict, name: str, kind: str) -> Spec:
    """Rules judge_<kind>: one job judges every pair of comparison ``kind`` with judge ``name``
    (its identity and protocol: :func:`judge`), the pairs as answer tags in grid order
    (``pair_manifest`` names their files). A job per pair cost a process start each and made
    the default grid's dry run plan 760 of them; the LLM cache keeps a rerun from paying twice."""
    groups = grid.comparisons_by_kind(config)
    if kind not in groups:
        raise ConfigError(
            f"the grid judges no {kind!r} pair (evaluation.comparisons and grid give:"
            f" {', '.join(groups) or 'none'})"
        )
    return {
        **judge(config, name),
        "comparison": kind,
        "pairs": [[pair.model, pair.opponent] for pair in groups[kind]],
    }


def pair_manifest(spec: Spec) -> list[dict[str, str]]:
    """The judgment file of every pair of a judge job's spec with the answer files it compares
    (paths from ``grid``, as the rule's inputs and outputs)."""
    return [
        {
            "model": model,
            "opponent": opponent,
            "path": grid.judgment_path(spec["judge"], model, opponent),
            "model_answers": grid.answer_path(model),
            "opponent_answers": grid.answer_path(opponent),
        }
        for model, opponent in spec["pairs"]
    ]


def _default_margin() -> float:
    return load_schema()["$defs"]["llm_endpoint"]["properties"]["margin"]["default"]


@register("train_offline_judge")
def offline_judge(config: dict) -> Spec:
    """Rule train_offline_judge: the tie margin of the grid's offline judge, the seed, and the
    cache the sentence embeddings are kept in."""
    offline = judges.scorer_judges(config, grid.judges(config), backend=judges.OFFLINE)
    offline = offline or judges.scorer_judges(config, list(config["judges"]), judges.OFFLINE)
    margin = config["judges"][offline[0]]["margin"] if offline else _default_margin()
    return {
        "margin": margin,
        "seed": config["evaluation"]["seed"],
        "cache_dir": config["llm"]["cache_dir"],
    }


@register("answer")
def answer(config: dict, student: str) -> Spec:
    """Rule answer: the student, the decoding settings and the prompts (resources are
    Snakemake's, not the job's)."""
    if student not in config["students"]:
        raise ConfigError(
            f"config['students'] has no student {student!r}"
            f" (defined: {', '.join(sorted(config['students']))})"
        )
    generation = {
        k: v for k, v in config["generation"].items() if k not in ("resources", "per_student")
    }
    return {
        "student": student,
        "model": config["students"][student],
        "generation": generation,
        "prompts": config["prompts"],
    }


def _pairs(config: dict) -> dict[str, Any]:
    """The judges and the judged pairs of the grid, compactly: a rule's params reach its job on
    one command line, which Linux caps at 128 KiB per argument (the paper grid's 452 judgment
    files listed in full take 199 KB; judges and pairs apart take 23 KB)."""
    return {
        "judges": grid.judges(config),
        "comparisons": [[p.kind, p.model, p.opponent] for p in grid.comparisons(config)],
    }


def manifest(spec: Spec) -> list[dict[str, str]]:
    """Every judgment file of a table spec with the answer files it compares, in judge-major
    order; the paths come from ``grid`` (their one home), as the rules' inputs do."""
    return [
        {
            "judge": name,
            "comparison": kind,
            "model": model,
            "opponent": opponent,
            "path": grid.judgment_path(name, model, opponent),
            "model_answers": grid.answer_path(model),
            "opponent_answers": grid.answer_path(opponent),
        }
        for name in spec["judges"]
        for kind, model, opponent in spec["comparisons"]
    ]


def judge_job_records(config: dict) -> list[str]:
    """The record file of every judge job of the grid (judge-major, kinds in grid order): the
    table rules' inputs; the files they read are those of :func:`manifest`."""
    return [
        grid.judge_job_files_path(name, kind)
        for name in grid.judges(config)
        for kind in grid.comparisons_by_kind(config)
    ]


def judgments(config: dict) -> list[dict[str, str]]:
    """The manifest of the grid: what the table rules list as inputs and their jobs read."""
    return manifest(_pairs(config))


def _evaluation(config: dict) -> Spec:
    evaluation = config["evaluation"]
    return {
        "paper_faithful": evaluation["paper_faithful"],
        "bootstrap_samples": evaluation["bootstrap_samples"],
        "seed": evaluation["seed"],
    }


@register("win_rates")
def win_rates(config: dict) -> Spec:
    """Rule win_rates: the judged pairs (``manifest`` lists their files) and the statistics'
    settings."""
    return {**_evaluation(config), **_pairs(config)}


@register("judge_agreement")
def judge_agreement(config: dict) -> Spec:
    """Rule judge_agreement: the judged pairs, the judges in order, and which of them is the
    offline scorer whose agreement with the human ratings gets a row."""
    offline = judges.scorer_judges(config, grid.judges(config), backend=judges.OFFLINE)
    return {
        "paper_faithful": config["evaluation"]["paper_faithful"],
        "offline_judge": offline[0] if offline else None,
        **_pairs(config),
    }


@register("reference_metrics")
def reference_metrics(config: dict) -> Spec:
    """Rule reference_metrics: every answer set of the grid (the teacher, then per student its
    base model and its trained models of every data configuration and stage), the references
    (the human response and the teacher's answer), the bootstrap's settings and the cache the
    sentence embeddings are kept in. ``answer_manifest`` lists the files.

    The teacher is a reference only when the comparisons already answer the test dialogues
    with it (``vs_teacher``): the table never buys teacher answers of its own."""
    with_teacher = grid.TEACHER_TAG in grid.answer_tags(config)
    tags = [grid.TEACHER_TAG] if with_teacher else []
    for student in grid.students(config):
        tags.append(grid.base_tag(student))
        tags += [m.tag for m in grid.models(config) if m.student == student]
    return {
        "answer_tags": tags,
        "references": ["human", *([grid.TEACHER_TAG] if with_teacher else [])],
        "bootstrap_samples": config["evaluation"]["bootstrap_samples"],
        "seed": config["evaluation"]["seed"],
        "cache_dir": config["llm"]["cache_dir"],
    }


def answer_manifest(spec: Spec) -> list[dict[str, str]]:
    """Every answers file of a spec with ``answer_tags``, in its order; paths from ``grid``."""
    return [{"answers": tag, "path": grid.answer_path(tag)} for tag in spec["answer_tags"]]


#: Where a student's emotion labels of the test dialogues live: one file per student, a record
#: per (answer set, test dialogue) of every model the answer rule loads for it (its base and each
#: trained model), written by the student's one ``emotion_answers`` job.
EMOTION_ROOT = "results/emotion"
EMOTION = EMOTION_ROOT + "/{student}.jsonl"


def emotion_path(tag: str) -> str:
    """File holding the emotion labels of the answer set ``tag``'s model (its student's file;
    no teacher)."""
    info = grid.parse_tag(tag)
    if info["kind"] == "teacher":
        raise ConfigError("emotion accuracy is measured on students, not on the teacher")
    return EMOTION.format(student=info["student"])


def student_tags(config: dict, student: str | None = None) -> list[str]:
    """Per student its base model, then its trained models: the sets the answer rule writes
    (``student`` given: that student's only)."""
    tags = []
    for name in grid.students(config) if student is None else [student]:
        tags.append(grid.base_tag(name))
        tags += [m.tag for m in grid.models(config) if m.student == name]
    return tags


@register("emotion_answers")
def emotion_answers(config: dict, student: str) -> Spec:
    """Rule emotion_answers: the student, the weights' precision, the labels and the question,
    and its answer sets (a change of the first four reruns every set; a new set is scored alone,
    the others come from the job's parts). docs/emotion-accuracy.md."""
    if student not in config["students"]:
        raise ConfigError(
            f"config['students'] has no student {student!r}"
            f" (defined: {', '.join(sorted(config['students']))})"
        )
    return {
        "student": student,
        "model": config["students"][student],
        "dtype": config["generation"]["dtype"],
        "labels": list(EMOTIONS),
        "question": QUESTION,
        "suffixes": {"chat": CHAT_SUFFIX, "base": BASE_SUFFIX},
        "score": "mean_token_logprob",
        "answer_tags": student_tags(config, student),
    }


@register("emotion_accuracy")
def emotion_accuracy(config: dict) -> Spec:
    """Rule emotion_accuracy: every student answer set (``emotion_manifest`` lists the files),
    the labels (chance is 1 / their number) and the bootstrap's settings."""
    return {
        "answer_tags": student_tags(config),
        "labels": list(EMOTIONS),
        "bootstrap_samples": config["evaluation"]["bootstrap_samples"],
        "seed": config["evaluation"]["seed"],
    }


def emotion_manifest(spec: Spec) -> list[dict[str, str]]:
    """Every emotion file of a spec with ``answer_tags``, in its order."""
    return [{"answers": tag, "path": emotion_path(tag)} for tag in spec["answer_tags"]]
