"""The job contract: a job's spec is everything that shapes its output, resolved and defaulted,
built by one registered function per rule.

The Snakefile validates the config once (``config.validate_config``, which fills the schema's
defaults); a rule's input function then asks this registry for its spec
(``build(rule, config, *wildcards)``) and passes it as its only config param (``--spec``, JSON).
Snakemake reruns a job exactly when its spec changes, and the job never re-validates the config
or re-derives the grid: it reads its spec and the files the rule gives it. Operational settings
are not part of any spec (``runtime.py``).

Each stage owns its rules' spec builders and registers them here with ``@register(rule, ...)``
(``distillation/specs.py``, ``training/specs.py``, ``evaluation/specs.py``,
``evaluation/scoring/specs.py``, the ``cost`` command's own); the Snakefile imports every stage
(``empathy_distill.stages``) so that all are registered. Core holds only what every builder
shares: the identity of an endpoint, the LLM files, the JSON form, the CLI side.

By hand, a job's CLI also takes ``--config FILE``: the spec (and the runtime part) are then
built from that file by the same functions.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from . import judges, runtime
from .config import load_config
from .errors import ConfigError

#: What shapes a model's answers; every other endpoint key is operational (runtime.py).
ANSWER_SHAPING_KEYS = ("backend", "model", "mode", "base_url", "sampling", "max_new_tokens")
Spec = dict[str, Any]
#: A spec builder: (validated config, the job's wildcards in the rule's order) -> its spec.
Builder = Callable[..., Any]
#: Rule name -> the builder of its jobs' specs (``register``); filled by the stages on import.
BUILDERS: dict[str, Builder] = {}


def register(*rules: str) -> Callable[[Builder], Builder]:
    """Decorator: ``builder`` makes the spec of every job of ``rules`` (one builder per rule)."""

    def add(builder: Builder) -> Builder:
        for rule in rules:
            known = BUILDERS.get(rule)
            if known is not None and known is not builder:
                raise ValueError(
                    f"rule {rule!r} has a spec builder already ({known.__module__}."
                    f"{known.__qualname__}); one rule, one builder"
                )
            BUILDERS[rule] = builder
        return builder

    return add


def build(rule: str, config: dict, *args: Any) -> Any:
    """The spec of a job of ``rule`` (its wildcards as ``args``) by the builder registered."""
    try:
        builder = BUILDERS[rule]
    except KeyError:
        raise ConfigError(
            f"no spec builder is registered for rule {rule!r} (registered: "
            f"{', '.join(sorted(BUILDERS)) or 'none'}); the stage that owns it registers it"
            " when imported (empathy_distill.stages imports every stage)"
        ) from None
    return builder(config, *args)


def dumps(spec: Spec) -> str:
    """A spec as the rule's param holds it (sorted keys: equal specs are equal strings)."""
    return json.dumps(spec, sort_keys=True)


def endpoint_identity(endpoint: dict[str, Any]) -> dict[str, Any]:
    """The keys of an endpoint that shape its answers or verdicts (a scorer's margin too)."""
    keys = ANSWER_SHAPING_KEYS + (("margin",) if judges.kind_of(endpoint).uses_margin else ())
    return {key: endpoint[key] for key in keys}


def llm_files(config: dict) -> dict[str, str]:
    """The LLM layer's files a calling job's spec names: its cache and its price table."""
    return {"cache_dir": config["llm"]["cache_dir"], "price_table": config["llm"]["price_table"]}


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
        config = load_config(args.config)
        spec = build(config)
        wanted = with_runtime(spec) if callable(with_runtime) else with_runtime
        return spec, runtime.runtime_part(config) if wanted else None
    spec = parse(args.spec)
    wanted = with_runtime(spec) if callable(with_runtime) else with_runtime
    return spec, runtime.load() if wanted else None
