"""benchmarks/dense_ablation.py: the iso-score rule on hand-made numbers (the quick run proves the pipeline)."""

from __future__ import annotations

import pytest

from benchmarks import dense_ablation
from search_spaces import baseline_arch

ARCH = baseline_arch(parallelism_factor=32, task="detection")


def candidate(trial: int, val: float, latency_ms: float):
    return dense_ablation.Candidate(trial=trial, arch=ARCH, val=val, test=None, latency_ms=latency_ms)


def test_the_fastest_candidate_within_half_a_point_of_the_baseline_is_picked() -> None:
    pool = [candidate(0, 0.300, 1.0), candidate(1, 0.2951, 0.5), candidate(2, 0.2949, 0.2), candidate(3, 0.31, 0.8)]
    picked, held = dense_ablation.iso_metric_pick(pool, baseline_val=0.300)
    assert (picked.trial, held) == (1, True)  # 0.2951 >= 0.300 - 0.005; trial 2 is faster but 0.51 points below
    assert [c.trial for c in dense_ablation.iso_metric_front(pool, baseline_val=0.300)] == [1, 3, 0]


def test_exactly_half_a_point_below_still_holds() -> None:
    picked, held = dense_ablation.iso_metric_pick([candidate(0, 0.295, 0.4)], baseline_val=0.300)
    assert held and picked.trial == 0


def test_when_nothing_holds_the_best_scoring_is_reported_as_not_held() -> None:
    pool = [candidate(0, 0.20, 0.3), candidate(1, 0.25, 0.9), candidate(2, 0.25, 0.6)]
    picked, held = dense_ablation.iso_metric_pick(pool, baseline_val=0.30)
    assert (picked.trial, held) == (2, False)  # best score; the faster of the two tied
    assert dense_ablation.iso_metric_front(pool, baseline_val=0.30) == []
    assert dense_ablation.iso_metric_pick([], baseline_val=0.30) is None


def test_latency_change_is_negative_when_faster() -> None:
    assert dense_ablation.latency_change_pct(2.0, 1.3) == pytest.approx(-35.0)
    assert dense_ablation.latency_change_pct(2.0, 2.5) == pytest.approx(25.0)


def test_each_default_recipe_is_sized_for_90_minutes_a_study() -> None:
    recipe = dense_ablation.DenseRecipe(trials=10, train_limit=512, epochs=3, eval_limit=100)
    assert dense_ablation.estimated_minutes(recipe, "V3") == pytest.approx(3 * (10 * 23.9 + 21.9) / 60)
    for variant in dense_ablation.DETECTION_VARIANTS:
        assert dense_ablation.estimated_minutes(dense_ablation.DETECTION_RECIPE, variant) <= 90
    assert dense_ablation.estimated_minutes(dense_ablation.SEGMENTATION_RECIPE, "segmentation") <= 90
