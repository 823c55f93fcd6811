"""Errors of the latency estimator, both in the :class:`EdgeNasError` family.

``EstimatorError``: the estimator cannot handle its input (an ONNX operator it
does not know, a subgraph kind it cannot build, an untrained regressor).
``DeviceError``: a device cannot be found, configured or measured on (an
unknown device name, a bad profile, a measurement that failed).
"""

from __future__ import annotations

from search_spaces.errors import EdgeNasError

__all__ = ["DeviceError", "EstimatorError"]


class EstimatorError(EdgeNasError):
    """The latency estimator cannot handle its input."""


class DeviceError(EdgeNasError):
    """A device is unknown, misconfigured, absent or failed to measure."""
