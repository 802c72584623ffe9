"""Run one training job with the trainer its stage names in the registry (:mod:`.methods`).

From the train rule: ``--stage`` and ``--spec`` (the trainer's settings as JSON, the rule's
params: the spec Snakemake compares for reruns is exactly what is trained with). By hand:
``--config`` and the job's coordinates, the settings then come from the workflow config.
``--gpus`` (the rule's ``resources.gpu``) gives the job its own devices or stops it
(:mod:`.devices`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.command import run_cli
from ..core.config import load_config
from ..core.errors import ConfigError
from ..core.specs import parse as parse_spec
from .devices import add_gpus_argument, job_gpus
from .methods import STAGES, TrainingJob, previous_stage, trainer_for


def job_settings(config: dict, job: TrainingJob, previous: str | None = None) -> str:
    """A job's settings as the train rule's ``params`` hold them (compact JSON, key order kept)."""
    settings = trainer_for(job.stage).settings(config, job, previous)
    return json.dumps(settings, sort_keys=False, separators=(",", ":"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="workflow config (YAML/JSON); needs --student ... --stage")
    source.add_argument("--spec", help="the trainer's settings as JSON (the rule's params.spec)")
    p.add_argument("--student", help="the student (with --spec: named in messages only)")
    p.add_argument("--method", help="distillation method of the data configuration")
    p.add_argument("--strategy")
    p.add_argument("--stage", choices=STAGES, required=True, help="training method")
    p.add_argument("--out", required=True, help="output folder (results/models/...)")
    p.add_argument(
        "--previous-adapter",
        help="with --config: the adapter folder the stage continues (default: beside --out)",
    )
    p.add_argument(
        "--nproc-per-node",
        type=int,
        default=None,
        help="processes (GPUs) per node; default training.resources.nproc_per_node or 1",
    )
    add_gpus_argument(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_cli(parser(), _run, argv)


def _run(ns: argparse.Namespace) -> int:
    trainer = trainer_for(ns.stage)
    nproc = ns.nproc_per_node
    if ns.config:
        missing = [f"--{n}" for n in ("student", "method", "strategy") if getattr(ns, n) is None]
        if missing:
            raise ConfigError(f"--config needs {', '.join(missing)}")
        config = load_config(ns.config)
        job = TrainingJob(ns.student, ns.method, ns.strategy, ns.stage)
        previous = ns.previous_adapter
        continues = previous_stage(ns.stage)
        if previous is None and continues is not None:
            previous = str(Path(ns.out).parent / continues)
        settings = trainer.settings(config, job, previous)
        if nproc is None:
            nproc = config["training"]["resources"]["nproc_per_node"]
    else:
        settings = parse_spec(ns.spec)
    nproc = nproc or 1
    if ns.gpus > 0 and nproc > ns.gpus:
        raise ConfigError(
            f"nproc_per_node {nproc} is more than the job's {ns.gpus} GPUs (resources.gpu)"
        )
    student = ns.student or settings.get("model_name_or_path") or settings.get("model", "?")
    with job_gpus(ns.gpus, job=f"{ns.stage} training {ns.out}", student=str(student)):
        trainer.train(settings, Path(ns.out), nproc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
