"""Which Hugging Face Hub models the configured grid loads, at which revision (rule fetch_model).

WHY here, in the commands layer: the answer composes every stage (students and their PRIDE
teachers, a local teacher, local scorers and judges); the fetch itself is generic
(:mod:`empathy_distill.core.hub`). Built-in models (``builtin:tiny``, ``builtin:smollm2_135m``),
local folders and MiniLM (a PyPI package) need no fetch, so the offline profiles plan no fetch job.

Two start-up checks: :func:`check` (no network, every plan: one revision per model, a warning for
each model not pinned to a commit) and :func:`require_access` (a real run, before its first job:
the Hub is asked whether ``$HF_TOKEN`` may download each model still to fetch, and whether its
revision exists), so a licence not accepted stops the run before any GPU is asked for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from .core import grid, hub, specs
from .core.errors import ConfigError
from .evaluation.scoring import finetune as scorer_finetune
from .training.pride import config as pride_config


@dataclass
class HubModel:
    """A Hub repository the grid loads, its revision (None: the default branch) and the config
    keys that name it."""

    repo: str
    revision: str | None
    used_by: list[str] = field(default_factory=list)


def _entries(config: dict) -> Iterable[tuple[str, dict]]:
    """(config key, entry with model and maybe revision) of every model the grid's jobs load."""
    students = config["students"]
    for name in grid.students(config):
        yield f"students.{name}", students[name]
        if "pride" in config["grid"]["methods"]:
            teacher = pride_config.teacher_of(config, name)
            if teacher != name:
                yield f"students.{teacher}", students[teacher]
    teacher = config.get("teacher") or {}
    if teacher.get("backend") == "transformers":
        yield "teacher", teacher
    for name in grid.judges(config):
        if config["judges"][name].get("backend") == "transformers":
            yield f"judges.{name}", config["judges"][name]
    for name in grid.scorers(config):
        scorer = config["scoring"]["scorers"][name]
        if scorer.get("backend") != "transformers":
            continue
        if scorer_finetune.is_finetuned(scorer):  # scored with the merged model the job writes
            base = {"model": scorer_finetune.base_model(scorer)}
            yield f"scoring.scorers.{name}.finetune.base_model", base
        else:
            yield f"scoring.scorers.{name}", scorer


def grid_models(config: dict) -> dict[str, HubModel]:
    """Repo id -> :class:`HubModel` for every Hub model the grid loads. Two config entries of one
    repository must agree on its revision (one cache snapshot, one manifest)."""
    models: dict[str, HubModel] = {}
    for key, entry in _entries(config):
        repo = entry["model"]
        if not hub.is_hub_model(repo):
            continue
        revision = entry.get("revision")
        model = models.setdefault(repo, HubModel(repo, revision))
        if model.revision != revision:
            raise ConfigError(
                f"{key}.revision {revision!r} and {model.used_by[0]}.revision "
                f"{model.revision!r} differ for one model {repo}: give one revision"
            )
        if key not in model.used_by:
            model.used_by.append(key)
    return models


def manifests(config: dict, entry: dict) -> list[str]:
    """The fetch manifest a job loading this model entry waits for (none for a non-Hub model)."""
    model = entry.get("model", "")
    return [hub.manifest_path(model)] if hub.is_hub_model(model) else []


@specs.register("fetch_model")
def fetch_spec(config: dict, repo: str) -> specs.Spec:
    """The fetch job's spec: the model and its revision (a new revision refetches)."""
    models = grid_models(config)
    if repo not in models:
        raise ConfigError(f"rule fetch_model: {repo} is not a Hub model of the grid")
    return {"model": repo, "revision": models[repo].revision}


def check(config: dict) -> list[str]:
    """Start-up check without network: raises on conflicting revisions, returns one warning per
    model that is not pinned to a commit (its fetch resolves the branch, recorded in its
    manifest, but a later fetch may get other weights)."""
    warnings = []
    for model in grid_models(config).values():
        if not hub.is_commit(model.revision):
            where = ", ".join(model.used_by)
            warnings.append(
                f"model {model.repo} ({where}) is not pinned to a commit (revision "
                f"{model.revision or 'main'}): the run is not reproducible; set revision to a "
                f"commit of {hub.licence_page(model.repo)}/commits/main"
            )
    return warnings


def require_access(config: dict, repos: Iterable[str]) -> None:
    """Before a real run's first job: may ``$HF_TOKEN`` download each of ``repos`` at its
    revision? Asked in a child process with ``HF_HUB_OFFLINE=0`` (this process's jobs run
    offline); every refusal is reported at once, then the run stops."""
    models = grid_models(config)
    wanted = [{"model": r, "revision": models[r].revision} for r in sorted(set(repos))]
    if not wanted:
        return
    env = {**os.environ, hub.OFFLINE_ENV: "0"}
    command = [sys.executable, "-m", "empathy_distill.core.hub_fetch", "check", json.dumps(wanted)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ConfigError(done.stderr.strip() or done.stdout.strip())
