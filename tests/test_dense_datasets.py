"""Dense datasets: the generated scenes, the coco and masks formats on real files, batching, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nas.datasets import DENSE_DATASETS, FASHION_MNIST_DIR, DatasetError, load_dataset
from nas.dense_datasets import _LOADERS, IGNORE_INDEX, DenseBatch, load_dense_dataset
from nas.dense_sources import digit_scene_sources, fashion_scene_sources
from nas.scenes import ITEM_THRESHOLD, SCENE_CANVAS

# On the uint8 canvas an item pixel is at least round(0.25 * 255) = 64; the noise stays at or below 26.
ITEM_MIN_PIXEL = round(ITEM_THRESHOLD * 255)


# ----- scenes --------------------------------------------------


HAS_FASHION = (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file()
NO_FASHION = pytest.mark.skipif(not HAS_FASHION, reason=f"Fashion-MNIST is not installed in {FASHION_MNIST_DIR}")


@pytest.fixture(scope="module", params=["digit-scenes", pytest.param("fashion-scenes", marks=NO_FASHION)])
def scene_sources(request):
    make = digit_scene_sources if request.param == "digit-scenes" else fashion_scene_sources
    return make(None, 0)


def test_scenes_are_a_function_of_the_seed(scene_sources):
    again = (digit_scene_sources if scene_sources.train.name == "digit-scenes" else fashion_scene_sources)(None, 0)
    for index in (0, 7, 1999):
        a, b = scene_sources.train.read(index), again.train.read(index)
        assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
        assert np.array_equal(a.labels, b.labels) and np.array_equal(a.mask, b.mask)
    other = (digit_scene_sources if scene_sources.train.name == "digit-scenes" else fashion_scene_sources)(None, 1)
    assert not np.array_equal(scene_sources.train.read(0).image, other.train.read(0).image)
    assert not np.array_equal(scene_sources.train.read(0).image, scene_sources.val.read(0).image)


def test_scene_boxes_and_masks_agree_with_the_pixels(scene_sources):
    counts = set()
    for index in range(40):
        scene = scene_sources.train.read(index)
        image, mask = scene.image[0], scene.mask
        assert image.shape == mask.shape == (SCENE_CANVAS, SCENE_CANVAS)
        assert np.array_equal(image >= ITEM_MIN_PIXEL, mask > 0)  # the mask is exactly the bright pixels
        counts.add(len(scene.labels))
        covered = np.zeros_like(mask, dtype=bool)
        for (x1, y1, x2, y2), label in zip(scene.boxes.astype(int), scene.labels):
            inside = mask[y1:y2, x1:x2]
            assert np.all(np.isin(inside, (0, label + 1)))  # items never overlap
            # tight: every edge row/column of the box holds a pixel of the item
            item = inside == label + 1
            assert item[0].any() and item[-1].any() and item[:, 0].any() and item[:, -1].any()
            covered[y1:y2, x1:x2] |= item
        assert np.array_equal(covered, mask > 0)  # no masked pixel lies outside every box
    assert counts <= {1, 2, 3, 4} and len(counts) >= 3


def test_scene_dataset_batches_at_the_network_resolution():
    data = load_dense_dataset("digit-scenes", resolution=96, limit=10, eval_limit=6, task="detection")
    assert data.tasks == ("detection", "segmentation")
    assert data.num_classes("detection") == 10 and data.class_names("segmentation")[0] == "background"
    assert (len(data.train), len(data.val), len(data.test)) == (10, 6, 6)
    batches = list(data.train.loader(batch_size=4, shuffle=True, seed=3))
    assert [len(b) for b in batches] == [4, 4, 2]
    batch = batches[0]
    assert isinstance(batch, DenseBatch) and batch.images.shape == (4, 1, 96, 96)
    assert batch.masks.shape == (4, 96, 96) and batch.masks.dtype == torch.int64
    # boxes are scaled with the image (128 -> 96) and stay inside it
    raw = digit_scene_sources(None, 0)
    assert torch.all(torch.cat(batch.boxes) >= 0) and torch.all(torch.cat(batch.boxes) <= 96)
    first = data.train[0]
    assert torch.allclose(
        first.boxes, torch.from_numpy(raw.train.read(int(data.train.source.positions[0])).boxes) * 0.75
    )
    again = list(data.train.loader(batch_size=4, shuffle=True, seed=3))[0]
    assert torch.equal(again.images, batch.images)  # a seeded order


def test_dense_names_are_refused_by_the_classification_loader():
    assert DENSE_DATASETS == tuple(_LOADERS) == ("digit-scenes", "fashion-scenes", "coco", "masks")
    with pytest.raises(DatasetError, match="nas.dense_datasets"):
        load_dataset("digit-scenes", resolution=32)
    with pytest.raises(DatasetError, match="known dense datasets"):
        load_dense_dataset("scenes", resolution=128)


# ----- coco --------------------------------------------------


def write_coco(root: Path, *, n: int = 10, size=(40, 30), mode: str = "RGB") -> dict:
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = {"images": [], "annotations": [], "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]}
    for i in range(n):
        shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(root / "images" / f"im{i}.png")
        data["images"].append({"id": 100 + i, "file_name": f"im{i}.png", "width": size[0], "height": size[1]})
        data["annotations"].append(
            {"id": i, "image_id": 100 + i, "category_id": 3 if i % 2 else 7, "bbox": [4.0, 2.0, 20.0, 10.0]}
        )
    (root / "annotations.json").write_text(json.dumps(data))
    return data


def test_coco_reads_boxes_lazily_and_scales_them(tmp_path):
    write_coco(tmp_path)
    data = load_dense_dataset("coco", resolution=20, data_dir=tmp_path, task="detection")
    assert data.detection_classes == ("cat", "dog") and data.channels == 3 and data.tasks == ("detection",)
    assert len(data.train) + len(data.val) + len(data.test) == 10
    sample = data.test[0]
    assert sample.image.shape == (3, 20, 20) and sample.mask is None
    # [x, y, w, h] = [4, 2, 20, 10] on 40x30 -> xyxy (4, 2, 24, 12) scaled by (20/40, 20/30)
    assert torch.allclose(sample.boxes, torch.tensor([[2.0, 4 / 3, 12.0, 8.0]]))
    image_id = int(data.test.source.positions[0]) + 100
    assert sample.labels.tolist() == [0 if image_id % 2 else 1]  # category 3 -> label 0, 7 -> 1
    batch = next(iter(data.train.loader(batch_size=3)))
    assert batch.masks is None and len(batch.boxes) == 3
    with pytest.raises(DatasetError, match="no segmentation labels"):
        load_dense_dataset("coco", resolution=20, data_dir=tmp_path, task="segmentation")


def test_coco_grayscale_images_give_one_channel(tmp_path):
    write_coco(tmp_path, mode="L")
    assert load_dense_dataset("coco", resolution=16, data_dir=tmp_path).channels == 1


def _break_coco(root: Path, change) -> None:
    data = json.loads((root / "annotations.json").read_text())
    change(data)
    (root / "annotations.json").write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["annotations"][2].update(bbox=[30.0, 2.0, 20.0, 10.0]),
            r"annotations\[2\]: box .* outside its image im2.png \(40x30\)",
        ),
        (lambda d: d["annotations"][0].update(bbox=[4.0, -3.0, 5.0, 5.0]), r"annotations\[0\]: box .* outside"),
        (
            lambda d: d["annotations"][1].update(category_id=5),
            r"annotations\[1\]: unknown category_id 5; categories have ids \[3, 7\]",
        ),
        (lambda d: d["annotations"][1].update(image_id=1), r"annotations\[1\]: image_id 1 is not in images"),
        (lambda d: d["images"][4].update(width=41), r"im4.png: image is 40x30 but .*annotations.json says 41x30"),
        (lambda d: d["images"][4].update(file_name="gone.png"), r"gone.png: no such image file"),
        (lambda d: d.pop("categories"), r"annotations.json: categories: expected a list"),
    ],
)
def test_coco_errors_name_the_file(tmp_path, change, message):
    write_coco(tmp_path)
    _break_coco(tmp_path, change)
    with pytest.raises(DatasetError, match=message) as info:
        load_dense_dataset("coco", resolution=16, data_dir=tmp_path)
    assert "\n" not in str(info.value)


def test_coco_missing_or_corrupt_json(tmp_path):
    with pytest.raises(DatasetError, match="annotations.json: no such file"):
        load_dense_dataset("coco", resolution=16, data_dir=tmp_path)
    (tmp_path / "annotations.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not a readable JSON file"):
        load_dense_dataset("coco", resolution=16, data_dir=tmp_path)
    with pytest.raises(DatasetError, match="pass the folder"):
        load_dense_dataset("coco", resolution=16)


# ----- masks --------------------------------------------------


def write_masks(root: Path, *, n: int = 10, size=(24, 16), classes=("background", "road", "car")) -> Path:
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / "images" / f"{i}.jpg")
        label = np.zeros((size[1], size[0]), dtype=np.uint8)
        label[:, size[0] // 2 :] = 1 + i % 2
        label[0, 0] = IGNORE_INDEX
        Image.fromarray(label, mode="L").save(root / "masks" / f"{i}.png")
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


def test_masks_reads_label_maps_and_resizes_them_nearest(tmp_path):
    write_masks(tmp_path)
    data = load_dense_dataset("masks", resolution=8, data_dir=tmp_path, task="segmentation")
    assert data.segmentation_classes == ("background", "road", "car") and data.channels == 3
    sample = data.train[0]
    assert sample.image.shape == (3, 8, 8) and sample.boxes is None
    assert sample.mask.shape == (8, 8) and set(sample.mask.unique().tolist()) <= {0, 1, 2, IGNORE_INDEX}
    assert torch.all(sample.mask[:, :4][sample.mask[:, :4] != IGNORE_INDEX] == 0) and torch.all(sample.mask[:, 4:] > 0)
    batch = next(iter(data.val.loader(batch_size=2)))
    assert batch.masks.shape[1:] == (8, 8) and batch.boxes is None


def test_masks_palette_pngs_hold_class_ids(tmp_path):
    write_masks(tmp_path, n=5)
    label = np.full((16, 24), 2, dtype=np.uint8)
    palette = Image.fromarray(label, mode="P")
    palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
    palette.save(tmp_path / "masks" / "3.png")
    data = load_dense_dataset("masks", resolution=16, data_dir=tmp_path, val_fraction=0.2, test_fraction=0.2)
    positions = {
        int(p): (split, i)
        for split in ("train", "val", "test")
        for i, p in enumerate(getattr(data, split).source.positions)
    }
    split, i = positions[3]
    assert set(getattr(data, split)[i].mask.unique().tolist()) == {2}


def test_masks_errors_name_the_file(tmp_path):
    root = write_masks(tmp_path / "a")
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8), mode="L").save(root / "masks" / "4.png")
    with pytest.raises(DatasetError, match=r"masks/4.png: mask is 10x10 but its image 4.jpg is 24x16"):
        load_dense_dataset("masks", resolution=8, data_dir=root)

    root = write_masks(tmp_path / "b")
    (root / "masks" / "2.png").unlink()
    with pytest.raises(DatasetError, match=r"images/2.jpg: image without a mask 2.png"):
        load_dense_dataset("masks", resolution=8, data_dir=root)

    root = write_masks(tmp_path / "c")
    (root / "classes.txt").unlink()
    with pytest.raises(DatasetError, match=r"classes.txt: no such file"):
        load_dense_dataset("masks", resolution=8, data_dir=root)

    root = write_masks(tmp_path / "d", n=10)
    bad = np.full((16, 24), 7, dtype=np.uint8)
    Image.fromarray(bad, mode="L").save(root / "masks" / "0.png")
    # mask pixels are checked when a mask is read: at load (the normalisation sample) or in a batch
    with pytest.raises(DatasetError, match=r"masks/0.png: unknown class id\(s\) \[7\]; classes.txt lists ids 0..2"):
        read_every_split(load_dense_dataset("masks", resolution=8, data_dir=root))

    root = write_masks(tmp_path / "e")
    Image.fromarray(np.zeros((16, 24, 3), dtype=np.uint8)).save(root / "masks" / "1.png")
    with pytest.raises(DatasetError, match=r"masks/1.png: a label map must be a one-channel PNG"):
        read_every_split(load_dense_dataset("masks", resolution=8, data_dir=root))


def read_every_split(data) -> None:
    for split in (data.train, data.val, data.test):
        list(split.loader(batch_size=4))


def test_arguments_are_checked():
    for kwargs, message in (
        ({"resolution": 4}, "resolution"),
        ({"resolution": 64, "task": "classification"}, "task"),
        ({"resolution": 64, "limit": 0}, "limit"),
        ({"resolution": 64, "eval_limit": -1}, "eval_limit"),
    ):
        with pytest.raises(DatasetError, match=message):
            load_dense_dataset("digit-scenes", **kwargs)
    with pytest.raises(DatasetError, match="takes no data_dir"):
        load_dense_dataset("digit-scenes", resolution=64, data_dir="/tmp")


def test_fashion_scenes_from_a_folder_of_idx_files(tmp_path):
    from tests.test_datasets import write_fashion_folder

    sources = fashion_scene_sources(write_fashion_folder(tmp_path, gz=True), 0)
    scene = sources.test.read(3)
    assert scene.image.shape == (1, SCENE_CANVAS, SCENE_CANVAS) and len(scene.labels) >= 1
    assert sources.detection_classes[0] == "T-shirt/top" and sources.segmentation_classes[0] == "background"
    with pytest.raises(DatasetError, match="no such file"):
        fashion_scene_sources(tmp_path / "missing", 0)
