"""What the parts of ``nas.datasets`` share: the error, the raw images a source reads, the split tensors."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from search_spaces.errors import EdgeNasError

__all__ = ["MAX_DATA_BYTES", "Dataset", "DatasetError", "RawImages", "Split"]

MAX_DATA_BYTES = 4 * 1024**3  # uncompressed size of an IDX or .npz file read into memory


class DatasetError(EdgeNasError):
    """A dataset is missing, corrupt or inconsistent; the message names the file."""


@dataclass(frozen=True, eq=False)
class Split:
    """One split: ``x`` float32 N x C x H x W (normalised), ``y`` int64 N."""

    x: torch.Tensor = field(repr=False)
    y: torch.Tensor = field(repr=False)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __repr__(self) -> str:
        return f"Split(x={tuple(self.x.shape)}, y={tuple(self.y.shape)})"


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    channels: int
    resolution: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, pixels in [0, 1]; deploy applies the same
    std: tuple[float, ...]

    def summary(self) -> str:
        return (
            f"{self.name}: {self.channels}x{self.resolution}x{self.resolution}, {self.num_classes} classes, "
            f"train/val/test = {len(self.train)}/{len(self.val)}/{len(self.test)}"
        )


@dataclass(frozen=True, eq=False)
class RawImages:
    """What a loader returns, before splitting, resizing and normalising."""

    images: np.ndarray  # N x C x H x W, any numeric dtype
    labels: np.ndarray  # N, int64 in [0, len(class_names))
    class_names: tuple[str, ...]
    scale: float  # pixels / scale lie in [0, 1]
    test_images: np.ndarray | None = None  # a fixed test split shipped with the data
    test_labels: np.ndarray | None = None
