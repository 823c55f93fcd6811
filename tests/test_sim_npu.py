"""The simulated neural engine behaves like an accelerator: a channel staircase,
fused IBN winning early and losing late, and a whole network that is not the
sum of its isolated parts."""

from __future__ import annotations

import pytest

from latency_estimator import Subgraph, decompose_arch, get_device
from latency_estimator.devices.npu_model import NpuHardware, compute_cycles
from search_spaces import baseline_arch
from search_spaces.arch import StageConfig
from search_spaces.plan import OpSpec, plan_network
from search_spaces.plan import _stage_block as stage_block

SIM_NPUS = ["sim-npu-p16", "sim-npu-p32"]


def block(kind: str, *, c_in: int, size: int, c_out: int, expansion: float = 1.0, stride: int = 1) -> Subgraph:
    stage = StageConfig(block=kind, kernel=3, expansion=expansion, channels=c_out, depth=1, stride=stride)
    return Subgraph.from_block(stage_block("block", stage, (c_in, size, size), stride, 1))


@pytest.fixture(params=SIM_NPUS)
def npu(request: pytest.FixtureRequest):
    return get_device(request.param)


def latency(npu, subgraph: Subgraph) -> float:
    return npu.measure_subgraph(subgraph).latency_ms


def test_output_channel_staircase(npu) -> None:
    p = npu.parallelism_factor
    conv = {c: latency(npu, block("conv", c_in=2 * p, size=16, c_out=c)) for c in (p, p + 1, 2 * p)}
    assert conv[p + 1] > 1.5 * conv[p]  # one more channel costs a whole lane group
    assert conv[p + 1] == pytest.approx(conv[2 * p], rel=0.1)


def test_input_channel_staircase(npu) -> None:
    p = npu.parallelism_factor
    conv = {c: latency(npu, block("conv", c_in=c, size=16, c_out=2 * p)) for c in (p, p + 1, 2 * p)}
    assert conv[p + 1] > 1.5 * conv[p]
    assert conv[p + 1] == pytest.approx(conv[2 * p], rel=0.1)


def test_fused_ibn_wins_early_and_loses_late(npu) -> None:
    early = {kind: latency(npu, block(kind, c_in=16, size=32, c_out=24, expansion=4)) for kind in ("ibn", "fused_ibn")}
    late = {kind: latency(npu, block(kind, c_in=160, size=4, c_out=320, expansion=6)) for kind in ("ibn", "fused_ibn")}
    assert early["fused_ibn"] < 0.95 * early["ibn"]  # more MACs, yet faster: the depthwise wastes lanes
    assert late["fused_ibn"] > 2 * late["ibn"]  # a 3x3 full conv over 960 channels: MACs and weights dominate


def test_depthwise_uses_one_input_lane() -> None:
    hw = NpuHardware(mac_array_out_lanes=16, mac_array_in_lanes=16)
    depthwise = OpSpec("dw", "conv", (64, 8, 8), (64, 8, 8), kernel=3, groups=64)
    full = OpSpec("full", "conv", (16, 8, 8), (64, 8, 8), kernel=3)
    assert compute_cycles(depthwise, hw) == compute_cycles(full, hw) == 8 * 8 * 9 * 4
    assert depthwise.macs * 16 == full.macs  # same cycles for 1/16 of the work


def test_roofline_of_one_op() -> None:
    hw = NpuHardware(clock_mhz=1000.0, dram_bandwidth_gbps=8.0, op_overhead_cycles=100)  # 8 B/cycle
    op = OpSpec("pw", "conv", (256, 2, 2), (512, 2, 2), kernel=1)
    (cost,) = get_device("sim-npu-p16", **_settings(hw)).trace([Subgraph.from_ops("pw", "conv", (op,))])
    weights, io = 256 * 512 + 512, 256 * 4 + 512 * 4
    assert cost.compute_cycles == 4 * 32 * 16
    assert cost.dram_bytes == weights + io
    assert cost.bound == "memory"
    assert cost.cycles == pytest.approx((weights + io) / 8 + 100)


def test_network_keeps_activations_on_chip(npu) -> None:
    arch = baseline_arch()
    parts = sum(latency(npu, s) for s in decompose_arch(arch))
    whole = npu.measure_network(arch).latency_ms
    assert whole < 0.999 * parts  # boundaries that stay in SRAM cost no DRAM traffic


def test_network_equals_sum_when_every_activation_spills(npu) -> None:
    tiny = get_device(npu.name, sram_kib=0.001)
    arch = baseline_arch()
    parts = sum(latency(tiny, s) for s in decompose_arch(arch))
    assert tiny.measure_network(arch).latency_ms == pytest.approx(parts, rel=1e-9)
    assert parts > sum(latency(npu, s) for s in decompose_arch(arch))


def test_early_expanded_activations_spill(npu) -> None:
    arch = baseline_arch()
    trace = npu.trace(decompose_arch(arch))
    spilled = [cost.name for cost in trace[:-1] if cost.spilled]  # the logits always go to DRAM
    assert spilled, "with a 32x32 input some expanded activation should not fit in SRAM"
    planned = {op.name: op for block in plan_network(arch) for op in block.ops}
    assert all(planned[name].out_shape[1] >= 16 for name in spilled)  # high-resolution layers only


def test_simulation_is_exact(npu) -> None:
    subgraph = block("ibn", c_in=24, size=16, c_out=24, expansion=6)
    first, second = npu.measure_subgraph(subgraph), npu.measure_subgraph(subgraph)
    assert first == second
    assert first.spread == 0.0


def _settings(hw: NpuHardware) -> dict:
    return {name: getattr(hw, name) for name in hw.__dataclass_fields__}


def test_lane_count_follows_the_parallelism_factor(tmp_path) -> None:
    from latency_estimator.devices import PROFILES_DIR

    profile = (PROFILES_DIR / "sim-npu-p16.yaml").read_text()
    path = tmp_path / "p8-npu.yaml"
    path.write_text(
        profile.replace("parallelism_factor: 16", "parallelism_factor: 8").replace("mac_array_out_lanes: 16", "")
    )
    assert get_device(str(path)).hardware.mac_array_out_lanes == 8
    assert get_device("sim-npu-p16", parallelism_factor=8).hardware.mac_array_out_lanes == 8  # an override moves both


def test_a_profile_stating_two_parallelism_factors_is_refused(tmp_path) -> None:
    from latency_estimator import DeviceError
    from latency_estimator.devices import PROFILES_DIR

    path = tmp_path / "torn-npu.yaml"
    path.write_text(
        (PROFILES_DIR / "sim-npu-p16.yaml").read_text().replace("mac_array_out_lanes: 16", "mac_array_out_lanes: 32")
    )
    with pytest.raises(
        DeviceError, match=r"torn-npu.yaml: parallelism_factor is 16 but settings.mac_array_out_lanes is 32"
    ):
        get_device(str(path))
