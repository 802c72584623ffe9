"""The projection's rows: what one group of paid calls costs, the table and the budget cap."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import pandas as pd

from ..llm.errors import BudgetExceededError
from ..llm.request import ChatRequest

PROJECTION_COLUMNS = (
    "stage",
    "part",
    "backend",
    "model",
    "mode",
    "requests",
    "cached",
    "input_tokens",
    "output_tokens",
    "cost_usd",
)


@dataclass
class ProjectionRow:
    stage: str
    part: str
    backend: str
    model: str
    mode: str
    requests: int
    cached: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


def stand_in(tokens: int) -> str:
    """A text that counts exactly ``tokens`` approximate tokens."""
    return "x" * (4 * tokens)


def unique(requests: Iterable[ChatRequest]) -> list[ChatRequest]:
    return list({r.key: r for r in requests}.values())


def projection_table(rows: list[ProjectionRow]) -> pd.DataFrame:
    table = pd.DataFrame([asdict(r) for r in rows], columns=list(PROJECTION_COLUMNS))
    total = {
        c: table[c].sum()
        for c in ("requests", "cached", "input_tokens", "output_tokens", "cost_usd")
    }
    total.update(stage="TOTAL", part="", backend="", model="", mode="")
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def check_budget(total_usd: float, budget_usd: float | None, spent_usd: float) -> None:
    if budget_usd is not None and spent_usd + total_usd > budget_usd + 1e-12:
        raise BudgetExceededError(
            f"projected cost ${total_usd:.2f} + ${spent_usd:.2f} already spent exceeds"
            f" llm.budget_usd = ${budget_usd:.2f}: shrink the grid, switch to batch mode or raise"
            " the cap"
        )
