"""The scoring stage's semantic config checks (what JSON Schema cannot say about ``scoring``),
registered with core's ``config.register_check``: ``validate_config`` runs them once the stage
is imported (the Snakefile and the commands import every stage).
"""

from __future__ import annotations

from ...core import judges
from ...core.config import register_check, resolve_resource
from ...core.errors import ConfigError
from ..embeddings import MINILM, MODEL_NAME
from . import finetune, study_protocol
from .classifier.features import SUBFACTORS, feature_parts
from .prompts import CLASSIFIER, DEFAULT_VARIANT, variants

#: ``backend`` of a subfactors scorer that is a fitted local model (``scoring/offline/``): the
#: offline judge's backend name, so ``core.judges`` counts it as calling no LLM (no key, no
#: price, no api_calls); and the one prompt variant it learns (the study scored v2).
OFFLINE_BACKEND = judges.OFFLINE
OFFLINE_VARIANT = "v2"


@register_check
def scoring_problems(config: dict) -> list[str]:
    """Every problem of ``config['scoring']``: its grid, its scorers' variants and classifier
    features, each scorer's ``finetune`` block (``finetune.problems``) and the scorers of the
    study's protocol (``study_protocol.problems``)."""
    scoring = config.get("scoring", {})
    problems = _scoring_problems(scoring) + study_protocol.problems(config)
    for name, scorer in scoring.get("scorers", {}).items():
        problems += finetune.problems(name, scorer, config.get("students", {}))
    return problems


def _scoring_problems(scoring: dict) -> list[str]:
    """``scoring.grid`` names defined scorers; each scorer's variant exists for its kind; an
    offline scorer learns the study's scores; a classifier's features can be built from a
    defined subfactor scorer."""
    defined = scoring.get("scorers", {})
    problems = [
        f"config['scoring']['grid']: {name!r} is not defined under config['scoring']['scorers']"
        f" (defined: {', '.join(sorted(defined)) or 'none'})"
        for name in scoring.get("grid", [])
        if name not in defined
    ]
    for name, scorer in defined.items():
        if scorer["kind"] == CLASSIFIER:
            problems += _classifier_problems(name, scorer, defined)
            continue
        problems += _offline_problems(name, scorer)
        offered = variants(scorer["kind"], resolve_resource(scoring["prompts"]))
        variant = scorer["variant"] or DEFAULT_VARIANT[scorer["kind"]]
        if variant not in offered:
            problems.append(
                f"config['scoring']['scorers'][{name!r}]['variant']: {variant!r} is not a"
                f" {scorer['kind']} prompt of {scoring['prompts']} (offered: {', '.join(offered)})"
            )
    return problems


def _offline_problems(name: str, scorer: dict) -> list[str]:
    """A ``backend: offline`` scorer learns gpt-4o-mini's 15 v2 subfactor scores (the study's
    data has no other) from MiniLM embeddings; ``offline`` settings belong to it only."""
    where = f"config['scoring']['scorers'][{name!r}]"
    if scorer.get("backend") != OFFLINE_BACKEND:
        if scorer.get(OFFLINE_BACKEND) is not None:  # its settings block bears its name
            return [f"{where}['offline']: only a scorer with backend {OFFLINE_BACKEND} takes it"]
        return []
    problems = []
    if scorer["kind"] != SUBFACTORS:
        problems.append(
            f"{where}['kind']: backend {OFFLINE_BACKEND} learns the study's subfactor scores,"
            f" so its kind is subfactors, not {scorer['kind']!r}"
        )
    elif (scorer["variant"] or DEFAULT_VARIANT[SUBFACTORS]) != OFFLINE_VARIANT:
        problems.append(
            f"{where}['variant']: backend {OFFLINE_BACKEND} learns gpt-4o-mini's"
            f" {OFFLINE_VARIANT} scores (the study's), not {scorer['variant']!r}"
        )
    if scorer["model"] != MODEL_NAME:
        problems.append(
            f"{where}['model']: backend {OFFLINE_BACKEND} embeds with {MODEL_NAME!r}, got"
            f" {scorer['model']!r}"
        )
    if scorer.get("finetune"):
        problems.append(
            f"{where}['finetune']: backend {OFFLINE_BACKEND} is trained by its own rule"
        )
    return problems


def _embedding_problems(where: str, block: dict) -> list[str]:
    """A classifier's embedding model: MiniLM has one model; an OpenAI one must be named, a
    local OpenAI-compatible server needs its URL."""
    backend, model = block.get("backend", MINILM), block.get("model")
    if backend == MINILM:
        if model not in (None, MODEL_NAME):
            return [
                f"{where}['model']: backend minilm has only {MODEL_NAME!r}, got {model!r} (for"
                " an OpenAI embedding model set backend: openai)"
            ]
        return []
    problems = []
    if not model:
        problems.append(
            f"{where}['model']: backend {backend!r} needs an embedding model, e.g."
            " text-embedding-3-small"
        )
    if backend == "openai_compatible" and not block.get("base_url"):
        problems.append(
            f"{where}['base_url']: backend openai_compatible needs the server's URL, e.g."
            " http://127.0.0.1:8000/v1"
        )
    return problems


def _classifier_problems(name: str, scorer: dict, defined: dict) -> list[str]:
    where = f"config['scoring']['scorers'][{name!r}]"
    try:
        parts = feature_parts(scorer["features"], f"{where}['features']")
    except ConfigError as exc:
        return [str(exc)]
    problems = [
        f"{where}[{key!r}]: {scorer[key]!r} is not among {where}[{key + 's'!r}]"
        f" ({', '.join(scorer[key + 's'])})"
        for key in ("model", "selection")
        if scorer[key] != "best" and scorer[key] not in scorer[key + "s"]
    ]
    problems += _embedding_problems(f"{where}['embedding']", scorer.get("embedding") or {})
    if SUBFACTORS not in parts:
        return problems
    other = scorer["subfactor_scorer"]
    if other is None:
        return [
            *problems,
            f"{where}['subfactor_scorer']: features {scorer['features']!r}"
            " need a subfactors scorer",
        ]
    if defined.get(other, {}).get("kind") != SUBFACTORS:
        return [
            *problems,
            f"{where}['subfactor_scorer']: {other!r} is not a subfactors scorer of"
            f" config['scoring']['scorers'] (defined: {', '.join(sorted(defined)) or 'none'})",
        ]
    return problems
