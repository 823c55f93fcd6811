"""Overlay PNGs: a detector's boxes drawn with their labels, or a segmenter's mask blended over the image.

The overlay has the size of the image the user gave (boxes and masks come in
its pixels, ``deploy.dense_outputs``). Class colours are fixed per class
index; a class named ``background`` is left uncoloured, so the image shows
through wherever nothing was found.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploy.dense_outputs import DetectedBox
from deploy.errors import ArtifactError

__all__ = ["MASK_ALPHA", "PALETTE", "draw_boxes", "blend_mask", "write_overlay"]

MASK_ALPHA = 0.5  # weight of the class colour over the image
# 20 saturated colours that stay apart on grey images (none is a grey level, so every blended pixel changes).
PALETTE = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (255, 0, 0),
)  # fmt: skip
BACKGROUND = "background"


def colour(label: int) -> tuple[int, int, int]:
    return PALETTE[label % len(PALETTE)]


def draw_boxes(image, boxes: list[DetectedBox]):
    """A copy of the RGB ``image`` with each box outlined in its class colour and labelled ``name score``."""
    from PIL import ImageDraw

    out = image.copy()
    draw = ImageDraw.Draw(out)
    width = max(1, round(min(out.size) / 128))
    for box in boxes:
        corners = _on_image([box.x0, box.y0, box.x1, box.y1], out.size)
        draw.rectangle(corners, outline=colour(box.label), width=width)
        text = f"{box.class_name} {box.score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text)
        y = corners[1] - (bottom - top) - 2 if corners[1] >= bottom - top + 2 else corners[1] + width
        draw.rectangle([corners[0], y, corners[0] + right - left + 2, y + bottom - top + 2], fill=colour(box.label))
        draw.text((corners[0] + 1, y - top + 1), text, fill=(0, 0, 0))
    return out


def _on_image(corners: list[float], size: tuple[int, int]) -> list[int]:
    """Pixel corners inside the image, so that a box touching its edge keeps its outline visible."""
    limits = (size[0] - 1, size[1] - 1) * 2
    x0, y0, x1, y1 = (min(max(0, round(v)), limit) for v, limit in zip(corners, limits))
    return [x0, y0, max(x0, x1), max(y0, y1)]


def blend_mask(image, label_map: np.ndarray, class_names: tuple[str, ...]):
    """A copy of the RGB ``image`` with each pixel's class colour blended in (``MASK_ALPHA``), background left as is."""
    from PIL import Image

    pixels = np.asarray(image, dtype=np.float32)
    colours = np.array([colour(i) for i in range(len(class_names))], dtype=np.float32)
    coloured = np.array([name.lower() != BACKGROUND for name in class_names])[label_map]
    blended = np.where(coloured[..., None], (1 - MASK_ALPHA) * pixels + MASK_ALPHA * colours[label_map], pixels)
    return Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8))


def write_overlay(
    image_path: str | Path,
    out_path: str | Path,
    *,
    class_names: tuple[str, ...],
    boxes: list[DetectedBox] | None = None,
    label_map: np.ndarray | None = None,
) -> Path:
    """Draw ``boxes`` or blend ``label_map`` over the image at ``image_path`` and write a PNG to ``out_path``."""
    from PIL import Image

    out_path = Path(out_path)
    if out_path.suffix.lower() != ".png":
        raise ArtifactError(f"{out_path}: the overlay is a PNG; name it .png")
    with Image.open(image_path) as source:
        image = source.convert("RGB")
    if label_map is not None:
        if label_map.shape != (image.height, image.width):
            raise ArtifactError(f"{image_path}: mask {label_map.shape} does not match the image {image.size}")
        image = blend_mask(image, label_map, class_names)
    if boxes is not None:
        image = draw_boxes(image, boxes)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        image.save(out_path, format="PNG")
    except OSError as exc:
        raise ArtifactError(f"{out_path}: cannot write the overlay ({exc.strerror or exc})") from None
    return out_path
