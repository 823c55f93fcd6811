"""`make demo` keeps to its 10 minutes: deploy tunes for what the steps before it left."""

from __future__ import annotations

import pytest

from nas.demo import DEMO_SECONDS, DEPLOY_TAIL_SECONDS, TUNE_MINUTES_BOUNDS, tuning_minutes


def test_tuning_gets_what_the_earlier_steps_left_of_the_demo() -> None:
    elapsed = 300.0
    assert tuning_minutes(elapsed) == pytest.approx((DEMO_SECONDS - DEPLOY_TAIL_SECONDS - elapsed) / 60, abs=0.05)


@pytest.mark.parametrize(("elapsed", "bound"), [(0.0, 1), (DEMO_SECONDS, 0)])
def test_tuning_stays_within_its_bounds(elapsed: float, bound: int) -> None:
    assert tuning_minutes(elapsed) == TUNE_MINUTES_BOUNDS[bound]  # a fast machine: 6 min; a late demo: still 1
