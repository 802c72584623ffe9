"""The `sbatch` command lines the SLURM profile gives each job of the DAG, without a cluster.

Why: `--gpus`, `--nodes`, `--mem` and `-t` of a GPU job are decided by three layers (the rule's
own `resources:` from config.yaml, the profile's `set-resources`/`default-resources`, and the
plugin's translation into flags); only the plugin's own code can say what it submits. This
script parses the command line exactly as `snakemake --profile workflow/profiles/slurm` does
(snakemake.cli.parse_args), builds the DAG through Snakemake's API (as `--printdag` does, every
job forced so finished results do not hide any), and hands each job to the installed
snakemake-executor-plugin-slurm's `get_submit_command` and `set_gres_string`, the two functions
its Executor.run_job joins into the sbatch call (account and partition arguments built as
run_job builds them, without the account lookup that needs `sacctmgr`).

    python tests/slurm/sbatch_calls.py [snakemake arguments]   # prints one JSON object per job

Run it from the repository root (or with -d); the arguments default to the SLURM profile.
"""

from __future__ import annotations

import inspect
import json
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ARGS = ("--profile", str(REPO / "workflow" / "profiles" / "slurm"))


def submit_call(job) -> str:
    """The sbatch call the plugin builds for ``job`` (Executor.run_job without the submission)."""
    from snakemake_executor_plugin_slurm import submit_string, utils, validation

    validation.validate_slurm_extra(job)
    # plugins < 2.6 join the wildcards inside run_job; only the --comment text depends on it
    join = getattr(utils, "get_job_wildcards", lambda j: "_".join(map(str, j.wildcards)))
    wildcards = join(job)
    comment = f"rule_{job.name}" + (f"_wildcards_{wildcards}" if wildcards else "")
    partition = job.resources.get("slurm_partition")
    params = {
        "run_uuid": "RUN",
        "slurm_logfile": f".snakemake/slurm_logs/rule_{job.name}/%j.log",
        "comment_str": comment,
        "account": "",
        "partition": f" -p {shlex.quote(str(partition))}" if partition else "",
        "workdir": str(Path.cwd()),
    }
    # plugin >= 2.6 takes the executor settings and failed nodes; older ones only (job, params)
    signature = inspect.signature(submit_string.get_submit_command)
    extra = {"settings": None} if "settings" in signature.parameters else {}
    call = submit_string.get_submit_command(job, params, **extra)
    return call + utils.set_gres_string(job)


def jobs(argv: list[str]):
    """Every job of the DAG that ``snakemake <argv>`` would plan, forced."""
    from snakemake.api import SnakemakeApi
    from snakemake.cli import parse_args
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        ResourceSettings,
    )

    _, args = parse_args(argv)
    resources = ResourceSettings(
        cores=1,
        nodes=args.jobs,
        resources=args.resources,
        overwrite_threads=args.set_threads,
        overwrite_resource_scopes=args.set_resource_scopes,
        overwrite_resources=args.set_resources,
        default_resources=args.default_resources,
    )
    config = ConfigSettings(configfiles=args.configfile or [], config_args=args.config)
    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        workflow_api = api.workflow(
            resource_settings=resources,
            config_settings=config,
            snakefile=Path(args.snakefile or REPO / "Snakefile"),
            workdir=Path(args.directory) if args.directory else None,
        )
        dag_api = workflow_api.dag(DAGSettings(targets=set(args.targets), forceall=True))
        workflow = dag_api.workflow_api._workflow
        workflow._prepare_dag(
            forceall=True, ignore_incomplete=True, lock_warn_only=True, nolock=True
        )
        workflow._build_dag()
        # Workflow.is_local without its `local_exec` (true here: no remote executor is set)
        local = {
            rule.name
            for rule in workflow.rules
            if rule.group is None and (rule.name in workflow._localrules or rule.norun)
        }
        for job in workflow.dag.jobs:
            yield job, job.name in local


def main(argv: list[str]) -> None:
    for job, local in jobs(list(argv) or list(DEFAULT_ARGS)):
        resources = {k: v for k, v in job.resources.items() if not k.startswith("_")}
        record = {
            "rule": job.name,
            "wildcards": dict(job.wildcards_dict),
            "local": local,
            "resources": {k: v for k, v in resources.items() if isinstance(v, (int, str))},
            "sbatch": None if local else submit_call(job),
        }
        print(json.dumps(record, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
