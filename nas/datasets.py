"""Image classification datasets, loaded into memory as normalised tensors.

Every loader turns its source into raw images (N x C x H x W, any numeric
dtype) and labels; the shared code below then splits them deterministically
from a seed (stratified by class), caps the training split with ``limit``,
resizes to the requested resolution and normalises every split with the
per-channel mean/std of the training split.

Pixel values are first scaled to [0, 1] (uint8 / 255, digits / 16) and then
normalised: ``x = (pixels - mean) / std``. ``Dataset.mean``/``std`` are in
that [0, 1] scale, which is what a deployed model's preprocessing must apply.

Loaders are found through a registry (:func:`register_dataset`); a lookup
miss lists the registered names.
"""

from __future__ import annotations

import gzip
import logging
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from search_spaces.errors import EdgeNasError, one_line

__all__ = [
    "DATASETS",
    "DENSE_DATASETS",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "Dataset",
    "DatasetError",
    "Split",
    "load_dataset",
    "read_idx",
    "register_dataset",
]

logger = logging.getLogger(__name__)

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
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
# Detection/segmentation datasets, loaded by nas.dense_datasets (boxes and masks, read lazily).
DENSE_DATASETS = ("digit-scenes", "fashion-scenes", "coco", "masks")
PIXEL_SLACK = 1e-3  # scaled pixels this far outside [0, 1] (rounding) are accepted
MAX_CLASSES = 10_000  # a label id above this is a corrupt file, not a dataset (it would allocate that many names)
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


# A loader gets (data_dir, resolution) and returns raw images; folder loaders
# resize while reading because their images need not share a size.
Loader = Callable[[Path | None, int], RawImages]
_LOADERS: dict[str, Loader] = {}


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
    splits, mean, std = _make_splits(name, raw, resolution, seed, val_fraction, test_fraction, limit)
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


def _make_splits(
    name: str, raw: RawImages, resolution: int, seed: int, val_fraction: float, test_fraction: float, limit: int | None
) -> tuple[dict[str, Split], torch.Tensor, torch.Tensor]:
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


# ----- loaders --------------------------------------------------


@register_dataset("digits")
def _load_digits(data_dir: Path | None, resolution: int) -> RawImages:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, values 0..16)."""
    from sklearn.datasets import load_digits

    if data_dir is not None:
        raise DatasetError(f"{data_dir}: the digits dataset is bundled with scikit-learn and takes no data_dir")
    bunch = load_digits()
    images = bunch.images.astype(np.float32)[:, None]  # N x 1 x 8 x 8
    names = tuple(str(name) for name in bunch.target_names)
    return RawImages(images=images, labels=bunch.target.astype(np.int64), class_names=names, scale=16.0)


@register_dataset("fashion-mnist")
def _load_fashion_mnist(data_dir: Path | None, resolution: int) -> RawImages:
    """Fashion-MNIST IDX files (optionally gzipped), with its own 10000-image test split."""
    root = data_dir if data_dir is not None else FASHION_MNIST_DIR
    train_x, train_y = _read_idx_pair(root, "train")
    test_x, test_y = _read_idx_pair(root, "t10k")
    return RawImages(
        images=train_x[:, None],
        labels=train_y,
        class_names=FASHION_MNIST_CLASSES,
        scale=255.0,
        test_images=test_x[:, None],
        test_labels=test_y,
    )


def _read_idx_pair(root: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
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


@register_dataset("npz")
def _load_npz(data_dir: Path | None, resolution: int) -> RawImages:
    """An ``.npz`` file with ``x`` (N,H,W | N,H,W,C | N,C,H,W) and ``y`` (N,) ints; optional ``class_names``."""
    if data_dir is None:
        raise DatasetError("npz: pass the .npz file as data_dir (--data-dir)")
    if not data_dir.is_file():
        raise DatasetError(f"{data_dir}: no such .npz file")
    try:
        _check_npz_size(data_dir)
        archive = np.load(data_dir, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DatasetError(f"{data_dir}: a single .npy array, not an .npz archive with x and y")
        with archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile, NotImplementedError) as exc:
        raise DatasetError(f"{data_dir}: unreadable .npz ({one_line(exc)})") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise DatasetError(f"{data_dir}: missing array {key!r}; found {sorted(arrays)}")
    images = _channels_first(arrays["x"], data_dir)
    labels = _checked_labels(arrays["y"], len(images), data_dir)
    if labels.max() >= MAX_CLASSES:
        raise DatasetError(f"{data_dir}: label id {int(labels.max())} is out of range (at most {MAX_CLASSES - 1})")
    num_classes = int(labels.max()) + 1
    names = tuple(str(n) for n in arrays["class_names"]) if "class_names" in arrays else None
    if names is not None and len(names) < num_classes:
        raise DatasetError(f"{data_dir}: {len(names)} class_names but labels go up to {num_classes - 1}")
    scale = 255.0 if np.issubdtype(images.dtype, np.integer) or images.dtype == np.bool_ else 1.0
    return RawImages(
        images=images, labels=labels, class_names=names or tuple(map(str, range(num_classes))), scale=scale
    )


def _check_npz_size(path: Path) -> None:
    """Refuse an archive that would decompress to more than MAX_DATA_BYTES, before reading it."""
    if not zipfile.is_zipfile(path):
        return  # np.load says what it is
    with zipfile.ZipFile(path) as archive:
        total = sum(info.file_size for info in archive.infolist())
    if total > MAX_DATA_BYTES:
        raise DatasetError(f"{path}: decompresses to {total:,} bytes, more than {MAX_DATA_BYTES:,}")


def _channels_first(x: np.ndarray, path: Path) -> np.ndarray:
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DatasetError(f"{path}: x must hold real numbers, got dtype {x.dtype}")
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[1] <= 4 < x.shape[3]:
        return x
    if x.ndim == 4 and x.shape[3] <= 4 < x.shape[1]:
        return np.transpose(x, (0, 3, 1, 2))
    raise DatasetError(
        f"{path}: x must be (N,H,W), (N,H,W,C) or (N,C,H,W) with C <= 4 and H, W > 4, got shape {x.shape}"
    )


def _checked_labels(y: np.ndarray, n_images: int, path: Path) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{path}: y must be a 1-D integer array, got shape {y.shape} dtype {y.dtype}")
    if len(y) != n_images:
        raise DatasetError(f"{path}: x has {n_images} images but y has {len(y)} labels")
    if n_images == 0 or y.min() < 0:
        raise DatasetError(f"{path}: y must be non-empty with labels >= 0, got {len(y)} labels")
    return y.astype(np.int64)


@register_dataset("folder")
def _load_folder(data_dir: Path | None, resolution: int) -> RawImages:
    """``data_dir/<class name>/*.png|jpg``; class names are the sorted subfolder names."""
    if data_dir is None:
        raise DatasetError("folder: pass the image folder as data_dir (--data-dir)")
    files_by_class = _list_class_folders(data_dir)
    all_files = [path for files in files_by_class.values() for path in files]
    mode = "L" if all(_image_mode(path) in _GRAY_MODES for path in all_files) else "RGB"
    images = np.stack([_read_image(path, mode, resolution) for path in all_files])
    labels = np.concatenate([np.full(len(files), i, dtype=np.int64) for i, files in enumerate(files_by_class.values())])
    return RawImages(images=images, labels=labels, class_names=tuple(files_by_class), scale=255.0)


_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _list_class_folders(root: Path) -> dict[str, list[Path]]:
    if not root.is_dir():
        raise DatasetError(f"{root}: no such image folder")
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    stray = [p for p in entries if not p.is_dir()]
    if stray:
        raise DatasetError(f"{stray[0]}: expected only one subfolder per class in {root}, found a file")
    if not entries:
        raise DatasetError(f"{root}: empty image folder; expected one subfolder of images per class")
    files_by_class = {}
    for folder in entries:
        files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        unsupported = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if unsupported:
            raise DatasetError(f"{unsupported[0]}: unsupported file type; expected {', '.join(IMAGE_SUFFIXES)}")
        if not files:
            raise DatasetError(f"{folder}: class folder has no images")
        files_by_class[folder.name] = files
    return files_by_class


def _image_mode(path: Path) -> str:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.mode
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{path}: unreadable image ({one_line(exc)})") from None


def _read_image(path: Path, mode: str, resolution: int) -> np.ndarray:
    """One image as C x resolution x resolution uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert(mode).resize((resolution, resolution), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{path}: unreadable image ({one_line(exc)})") from None
    return pixels[None] if pixels.ndim == 2 else np.transpose(pixels, (2, 0, 1))


DATASETS: tuple[str, ...] = tuple(_LOADERS)
