"""Registry of distillation strategies: each strategy name and its kind.

The single place a strategy is added. Everything else asks this module: the wildcard
constraints of the rules, the config schema's enums (filled in by ``config.load_schema``), and
the stages that branch on a strategy's kind (``teacher``, ``cost``, ``grid``, ``sets``). The
prompt texts stay in ``resources/prompts.json``; ``prompts.Prompts`` reads a strategy's template
by its name. A new single-turn strategy is one ``Strategy(name, SINGLE_TURN)`` line below plus its
template under ``teacher.improve.<name>`` in ``resources/prompts.json``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: One teacher call per source response (template ``teacher.improve.<name>``).
SINGLE_TURN = "single_turn"
#: A multi-turn teacher chat; turn 1 is the single-turn strategy ``parts[0]``, later user turns
#: are ``teacher.<name>.turn<k>_user`` in prompts.json.
SEQUENTIAL = "sequential"
#: No teacher calls of its own: the sets of ``parts`` (single-turn strategies) pooled.
POOLED = "pooled"
#: ``direct`` method: the dataset's responses of one source LLM.
DIRECT_SOURCE = "direct_source"
#: ``direct`` method: the responses of every direct source pooled.
DIRECT_POOLED = "direct_pooled"

KINDS = (SINGLE_TURN, SEQUENTIAL, POOLED, DIRECT_SOURCE, DIRECT_POOLED)
#: Kinds of the improve methods (the teacher rewrites a source response).
IMPROVE_KINDS = (SINGLE_TURN, SEQUENTIAL, POOLED)
#: Kinds of the direct method (the dataset's own LLM responses).
DIRECT_KINDS = (DIRECT_SOURCE, DIRECT_POOLED)
#: Kinds whose teacher output file is written by rule teacher_improve.
TEACHER_CALL_KINDS = (SINGLE_TURN, SEQUENTIAL)


@dataclass(frozen=True)
class Strategy:
    name: str
    kind: str
    #: POOLED: the strategies pooled; SEQUENTIAL: the single-turn strategy of turn 1.
    parts: tuple[str, ...] = ()


_COGNITIVE, _AFFECTIVE, _COMPASSIONATE = (
    "improve_cognitive",
    "improve_affective",
    "improve_compassionate",
)

REGISTRY: dict[str, Strategy] = {
    s.name: s
    for s in (
        # improve methods (Xie et al. 2025, section 3.2), in the paper's order
        Strategy("naive_prompt", SINGLE_TURN),
        Strategy("improve_all_three_dimensions", SINGLE_TURN),
        Strategy("identify_lacking_dimension", SINGLE_TURN),
        Strategy(_COGNITIVE, SINGLE_TURN),
        Strategy(_AFFECTIVE, SINGLE_TURN),
        Strategy(_COMPASSIONATE, SINGLE_TURN),
        Strategy("combined_single_dimensions", POOLED, (_COGNITIVE, _AFFECTIVE, _COMPASSIONATE)),
        Strategy("improve_three_dimensions_sequentially", SEQUENTIAL, (_COGNITIVE,)),
        # direct method: the dataset's LLM responders (dataset.LLM_RESPONDERS), then all pooled
        Strategy("chatgpt", DIRECT_SOURCE),
        Strategy("llama", DIRECT_SOURCE),
        Strategy("gemini", DIRECT_SOURCE),
        Strategy("mixtral", DIRECT_SOURCE),
        Strategy("all", DIRECT_POOLED),
    )
}

#: The baseline the ``vs_naive`` comparison sets the other improve strategies against.
BASELINE = "naive_prompt"


def get(name: str) -> Strategy:
    """The registered strategy ``name``; a clear error naming the registered ones otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown strategy {name!r}; registered (empathy_distill/core/strategies.py): "
            f"{', '.join(REGISTRY)}"
        ) from None


def kind(name: str) -> str:
    """The kind of strategy ``name`` (one of ``KINDS``)."""
    return get(name).kind


def names(*kinds: str) -> tuple[str, ...]:
    """Registered strategy names of the given kinds (every kind when none is given), in order."""
    return tuple(s.name for s in REGISTRY.values() if not kinds or s.kind in kinds)


def improve_names() -> tuple[str, ...]:
    """Strategies an improve method (improve_human, improve_llm) may select."""
    return names(*IMPROVE_KINDS)


def direct_names() -> tuple[str, ...]:
    """Strategies the direct method may select."""
    return names(*DIRECT_KINDS)


def teacher_files(name: str) -> tuple[str, ...]:
    """Strategies whose teacher outputs an improved set of ``name`` is built from."""
    strategy = get(name)
    return strategy.parts if strategy.kind == POOLED else (name,)


def first_turn(name: str) -> str:
    """The single-turn strategy whose request is turn 1 of the sequential strategy ``name``."""
    strategy = get(name)
    if strategy.kind != SEQUENTIAL:
        raise ValueError(f"{name!r} is a {strategy.kind} strategy, not a sequential one")
    return strategy.parts[0]


def direct_sources(name: str) -> tuple[str, ...]:
    """Source LLMs whose dataset responses a direct set of ``name`` is built from."""
    strategy = get(name)
    if strategy.kind == DIRECT_POOLED:
        return names(DIRECT_SOURCE)
    if strategy.kind == DIRECT_SOURCE:
        return (name,)
    raise ValueError(f"{name!r} is a {strategy.kind} strategy, not a direct one")


def wildcard_regex(selected: tuple[str, ...]) -> str:
    """A Snakemake wildcard constraint matching exactly the names ``selected``."""
    return "|".join(re.escape(n) for n in selected)
