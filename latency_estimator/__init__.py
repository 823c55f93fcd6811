"""Latency estimation: devices, decomposition into subgraphs, profiling, the regressor.

The contract every part builds on::

    decompose_arch(arch) / decompose_onnx(model) -> [Subgraph, ...]
    get_device(name) -> Device: measure_subgraph / measure_network / metadata / is_available
    obtain_estimator(device) -> LatencyEstimator: predict / predict_many

The rooms, in the order a build runs through them: ``networks`` and ``coverage`` (what to measure), ``spec``
(one subgraph configuration), ``profiling`` (the profiling session), ``dataset`` and
``csv_rows`` (the measurement folder), ``batch``, ``prior``, ``regressor`` and ``overhead`` (the model),
``estimator`` (predict, save, load), ``build`` (profile -> train -> save, and :func:`obtain_estimator`),
``evaluation``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search_spaces.lazy_exports import lazy_exports

if TYPE_CHECKING:  # for static tools; at run time a name's module is imported on first use (__getattr__)
    from latency_estimator.build import build_estimator, obtain_estimator, train_from_dataset
    from latency_estimator.dataset import MeasurementDataset
    from latency_estimator.decompose_onnx import decompose_onnx
    from latency_estimator.devices import Device, DeviceProfile, Measurement, available_devices, get_device
    from latency_estimator.errors import DeviceError, EstimatorError
    from latency_estimator.estimator import (
        ESTIMATORS_ENV,
        LatencyEstimator,
        Prediction,
        default_estimator_dir,
        load_estimator,
    )
    from latency_estimator.evaluation import evaluate_estimator
    from latency_estimator.profiling import profile_device
    from latency_estimator.subgraph import Subgraph, decompose_arch

__all__ = [
    "ESTIMATORS_ENV",
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
    "obtain_estimator",
    "profile_device",
    "train_from_dataset",
]

# The same names by submodule: `import latency_estimator` loads none of them (torch, onnx, xgboost).
_EXPORTS = {
    "latency_estimator.build": ("build_estimator", "obtain_estimator", "train_from_dataset"),
    "latency_estimator.dataset": ("MeasurementDataset",),
    "latency_estimator.decompose_onnx": ("decompose_onnx",),
    "latency_estimator.devices": ("Device", "DeviceProfile", "Measurement", "available_devices", "get_device"),
    "latency_estimator.errors": ("DeviceError", "EstimatorError"),
    "latency_estimator.estimator": (
        "ESTIMATORS_ENV",
        "LatencyEstimator",
        "Prediction",
        "default_estimator_dir",
        "load_estimator",
    ),
    "latency_estimator.evaluation": ("evaluate_estimator",),
    "latency_estimator.profiling": ("profile_device",),
    "latency_estimator.subgraph": ("Subgraph", "decompose_arch"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
