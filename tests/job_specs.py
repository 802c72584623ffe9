"""Every job a dry run plans, with what shapes it: rule, wildcards, inputs, outputs and params
(the job's spec among them), read from Snakemake's own DAG (its Python API, executor
``dryrun``, every job forced so that finished results change nothing).

Run as a script it (re)writes the committed fixture ``tests/data/job_spec_hashes.json``, one
SHA-256 per job of each profile's grid, that ``test_specs_unchanged.py`` compares against::

    python -m tests.job_specs            # rewrite the fixture (review its diff: jobs whose
                                         # hash changed are jobs that rerun)
    python -m tests.job_specs --show demo   # print one profile's jobs in full (JSON)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE = REPO_ROOT / "tests" / "data" / "job_spec_hashes.json"
#: Profile -> config files (as ``snakemake --configfile``), relative to the repository.
PROFILES = {
    "default": ["config.yaml"],
    "demo": ["config.yaml", "workflow/profiles/demo/config.demo.yaml"],
    "cpu-small": ["config.yaml", "workflow/profiles/cpu-small/config.cpu-small.yaml"],
    "cpu-full": [
        "config.yaml",
        "workflow/profiles/cpu-small/config.cpu-small.yaml",
        "workflow/profiles/cpu-full/config.cpu-full.yaml",
    ],
}
#: The checkout's absolute path (the report rule's Snakefile param) is not part of a spec.
ROOT_MARK = "<repo>"


def plan(configfiles: list[str]) -> dict[str, dict]:
    """``rule {wildcards}`` -> inputs, outputs and params of every job of a forced dry run."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        Quietness,
        ResourceSettings,
    )

    os.chdir(REPO_ROOT)
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(cores=2),
            config_settings=ConfigSettings(configfiles=[REPO_ROOT / c for c in configfiles]),
            snakefile=REPO_ROOT / "Snakefile",
            workdir=REPO_ROOT,
        )
        workflow_api.dag(DAGSettings(forceall=True)).execute_workflow(executor="dryrun")
        jobs = {}
        for job in workflow_api._workflow.dag.jobs:
            key = f"{job.rule.name} {json.dumps(dict(job.wildcards), sort_keys=True)}"
            jobs[key] = {
                "input": sorted(map(str, job.input)),
                "output": sorted(map(str, job.output)),
                "params": dict(job.params.items()),
            }
    text = json.dumps(jobs, sort_keys=True, default=str).replace(str(REPO_ROOT), ROOT_MARK)
    return json.loads(text)


def hashes(jobs: dict[str, dict]) -> dict[str, str]:
    return {
        key: hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()[:16]
        for key, job in sorted(jobs.items())
    }


def plan_in_subprocess(profile: str) -> dict[str, dict]:
    """One profile's jobs from a fresh interpreter (Snakemake keeps global state per run)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "workflow")}
    done = subprocess.run(
        [sys.executable, "-m", "tests.job_specs", "--show", profile],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dry run of {profile} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", choices=sorted(PROFILES), help="print one profile's jobs")
    args = parser.parse_args(argv)
    if args.show:
        jobs = plan(PROFILES[args.show])
        sys.stdout.write(json.dumps(jobs, sort_keys=True, indent=1) + "\n")
        return
    fixture = {name: hashes(plan_in_subprocess(name)) for name in PROFILES}
    FIXTURE.write_text(json.dumps(fixture, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{FIXTURE}: " + ", ".join(f"{n} {len(h)} jobs" for n, h in fixture.items()))


if __name__ == "__main__":
    main()
