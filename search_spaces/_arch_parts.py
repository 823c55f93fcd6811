"""The pieces of an ArchConfig: stem, stage and head records, and the names they may use.

Plain frozen data, importing nothing of edgenas: the reader
(``search_spaces._arch_reader``) builds them from a file and
``search_spaces.arch`` assembles them into an ArchConfig.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ACTIVATIONS", "BLOCK_TYPES", "HeadConfig", "StageConfig", "StemConfig", "expanded_channels"]

# Block types a stage may use; the short name is the block-string prefix.
BLOCK_TYPES = {"ibn": "ibn", "fused_ibn": "fibn", "conv": "conv"}
ACTIVATIONS = ("relu6", "relu", "hardswish")


def expanded_channels(in_channels: int, expansion: float, channel_divisor: int) -> int:
    """Hidden width of an (fused) IBN: ``in_channels * expansion`` rounded up
    to a multiple of ``channel_divisor`` (the parallelism factor when the space
    aligns channels, else 1) so that no lane of the accelerator is wasted."""
    hidden = max(1, round(in_channels * expansion))
    return -(-hidden // channel_divisor) * channel_divisor


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


def _short_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
