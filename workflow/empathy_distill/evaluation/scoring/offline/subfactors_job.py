"""Rule ``train_offline_subfactors``: learn gpt-4o-mini's 15 v2 subfactor scores from the
study's responses to train-split dialogues, measure every candidate on held-out train-split
dialogues, keep the best by grouped CV, refit it on all train-split dialogues (cross-fitted).

Protocol: the train split's dialogues are split (seeded) into a fitting part and
``heldout_fraction`` held out, by dialogue. Each candidate's hyperparameter is chosen, and the
candidates are compared, by dialogue-grouped CV on the fitting part only; each is then fitted
on the whole fitting part and measured on the held-out dialogues against gpt-4o-mini (per
subfactor Pearson r, Spearman rho, MAE; per dimension). The held-out dialogues choose nothing.
The deployed model is the chosen candidate, its hyperparameter chosen again by grouped CV on
all train-split dialogues, cross-fitted (``crossfit.py``). Test-split dialogues are never read.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ....core import specs
from ....core.atomic import write_csv
from ....core.command import run_cli
from ....data import scoring_study as study
from ...embeddings import Embedder, default_embedder
from .. import specs as scoring_specs
from .crossfit import holdout_split
from .study_rows import load_train_rows, text_of
from .subfactors import (
    CANDIDATES,
    Choice,
    _Maker,
    agreement,
    choose,
    clip,
    complete,
    embed_texts,
    fit_scorer,
    param_grid,
    with_dimensions,
)

log = logging.getLogger("empathy_distill.evaluation.scoring.offline.subfactors_job")
BASELINE = "fit_mean"
COLUMNS = (
    "scorer",
    "candidate",
    "text",
    "param",
    "cv_mse",
    "cv_pearson_r",
    "chosen",
    "measure",
    "dimension",
    "pearson_r",
    "spearman_rho",
    "mae",
    "n",
    "n_fit_dialogues",
    "n_heldout_dialogues",
    "embedder",
)


def embed(rows: pd.DataFrame, texts: set[str], embedder: Embedder) -> dict[str, np.ndarray]:
    """text kind -> features of every row."""
    return {t: embed_texts(t, lambda part: text_of(rows, part), embedder) for t in texts}


def heldout_rows(
    spec: dict, choice: Choice, x: np.ndarray, y: np.ndarray, ids: list[str], fit, held
) -> pd.DataFrame:
    """One candidate fitted on the fitting part, measured on the held-out dialogues."""
    keep = fit[complete(y[fit])]
    model = _Maker(choice.family, choice.param)().fit(x[keep], y[keep])
    predicted = clip(model.predict(x[held]))
    table = with_dimensions(agreement(y[held], predicted), y[held], predicted)
    return table.assign(
        candidate=choice.candidate,
        text=choice.text,
        param=choice.param,
        cv_mse=choice.cv_mse,
        cv_pearson_r=choice.cv_pearson_r,
    )


def baseline_rows(y: np.ndarray, fit, held) -> pd.DataFrame:
    """Always answering the fitting part's mean of each subfactor (MAE's yardstick)."""
    predicted = np.tile(np.nanmean(y[fit], axis=0), (len(held), 1))
    table = with_dimensions(agreement(y[held], predicted), y[held], predicted)
    return table.assign(
        candidate=BASELINE, text="", param=np.nan, cv_mse=np.nan, cv_pearson_r=np.nan
    )


def run(args: argparse.Namespace, spec: dict, embedder: Embedder | None = None) -> pd.DataFrame:
    """The whole job (``embedder``: tests pass a stand-in; None: cached MiniLM)."""
    embedder = embedder or default_embedder(spec["cache_dir"])
    rows = load_train_rows(args.study_dir, args.train, args.test, spec.get("files"))
    ids = rows["dialog_id"].tolist()
    y = rows[list(study.SUBFACTORS)].to_numpy(dtype=np.float64)
    x = embed(rows, {CANDIDATES[c][0] for c in spec["candidates"]}, embedder)
    fit, held = holdout_split(ids, spec["heldout_fraction"], spec["seed"])
    fit_ids = [ids[i] for i in fit]
    tables, choices = [], []
    for candidate in spec["candidates"]:
        text, family = CANDIDATES[candidate]
        keep = fit[complete(y[fit])]
        choice = choose(
            candidate,
            x[text][keep],
            y[keep],
            [ids[i] for i in keep],
            param_grid(family, spec),
            spec,
        )
        choices.append(choice)
        tables.append(heldout_rows(spec, choice, x[text], y, ids, fit, held))
        log.info(
            "%s: param %g, grouped-CV mean r %.4f", candidate, choice.param, choice.cv_pearson_r
        )
    chosen = max(choices, key=lambda c: c.cv_pearson_r)  # max keeps the first of equal scores
    tables.append(baseline_rows(y, fit, held))
    table = pd.concat(tables, ignore_index=True).assign(
        scorer=spec["scorer"],
        n_fit_dialogues=len(set(fit_ids)),
        n_heldout_dialogues=len({ids[i] for i in held}),
        embedder=embedder.name,
    )
    table["chosen"] = table["candidate"] == chosen.candidate
    # the deployed model: the chosen candidate on every train-split dialogue
    keep = complete(y)
    final = choose(
        chosen.candidate,
        x[chosen.text][keep],
        y[keep],
        [d for d, k in zip(ids, keep, strict=True) if k],
        param_grid(chosen.family, spec),
        spec,
    )
    scorer = fit_scorer(spec["scorer"], final, x[chosen.text], y, ids, spec, embedder.name)
    scorer.save(args.model_out)
    write_csv(args.table_out, table[list(COLUMNS)])
    summary = table[table["chosen"] & table["measure"].str.startswith("mean:")]
    log.info(
        "%s: kept %s; held-out mean r per dimension: %s",
        spec["scorer"],
        scorer.describe(),
        ", ".join(
            f"{m} {r:.3f}" for m, r in zip(summary["measure"], summary["pearson_r"], strict=True)
        ),
    )
    return table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    specs.add_spec_arguments(parser)
    parser.add_argument("--scorer", help="with --config: a key of config.scoring.scorers")
    parser.add_argument("--study-dir", required=True, help="scoring.study_data.dir")
    parser.add_argument("--train", required=True, help="results/data/scorer_train.csv")
    parser.add_argument("--test", required=True, help="results/data/test.csv (never learnt)")
    parser.add_argument("--model-out", required=True)
    parser.add_argument("--table-out", required=True)
    return parser


def _run(args: argparse.Namespace) -> None:
    spec, _ = specs.from_args(
        args, lambda config: scoring_specs.train_offline_subfactors(config, args.scorer)
    )
    Path(args.model_out).parent.mkdir(parents=True, exist_ok=True)
    run(args, spec)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
