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
