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

from ..core import specs
from ..core.atomic import write_csv
from ..core.command import run_cli
from ..core.grid import PAIR_SEPARATOR, parse_tag
from ..core.judges import OFFLINE
from . import judge_records
from . import specs as evaluation_specs
from .judge import combine_orders
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


def _labels(entry: dict) -> dict:
    info = parse_tag(entry["model"])
    return {
        "comparison": entry["comparison"],
        "method": info.get("method", ""),
        "strategy": info.get("strategy", ""),
        "student": info.get("student", ""),
        "stage": info.get("stage", info["kind"]),
        "model": entry["model"],
        "opponent": entry["opponent"],
    }


def win_rate_table(spec: dict, root: str | Path = ".") -> pd.DataFrame:
    """One row per judgment file of the spec (``specs.win_rates``; ``specs.manifest`` names the
    files, the rule's inputs) and no other."""
    root = Path(root)
    answers: dict[str, dict[str, str]] = {}
    rows = []
    for entry in evaluation_specs.manifest(spec):
        for side in ("model_answers", "opponent_answers"):
            if entry[side] not in answers:
                answers[entry[side]] = read_answers(root / entry[side])
        stats = summarize(
            read_jsonl(root / entry["path"]),
            answers[entry["model_answers"]],
            answers[entry["opponent_answers"]],
            spec["paper_faithful"],
            spec["bootstrap_samples"],
            spec["seed"],
        )
        rows.append(
            {
                **_labels(entry),
                "judge": entry["judge"],
                **stats,
                "paper_faithful": spec["paper_faithful"],
            }
        )
    return pd.DataFrame(rows, columns=WIN_RATE_COLUMNS)


def _verdicts(path: Path, paper_faithful: bool) -> dict[str, int]:
    return {
        o.dialog_id: o.outcome
        for o in combine_orders(read_jsonl(path), paper_faithful)
        if o.outcome is not None
    }


def agreement_table(
    spec: dict, offline_agreement: str | Path | None = None, root: str | Path = "."
) -> pd.DataFrame:
    """Kappa between judges on the same pairs (+1/0/-1 per dialogue), and offline vs humans.

    ``spec``: ``specs.judge_agreement`` (the judges in order and the judgments manifest)."""
    root = Path(root)
    paper_faithful = spec["paper_faithful"]
    by_pair: dict[str, dict[str, dict[str, int]]] = {}  # comparison name -> judge -> verdicts
    for entry in evaluation_specs.manifest(spec):
        pair = f"{entry['model']}{PAIR_SEPARATOR}{entry['opponent']}"
        by_pair.setdefault(pair, {})[entry["judge"]] = _verdicts(
            root / entry["path"], paper_faithful
        )
    rows = []
    for a, b in itertools.combinations(spec["judges"], 2):
        pooled_a: list[int] = []
        pooled_b: list[int] = []
        for pair, verdicts in by_pair.items():
            va, vb = verdicts[a], verdicts[b]
            common = [d for d in va if d in vb]
            xa, xb = [va[d] for d in common], [vb[d] for d in common]
            pooled_a += xa
            pooled_b += xb
            rows.append(_agreement_row(a, b, pair, xa, xb))
        rows.append(_agreement_row(a, b, "all", pooled_a, pooled_b))
    if offline_agreement is not None:
        report = json.loads(Path(offline_agreement).read_text(encoding="utf-8"))["test"]
        rows.append(
            {
                "judge_a": spec["offline_judge"] or OFFLINE,
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Write the evaluation tables.")
    parser.add_argument("table", choices=["win-rates", "judge-agreement"])
    specs.add_spec_arguments(parser)
    parser.add_argument("--offline-agreement", help="results/judges/offline/agreement.json")
    parser.add_argument("--root", default=".", help="directory holding results/")
    parser.add_argument(
        "--judge-records",
        nargs="*",
        help="the judge jobs' records (<judge>/<kind>.files.json): every judgment file of the"
        " spec must be in one, unchanged since (sha256)",
    )
    parser.add_argument("--out", required=True)
    return parser


def _run(args: argparse.Namespace) -> None:
    win_rates = args.table == "win-rates"
    builder = evaluation_specs.win_rates if win_rates else evaluation_specs.judge_agreement
    spec, _ = specs.from_args(args, builder)
    if args.judge_records is not None:
        paths = [entry["path"] for entry in evaluation_specs.manifest(spec)]
        judge_records.check_covered(paths, args.judge_records, Path(args.root))
    if win_rates:
        table = win_rate_table(spec, args.root)
    else:
        table = agreement_table(spec, args.offline_agreement, args.root)
    write_csv(args.out, table)
    print(f"{args.out}: {len(table)} rows")


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
