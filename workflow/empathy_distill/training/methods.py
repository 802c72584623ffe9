"""Training methods' trainers: the :class:`Trainer` protocol and how a stage finds its trainer.

The table of methods (the grid's stages: name, trainer module, objective, training set, the
method it continues) is ``core.methods``, re-exported here: the grid enumerates it below every
stage. A trainer module ``empathy_distill/training/<trainer>.py`` defines ``TRAINER``; it is
imported only by the training job that needs it (``trainer_for``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

from ..core.methods import (
    DEFAULT_GRID_METHODS,
    REGISTRY,
    STAGES,
    TRAINING_SETS,
    TrainingJob,
    TrainingMethod,
    final_stages,
    grid_methods_problems,
    method,
    previous_stage,
    stages_of,
)

__all__ = [
    "DEFAULT_GRID_METHODS",
    "REGISTRY",
    "STAGES",
    "TRAINING_SETS",
    "Trainer",
    "TrainingJob",
    "TrainingMethod",
    "final_stages",
    "grid_methods_problems",
    "method",
    "previous_stage",
    "registry_problems",
    "stages_of",
    "trainer_for",
]


class Trainer(Protocol):
    """A training backend: a dataset and a base model in, an adapter directory out.

    ``settings`` returns everything that shapes the adapter (JSON-serialisable); the train rule
    holds it as a param, so Snakemake retrains exactly when it changes. ``train`` runs on the
    training machine with those settings and writes the adapter files into ``out``
    (``adapter_model.safetensors``, ``adapter_config.json``, ``train_results.json``,
    ``training_loss.png``).
    """

    def settings(self, config: dict, job: TrainingJob, previous: str | None) -> dict: ...

    def train(self, settings: dict, out: Path, nproc_per_node: int) -> Path: ...


def trainer_for(stage: str) -> Trainer:
    """The trainer of ``stage``, imported only when a job needs it."""
    module = importlib.import_module(f"{__package__}.{method(stage).trainer}")
    return module.TRAINER


def registry_problems() -> list[str]:
    """Inconsistencies of REGISTRY (checked by the tests, so a bad new line fails CI)."""
    problems = []
    for index, entry in enumerate(REGISTRY.values()):
        if entry.training_set not in TRAINING_SETS:
            problems.append(f"{entry.name}: training_set {entry.training_set!r} is not a set kind")
        if entry.continues is not None and entry.continues not in STAGES[:index]:
            problems.append(f"{entry.name}: continues {entry.continues!r}, not an earlier method")
        if not (Path(__file__).parent / f"{entry.trainer}.py").is_file():
            problems.append(f"{entry.name}: no trainer module {entry.trainer}.py")
    return problems
