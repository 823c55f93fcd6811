"""ArchConfig: one concrete network, every choice of a search space fixed.

An ArchConfig is plain data: it serialises to YAML and JSON and back without
loss, has a stable short id (a hash of its content) and a one-line block
string in the spirit of timm's block strings::

    stem_k3_c16_s1 @32 | ibn_k3_e1_c16_s1 x1 | fibn_k3_e4_c24_s2 x2 | ... | head_c320

Decoding and validating a file is kept apart from building a module
(``search_spaces.builder``) and from counting (``search_spaces.counts``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from search_spaces.safe_files import parse_json, parse_yaml, read_text

__all__ = [
    "BLOCK_TYPES",
    "ACTIVATIONS",
    "ArchConfig",
    "HeadConfig",
    "StageConfig",
    "StemConfig",
    "expanded_channels",
]

# Block types a stage may use; the short name is the block-string prefix.
BLOCK_TYPES = {"ibn": "ibn", "fused_ibn": "fibn", "conv": "conv"}
ACTIVATIONS = ("relu6", "relu", "hardswish")


def expanded_channels(in_channels: int, expansion: float, divisor: int) -> int:
    """Hidden width of an (fused) IBN: ``in_channels * expansion`` rounded up
    to a multiple of ``divisor`` (the parallelism factor when the space aligns
    channels, else 1) so that no lane of the accelerator is wasted."""
    hidden = max(1, round(in_channels * expansion))
    return -(-hidden // divisor) * divisor


@dataclass(frozen=True)
class StemConfig:
    kernel: int
    channels: int
    stride: int


@dataclass(frozen=True)
class StageConfig:
    block: str  # one of BLOCK_TYPES
    kernel: int
    expansion: float  # ignored by the plain conv block
    channels: int
    depth: int  # number of repeated blocks; the first one carries the stride
    stride: int

    def block_string(self) -> str:
        prefix = BLOCK_TYPES[self.block]
        expansion = "" if self.block == "conv" else f"_e{_short_number(self.expansion)}"
        return f"{prefix}_k{self.kernel}{expansion}_c{self.channels}_s{self.stride} x{self.depth}"


@dataclass(frozen=True)
class HeadConfig:
    type: str  # "classification" (a segmentation head will be another type)
    channels: int  # width of the 1x1 conv before pooling; 0 = no such conv
    num_classes: int
    dropout: float = 0.0


@dataclass(frozen=True)
class ArchConfig:
    input_channels: int
    resolution: int
    channel_divisor: int  # expansion channels are rounded up to a multiple of this
    activation: str
    stem: StemConfig
    stages: tuple[StageConfig, ...]
    head: HeadConfig

    # ----- identity -------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["stages"] = [dict(stage) for stage in data["stages"]]
        return data

    @property
    def arch_id(self) -> str:
        """Stable 10-hex-digit id: a hash of the canonical JSON content."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:10]

    def block_string(self) -> str:
        stem = f"stem_k{self.stem.kernel}_c{self.stem.channels}_s{self.stem.stride} @{self.resolution}"
        stages = " | ".join(stage.block_string() for stage in self.stages)
        return f"{stem} | {stages} | head_c{self.head.channels}"

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
        from search_spaces._arch_reader import read_arch

        return read_arch(data, source)

    @classmethod
    def load(cls, path: str | Path) -> ArchConfig:
        path = Path(path)
        text = read_text(path, what="architecture file")
        parse = parse_json if path.suffix == ".json" else parse_yaml
        return cls.from_dict(parse(text, source=str(path)), source=str(path))


def _short_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
