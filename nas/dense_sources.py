"""Where dense samples come from: raw images with their boxes and masks, read one at a time.

A :class:`SampleSource` reads sample ``i`` on demand, at the image's own size,
so a dataset never sits in memory as float tensors; ``nas.dense_datasets``
resizes, normalises and batches what it reads. The embedded scene datasets
are sources here; the users' formats (``coco``, ``masks``) live in
``nas.dense_formats``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from nas.datasets import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, DatasetError, read_idx_pair
from nas.scenes import ItemPool, SceneConfig, make_scene

__all__ = [
    "IGNORE_INDEX",
    "DenseSources",
    "RawSample",
    "SampleSource",
    "SceneSource",
    "Subset",
    "digit_scene_sources",
    "fashion_scene_sources",
    "split_positions",
]

# A segmentation label that no loss or metric counts (VOC marks object borders with it).
IGNORE_INDEX = 255
# Scenes per split of the embedded datasets (generated lazily; `limit` / `eval_limit` cap them).
SCENES_PER_SPLIT = {"train": 2000, "val": 250, "test": 500}
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True, eq=False)
class RawSample:
    """One image at its own size, with what it is annotated with (None when the format has none)."""

    image: np.ndarray  # C x H x W uint8
    boxes: np.ndarray | None  # K x 4 float32 (x1, y1, x2, y2) in pixel edges
    labels: np.ndarray | None  # K int64 in [0, number of detection classes)
    mask: np.ndarray | None  # H x W int64 segmentation class per pixel; IGNORE_INDEX is ignored
    source: str  # the file (or scene) it came from, for error messages


class SampleSource(Protocol):
    def __len__(self) -> int: ...

    def read(self, index: int) -> RawSample: ...


@dataclass(frozen=True, eq=False)
class Subset:
    """The samples of ``source`` at ``positions`` (a split of one folder)."""

    source: SampleSource
    positions: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return len(self.positions)

    def read(self, index: int) -> RawSample:
        return self.source.read(int(self.positions[index]))


@dataclass(frozen=True, eq=False)
class DenseSources:
    """What a dense loader returns: three splits and the class names of each task it supports."""

    train: SampleSource
    val: SampleSource
    test: SampleSource
    channels: int
    detection_classes: tuple[str, ...] | None  # None: no boxes
    segmentation_classes: tuple[str, ...] | None  # None: no masks; index 0 is usually the background


def split_positions(
    n: int, *, seed: int, val_fraction: float, test_fraction: float, name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded train/val/test partition of ``range(n)``; an empty split is an error."""
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    for split, positions in (("train", train), ("val", val), ("test", test)):
        if len(positions) == 0:
            raise DatasetError(f"{name}: the {split} split is empty ({n} images); add images")
    return np.sort(train), np.sort(val), np.sort(test)


# ----- the embedded scene datasets --------------------------------------------------


@dataclass(frozen=True, eq=False)
class SceneSource:
    """``count`` scenes of one split; scene ``i`` is a pure function of ``(seed, split, i)``."""

    name: str
    pool: ItemPool
    seed: int
    split: str
    count: int
    config: SceneConfig = SceneConfig()

    def __len__(self) -> int:
        return self.count

    def read(self, index: int) -> RawSample:
        if not 0 <= index < self.count:
            raise IndexError(f"{self.name} {self.split}: scene {index} of {self.count}")
        rng = np.random.default_rng([self.seed, _SPLIT_CODES[self.split], index])
        scene = make_scene(self.pool, rng, self.config)
        return RawSample(
            image=scene.image,
            boxes=scene.boxes,
            labels=scene.labels,
            mask=scene.mask.astype(np.int64),
            source=f"{self.name} {self.split} scene {index}",
        )


def _scene_sources(name: str, pools: dict[str, ItemPool], class_names: tuple[str, ...], seed: int) -> DenseSources:
    splits = {split: SceneSource(name, pools[split], seed, split, count) for split, count in SCENES_PER_SPLIT.items()}
    return DenseSources(
        channels=1,
        detection_classes=class_names,
        segmentation_classes=("background", *class_names),
        **splits,
    )


def digit_scene_sources(data_dir: Path | None, seed: int) -> DenseSources:
    """Scenes of scikit-learn's digits; the item images are split 70/10/20 so no digit image is in two splits."""
    from sklearn.datasets import load_digits

    if data_dir is not None:
        raise DatasetError(f"{data_dir}: digit-scenes is generated from scikit-learn's digits and takes no data_dir")
    bunch = load_digits()
    images = bunch.images.astype(np.float32)  # 0..16; make_scene rescales every item to peak 1
    labels = bunch.target.astype(np.int64)
    train, val, test = split_positions(len(labels), seed=seed, val_fraction=0.1, test_fraction=0.2, name="digits")
    pools = {
        split: ItemPool(images[idx], labels[idx]) for split, idx in (("train", train), ("val", val), ("test", test))
    }
    return _scene_sources("digit-scenes", pools, tuple(str(n) for n in bunch.target_names), seed)


def fashion_scene_sources(data_dir: Path | None, seed: int) -> DenseSources:
    """Scenes of Fashion-MNIST items: train/val items from its training set (90/10), test items from t10k."""
    root = data_dir if data_dir is not None else FASHION_MNIST_DIR
    train_x, train_y = read_idx_pair(root, "train")  # uint8; make_scene rescales every item to peak 1
    test_x, test_y = read_idx_pair(root, "t10k")
    order = np.random.default_rng(seed).permutation(len(train_y))
    n_val = round(0.1 * len(order))
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    pools = {
        "train": ItemPool(train_x[train], train_y[train]),
        "val": ItemPool(train_x[val], train_y[val]),
        "test": ItemPool(test_x, test_y),
    }
    return _scene_sources("fashion-scenes", pools, FASHION_MNIST_CLASSES, seed)
