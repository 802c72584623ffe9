"""The ``rater_variance`` table: how much of the human ratings' variance is the rater's, not
the text's (needs no scorer).

Each response of the dataset was rated once, by one rater who rated only one responder's
responses (so raters are nested in responders). For the train split, the test split and both,
one row per grouping factor (``annotator``, ``responder`` = who wrote the response,
``dialog_id``) with:

* ``f_statistic``, ``p_value``: one-way ANOVA (scipy.stats.f_oneway) of the ratings by factor;
* ``eta_squared`` = SS_between / SS_total = F (g-1) / (F (g-1) + N - g), the share of the
  variance the factor's group means explain (g groups, N ratings);
* ``icc1``: ICC(1), Shrout & Fleiss (1979, Psychological Bulletin 86(2)), the one-way random
  effects ICC (MSB - MSW) / (MSB + (k0-1) MSW) = (F - 1) / (F + k0 - 1), with
  k0 = (N - sum n_i^2 / N) / (g - 1) the group size for unequal groups (Snedecor & Cochran,
  Statistical Methods, 8th ed., 1989, sec. 13.7): the share of variance between raters (or
  responders, dialogues) in a random-effects model; small groups make it noisy.

And the rater's ``empathy_propensity`` against the ratings: Spearman and Pearson (scipy) over the
responses (``factor`` = empathy_propensity) and over raters, their mean rating
(empathy_propensity_rater_mean).
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd
from scipy.stats import f_oneway, pearsonr, spearmanr

from ...core.atomic import write_csv
from ...core.command import run_cli
from ...core.errors import DatasetError
from ..records import read_split
from .responses import SUFFIXES, response_items

FACTORS = ("annotator", "responder", "dialog_id")
PROPENSITY = "empathy_propensity"
COLUMNS = (
    "split",
    "factor",
    "n",
    "groups",
    "f_statistic",
    "p_value",
    "eta_squared",
    "icc1",
    "spearman",
    "spearman_p",
    "pearson",
    "pearson_p",
)


def long_ratings(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """One row per rated response: dialog_id, responder, annotator, rating, propensity."""
    missing = [f"{PROPENSITY}_{s}" for s in SUFFIXES if f"{PROPENSITY}_{s}" not in frame]
    if missing:
        raise DatasetError(f"{source}: missing column(s) {', '.join(missing)}")
    propensity = {
        (str(row["dialog_id"]), s): row[f"{PROPENSITY}_{s}"]
        for row in frame.to_dict("records")
        for s in SUFFIXES
    }
    rows = []
    for r in response_items(frame, source):
        value = pd.to_numeric(propensity[(r.item.dialog_id, r.responder)], errors="coerce")
        rows.append(
            {
                "dialog_id": r.item.dialog_id,
                "responder": r.responder,
                "annotator": r.annotator,
                "rating": float(r.human_rating),
                PROPENSITY: float(value),
            }
        )
    return pd.DataFrame(rows)


def anova(rows: pd.DataFrame, factor: str) -> dict[str, float]:
    """One-way ANOVA of the ratings by ``factor``: F, p, eta squared and ICC(1)."""
    groups = [g.to_numpy() for _, g in rows.groupby(factor)["rating"]]
    n, g = len(rows), len(groups)
    out = {"n": n, "groups": g}
    if g < 2 or n <= g:
        return out | dict.fromkeys(("f_statistic", "p_value", "eta_squared", "icc1"), np.nan)
    with warnings.catch_warnings():  # constant groups: F is inf or NaN, scipy warns
        warnings.simplefilter("ignore")
        result = f_oneway(*groups)
    f, p = float(result.statistic), float(result.pvalue)
    sizes = np.array([len(x) for x in groups], dtype=float)
    k0 = (n - (sizes**2).sum() / n) / (g - 1)
    if np.isinf(f):  # no variance within groups: the factor explains all of it
        eta, icc = 1.0, 1.0
    else:
        eta = f * (g - 1) / (f * (g - 1) + n - g)
        icc = (f - 1) / (f + k0 - 1)
    return out | {"f_statistic": f, "p_value": p, "eta_squared": eta, "icc1": icc}


def correlation(x: pd.Series, y: pd.Series) -> dict[str, float]:
    """Spearman and Pearson (scipy) of two columns, rows with a missing value left out."""
    keep = x.notna() & y.notna()
    x, y = x[keep], y[keep]
    out = {"n": int(keep.sum())}
    if len(x) < 3 or x.nunique() < 2 or y.nunique() < 2:
        return out | dict.fromkeys(("spearman", "spearman_p", "pearson", "pearson_p"), np.nan)
    rho, r = spearmanr(x, y), pearsonr(x, y)
    return out | {
        "spearman": float(rho.statistic),
        "spearman_p": float(rho.pvalue),
        "pearson": float(r.statistic),
        "pearson_p": float(r.pvalue),
    }


def variance_rows(rows: pd.DataFrame, split: str) -> list[dict]:
    out = [{"split": split, "factor": f, **anova(rows, f)} for f in FACTORS]
    by_response = correlation(rows[PROPENSITY], rows["rating"])
    out.append({"split": split, "factor": PROPENSITY, **by_response})
    raters = rows.groupby("annotator").agg(rating=("rating", "mean"), p=(PROPENSITY, "first"))
    out.append(
        {
            "split": split,
            "factor": f"{PROPENSITY}_rater_mean",
            **correlation(raters["p"], raters["rating"]),
            "groups": len(raters),
        }
    )
    return out


def variance_table(train_csv: str, test_csv: str) -> pd.DataFrame:
    """Rows for the train split, the test split and both together."""
    parts = {
        "train": long_ratings(read_split(train_csv), train_csv),
        "test": long_ratings(read_split(test_csv), test_csv),
    }
    parts["all"] = pd.concat([parts["train"], parts["test"]], ignore_index=True)
    rows = [row for split, frame in parts.items() for row in variance_rows(frame, split)]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Rater vs text variance of the human ratings.")
    parser.add_argument("--train", required=True, help="results/data/train.csv")
    parser.add_argument("--test", required=True, help="results/data/test.csv")
    parser.add_argument("--out", required=True, help="results/tables/rater_variance.csv")
    return parser


def _run(args: argparse.Namespace) -> None:
    table = variance_table(args.train, args.test)
    write_csv(args.out, table)
    print(f"{args.out}: {len(table)} rows")


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
