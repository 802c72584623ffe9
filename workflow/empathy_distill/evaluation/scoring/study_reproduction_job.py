"""Rule ``scoring_study_reproduction``: the companion study's classifier table from its files.

Checks every file against its pinned sha256, validates it (``data/scoring_study.py``), checks
that the study's 2,000 dialogues are the main dataset's, then writes the per-k accuracies, the
table (``study_reproduction.reproduction_table``) and its figure.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from ...core import specs
from ...core.command import run_cli
from ...data import dataset as main_dataset
from ...data import scoring_study as study
from ..embeddings import Embedder, default_embedder
from . import specs as scoring_specs
from . import study_finetune_table as finetuned
from . import study_protocol
from . import study_reproduction as repro

log = logging.getLogger("empathy_distill.evaluation.scoring.study_reproduction_job")


def read_study(study_dir: str | Path, files: dict[str, str], dataset: str | None) -> dict:
    """The four files, each sha256-checked and validated; cross-checked with the dataset."""
    tables = {}
    for name in study.FILES:
        path = Path(study_dir) / name
        if not path.is_file():
            raise study.DatasetError(f"{path}: missing; run the rule download_scoring_study")
        study.verify_file(path, files[name])
        tables[name] = study.load(path, name)
    if dataset:
        study.cross_check(tables[study.DIALOGUES], main_dataset.load_dataset(dataset))
    return tables


def figure(table: pd.DataFrame, out: str | Path, tuned: list[dict] | None = None) -> None:
    """Test accuracy of the best model per feature set and selection: model and k chosen by
    the test accuracy (the study's way) or by CV accuracy (none: CV), with the study's figure
    and the fine-tuned scorers' accuracy on the same 20% (``tuned``: their table rows)."""
    cells = table[table["model"] != "best"]
    best = {}
    for key, group in cells.groupby(["features", "selection", "k_choice"], sort=False):
        by = "accuracy" if key[2] == "best_test" else "cv_accuracy"
        best[key] = group.loc[group[by].idxmax(), "accuracy"]
    features = list(dict.fromkeys(cells["features"]))
    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [(s, c) for s in repro.SELECTIONS for c in repro.K_CHOICES if s != "none" or c == "cv"]
    width = 0.8 / len(labels)
    for i, (selection, choice) in enumerate(labels):
        values = [best.get((f, selection, choice), float("nan")) for f in features]
        name = selection if selection == "none" else f"{selection}, k by {choice}"
        ax.bar([x + i * width for x in range(len(features))], values, width, label=name)
    reported = table.dropna(subset=["reported"])
    for _, row in reported.iterrows():
        if row["features"] in features:
            ax.axhline(row["reported"], color="black", linestyle="--", linewidth=1)
            ax.text(
                len(features) - 0.5,
                row["reported"],
                f"study: {row['reported']:.4f}",
                ha="right",
                va="bottom",
                fontsize=8,
            )
    for row in tuned or []:
        if row["protocol"] == study_protocol.STUDY_BALANCED and row["accuracy"] is not None:
            ax.axhline(row["accuracy"], linestyle="-.", linewidth=1, label=row["features"])
    ax.axhline(1 / 3, color="grey", linestyle=":", linewidth=1, label="chance (1/3)")
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(features))], features)
    ax.set_ylabel("test accuracy of the best model")
    ax.set_ylim(0, 0.7)
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    ax.set_title("The scoring study's classifiers on its balanced set (384 test responses)")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def run(args: argparse.Namespace, spec: dict, embedder: Embedder | None = None) -> pd.DataFrame:
    """The whole job (``embedder``: tests pass a stand-in; None: the spec's)."""
    tables = read_study(args.study_dir, spec["files"], args.dataset)
    if repro.EMBEDDING in spec["features"] and embedder is None:
        embedder = default_embedder(spec["cache_dir"])
    data = repro.load_study(
        tables[study.BALANCED_FEATURES],
        tables[study.BALANCED],
        embedder if repro.EMBEDDING in spec["features"] else None,
    )
    data = repro.Study(
        {k: v for k, v in data.features.items() if k in spec["features"]}, data.ratings, data.ids
    )
    by_k = repro.per_k_table(data, spec["models"], n_jobs=args.threads)
    classifiers = repro.reproduction_table(by_k)
    extra = finetuned.rows(
        spec, scoring_specs.study_finetune_manifest(spec), tables[study.BALANCED]
    )
    table = finetuned.with_rows(classifiers, extra)
    for path, frame in ((args.by_k_out, by_k), (args.table_out, table)):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
    figure(classifiers, args.figure_out, extra)
    for row in extra:
        log.info(
            "%s (%s, %s): accuracy %s on %d responses, %s invalid; study: %s",
            row["features"],
            row["protocol"],
            row["model"],
            row["accuracy"],
            row["n_test"],
            row["n_invalid"],
            row["reported"],
        )
    for _, row in table[table["model"] == "best"].iterrows():
        log.info(
            "%s, k by %s: %s accuracy %.4f (k=%d)",
            row["features"],
            row["k_choice"],
            row["chosen"],
            row["accuracy"],
            row["k"],
        )
    return table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    specs.add_spec_arguments(parser)
    parser.add_argument("--study-dir", required=True, help="scoring.study_data.dir")
    parser.add_argument("--dataset", help="the main dataset, for the cross-check")
    parser.add_argument("--table-out", required=True)
    parser.add_argument("--by-k-out", required=True)
    parser.add_argument("--figure-out", required=True)
    parser.add_argument("--threads", type=int, default=1)
    return parser


def _run(args: argparse.Namespace) -> None:
    spec, _ = specs.from_args(args, scoring_specs.scoring_study_reproduction)
    run(args, spec)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
