"""Job specs of the training stage's rules (train, train_pride, pride_reasoning,
pride_teacher_outputs), registered with
``core.specs`` (the job contract)."""

from __future__ import annotations

from ..core.errors import ConfigError
from ..core.methods import TrainingJob
from ..core.specs import Spec, register
from .pride.config import build_settings, reasoning_spec
from .pride.teacher_store import spec_of
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


@register("pride_teacher_outputs")
def pride_teacher_outputs(config: dict, student: str, method: str, strategy: str) -> Spec:
    """Rule pride_teacher_outputs: everything that shapes one configuration's precomputed
    teacher outputs (teacher model, revision, adapter, templates, privileged-field policy, k,
    temperature, cutoff_len, the SFT set), as the PRIDE job reading them derives it."""
    settings = build_settings(config, student, method, strategy)
    if not settings.get("teacher_outputs_dir"):
        raise ConfigError(
            f"PRIDE job {student}/{method}/{strategy} precomputes no teacher outputs "
            f"(training.pride.teacher_outputs: {settings['teacher_outputs']}, or no teacher term)"
        )
    return spec_of(settings)
