"""Load and validate the workflow configuration against its JSON Schema (draft 2020-12).

Defaults come from the schema, so config.yaml, the schema and the code cannot drift apart; unknown
keys are rejected so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

from .. import REPO_ROOT
from .errors import ConfigError

SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
#: libyaml's loader when available (several times faster: schemas are read at every start).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_YAML_LOADER)


def _extend_with_defaults(validator_class: type) -> type:
    """A validator that fills in ``default`` values while it validates (jsonschema FAQ recipe)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(
        validator: Any, properties: Mapping, instance: Any, schema: Mapping
    ) -> Iterator:
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                subschema = _resolve(validator, subschema)
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


def _resolve(validator: Any, subschema: Mapping) -> Mapping:
    if isinstance(subschema, Mapping) and "$ref" in subschema and "default" not in subschema:
        return validator._resolver.lookup(subschema["$ref"]).contents
    return subschema


_DefaultFillingValidator = _extend_with_defaults(Draft202012Validator)


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    """The schema, with the enums the registries own filled in (strategies, scorer backends)."""
    # Imported here, not at module level: read_yaml's users (the data rules) need no registry.
    from . import judges, strategies

    schema = read_yaml(path)
    defs = schema.get("$defs", {})
    if "improve_strategies" in defs:
        defs["improve_strategies"]["items"]["enum"] = list(strategies.improve_names())
    if "direct_strategies" in defs:
        defs["direct_strategies"]["items"]["enum"] = list(strategies.direct_names())
    scorer = defs.get("scorer", {}).get("properties")
    if scorer is not None:  # an empathy scorer is an LLM endpoint with a kind and a variant
        for key, value in defs["llm_endpoint"]["properties"].items():
            if key != "margin":
                scorer.setdefault(key, copy.deepcopy(value))
    backend = defs.get("llm_endpoint", {}).get("properties", {}).get("backend")
    if backend is not None:
        backend["enum"] += [b for b in judges.SCORERS if b not in backend["enum"]]
    return schema


def _format_error(error: Any) -> str:
    where = "config" + "".join(f"[{part!r}]" for part in error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        hint = f" (allowed keys: {', '.join(allowed)})" if allowed else ""
        return f"{where}: {error.message}{hint}"
    return f"{where}: {error.message}"


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """Validate ``config`` in place, filling in defaults; raise ConfigError naming every bad key."""
    schema = schema if schema is not None else load_schema()
    _check_margins(config, schema)
    fill_defaults(config, schema)
    _check_references(config)
    return config


def fill_defaults(instance: Any, schema: dict) -> Any:
    """Validate ``instance`` against ``schema`` alone, filling in defaults (no cross-key checks:
    a part of the config, e.g. one endpoint, gets no ``grid`` key)."""
    validator = _DefaultFillingValidator(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = "\n  ".join(_format_error(e) for e in errors)
        raise ConfigError(f"invalid configuration ({len(errors)} problem(s)):\n  {lines}")
    return instance


def resolve_resource(path: str | Path) -> Path:
    """A shipped resource path (prompts, price table): as given if it exists, else relative to
    the repository, so a job run from another directory finds the shipped file."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    shipped = REPO_ROOT / path
    return shipped if shipped.exists() else path


def _check_margins(config: dict, schema: dict) -> None:
    """``margin`` is a scorer judge's tie margin: refuse one set on an LLM judge."""
    from . import judges

    endpoints = config.get("judges") if isinstance(config, dict) else None
    margin = schema.get("$defs", {}).get("llm_endpoint", {}).get("properties", {}).get("margin")
    if not isinstance(endpoints, dict) or not margin:
        return
    problems = judges.margin_problems(endpoints, margin.get("default"))
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def _check_references(config: dict) -> None:
    """Cross-key checks JSON Schema cannot express: grid selections name defined entries.

    A selection left out defaults to every defined entry.
    """
    selection = config.setdefault("grid", {})
    selection.setdefault("students", list(config.get("students", {})))
    selection.setdefault("judges", list(config.get("judges", {})))
    from ..training.methods import DEFAULT_GRID_METHODS, grid_methods_problems

    selection.setdefault("methods", list(DEFAULT_GRID_METHODS))
    problems = grid_methods_problems(selection["methods"])
    for section, defined in (
        ("students", config.get("students", {})),
        ("judges", config.get("judges", {})),
    ):
        for name in config.get("grid", {}).get(section, []):
            if name not in defined:
                problems.append(
                    f"config['grid']['{section}']: {name!r} is not defined under "
                    f"config['{section}'] (defined: {', '.join(sorted(defined))})"
                )
    problems += _scoring_problems(config.get("scoring", {}))
    from ..evaluation.scoring import finetune

    for name, scorer in config.get("scoring", {}).get("scorers", {}).items():
        problems += finetune.problems(name, scorer, config.get("students", {}))
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def _scoring_problems(scoring: dict) -> list[str]:
    """``scoring.grid`` names defined scorers; each scorer's variant exists for its kind; a
    classifier's features can be built (no MITI) from a defined subfactor scorer."""
    from ..evaluation.scoring.prompts import CLASSIFIER, DEFAULT_VARIANT, variants

    defined = scoring.get("scorers", {})
    problems = [
        f"config['scoring']['grid']: {name!r} is not defined under config['scoring']['scorers']"
        f" (defined: {', '.join(sorted(defined)) or 'none'})"
        for name in scoring.get("grid", [])
        if name not in defined
    ]
    for name, scorer in defined.items():
        if scorer["kind"] == CLASSIFIER:
            problems += _classifier_problems(name, scorer, defined)
            continue
        offered = variants(scorer["kind"], resolve_resource(scoring["prompts"]))
        variant = scorer["variant"] or DEFAULT_VARIANT[scorer["kind"]]
        if variant not in offered:
            problems.append(
                f"config['scoring']['scorers'][{name!r}]['variant']: {variant!r} is not a"
                f" {scorer['kind']} prompt of {scoring['prompts']} (offered: {', '.join(offered)})"
            )
    return problems


def _embedding_problems(where: str, block: dict) -> list[str]:
    """A classifier's embedding model: MiniLM has one model; an OpenAI one must be named, a
    local OpenAI-compatible server needs its URL."""
    from ..evaluation.embeddings import MINILM, MODEL_NAME

    backend, model = block.get("backend", MINILM), block.get("model")
    if backend == MINILM:
        if model not in (None, MODEL_NAME):
            return [
                f"{where}['model']: backend minilm has only {MODEL_NAME!r}, got {model!r} (for"
                " an OpenAI embedding model set backend: openai)"
            ]
        return []
    problems = []
    if not model:
        problems.append(
            f"{where}['model']: backend {backend!r} needs an embedding model, e.g."
            " text-embedding-3-small"
        )
    if backend == "openai_compatible" and not block.get("base_url"):
        problems.append(
            f"{where}['base_url']: backend openai_compatible needs the server's URL, e.g."
            " http://127.0.0.1:8000/v1"
        )
    return problems


def _classifier_problems(name: str, scorer: dict, defined: dict) -> list[str]:
    from ..evaluation.scoring.classifier.features import SUBFACTORS, feature_parts

    where = f"config['scoring']['scorers'][{name!r}]"
    try:
        parts = feature_parts(scorer["features"], f"{where}['features']")
    except ConfigError as exc:
        return [str(exc)]
    problems = [
        f"{where}[{key!r}]: {scorer[key]!r} is not among {where}[{key + 's'!r}]"
        f" ({', '.join(scorer[key + 's'])})"
        for key in ("model", "selection")
        if scorer[key] != "best" and scorer[key] not in scorer[key + "s"]
    ]
    problems += _embedding_problems(f"{where}['embedding']", scorer.get("embedding") or {})
    if SUBFACTORS not in parts:
        return problems
    other = scorer["subfactor_scorer"]
    if other is None:
        return [
            *problems,
            f"{where}['subfactor_scorer']: features {scorer['features']!r}"
            " need a subfactors scorer",
        ]
    if defined.get(other, {}).get("kind") != SUBFACTORS:
        return [
            *problems,
            f"{where}['subfactor_scorer']: {other!r} is not a subfactors scorer of"
            f" config['scoring']['scorers'] (defined: {', '.join(sorted(defined)) or 'none'})",
        ]
    return problems


def load_config(path: str | Path, overrides: dict | None = None) -> dict:
    """Read a YAML config file, apply ``overrides`` (deep-merged), validate, fill defaults."""
    from ..startup import check_config_file

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    check_config_file(path)  # not YAML or not a mapping: file, line and column
    with open(path, encoding="utf-8") as handle:
        config = yaml.load(handle, Loader=_YAML_LOADER) or {}
    if overrides:
        config = deep_merge(config, overrides)
    return validate_config(config)


def deep_merge(base: dict, override: Mapping) -> dict:
    """Return ``base`` updated recursively by ``override`` (neither is modified)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged
