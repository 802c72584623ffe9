"""The runtime part of the config: settings that say *how* work is done, never *what* it makes.

Snakemake reruns a job when its params change, so a job's spec (``specs.py``, its only param)
holds only what shapes its output. The operational keys (concurrency, rate limits, retries,
timeouts, polling, the API-key variable, the budget cap, job resources, GPU placement) form the
runtime part, a slice derived from the validated config by :func:`split`. The Snakefile exports
it once as JSON in ``$EMPATHY_DISTILL_RUNTIME`` (:func:`export`); jobs read it with
:func:`load`. The environment is not a rerun trigger, so tuning a runtime setting after a stop
redoes nothing, and Snakemake's executors (local, and the Slurm profile) pass it to every job.

The runtime part is derived, not a config section of its own: a user keeps an endpoint's rate
limits next to its model, where the provider's documentation puts them.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

#: the runtime part of the validated config, as JSON (set by the Snakefile, read by jobs)
RUNTIME_ENV = "EMPATHY_DISTILL_RUNTIME"
#: Endpoint keys that only say how requests are sent (every other key shapes the answers).
OPERATIONAL_ENDPOINT_KEYS = (
    "api_key_env",
    "concurrency",
    "requests_per_minute",
    "tokens_per_minute",
    "max_retries",
    "timeout_s",
    "poll_interval_s",
    "batch_size",
)
#: ``llm`` keys that only say how requests are sent: the budget cap, retry waits, queue limits.
RUNTIME_LLM_KEYS = ("budget_usd", "expected_run_days", "retry", "openai", "cache_only")
#: Sections whose ``resources`` (and ``per_student.<name>.resources``) Snakemake schedules with.
RESOURCE_SECTIONS = ("training", "generation")


def _split_endpoint(endpoint: Mapping[str, Any]) -> tuple[dict, dict]:
    identity = {
        k: copy.deepcopy(v) for k, v in endpoint.items() if k not in OPERATIONAL_ENDPOINT_KEYS
    }
    operational = {k: endpoint[k] for k in OPERATIONAL_ENDPOINT_KEYS if k in endpoint}
    return identity, operational


def split(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(identity, runtime): the config without its operational keys, and those keys alone.

    Both keep the config's shape, so ``merge(identity, runtime)`` gives the config back.
    """
    identity = copy.deepcopy(dict(config))
    runtime: dict[str, Any] = {}
    if identity.get("teacher"):
        identity["teacher"], runtime["teacher"] = _split_endpoint(identity["teacher"])
    if identity.get("judges"):
        runtime["judges"] = {}
        for name, endpoint in identity["judges"].items():
            identity["judges"][name], runtime["judges"][name] = _split_endpoint(endpoint)
    scorers = identity.get("scoring", {}).get("scorers")
    if scorers:
        moved = runtime.setdefault("scoring", {}).setdefault("scorers", {})
        for name, endpoint in scorers.items():
            scorers[name], moved[name] = _split_endpoint(endpoint)
            # a classifier's embedding model has operational keys of its own
            if isinstance(scorers[name].get("embedding"), Mapping):
                scorers[name]["embedding"], operational = _split_endpoint(
                    scorers[name]["embedding"]
                )
                if operational:
                    moved[name]["embedding"] = operational
    for key in RUNTIME_LLM_KEYS:
        if key in identity.get("llm", {}):
            runtime.setdefault("llm", {})[key] = identity["llm"].pop(key)
    if "placement" in identity:  # which GPUs a job uses
        runtime["placement"] = identity.pop("placement")
    for section in RESOURCE_SECTIONS:
        part = identity.get(section, {})
        moved: dict[str, Any] = {}
        if "resources" in part:
            moved["resources"] = part.pop("resources")
        for student, own in part.get("per_student", {}).items():
            if "resources" in own:
                moved.setdefault("per_student", {})[student] = {"resources": own.pop("resources")}
        if section == "generation" and not any(part.get("per_student", {}).values()):
            part.pop("per_student", None)  # it holds nothing but resources
        if moved:
            runtime[section] = moved
    return identity, runtime


def identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config without its operational keys: what a whole-grid job's output depends on."""
    return split(config)[0]


def runtime_part(config: Mapping[str, Any]) -> dict[str, Any]:
    """The operational keys of ``config`` alone (what ``$EMPATHY_DISTILL_RUNTIME`` holds)."""
    return split(config)[1]


def merge(identity_part: Mapping[str, Any], runtime: Mapping[str, Any]) -> dict[str, Any]:
    """The config back from its two parts (the inverse of :func:`split`)."""
    from .config import deep_merge

    return deep_merge(dict(identity_part), runtime)


def export(config: Mapping[str, Any], environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Put the runtime part of ``config`` into ``$EMPATHY_DISTILL_RUNTIME`` (the Snakefile)."""
    runtime = runtime_part(config)
    (os.environ if environ is None else environ)[RUNTIME_ENV] = json.dumps(runtime, sort_keys=True)
    return runtime


def load(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The runtime part a job runs with, from ``$EMPATHY_DISTILL_RUNTIME``."""
    raw = (os.environ if environ is None else environ).get(RUNTIME_ENV)
    if raw is None:
        raise ConfigError(
            f"${RUNTIME_ENV} is not set: run this job through Snakemake, which exports the"
            " runtime settings (concurrency, rate limits, retries, budget), or pass --config"
        )
    return parse_json_object(raw, f"${RUNTIME_ENV}", "must hold")


def parse_json_object(text: str, name: str, verb: str = "must be") -> dict[str, Any]:
    """``text`` as a JSON object, or a ConfigError naming ``name`` and what it holds instead."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} is not valid JSON: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{name} {verb} a JSON object, got {type(value).__name__}")
    return value


def endpoint(spec_endpoint: Mapping[str, Any], runtime: Mapping[str, Any], *where: str) -> dict:
    """The full endpoint a client is made from: the spec's identity keys and, from ``runtime``
    at ``where`` (``"teacher"``, ``"judges", name`` or ``"scoring", "scorers", name``), its
    operational keys."""
    operational: Any = runtime
    for key in where:
        operational = operational.get(key, {}) if isinstance(operational, Mapping) else {}
    return {**spec_endpoint, **operational}


def budget_usd(runtime: Mapping[str, Any]) -> float | None:
    """The run's USD cap on API spending (``llm.budget_usd``), None for no cap."""
    return runtime.get("llm", {}).get("budget_usd")
