"""benchmarks/search_quality.py: its hypervolume, checked against fronts small enough to work out by hand."""

from __future__ import annotations

import pytest

from benchmarks.search_quality import curve, hypervolume, scaled


def test_hypervolume_of_a_hand_computed_front():
    """(0.2, 0.6) and (0.5, 0.3) up to (1, 1): 0.8 x 0.4 + 0.5 x 0.7 - their overlap 0.5 x 0.4 = 0.47."""
    assert hypervolume([(0.2, 0.6), (0.5, 0.3)]) == pytest.approx(0.47)
    # A dominated point and one outside the reference box add nothing; order does not matter.
    assert hypervolume([(0.5, 0.3), (0.4, 0.7), (0.2, 0.6), (1.2, 0.1)]) == pytest.approx(0.47)
    assert hypervolume([(0.0, 0.0)]) == pytest.approx(1.0)
    assert hypervolume([]) == 0.0


def test_a_search_curve_counts_the_first_k_evaluations():
    """Values are maximised and latencies minimised: (value 0.5, 1 ms) of max 1, budget 2 ms scales to (0.5, 0.5)."""
    assert scaled(0.5, 1.0, 1.0, 2.0) == (0.5, 0.5)
    run = {"evaluated": [[0.5, 1.0], None, [0.8, 1.6]]}  # None: an evaluation without a feasible value
    hv = curve(run, (1, 3), value_max=1.0, budget_ms=2.0)
    # first: 0.5 x 0.5; then (0.2, 0.8) adds 0.8 x 0.2 - overlap 0.5 x 0.2 = 0.06
    assert hv == pytest.approx([0.25, 0.31])
