"""Statistics of pairwise judgments: win rates, bootstrap intervals, position and length bias.

Conventions: a per-dialogue *outcome* is +1 (the model wins), 0 (tie) or -1 (the model loses);
its *score* is 1, 0.5 or 0, so a win rate counts ties as half (as in MT-Bench, Zheng et al. 2023,
and Arena-Hard-Auto). Intervals are percentile bootstraps over dialogues, seeded so that a rerun
gives the same table. The length-controlled win rate follows the idea of Length-Controlled
AlpacaEval (Dubois et al. 2024, arXiv:2404.04475): regress the verdict on the length difference
and read the win rate off the model at zero difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

WIN, TIE, LOSS = 1, 0, -1


def scores(outcomes: Sequence[int]) -> np.ndarray:
    """Map outcomes (+1/0/-1) to scores (1/0.5/0)."""
    arr = np.asarray(outcomes, dtype=float)
    if arr.size and not np.isin(arr, (WIN, TIE, LOSS)).all():
        raise ValueError("outcomes must be +1 (win), 0 (tie) or -1 (loss)")
    return (arr + 1.0) / 2.0


def win_rate(outcomes: Sequence[int]) -> float:
    """(wins + ties / 2) / n; NaN for no outcomes."""
    s = scores(outcomes)
    return float(s.mean()) if s.size else float("nan")


def bootstrap_ci(
    outcomes: Sequence[int], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the win rate, resampling dialogues with replacement."""
    return bootstrap_mean_ci(scores(outcomes), n_boot, seed, level)


def bootstrap_mean_ci(
    values: Sequence[float], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean (a win rate's scores, an answer set's empathy
    scores), resampling the items with replacement; NaN for no items."""
    s = np.asarray(values, dtype=float)
    if s.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, s.size, size=(n_boot, s.size))
    means = s[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def position_consistency(first: Sequence[int], second: Sequence[int]) -> float:
    """Share of pairs whose verdict survives swapping the positions.

    ``first`` and ``second`` are the model's outcomes (+1/0/-1) in the two orders, dialogue by
    dialogue. A judge that always picks "Response 1" scores 0: every verdict flips.
    """
    a, b = np.asarray(first), np.asarray(second)
    if a.shape != b.shape:
        raise ValueError("both orders need one verdict per dialogue")
    return float((a == b).mean()) if a.size else float("nan")


@dataclass(frozen=True)
class LengthControl:
    """Logistic model P(model wins) = sigmoid(intercept + slope * length_diff / scale)."""

    win_rate: float  # predicted at zero length difference
    intercept: float
    slope: float  # > 0: the judge prefers the longer answer
    scale: float  # length differences were divided by this (their standard deviation)


def length_controlled_win_rate(
    outcomes: Sequence[int], length_diff: Sequence[float], l2: float = 1e-2, iters: int = 100
) -> LengthControl:
    """Fit the verdict on the (model - opponent) length difference; report it at difference 0.

    Ties enter as half a win and half a loss (fractional targets). A small L2 penalty on the
    slope keeps the fit finite when the judge is perfectly length-driven (complete separation).
    Fitted by Newton's method; two parameters need nothing heavier.
    """
    y = scores(outcomes)
    d = np.asarray(length_diff, dtype=float)
    if y.size != d.size:
        raise ValueError("one length difference per outcome is needed")
    if y.size == 0:
        return LengthControl(float("nan"), float("nan"), float("nan"), float("nan"))
    scale = float(d.std()) or 1.0
    x = np.column_stack([np.ones_like(d), d / scale])
    beta = np.zeros(2)
    penalty = np.diag([1e-6, l2]) * y.size
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        grad = x.T @ (y - p) - penalty @ beta
        hess = (x.T * (p * (1.0 - p))) @ x + penalty
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.abs(step).max() < 1e-10:
            break
    intercept, slope = float(beta[0]), float(beta[1])
    return LengthControl(1.0 / (1.0 + np.exp(-intercept)), intercept, slope, scale)


def cohen_kappa(a: Sequence, b: Sequence) -> float:
    """Cohen's kappa of two raters over the same items (labels of any hashable type).

    kappa = (p_o - p_e) / (1 - p_e); 1.0 when both raters agree perfectly on a constant label
    (p_e = 1), NaN for no items.
    """
    if len(a) != len(b):
        raise ValueError("both raters must rate the same items")
    if len(a) == 0:
        return float("nan")
    labels = sorted(set(a) | set(b), key=repr)
    index = {label: i for i, label in enumerate(labels)}
    table = np.zeros((len(labels), len(labels)))
    for x, y in zip(a, b, strict=True):
        table[index[x], index[y]] += 1
    n = table.sum()
    p_o = np.trace(table) / n
    p_e = float((table.sum(axis=1) * table.sum(axis=0)).sum()) / n**2
    if p_e == 1.0:
        return 1.0 if p_o == 1.0 else float("nan")
    return float((p_o - p_e) / (1.0 - p_e))
