"""nas.datasets: every loader on real files, splits, normalisation and each error a user can hit."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nas.datasets import (
    DATASETS,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    Dataset,
    DatasetError,
    load_dataset,
    read_idx,
)

# ----- helpers that write real files --------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` (uint8) as an IDX file; gzip it when the name ends in .gz."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_fashion_folder(root: Path, *, n_train: int = 60, n_test: int = 20, gz: bool = False) -> Path:
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(root / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n, dtype=np.uint8) % 10)
    return root


def write_image_folder(root: Path, *, classes=("cat", "ant", "bee"), per_class: int = 10, rgb_one=False) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            size = (10 + i % 3, 12)  # sizes differ: the loader must resize each image
            Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8), mode="L").save(root / name / f"{i}.png")
    if rgb_one:
        Image.fromarray(rng.integers(0, 256, (9, 9, 3), dtype=np.uint8), mode="RGB").save(root / classes[0] / "c.jpg")
    return root


@pytest.fixture(scope="module")
def digits32() -> Dataset:
    return load_dataset("digits", resolution=32)


# ----- digits --------------------------------------------------


@pytest.mark.parametrize("resolution", [32, 28])
def test_digits_loads_at_resolution(resolution: int) -> None:
    data = load_dataset("digits", resolution=resolution)
    assert (data.channels, data.resolution, data.num_classes) == (1, resolution, 10)
    assert data.train.x.shape[1:] == (1, resolution, resolution)
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.int64
    assert len(data.train) + len(data.val) + len(data.test) == 1797
    assert (len(data.val), len(data.test)) == (180, 359)  # 10 % and 20 % of 1797
    assert data.class_names == tuple(str(i) for i in range(10))


def test_digits_split_is_deterministic_for_a_seed(digits32: Dataset) -> None:
    again = load_dataset("digits", resolution=32, seed=0)
    other = load_dataset("digits", resolution=32, seed=1)
    assert torch.equal(again.val.x, digits32.val.x) and torch.equal(again.test.y, digits32.test.y)
    assert not torch.equal(other.val.x, digits32.val.x)


def test_splits_are_stratified_and_disjoint(digits32: Dataset) -> None:
    assert set(torch.bincount(digits32.val.y).tolist()) <= {17, 18, 19}
    train = {tuple(row.tolist()) for row in digits32.train.x.flatten(1)[:, ::7]}
    assert not any(tuple(row.tolist()) in train for row in digits32.test.x.flatten(1)[:, ::7][:50])


def test_normalised_with_train_statistics(digits32: Dataset) -> None:
    x = digits32.train.x
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1.0) < 1e-3
    assert len(digits32.mean) == len(digits32.std) == 1
    assert 0.0 < digits32.mean[0] < 1.0  # pixels scaled to [0, 1] before normalising
    assert abs(digits32.val.x.mean().item()) < 0.1  # other splits share the train statistics


def test_limit_takes_a_stratified_subset_and_keeps_val_and_test(digits32: Dataset) -> None:
    small = load_dataset("digits", resolution=32, limit=200)
    assert len(small.train) == 200
    assert set(torch.bincount(small.train.y).tolist()) <= {19, 20, 21}
    assert torch.equal(small.val.y, digits32.val.y) and torch.equal(small.test.y, digits32.test.y)


# ----- fashion-mnist --------------------------------------------------


@pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_from_debian_package() -> None:
    data = load_dataset("fashion-mnist", resolution=28, limit=500)
    assert (len(data.train), len(data.val), len(data.test)) == (500, 6000, 10000)
    assert data.train.x.shape[1:] == (1, 28, 28)
    assert data.class_names == FASHION_MNIST_CLASSES and data.num_classes == 10


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_from_idx_folder(tmp_path: Path, gz: bool) -> None:
    write_fashion_folder(tmp_path, gz=gz)
    data = load_dataset("fashion-mnist", resolution=32, data_dir=tmp_path)
    assert (len(data.train), len(data.val), len(data.test)) == (54, 6, 20)  # own test split, val from train
    assert data.test.x.shape == (20, 1, 32, 32)
    assert torch.equal(data.test.y, torch.arange(20) % 10)


def test_read_idx_round_trip(tmp_path: Path) -> None:
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a-idx3-ubyte", array)), array)


def test_fashion_mnist_missing_folder_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte") as info:
        load_dataset("fashion-mnist", resolution=28, data_dir=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)
    assert "apt-get install dataset-fashion-mnist" in str(info.value) and "--data-dir" in str(info.value)


def test_bad_idx_magic_names_the_file(tmp_path: Path) -> None:
    write_fashion_folder(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x12\x34" + bad.read_bytes()[2:])
    with pytest.raises(DatasetError, match="bad magic") as info:
        load_dataset("fashion-mnist", resolution=28, data_dir=tmp_path)
    assert str(bad) in str(info.value)


def test_truncated_idx_names_the_file(tmp_path: Path) -> None:
    write_fashion_folder(tmp_path)
    cut = tmp_path / "t10k-images-idx3-ubyte"
    cut.write_bytes(cut.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="truncated") as info:
        load_dataset("fashion-mnist", resolution=28, data_dir=tmp_path)
    assert str(cut) in str(info.value)


def test_corrupt_gzip_names_the_file(tmp_path: Path) -> None:
    write_fashion_folder(tmp_path, gz=True)
    cut = tmp_path / "train-labels-idx1-ubyte.gz"
    cut.write_bytes(cut.read_bytes()[:20])
    with pytest.raises(DatasetError, match="unreadable") as info:
        load_dataset("fashion-mnist", resolution=28, data_dir=tmp_path)
    assert str(cut) in str(info.value)


def test_images_and_labels_count_mismatch(tmp_path: Path) -> None:
    write_fashion_folder(tmp_path)
    labels = tmp_path / "train-labels-idx1-ubyte"
    write_idx(labels, np.zeros(59, dtype=np.uint8))
    with pytest.raises(DatasetError, match="60 images but") as info:
        load_dataset("fashion-mnist", resolution=28, data_dir=tmp_path)
    assert str(labels) in str(info.value)


# ----- image folder --------------------------------------------------


def test_folder_of_grayscale_pngs(tmp_path: Path) -> None:
    data = load_dataset("folder", resolution=16, data_dir=write_image_folder(tmp_path))
    assert data.class_names == ("ant", "bee", "cat")  # sorted subfolder names
    assert (data.channels, data.num_classes) == (1, 3)
    assert data.train.x.shape[1:] == (1, 16, 16)
    assert (len(data.train), len(data.val), len(data.test)) == (21, 3, 6)


def test_folder_with_one_colour_image_becomes_rgb(tmp_path: Path) -> None:
    data = load_dataset("folder", resolution=8, data_dir=write_image_folder(tmp_path, rgb_one=True))
    assert data.channels == 3 and data.train.x.shape[1:] == (3, 8, 8) and len(data.mean) == 3


def test_folder_with_an_empty_class_names_it(tmp_path: Path) -> None:
    write_image_folder(tmp_path)
    (tmp_path / "dog").mkdir()
    with pytest.raises(DatasetError, match="no images") as info:
        load_dataset("folder", resolution=8, data_dir=tmp_path)
    assert str(tmp_path / "dog") in str(info.value)


def test_folder_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such image folder") as info:
        load_dataset("folder", resolution=8, data_dir=tmp_path / "absent")
    assert str(tmp_path / "absent") in str(info.value)
    with pytest.raises(DatasetError, match="empty image folder"):
        load_dataset("folder", resolution=8, data_dir=tmp_path)


def test_folder_with_an_unreadable_image_names_it(tmp_path: Path) -> None:
    write_image_folder(tmp_path)
    broken = tmp_path / "bee" / "broken.png"
    broken.write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match="unreadable image") as info:
        load_dataset("folder", resolution=8, data_dir=tmp_path)
    assert str(broken) in str(info.value)


# ----- npz --------------------------------------------------


@pytest.mark.parametrize("layout", ["NHW", "NHWC", "NCHW"])
def test_npz_layouts(tmp_path: Path, layout: str) -> None:
    rng = np.random.default_rng(0)
    shape = {"NHW": (40, 12, 12), "NHWC": (40, 12, 12, 3), "NCHW": (40, 3, 12, 12)}[layout]
    path = tmp_path / "data.npz"
    np.savez(path, x=rng.integers(0, 256, shape, dtype=np.uint8), y=np.arange(40) % 4)
    data = load_dataset("npz", resolution=10, data_dir=path)
    channels = 1 if layout == "NHW" else 3
    assert data.train.x.shape[1:] == (channels, 10, 10) and data.num_classes == 4
    assert len(data.train) + len(data.val) + len(data.test) == 40


def test_npz_mismatched_x_and_y(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.zeros((10, 8, 8), dtype=np.float32), y=np.zeros(9, dtype=np.int64))
    with pytest.raises(DatasetError, match="10 images but y has 9 labels") as info:
        load_dataset("npz", resolution=8, data_dir=path)
    assert str(path) in str(info.value)


def test_npz_missing_file_or_array(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such .npz file") as info:
        load_dataset("npz", resolution=8, data_dir=tmp_path / "absent.npz")
    assert str(tmp_path / "absent.npz") in str(info.value)
    path = tmp_path / "no_y.npz"
    np.savez(path, x=np.zeros((10, 8, 8)))
    with pytest.raises(DatasetError, match="missing array 'y'"):
        load_dataset("npz", resolution=8, data_dir=path)


# ----- registry and arguments --------------------------------------------------


def test_unknown_dataset_lists_the_known_ones() -> None:
    assert set(DATASETS) == {"digits", "fashion-mnist", "folder", "npz"}
    with pytest.raises(DatasetError, match="unknown dataset 'cifar'") as info:
        load_dataset("cifar", resolution=32)
    assert all(name in str(info.value) for name in DATASETS)


@pytest.mark.parametrize(
    "kwargs",
    [{"resolution": 0}, {"resolution": 32, "val_fraction": 0.9}, {"resolution": 32, "limit": 0}],
)
def test_bad_arguments_are_rejected(kwargs: dict) -> None:
    with pytest.raises(DatasetError, match="must"):
        load_dataset("digits", **kwargs)
