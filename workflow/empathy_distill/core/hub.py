"""Hugging Face Hub models by name: what is a Hub id, where its fetch manifest goes, the jobs'
environment. No huggingface_hub import here: the Snakefile plans with the core install alone.

WHY: compute nodes have no internet and GPU hours must not be spent finding out that a licence
was never accepted. A local job (rule ``fetch_model``, :mod:`.hub_fetch`) downloads each Hub model
the grid loads before any job that loads it; every other job runs with ``HF_HUB_OFFLINE=1`` on
the same cache (:func:`job_environment`).
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import EmpathyDistillError

HUB_URL = "https://huggingface.co"
#: The only place a Hub token is read from (never a token file, never the config).
TOKEN_ENV = "HF_TOKEN"
#: Set to 1 for every job but the fetch: a job that would download fails instead of waiting.
OFFLINE_ENV = "HF_HUB_OFFLINE"
#: The hub cache (huggingface_hub's own variable; default $HF_HOME/hub).
CACHE_ENV = "HF_HUB_CACHE"
#: What a job loads: safetensors weights (single file or shards with their index), the model's
#: config and generation defaults, and every tokenizer file. Not the ``.bin`` / ``.pth`` copies,
#: nor ``consolidated.safetensors`` (Mistral's own format, a second full copy of the weights).
ALLOW_PATTERNS = (
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)
#: Where fetch manifests go (one per model: ``results/weights/<owner>/<name>.json``).
MANIFEST_DIR = "results/weights"
#: owner/name as the Hub spells repository ids (a bare name is a legacy id like ``gpt2``).
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class WeightsError(EmpathyDistillError):
    """A Hub model cannot be fetched or is not in the cache."""


def is_hub_model(model: str) -> bool:
    """A Hub repository id, not a local folder, ``builtin:`` model or path-looking string."""
    if ":" in model or model.startswith((".", "/", "~")) or Path(model).exists():
        return False
    return bool(_REPO_ID.match(model))


def is_commit(revision: str | None) -> bool:
    """A full commit hash: the only revision that pins a model (branches and tags move)."""
    return bool(revision and _COMMIT.match(revision))


def licence_page(repo: str) -> str:
    return f"{HUB_URL}/{repo}"


def manifest_path(repo: str) -> str:
    return f"{MANIFEST_DIR}/{repo}.json"


def job_environment(cache_dir: str | None) -> dict[str, str]:
    """Variables every job but the fetch runs with: offline, and the configured cache (absolute,
    so a job on another node's working directory finds it); None keeps huggingface_hub's own
    default ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    env = {OFFLINE_ENV: "1"}
    if cache_dir:
        env[CACHE_ENV] = str(Path(cache_dir).expanduser().resolve())
    return env
