"""The ``empathy_change`` figure of one scorer: which dimension of empathy each strategy moves.

Rows: the strategies (method: strategy, stage); columns: student x measure (the rating, or the
cognitive / affective / compassionate means of a subfactor scorer). A cell is the trained
model's mean minus the same student's base model's mean, both from
``results/tables/empathy_scores.csv`` (so the figure shows exactly the table's differences).
Its 95 % interval is a percentile bootstrap over the test dialogues, resampled together for the
two answer sets (paired, seeded by ``evaluation.seed``): in each draw, the mean of the model's
valid scores minus the mean of the base's, as in the table. A cell whose interval excludes 0 is
marked with a star. The values also go to a CSV next to the figure's table.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ...core import grid, specs
from ...core.atomic import write_csv
from ...core.command import run_cli
from ..records import AnswersError, read_jsonl
from . import specs as scoring_specs
from .table import measures, per_answer

COLUMNS = (
    "scorer",
    "student",
    "method",
    "strategy",
    "stage",
    "answer_set",
    "measure",
    "base_mean",
    "mean",
    "change",
    "ci_low",
    "ci_high",
    "significant",
)


def per_dialogue(path: str | Path, kind: str) -> pd.DataFrame:
    """dialog_id -> the measures of one scores file (NaN for an invalid or refused reply)."""
    records = read_jsonl(path)
    if not records:
        raise AnswersError(f"{path}: no scores")
    rows = [
        {"dialog_id": r["dialog_id"], **(per_answer(r["scores"], kind) if r["valid"] else {})}
        for r in records
    ]
    return pd.DataFrame(rows, columns=["dialog_id", *measures(kind)]).set_index("dialog_id")


def difference_ci(
    model: np.ndarray, base: np.ndarray, n_boot: int, seed: int, level: float = 0.95
) -> tuple[float, float]:
    """Paired percentile bootstrap of mean(model) - mean(base) over dialogues (NaN = invalid,
    left out of its side's mean, as in the table)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(model), size=(n_boot, len(model)))
    with warnings.catch_warnings():  # a draw with no valid reply on one side is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        draws = np.nanmean(model[idx], axis=1) - np.nanmean(base[idx], axis=1)
    draws = draws[~np.isnan(draws)]
    if draws.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha])
    return float(low), float(high)


def change_table(spec: dict, table: pd.DataFrame) -> pd.DataFrame:
    """One row per (trained answer set, measure) of the spec's scorer."""
    scorer, kind = spec["scorer"], spec["kind"]
    rows = table[table["scorer"] == scorer]
    base = rows[rows["answer_kind"] == "base"].set_index(["student", "measure"])["mean"]
    out = []
    files: dict[str, pd.DataFrame] = {}

    def scores(tag: str) -> pd.DataFrame:
        if tag not in files:
            files[tag] = per_dialogue(grid.score_path(scorer, tag), kind)
        return files[tag]

    for row in rows[rows["answer_kind"] == "model"].itertuples(index=False):
        if (row.student, row.measure) not in base.index:
            raise AnswersError(
                f"empathy_scores: no base row for student {row.student!r}, measure"
                f" {row.measure!r} of scorer {scorer!r}"
            )
        base_tag = grid.base_tag(row.student)
        model_values = scores(row.answer_set)[row.measure]
        base_values = scores(base_tag)[row.measure].reindex(model_values.index)
        low, high = difference_ci(
            model_values.to_numpy(float),
            base_values.to_numpy(float),
            spec["bootstrap_samples"],
            spec["seed"],
        )
        base_mean = float(base.loc[(row.student, row.measure)])
        out.append(
            {
                "scorer": scorer,
                "student": row.student,
                "method": row.method,
                "strategy": row.strategy,
                "stage": row.stage,
                "answer_set": row.answer_set,
                "measure": row.measure,
                "base_mean": base_mean,
                "mean": float(row.mean),
                "change": float(row.mean) - base_mean,
                "ci_low": low,
                "ci_high": high,
                "significant": bool(low > 0 or high < 0),
            }
        )
    return pd.DataFrame(out, columns=list(COLUMNS))


def plot(changes: pd.DataFrame, scorer: str, out: str | Path) -> None:
    """The heatmap; a star marks a cell whose 95 % interval excludes 0."""
    frame = changes.copy()
    frame["row"] = frame["method"] + ": " + frame["strategy"] + " / " + frame["stage"]
    frame["column"] = frame["student"] + "\n" + frame["measure"]
    fig, ax = plt.subplots(
        figsize=(max(6, 1.1 * frame["column"].nunique() + 3), 0.35 * frame["row"].nunique() + 2)
    )
    if frame.empty:
        ax.text(0.5, 0.5, f"no trained model scored by {scorer}", ha="center", va="center")
        ax.set_axis_off()
    else:
        values = frame.pivot_table(index="row", columns="column", values="change", sort=False)
        marks = frame.pivot_table(index="row", columns="column", values="significant", sort=False)
        limit = float(np.nanmax(np.abs(values.to_numpy()))) or 1.0
        image = ax.imshow(values.to_numpy(), vmin=-limit, vmax=limit, cmap="RdBu", aspect="auto")
        ax.set_xticks(range(values.shape[1]), values.columns)
        ax.set_yticks(range(values.shape[0]), values.index)
        for (i, j), value in np.ndenumerate(values.to_numpy()):
            if not np.isnan(value):
                star = "*" if marks.iloc[i, j] else ""
                ax.text(j, i, f"{value:+.2f}{star}", ha="center", va="center", fontsize=8)
        fig.colorbar(image, ax=ax, label="change of the mean vs the base student")
        ax.set_title(f"Empathy score change vs the base student ({scorer}); * 95 % CI excludes 0")
    fig.tight_layout()
    fig.savefig(out, dpi=120, bbox_inches="tight")  # long titles and colour-bar labels
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Per-dimension change vs the base student.")
    specs.add_spec_arguments(parser)
    parser.add_argument("--scorer", help="with --config: a scorer of scoring.grid")
    parser.add_argument("--table", required=True, help="results/tables/empathy_scores.csv")
    parser.add_argument("--values", required=True, help="CSV of the plotted values")
    parser.add_argument("--out", required=True, help="results/figures/empathy_change_*.png")
    return parser


def _run(args: argparse.Namespace) -> None:
    spec, _ = specs.from_args(
        args, lambda config: scoring_specs.empathy_change(config, args.scorer)
    )
    table = pd.read_csv(args.table, keep_default_na=False, na_values=[""])
    changes = change_table(spec, table)
    write_csv(args.values, changes)
    plot(changes, spec["scorer"], args.out)
    print(f"{args.out}: {len(changes)} cells ({int(changes['significant'].sum())} marked)")


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
