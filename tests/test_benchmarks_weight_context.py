"""benchmarks/weight_context.py: the network's weight size as a subgraph feature, on labels whose answer is known."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from latency_estimator.profiling import SubgraphSpec, shipped_spaces_for
from latency_estimator.subgraph import decompose_arch, weight_mb
from search_spaces import plan_network

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "weight_context.py"
spec = importlib.util.spec_from_file_location("weight_context", SCRIPT)
weight_context = importlib.util.module_from_spec(spec)
spec.loader.exec_module(weight_context)


def _networks(count: int, seed: int):
    spaces = [space for space in shipped_spaces_for(8) if space.size() > 1]
    rng = np.random.default_rng(seed)
    return [spaces[i % len(spaces)].sample(rng) for i in range(count)]


def block_macs(block) -> int:
    return sum(op.macs for op in block.ops)


def _timed(archs, threshold_mb: float):
    """Rows and networks of a made-up device on which every subgraph of a network over ``threshold_mb`` of weights
    runs 1.6x slower (its weights no longer stay in cache): a time that only the network's weight size explains."""
    rows, networks = [], []
    for arch in archs:
        slow = 1.6 if weight_mb(decompose_arch(arch)) > threshold_mb else 1.0
        times = [
            (SubgraphSpec.from_block(block, arch), slow * (0.002 + block_macs(block) * 1e-8))
            for block in plan_network(arch)
        ]
        rows += [(spec, ms, arch.arch_id) for spec, ms in times]
        networks.append((arch, sum(ms for _, ms in times)))
    return rows, networks


def test_the_weight_size_feature_explains_what_the_subgraph_alone_cannot():
    archs = _networks(60, seed=1)
    threshold = float(np.median([weight_mb(decompose_arch(arch)) for arch in archs]))
    rows, networks = _timed(archs, threshold)
    evaluation = _timed(_networks(20, seed=2), threshold)[1]
    data = weight_context.Rows(rows, networks, 8)
    family = ("linear", "single", "squared")
    (held_out_without, _), (held_out_with, evaluated_with) = (
        data.scores(family, context, evaluation) for context in (False, True)
    )
    assert held_out_with[0] > 0.9 > 0.7 > held_out_without[0], (held_out_with, held_out_without)
    assert evaluated_with[0] > 0.9


def test_report_lists_every_combination_by_weight_bin():
    rows = [(False, False, [0.5, 0.9, 0.4, 0.1], [0.6, 1.0, 0.5, 0.0]), (True, True, [0.7] * 4, [0.8] * 4)]
    text = weight_context.report("cpu-ort", 30, ("linear", "single", "absolute"), 2999, 510, rows)
    assert "| no | no | 50.0% | 90.0% | 40.0% | 10.0% | 60.0% | 100.0% | 50.0% | 0.0% |" in text
    assert "| yes | yes | 70.0%" in text and "--networks 30" in text and "510 subgraphs of 30" in text
