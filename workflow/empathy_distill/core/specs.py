"""Job specs: for each rule, everything that shapes a job's output, resolved and defaulted.

The Snakefile validates the config once (``config.validate_config``, which fills the schema's
defaults); a rule's input function then calls one function here and passes the result as its
only config param (``--spec``, JSON). Snakemake reruns a job exactly when its spec changes, and
the job never re-validates the config or re-derives the grid: it reads its spec and the files
the rule gives it. Operational settings are not part of any spec (``runtime.py``).

By hand, a job's CLI also takes ``--config FILE``: the spec (and the runtime part) are then
built from that file by the same functions.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from . import grid, judges, runtime
from .errors import ConfigError

#: What shapes a model's answers; every other endpoint key is operational (runtime.py).
ANSWER_SHAPING_KEYS = ("backend", "model", "mode", "base_url", "sampling", "max_new_tokens")
Spec = dict[str, Any]


def dumps(spec: Spec) -> str:
    """A spec as the rule's param holds it (sorted keys: equal specs are equal strings)."""
    return json.dumps(spec, sort_keys=True)


def endpoint_identity(endpoint: dict[str, Any]) -> dict[str, Any]:
    """The keys of an endpoint that shape its answers or verdicts (a scorer's margin too)."""
    keys = ANSWER_SHAPING_KEYS + (("margin",) if judges.kind_of(endpoint).uses_margin else ())
    return {key: endpoint[key] for key in keys}


def _llm_files(config: dict) -> dict[str, str]:
    return {"cache_dir": config["llm"]["cache_dir"], "price_table": config["llm"]["price_table"]}


def teacher(config: dict) -> Spec:
    """Rules teacher_initial and teacher_improve: the teacher's identity, cache, price table."""
    return {"endpoint": endpoint_identity(config["teacher"]), **_llm_files(config)}


def llm_sources(config: dict) -> Spec:
    """Rule improve_llm_sources: the SFT sample (pandas ``sample(n, random_state=seed)``)."""
    return dict(config["distillation"]["improve_llm_sft_sample"])


def cost(config: dict) -> Spec:
    """Rule cost: the projection spans the whole grid, so its spec is the config's identity."""
    return runtime.identity(config)


def report(config: dict) -> Spec:
    """Rule report_html: the config's identity; the nested ``snakemake --report`` gets the whole
    config back with the runtime part (``runtime.merge``), so it plans the DAG of this run."""
    return runtime.identity(config)


def judge(config: dict, name: str) -> Spec:
    """Rule judge_pair: the judge's identity and the protocol its verdicts follow."""
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
        **_llm_files(config),
    }


def _default_margin() -> float:
    from .config import load_schema

    return load_schema()["$defs"]["llm_endpoint"]["properties"]["margin"]["default"]


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


def train(config: dict, student: str, method: str, strategy: str, stage: str) -> str:
    """Rule train: the trainer's whole settings for the job, as its trainer resolves them
    (compact JSON in the trainer's key order: the LLaMA-Factory YAML is written in that order)."""
    from ..training.methods import TrainingJob
    from ..training.run import job_settings

    return job_settings(config, TrainingJob(student, method, strategy, stage))


def pride_reasoning(config: dict, teacher: str) -> Spec:
    """Rule pride_reasoning: the PRIDE teacher, its placement and generation settings, the
    cache (``training.pride.reasoning``)."""
    from ..training.pride.config import reasoning_spec

    return reasoning_spec(config, teacher)


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


def win_rates(config: dict) -> Spec:
    """Rule win_rates: the judged pairs (``manifest`` lists their files) and the statistics'
    settings."""
    return {**_evaluation(config), **_pairs(config)}


def judge_agreement(config: dict) -> Spec:
    """Rule judge_agreement: the judged pairs, the judges in order, and which of them is the
    offline scorer whose agreement with the human ratings gets a row."""
    offline = judges.scorer_judges(config, grid.judges(config), backend=judges.OFFLINE)
    return {
        "paper_faithful": config["evaluation"]["paper_faithful"],
        "offline_judge": offline[0] if offline else None,
        **_pairs(config),
    }


def _scorer(config: dict, name: str) -> dict[str, Any]:
    defined = config.get("scoring", {}).get("scorers", {})
    if name not in defined:
        raise ConfigError(
            f"config['scoring']['scorers'] has no scorer {name!r}"
            f" (defined: {', '.join(sorted(defined)) or 'none'})"
        )
    return defined[name]


def _scorer_identity(config: dict, name: str) -> Spec:
    """A scorer's kind, resolved prompt variant and prompts file (a classifier's "variant" is
    its feature set: it has no prompt)."""
    from ..evaluation.scoring.prompts import CLASSIFIER, DEFAULT_VARIANT

    scorer = _scorer(config, name)
    if scorer["kind"] == CLASSIFIER:
        return {
            "kind": CLASSIFIER,
            "variant": scorer["features"],
            "prompts": config["scoring"]["prompts"],
        }
    return {
        "kind": scorer["kind"],
        "variant": scorer["variant"] or DEFAULT_VARIANT[scorer["kind"]],
        "prompts": config["scoring"]["prompts"],
    }


def score_answers(config: dict, scorer: str) -> Spec:
    """Rule score_answers: the scorer's identity (endpoint, kind, prompt variant, prompts);
    for a classifier, its settings and fitted model (``classifier_scorer``)."""
    from ..evaluation.scoring.classifier import MODEL_FILE
    from ..evaluation.scoring.prompts import CLASSIFIER

    if _scorer(config, scorer)["kind"] == CLASSIFIER:
        return {**classifier_scorer(config, scorer), "model_file": MODEL_FILE.format(scorer=scorer)}
    return {
        "scorer": scorer,
        "endpoint": endpoint_identity(_scorer(config, scorer)),
        **_scorer_identity(config, scorer),
        **_llm_files(config),
    }


def classifier_scorer(config: dict, name: str) -> Spec:
    """Rule train_classifier_scorer: a classifier scorer's features, models, selection, seed,
    the identity of the subfactor scorer it reads (with its 15 names), the embedding cache and,
    for an OpenAI embedding model, its identity."""
    from ..evaluation.embeddings import embedding_identity
    from ..evaluation.scoring.prompts import CLASSIFIER, SUBFACTORS, scoring_prompt
    from .config import resolve_resource

    scorer = _scorer(config, name)
    if scorer["kind"] != CLASSIFIER:
        raise ConfigError(f"config['scoring']['scorers'][{name!r}] is not a classifier scorer")
    subfactor = None
    if scorer["subfactor_scorer"] and "subfactors" in scorer["features"]:
        identity = _scorer_identity(config, scorer["subfactor_scorer"])
        prompt = scoring_prompt(
            SUBFACTORS, identity["variant"], resolve_resource(identity["prompts"])
        )
        subfactor = {"name": scorer["subfactor_scorer"], **identity, "names": list(prompt.names)}
    keys = (
        "features",
        "model",
        "selection",
        "models",
        "selections",
        "k_grid",
        "cv_folds",
        "seed",
        "importance_repeats",
    )
    spec = {
        "scorer": name,
        **_scorer_identity(config, name),
        **{key: scorer[key] for key in keys},
        "subfactor_scorer": subfactor,
        "cache_dir": config["llm"]["cache_dir"],
    }
    # An OpenAI embedding model (backend, model, server; absent for the default MiniLM, so a
    # MiniLM scorer's spec is unchanged). Only when its vectors are features.
    identity = embedding_identity(scorer.get("embedding"))
    if identity and "embedding" in str(scorer["features"]).split("+"):
        spec["embedding"] = identity
        spec["price_table"] = config["llm"]["price_table"]  # its spend is held to the budget
    return spec


def empathy_scores(config: dict) -> Spec:
    """Rule empathy_scores: the grid's scorers and answer sets (``score_manifest`` lists their
    files) and the bootstrap's settings."""
    return {
        "bootstrap_samples": config["evaluation"]["bootstrap_samples"],
        "seed": config["evaluation"]["seed"],
        "scorers": {name: _scorer_identity(config, name) for name in grid.scorers(config)},
        "answer_tags": grid.answer_tags(config) if grid.scorers(config) else [],
    }


# agreement, rater variance, empathy change (evaluation/scoring/agreement.py, change.py) -------
def scorer_agreement(config: dict) -> Spec:
    """Rule scorer_agreement: the grid's scorers, in order (their ``responses_test.jsonl`` are
    its inputs, whatever their kind), and the within-rater minimum."""
    return {
        "scorers": grid.scorers(config),
        "within_rater_min": config["scoring"]["agreement"]["within_rater_min"],
    }


def empathy_change(config: dict, scorer: str) -> Spec:
    """Rule figure_empathy_change: the scorer's kind and the bootstrap's settings."""
    return {
        "scorer": scorer,
        "kind": _scorer_identity(config, scorer)["kind"],
        "bootstrap_samples": config["evaluation"]["bootstrap_samples"],
        "seed": config["evaluation"]["seed"],
    }


def score_manifest(spec: Spec) -> list[dict[str, str]]:
    """Every scores file of an ``empathy_scores`` spec, scorer-major; paths from ``grid``."""
    return [
        {"scorer": name, "answers": tag, "path": grid.score_path(name, tag)}
        for name in spec["scorers"]
        for tag in spec["answer_tags"]
    ]


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


def scorer_train_data(config: dict, scorer: str) -> Spec:
    """Rule scorer_train_data: the scorer's prompt and how its examples are drawn."""
    settings = _scorer(config, scorer)["finetune"]
    if not settings:
        raise ConfigError(f"config['scoring']['scorers'][{scorer!r}] has no finetune block")
    return {
        "scorer": scorer,
        **_scorer_identity(config, scorer),
        **{k: settings[k] for k in ("split", "balance", "max_examples", "seed")},
    }


def finetune_scorer(config: dict, scorer: str) -> Spec:
    """Rule finetune_scorer: everything that shapes the fine-tuned model (for backend
    transformers the complete LLaMA-Factory arguments, as the train rule's spec)."""
    from ..evaluation.scoring import finetune, finetune_args

    entry = _scorer(config, scorer)
    if not entry["finetune"]:
        raise ConfigError(f"config['scoring']['scorers'][{scorer!r}] has no finetune block")
    spec = {
        "scorer": scorer,
        "endpoint": endpoint_identity(entry),
        "base_model": finetune.base_model(entry),
        # its resources are operational (Snakemake's), not what shapes the model; the keys
        # left unset (null) are the backend's defaults
        "finetune": {
            k: entry["finetune"][k]
            for k in finetune.set_keys(entry["finetune"])
            if k != "resources"
        },
        **_scorer_identity(config, scorer),
        **_llm_files(config),
    }
    if entry["backend"] == "transformers":
        spec["llamafactory"] = finetune_args.train_args(config, scorer)
    return spec


# CLI side ---------------------------------------------------------------------------------------
def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """``--spec JSON`` (from the rule's params) or, by hand, ``--config FILE``."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--spec", help="the job's spec as JSON (the rule's params.spec)")
    group.add_argument("--config", help="by hand: a workflow config file to build the spec from")


def parse(text: str) -> Spec:
    """A ``--spec`` argument: a JSON object, or a ConfigError saying what it is instead."""
    return runtime.parse_json_object(text, "--spec")


def from_args(
    args: argparse.Namespace,
    build: Callable[[dict], Spec],
    *,
    with_runtime: bool | Callable[[Spec], bool] = False,
) -> tuple[Spec, dict[str, Any] | None]:
    """(spec, runtime part) of a job: ``--spec`` and, when ``with_runtime`` (a bool, or a test
    of the spec), ``$EMPATHY_DISTILL_RUNTIME`` from a rule; or both from ``--config`` by hand."""
    if getattr(args, "config", None):
        from .config import load_config

        config = load_config(args.config)
        spec = build(config)
        wanted = with_runtime(spec) if callable(with_runtime) else with_runtime
        return spec, runtime.runtime_part(config) if wanted else None
    spec = parse(args.spec)
    wanted = with_runtime(spec) if callable(with_runtime) else with_runtime
    return spec, runtime.load() if wanted else None
