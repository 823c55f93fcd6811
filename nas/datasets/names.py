"""The built-in datasets' names (no numpy, no torch: the CLI's help lists them)."""

from __future__ import annotations

__all__ = ["DATASETS", "DENSE_DATASETS"]

# Classification sources, read by nas.datasets.sources (a script may register more: register_dataset).
DATASETS = ("digits", "fashion-mnist", "npz", "folder")
# Detection/segmentation datasets, loaded by nas.dense_datasets (boxes and masks, read lazily).
DENSE_DATASETS = ("digit-scenes", "fashion-scenes", "coco", "masks")
