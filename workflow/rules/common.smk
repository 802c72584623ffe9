# Grid enumeration, input functions and wildcard constraints: the only Python in .smk files.
# The grid itself is computed by empathy_distill.grid so that it is unit-tested.

import os
import sys
from pathlib import Path

PACKAGE_DIR = str(Path(workflow.current_basedir).parent)  # workflow/, beside rules/
if PACKAGE_DIR not in sys.path:
    sys.path.insert(0, PACKAGE_DIR)
# Rules call `python -m empathy_distill...`: make the package importable in every job, local or
# on a cluster node (the checkout sits on the shared file system).
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (PACKAGE_DIR, os.environ.get("PYTHONPATH")) if p)
)

from empathy_distill import grid  # noqa: E402
from empathy_distill.config import validate_config  # noqa: E402
from empathy_distill.dataset import load_dataset  # noqa: E402
from empathy_distill.sets import teacher_files_for  # noqa: E402
from empathy_distill.training import llamafactory_config as lf_config  # noqa: E402
from empathy_distill.training import students as lf_students  # noqa: E402

validate_config(config)

DATASET = config["dataset"]["path"]
PROMPTS = config["prompts"]
TRAIN_CSV = "results/data/train.csv"
TEST_CSV = "results/data/test.csv"
# Conda environment of the CPU rules (for --sdm conda; locally the installed venv is used).
CORE_ENV = "../../envs/core.yaml"

# A malformed dataset must stop the run before any job, API call or GPU hour.
if Path(DATASET).exists():
    load_dataset(DATASET)


wildcard_constraints:
    method="|".join(grid.METHODS),
    strategy=r"[a-z0-9_]+",
    student=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    stage="sft|dpo",
    judge=r"[A-Za-z0-9][A-Za-z0-9_.-]*",


def is_activated(method):
    """A distillation method with at least one strategy in the configured grid."""
    return bool(config["distillation"]["methods"].get(method))


def data_configs():
    return grid.data_configs(config)


def set_files(stages=grid.STAGES):
    """Every training set of the configured grid."""
    return [
        f"results/datasets/{dc.method}/{dc.strategy}/{stage}.json"
        for dc in data_configs()
        for stage in stages
    ]


def teacher_outputs_for_set(wildcards):
    """Teacher rewrites an improved set is built from (three files for the pooled strategy)."""
    return [
        f"results/teacher/{wildcards.method}/{part}.jsonl"
        for part in teacher_files_for(wildcards.strategy)
    ]


def train_resources(student):
    """Resources of a training job: training.resources, then the student's own overrides."""
    own = config["training"]["per_student"].get(student, {}).get("resources", {})
    return {**config["training"]["resources"], **own}


def model_outputs():
    """Final adapter of every (student, data configuration, stage) of the grid."""
    return [
        f"results/models/{m.student}/{m.method}/{m.strategy}/{m.stage}/adapter_model.safetensors"
        for m in grid.models(config)
    ]


def teacher_model_files():
    """A local teacher model the workflow builds itself (builtin:tiny in the demo) is an input."""
    teacher = config["teacher"]
    return lf_students.model_files(teacher) if teacher["backend"] == "transformers" else []


def get_final_output():
    """Everything `snakemake` builds by default: the whole configured grid."""
    targets = ["results/datasets/dataset_info.json"]
    targets += [
        f"results/datasets/{dc.method}/{dc.strategy}/leakage_check.ok" for dc in data_configs()
    ]
    targets += model_outputs()
    return targets
