"""Answer lengths per answer set: a table and a box plot for the report.

Length is in words (``records.n_words``, the unit of the paper's 28-word target), over every test
dialogue, for the human responses, the teacher (when the grid has its answers), each base student
and each trained model. Judges tend to prefer longer answers, and distillation mostly changes
length first, so a reader needs this next to the win rates.

``token_cap_share`` is the share of answers that stopped at ``generation.max_new_tokens`` instead
of ending on their own (the answer records' ``hit_token_cap``, written by ``generate.py``); it is
empty where the records do not say (the human and teacher answers, or answers generated before
the field existed).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .answer_sets import AnswerSet, human_set, read_answer_set, reading_order
from .records import n_words, read_split

COLUMNS = [
    "answer_by",
    "kind",
    "student",
    "method",
    "strategy",
    "stage",
    "n",
    "mean_words",
    "median_words",
    "p10_words",
    "p90_words",
    "min_words",
    "max_words",
    "empty_share",
    "token_cap_share",
    "max_new_tokens",
]


def _cap(records: list[dict]) -> tuple[float, object]:
    """(share of answers that hit the token cap, the cap) where every record says; else NaN."""
    flags = [r.get("hit_token_cap") for r in records]
    share = float(np.mean(flags)) if flags and all(isinstance(f, bool) for f in flags) else math.nan
    caps = {(r.get("generation") or {}).get("max_new_tokens") for r in records}
    cap = caps.pop() if len(caps) == 1 else None
    return share, (cap if isinstance(cap, int) else "")


def words_of(answer_set: AnswerSet, dialog_ids: Sequence[str]) -> list[int]:
    return [n_words(answer_set.answer(d)) for d in dialog_ids]


def length_table(sets: Sequence[AnswerSet], dialog_ids: Sequence[str]) -> pd.DataFrame:
    """One row per answer set, in reading order: word-count distribution over ``dialog_ids``."""
    rows = []
    for answer_set in sets:
        words = np.array(words_of(answer_set, dialog_ids), dtype=float)
        share, cap = _cap([answer_set.records[d] for d in dialog_ids])
        info = answer_set.info
        rows.append(
            {
                "answer_by": answer_set.label,
                "kind": info["kind"],
                "student": info.get("student", ""),
                "method": info.get("method", ""),
                "strategy": info.get("strategy", ""),
                "stage": info.get("stage", ""),
                "n": len(words),
                "mean_words": words.mean(),
                "median_words": np.median(words),
                "p10_words": np.percentile(words, 10),
                "p90_words": np.percentile(words, 90),
                "min_words": int(words.min()),
                "max_words": int(words.max()),
                "empty_share": float((words == 0).mean()),
                "token_cap_share": share,
                "max_new_tokens": cap,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def length_figure(sets: Sequence[AnswerSet], dialog_ids: Sequence[str], out: str | Path) -> None:
    """Horizontal box plot per answer set (whiskers: the longest and shortest answers within the
    10th-90th percentile, the table's p10/p90 columns; dot: mean)."""
    data = [words_of(s, dialog_ids) for s in sets]
    labels = [s.label for s in sets]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(sets) + 1.6))
    try:  # matplotlib >= 3.10 (``vert`` is deprecated there)
        ax.boxplot(data, orientation="horizontal", whis=(10, 90), showfliers=False)
    except TypeError:  # matplotlib 3.8-3.9
        ax.boxplot(data, vert=False, whis=(10, 90), showfliers=False)
    ax.scatter([np.mean(d) for d in data], range(1, len(data) + 1), s=12, color="black", zorder=3)
    ax.set_yticks(range(1, len(labels) + 1), labels, fontsize=7)
    ax.invert_yaxis()  # reading order top to bottom: human, teacher, base, trained models
    ax.set_xlabel("answer length (words); box: quartiles, whiskers: within p10-p90, dot: mean")
    ax.set_title(f"Answer lengths on {len(dialog_ids)} test dialogues")
    ax.grid(axis="x", linewidth=0.4, alpha=0.6)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Answer-length distribution per answer set.")
    parser.add_argument("--test", required=True, help="results/data/test.csv")
    parser.add_argument("--answers", nargs="*", default=[], help="answers JSONL files")
    parser.add_argument("--table", required=True, help="results/tables/answer_lengths.csv")
    parser.add_argument("--figure", required=True, help="results/figures/answer_lengths.png")
    args = parser.parse_args(argv)
    test = read_split(args.test)
    sets = reading_order([human_set(test, args.test), *map(read_answer_set, args.answers)])
    dialog_ids = [str(d) for d in test["dialog_id"]]
    for out in (args.table, args.figure):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    length_table(sets, dialog_ids).to_csv(args.table, index=False)
    length_figure(sets, dialog_ids, args.figure)
    print(f"{args.table}, {args.figure}: {len(sets)} answer sets x {len(dialog_ids)} dialogues")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
