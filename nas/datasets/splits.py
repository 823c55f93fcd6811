"""Deterministic, stratified train/val/test splits, resized to the resolution and normalised.

The splits come from a seed (stratified by class); ``limit`` caps the training
split with a stratified subset; every split is normalised with the
per-channel mean/std of the training split.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from nas.datasets.base import DatasetError, RawImages, Split

__all__ = ["make_splits"]


def make_splits(
    name: str, raw: RawImages, resolution: int, seed: int, val_fraction: float, test_fraction: float, limit: int | None
) -> tuple[dict[str, Split], torch.Tensor, torch.Tensor]:
    """The ``train``/``val``/``test`` splits of ``raw`` and the training split's per-channel mean and std."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx, test_idx = _split_indices(raw, val_fraction, test_fraction, rng)
    if limit is not None and limit < len(train_idx):
        train_idx = np.sort(train_idx[_stratified_order(raw.labels[train_idx], rng)[:limit]])
    test_images, test_labels = (
        (raw.test_images, raw.test_labels) if raw.test_images is not None else (raw.images, raw.labels)
    )
    sources = {
        "train": (raw.images, raw.labels, train_idx),
        "val": (raw.images, raw.labels, val_idx),
        "test": (test_images, test_labels, test_idx),
    }
    for split_name, (_, _, idx) in sources.items():
        if len(idx) == 0:
            raise DatasetError(f"{name}: the {split_name} split is empty ({len(raw.labels)} images); add images")
    tensors = {key: _to_split(*src, scale=raw.scale, resolution=resolution) for key, src in sources.items()}
    mean, std = _channel_stats(tensors["train"].x)
    return {key: _normalised(split, mean, std) for key, split in tensors.items()}, mean, std


# ----- deterministic, stratified splitting --------------------------------------------------


def _stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions into ``labels`` in a random order whose every prefix holds each class in proportion."""
    perm = rng.permutation(len(labels))
    key = np.empty(len(labels))
    for label in np.unique(labels):
        members = perm[labels[perm] == label]
        # Evenly spaced keys with a random phase: class c fills a fraction n_c / N of any prefix.
        key[members] = (np.arange(len(members)) + rng.random()) / len(members)
    return perm[np.argsort(key[perm], kind="stable")]


def _split_indices(
    raw: RawImages, val_fraction: float, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = _stratified_order(raw.labels, rng)
    n = len(order)
    if raw.test_images is not None:
        n_val = round(n * val_fraction)
        test = np.arange(len(raw.test_labels))
        return np.sort(order[n_val:]), np.sort(order[:n_val]), test
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return np.sort(train), np.sort(val), np.sort(test)


# ----- tensors, resizing, normalisation --------------------------------------------------


def _to_split(images: np.ndarray, labels: np.ndarray, idx: np.ndarray, *, scale: float, resolution: int) -> Split:
    x = torch.from_numpy(np.ascontiguousarray(images[idx], dtype=np.float32) / np.float32(scale))
    if x.shape[-2:] != (resolution, resolution):
        # antialias only acts when shrinking; it keeps thin strokes from aliasing away.
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)
    return Split(x=x.contiguous(), y=torch.from_numpy(labels[idx].astype(np.int64)))


def _channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x.mean(dim=(0, 2, 3), dtype=torch.float64)
    std = x.std(dim=(0, 2, 3)).double()
    # A constant channel carries no information; dividing by ~0 would only blow up noise.
    std = torch.where(std < 1e-6, torch.ones_like(std), std)
    return mean, std


def _normalised(split: Split, mean: torch.Tensor, std: torch.Tensor) -> Split:
    shape = (1, -1, 1, 1)
    x = (split.x - mean.float().view(shape)) / std.float().view(shape)
    return Split(x=x, y=split.y)
