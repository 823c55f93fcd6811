"""Raw outputs of a detection or segmentation artifact -> boxes or a label map in the input's own pixels.

The network sees every image resized to its square input (``deploy.runtime``);
what it returns is read back at the size of the file the user gave:

* detection: the heatmap and box code are decoded as the manifest says
  (``search_spaces.box_coding.decode``: 3x3 peaks over the score threshold,
  the best ``max_detections``, per-class NMS), then boxes are scaled from the
  R x R input to the image's W x H;
* segmentation: the per-pixel argmax of the logits, resized (nearest) to W x H.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deploy.artifact import Manifest, Preprocessing, decode_settings
from deploy.errors import ArtifactError
from search_spaces.box_coding import decode

__all__ = ["DetectedBox", "class_histogram", "detect", "input_sizes", "segment"]


@dataclass(frozen=True)
class DetectedBox:
    """One detection: class, score and corners (x0, y0) top left, (x1, y1) bottom right, in input pixels."""

    label: int
    class_name: str
    score: float
    x0: float
    y0: float
    x1: float
    y1: float


def input_sizes(path: str | Path, preprocessing: Preprocessing, *, count: int, preprocessed: bool = False):
    """(width, height) of each of the ``count`` images in the input file, before it was resized for the model."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        if preprocessed:
            return [(preprocessing.resolution, preprocessing.resolution)] * count
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
        return [(int(shape[-1]), int(shape[-2]))] * count
    from PIL import Image

    with Image.open(path) as image:
        return [image.size] * count


def detect(
    outputs: tuple[np.ndarray, ...], manifest: Manifest, *, image_sizes: list[tuple[int, int]]
) -> list[list[DetectedBox]]:
    """Boxes per image, best score first; ``image_sizes`` are (width, height) of the images as given."""
    heatmap, box = _named(outputs, manifest, "detection")
    resolution = manifest.preprocessing.resolution
    found = decode(
        torch.from_numpy(np.asarray(heatmap)),
        torch.from_numpy(np.asarray(box)),
        stride=int(manifest.decoding["stride"]),
        image_size=(resolution, resolution),
        settings=decode_settings(manifest),
    )
    results = []
    for detections, (width, height) in zip(found, image_sizes, strict=True):
        scale = np.array([width, height, width, height], dtype=np.float64) / resolution
        results.append(
            [
                DetectedBox(int(label), manifest.class_names[int(label)], float(score), *(corners * scale).tolist())
                for corners, score, label in zip(
                    detections.boxes.double().numpy(), detections.scores.tolist(), detections.labels.tolist()
                )
            ]
        )
    return results


def segment(
    outputs: tuple[np.ndarray, ...], manifest: Manifest, *, image_sizes: list[tuple[int, int]]
) -> list[np.ndarray]:
    """Per image, an H x W int64 label map (indices into ``class_names``) at the size the image was given."""
    from PIL import Image

    (logits,) = _named(outputs, manifest, "segmentation")
    labels = np.asarray(logits).argmax(axis=1).astype(np.int32)  # N x R x R
    maps = []
    for label_map, (width, height) in zip(labels, image_sizes, strict=True):
        if label_map.shape != (height, width):
            resized = Image.fromarray(label_map).resize((width, height), Image.Resampling.NEAREST)
            label_map = np.asarray(resized)
        maps.append(label_map.astype(np.int64))
    return maps


def class_histogram(label_map: np.ndarray, class_names: tuple[str, ...]) -> list[tuple[str, int]]:
    """(class name, pixels) for every class present in ``label_map``, most pixels first."""
    counts = np.bincount(label_map.ravel(), minlength=len(class_names))
    order = sorted((int(i) for i in np.flatnonzero(counts)), key=lambda i: (-counts[i], i))
    return [(class_names[i], int(counts[i])) for i in order]


def _named(outputs: tuple[np.ndarray, ...], manifest: Manifest, task: str) -> tuple[np.ndarray, ...]:
    if manifest.task != task:
        raise ArtifactError(f"the artifact is a {manifest.task} model, not a {task} model")
    if len(outputs) != len(manifest.output_names):
        raise ArtifactError(
            f"the model returned {len(outputs)} output(s), the manifest names {list(manifest.output_names)}"
        )
    classes = np.asarray(outputs[0]).shape[1]
    if classes != len(manifest.class_names):
        raise ArtifactError(f"the model scores {classes} classes, the manifest names {len(manifest.class_names)}")
    return tuple(outputs)
