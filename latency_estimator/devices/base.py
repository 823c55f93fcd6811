"""The device interface: where latency numbers come from.

A device is described by a YAML profile (``profiles/<name>.yaml``)::

    name: sim-npu-p16            # what get_device() takes; equals the file name
    device: sim-npu              # the implementation (registry key)
    description: ...
    parallelism_factor: 16       # P, used in the regressor's features
    settings: {...}              # the implementation's own settings, checked
                                 # against its ``Settings`` dataclass

Real devices (ONNX Runtime, TVM) time a run; simulated ones compute cycles.
Either way the caller gets a :class:`Measurement`.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
import math
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, NamedTuple

import yaml

from latency_estimator.errors import DeviceError
from latency_estimator.subgraph import Subgraph
from search_spaces.arch import ArchConfig
from search_spaces.errors import one_line

__all__ = ["Device", "DeviceProfile", "Measurement", "NetworkProfile", "PassPlan", "parse_settings"]

PROFILE_KEYS = ("name", "device", "description", "parallelism_factor", "settings")


@dataclass(frozen=True)
class Measurement:
    latency_ms: float
    spread: float  # relative dispersion of the timing samples: IQR / median (0.0 for a simulation)
    repeats: int  # timing samples behind the estimate (1 for a simulation)
    attempts: int = 1  # times the measurement was taken: a noisy one is taken again

    def __post_init__(self) -> None:
        if not (self.latency_ms > 0 and self.latency_ms < float("inf")):
            raise DeviceError(f"`latency_ms` must be positive and finite, but got {self.latency_ms=}")


@dataclass(frozen=True)
class NetworkProfile:
    """One whole network timed as it is, and each of its subgraphs timed inside it (by subgraph name)."""

    network: Measurement
    subgraphs: Mapping[str, Measurement]


class PassPlan(NamedTuple):
    """How a device times many whole networks: ``passes`` passes at least ``gap_s`` apart, then further passes
    for the networks whose fastest is not confirmed within ``agreement``, up to ``max_passes`` in all."""

    passes: int = 1
    gap_s: float = 0.0
    max_passes: int = 1
    agreement: float = math.inf

    def describe(self) -> str:
        if self.max_passes == 1:
            return "one measurement"
        how = f"the fastest of {self.passes} passes at least {self.gap_s:g} s apart"
        if self.max_passes > self.passes:
            how += (
                f", and of up to {self.max_passes} for a network until another pass confirms its fastest "
                f"within {self.agreement:.0%}"
            )
        return how


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    device: str  # implementation key in the device registry
    description: str
    parallelism_factor: int
    settings: Mapping[str, Any]  # read-only; checked by the implementation's Settings dataclass
    source: str = "<profile>"

    @classmethod
    def load(cls, path: str | Path) -> DeviceProfile:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise DeviceError(f"{path}: cannot read device profile ({one_line(exc)})") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<profile>") -> DeviceProfile:
        if not isinstance(data, dict):
            raise DeviceError(f"{source}: a device profile must be a mapping, but got {type(data).__name__}")
        unknown = sorted(set(data) - set(PROFILE_KEYS))
        missing = [key for key in PROFILE_KEYS if key not in data]
        if unknown or missing:
            raise DeviceError(f"{source}: unknown keys {unknown}, missing keys {missing}; allowed {list(PROFILE_KEYS)}")
        parallelism_factor = data["parallelism_factor"]
        if not isinstance(parallelism_factor, int) or isinstance(parallelism_factor, bool) or parallelism_factor < 1:
            raise DeviceError(f"{source}: parallelism_factor: got {parallelism_factor!r}, allowed a positive integer")
        if not isinstance(data["settings"], dict):
            raise DeviceError(f"{source}: settings: got {data['settings']!r}, allowed a mapping")
        return cls(
            name=str(data["name"]),
            device=str(data["device"]),
            description=str(data["description"]),
            parallelism_factor=parallelism_factor,
            settings=MappingProxyType(dict(data["settings"])),
            source=source,
        )

    def with_overrides(self, overrides: Mapping[str, Any]) -> DeviceProfile:
        """A copy with ``parallelism_factor`` and/or settings replaced."""
        overrides = dict(overrides)
        parallelism_factor = overrides.pop("parallelism_factor", self.parallelism_factor)
        settings = {**self.settings, **overrides}
        data = {**self.to_dict(), "parallelism_factor": parallelism_factor, "settings": settings}
        return DeviceProfile.from_dict(data, source=f"{self.source} (with overrides)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "device": self.device,
            "description": self.description,
            "parallelism_factor": self.parallelism_factor,
            "settings": dict(self.settings),
        }


class Device(abc.ABC):
    """Where latency comes from: a real runtime that times a run, or a simulator.

    A device is made by :func:`latency_estimator.devices.get_device` from its
    profile. Profiling calls :meth:`is_available` once, then
    :meth:`measure_subgraph` for every sampled subgraph (thousands of times:
    it must be quick) and :meth:`measure_network` for the reference networks
    whose end-to-end latency the estimator is evaluated against; it stores
    :meth:`metadata` beside the measurements so that a table says where it
    came from. Subclasses set ``Settings`` (a frozen dataclass whose fields,
    with defaults, are the keys allowed in the profile's ``settings``).
    """

    Settings: ClassVar[type]
    deterministic: ClassVar[bool] = False  # True: measuring twice gives the same number
    simulated: ClassVar[bool] = False  # True: computed, not timed; cheap to profile, so an estimator is built unasked
    # Subgraphs to profile when the caller does not say: timed devices are noisy and need more than a simulator.
    default_samples: ClassVar[int] = 1500
    parallelism_setting: ClassVar[str | None] = None  # a key of ``settings`` that restates P, if any: kept equal to it

    def __init__(self, profile: DeviceProfile) -> None:
        self.profile = profile
        self.settings = parse_settings(self.Settings, profile.settings, source=profile.source)

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def parallelism_factor(self) -> int:
        return self.profile.parallelism_factor

    @property
    def dtype_bytes(self) -> int:
        """Bytes per activation and weight value as the device computes (4: fp32); memory budgets count with it."""
        return 4

    @abc.abstractmethod
    def measure_subgraph(self, subgraph: Subgraph) -> Measurement:
        """Latency of one subgraph run in isolation; called once per profiled subgraph."""

    @abc.abstractmethod
    def measure_network(self, arch: ArchConfig) -> Measurement:
        """End-to-end latency of the whole network (a real run or a whole-network
        simulation); called for the networks the estimator is evaluated on."""

    @property
    def profiles_in_network(self) -> bool:
        """True when profiling should time subgraphs inside whole networks (:meth:`profile_network`)
        rather than one by one (:meth:`measure_subgraph`)."""
        return False

    def profile_network(self, arch: ArchConfig) -> NetworkProfile:
        """The whole network's latency and each subgraph's share of it, timed in place."""
        raise DeviceError(f"{self.name}: cannot time subgraphs inside a network; profile them one by one")

    @property
    def network_passes(self) -> PassPlan:
        """How many whole networks are timed, each keeping its fastest
        (:func:`latency_estimator.passes.fastest_of_passes`); one pass for a device that does not time."""
        if self.deterministic:
            return PassPlan()
        settings = self.settings
        return PassPlan(
            passes=settings.network_passes,
            gap_s=settings.pass_gap_s,
            max_passes=max(settings.network_passes, settings.max_network_passes),
            agreement=settings.pass_agreement,
        )

    def is_available(self) -> tuple[bool, str]:
        """``(True, "")`` when this machine can measure, else ``(False, reason)``;
        called before measuring, and by tests to skip with the reason."""
        return True, ""

    def metadata(self) -> dict[str, Any]:
        """Where the numbers came from: profile, settings, machine, date; stored with every table."""
        return {
            "device": self.name,
            "implementation": self.profile.device,
            "profile": self.profile.to_dict(),
            "settings": dataclasses.asdict(self.settings),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "host": platform.node(),
            "cpu_model": cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def parse_settings(settings_cls: type, values: Mapping[str, Any], *, source: str) -> Any:
    """Check a profile's settings against a frozen dataclass whose fields all have defaults:
    unknown keys and wrongly typed values are errors; ints are accepted for floats."""
    fields = {field.name: field for field in dataclasses.fields(settings_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise DeviceError(f"{source}: settings: unknown keys {unknown}, allowed {sorted(fields)}")
    checked = {}
    for key, value in values.items():
        default = settings_cls.__dataclass_fields__[key].default
        checked[key] = _coerce(value, default, where=f"{source}: settings.{key}")
    return settings_cls(**checked)


def _coerce(value: Any, default: Any, *, where: str) -> Any:
    if default is None or value is None:  # optional setting (a path, a target string)
        if value is not None and not isinstance(value, str):
            raise DeviceError(f"{where}: got {value!r}, allowed a string or null")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise DeviceError(f"{where}: got {value!r}, allowed true or false")
        return value
    if isinstance(default, float) and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, int) and isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(default, str) and isinstance(value, str):
        return value
    allowed = {float: "a number", int: "an integer", str: "a string"}.get(type(default), type(default).__name__)
    raise DeviceError(f"{where}: got {value!r}, allowed {allowed}")


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
