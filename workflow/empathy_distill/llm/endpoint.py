"""Validate one endpoint config (``teacher`` / ``judges.<name>``) and fill its defaults.

Uses the same schema ($defs/llm_endpoint) as the workflow config, so a client made from Python
gets exactly the defaults a Snakemake run would.
"""

from __future__ import annotations

import copy
from typing import Any

from ..core.config import fill_defaults, load_schema
from ..core.errors import ConfigError
from .errors import LLMError


def normalize_endpoint(endpoint: dict[str, Any]) -> dict[str, Any]:
    schema = load_schema()
    sub_schema = {"$defs": schema["$defs"], **schema["$defs"]["llm_endpoint"]}
    endpoint = copy.deepcopy(dict(endpoint))
    try:
        return fill_defaults(endpoint, sub_schema)
    except ConfigError as exc:
        raise LLMError(f"invalid LLM endpoint {endpoint!r}: {exc}") from exc
