"""Job specs of the scoring rules (empathy scorers: scoring, classifiers, fine-tuning, agreement,
empathy change), registered with ``core.specs`` (the job contract)."""

from __future__ import annotations

from typing import Any

from ...core import grid
from ...core.config import fill_defaults, load_schema, resolve_resource
from ...core.errors import ConfigError
from ...core.specs import Spec, endpoint_identity, llm_files, register
from ..embeddings import embedding_identity

# config_checks registers the scoring checks: a scoring job run by hand with --config (its spec
# built here from that file) validates them as the Snakefile does.
from . import (
    config_checks,  # noqa: F401
    finetune,
    finetune_args,
    study_grid,
    study_protocol,
)
from .classifier import MODEL_FILE
from .classifier.features import MITI, feature_parts
from .config_checks import OFFLINE_BACKEND
from .offline import MITI_MODEL, SUBFACTOR_MODEL
from .prompts import CLASSIFIER, DEFAULT_VARIANT, SUBFACTORS, scoring_prompt


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


@register("score_responses")
def score_answers(config: dict, scorer: str) -> Spec:
    """The scorer's identity (endpoint, kind, prompt variant, prompts); for a classifier, its
    settings and fitted model (``classifier_scorer``). Rule score_responses' spec, and the
    scorer part of a score_answers job's (``score_answers_job``)."""
    if _scorer(config, scorer)["kind"] == CLASSIFIER:
        return {**classifier_scorer(config, scorer), "model_file": MODEL_FILE.format(scorer=scorer)}
    if is_offline_subfactors(_scorer(config, scorer)):
        model_file = SUBFACTOR_MODEL.format(scorer=scorer)
        return {**train_offline_subfactors(config, scorer), "model_file": model_file}
    return {
        "scorer": scorer,
        "endpoint": endpoint_identity(_scorer(config, scorer)),
        **_scorer_identity(config, scorer),
        **llm_files(config),
    }


@register("score_answers")
def score_answers_job(config: dict, scorer: str) -> Spec:
    """Rule score_answers: one job scores every answer set of the grid with ``scorer`` (its
    identity: :func:`score_answers`), the sets as answer tags in grid order
    (``answer_set_manifest`` names their files). A job per answer set cost a process start and
    a model load each and made the default grid plan 258 of them; the LLM cache keeps a rerun
    from paying twice."""
    return {**score_answers(config, scorer), "answer_tags": grid.answer_tags(config)}


def answer_set_manifest(spec: Spec) -> list[dict[str, str]]:
    """The scores file of every answer set of a score_answers job's spec with the answers file
    it scores (paths from ``grid``, as the rule's inputs and outputs)."""
    return [
        {
            "answers": tag,
            "answers_path": grid.answer_path(tag),
            "path": grid.score_path(spec["scorer"], tag),
        }
        for tag in spec["answer_tags"]
    ]


@register("train_classifier_scorer")
def classifier_scorer(config: dict, name: str) -> Spec:
    """Rule train_classifier_scorer: a classifier scorer's features, models, selection, seed,
    the identity of the subfactor scorer it reads (with its 15 names), the embedding cache and,
    for an OpenAI embedding model, its identity."""
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
    if MITI in feature_parts(scorer["features"]):  # absent otherwise: earlier specs unchanged
        spec["miti_tagger"] = {**train_miti_tagger(config), "model_file": MITI_MODEL}
    return spec


def is_offline_subfactors(scorer: dict) -> bool:
    return scorer.get("kind") == SUBFACTORS and scorer.get("backend") == OFFLINE_BACKEND


def offline_settings(scorer: dict) -> dict[str, Any]:
    """A ``backend: offline`` scorer's ``offline`` block, its schema defaults filled in when
    it is left out (null)."""
    schema = load_schema()
    defs = schema["$defs"]
    block = scorer.get(OFFLINE_BACKEND) or {}  # the settings block bears the backend's name
    return fill_defaults(dict(block), {"$defs": defs, **defs[OFFLINE_BACKEND]})


@register("train_offline_subfactors")
def train_offline_subfactors(config: dict, name: str) -> Spec:
    """Rule train_offline_subfactors: the scorer's identity, the candidates and their grids,
    the held-out part and folds, the study's pinned files, the embedding cache."""
    scorer = _scorer(config, name)
    if not is_offline_subfactors(scorer):
        raise ConfigError(
            f"config['scoring']['scorers'][{name!r}] is not an offline subfactors scorer"
            f" (kind: subfactors, backend: {OFFLINE_BACKEND})"
        )
    return {
        "scorer": name,
        **_scorer_identity(config, name),
        "backend": OFFLINE_BACKEND,
        "model": scorer["model"],
        **offline_settings(scorer),
        "files": dict(config["scoring"]["study_data"]["files"]),
        "cache_dir": config["llm"]["cache_dir"],
    }


@register("train_miti_tagger")
def train_miti_tagger(config: dict) -> Spec:
    """Rule train_miti_tagger: its settings, the study's pinned files, the embedding cache."""
    return {
        **config["scoring"]["miti_tagger"],
        "files": dict(config["scoring"]["study_data"]["files"]),
        "cache_dir": config["llm"]["cache_dir"],
    }


@register("empathy_scores")
def empathy_scores(config: dict) -> Spec:
    """Rule empathy_scores: the grid's scorers and answer sets (``score_manifest`` lists their
    files) and the bootstrap's settings."""
    return {
        "bootstrap_samples": config["evaluation"]["bootstrap_samples"],
        "seed": config["evaluation"]["seed"],
        "scorers": {name: _scorer_identity(config, name) for name in grid.scorers(config)},
        "answer_tags": grid.answer_tags(config) if grid.scorers(config) else [],
    }


@register("scorer_agreement")
def scorer_agreement(config: dict) -> Spec:
    """Rule scorer_agreement: the grid's scorers, in order (their ``responses_test.jsonl`` are
    its inputs, whatever their kind), and the within-rater minimum."""
    return {
        "scorers": grid.scorers(config),
        "within_rater_min": config["scoring"]["agreement"]["within_rater_min"],
    }


@register("figure_empathy_change")
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


@register("scorer_train_data")
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


@register("finetune_scorer")
def finetune_scorer(config: dict, scorer: str) -> Spec:
    """Rule finetune_scorer: everything that shapes the fine-tuned model (for backend
    transformers the complete LLaMA-Factory arguments, as the train rule's spec)."""
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
        **llm_files(config),
    }
    if entry["backend"] == "transformers":
        spec["llamafactory"] = finetune_args.train_args(config, scorer)
    return spec


@register("study_scorer_data")
def study_scorer_data(config: dict, scorer: str) -> Spec:
    """Rule study_scorer_data: the scorer's prompt, the study's balanced file (its pinned
    sha256) and how much of the study's 80/20 split is taken (null: all of it)."""
    study_protocol.require(config, scorer)
    block = study_protocol.settings(config)
    return {
        "scorer": scorer,
        "protocol": study_protocol.STUDY_BALANCED,
        **_scorer_identity(config, scorer),
        "balanced_sha256": config["scoring"]["study_data"]["files"][study_grid.BALANCED_FILE],
        "max_train": block["max_train"],
        "max_test": block["max_test"],
    }


@register("finetune_study_scorer")
def finetune_study_scorer(config: dict, scorer: str) -> Spec:
    """Rule finetune_study_scorer: the scorer's finetune_scorer spec on the study's protocol:
    its folder, the study's 4 epochs and (OpenAI) learning-rate multiplier 0.5; the keys that
    drew the paper-split examples (balance, max_examples) do not apply."""
    study_protocol.require(config, scorer)
    spec = finetune_scorer(config, scorer)
    block = {k: v for k, v in spec["finetune"].items() if k not in study_protocol.REPLACED_KEYS}
    block["epochs"] = study_protocol.STUDY_EPOCHS
    if spec["endpoint"]["backend"] == "openai":
        block["learning_rate_multiplier"] = study_protocol.STUDY_LR_MULTIPLIER
    spec = {**spec, "protocol": study_protocol.STUDY_BALANCED, "finetune": block}
    if "llamafactory" in spec:
        spec["llamafactory"] = finetune_args.train_args(
            config, scorer, study_protocol.STUDY_BALANCED
        )
    return spec


@register("score_study_test")
def score_study_test(config: dict, scorer: str) -> Spec:
    """Rule score_study_test: the scorer's identity (as score_answers) on the study's 20%."""
    study_protocol.require(config, scorer)
    return {**score_answers(config, scorer), "protocol": study_protocol.STUDY_BALANCED}


def study_finetune_manifest(spec: Spec) -> list[dict[str, str]]:
    """The files the reproduction table reads for its fine-tuned rows (a
    ``scoring_study_reproduction`` spec's ``finetuned``): per scorer and protocol, the model.json
    and the predictions; paths from ``study_protocol`` and ``responses``."""
    found = []
    for entry in spec.get("finetuned", []):
        name = entry["scorer"]
        for protocol in entry["protocols"]:
            if protocol == study_protocol.STUDY_BALANCED:
                model = study_protocol.path(study_protocol.MODEL_JSON, name)
                predictions = study_protocol.path(study_protocol.PREDICTIONS, name)
            else:
                model = finetune.MODEL_JSON.format(scorer=name)
                predictions = study_protocol.path(study_protocol.PAPER_PREDICTIONS, name)
            found.append(
                {"scorer": name, "protocol": protocol, "model": model, "predictions": predictions}
            )
    return found


@register("scoring_study_reproduction")
def scoring_study_reproduction(config: dict) -> Spec:
    """Rule scoring_study_reproduction: the study's pinned files (name -> sha256), the feature
    sets and models of the table, the embedding cache (MiniLM vectors, computed once) and the
    fine-tuned scorers whose rows it adds (``scoring.study_protocol``)."""
    study = config["scoring"]["study_data"]
    spec = {
        "files": dict(study["files"]),
        "features": list(study_grid.FEATURE_SETS),
        "models": list(study_grid.MODEL_NAMES),
        "cache_dir": config["llm"]["cache_dir"],
    }
    # the fine-tuned scorers of the study's protocol (absent when none, so the classifier
    # table's spec is unchanged): which rows, read from study_finetune_manifest's files
    in_grid = study_protocol.paper_split_scorers(config)
    finetuned = [
        {
            "scorer": name,
            "backend": _scorer(config, name)["backend"],
            "base_model": finetune.base_model(_scorer(config, name)),
            "protocols": [study_protocol.STUDY_BALANCED]
            + ([study_protocol.PAPER_SPLIT] if name in in_grid else []),
            "max_test": study_protocol.settings(config)["max_test"],
        }
        for name in study_protocol.scorers(config)
    ]
    if finetuned:
        spec["finetuned"] = finetuned
    return spec
