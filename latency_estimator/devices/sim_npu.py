"""sim-npu: a simulated edge neural engine, driven by a hardware profile.

Latency is computed, not measured, by the roofline cycle model in
:mod:`latency_estimator.devices.npu_model`; it is exact and repeatable, so an
accelerator can be studied before its compiler or silicon exists.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from latency_estimator.devices import register_device
from latency_estimator.devices.base import Device, DeviceProfile, Measurement
from latency_estimator.devices.npu_model import NpuHardware, OpCost, simulate
from latency_estimator.errors import DeviceError
from latency_estimator.subgraph import Subgraph, decompose_arch
from search_spaces.arch import ArchConfig
from search_spaces.plan import block_sources, plan_network

__all__ = ["SimNpu"]


@register_device("sim-npu")
class SimNpu(Device):
    """Isolated subgraphs read their input from and write their output to DRAM;
    a whole network keeps activations on chip between units when they fit."""

    Settings = NpuHardware
    deterministic = True
    simulated = True
    default_samples = 600  # the simulator is exact and cheap: 600 reach <1 % held-out error
    parallelism_setting = "mac_array_out_lanes"

    def __init__(self, profile: DeviceProfile) -> None:
        super().__init__(profile)
        self.hardware: NpuHardware = _lanes_from_parallelism_factor(self.settings, profile)

    @property
    def dtype_bytes(self) -> int:
        return self.hardware.dtype_bytes

    def measure_subgraph(self, subgraph: Subgraph) -> Measurement:
        return self._measurement(self.trace([subgraph]))

    def measure_network(self, arch: ArchConfig) -> Measurement:
        return self._measurement(self.trace(decompose_arch(arch), sources=block_sources(plan_network(arch))))

    def trace(self, subgraphs: list[Subgraph], *, sources: list[tuple[int, ...]] | None = None) -> list[OpCost]:
        """Per-op costs of running ``subgraphs`` in order (input from DRAM, output to DRAM); ``sources``: which
        subgraphs each one reads (default: the one before it)."""
        return simulate(subgraphs, self.hardware, sources=sources)

    def metadata(self) -> dict[str, Any]:
        hw = self.hardware
        return {
            **super().metadata(),
            "simulator": "edgenas roofline cycle model (latency_estimator/devices/npu_model.py)",
            "peak_gmacs": hw.mac_array_out_lanes * hw.mac_array_in_lanes * hw.clock_mhz / 1e3,
            "dram_bytes_per_cycle": hw.dram_bytes_per_cycle,
        }

    def _measurement(self, costs: list[OpCost]) -> Measurement:
        return Measurement(latency_ms=self.hardware.cycles_to_ms(sum(c.cycles for c in costs)), spread=0.0, repeats=1)


def _lanes_from_parallelism_factor(hardware: NpuHardware, profile: DeviceProfile) -> NpuHardware:
    """The hardware with its output lanes equal to P: the array computes P output channels per cycle. A profile
    may restate it as ``settings.mac_array_out_lanes``; then the two must agree."""
    stated = profile.settings.get("mac_array_out_lanes")
    if stated is not None and stated != profile.parallelism_factor:
        raise DeviceError(
            f"{profile.source}: parallelism_factor is {profile.parallelism_factor} but settings.mac_array_out_lanes "
            f"is {stated}; they are the same P: state it once (parallelism_factor), or make them agree"
        )
    return dataclasses.replace(hardware, mac_array_out_lanes=profile.parallelism_factor)
