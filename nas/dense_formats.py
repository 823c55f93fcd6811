"""Users' dense data: ``coco`` (detection) and ``masks`` (segmentation, VOC-style).

``coco``: a folder with ``annotations.json`` in COCO format and ``images/``::

    root/annotations.json   {"images": [{"id", "file_name", "width", "height"}],
                             "annotations": [{"image_id", "category_id", "bbox": [x, y, w, h]}],
                             "categories": [{"id", "name"}]}
    root/images/<file_name>

Category ids need not be contiguous; labels are their positions in id order.
Annotations marked ``iscrowd: 1`` mark regions of many objects and are not
used as boxes.

``masks``: a folder with ``images/``, ``masks/`` (one PNG label map per image,
same stem, same size; mode L or P, each pixel a class id, 255 ignored) and
``classes.txt`` (one class name a line; line 1 is id 0, usually background).

Everything a header or the JSON tells is checked when the dataset is loaded
(missing files, sizes, boxes outside their image, unknown category ids);
mask pixels are checked when the mask is read. Every error is a one-line
:class:`~nas.datasets.DatasetError` naming the file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nas.datasets import IMAGE_SUFFIXES, DatasetError
from nas.dense_sources import IGNORE_INDEX, DenseSources, RawSample, Subset, split_positions
from search_spaces.errors import one_line

__all__ = ["CocoSource", "MaskSource", "read_coco", "read_masks"]

logger = logging.getLogger(__name__)

# A box may overhang its image by this many pixels: COCO tools round box edges to 0.01 px.
BOX_TOLERANCE = 0.5
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


# ----- coco --------------------------------------------------


@dataclass(frozen=True, eq=False)
class CocoSource:
    paths: tuple[Path, ...]
    boxes: tuple[np.ndarray, ...] = field(repr=False)  # per image, K x 4 xyxy
    labels: tuple[np.ndarray, ...] = field(repr=False)
    mode: str  # PIL mode every image is converted to

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, index: int) -> RawSample:
        path = self.paths[index]
        return RawSample(
            image=_read_pixels(path, self.mode),
            boxes=self.boxes[index],
            labels=self.labels[index],
            mask=None,
            source=str(path),
        )


def read_coco(data_dir: Path | None, seed: int, *, val_fraction: float, test_fraction: float) -> DenseSources:
    if data_dir is None:
        raise DatasetError("coco: pass the folder holding annotations.json and images/ as data_dir (--data-dir)")
    json_path, images_dir = data_dir / "annotations.json", data_dir / "images"
    data = _read_json(json_path)
    categories = _categories(data, json_path)
    images = _coco_images(data, json_path, images_dir)
    boxes: dict[int, list[list[float]]] = {image_id: [] for image_id in images}
    labels: dict[int, list[int]] = {image_id: [] for image_id in images}
    for i, ann in enumerate(_list(data, "annotations", json_path)):
        image_id, box, category = _annotation(ann, i, json_path, images, categories)
        if box is not None:
            boxes[image_id].append(box)
            labels[image_id].append(category)
    ids = sorted(images)
    source = CocoSource(
        paths=tuple(images[i][0] for i in ids),
        boxes=tuple(np.asarray(boxes[i], dtype=np.float32).reshape(-1, 4) for i in ids),
        labels=tuple(np.asarray(labels[i], dtype=np.int64) for i in ids),
        mode=_common_mode(images[i][0] for i in ids),
    )
    names = tuple(name for _, name in sorted(categories.values()))
    return _split(source, names, None, seed, val_fraction, test_fraction, str(json_path))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(
            f"{path}: no such file; a coco dataset is a folder with annotations.json and images/"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable JSON file ({one_line(exc)})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object with images, annotations and categories")
    return data


def _list(data: dict[str, Any], key: str, path: Path) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise DatasetError(f"{path}: {key}: expected a list, got {type(value).__name__}")
    return value


def _field(item: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = item.get(key) if isinstance(item, dict) else None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise DatasetError(f"{where}: {key}: expected {getattr(kind, '__name__', 'a number')}, got {value!r}")
    return value


def _categories(data: dict[str, Any], path: Path) -> dict[int, tuple[int, str]]:
    """category id -> (label, name), labels in id order."""
    entries = _list(data, "categories", path)
    by_id = {}
    for i, cat in enumerate(entries):
        where = f"{path}: categories[{i}]"
        cat_id, name = _field(cat, "id", int, where), _field(cat, "name", str, where)
        if cat_id in by_id:
            raise DatasetError(f"{where}: category id {cat_id} is repeated")
        by_id[cat_id] = name
    if not by_id:
        raise DatasetError(f"{path}: categories: empty; a detector needs at least one class")
    return {cat_id: (label, by_id[cat_id]) for label, cat_id in enumerate(sorted(by_id))}


def _coco_images(data: dict[str, Any], path: Path, images_dir: Path) -> dict[int, tuple[Path, int, int]]:
    """image id -> (file, width, height); each file exists and has the size the JSON says."""
    images = {}
    for i, image in enumerate(_list(data, "images", path)):
        where = f"{path}: images[{i}]"
        image_id = _field(image, "id", int, where)
        file = images_dir / _field(image, "file_name", str, where)
        width, height = _field(image, "width", int, where), _field(image, "height", int, where)
        if image_id in images:
            raise DatasetError(f"{where}: image id {image_id} is repeated")
        actual = _image_size(file)
        if actual != (width, height):
            raise DatasetError(f"{file}: image is {actual[0]}x{actual[1]} but {path} says {width}x{height}")
        images[image_id] = (file, width, height)
    if not images:
        raise DatasetError(f"{path}: images: empty")
    return images


def _annotation(
    ann: Any, i: int, path: Path, images: dict[int, tuple[Path, int, int]], categories: dict[int, tuple[int, str]]
) -> tuple[int, list[float] | None, int]:
    """(image id, xyxy box or None for a crowd region, label) of one annotation, checked."""
    where = f"{path}: annotations[{i}]"
    image_id = _field(ann, "image_id", int, where)
    if image_id not in images:
        raise DatasetError(f"{where}: image_id {image_id} is not in images")
    category = _field(ann, "category_id", int, where)
    if category not in categories:
        raise DatasetError(f"{where}: unknown category_id {category}; categories have ids {sorted(categories)}")
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        raise DatasetError(f"{where}: bbox: expected [x, y, width, height], got {bbox!r}")
    file, width, height = images[image_id]
    x, y, w, h = (float(v) for v in bbox)
    tol = BOX_TOLERANCE
    inside = min(x, y) >= -tol and x + w <= width + tol and y + h <= height + tol
    if w <= 0 or h <= 0 or not inside:
        raise DatasetError(f"{where}: box {bbox} lies outside its image {file.name} ({width}x{height}) or is empty")
    if ann.get("iscrowd", 0):
        return image_id, None, categories[category][0]
    box = [max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h)]
    return image_id, box, categories[category][0]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


# ----- masks --------------------------------------------------


@dataclass(frozen=True, eq=False)
class MaskSource:
    images: tuple[Path, ...]
    masks: tuple[Path, ...]
    num_classes: int
    mode: str

    def __len__(self) -> int:
        return len(self.images)

    def read(self, index: int) -> RawSample:
        path = self.masks[index]
        mask = _read_label_map(path)
        bad = np.unique(mask[(mask >= self.num_classes) & (mask != IGNORE_INDEX)])
        if bad.size:
            raise DatasetError(
                f"{path}: unknown class id(s) {bad[:5].tolist()}; classes.txt lists ids 0..{self.num_classes - 1} "
                f"({IGNORE_INDEX} = ignore)"
            )
        image = _read_pixels(self.images[index], self.mode)
        return RawSample(image=image, boxes=None, labels=None, mask=mask, source=str(path))


def read_masks(data_dir: Path | None, seed: int, *, val_fraction: float, test_fraction: float) -> DenseSources:
    if data_dir is None:
        raise DatasetError("masks: pass the folder holding images/, masks/ and classes.txt as data_dir (--data-dir)")
    names = _class_names(data_dir / "classes.txt")
    images = _files(data_dir / "images", IMAGE_SUFFIXES)
    masks = _files(data_dir / "masks", (".png",))
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise DatasetError(f"{masks[orphans[0]]}: mask without an image of the same name in {data_dir / 'images'}")
    for stem in sorted(images):
        if stem not in masks:
            raise DatasetError(f"{images[stem]}: image without a mask {stem}.png in {data_dir / 'masks'}")
        mask_size, image_size = _image_size(masks[stem]), _image_size(images[stem])
        if mask_size != image_size:
            raise DatasetError(
                f"{masks[stem]}: mask is {mask_size[0]}x{mask_size[1]} but its image {images[stem].name} is "
                f"{image_size[0]}x{image_size[1]}"
            )
    stems = sorted(images)
    source = MaskSource(
        images=tuple(images[s] for s in stems),
        masks=tuple(masks[s] for s in stems),
        num_classes=len(names),
        mode=_common_mode(images[s] for s in stems),
    )
    return _split(source, None, names, seed, val_fraction, test_fraction, str(data_dir))


def _class_names(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise DatasetError(
            f"{path}: no such file; list one class name a line (line 1 is id 0, the background)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable ({one_line(exc)})") from None
    names = tuple(line.strip() for line in lines if line.strip())
    if len(names) < 2:
        raise DatasetError(f"{path}: lists {len(names)} class(es); segmentation needs at least 2 (with the background)")
    if len(names) > IGNORE_INDEX:
        raise DatasetError(f"{path}: lists {len(names)} classes; at most {IGNORE_INDEX} fit a PNG label map")
    return names


def _files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder")
    files = {}
    for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        if path.suffix.lower() not in suffixes:
            raise DatasetError(f"{path}: unsupported file type; expected {', '.join(suffixes)}")
        if path.stem in files:
            raise DatasetError(f"{path}: two files named {path.stem} in {folder}")
        files[path.stem] = path
    if not files:
        raise DatasetError(f"{folder}: empty folder")
    return files


def _read_label_map(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P"):
                raise DatasetError(
                    f"{path}: a label map must be a one-channel PNG (mode L or P), got mode {image.mode}"
                )
            return np.asarray(image, dtype=np.uint8).astype(np.int64)
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(f"{path}: unreadable mask ({one_line(exc)})") from None


# ----- shared --------------------------------------------------


def _split(
    source: CocoSource | MaskSource,
    detection: tuple[str, ...] | None,
    segmentation: tuple[str, ...] | None,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    name: str,
) -> DenseSources:
    train, val, test = split_positions(
        len(source), seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, name=name
    )
    return DenseSources(
        train=Subset(source, train),
        val=Subset(source, val),
        test=Subset(source, test),
        channels=1 if source.mode == "L" else 3,
        detection_classes=detection,
        segmentation_classes=segmentation,
    )


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such image file") from None
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(f"{path}: unreadable image ({one_line(exc)})") from None


def _common_mode(paths) -> str:
    """``L`` when every image is grayscale, else ``RGB`` (reads headers only)."""
    from PIL import Image

    for path in paths:
        with Image.open(path) as image:
            if image.mode not in _GRAY_MODES:
                return "RGB"
    return "L"


def _read_pixels(path: Path, mode: str) -> np.ndarray:
    """C x H x W uint8."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert(mode), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(f"{path}: unreadable image ({one_line(exc)})") from None
    return pixels[None] if pixels.ndim == 2 else np.transpose(pixels, (2, 0, 1))
