"""Latency estimation: devices, decomposition into subgraphs, profiling, the regressor.

The contract every part builds on::

    decompose_arch(arch) / decompose_onnx(model) -> [Subgraph, ...]
    get_device(name) -> Device: measure_subgraph / measure_network / metadata / is_available
    build_estimator(device) / load_estimator(device) -> LatencyEstimator: predict / predict_many
"""

from __future__ import annotations

from latency_estimator.decompose_onnx import decompose_onnx
from latency_estimator.devices import Device, DeviceProfile, Measurement, available_devices, get_device
from latency_estimator.errors import DeviceError, EstimatorError
from latency_estimator.evaluation import evaluate_estimator
from latency_estimator.profiling import MeasurementDataset, build_estimator, profile_device
from latency_estimator.regressor import LatencyEstimator, Prediction, default_estimator_dir, load_estimator
from latency_estimator.subgraph import Subgraph, decompose_arch

__all__ = [
    "Device",
    "DeviceError",
    "DeviceProfile",
    "EstimatorError",
    "LatencyEstimator",
    "Measurement",
    "MeasurementDataset",
    "Prediction",
    "Subgraph",
    "available_devices",
    "build_estimator",
    "decompose_arch",
    "decompose_onnx",
    "default_estimator_dir",
    "evaluate_estimator",
    "get_device",
    "load_estimator",
    "profile_device",
]
