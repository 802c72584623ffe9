"""Emotion accuracy of every student: our reading of the PRIDE abstract's "accuracy".

Each answer set's records in its student's ``results/emotion/<student>.jsonl`` (rule
emotion_answers: the label the model scores highest per test dialogue) against the dataset's
``emotion``: accuracy with a percentile bootstrap interval over dialogues
(``stats.bootstrap_mean_ci``, seeded by ``evaluation.seed``), macro-F1 over the labels that
occur (gold or predicted), the chance level (1 / number of labels), the majority-class baseline
of the test split, the label predicted most often (a model that names one emotion for
everything shows here) and the most frequent confusions. docs/emotion-accuracy.md.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from ..core import grid, specs
from ..core.atomic import write_csv
from ..core.command import run_cli
from . import specs as evaluation_specs
from .records import AnswersError, read_jsonl, read_split
from .stats import bootstrap_mean_ci

COLUMNS = (
    "model",
    "student",
    "method",
    "strategy",
    "stage",
    "n",
    "accuracy",
    "ci_low",
    "ci_high",
    "macro_f1",
    "chance",
    "majority_baseline",
    "majority_label",
    "most_predicted",
    "most_predicted_share",
    "top_confusions",
)
#: Confusions listed per model (gold -> predicted, count).
TOP_CONFUSIONS = 3


def macro_f1(gold: Sequence[str], predicted: Sequence[str]) -> float:
    """Unweighted mean of per-label F1 over the labels that occur in gold or predictions
    (scikit-learn's ``f1_score(average='macro')``; a label with no true positive scores 0)."""
    if not gold:
        return float("nan")
    return float(f1_score(list(gold), list(predicted), average="macro", zero_division=0.0))


def majority(gold: Sequence[str]) -> tuple[str, float]:
    """The most frequent gold label (ties: alphabetical first) and its share: the accuracy of
    always naming it."""
    counts = Counter(gold)
    label = min(counts, key=lambda k: (-counts[k], k))
    return label, counts[label] / len(gold)


def confusions(gold: Sequence[str], predicted: Sequence[str], top: int = TOP_CONFUSIONS) -> str:
    """The most frequent wrong (gold -> predicted) pairs, e.g. ``anxious>afraid:3``."""
    pairs = Counter((g, p) for g, p in zip(gold, predicted, strict=True) if g != p)
    ranked = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return "; ".join(f"{g}>{p}:{n}" for (g, p), n in ranked)


def accuracy_row(
    tag: str, records: dict[str, dict], gold: dict[str, str], n_labels: int, n_boot: int, seed: int
) -> dict:
    """One answer set's row; every test dialogue must have its record, with the test's gold."""
    ids = list(gold)
    missing = [d for d in ids if d not in records]
    if missing:
        raise AnswersError(f"emotion of {tag}: no record for test dialogue(s) {missing[:5]}")
    predicted = [str(records[d]["predicted"]) for d in ids]
    golds = [gold[d] for d in ids]
    correct = np.array([p == g for p, g in zip(predicted, golds, strict=True)], dtype=float)
    low, high = bootstrap_mean_ci(correct, n_boot, seed)
    label, share = majority(golds)
    top, top_n = Counter(predicted).most_common(1)[0]
    info = grid.parse_tag(tag)
    return {
        "model": tag,
        **{k: info.get(k, "base" if k == "stage" else "") for k in COLUMNS[1:5]},
        "n": len(ids),
        "accuracy": float(correct.mean()),
        "ci_low": low,
        "ci_high": high,
        "macro_f1": macro_f1(golds, predicted),
        "chance": 1.0 / n_labels,
        "majority_baseline": share,
        "majority_label": label,
        "most_predicted": top,
        "most_predicted_share": top_n / len(ids),
        "top_confusions": confusions(golds, predicted),
    }


def _by_answer_set(path: str) -> dict[str, dict[str, dict]]:
    """A student's emotion file as answer set -> dialogue -> record."""
    grouped: dict[str, dict[str, dict]] = {}
    for line, record in enumerate(read_jsonl(path), start=1):
        if "answers" not in record:
            raise AnswersError(f"{path}, line {line}: no 'answers' (rerun emotion_answers)")
        grouped.setdefault(str(record["answers"]), {})[str(record["dialog_id"])] = record
    return grouped


def table_of_spec(spec: specs.Spec, test_path: str) -> pd.DataFrame:
    """The table of a ``specs.emotion_accuracy`` spec: its manifest's files, in its order."""
    test = read_split(test_path)
    gold = {str(r.dialog_id): str(r.emotion) for r in test.itertuples(index=False)}
    files: dict[str, dict[str, dict[str, dict]]] = {}  # path -> answer set -> dialogue -> record
    rows = []
    for entry in evaluation_specs.emotion_manifest(spec):
        path, tag = entry["path"], entry["answers"]
        if path not in files:
            files[path] = _by_answer_set(path)
        records = files[path].get(tag)
        if records is None:
            raise AnswersError(f"{path}: no records of answer set {tag} (rerun emotion_answers)")
        wrong_gold = [d for d, r in records.items() if d in gold and r.get("gold") != gold[d]]
        if wrong_gold:
            raise AnswersError(
                f"{path}: gold emotion of {tag} differs from {test_path} for dialogue(s) "
                f"{wrong_gold[:5]} (written from another test split: rerun emotion_answers)"
            )
        rows.append(
            accuracy_row(
                tag, records, gold, len(spec["labels"]), spec["bootstrap_samples"], spec["seed"]
            )
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Emotion accuracy, macro-F1 and baselines of every student's emotion labels."
    )
    specs.add_spec_arguments(parser)
    parser.add_argument("--test", required=True, help="results/data/test.csv")
    parser.add_argument("--out", required=True, help="results/tables/emotion_accuracy.csv")
    return parser


def _run(args: argparse.Namespace) -> None:
    spec, _ = specs.from_args(args, evaluation_specs.emotion_accuracy)
    table = table_of_spec(spec, args.test)
    write_csv(args.out, table)
    print(f"{args.out}: {len(table)} rows")


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
