"""benchmarks/session_spread.py: which profiled networks it picks, and its report on times whose answers are known."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from latency_estimator.dataset import MeasurementDataset
from latency_estimator.devices import get_device
from latency_estimator.profiling import profile_device

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "session_spread.py"
spec = importlib.util.spec_from_file_location("session_spread", SCRIPT)
session_spread = importlib.util.module_from_spec(spec)
spec.loader.exec_module(session_spread)


def test_networks_are_picked_evenly_over_their_weight_sizes(tmp_path):
    profile_device(get_device("sim-npu-p32"), samples=30, networks=5, directory=tmp_path)
    dataset = MeasurementDataset.load(tmp_path)
    every = session_spread.spread_over_weights(dataset, len(dataset.network_rows))
    picked = session_spread.spread_over_weights(dataset, 2)
    weights = [weight for _, _, weight in every]
    assert weights == sorted(weights) and len(every) == len(dataset.network_rows)
    assert [weight for _, _, weight in picked] == [weights[0], weights[-1]]  # the lightest and the heaviest


def test_report_states_the_session_spread_and_the_drift_since_profiling():
    rows = [
        {"arch_id": "light", "weight_mb": 1.0, "profiled_ms": 0.20, "sessions_ms": [0.20, 0.201, 0.202]},
        {"arch_id": "heavy", "weight_mb": 9.0, "profiled_ms": 1.00, "sessions_ms": [0.90, 1.35, 1.00]},
    ]
    text = session_spread.report(get_device("cpu-ort"), rows, "python benchmarks/session_spread.py", "today")
    assert "max 1.50" in text and "above 1.10 for 50% of the networks (100% of the heavier half" in text
    assert "| heavy | 9.00 | 1.0000 | 0.9000 | 1.0000 | 1.3500 | 1.50 | 0.900 |" in text
    assert "median 0.950, range 0.900-1.000; within ±10 % for 100%" in text
