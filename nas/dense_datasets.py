"""Detection and segmentation datasets, read lazily and batched by a torch DataLoader.

Registered names (``nas.datasets.DENSE_DATASETS``):

* ``digit-scenes``, ``fashion-scenes`` — generated from a seed, no download
  (``nas.scenes``); boxes and masks, so both tasks;
* ``coco`` — a COCO-format JSON with an image folder; boxes (detection);
* ``masks`` — images with PNG label maps, VOC-style; masks (segmentation).

A split reads one sample at a time (``nas.dense_sources``), resizes it to the
network's square input (bilinear for images, nearest for masks; boxes are
scaled with the image, so they are in input pixels) and normalises it with
the per-channel mean/std of a fixed sample of training images. Nothing is
held in memory as float tensors.

Class conventions: detection labels are ``0 .. len(detection_classes) - 1``;
segmentation masks hold ``0 .. len(segmentation_classes) - 1`` per pixel (the
scenes' class 0 is the background) and ``IGNORE_INDEX`` (255) where no loss
or metric looks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from nas.datasets import DatasetError
from nas.dense_formats import read_coco, read_masks
from nas.dense_sources import (
    IGNORE_INDEX,
    DenseSources,
    SampleSource,
    Subset,
    digit_scene_sources,
    fashion_scene_sources,
)

__all__ = [
    "DENSE_TASKS",
    "IGNORE_INDEX",
    "DenseBatch",
    "DenseDataset",
    "DenseSample",
    "DenseSplit",
    "collate_dense",
    "load_dense_dataset",
]

logger = logging.getLogger(__name__)

DENSE_TASKS = ("detection", "segmentation")
# Training images whose pixels give the normalisation mean/std: enough for 3 decimals, cheap to read.
STATS_SAMPLES = 64

# A loader gets (data_dir, seed, val_fraction, test_fraction); scene loaders have fixed splits.
DenseLoader = Callable[[Path | None, int, float, float], DenseSources]
_LOADERS: dict[str, DenseLoader] = {
    "digit-scenes": lambda data_dir, seed, _val, _test: digit_scene_sources(data_dir, seed),
    "fashion-scenes": lambda data_dir, seed, _val, _test: fashion_scene_sources(data_dir, seed),
    "coco": lambda data_dir, seed, val, test: read_coco(data_dir, seed, val_fraction=val, test_fraction=test),
    "masks": lambda data_dir, seed, val, test: read_masks(data_dir, seed, val_fraction=val, test_fraction=test),
}
# nas.datasets.DENSE_DATASETS lists these names for the classification loader (tests check they agree).


@dataclass(frozen=True, eq=False)
class DenseSample:
    image: torch.Tensor  # C x R x R float32, normalised
    boxes: torch.Tensor | None  # K x 4 float32 (x1, y1, x2, y2) in input pixels
    labels: torch.Tensor | None  # K int64
    mask: torch.Tensor | None  # R x R int64


@dataclass(frozen=True, eq=False)
class DenseBatch:
    images: torch.Tensor  # N x C x R x R
    boxes: tuple[torch.Tensor, ...] | None  # N tensors of K_i x 4
    labels: tuple[torch.Tensor, ...] | None
    masks: torch.Tensor | None  # N x R x R int64

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str) -> DenseBatch:
        def move(items: tuple[torch.Tensor, ...] | None) -> tuple[torch.Tensor, ...] | None:
            return None if items is None else tuple(t.to(device) for t in items)

        masks = None if self.masks is None else self.masks.to(device)
        return DenseBatch(self.images.to(device), move(self.boxes), move(self.labels), masks)


def collate_dense(samples: list[DenseSample]) -> DenseBatch:
    """Stack images and masks; boxes stay one tensor per image (their counts differ)."""
    has_boxes = all(s.boxes is not None for s in samples)
    has_masks = all(s.mask is not None for s in samples)
    return DenseBatch(
        images=torch.stack([s.image for s in samples]),
        boxes=tuple(s.boxes for s in samples) if has_boxes else None,
        labels=tuple(s.labels for s in samples) if has_boxes else None,
        masks=torch.stack([s.mask for s in samples]) if has_masks else None,
    )


class DenseSplit(torch.utils.data.Dataset):
    """One split: sample ``i`` is read, resized to ``resolution`` and normalised when asked for."""

    def __init__(self, source: SampleSource, *, resolution: int, mean: tuple[float, ...], std: tuple[float, ...]):
        self.source, self.resolution = source, resolution
        self._mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> DenseSample:
        image, boxes, labels, mask = _resized(self.source, index, self.resolution)
        return DenseSample(image=(image - self._mean) / self._std, boxes=boxes, labels=labels, mask=mask)

    def loader(self, *, batch_size: int, shuffle: bool = False, seed: int = 0, num_workers: int = 0) -> DataLoader:
        """A DataLoader of :class:`DenseBatch`; with ``shuffle`` the order is fixed by ``seed``."""
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(
            self,
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=num_workers,
            collate_fn=collate_dense,
            drop_last=False,
        )


def _resized(
    source: SampleSource, index: int, resolution: int
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Image in [0, 1] (not normalised), boxes, labels and mask at ``resolution``."""
    raw = source.read(index)
    image = torch.from_numpy(np.ascontiguousarray(raw.image, dtype=np.float32) / np.float32(255.0))
    height, width = image.shape[-2:]
    size = (resolution, resolution)
    if (height, width) != size:
        # antialias only acts when shrinking; it keeps thin strokes from aliasing away.
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    boxes = labels = mask = None
    if raw.boxes is not None:
        scale = torch.tensor([resolution / width, resolution / height] * 2, dtype=torch.float32)
        boxes = torch.from_numpy(np.asarray(raw.boxes, dtype=np.float32)).reshape(-1, 4) * scale
        labels = torch.from_numpy(np.asarray(raw.labels, dtype=np.int64))
    if raw.mask is not None:
        mask = torch.from_numpy(np.asarray(raw.mask, dtype=np.int64))
        if (height, width) != size:
            mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
    return image.contiguous(), boxes, labels, mask


@dataclass(frozen=True, eq=False)
class DenseDataset:
    name: str
    train: DenseSplit = field(repr=False)
    val: DenseSplit = field(repr=False)
    test: DenseSplit = field(repr=False)
    channels: int
    resolution: int
    detection_classes: tuple[str, ...] | None  # None: the data has no boxes
    segmentation_classes: tuple[str, ...] | None  # None: the data has no masks
    mean: tuple[float, ...]  # per channel, pixels in [0, 1]; deploy applies the same
    std: tuple[float, ...]

    @property
    def tasks(self) -> tuple[str, ...]:
        present = {"detection": self.detection_classes, "segmentation": self.segmentation_classes}
        return tuple(task for task, names in present.items() if names is not None)

    def class_names(self, task: str) -> tuple[str, ...]:
        names = {"detection": self.detection_classes, "segmentation": self.segmentation_classes}.get(task)
        if names is None:
            raise DatasetError(f"{self.name}: no {task} labels; this dataset serves {', '.join(self.tasks)}")
        return names

    def num_classes(self, task: str) -> int:
        return len(self.class_names(task))

    def summary(self) -> str:
        return (
            f"{self.name}: {self.channels}x{self.resolution}x{self.resolution}, {'+'.join(self.tasks)}, "
            f"train/val/test = {len(self.train)}/{len(self.val)}/{len(self.test)}"
        )


def load_dense_dataset(
    name: str,
    *,
    resolution: int,
    seed: int = 0,
    data_dir: str | Path | None = None,
    task: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    limit: int | None = None,
    eval_limit: int | None = None,
) -> DenseDataset:
    """Open a registered dense dataset; nothing but headers (and the COCO JSON) is read yet.

    ``task`` (optional) is checked against what the data serves. Folder formats
    are split by ``val_fraction``/``test_fraction`` from ``seed``; the scenes
    have their own splits. ``limit`` caps the training split and ``eval_limit``
    val and test, each a seeded subset.
    """
    if name not in _LOADERS:
        raise DatasetError(f"unknown dense dataset {name!r}; known dense datasets: {', '.join(_LOADERS)}")
    _check_arguments(resolution, task, limit, eval_limit, val_fraction, test_fraction)
    sources = _LOADERS[name](Path(data_dir) if data_dir is not None else None, seed, val_fraction, test_fraction)
    train = _capped(sources.train, limit, seed)
    mean, std = _channel_stats(train, resolution, seed)
    splits = {
        "train": DenseSplit(train, resolution=resolution, mean=mean, std=std),
        "val": DenseSplit(_capped(sources.val, eval_limit, seed), resolution=resolution, mean=mean, std=std),
        "test": DenseSplit(_capped(sources.test, eval_limit, seed), resolution=resolution, mean=mean, std=std),
    }
    dataset = DenseDataset(
        name=name,
        channels=sources.channels,
        resolution=resolution,
        detection_classes=sources.detection_classes,
        segmentation_classes=sources.segmentation_classes,
        mean=mean,
        std=std,
        **splits,
    )
    if task is not None:
        dataset.class_names(task)
    logger.info("opened %s", dataset.summary())
    return dataset


def _check_arguments(
    resolution: int, task: str | None, limit: int | None, eval_limit: int | None, val: float, test: float
) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8:
        raise DatasetError(f"`resolution` must be an int >= 8, but got {resolution=}")
    if task is not None and task not in DENSE_TASKS:
        raise DatasetError(f"`task` must be one of {DENSE_TASKS} or None, but got {task=}")
    for key, value in (("limit", limit), ("eval_limit", eval_limit)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise DatasetError(f"`{key}` must be None or a positive int, but got {key}={value!r}")
    if not (0.0 < val < 1.0 and 0.0 < test < 1.0 and val + test < 1.0):
        raise DatasetError(
            "`0 < val_fraction, test_fraction` and `val_fraction + test_fraction < 1` must hold, "
            f"but got (val_fraction={val}, test_fraction={test})"
        )


def _capped(source: SampleSource, limit: int | None, seed: int) -> SampleSource:
    if limit is None or limit >= len(source):
        return source
    positions = np.random.default_rng([seed, limit]).permutation(len(source))[:limit]
    return Subset(source, np.sort(positions))


def _channel_stats(source: SampleSource, resolution: int, seed: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std, pixels in [0, 1], of up to STATS_SAMPLES training images."""
    picks = np.random.default_rng(seed).permutation(len(source))[:STATS_SAMPLES]
    images = torch.stack([_resized(source, int(i), resolution)[0] for i in picks]).double()
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3))
    # A constant channel carries no information; dividing by ~0 would only blow up noise.
    std = torch.where(std < 1e-6, torch.ones_like(std), std)
    return tuple(mean.tolist()), tuple(std.tolist())
