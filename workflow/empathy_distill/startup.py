"""Start-up checks of what the planned jobs will need: config files, LLM endpoints, API keys.

Run when the Snakefile loads (and by the command-line front end), so a run that is bound to fail
stops before any job, API call or GPU hour, with a message naming the file, key or variable.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .core import grid
from .core.config import check_config_file
from .core.errors import ConfigError
from .core.judges import calls_llm
from .evaluation.scoring import study_protocol
from .llm import capabilities, lifecycle
from .llm.pricing import FREE_BACKENDS

#: Rules whose jobs call the teacher endpoint / a judge endpoint (wildcard ``judge``).
TEACHER_RULES = frozenset({"teacher_initial", "teacher_improve"})
JUDGE_RULES = frozenset(grid.JUDGE_RULES)
#: Rules whose jobs call an empathy scorer's endpoint (wildcard ``scorer``).
SCORER_RULES = frozenset({"score_answers"})
#: Rules of the study's protocol that call a scorer's endpoint (scoring.study_protocol).
STUDY_SCORER_RULES = frozenset({"finetune_study_scorer", "score_study_test"})
#: Rules whose jobs embed texts with a classifier scorer's embedding model (wildcard ``scorer``).
EMBEDDING_RULES = frozenset({"train_classifier_scorer", "score_answers"})
#: Backends that can write the teacher's responses.
TEACHER_BACKENDS = ("openai", "gemini", "openai_compatible", "transformers")


def check_config_files(paths: Iterable[str | Path]) -> None:
    for path in paths:
        if Path(path).exists():
            check_config_file(path)


def teacher_needed(config: dict) -> bool:
    """The grid builds improved sets or judges against the teacher's answers."""
    improving = any(grid.teacher_strategies(config, m) for m in grid.IMPROVE_METHODS)
    return improving or grid.TEACHER_TAG in grid.answer_tags(config)


def planned_endpoints(config: dict) -> dict[str, dict[str, Any]]:
    """Config key -> endpoint for every LLM endpoint the configured grid calls."""
    endpoints = {}
    if teacher_needed(config):
        endpoints["teacher"] = config.get("teacher") or {}
    for name in grid.judges(config):
        if calls_llm(config["judges"][name]):
            endpoints[f"judges.{name}"] = config["judges"][name]
    for name in grid.scorers(config):
        endpoints[f"scoring.scorers.{name}"] = config["scoring"]["scorers"][name]
        if (embedding := embedding_endpoint(config, name)) is not None:
            endpoints[f"scoring.scorers.{name}.embedding"] = embedding
    for name in study_protocol.scorers(config):  # fine-tuned and asked outside the grid too
        endpoints[f"scoring.scorers.{name}"] = config["scoring"]["scorers"][name]
    return endpoints


def embedding_endpoint(config: dict, name: str) -> dict[str, Any] | None:
    """The OpenAI embedding model a classifier scorer calls (as an endpoint: backend, model,
    base_url, key variable; priced in real time), None when it embeds with MiniLM or reads no
    embedding."""
    scorer = config["scoring"]["scorers"].get(name) or {}
    block = scorer.get("embedding") or {}
    if scorer.get("kind") != "classifier" or block.get("backend", "minilm") == "minilm":
        return None
    if "embedding" not in str(scorer.get("features", "embedding")).split("+"):
        return None
    keys = ("backend", "model", "base_url", "api_key_env")
    return {**{k: block.get(k) for k in keys}, "mode": "realtime"}


def endpoint_problems(config: dict) -> list[str]:
    """Endpoints that cannot work whatever the environment: wrong backend, no base_url, a paid
    model without a price (or retired by its provider, as the price table says)."""
    from .llm.errors import LLMError
    from .llm.pricing import PriceTable

    problems = []
    endpoints = planned_endpoints(config)
    teacher = endpoints.get("teacher")
    if teacher is not None and not teacher:
        problems.append(
            "teacher: not configured; the grid needs it (improve methods or vs_teacher)"
        )
    elif teacher is not None and teacher["backend"] not in TEACHER_BACKENDS:
        problems.append(
            f"teacher.backend: {teacher['backend']!r} cannot write responses; expected one of "
            f"{', '.join(TEACHER_BACKENDS)}"
        )
    prices = None
    # A cache-only run sends nothing: prices, retirement and request parameters do not matter.
    cache_only = bool(config.get("llm", {}).get("cache_only"))
    for where, endpoint in endpoints.items():
        if not calls_llm(endpoint):
            continue
        if endpoint["backend"] == "openai_compatible" and not endpoint.get("base_url"):
            problems.append(
                f"{where}.base_url: backend openai_compatible needs the server's URL, e.g. "
                "http://127.0.0.1:8000/v1"
            )
        if cache_only:
            continue
        try:
            prices = prices or PriceTable.load(config["llm"]["price_table"])
            prices.price(endpoint["backend"], endpoint["model"], endpoint.get("mode", "realtime"))
        except LLMError as exc:
            problems.append(f"{where}.model: {exc}")
        problems += capabilities.endpoint_problems(where, endpoint)
    if cache_only:
        return problems
    run_days = int(config.get("llm", {}).get("expected_run_days", 7))
    return problems + lifecycle.shutdown_problems(planned_models(config, endpoints), run_days)


def planned_models(config: dict, endpoints: dict[str, dict[str, Any]]) -> dict[str, str]:
    """``<config key>.model`` -> model for every paid model the grid names: the endpoints'
    models and the base models of OpenAI fine-tuned scorers."""
    models = {
        f"{where}.model": str(e["model"])
        for where, e in endpoints.items()
        if calls_llm(e) and e["backend"] not in FREE_BACKENDS
    }
    for name in dict.fromkeys([*grid.scorers(config), *study_protocol.scorers(config)]):
        scorer = config["scoring"]["scorers"][name]
        block = scorer.get("finetune") or {}
        if block and scorer.get("backend") == "openai":
            base = block.get("base_model") or scorer["model"]
            models[f"scoring.scorers.{name}.finetune.base_model"] = str(base)
    return models


def check_endpoints(config: dict) -> None:
    problems = endpoint_problems(config)
    if problems:
        raise ConfigError(
            f"LLM endpoints the grid calls cannot work ({len(problems)} problem(s)):\n  "
            + "\n  ".join(problems)
        )


def missing_keys(endpoints: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Config key -> unset API-key variable, for the endpoints given."""
    from .llm.backends import api_key_env

    missing = {}
    for where, endpoint in endpoints.items():
        if not calls_llm(endpoint) or endpoint["backend"] == "transformers":
            continue
        if endpoint["backend"] == "openai_compatible" and not endpoint.get("api_key_env"):
            continue  # a local server without a key
        env = api_key_env(endpoint)
        if env and not os.environ.get(env):
            missing[where] = env
    return missing


def endpoints_of_jobs(config: dict, jobs: Iterable[tuple[str, dict]]) -> dict[str, dict]:
    """Endpoints the given (rule name, wildcards) jobs call."""
    endpoints = {}
    for rule, wildcards in jobs:
        if rule in TEACHER_RULES:
            endpoints["teacher"] = config["teacher"]
        elif rule in JUDGE_RULES and wildcards.get("judge") in config["judges"]:
            endpoints[f"judges.{wildcards['judge']}"] = config["judges"][wildcards["judge"]]
        elif _calls_scorer(config, rule, wildcards.get("scorer")):
            name = wildcards["scorer"]
            endpoints[f"scoring.scorers.{name}"] = config["scoring"]["scorers"][name]
        name = wildcards.get("scorer")
        defined = config.get("scoring", {}).get("scorers", {})
        embedding = embedding_endpoint(config, name) if name in defined else None
        if rule in EMBEDDING_RULES and embedding is not None:
            endpoints[f"scoring.scorers.{name}.embedding"] = embedding
    return endpoints


def _calls_scorer(config: dict, rule: str, name: str | None) -> bool:
    """The job of ``rule`` calls scorer ``name``'s endpoint: scoring an answer set of the grid,
    or fine-tuning / asking it on the study's protocol."""
    if rule in SCORER_RULES:
        return name in grid.scorers(config)
    return rule in STUDY_SCORER_RULES and name in study_protocol.scorers(config)


def key_message(missing: dict[str, str]) -> str:
    return "; ".join(f"{where} needs ${env}, which is not set" for where, env in missing.items())


def require_keys(config: dict, jobs: Iterable[tuple[str, dict]]) -> None:
    """Raise ConfigError when a job about to run calls an endpoint whose key is unset (never in
    a cache-only run, which sends nothing)."""
    if config.get("llm", {}).get("cache_only"):
        return
    missing = missing_keys(endpoints_of_jobs(config, jobs))
    if missing:
        raise ConfigError(
            f"API key(s) missing for jobs of this run: {key_message(missing)}. Export the "
            "variable(s) (never put keys in config files) or leave those targets out."
        )
