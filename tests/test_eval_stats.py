"""Statistics on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from empathy_distill.evaluation.stats import (
    bootstrap_ci,
    cohen_kappa,
    length_controlled_win_rate,
    position_consistency,
    win_rate,
)


def test_win_rate_counts_ties_half():
    # 3 wins, 2 ties, 5 losses: (3 + 1) / 10
    assert win_rate([1, 1, 1, 0, 0, -1, -1, -1, -1, -1]) == pytest.approx(0.4)
    assert win_rate([0, 0]) == 0.5
    assert math.isnan(win_rate([]))
    with pytest.raises(ValueError):
        win_rate([2])


def test_bootstrap_interval_contains_estimate_narrows_with_n_and_is_seeded():
    small = [1, 0, -1, 1, 1, -1, 0, 1] * 5
    large = small * 20
    lo_s, hi_s = bootstrap_ci(small, 2000, seed=1)
    lo_l, hi_l = bootstrap_ci(large, 2000, seed=1)
    assert lo_s <= win_rate(small) <= hi_s
    assert lo_l <= win_rate(large) <= hi_l
    assert hi_l - lo_l < (hi_s - lo_s) / 3  # ~ 1/sqrt(20) of the width
    assert bootstrap_ci(small, 500, seed=3) == bootstrap_ci(small, 500, seed=3)
    assert bootstrap_ci([1] * 10) == (1.0, 1.0)


def test_position_consistency():
    assert position_consistency([1, 1, -1, 0], [1, -1, -1, 1]) == 0.5
    assert position_consistency([1, -1], [-1, 1]) == 0.0


def test_cohen_kappa_on_known_tables():
    # 2x2 table [[20, 5], [10, 15]]: p_o = 0.7, p_e = (25*30 + 25*20) / 50^2 = 0.5 -> 0.4
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    # Wikipedia's example: [[45, 15], [25, 15]] -> p_o 0.6, p_e 0.54, kappa 0.1304
    a = [1] * 60 + [0] * 40
    b = [1] * 45 + [0] * 15 + [1] * 25 + [0] * 15
    assert cohen_kappa(a, b) == pytest.approx((0.6 - 0.54) / 0.46)
    assert cohen_kappa([1, 0, -1], [1, 0, -1]) == 1.0
    assert cohen_kappa([1, 1], [1, 1]) == 1.0
    # systematic disagreement is below chance
    assert cohen_kappa([1, -1, 1, -1], [-1, 1, -1, 1]) == pytest.approx(-1.0)


def test_length_control_without_length_effect_equals_raw_rate():
    # every outcome occurs once with a positive and once with the mirrored difference
    base = [1, -1, 1, 1, -1, 1, 0, 1] * 5
    sizes = [3 + i % 5 for i in range(len(base))]
    outcomes, diffs = base * 2, sizes + [-d for d in sizes]
    lc = length_controlled_win_rate(outcomes, diffs)
    assert lc.win_rate == pytest.approx(win_rate(outcomes), abs=1e-6)
    assert lc.slope == pytest.approx(0.0, abs=1e-6)


def test_length_control_removes_length_driven_wins():
    # The model wins exactly when it is longer, and it is longer in 80% of dialogues.
    diffs = list(range(5, 85)) + list(range(-25, -5))
    outcomes = [1] * 80 + [-1] * 20
    lc = length_controlled_win_rate(outcomes, diffs)
    assert win_rate(outcomes) == 0.8
    assert lc.slope > 1
    assert lc.win_rate == pytest.approx(0.5, abs=0.1)
