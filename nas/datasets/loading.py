"""The dataset registry and :func:`load_dataset`: look a source up, check its data, split it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nas.datasets.base import Dataset, DatasetError, RawImages
from nas.datasets.names import DATASETS, DENSE_DATASETS
from nas.datasets.sources import read_digits, read_fashion_mnist, read_folder, read_npz
from nas.datasets.splits import make_splits

__all__ = ["DATASETS", "DENSE_DATASETS", "load_dataset", "register_dataset"]

logger = logging.getLogger(__name__)

PIXEL_SLACK = 1e-3  # scaled pixels this far outside [0, 1] (rounding) are accepted

# A loader gets (data_dir, resolution) and returns raw images; folder loaders
# resize while reading because their images need not share a size.
Loader = Callable[[Path | None, int], RawImages]
# The built-in ones, in the order of DATASETS (nas.datasets.names: the CLI reads the names without numpy).
_LOADERS: dict[str, Loader] = dict(zip(DATASETS, (read_digits, read_fashion_mnist, read_npz, read_folder), strict=True))


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Decorator: make a loader available to :func:`load_dataset` under ``name``."""

    def decorate(loader: Loader) -> Loader:
        if name in _LOADERS:
            raise ValueError(f"dataset {name!r} is already registered")
        _LOADERS[name] = loader
        return loader

    return decorate


def load_dataset(
    name: str,
    *,
    resolution: int,
    seed: int = 0,
    data_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    limit: int | None = None,
) -> Dataset:
    """Load a registered dataset as normalised train/val/test tensors.

    ``val_fraction``/``test_fraction`` are fractions of all images; a dataset
    that ships its own test split (fashion-mnist) ignores ``test_fraction`` and
    carves val from its training images. ``limit`` caps the training split
    (a stratified subset, the same for a given seed); val and test are kept
    whole so that scores stay comparable across limits.
    """
    if name in DENSE_DATASETS:
        raise DatasetError(f"{name!r} is a detection/segmentation dataset: load it with nas.dense_datasets")
    if name not in _LOADERS:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(_LOADERS))}")
    _check_arguments(resolution, val_fraction, test_fraction, limit)
    raw = _LOADERS[name](Path(data_dir) if data_dir is not None else None, resolution)
    _check_values(raw, str(data_dir) if data_dir is not None else name)
    splits, mean, std = make_splits(name, raw, resolution, seed, val_fraction, test_fraction, limit)
    dataset = Dataset(
        name=name,
        num_classes=len(raw.class_names),
        channels=int(raw.images.shape[1]),
        resolution=resolution,
        class_names=raw.class_names,
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
        **splits,
    )
    logger.info("loaded %s", dataset.summary())
    return dataset


def _check_values(raw: RawImages, source: str) -> None:
    """Data checked at load, before any training: finite pixels in the range the scale expects, labels in range."""
    for what, images, labels in (("", raw.images, raw.labels), (" (test)", raw.test_images, raw.test_labels)):
        if images is None:
            continue
        if np.issubdtype(images.dtype, np.floating) and not np.isfinite(images).all():
            bad = int(np.count_nonzero(~np.isfinite(images)))
            raise DatasetError(f"{source}{what}: x holds {bad:,} NaN or infinite values")
        low, high = float(images.min()) / raw.scale, float(images.max()) / raw.scale
        if low < -PIXEL_SLACK or high > 1 + PIXEL_SLACK:
            hint = " (0..255 pixels stored as floats: store them as uint8, or divide by 255)" if high <= 256 else ""
            raise DatasetError(
                f"{source}{what}: pixel values must lie in [0, {raw.scale:g}] for {images.dtype} images, "
                f"got [{float(images.min()):.4g}, {float(images.max()):.4g}]{hint}"
            )
        if labels is not None and len(labels) and (labels.min() < 0 or labels.max() >= len(raw.class_names)):
            raise DatasetError(
                f"{source}{what}: label ids must lie in 0..{len(raw.class_names) - 1} "
                f"({len(raw.class_names)} classes), got {int(labels.min())}..{int(labels.max())}"
            )


def _check_arguments(resolution: int, val_fraction: float, test_fraction: float, limit: int | None) -> None:
    if not isinstance(resolution, int) or resolution < 1:
        raise DatasetError(f"`resolution` must be a positive int, but got {resolution=}")
    if not (0.0 < val_fraction < 1.0 and 0.0 < test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
        raise DatasetError(
            f"`0 < val_fraction, test_fraction` and `val_fraction + test_fraction < 1` must hold, "
            f"but got ({val_fraction=}, {test_fraction=})"
        )
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise DatasetError(f"`limit` must be None or a positive int, but got {limit=}")
