"""benchmarks/timing_drift.py's analysis on traces whose answers are known."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "timing_drift.py"
spec = importlib.util.spec_from_file_location("timing_drift", SCRIPT)
timing_drift = importlib.util.module_from_spec(spec)
spec.loader.exec_module(timing_drift)


def test_slow_episodes_are_measured_in_seconds():
    t = np.arange(10) * 2.0  # a round every 2 s
    slow = np.array([0, 1, 1, 0, 0, 0, 1, 1, 1, 1], dtype=bool)
    assert timing_drift.episodes(slow, t) == [4.0, 8.0]  # the last one runs to the end of the trace


def test_fastest_of_windows_removes_slow_episodes_that_single_windows_keep():
    rounds, networks = 120, 6
    t = np.arange(rounds) * 2.0
    ms = np.tile(np.linspace(0.2, 1.2, networks), (rounds, 1))
    ms[(np.arange(rounds) // 10) % 3 == 0] *= 1.4  # every third 20 s stretch is 40 % slower for everyone
    rows = dict(timing_drift.repeatability(ms, t, np.random.default_rng(0)))
    single = rows["one window, two random times"]
    assert 0.4 < single < 0.7  # two random times: both fast or both slow, about 5 times in 9
    assert rows["fastest of 5 windows ~16 s apart"] == 1.0  # 64 s always reach a fast stretch
