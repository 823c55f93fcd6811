"""Synthetic dense scenes: 1–4 small images pasted on a larger canvas, with boxes and masks.

``digit-scenes`` pastes scikit-learn's 8x8 digits and ``fashion-scenes``
Fashion-MNIST's 28x28 items onto a 128x128 canvas (no download). A scene is a
pure function of ``(seed, split, index)``, so a split is generated lazily,
item by item, and the same seed always gives the same pixels.

How the pixels, boxes and masks agree (the test checks each):

* every item is scaled to its drawn size (bilinear), normalised so its
  brightest pixel is 1, and its pixels below ``ITEM_THRESHOLD`` are dropped;
  what remains is the item's mask, pasted on the canvas;
* the background is noise strictly below the threshold, so on the canvas
  ``pixel >= ITEM_THRESHOLD`` holds exactly on the masked pixels;
* items are placed so that their patches never overlap (no occlusion), and a
  box is the tight box of its item's mask, in pixel-edge coordinates
  ``(x1, y1, x2, y2)``: columns ``x1 .. x2 - 1``, rows ``y1 .. y2 - 1``;
* the semantic mask holds 0 for the background and ``label + 1`` on an item.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

__all__ = [
    "ITEM_THRESHOLD",
    "SCENE_CANVAS",
    "ItemPool",
    "Scene",
    "SceneConfig",
    "make_scene",
]

# Big enough for stride-32 backbones to keep a 4x4 map, small enough to train on 2 CPU cores.
SCENE_CANVAS = 128
# In [0, 1]: an item's pixel belongs to its mask at or above this; the background stays below it.
ITEM_THRESHOLD = 0.25
# Background noise amplitude in [0, 1]; below the threshold, so masks stay exact.
NOISE_LEVEL = 0.1
# Placement attempts per item before it is left out (a 4th item rarely misses at these sizes).
PLACEMENT_TRIES = 50


@dataclass(frozen=True)
class SceneConfig:
    canvas: int = SCENE_CANVAS
    max_items: int = 4
    # Item side as a fraction of the canvas: 19-57 px at 128, so 8x8 digits are magnified 2-7x.
    min_scale: float = 0.15
    max_scale: float = 0.45


@dataclass(frozen=True, eq=False)
class ItemPool:
    """Small images to paste: ``images`` N x h x w (any scale: each is rescaled to peak 1), ``labels`` N."""

    images: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True, eq=False)
class Scene:
    image: np.ndarray  # 1 x H x W uint8
    boxes: np.ndarray  # K x 4 float32, (x1, y1, x2, y2) pixel edges
    labels: np.ndarray  # K int64, class of each item
    mask: np.ndarray  # H x W uint8: 0 background, label + 1 on an item


def make_scene(pool: ItemPool, rng: np.random.Generator, config: SceneConfig = SceneConfig()) -> Scene:
    """One scene of 1 to ``config.max_items`` items drawn from ``pool`` with ``rng``."""
    size = config.canvas
    canvas = rng.random((size, size), dtype=np.float32) * NOISE_LEVEL
    mask = np.zeros((size, size), dtype=np.uint8)
    taken = np.zeros((size, size), dtype=bool)
    boxes, labels = [], []
    for _ in range(int(rng.integers(1, config.max_items + 1))):
        item = int(rng.integers(len(pool)))
        side = int(rng.integers(round(config.min_scale * size), round(config.max_scale * size) + 1))
        spot = _free_spot(taken, side, rng)
        if spot is None:
            continue
        y, x = spot
        taken[y : y + side, x : x + side] = True
        patch = _scaled(pool.images[item], side)
        on = patch >= ITEM_THRESHOLD
        canvas[y : y + side, x : x + side][on] = patch[on]
        mask[y : y + side, x : x + side][on] = pool.labels[item] + 1
        rows, cols = np.nonzero(on)
        boxes.append((x + cols.min(), y + rows.min(), x + cols.max() + 1, y + rows.max() + 1))
        labels.append(int(pool.labels[item]))
    image = np.clip(np.round(canvas * 255.0), 0, 255).astype(np.uint8)[None]
    return Scene(
        image=image,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        labels=np.asarray(labels, dtype=np.int64),
        mask=mask,
    )


def _free_spot(taken: np.ndarray, side: int, rng: np.random.Generator) -> tuple[int, int] | None:
    limit = taken.shape[0] - side + 1
    for _ in range(PLACEMENT_TRIES):
        y, x = (int(v) for v in rng.integers(0, limit, size=2))
        if not taken[y : y + side, x : x + side].any():
            return y, x
    return None


def _scaled(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` resized to side x side, brightest pixel 1, values in [0, 1]."""
    resized = np.asarray(Image.fromarray(image.astype(np.float32), mode="F").resize((side, side), Image.BILINEAR))
    peak = float(resized.max())
    # An all-dark item cannot reach the threshold; keep it as a faint blob rather than dropping the scene.
    return np.clip(resized / peak, 0.0, 1.0) if peak > 0 else np.ones_like(resized)
