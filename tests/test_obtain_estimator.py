"""obtain_estimator: the one way every caller loads (or builds) a device's estimator: real builds, real processes."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from latency_estimator import EstimatorError, LatencyEstimator, get_device, obtain_estimator
from latency_estimator.build import train_estimator
from latency_estimator.coverage import SubgraphSampler, coverage_for
from latency_estimator.devices.base import cpu_model
from latency_estimator.machine import runtime_versions
from nas.cli.main import main

REPO = Path(__file__).resolve().parents[1]
SIM = "sim-npu-p32"
BUILD_LINE = "profiling the device and training one"
WORKER = """
import logging, sys
from latency_estimator import obtain_estimator
from search_spaces import baseline_arch
logging.basicConfig(level=logging.INFO, format="%(message)s")
estimator = obtain_estimator(sys.argv[1], samples=120)
print(repr(float(estimator.predict_many([baseline_arch(parallelism_factor=32)])[0])))
"""


def test_workers_starting_together_without_an_estimator_all_get_the_one_built(tmp_path: Path) -> None:
    env = {**os.environ, "EDGENAS_ESTIMATORS": str(tmp_path), "PYTHONPATH": str(REPO)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, SIM],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [(worker.wait(timeout=600), *worker.communicate()) for worker in workers]
    assert [code for code, _, _ in results] == [0, 0, 0], [err[-2000:] for _, _, err in results]
    assert len({out for _, out, _ in results}) == 1  # one estimator, used by all
    assert sum(BUILD_LINE in err for _, _, err in results) == 1  # one worker built it, the others waited for it
    assert (tmp_path / SIM / LatencyEstimator.META_FILE).is_file()
    assert not [path.name for path in tmp_path.iterdir() if ".building-" in path.name]  # no scratch folder left


def test_predict_on_a_simulated_device_without_an_estimator_builds_it(tmp_path: Path, caplog, capsys) -> None:
    path = "latency_estimator/reference_networks/mobilenet_v2.yaml"
    with caplog.at_level(logging.INFO, logger="latency_estimator"):
        assert main(["latency", "predict", "--device", SIM, "--dir", str(tmp_path / SIM), str(REPO / path)]) == 0
    assert any(BUILD_LINE in record.getMessage() for record in caplog.records)  # as a search does, logged
    assert f"predicted latency on {SIM}" in capsys.readouterr().out
    assert (tmp_path / SIM / LatencyEstimator.META_FILE).is_file()


def test_a_timed_device_without_an_estimator_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(EstimatorError, match="edgenas latency profile --device cpu-ort` then `edgenas latency train"):
        obtain_estimator("cpu-ort", directory=tmp_path / "cpu-ort")
    assert not (tmp_path / "cpu-ort").exists()  # timing a CPU takes minutes: never unasked


def _cpu_ort_estimator(directory: Path, *, cpu: str, versions: dict[str, str]) -> Path:
    """A cpu-ort estimator trained on simulated latencies (nothing is timed), as measured on ``cpu``."""
    device = get_device("cpu-ort")
    specs = SubgraphSampler(coverage_for(device.parallelism_factor), seed=0).plan(60)
    subgraphs = [spec.subgraph() for spec in specs]
    npu = get_device("sim-npu-p16")
    latency_ms = np.array([npu.measure_subgraph(subgraph).latency_ms for subgraph in subgraphs])
    metadata = {"device": device.name, "profile": device.profile.to_dict(), "cpu_model": cpu, "versions": versions}
    train_estimator(subgraphs, latency_ms, device_metadata=metadata).save(directory)
    return directory


def test_an_estimator_measured_on_another_machine_is_used_with_one_warning(tmp_path: Path, caplog, capsys) -> None:
    versions = {**runtime_versions(), "onnxruntime": "0.0.1"}
    folder = _cpu_ort_estimator(tmp_path / "cpu-ort", cpu="Another CPU @ 1 GHz", versions=versions)
    with caplog.at_level(logging.WARNING, logger="latency_estimator"):
        obtain_estimator("cpu-ort", directory=folder)
    [warning] = [record.getMessage() for record in caplog.records]
    assert "Another CPU @ 1 GHz" in warning and "onnxruntime 0.0.1 ->" in warning and "\n" not in warning
    caplog.clear()
    path = str(REPO / "latency_estimator/reference_networks/mobilenet_v2.yaml")
    with caplog.at_level(logging.WARNING, logger="latency_estimator"):
        assert main(["latency", "predict", "--device", "cpu-ort", "--dir", str(folder), path]) == 0
    assert len(caplog.records) == 1 and "measured on another machine" in caplog.records[0].getMessage()
    assert "predicted latency on cpu-ort" in capsys.readouterr().out


def test_an_estimator_measured_here_is_used_without_a_warning(tmp_path: Path, caplog) -> None:
    folder = _cpu_ort_estimator(tmp_path / "cpu-ort", cpu=cpu_model(), versions=runtime_versions())
    with caplog.at_level(logging.WARNING, logger="latency_estimator"):
        estimator = obtain_estimator("cpu-ort", directory=folder)
    assert not caplog.records
    assert estimator.device == "cpu-ort"
