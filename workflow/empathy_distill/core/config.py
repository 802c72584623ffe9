"""Load and validate the workflow configuration against its JSON Schema (draft 2020-12).

Defaults come from the schema, so config.yaml, the schema and the code cannot drift apart; unknown
keys are rejected so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

from .. import REPO_ROOT
from . import judges, strategies
from .errors import ConfigError
from .methods import DEFAULT_GRID_METHODS, grid_methods_problems

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
    endpoints = config.get("judges") if isinstance(config, dict) else None
    margin = schema.get("$defs", {}).get("llm_endpoint", {}).get("properties", {}).get("margin")
    if not isinstance(endpoints, dict) or not margin:
        return
    problems = judges.margin_problems(endpoints, margin.get("default"))
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


#: A semantic config check: the config (validated, defaults filled) -> its problems, each
#: naming its config key. JSON Schema cannot express these (a scorer's prompt variant exists in
#: the prompts file, a classifier's subfactor scorer is defined, ...).
ConfigCheck = Callable[[dict], list[str]]
#: The semantic checks the stages registered (``register_check``), run in registration order
#: by ``validate_config`` after core's own. A stage registers its checks when it is imported;
#: the Snakefile (common.smk) and the commands import every stage (``empathy_distill.stages``).
CONFIG_CHECKS: list[ConfigCheck] = []


def register_check(check: ConfigCheck) -> ConfigCheck:
    """Run ``check`` in every ``validate_config`` (a decorator; registering twice is once)."""
    if check not in CONFIG_CHECKS:
        CONFIG_CHECKS.append(check)
    return check


def _check_references(config: dict) -> None:
    """Cross-key checks JSON Schema cannot express: grid selections name defined entries; then
    every registered stage check.

    A selection left out defaults to every defined entry.
    """
    selection = config.setdefault("grid", {})
    selection.setdefault("students", list(config.get("students", {})))
    selection.setdefault("judges", list(config.get("judges", {})))
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
    for check in CONFIG_CHECKS:
        problems += check(config)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def check_config_file(path: str | Path) -> None:
    """Raise ConfigError naming the file, line and column when ``path`` is not YAML (or JSON)."""
    path = Path(path).absolute()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file ({exc})") from exc
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"{path}: {where}not valid YAML ({problem}); expected a mapping of config keys "
            "(see config.yaml)"
        ) from exc
    if content is not None and not isinstance(content, dict):
        raise ConfigError(
            f"{path}: the top level is a {type(content).__name__}; expected a mapping of config"
            " keys (see config.yaml)"
        )


def load_config(path: str | Path, overrides: dict | None = None) -> dict:
    """Read a YAML config file, apply ``overrides`` (deep-merged), validate, fill defaults."""
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
