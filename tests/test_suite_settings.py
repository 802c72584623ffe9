"""The suite's own process settings (tests/conftest.py) hold in every worker that runs tests."""

from __future__ import annotations

import os

import numpy  # noqa: F401  (its OpenBLAS is what the setting is for)
import scipy.linalg  # noqa: F401
from threadpoolctl import threadpool_info

from .conftest import BLAS_THREADS


def test_blas_runs_the_threads_the_suite_set() -> None:
    wanted = int(os.environ["OPENBLAS_NUM_THREADS"])  # conftest's 1, unless the caller set it
    assert set(BLAS_THREADS) <= set(os.environ)
    openblas = [pool for pool in threadpool_info() if pool["internal_api"] == "openblas"]
    assert openblas, "numpy and scipy load OpenBLAS"
    assert {pool["num_threads"] for pool in openblas} == {wanted}
