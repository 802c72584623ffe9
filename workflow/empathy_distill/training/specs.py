"""Job specs of the training stage's rules (train, train_pride, pride_reasoning), registered with
``core.specs`` (the job contract)."""

from __future__ import annotations

from ..core.methods import TrainingJob
from ..core.specs import Spec, register
from .pride.config import reasoning_spec
from .run import job_settings


@register("train", "train_pride")
def train(config: dict, student: str, method: str, strategy: str, stage: str) -> str:
    """Rule train: the trainer's whole settings for the job, as its trainer resolves them
    (compact JSON in the trainer's key order: the LLaMA-Factory YAML is written in that order)."""
    return job_settings(config, TrainingJob(student, method, strategy, stage))


@register("pride_reasoning")
def pride_reasoning(config: dict, teacher: str) -> Spec:
    """Rule pride_reasoning: the PRIDE teacher, its placement and generation settings, the
    cache (``training.pride.reasoning``)."""
    return reasoning_spec(config, teacher)
