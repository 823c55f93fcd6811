"""Devices, found by name through a small registry.

A device name is a profile in ``profiles/<name>.yaml``; the profile's
``device:`` key picks the implementation registered with
:func:`register_device`::

    cpu-ort      ONNX Runtime, CPU execution provider (real timing)
    cpu-tvm      TVM-compiled code on the host CPU (real timing)
    cuda         TVM-compiled code on an NVIDIA GPU (real timing; needs a GPU)
    sim-npu-p16  simulated edge neural engine, parallelism factor 16
    sim-npu-p32  simulated edge neural engine, parallelism factor 32

Adding a device is a new profile (same implementation, other settings) or a
new module with a ``@register_device("key")`` class plus a profile.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from latency_estimator.devices.base import Device, DeviceProfile, Measurement
from latency_estimator.errors import DeviceError

__all__ = [
    "Device",
    "DeviceProfile",
    "Measurement",
    "PROFILES_DIR",
    "available_devices",
    "get_device",
    "register_device",
]

PROFILES_DIR = Path(__file__).parent / "profiles"
_IMPLEMENTATIONS: dict[str, type[Device]] = {}


def register_device(key: str) -> Callable[[type[Device]], type[Device]]:
    """Class decorator: profiles whose ``device:`` is ``key`` are built with this class."""

    def decorate(cls: type[Device]) -> type[Device]:
        if key in _IMPLEMENTATIONS and _IMPLEMENTATIONS[key] is not cls:
            raise DeviceError(f"device implementation {key!r} is registered twice")
        _IMPLEMENTATIONS[key] = cls
        return cls

    return decorate


def available_devices() -> list[str]:
    """Names :func:`get_device` knows, whether or not this machine has the
    hardware (ask ``get_device(name).is_available()`` for that)."""
    return sorted(path.stem for path in PROFILES_DIR.glob("*.yaml"))


def get_device(name: str, **overrides: Any) -> Device:
    """The device called ``name`` (or described by the profile file at path ``name``).

    ``overrides`` replace ``parallelism_factor`` or keys of the profile's
    ``settings`` (e.g. ``get_device("cpu-ort", intra_op_threads=2)``); an
    unknown key is an error that lists the allowed ones.
    """
    path = Path(name)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = PROFILES_DIR / f"{name}.yaml"
        if not path.is_file():
            raise DeviceError(f"unknown device {name!r}; known devices: {', '.join(available_devices())}")
    profile = DeviceProfile.load(path)
    implementations = _implementations()
    if profile.device not in implementations:
        raise DeviceError(
            f"{profile.source}: device: got {profile.device!r}, allowed {sorted(implementations)} (the registered ones)"
        )
    implementation = implementations[profile.device]
    restated = implementation.parallelism_setting
    if restated and "parallelism_factor" in overrides and restated in profile.settings and restated not in overrides:
        overrides = {**overrides, restated: overrides["parallelism_factor"]}  # another P: the setting follows it
    if overrides:
        profile = profile.with_overrides(overrides)
    return implementation(profile)


def _implementations() -> dict[str, type[Device]]:
    # Imported here, not at package import: each module registers its classes on import.
    from latency_estimator.devices import cpu_ort, sim_npu, tvm_device  # noqa: F401

    return dict(_IMPLEMENTATIONS)
