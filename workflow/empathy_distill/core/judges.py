"""Registry of judge kinds: how a configured judge turns two answer sets into verdicts.

Two kinds behind one interface (``calls_llm``, ``uses_margin``, ``inputs``, ``verdicts``):

* ``LLMJudge`` compares two answers in one prompt through the LLM layer (cache, retries, cost).
* ``ScorerJudge`` rates one answer at a time with a local model; the higher score wins and a
  difference below the judge's ``margin`` is a tie. ``offline`` (the scorer trained on the
  dataset's human ratings) is one; an empathy scorer would be another.

A judge's kind follows from its ``backend``: a backend in ``SCORERS`` is a scorer, any other an
LLM backend. The single place a scorer judge is added is one ``SCORERS`` line (its backend, the
file it scores with and the module that loads it); the workflow, the schema's backend enum
(``config.load_schema``), the cost projection and the start-up checks ask this module.
This module stays import-light: Snakemake's rule files import it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Backend of the scorer trained on the dataset's human ratings (evaluation/offline_judge/).
OFFLINE = "offline"
LLM_KIND = "llm"
SCORER_KIND = "scorer"


@dataclass(frozen=True)
class LLMJudge:
    """Compares two answers through the LLM layer (the paper's pairwise judge prompt)."""

    #: ``module:callable`` producing the verdicts (named, not imported: this module stays
    #: import-light for the rules and the data jobs that ask it what kind a judge is).
    runner: str = "empathy_distill.evaluation.judge:llm_verdicts"
    kind: str = LLM_KIND
    calls_llm: bool = True
    uses_margin: bool = False

    def inputs(self, config: dict) -> dict[str, str]:
        """Files a judge job reads besides the answers: the prompts."""
        return {"prompts": config["prompts"]}

    def verdicts(
        self,
        spec: dict,
        items: Sequence[Any],
        *,
        ask: Callable | None = None,
        cost_report: str | Path | None = None,
        runtime: dict | None = None,
        **_: Any,
    ) -> list[dict]:
        """Verdicts on ``items`` by the judge of ``spec`` (``evaluation.specs.judge``)."""
        return _resolve(self.runner)(spec, items, ask=ask, cost_report=cost_report, runtime=runtime)


@dataclass(frozen=True)
class ScorerJudge:
    """Rates each answer on its own with a local model; ``margin`` is its tie margin."""

    backend: str
    #: The fitted scorer a judge job reads (a rule of workflow/rules/judge.smk writes it).
    model_file: str
    #: Its agreement with the human ratings on the test split (a judge_agreement table row).
    agreement_file: str
    #: ``module:callable`` loading ``model_file`` into an object with ``score(s, u, answers)``.
    loader: str
    #: ``module:callable`` producing the verdicts from the fitted scorer (as ``LLMJudge.runner``).
    runner: str = "empathy_distill.evaluation.judge:scorer_verdicts"
    kind: str = SCORER_KIND
    calls_llm: bool = False
    uses_margin: bool = True

    def inputs(self, config: dict) -> dict[str, str]:
        """Files a judge job reads besides the answers: the fitted scorer."""
        return {"scorer": self.model_file}

    def load(self, path: str | Path) -> Any:
        return _resolve(self.loader)(path)

    def verdicts(
        self,
        spec: dict,
        items: Sequence[Any],
        *,
        scorer_file: str | Path | None = None,
        **_: Any,
    ) -> list[dict]:
        """Verdicts on ``items`` by the scorer in ``scorer_file`` with the spec's tie margin."""
        return _resolve(self.runner)(self, spec, items, scorer_file)


Judge = LLMJudge | ScorerJudge


def _resolve(reference: str) -> Any:
    """The object a ``module:attribute.path`` reference names."""
    module, _, attribute = reference.partition(":")
    target: Any = importlib.import_module(module)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


#: Scorer judges by backend: the single place a new scorer judge is registered.
SCORERS: dict[str, ScorerJudge] = {
    OFFLINE: ScorerJudge(
        OFFLINE,
        model_file="results/judges/offline/model.joblib",
        agreement_file="results/judges/offline/agreement.json",
        loader="empathy_distill.evaluation.offline_judge.model:OfflineScorer.load",
    ),
}
_LLM = LLMJudge()


def kind_of(endpoint: dict[str, Any]) -> Judge:
    """The judge kind of an endpoint config, by its backend."""
    return SCORERS.get(endpoint.get("backend", ""), _LLM)


def judge_kind(config: dict, name: str) -> Judge:
    """The kind of the configured judge ``name`` (``config.judges[name]``)."""
    return kind_of(config["judges"][name])


#: Empathy-scorer kinds that run a fitted local model, never the LLM layer (a ``classifier``
#: scorer of evaluation/scoring/classifier/ has no backend at all).
LOCAL_SCORER_KINDS = ("classifier",)


def calls_llm(endpoint: dict[str, Any] | None) -> bool:
    """An endpoint that sends requests through the LLM layer (needs keys, prices, api_calls)."""
    if not endpoint or endpoint.get("kind") in LOCAL_SCORER_KINDS:
        return False
    return kind_of(endpoint).calls_llm


def scorer_judges(config: dict, names: Sequence[str], backend: str | None = None) -> list[str]:
    """The judges of ``names`` that are scorers (of ``backend`` when given), in order."""
    return [
        n
        for n in names
        if isinstance(judge_kind(config, n), ScorerJudge)
        and (backend is None or config["judges"][n]["backend"] == backend)
    ]


def margin_problems(judges: dict[str, Any], default: float) -> list[str]:
    """``margin`` set on an LLM judge: it has no effect there (an LLM judge says tie itself).

    Checked on the raw config and the validated one alike, so a value equal to the schema
    default (filled into every endpoint) passes.
    """
    problems = []
    for name, endpoint in judges.items():
        if not isinstance(endpoint, dict) or "margin" not in endpoint:
            continue
        if not kind_of(endpoint).uses_margin and endpoint["margin"] != default:
            problems.append(
                f"config['judges'][{name!r}]['margin']: the tie margin applies only to scorer"
                f" judges (backend {', '.join(SCORERS)}); judge {name!r} (backend"
                f" {endpoint.get('backend')!r}) compares two answers through an LLM, which"
                " decides ties itself: remove margin"
            )
    return problems
