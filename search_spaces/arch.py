"""ArchConfig: one concrete network, every choice of a search space fixed.

An ArchConfig is plain data: it serialises to YAML and JSON and back without
loss, has a stable short id (a hash of its content) and a one-line block
string in the spirit of timm's block strings::

    stem_k3_c16_s1 @32 | ibn_k3_e1_c16_s1 x1 | fibn_k3_e4_c24_s2 x2 | ... | head_c320

The stem, stage and head records live in ``search_spaces._arch_parts``;
decoding and validating a file in ``search_spaces._arch_reader`` (which builds
those records and hands back the fields of an ArchConfig), apart from building
a module (``search_spaces.builder``) and from counting (``search_spaces.counts``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from search_spaces._arch_parts import (
    ACTIVATIONS,
    BLOCK_TYPES,
    HeadConfig,
    StageConfig,
    StemConfig,
    expanded_channels,
)
from search_spaces._arch_reader import read_arch_fields
from search_spaces.dense_head import DenseHeadConfig
from search_spaces.documents import read_document
from search_spaces.errors import SearchSpaceError

__all__ = [
    "BLOCK_TYPES",
    "ACTIVATIONS",
    "ArchConfig",
    "HeadConfig",
    "StageConfig",
    "StemConfig",
    "expanded_channels",
]


@dataclass(frozen=True)
class ArchConfig:
    input_channels: int
    resolution: int
    channel_divisor: int  # expansion channels are rounded up to a multiple of this
    activation: str
    stem: StemConfig
    stages: tuple[StageConfig, ...]
    head: HeadConfig | DenseHeadConfig

    # ----- identity -------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["stages"] = [dict(stage) for stage in data["stages"]]
        if isinstance(self.head, DenseHeadConfig):
            data["head"]["taps"] = list(self.head.taps)
        return data

    @property
    def task(self) -> str:
        """``classification``, ``detection`` or ``segmentation``: the head's type."""
        return self.head.type

    @functools.cached_property  # the instance is frozen all the way down; a search asks thousands of times
    def arch_id(self) -> str:
        """Stable 10-hex-digit id: a hash of the canonical JSON content."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:10]

    def block_string(self) -> str:
        stem = f"stem_k{self.stem.kernel}_c{self.stem.channels}_s{self.stem.stride} @{self.resolution}"
        stages = " | ".join(stage.block_string() for stage in self.stages)
        head = self.head.block_string() if isinstance(self.head, DenseHeadConfig) else f"head_c{self.head.channels}"
        return f"{stem} | {stages} | {head}"

    def __str__(self) -> str:
        return self.block_string()

    # ----- serialisation --------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_yaml(self) -> str:
        header = f"# edgenas ArchConfig {self.arch_id}\n# {self.block_string()}\n"
        return header + yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() if path.suffix == ".json" else self.to_yaml())
        return path

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>") -> ArchConfig:
        return cls(**read_arch_fields(data, source))

    @classmethod
    def load(cls, path: str | Path) -> ArchConfig:
        path = Path(path)
        data = read_document(
            path, error=SearchSpaceError, missing=f"{path}: no such architecture file", what="architecture file"
        )
        return cls.from_dict(data, source=str(path))
