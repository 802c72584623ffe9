"""Command line of rule ``train_offline_judge`` (``workflow/rules/judge.smk``): choose and fit
the scorer on the train split, save it, and report its agreement on the test split.

``python -m empathy_distill.evaluation.offline_judge.cli --spec ... --train ... --test ...
--model-out ... --agreement-out ...``
"""

from __future__ import annotations

import argparse
from dataclasses import asdict

from ...core import specs
from ...core.atomic import write_json
from ...core.command import run_cli
from .. import specs as evaluation_specs
from ..embeddings import default_embedder
from ..records import read_split
from .evaluate import check_disjoint, evaluate, reference_orderings
from .model import CV_FOLDS, select_and_fit


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m empathy_distill.evaluation.offline_judge.cli",
        description="Train the offline judge on train-split ratings.",
    )
    specs.add_spec_arguments(parser)
    parser.add_argument("--train", required=True, help="results/data/train.csv")
    parser.add_argument("--test", required=True, help="results/data/test.csv (agreement only)")
    parser.add_argument("--model-out", required=True)
    parser.add_argument("--agreement-out", required=True)
    return parser


def _run(args: argparse.Namespace) -> None:
    spec, _ = specs.from_args(args, evaluation_specs.offline_judge)
    margin, seed = spec["margin"], spec["seed"]
    embedder = default_embedder(spec["cache_dir"])
    train, test = read_split(args.train), read_split(args.test)
    check_disjoint(train, test)
    scorer = select_and_fit(train, embedder, seed=seed, margin=margin)
    scorer.save(args.model_out)
    chosen = asdict(scorer.candidate)
    validation = next(
        {k.removeprefix("val_"): v for k, v in row.items() if k.startswith("val_")}
        for row in scorer.selection
        if all(row[k] == v for k, v in chosen.items())
    )
    report = {
        "embedder": scorer.embedder_name,
        "chosen": chosen,
        "n_train_dialogues": len(scorer.trained_on),
        "validation": {"method": f"{CV_FOLDS}-fold CV over train dialogues", **validation},
        "test": evaluate(scorer, test, margin),
        "test_reference_orderings": reference_orderings(train, test),
        "selection": scorer.selection,
    }
    write_json(args.agreement_out, report, indent=2)
    t = report["test"]
    print(
        f"offline judge {chosen}: pairwise agreement (no margin) validation "
        f"{validation['pairwise_agreement_no_margin']:.3f}, test "
        f"{t['pairwise_agreement_no_margin']:.3f} (with margin {t['pairwise_agreement']:.3f}); "
        f"test 3-class accuracy {t['pairwise_3class_accuracy']:.3f}, "
        f"rating accuracy {t['rating_accuracy']:.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
