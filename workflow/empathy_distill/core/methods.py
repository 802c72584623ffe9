"""The training-method table: the grid's stages (the ``{stage}`` wildcard) and how each trains.

A *stage* of the grid (the last part of ``results/models/...``) is a training method: the trainer
module that runs it (named, not imported: ``empathy_distill.training.<trainer>``, loaded by
``training.methods.trainer_for`` in a training job only), the objective that trainer optimises,
the training set it reads and the method whose adapter it continues. The paper (Xie et al.,
SIGDIAL 2025) trains SFT, then DPO from the SFT model. LLaMA-Factory has its own ``stage``
argument; in this package that one is called the *objective* (``lf_stage`` where it is written
into ``train.yaml``), so the word "stage" means the grid axis only.

The table lives in core because the grid (``core.grid``), the wildcard constraints and the
config's ``grid.methods`` check enumerate it, as ``core.strategies`` and ``core.judges`` hold
theirs. Adding a method (e.g. PRIDE, a trainer with its own loss) is one module
``empathy_distill/training/<trainer>.py`` that defines ``TRAINER`` (a
``training.methods.Trainer``), one line in :data:`REGISTRY`, and its ``training.<name>`` settings
in the config schema. The rules, the wildcard constraint and the grid are generated from
:data:`STAGES`. This module imports nothing heavy: the Snakefile and the data rules read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError

#: Training-set files a data configuration provides (``results/datasets/{method}/{strategy}/``):
#: supervised examples and preference pairs (LLaMA-Factory's two dataset shapes).
TRAINING_SETS = ("sft", "dpo")


@dataclass(frozen=True)
class TrainingMethod:
    """One grid stage: how it is trained and what it starts from."""

    name: str  # the {stage} wildcard and folder name
    trainer: str  # module in empathy_distill.training defining TRAINER
    objective: str  # the trainer's own name for the loss (LLaMA-Factory's `stage` argument)
    training_set: str  # one of TRAINING_SETS
    continues: str | None = None  # the method whose adapter this one resumes and refers to
    #: files the trainer reads besides the training set (the train rule's extra inputs)
    extra_inputs: tuple[str, ...] = ()


#: Name -> method, in training order (a method continues only an earlier one).
REGISTRY: dict[str, TrainingMethod] = {
    m.name: m
    for m in (
        TrainingMethod("sft", trainer="llamafactory_trainer", objective="sft", training_set="sft"),
        TrainingMethod(
            "dpo",
            trainer="llamafactory_trainer",
            objective="dpo",
            training_set="dpo",
            continues="sft",
        ),
        # PRIDE (privileged-information distillation): in config.yaml's grid.methods; reads the
        # dialogues' privileged fields (emotion, Plutchik, sentiment, rating) from train.csv.
        TrainingMethod(
            "pride",
            trainer="pride_trainer",
            objective="pride",
            training_set="sft",
            extra_inputs=("results/data/train.csv",),
        ),
    )
}

#: The grid's stages, in training order: the only definition (rules and grid import it).
STAGES: tuple[str, ...] = tuple(REGISTRY)
#: The methods a grid trains when ``grid.methods`` is left out (the paper's SFT then DPO: a
#: registered method is opt-in; the shipped config.yaml lists PRIDE too).
DEFAULT_GRID_METHODS: tuple[str, ...] = ("sft", "dpo")


def final_stages() -> tuple[str, ...]:
    """Stages no registered method continues (DPO, PRIDE): a student's finished models, the
    ones set against the teacher (``vs_teacher``)."""
    continued = {entry.continues for entry in REGISTRY.values()}
    return tuple(name for name in STAGES if name not in continued)


def grid_methods_problems(selected: list[str]) -> list[str]:
    """Why a ``grid.methods`` selection cannot train (unknown, or lacks what it continues)."""
    problems = []
    for name in selected:
        if name not in REGISTRY:
            problems.append(
                f"config['grid']['methods']: {name!r} is not a registered training method "
                f"(registered: {', '.join(STAGES)})"
            )
        elif REGISTRY[name].continues and REGISTRY[name].continues not in selected:
            problems.append(
                f"config['grid']['methods']: {name!r} continues {REGISTRY[name].continues!r}, "
                "which is not selected"
            )
    return problems


@dataclass(frozen=True)
class TrainingJob:
    """One training job of the grid: a student trained on a data configuration by a method."""

    student: str
    method: str  # distillation method (direct, improve_human, improve_llm)
    strategy: str
    stage: str  # a key of REGISTRY


def method(stage: str) -> TrainingMethod:
    """The registered method of ``stage``; a clear error for an unknown one."""
    try:
        return REGISTRY[stage]
    except KeyError:
        raise ConfigError(
            f"training stage must be one of {', '.join(STAGES)}, got {stage!r}"
        ) from None


def previous_stage(stage: str) -> str | None:
    """The stage whose adapter ``stage`` continues (the train rule's extra input)."""
    return method(stage).continues


def stages_of(trainer: str) -> tuple[str, ...]:
    """The stages a trainer module serves (its ``training.<stage>`` settings are its own)."""
    return tuple(name for name, entry in REGISTRY.items() if entry.trainer == trainer)
