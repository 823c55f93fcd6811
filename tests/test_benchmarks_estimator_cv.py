"""benchmarks/estimator_cv.py on subgraphs "timed inside" networks on a made-up device whose answer is known."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from latency_estimator.build import train_from_dataset
from latency_estimator.dataset import MeasurementDataset
from latency_estimator.devices import get_device
from latency_estimator.devices.base import Measurement
from latency_estimator.networks import searchable_spaces
from latency_estimator.spec import SubgraphSpec
from latency_estimator.subgraph import decompose_arch, weight_mb
from search_spaces import plan_network

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "estimator_cv.py"
spec = importlib.util.spec_from_file_location("estimator_cv", SCRIPT)
estimator_cv = importlib.util.module_from_spec(spec)
spec.loader.exec_module(estimator_cv)

DEVICE = get_device("sim-npu-p16")
SLOW_OVER_MB = 8.0  # a bin edge of the weight-size feature


def _networks(count: int, seed: int):
    spaces = searchable_spaces(16)
    rng = np.random.default_rng(seed)
    return [spaces[i % len(spaces)].sample(rng) for i in range(count)]


def _timed(arch) -> list[tuple[SubgraphSpec, float]]:
    """Each subgraph's simulated latency, 1.6x in a network over SLOW_OVER_MB of weights (as if its weights no longer
    stayed in cache): a time that only the network's weight size explains."""
    slow = 1.6 if weight_mb(decompose_arch(arch)) > SLOW_OVER_MB else 1.0
    specs = [SubgraphSpec.from_block(block, arch) for block in plan_network(arch)]
    return [(spec, slow * DEVICE.measure_subgraph(spec.subgraph()).latency_ms) for spec in specs]


def _dataset(directory: Path, archs) -> MeasurementDataset:
    dataset = MeasurementDataset.open(directory, device=DEVICE)
    for arch in archs:
        times = _timed(arch)
        for spec, ms in times:
            dataset.append_subgraph(spec, Measurement(ms, 0.0, 1), round_name="coverage", network=arch.arch_id)
        dataset.append_network(arch, Measurement(sum(ms for _, ms in times), 0.0, 1))
    dataset.write_metadata()
    train_from_dataset(dataset).save(directory)
    return dataset


def test_held_out_networks_need_the_networks_weight_size(tmp_path):
    archs = _networks(60, seed=1)
    assert 10 < sum(weight_mb(decompose_arch(arch)) > SLOW_OVER_MB for arch in archs) < 50
    dataset = _dataset(tmp_path, archs)
    evaluation = [
        {"arch": json.dumps(arch.to_dict()), "measured_ms": str(sum(ms for _, ms in _timed(arch)))}
        for arch in _networks(20, seed=2)
    ]
    data = estimator_cv.Data(dataset, np.array([row["network"] for row in dataset.rows]), evaluation)
    assert data.kept[3]  # the built estimator sees the weight size: its subgraphs were timed inside networks
    held_with, _, evaluated_with, _ = data.score(("linear", "single", "absolute", True, {}))
    held_without, _, _, _ = data.score(("linear", "single", "absolute", False, {}))
    assert held_with > 0.9 > 0.7 > held_without, (held_with, held_without)
    assert evaluated_with > 0.9
    assert "with the network's weight size" in estimator_cv.family(data.kept)
