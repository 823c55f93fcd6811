"""Fashion-MNIST's IDX files: the generic IDX reader and the train/test pairs of images and labels.

The dense scene datasets (``nas.dense_sources``) draw their items from the
same files, through :func:`read_idx_pair`.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from nas.datasets.base import MAX_DATA_BYTES, DatasetError
from search_spaces.errors import one_line

__all__ = ["FASHION_MNIST_CLASSES", "FASHION_MNIST_DIR", "read_idx", "read_idx_pair"]

# Where Debian's `dataset-fashion-mnist` package puts the gzipped IDX files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def read_idx_pair(root: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """``<prefix>-images-idx3-ubyte`` (N x H x W) and ``<prefix>-labels-idx1-ubyte`` (N int64 in 0..9) under ``root``,
    each optionally gzipped; ``prefix`` is ``train`` or ``t10k``."""
    images_path = _find_idx(root, f"{prefix}-images-idx3-ubyte")
    labels_path = _find_idx(root, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise DatasetError(
            f"{images_path}, {labels_path}: expected 3-D images and 1-D labels, got {images.ndim}-D and {labels.ndim}-D"
        )
    if len(images) != len(labels):
        raise DatasetError(f"{images_path}: {len(images)} images but {labels_path} has {len(labels)} labels")
    labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= len(FASHION_MNIST_CLASSES):
        raise DatasetError(f"{labels_path}: labels must lie in 0..9, got {labels.min()}..{labels.max()}")
    return images, labels


def _find_idx(root: Path, stem: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetError(
        f"{root / stem}[.gz]: no such file; install Fashion-MNIST with "
        f"`apt-get install dataset-fashion-mnist` or pass --data-dir with the IDX files"
    )


# IDX type codes (third magic byte) -> big-endian numpy dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (``.gz`` is decompressed); sizes are checked against the header."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    ndim = data[3]
    header_bytes = 4 + 4 * ndim
    if ndim == 0 or len(data) < header_bytes:
        raise DatasetError(f"{path}: truncated IDX header ({len(data)} bytes, {ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header_bytes != expected:
        raise DatasetError(
            f"{path}: truncated or oversized IDX data: header says {dims} ({expected} bytes), "
            f"file holds {len(data) - header_bytes} bytes"
        )
    return np.frombuffer(data, dtype=dtype, offset=header_bytes).reshape(dims).astype(dtype.newbyteorder("="))


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix != ".gz":
            if path.stat().st_size > MAX_DATA_BYTES:
                raise DatasetError(f"{path}: larger than {MAX_DATA_BYTES:,} bytes")
            return path.read_bytes()
        chunks, total = [], 0
        with gzip.open(path, "rb") as handle:  # in chunks: read(n) would allocate n bytes at once
            while chunk := handle.read(1 << 24):
                total += len(chunk)
                if total > MAX_DATA_BYTES:
                    raise DatasetError(f"{path}: decompresses to more than {MAX_DATA_BYTES:,} bytes")
                chunks.append(chunk)
        return b"".join(chunks)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path}: unreadable ({one_line(exc)})") from None
