"""How evaluation commands receive their configuration.

``--config PATH``: a whole workflow config (validated, defaults filled). ``--settings JSON``: the
slice of the already validated Snakemake config that one job depends on; rules pass slices so
that a config change reruns only the jobs it affects (Snakemake reruns a job when its params
change), e.g. adding a student does not re-judge every pair.
"""

from __future__ import annotations

import argparse
import json

from ..config import load_config
from ..errors import ConfigError


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--config", help="workflow config file (YAML/JSON), validated")
    group.add_argument("--settings", help="JSON slice of the validated workflow config")


def settings_from(args: argparse.Namespace) -> dict:
    if getattr(args, "config", None):
        return load_config(args.config)
    if getattr(args, "settings", None):
        try:
            value = json.loads(args.settings)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--settings is not valid JSON: {exc.msg}") from exc
        if not isinstance(value, dict):
            raise ConfigError("--settings must be a JSON object")
        return value
    return {}
