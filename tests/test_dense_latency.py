"""Latency of dense networks: their neck and head units are profiled, simulated, timed and predicted like the
backbone's, and an estimator built before they existed refuses them in one line instead of a wrong number."""

from __future__ import annotations

import numpy as np
import pytest

from latency_estimator import EstimatorError, Subgraph, decompose_arch, get_device, obtain_estimator
from latency_estimator.build import train_estimator
from latency_estimator.coverage import coverage_for
from latency_estimator.devices.npu_model import NpuHardware, simulate
from latency_estimator.networks import distinct_networks, overhead_networks
from latency_estimator.onnx_graph import subgraph_model
from latency_estimator.profiling import network_stream
from latency_estimator.spec import DENSE_PROFILED_KINDS, SubgraphSpec
from latency_estimator.subgraph import CLASSIFICATION_KINDS, DENSE_KINDS
from search_spaces import baseline_arch, plan_network
from search_spaces.plan import OpSpec, block_sources

DENSE_TASKS = ("detection", "segmentation")


def one_of_each_kind() -> list[Subgraph]:
    """A pointwise, separable, resize and add subgraph of the detection baseline, and a concat."""
    subgraphs = decompose_arch(baseline_arch(task="detection"))
    picked = [next(s for s in subgraphs if s.kind == kind) for kind in DENSE_PROFILED_KINDS]
    concat = OpSpec("concat", "concat", (32, 16, 16), (48, 16, 16))
    return [*picked, Subgraph.from_ops("concat", "concat", (concat,), activation="none")]


# ----- profiling ------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", DENSE_TASKS)
def test_every_dense_block_is_a_spec_that_rebuilds_its_subgraph(task: str) -> None:
    arch = baseline_arch(task=task)
    for block, subgraph in zip(plan_network(arch), decompose_arch(arch), strict=True):
        spec = SubgraphSpec.from_block(block, arch)
        assert spec.subgraph().signature() == subgraph.signature(), block.name
        assert SubgraphSpec.from_row(spec.to_row()) == spec


def test_coverage_and_network_streams_include_the_dense_spaces() -> None:
    strata = set(coverage_for(32).strata())
    assert {("resize", 4), ("add", 16), ("pointwise", 16), ("separable", 16), ("stem", 128)} <= strata
    assert {kind for kind, _ in strata} == {*CLASSIFICATION_KINDS, *DENSE_PROFILED_KINDS} - {"eltwise"}
    stream = network_stream(32, coverage_for(32), seed=0)
    tasks = [next(stream).task for _ in range(30)]
    assert "detection" in tasks and "segmentation" in tasks and tasks.count("classification") > tasks.count("detection")
    overhead = overhead_networks(32, count=4, seed=0, dense=2)
    assert [arch.task for arch in overhead].count("classification") == 4 and len(overhead) == 6


def test_classification_and_dense_networks_are_drawn_apart() -> None:
    classification = distinct_networks(32, count=6, stream=(1, 104729))
    assert all(arch.task == "classification" and arch.resolution <= 32 for _, arch in classification)
    dense = distinct_networks(32, count=6, stream=(1, 104729), dense=True)
    assert {arch.task for _, arch in dense} == set(DENSE_TASKS) and all(a.resolution == 128 for _, a in dense)


# ----- sim-npu ------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["sim-npu-p16", "sim-npu-p32"])
def test_sim_npu_resize_add_and_concat_are_vector_ops_that_move_their_maps(device: str) -> None:
    npu = get_device(device)
    hw = npu.hardware
    for subgraph in one_of_each_kind()[2:]:
        (cost,) = npu.trace([subgraph])
        moved = subgraph.bytes_read + subgraph.bytes_written  # at fp32; the engine moves int8
        assert cost.dram_bytes == moved // 4 * hw.dtype_bytes, subgraph.kind
        c, h, w = subgraph.out_shape
        passes = 4 if subgraph.kind == "resize" else 1  # bilinear blends 4 pixels per output element
        assert cost.compute_cycles == passes * -(-c // hw.mac_array_out_lanes) * h * w
        assert cost.cycles == max(cost.compute_cycles, cost.memory_cycles) + hw.op_overhead_cycles
        if subgraph.kind != "resize":
            assert cost.bound == "memory", subgraph.kind


def test_sim_npu_keeps_a_map_on_chip_only_when_the_next_unit_alone_reads_it() -> None:
    arch = baseline_arch(task="detection")
    subgraphs, sources = decompose_arch(arch), block_sources(plan_network(arch))
    hw = NpuHardware(sram_kib=1024.0)  # every map fits: only the graph decides what goes to DRAM
    costs = simulate(subgraphs, hw, sources=sources)
    last_op = np.cumsum([len(s.ops) for s in subgraphs]) - 1
    spilled = {s.name for s, i in zip(subgraphs, last_op) if costs[i].spilled}
    readers = {i: [u for u, read in enumerate(sources) if i in read] for i in range(len(subgraphs))}
    assert spilled == {s.name for i, s in enumerate(subgraphs) if readers[i] != [i + 1]}
    early_taps = {f"stages.{t}.{arch.stages[t].depth - 1}" for t in arch.head.taps[:-1]}  # read after the backbone
    last_tap = f"stages.{arch.head.taps[-1]}.{arch.stages[-1].depth - 1}"  # the coarsest lateral comes right after
    tower = f"head.tower.{arch.head.depth - 1}"  # both output convs read it
    assert early_taps | {tower, "head.heatmap", "head.box"} <= spilled and last_tap not in spilled
    chain = simulate(subgraphs, hw, sources=[((i - 1,) if i else ()) for i in range(len(subgraphs))])
    assert sum(c.cycles for c in chain) < sum(c.cycles for c in costs)  # as a chain nothing would wait in DRAM


# ----- timed devices ------------------------------------------------------------------------------


def test_cpu_ort_times_each_dense_kind_alone_and_a_dense_network_in_place() -> None:
    ort = get_device("cpu-ort", samples=3, min_window_ms=1.0, max_attempts=1)
    for subgraph in one_of_each_kind():
        assert ort.measure_subgraph(subgraph).latency_ms > 0, subgraph.kind
    arch = baseline_arch(task="segmentation")
    profile = ort.profile_network(arch)
    assert set(profile.subgraphs) == {s.name for s in decompose_arch(arch)}
    total = sum(m.latency_ms for m in profile.subgraphs.values())
    assert total == pytest.approx(profile.network.latency_ms, rel=1e-6)


@pytest.mark.slow
def test_cpu_tvm_builds_and_times_each_dense_kind_alone() -> None:
    pytest.importorskip("tvm")
    tvm = get_device("cpu-tvm", samples=3, min_window_ms=1.0, max_attempts=1)
    for subgraph in one_of_each_kind():
        compiled = tvm.compile(subgraph_model(subgraph))
        assert compiled.input_shape == (1, *subgraph.in_shape)
        assert tvm.measure_subgraph(subgraph).latency_ms > 0, subgraph.kind


# ----- the estimator ------------------------------------------------------------------------------


def test_an_estimator_trained_without_dense_kinds_keeps_its_features_and_refuses_dense_networks() -> None:
    subgraphs = decompose_arch(baseline_arch(parallelism_factor=32)) * 4
    latency = np.array([1e-3 * (1 + s.macs / 1e5) * (1 + 0.01 * i) for i, s in enumerate(subgraphs)])
    metadata = {"device": "sim-npu-p32", "profile": get_device("sim-npu-p32").profile.to_dict()}
    estimator = train_estimator(subgraphs, latency, device_metadata=metadata)
    assert estimator.kinds == CLASSIFICATION_KINDS
    assert not any(name.startswith(tuple(f"kind_{k}" for k in DENSE_KINDS)) for name in estimator.model.feature_names)
    assert estimator.predict_many([baseline_arch(parallelism_factor=32)])[0] > 0
    with pytest.raises(EstimatorError, match=r"cannot predict add, pointwise, resize, separable subgraphs \(it was "
                       r"built before edgenas estimated dense networks\); rebuild it"):  # fmt: skip
        estimator.predict_many([baseline_arch(parallelism_factor=32, task="detection")])
    with pytest.raises(EstimatorError, match="rebuild it"):
        estimator.predict(baseline_arch(parallelism_factor=32, task="segmentation"))


@pytest.mark.slow
def test_the_sim_npu_estimator_built_unasked_predicts_held_out_dense_networks(sim_npu_p32_estimators) -> None:
    estimator = obtain_estimator("sim-npu-p32", directory=sim_npu_p32_estimators / "sim-npu-p32")
    assert set(DENSE_PROFILED_KINDS) <= set(estimator.kinds)
    npu = get_device("sim-npu-p32")
    seen = set(estimator.metadata["training"]["networks"])
    dense_overhead = {a.arch_id for a in overhead_networks(32, count=12, dense=6) if a.task != "classification"}
    assert len(dense_overhead) == 6 and dense_overhead <= seen  # the overhead term saw dense networks
    held_out = [arch for _, arch in distinct_networks(32, count=24, stream=(3, 17), exclude=seen, dense=True)]
    predicted = estimator.predict_many(held_out)
    measured = np.array([npu.measure_network(arch).latency_ms for arch in held_out])
    assert np.all(np.abs(predicted / measured - 1) <= 0.10)
    one = [estimator.predict(arch).latency_ms for arch in held_out[:4]]
    assert one == pytest.approx(predicted[:4].tolist(), rel=1e-9)
