"""Result tables: win rates per comparison and judge, and agreement between judges.

``results/tables/win_rates.csv``: one row per (method, strategy, student, stage, judge,
opponent). ``n`` counts the judged dialogues; ``invalid`` of them had an answer the judge did not
give clearly (excluded from the win rate, except under ``paper_faithful`` where, as in the paper,
they count as losses and ``win_rate = wins / n``). ``win_rate`` counts ties half; ``ci_low`` /
``ci_high`` is the seeded 95% bootstrap over dialogues; ``lc_win_rate`` the win rate at zero
length difference (see ``stats.length_controlled_win_rate``) and ``length_slope`` its slope
(> 0: the judge prefers longer answers).

``results/tables/judge_agreement.csv``: Cohen's kappa of the per-dialogue verdicts of every two
judges on the same pairs (per comparison and pooled), and the offline judge against the human
ratings of the test split.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..grid import Comparison, answer_path, comparisons, judges, parse_tag
from ..judges import OFFLINE, scorer_judges
from .cli import add_config_arguments, settings_from
from .judge import combine_orders, judgment_path
from .records import n_words, read_answers, read_jsonl
from .stats import (
    bootstrap_ci,
    cohen_kappa,
    length_controlled_win_rate,
    position_consistency,
    win_rate,
)

WIN_RATE_COLUMNS = [
    "comparison",
    "method",
    "strategy",
    "student",
    "stage",
    "judge",
    "model",
    "opponent",
    "n",
    "wins",
    "ties",
    "losses",
    "invalid",
    "win_rate",
    "ci_low",
    "ci_high",
    "position_consistency",
    "mean_len_model",
    "mean_len_opponent",
    "lc_win_rate",
    "length_slope",
    "paper_faithful",
]
AGREEMENT_COLUMNS = ["judge_a", "judge_b", "scope", "n", "agreement", "kappa", "pairwise_agreement"]


def summarize(
    records: list[dict],
    model_answers: dict[str, str],
    opponent_answers: dict[str, str],
    paper_faithful: bool = False,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Every statistic of one judged comparison (the numeric columns of win_rates.csv)."""
    outcomes = combine_orders(records, paper_faithful)
    valid = [o for o in outcomes if o.outcome is not None]
    values = [o.outcome for o in valid]
    diffs = [
        n_words(model_answers[o.dialog_id]) - n_words(opponent_answers[o.dialog_id]) for o in valid
    ]
    both = [
        o
        for o in outcomes
        if len(o.by_order) == 2 and all(v is not None for v in o.by_order.values())
    ]
    low, high = bootstrap_ci(values, n_boot, seed)
    lc = length_controlled_win_rate(values, diffs)
    ids = [o.dialog_id for o in outcomes]
    invalid = sum(any(v is None for v in o.by_order.values()) for o in outcomes)
    return {
        "n": len(outcomes),
        "wins": values.count(1),
        "ties": values.count(0),
        "losses": values.count(-1) - (invalid if paper_faithful else 0),
        "invalid": invalid,
        "win_rate": win_rate(values),
        "ci_low": low,
        "ci_high": high,
        "position_consistency": position_consistency(
            [o.by_order["model_first"] for o in both], [o.by_order["opponent_first"] for o in both]
        )
        if both
        else float("nan"),
        "mean_len_model": float(np.mean([n_words(model_answers[i]) for i in ids]))
        if ids
        else float("nan"),
        "mean_len_opponent": float(np.mean([n_words(opponent_answers[i]) for i in ids]))
        if ids
        else float("nan"),
        "lc_win_rate": lc.win_rate,
        "length_slope": lc.slope,
    }


def _labels(comparison: Comparison) -> dict:
    info = parse_tag(comparison.model)
    return {
        "comparison": comparison.kind,
        "method": info.get("method", ""),
        "strategy": info.get("strategy", ""),
        "student": info.get("student", ""),
        "stage": info.get("stage", info["kind"]),
        "model": comparison.model,
        "opponent": comparison.opponent,
    }


def win_rate_table(config: dict, root: str | Path = ".") -> pd.DataFrame:
    root = Path(root)
    evaluation = config.get("evaluation", {})
    paper_faithful = bool(evaluation.get("paper_faithful", False))
    answers: dict[str, dict[str, str]] = {}
    rows = []
    for judge in judges(config):
        for comparison in comparisons(config):
            for tag in (comparison.model, comparison.opponent):
                if tag not in answers:
                    answers[tag] = read_answers(root / answer_path(tag))
            records = read_jsonl(root / judgment_path(judge, comparison.model, comparison.opponent))
            stats = summarize(
                records,
                answers[comparison.model],
                answers[comparison.opponent],
                paper_faithful,
                evaluation.get("bootstrap_samples", 2000),
                evaluation.get("seed", 0),
            )
            rows.append(
                {**_labels(comparison), "judge": judge, **stats, "paper_faithful": paper_faithful}
            )
    return pd.DataFrame(rows, columns=WIN_RATE_COLUMNS)


def _verdicts(path: Path, paper_faithful: bool) -> dict[str, int]:
    return {
        o.dialog_id: o.outcome
        for o in combine_orders(read_jsonl(path), paper_faithful)
        if o.outcome is not None
    }


def agreement_table(
    config: dict, offline_agreement: str | Path | None = None, root: str | Path = "."
) -> pd.DataFrame:
    """Kappa between judges on the same pairs (+1/0/-1 per dialogue), and offline vs humans."""
    root = Path(root)
    paper_faithful = bool(config.get("evaluation", {}).get("paper_faithful", False))
    names = judges(config)
    rows = []
    verdicts = {
        (j, c.name): _verdicts(root / judgment_path(j, c.model, c.opponent), paper_faithful)
        for j in names
        for c in comparisons(config)
    }
    for a, b in itertools.combinations(names, 2):
        pooled_a: list[int] = []
        pooled_b: list[int] = []
        for comparison in comparisons(config):
            va, vb = verdicts[(a, comparison.name)], verdicts[(b, comparison.name)]
            common = [d for d in va if d in vb]
            xa, xb = [va[d] for d in common], [vb[d] for d in common]
            pooled_a += xa
            pooled_b += xb
            rows.append(_agreement_row(a, b, comparison.name, xa, xb))
        rows.append(_agreement_row(a, b, "all", pooled_a, pooled_b))
    if offline_agreement is not None:
        report = json.loads(Path(offline_agreement).read_text(encoding="utf-8"))["test"]
        offline = scorer_judges(config, names, backend=OFFLINE) or [OFFLINE]
        rows.append(
            {
                "judge_a": offline[0],
                "judge_b": "human",
                "scope": "test_split_response_pairs",
                "n": report["n_pairs"],
                "agreement": report["pairwise_3class_accuracy"],
                "kappa": report["pairwise_3class_kappa"],
                "pairwise_agreement": report["pairwise_agreement"],
            }
        )
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def _agreement_row(a: str, b: str, scope: str, xa: list[int], xb: list[int]) -> dict:
    return {
        "judge_a": a,
        "judge_b": b,
        "scope": scope,
        "n": len(xa),
        "agreement": float(np.mean(np.equal(xa, xb))) if xa else float("nan"),
        "kappa": cohen_kappa(xa, xb),
        "pairwise_agreement": float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the evaluation tables.")
    parser.add_argument("table", choices=["win-rates", "judge-agreement"])
    add_config_arguments(parser)
    parser.add_argument("--offline-agreement", help="results/judges/offline/agreement.json")
    parser.add_argument("--root", default=".", help="directory holding results/")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    config = settings_from(args)
    if args.table == "win-rates":
        table = win_rate_table(config, args.root)
    else:
        table = agreement_table(config, args.offline_agreement, args.root)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(f"{args.out}: {len(table)} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
