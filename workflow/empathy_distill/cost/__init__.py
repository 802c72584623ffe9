"""What the configured grid will cost on the paid APIs, computed before anything is spent.

``python -m empathy_distill.cost --config config.yaml`` (the ``cost`` rule) prints one row per
teacher step, per judge x comparison kind and per empathy scorer x kind of answer set, and the
total, and writes them to ``results/costs/projection.csv``. How it counts: ``projection.py``.

Modules by concern: ``requests`` (the teacher's requests and the judges' token counts, built as
the stages build them), ``scorers`` (the empathy scorers' calls, embeddings, fine-tuning
examples), ``projection`` (tokens x prices, the cache's answered requests free), ``rows`` (the
table and the budget cap), ``command`` (the job). Every public name is importable from
``empathy_distill.cost``.
"""

from __future__ import annotations

from .command import cost_spec, main, run_projection
from .projection import project
from .requests import judge_token_counts, teacher_requests
from .rows import (
    PROJECTION_COLUMNS,
    ProjectionRow,
    check_budget,
    projection_table,
    stand_in,
)
from .scorers import (
    SPLIT_FILES,
    embedding_rows,
    embedding_texts,
    openai_finetune_projection,
    scorer_rows,
)

__all__ = [
    "PROJECTION_COLUMNS",
    "SPLIT_FILES",
    "ProjectionRow",
    "check_budget",
    "cost_spec",
    "embedding_rows",
    "embedding_texts",
    "judge_token_counts",
    "main",
    "openai_finetune_projection",
    "project",
    "projection_table",
    "run_projection",
    "scorer_rows",
    "stand_in",
    "teacher_requests",
]
