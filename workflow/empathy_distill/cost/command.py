"""``python -m empathy_distill.cost``: the cost rule's job (and the ``empathy-distill cost``
command's): project, print, write the table, check the budget cap."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from ..core import grid, runtime, specs
from ..core.atomic import write_csv
from ..core.command import run_cli
from ..core.errors import ConfigError
from ..core.readers import read_table
from ..data.scoring_study import read_balanced
from ..distillation.sets import SOURCE_COLUMNS
from ..evaluation.scoring import study_grid
from ..llm.cache import CACHE_FILE, ResponseCache
from . import projection, study_scorers
from .rows import check_budget, projection_table


@specs.register("cost")
def cost_spec(config: dict) -> specs.Spec:
    """Rule cost: the projection spans the whole grid, so its spec is the config's identity."""
    return runtime.identity(config)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m empathy_distill.cost",
        description=projection.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    specs.add_spec_arguments(parser)
    parser.add_argument("--train", default="results/data/train.csv")
    parser.add_argument("--test", default="results/data/test.csv")
    parser.add_argument(
        "--improve-human-sources", help="results/data/sources/improve_human.csv (if in the grid)"
    )
    parser.add_argument(
        "--scorer-train", help="results/data/scorer_train.csv (if a scorer is in the grid)"
    )
    parser.add_argument(
        "--study-balanced",
        help="the study's unified_balanced_dataset.csv (if an OpenAI scorer is in"
        " scoring.study_protocol; default: scoring.study_data.dir/<it>)",
    )
    parser.add_argument("--output", default="results/costs/projection.csv")
    return parser


def run_projection(
    config: dict[str, Any],
    train_csv: str | Path,
    test_csv: str | Path,
    human_sources_csv: str | Path | None,
    output: str | Path,
    scorer_train_csv: str | Path | None = None,
    study_balanced_csv: str | Path | None = None,
) -> float:
    """Project, print and write the cost of ``config`` (the validated config, runtime part
    included: the budget cap is checked); return the projected total in USD."""
    columns = ["dialog_id", "situation", "speaker_uttr"]
    train = read_table(train_csv, columns)
    test = read_table(test_csv, columns)
    human = None
    if config["distillation"]["methods"].get("improve_human"):
        if human_sources_csv is None:
            raise ConfigError(
                "distillation.methods has improve_human: pass --improve-human-sources"
            )
        human = read_table(human_sources_csv, SOURCE_COLUMNS)
    cache_dir = Path(config["llm"]["cache_dir"])
    cache = ResponseCache(cache_dir) if (cache_dir / CACHE_FILE).exists() else None
    scorer_train = None
    if grid.scorers(config):
        if scorer_train_csv is None:
            raise ConfigError("scoring.grid has scorers: pass --scorer-train")
        scorer_train = read_table(scorer_train_csv, columns)
    study_balanced = None
    if study_scorers.paid_scorers(config):
        study = config["scoring"]["study_data"]
        path = study_balanced_csv or Path(study["dir"]) / study_grid.BALANCED_FILE
        study_balanced = read_balanced(path, study["files"][study_grid.BALANCED_FILE])
    table = projection_table(
        projection.project(config, train, test, human, cache, scorer_train, study_balanced)
    )
    write_csv(output, table)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(table.to_string(index=False, float_format=lambda v: f"{v:,.4f}"))
    total = float(table["cost_usd"].iloc[-1])
    print(f"\nprojected total: ${total:,.2f} (token counts approximate: chars/4)")
    check_budget(total, config["llm"]["budget_usd"], cache.spent_usd() if cache else 0.0)
    return total


def _run(args: argparse.Namespace) -> None:
    # The projection walks the whole grid: the spec is the config's identity; the runtime part
    # brings the budget cap back.
    spec, run = specs.from_args(args, cost_spec, with_runtime=True)
    config = runtime.merge(spec, run or {})
    run_projection(
        config,
        args.train,
        args.test,
        args.improve_human_sources,
        args.output,
        args.scorer_train,
        args.study_balanced,
    )


def main(argv: list[str] | None = None) -> int:
    return run_cli(_parser(), _run, argv)
