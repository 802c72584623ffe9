"""The config without its operational keys: what a job's output actually depends on.

Snakemake reruns a job when its params change. Keys that only say *how* work is done
(concurrency, rate limits, retries, timeouts, the budget cap, job resources) must therefore never
reach params, or tuning them after a stop would redo finished, paid-for work. Rules put this
reduced config in params and pass the full one through the environment.
"""

from __future__ import annotations

import copy
from typing import Any

from .llm.settings import VERDICT_SHAPING_KEYS, endpoint_identity

#: the full validated config, for jobs that need operational keys too (set by the Snakefile)
CONFIG_ENV = "EMPATHY_DISTILL_CONFIG"


def without_operational(config: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``config`` with every operational key removed."""
    reduced = copy.deepcopy(config)
    if reduced.get("teacher"):
        reduced["teacher"] = endpoint_identity(reduced["teacher"])
    reduced["judges"] = {
        name: endpoint_identity(endpoint, VERDICT_SHAPING_KEYS)
        for name, endpoint in reduced.get("judges", {}).items()
    }
    reduced.get("llm", {}).pop("budget_usd", None)
    for stage in ("training", "generation"):
        reduced.get(stage, {}).pop("resources", None)
    for own in reduced.get("training", {}).get("per_student", {}).values():
        own.pop("resources", None)
    reduced.get("generation", {}).pop("per_student", None)  # it holds nothing but resources
    return reduced
