"""The ``empathy-distill`` command: check a config or the dataset, show the grid and its cost
before running Snakemake.

Every subcommand calls the function the workflow itself uses (config schema validation of the
Snakefile, the dataset checks of common.smk, ``empathy_distill.core.grid``, the ``cost`` rule's
``empathy_distill.cost``), so what it reports is what ``snakemake`` will do.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from . import stages  # noqa: F401  (registers every stage's specs and config checks)
from .core import grid
from .core.command import run_subcommand
from .core.config import deep_merge, load_config, read_yaml
from .core.errors import ConfigError
from .startup import check_config_file, check_endpoints

DEFAULT_CONFIG = "config.yaml"


def load_configs(paths: Sequence[str]) -> dict:
    """Like ``snakemake --configfile A B``: later files update earlier ones, then the schema
    validates the result and fills its defaults (what the Snakefile's validate_config does)."""
    overrides: dict = {}
    for path in paths[1:]:
        if not Path(path).exists():
            raise ConfigError(f"config file not found: {path}")
        check_config_file(path)  # Snakemake's own message names neither file nor line
        overrides = deep_merge(overrides, read_yaml(path) or {})
    return load_config(paths[0], overrides)


def validate_config_command(args: argparse.Namespace) -> None:
    """Everything the Snakefile checks when it loads: schema, training keys, endpoints."""
    from .training.llamafactory_config import validate_training
    from .training.pride import config as pride_config

    config = load_configs(args.configfile)
    validate_training(config)
    pride_config.validate(config)
    check_endpoints(config)
    print(f"{' + '.join(args.configfile)}: valid")


def validate_dataset_command(args: argparse.Namespace) -> None:
    from .data.dataset import load_dataset

    table = load_dataset(args.path)
    dialogues = table["dialog_id"].nunique() if "dialog_id" in table else len(table)
    print(f"{args.path}: valid ({len(table)} rows, {dialogues} dialogues)")


def grid_command(args: argparse.Namespace) -> None:
    config = load_configs(args.configfile)
    data_configs = grid.data_configs(config)
    students = grid.students(config)
    judges = grid.judges(config)
    comparisons = grid.comparisons(config)
    print(f"data configurations ({len(data_configs)}):")
    for dc in data_configs:
        print(f"  {dc.method}/{dc.strategy}")
    print(f"students ({len(students)}): {', '.join(students)}")
    print(f"stages ({len(grid.STAGES)}): {', '.join(grid.STAGES)}")
    print(f"judges ({len(judges)}): {', '.join(judges)}")
    print(f"trained models: {len(grid.models(config))}")
    print(f"answer sets: {len(grid.answer_tags(config))}")
    print(f"comparisons: {len(comparisons)}")
    print(f"judgment files: {len(comparisons) * len(judges)}")


def cost_command(args: argparse.Namespace) -> None:
    from . import cost

    config = load_configs(args.configfile)
    cost.run_projection(
        config,
        args.train,
        args.test,
        args.improve_human_sources,
        args.output,
        args.scorer_train,
        args.study_balanced,
    )


def gpu_hours_command(args: argparse.Namespace) -> None:
    from . import gpu_hours

    config = load_configs(args.configfile)
    gpu_hours.run(
        config, args.train, args.test, args.gpus, args.table, args.measured, args.scorer_train
    )


def batches_command(args: argparse.Namespace) -> None:
    from . import batch_admin

    config = load_configs(args.configfile)
    splits = {"train": args.train, "test": args.test, "improve_human": args.improve_human_sources}
    batch_admin.run(config, args.cancel_unneeded, splits)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="empathy-distill", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument(
            "--configfile",
            nargs="+",
            default=[DEFAULT_CONFIG],
            metavar="FILE",
            help="config file(s), later ones update earlier ones (default: config.yaml)",
        )
        return sub

    with_config(
        commands.add_parser("validate-config", help="validate the config against its schema")
    ).set_defaults(func=validate_config_command)
    dataset = commands.add_parser("validate-dataset", help="run the workflow's dataset checks")
    dataset.add_argument("path", help="the dataset CSV (config dataset.path)")
    dataset.set_defaults(func=validate_dataset_command)
    with_config(
        commands.add_parser("grid", help="data configurations x students x stages x judges")
    ).set_defaults(func=grid_command)
    cost = with_config(
        commands.add_parser(
            "cost",
            help="projected API spend (the cost rule; needs the split: results/data/*.csv)",
        )
    )
    cost.add_argument("--train", default=grid.TRAIN_CSV)
    cost.add_argument("--test", default=grid.TEST_CSV)
    cost.add_argument("--improve-human-sources", default="results/data/sources/improve_human.csv")
    cost.add_argument("--scorer-train", default=grid.SCORER_TRAIN_CSV)
    cost.add_argument(
        "--study-balanced",
        help="the study's unified_balanced_dataset.csv, read when an OpenAI scorer is in"
        " scoring.study_protocol (default: scoring.study_data.dir/<it>)",
    )
    cost.add_argument("--output", default="results/costs/projection.csv")
    cost.set_defaults(func=cost_command)
    hours = with_config(
        commands.add_parser(
            "gpu-hours",
            help="projected GPU hours and wall time on N GPUs, for the grid and the paper-only"
            " grid (needs the split: results/data/*.csv)",
        )
    )
    hours.add_argument("--gpus", type=int, default=8, help="GPUs of the machine (default 8)")
    hours.add_argument("--table", default="resources/gpu_throughput.yaml")
    hours.add_argument("--measured", help="results/gpu_smoke.json: replaces its model's rows")
    hours.add_argument("--train", default=grid.TRAIN_CSV)
    hours.add_argument("--test", default=grid.TEST_CSV)
    hours.add_argument("--scorer-train", help="results/data/scorer_train.csv (fine-tuned scorers)")
    hours.set_defaults(func=gpu_hours_command)
    batches = with_config(
        commands.add_parser(
            "batches", help="the cache's submitted batches; --cancel-unneeded cancels stale ones"
        )
    )
    batches.add_argument("--cancel-unneeded", action="store_true")
    batches.add_argument("--train", default=grid.TRAIN_CSV)
    batches.add_argument("--test", default=grid.TEST_CSV)
    batches.add_argument(
        "--improve-human-sources", default="results/data/sources/improve_human.csv"
    )
    batches.set_defaults(func=batches_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console script entry point ([project.scripts] empathy-distill); exit status 1 on a bad
    config or dataset, with the message naming the file, row or key."""
    return run_subcommand(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
