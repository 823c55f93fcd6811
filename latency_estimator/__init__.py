"""Latency estimation: devices, decomposition into subgraphs, profiling, the regressor.

The contract every part builds on::

    decompose_arch(arch) / decompose_onnx(model) -> [Subgraph, ...]
    get_device(name) -> Device: measure_subgraph / measure_network / metadata / is_available
"""

from __future__ import annotations

from latency_estimator.decompose_onnx import decompose_onnx
from latency_estimator.devices import Device, DeviceProfile, Measurement, available_devices, get_device
from latency_estimator.errors import DeviceError, EstimatorError
from latency_estimator.subgraph import Subgraph, decompose_arch

__all__ = [
    "Device",
    "DeviceError",
    "DeviceProfile",
    "EstimatorError",
    "Measurement",
    "Subgraph",
    "available_devices",
    "decompose_arch",
    "decompose_onnx",
    "get_device",
]
