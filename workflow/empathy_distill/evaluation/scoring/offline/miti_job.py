"""Rule ``train_miti_tagger``: learn the study's 15 MITI codes from its responses to
train-split dialogues, report per-code F1 on held-out train-split dialogues, refit on all of
them (cross-fitted) for the classifiers' ``miti`` features.

Protocol as the offline subfactor scorer's (``subfactors_job.py``): a seeded dialogue split of
the train split into a fitting part and ``heldout_fraction`` held out; thresholds chosen by
grouped CV on the fitting part only; the held-out dialogues choose nothing. Test-split
dialogues are never read.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd

from ....core import specs
from ....core.atomic import write_csv
from ....core.command import run_cli
from ....data.scoring_study import MITI_CODES
from ...embeddings import Embedder, default_embedder
from .. import specs as scoring_specs
from .crossfit import holdout_split
from .miti import MitiTagger, code_table, fit_tagger
from .study_rows import CONTEXT, load_train_rows, text_of

log = logging.getLogger("empathy_distill.evaluation.scoring.offline.miti_job")


def run(args: argparse.Namespace, spec: dict, embedder: Embedder | None = None) -> pd.DataFrame:
    """The whole job (``embedder``: tests pass a stand-in; None: cached MiniLM)."""
    embedder = embedder or default_embedder(spec["cache_dir"])
    rows = load_train_rows(args.study_dir, args.train, args.test, spec.get("files"))
    ids = rows["dialog_id"].tolist()
    y = rows[list(MITI_CODES)].to_numpy(dtype=np.float64)
    x = np.asarray(embedder.encode(text_of(rows, CONTEXT)), dtype=np.float64)
    fit, held = holdout_split(ids, spec["heldout_fraction"], spec["seed"])
    c, folds, seed = spec["c"], spec["cv_folds"], spec["seed"]
    # fitted on the fitting part (thresholds by its grouped CV), measured on the held-out part
    fitted, thresholds = fit_tagger(x[fit], y[fit], [ids[i] for i in fit], c, folds, seed)
    table = code_table(y[held], fitted.full.predict(x[held]), thresholds, y[fit]).assign(
        n_heldout=len(held),
        n_fit_dialogues=len({ids[i] for i in fit}),
        n_heldout_dialogues=len({ids[i] for i in held}),
        embedder=embedder.name,
    )
    final, final_thresholds = fit_tagger(x, y, ids, c, folds, seed)
    tagger = MitiTagger(final, final_thresholds, c, embedder.name, trained_on=sorted(set(ids)))
    tagger.save(args.model_out)
    write_csv(args.table_out, table)
    for row in table.itertuples(index=False):
        log.info("%s: F1 %.3f (support %d)", row.code, row.f1, row.support)
    return table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    specs.add_spec_arguments(parser)
    parser.add_argument("--study-dir", required=True, help="scoring.study_data.dir")
    parser.add_argument("--train", required=True, help="results/data/scorer_train.csv")
    parser.add_argument("--test", required=True, help="results/data/test.csv (never learnt)")
    parser.add_argument("--model-out", required=True)
    parser.add_argument("--table-out", required=True)
    return parser


def _run(args: argparse.Namespace) -> None:
    spec, _ = specs.from_args(args, scoring_specs.train_miti_tagger)
    run(args, spec)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
