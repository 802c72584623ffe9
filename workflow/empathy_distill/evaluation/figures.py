"""Figures of the win-rate table (matplotlib PNGs for the Snakemake report).

* ``heatmap``: win rate against the base student, data configuration (method: strategy) x
  student/stage, one figure per judge (the layout of the paper's Table 1).
* ``targeted_vs_naive``: win rate of each targeted improvement strategy against
  ``naive_prompt`` at the same method/student/stage, with 95% intervals (the paper's
  "+10 points" claim: bars above 0.5 support it).
* ``sft_vs_dpo``: win rate against the base student after SFT and after SFT+DPO side by side,
  with intervals.
A figure whose comparisons are not in the configured grid says so instead of being empty.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..core.command import run_cli
from ..core.grid import FIGURE_KINDS as KINDS


def _empty(ax: plt.Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    ax.set_axis_off()


def _config_label(frame: pd.DataFrame) -> pd.Series:
    return frame["method"].astype(str) + ": " + frame["strategy"].astype(str)


def heatmap(table: pd.DataFrame, judge: str, out: str | Path) -> None:
    rows = table[(table["judge"] == judge) & (table["comparison"] == "vs_base")].copy()
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(rows), 8) / 2 + 2))
    if rows.empty:
        _empty(ax, f"no fine-tuned model vs base comparisons judged by {judge}")
    else:
        rows["config"] = _config_label(rows)
        rows["column"] = rows["student"].astype(str) + "\n" + rows["stage"].astype(str)
        grid = rows.pivot_table(index="config", columns="column", values="win_rate", sort=False)
        image = ax.imshow(grid.to_numpy(), vmin=0, vmax=1, cmap="RdBu", aspect="auto")
        ax.set_xticks(range(grid.shape[1]), grid.columns)
        ax.set_yticks(range(grid.shape[0]), grid.index)
        for (i, j), value in np.ndenumerate(grid.to_numpy()):
            if not np.isnan(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
        fig.colorbar(image, ax=ax, label="win rate vs base (ties = 1/2)")
        ax.set_title(f"Win rate against the base student ({judge})")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def _bars(ax: plt.Axes, labels: list[str], groups: dict[str, pd.DataFrame]) -> None:
    width = 0.8 / max(len(groups), 1)
    x = np.arange(len(labels))
    for k, (name, frame) in enumerate(groups.items()):
        frame = frame.set_index("label").reindex(labels)
        err = np.vstack([frame["win_rate"] - frame["ci_low"], frame["ci_high"] - frame["win_rate"]])
        ax.bar(
            x + k * width - 0.4 + width / 2,
            frame["win_rate"],
            width,
            yerr=err,
            capsize=2,
            label=name,
        )
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("win rate (95% CI)")
    ax.legend(fontsize=7)


def targeted_vs_naive(table: pd.DataFrame, judge: str, out: str | Path) -> None:
    rows = table[(table["judge"] == judge) & (table["comparison"] == "vs_naive")].copy()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    if rows.empty:
        _empty(ax, f"no targeted-strategy vs naive_prompt comparisons judged by {judge}")
    else:
        rows["label"] = _config_label(rows)
        rows["group"] = rows["student"].astype(str) + " " + rows["stage"].astype(str)
        labels = list(dict.fromkeys(rows["label"]))
        _bars(ax, labels, {g: f for g, f in rows.groupby("group", sort=False)})
        ax.set_title(f"Targeted strategies against naive_prompt ({judge})")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def sft_vs_dpo(table: pd.DataFrame, judge: str, out: str | Path) -> None:
    rows = table[(table["judge"] == judge) & (table["comparison"] == "vs_base")].copy()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    if rows.empty:
        _empty(ax, f"no fine-tuned model vs base comparisons judged by {judge}")
    else:
        rows["label"] = rows["student"].astype(str) + " " + _config_label(rows)
        labels = list(dict.fromkeys(rows["label"]))
        names = {"sft": "SFT", "dpo": "SFT+DPO", "pride": "PRIDE"}
        _bars(ax, labels, {names.get(s, s): f for s, f in rows.groupby("stage", sort=False)})
        ax.set_title(f"SFT vs SFT+DPO: win rate against the base student ({judge})")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Plot the win-rate table.")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--table", required=True, help="results/tables/win_rates.csv")
    parser.add_argument("--judge", required=True)
    parser.add_argument("--out", required=True, help="PNG path")
    return parser


def _run(args: argparse.Namespace) -> None:
    table = pd.read_csv(args.table, keep_default_na=False, na_values=[""])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    {"heatmap": heatmap, "targeted_vs_naive": targeted_vs_naive, "sft_vs_dpo": sft_vs_dpo}[
        args.kind
    ](table, args.judge, args.out)
    print(args.out)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
