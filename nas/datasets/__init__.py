"""Image classification datasets, loaded into memory as normalised tensors.

Every source turns its files into raw images (N x C x H x W, any numeric
dtype) and labels; the shared code then splits them deterministically from a
seed (stratified by class), caps the training split with ``limit``, resizes to
the requested resolution and normalises every split with the per-channel
mean/std of the training split.

Pixel values are first scaled to [0, 1] (uint8 / 255, digits / 16) and then
normalised: ``x = (pixels - mean) / std``. ``Dataset.mean``/``std`` are in
that [0, 1] scale, which is what a deployed model's preprocessing must apply.

Sources are found through a registry (:func:`register_dataset`); a lookup
miss lists the registered names.

The modules, leaves first:

    names     the built-in datasets' names (no numpy or torch: the CLI's help reads them)
    base      DatasetError; RawImages (what a source reads), Split, Dataset
    idx       the IDX reader and Fashion-MNIST's train/test pairs (also read by nas.dense_sources)
    sources   the built-in sources: digits, fashion-mnist, npz, folder
    splits    stratified train/val/test splits, the ``limit`` subset, resizing, normalisation
    loading   the registry and load_dataset: look a source up, check its data, split it
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search_spaces.lazy_exports import lazy_exports

if TYPE_CHECKING:  # for static tools; at run time a name's module is imported on first use (__getattr__)
    from nas.datasets.base import Dataset, DatasetError, Split
    from nas.datasets.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, read_idx, read_idx_pair
    from nas.datasets.loading import load_dataset, register_dataset
    from nas.datasets.names import DATASETS, DENSE_DATASETS
    from nas.datasets.sources import IMAGE_SUFFIXES

__all__ = [
    "DATASETS",
    "DENSE_DATASETS",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "IMAGE_SUFFIXES",
    "Dataset",
    "DatasetError",
    "Split",
    "load_dataset",
    "read_idx",
    "read_idx_pair",
    "register_dataset",
]

# The same names by submodule: `import nas.datasets` loads none of them (numpy, torch).
_EXPORTS = {
    "nas.datasets.base": ("Dataset", "DatasetError", "Split"),
    "nas.datasets.idx": ("FASHION_MNIST_CLASSES", "FASHION_MNIST_DIR", "read_idx", "read_idx_pair"),
    "nas.datasets.loading": ("load_dataset", "register_dataset"),
    "nas.datasets.names": ("DATASETS", "DENSE_DATASETS"),
    "nas.datasets.sources": ("IMAGE_SUFFIXES",),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
