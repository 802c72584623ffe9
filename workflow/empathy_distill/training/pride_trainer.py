"""The PRIDE trainer (:mod:`.pride`): privileged-information distillation as a grid stage."""

from __future__ import annotations

import logging
from pathlib import Path

from .methods import TrainingJob
from .pride.config import build_settings

LOG = logging.getLogger(__name__)


class PrideTrainer:
    """:class:`~.methods.Trainer` of the ``pride`` stage (one process; LoRA on the student)."""

    def settings(self, config: dict, job: TrainingJob, previous: str | None) -> dict:
        return build_settings(config, job.student, job.method, job.strategy)

    def train(self, settings: dict, out: Path, nproc_per_node: int) -> Path:
        from .pride.loop import train

        if nproc_per_node > 1:
            LOG.warning("PRIDE trains in one process; nproc_per_node %d -> 1", nproc_per_node)
        return train(settings, out)


TRAINER = PrideTrainer()
