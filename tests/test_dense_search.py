"""A tiny dense search end to end: a real Optuna study training detectors on digit-scenes, mAP against latency.

``run_search`` scores it with sim-npu-p32's real estimator (built as a user's first search builds it); the other
checks go through ``run_with_latency_fn`` with a stand-in latency (MACs at a fixed rate), as the classification
search tests may.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

from latency_estimator import EstimatorError, decompose_arch, get_device, obtain_estimator
from latency_estimator.build import train_estimator
from nas.search import SearchError, run_search, run_with_latency_fn
from nas.search.settings import SearchSettings
from search_spaces import ArchConfig, baseline_arch, count_arch

TINY_DETECTION_SPACE = {
    "name": "tiny_detection",
    "parallelism_factor": 8,
    "input": {"channels": 1, "resolution": [64]},
    "depth_multiplier": [0.5, 1.0],
    "stem": {"kernel": [3], "channels": [8], "stride": 2},
    "stages": [
        {"block": ["ibn", "fused_ibn"], "kernel": [3], "expansion": [2], "channels": [16], "depth": [1], "stride": 2},
        {"block": ["ibn"], "kernel": [3], "expansion": [4], "channels": [16, 24], "depth": [1], "stride": 2},
    ],
    "head": {"type": "detection", "num_classes": 10, "taps": [0, 1], "channels": [16], "depth": [0, 1], "kernel": [3]},
}


def stand_in_latency(archs) -> np.ndarray:
    """A test stand-in: 1 ms per 10 M MACs (no real device is measured here)."""
    return np.array([count_arch(arch).macs / 1e7 for arch in archs])


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "tiny_detection.yaml"
    path.write_text(yaml.safe_dump(TINY_DETECTION_SPACE))
    return path


def settings(space_file, tmp_path, **changes) -> SearchSettings:
    values = {
        "space": str(space_file),
        "device": "sim-npu-p32",
        "dataset": "digit-scenes",
        "study": "det",
        "trials": 3,
        "strategy": "random",
        "mode": "multishot",
        "epochs": 1,
        "train_limit": 64,
        "eval_limit": 24,
        "batch_size": 16,
        "pruner": "none",
        "results_dir": str(tmp_path / "results"),
        "max_params": 200_000,
    }
    return SearchSettings(**{**values, **changes})


def test_tiny_detection_search_trains_candidates_and_writes_a_pareto_front(space_file, tmp_path):
    config = settings(space_file, tmp_path)
    result = run_with_latency_fn(config, latency_fn=stand_in_latency, dtype_bytes=4, parallelism_factor=8)
    folder = tmp_path / "results" / "det"
    with open(folder / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 and {row["state"] for row in rows} <= {"COMPLETE"}
    for row in rows:
        assert 0.0 <= float(row["val_map"]) <= 1.0  # COCO mAP@[.5:.95] of the val scenes
    document = json.loads((folder / "pareto.json").read_text())
    assert document["pareto"] and len(document["pareto"]) == len(result.pareto)
    for entry in document["pareto"]:
        arch = ArchConfig.load(folder / entry["file"])
        assert arch.task == "detection" and arch.arch_id == entry["arch_id"]
    trials = [t for t in result.study.trials if t.values]
    assert all(
        t.values[1] == pytest.approx(stand_in_latency([ArchConfig.from_dict(t.user_attrs["arch"])])[0]) for t in trials
    )


@pytest.mark.slow
def test_a_dense_search_is_scored_by_the_devices_estimator(tmp_path, monkeypatch, sim_npu_p32_estimators):
    monkeypatch.setenv("EDGENAS_ESTIMATORS", str(sim_npu_p32_estimators))
    space_file = tmp_path / "tiny_detection_any_width.yaml"  # searched at the device's P=32: widths of 8 and 16
    space_file.write_text(yaml.safe_dump({**TINY_DETECTION_SPACE, "align_channels": False}))
    result = run_search(**settings(space_file, tmp_path, trials=2, study="det-npu").to_dict())
    estimator = obtain_estimator("sim-npu-p32")
    trials = [t for t in result.study.trials if t.values]
    assert len(trials) >= 2
    for trial in trials:
        arch = ArchConfig.from_dict(trial.user_attrs["arch"])
        assert trial.values[1] == pytest.approx(float(estimator.predict_many([arch])[0]))


def test_a_dense_search_refuses_an_estimator_built_before_dense_networks(tmp_path, monkeypatch):
    subgraphs = decompose_arch(baseline_arch(parallelism_factor=32)) * 4  # classification only, as estimators were
    latency = np.array([1e-3 * (1 + s.macs / 1e5) * (1 + 0.01 * i) for i, s in enumerate(subgraphs)])
    metadata = {"device": "sim-npu-p32", "profile": get_device("sim-npu-p32").profile.to_dict()}
    train_estimator(subgraphs, latency, device_metadata=metadata).save(tmp_path / "estimators" / "sim-npu-p32")
    monkeypatch.setenv("EDGENAS_ESTIMATORS", str(tmp_path / "estimators"))
    space_file = tmp_path / "tiny_detection_any_width.yaml"
    space_file.write_text(yaml.safe_dump({**TINY_DETECTION_SPACE, "align_channels": False}))
    with pytest.raises(EstimatorError, match="built before edgenas estimated dense networks\\); rebuild it"):
        run_search(**settings(space_file, tmp_path).to_dict())


def test_dense_spaces_are_refused_where_they_cannot_be_searched(space_file, tmp_path):
    with pytest.raises(SearchError, match="multishot mode only"):
        run_with_latency_fn(
            settings(space_file, tmp_path, mode="zeroshot"),
            latency_fn=stand_in_latency,
            dtype_bytes=4,
            parallelism_factor=8,
        )
    with pytest.raises(SearchError, match="but dataset 'digits' has no detection labels"):
        run_with_latency_fn(
            settings(space_file, tmp_path, dataset="digits"),
            latency_fn=stand_in_latency,
            dtype_bytes=4,
            parallelism_factor=8,
        )
