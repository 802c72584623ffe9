"""Command-line plumbing shared by every stage that calls an LLM (teacher, judges).

A rule passes the endpoint as JSON (a Snakemake param, so changing the model or sampling reruns
the job) and the cache / price table as paths. The budget cap is read from
``EMPATHY_DISTILL_BUDGET_USD`` when not given: raising the cap after a stop must not look like
a changed parameter to Snakemake, which would rerun (and re-timestamp) every finished job.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import REPO_ROOT
from ..config import load_config, validate_config
from ..errors import ConfigError

BUDGET_ENV = "EMPATHY_DISTILL_BUDGET_USD"
# What shapes a model's answers; every other endpoint key (concurrency, rate limits, retries,
# timeouts, polling, batch size, key variable) is operational and must not rerun finished jobs.
ANSWER_SHAPING_KEYS = ("backend", "model", "mode", "base_url", "sampling", "max_new_tokens")
# A judge's verdicts also depend on the offline scorer's tie margin.
VERDICT_SHAPING_KEYS = (*ANSWER_SHAPING_KEYS, "margin")


def endpoint_identity(endpoint: dict[str, Any], keys: tuple[str, ...] = ANSWER_SHAPING_KEYS):
    """The part of an endpoint config that a rule's params hold (a change reruns the job)."""
    return {key: endpoint.get(key) for key in keys}


def resolve_resource(path: str | Path) -> Path:
    """A shipped resource path: as given if it exists, else relative to the repository."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    shipped = REPO_ROOT / path
    return shipped if shipped.exists() else path


@dataclass
class LLMSettings:
    endpoint: dict[str, Any]
    cache_dir: str
    price_table: Path
    budget_usd: float | None
    cost_report: str | None
    config: dict[str, Any] | None


def add_llm_arguments(parser: argparse.ArgumentParser, cost_report: str) -> None:
    parser.add_argument("--config", help="workflow config (YAML/JSON); endpoint and llm keys")
    parser.add_argument(
        "--config-json", help="the workflow config as JSON (rules pass $EMPATHY_DISTILL_CONFIG)"
    )
    parser.add_argument("--endpoint-json", help="endpoint config as JSON (overrides --config)")
    parser.add_argument("--cache-dir", help="LLM cache directory (default: config llm.cache_dir)")
    parser.add_argument("--price-table", help="price table (default: config llm.price_table)")
    parser.add_argument(
        "--budget", type=float, help=f"USD cap (default: ${BUDGET_ENV} or config llm.budget_usd)"
    )
    parser.add_argument("--cost-report", default=cost_report, help="CSV to append usage to")


def llm_settings(args: argparse.Namespace, role: str = "teacher") -> LLMSettings:
    """Endpoint + llm settings from --config and explicit flags (flags win)."""
    config = None
    if args.config:
        config = load_config(args.config)
    elif getattr(args, "config_json", None):
        try:
            config = validate_config(json.loads(args.config_json))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--config-json is not valid JSON: {exc.msg}") from exc
    llm = (config or {}).get("llm", {})
    if args.endpoint_json:
        endpoint = json.loads(args.endpoint_json)
    elif config is not None and role == "teacher" and config.get("teacher"):
        endpoint = config["teacher"]
    elif config is not None and role in config.get("judges", {}):
        endpoint = config["judges"][role]
    else:
        raise ConfigError(f"no endpoint for {role!r}: pass --config with it or --endpoint-json")
    budget = args.budget
    if budget is None and os.environ.get(BUDGET_ENV):
        budget = float(os.environ[BUDGET_ENV])
    if budget is None:
        budget = llm.get("budget_usd")
    return LLMSettings(
        endpoint=endpoint,
        cache_dir=args.cache_dir or llm.get("cache_dir", "resources/cache"),
        price_table=resolve_resource(
            args.price_table or llm.get("price_table", "resources/prices.yaml")
        ),
        budget_usd=budget,
        cost_report=args.cost_report,
        config=config,
    )
