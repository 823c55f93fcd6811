"""SearchSpace: the frozen, validated form of a search-space YAML file.

Every choice of a space has a parameter name (``resolution``,
``depth_multiplier``, ``stem.channels``, ``stages.2.block``, ...). A point of
the space is a mapping from those names to chosen values; :meth:`resolve`
turns it into an :class:`ArchConfig`. :meth:`sample` draws a point with a
numpy generator, :meth:`suggest` lets an Optuna trial pick every choice, so
Optuna (and optuna-dashboard) sees the real parameters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from search_spaces.arch import ArchConfig, HeadConfig, StageConfig, StemConfig
from search_spaces.errors import SearchSpaceError

__all__ = ["HeadSpace", "SearchSpace", "StageSpace", "StemSpace"]

Choice = int | float | str


class TrialLike(Protocol):
    """The part of ``optuna.trial.Trial`` the space needs."""

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any: ...


@dataclass(frozen=True)
class StemSpace:
    kernel: tuple[int, ...]
    channels: tuple[int, ...]
    stride: int


@dataclass(frozen=True)
class StageSpace:
    block: tuple[str, ...]
    kernel: tuple[int, ...]
    expansion: tuple[float, ...]
    channels: tuple[int, ...]
    depth: tuple[int, ...]
    stride: int


@dataclass(frozen=True)
class HeadSpace:
    type: str
    channels: tuple[int, ...]
    num_classes: int
    dropout: float


@dataclass(frozen=True)
class SearchSpace:
    name: str
    source: str
    description: str
    parallelism_factor: int
    align_channels: bool
    input_channels: int
    resolution: tuple[int, ...]
    depth_multiplier: tuple[float, ...]
    activation: str
    stem: StemSpace
    stages: tuple[StageSpace, ...]
    head: HeadSpace

    @property
    def channel_divisor(self) -> int:
        """Channels are rounded to multiples of this: P when the space aligns them."""
        return self.parallelism_factor if self.align_channels else 1

    def parameters(self) -> dict[str, tuple[Choice, ...]]:
        """Every choice of the space by parameter name, in a stable order."""
        params: dict[str, tuple[Choice, ...]] = {
            "resolution": self.resolution,
            "depth_multiplier": self.depth_multiplier,
            "stem.kernel": self.stem.kernel,
            "stem.channels": self.stem.channels,
        }
        for i, stage in enumerate(self.stages):
            for field in ("block", "kernel", "expansion", "channels", "depth"):
                params[f"stages.{i}.{field}"] = getattr(stage, field)
        params["head.channels"] = self.head.channels
        return params

    def size(self) -> int:
        """Number of combinations of choices (some may resolve to the same network)."""
        return math.prod(len(choices) for choices in self.parameters().values())

    def sample(self, rng: np.random.Generator) -> ArchConfig:
        point = {name: choices[rng.integers(len(choices))] for name, choices in self.parameters().items()}
        return self.resolve(point)

    def suggest(self, trial: TrialLike) -> ArchConfig:
        """Let an Optuna trial pick every choice that has more than one option."""
        point = {
            name: trial.suggest_categorical(name, list(choices)) if len(choices) > 1 else choices[0]
            for name, choices in self.parameters().items()
        }
        return self.resolve(point)

    def resolve(self, point: Mapping[str, Choice]) -> ArchConfig:
        """The ArchConfig of one point; every parameter must be present and allowed."""
        params = self.parameters()
        for name, choices in params.items():
            if name not in point:
                raise SearchSpaceError(f"{self.source}: {name}: no value chosen, allowed {list(choices)}")
            if point[name] not in choices:
                raise SearchSpaceError(f"{self.source}: {name}: got {point[name]!r}, allowed {list(choices)}")
        multiplier = float(point["depth_multiplier"])
        stages = tuple(
            StageConfig(
                block=str(point[f"stages.{i}.block"]),
                kernel=int(point[f"stages.{i}.kernel"]),
                expansion=float(point[f"stages.{i}.expansion"]),
                channels=self.scale_channels(int(point[f"stages.{i}.channels"]), multiplier),
                depth=int(point[f"stages.{i}.depth"]),
                stride=stage.stride,
            )
            for i, stage in enumerate(self.stages)
        )
        head_channels = int(point["head.channels"])
        return ArchConfig(
            input_channels=self.input_channels,
            resolution=int(point["resolution"]),
            channel_divisor=self.channel_divisor,
            activation=self.activation,
            stem=StemConfig(
                kernel=int(point["stem.kernel"]),
                channels=self.scale_channels(int(point["stem.channels"]), multiplier),
                stride=self.stem.stride,
            ),
            stages=stages,
            head=HeadConfig(
                type=self.head.type,
                channels=self.scale_channels(head_channels, multiplier) if head_channels else 0,
                num_classes=self.head.num_classes,
                dropout=self.head.dropout,
            ),
        )

    def scale_channels(self, channels: int, multiplier: float) -> int:
        """Apply the global depth multiplier, staying on multiples of the channel divisor."""
        channel_divisor = self.channel_divisor
        return max(channel_divisor, int(math.floor(channels * multiplier / channel_divisor + 0.5)) * channel_divisor)

    def point_of(self, arch: ArchConfig) -> dict[str, Choice] | None:
        """A point of this space that resolves to ``arch``, or None if it has none."""
        for multiplier in self.depth_multiplier:
            point = _unscaled_point(self, arch, multiplier)
            if point is not None and self.resolve(point) == arch:
                return point
        return None

    def contains(self, arch: ArchConfig) -> bool:
        return self.point_of(arch) is not None


def _unscaled_point(space: SearchSpace, arch: ArchConfig, multiplier: float) -> dict[str, Choice] | None:
    """Invert the depth multiplier choice by choice (None when no choice fits)."""
    if len(arch.stages) != len(space.stages):
        return None

    def unscale(value: int, choices: tuple[int, ...]) -> int | None:
        matches = [c for c in choices if space.scale_channels(c, multiplier) == value]
        return matches[0] if matches else None

    point: dict[str, Any] = {
        "resolution": arch.resolution,
        "depth_multiplier": multiplier,
        "stem.kernel": arch.stem.kernel,
        "stem.channels": unscale(arch.stem.channels, space.stem.channels),
        "head.channels": 0 if arch.head.channels == 0 else unscale(arch.head.channels, space.head.channels),
    }
    for i, stage in enumerate(arch.stages):
        point.update(
            {
                f"stages.{i}.block": stage.block,
                f"stages.{i}.kernel": stage.kernel,
                f"stages.{i}.expansion": stage.expansion,
                f"stages.{i}.channels": unscale(stage.channels, space.stages[i].channels),
                f"stages.{i}.depth": stage.depth,
            }
        )
    params = space.parameters()
    if any(value is None or value not in params[name] for name, value in point.items()):
        return None
    return point
