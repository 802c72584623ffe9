"""The grids plan the same jobs with the same inputs, outputs and specs as the committed
fixture (``tests/data/job_spec_hashes.json``, written by ``python -m tests.job_specs``).

A refactor (moving spec builders between modules, say) must change no job: a changed hash is a
job Snakemake would rerun. A change meant to alter specs (a new config key that shapes output)
rewrites the fixture with ``python -m tests.job_specs`` and names the jobs it reruns.
"""

from __future__ import annotations

import json

import pytest

from .job_specs import FIXTURE, PROFILES, hashes, plan_in_subprocess


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_job_and_spec_of_the_grid_is_unchanged(profile):
    expected = json.loads(FIXTURE.read_text(encoding="utf-8"))[profile]
    planned = hashes(plan_in_subprocess(profile))
    missing = sorted(set(expected) - set(planned))
    added = sorted(set(planned) - set(expected))
    changed = sorted(k for k in set(expected) & set(planned) if expected[k] != planned[k])
    assert not (missing or added or changed), (
        f"{profile}: {len(missing)} jobs gone {missing[:5]}, {len(added)} new {added[:5]},"
        f" {len(changed)} changed {changed[:5]} (python -m tests.job_specs rewrites the fixture)"
    )
