"""The built-in sources: each reads its files into :class:`~nas.datasets.base.RawImages`.

``digits`` (scikit-learn's bundled 8x8 digits), ``fashion-mnist`` (IDX files,
with its own test split), ``npz`` (arrays ``x`` and ``y``) and ``folder`` (one
subfolder of images per class). A source gets (data_dir, resolution); folder
sources resize while reading because their images need not share a size.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from nas.datasets.base import MAX_DATA_BYTES, DatasetError, RawImages
from nas.datasets.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, read_idx_pair
from search_spaces.errors import one_line

__all__ = ["IMAGE_SUFFIXES", "read_digits", "read_fashion_mnist", "read_folder", "read_npz"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
MAX_CLASSES = 10_000  # a label id above this is a corrupt file, not a dataset (it would allocate that many names)


def read_digits(data_dir: Path | None, resolution: int) -> RawImages:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, values 0..16)."""
    from sklearn.datasets import load_digits

    if data_dir is not None:
        raise DatasetError(f"{data_dir}: the digits dataset is bundled with scikit-learn and takes no data_dir")
    bunch = load_digits()
    images = bunch.images.astype(np.float32)[:, None]  # N x 1 x 8 x 8
    names = tuple(str(name) for name in bunch.target_names)
    return RawImages(images=images, labels=bunch.target.astype(np.int64), class_names=names, scale=16.0)


def read_fashion_mnist(data_dir: Path | None, resolution: int) -> RawImages:
    """Fashion-MNIST IDX files (optionally gzipped), with its own 10000-image test split."""
    root = data_dir if data_dir is not None else FASHION_MNIST_DIR
    train_x, train_y = read_idx_pair(root, "train")
    test_x, test_y = read_idx_pair(root, "t10k")
    return RawImages(
        images=train_x[:, None],
        labels=train_y,
        class_names=FASHION_MNIST_CLASSES,
        scale=255.0,
        test_images=test_x[:, None],
        test_labels=test_y,
    )


def read_npz(data_dir: Path | None, resolution: int) -> RawImages:
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


def read_folder(data_dir: Path | None, resolution: int) -> RawImages:
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
