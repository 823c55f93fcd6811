"""The detection head's box coding: targets for training and decoding of its raw outputs.

The detection head is anchor-free (CenterNet/TTFNet-style). On its output
grid of stride ``s`` (h x w cells) it returns two tensors of raw values; the
network itself ends with convolutions, and everything below runs outside it:

* ``heatmap``: N x K x h x w logits; ``sigmoid`` gives, per class, how close a
  cell is to the centre of an object of that class;
* ``box``: N x 4 x h x w ``(dx, dy, lw, lh)``; at cell ``(i, j)`` with centre
  ``(cx, cy) = ((j + 0.5) s, (i + 0.5) s)`` the box is centred at
  ``(cx + s dx, cy + s dy)`` and is ``s exp(lw)`` wide, ``s exp(lh)`` high
  (valid at any cell, so a box thinner than a cell still has a target).

Training targets (:func:`encode_targets`): an elliptical Gaussian per object
on its class's heatmap (sigma = ``GAUSSIAN_ALPHA`` x box size / 6, TTFNet),
peak 1 at the object's centre cell; box targets at every cell whose centre
lies inside the box and at its centre cell, weighted by that Gaussian, the
smaller box winning where two overlap.

Decoding (:func:`decode`): cells that are a local 3x3 maximum of the heatmap
with a score of at least ``score_threshold``, the ``max_detections`` best,
boxes clipped to the image, then non-maximum suppression per class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from search_spaces.decode_settings import DEFAULT_DECODE, DecodeSettings

__all__ = [
    "DEFAULT_DECODE",
    "DecodeSettings",
    "DetectionTargets",
    "Detections",
    "box_iou",
    "decode",
    "encode_targets",
    "nms",
]

# TTFNet's Gaussian size factor: 0.54 keeps the peak sharp enough to tell neighbouring objects apart.
GAUSSIAN_ALPHA = 0.54
# exp() of a raw size is clamped here (e^8 = 2981 cells) so an untrained head cannot overflow.
MAX_LOG_SIZE = 8.0


@dataclass(frozen=True, eq=False)
class Detections:
    boxes: torch.Tensor  # K x 4 (x1, y1, x2, y2) in input pixels
    scores: torch.Tensor  # K, in (0, 1), best first
    labels: torch.Tensor  # K int64


@dataclass(frozen=True, eq=False)
class DetectionTargets:
    heatmap: torch.Tensor  # N x K x h x w in [0, 1], exactly 1 at object centres
    box: torch.Tensor  # N x 4 x h x w (dx, dy, lw, lh)
    box_weight: torch.Tensor  # N x h x w, 0 where a cell regresses no box


def _cell_centres(h: int, w: int, stride: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    cy = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * stride
    cx = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * stride
    return cy[:, None].expand(h, w), cx[None, :].expand(h, w)


def encode_targets(
    boxes: tuple[torch.Tensor, ...],
    labels: tuple[torch.Tensor, ...],
    *,
    num_classes: int,
    grid: tuple[int, int],
    stride: int,
) -> DetectionTargets:
    """Targets for a batch: ``boxes[i]`` K_i x 4 in input pixels, ``labels[i]`` K_i, on an h x w grid."""
    h, w = grid
    n = len(boxes)
    device = boxes[0].device if n else torch.device("cpu")
    heatmap = torch.zeros(n, num_classes, h, w, device=device)
    box = torch.zeros(n, 4, h, w, device=device)
    weight = torch.zeros(n, h, w, device=device)
    cy, cx = _cell_centres(h, w, stride, device)
    for i, (image_boxes, image_labels) in enumerate(zip(boxes, labels)):
        areas = (image_boxes[:, 2] - image_boxes[:, 0]) * (image_boxes[:, 3] - image_boxes[:, 1])
        for k in torch.argsort(areas, descending=True).tolist():  # smaller boxes written last win
            gauss = _gaussian(image_boxes[k], cy, cx, stride)
            label = int(image_labels[k])
            heatmap[i, label] = torch.maximum(heatmap[i, label], gauss)
            x1, y1, x2, y2 = image_boxes[k]
            inside = ((cx > x1) & (cx < x2) & (cy > y1) & (cy < y2)) | (gauss == 1.0)
            code = torch.stack(
                [
                    ((x1 + x2) / 2 - cx) / stride,
                    ((y1 + y2) / 2 - cy) / stride,
                    torch.log((x2 - x1).clamp(min=1e-3) / stride).expand(h, w),
                    torch.log((y2 - y1).clamp(min=1e-3) / stride).expand(h, w),
                ]
            )
            box[i][:, inside] = code[:, inside]
            weight[i][inside] = gauss[inside]
    return DetectionTargets(heatmap=heatmap, box=box, box_weight=weight)


def _gaussian(box: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, stride: int) -> torch.Tensor:
    """h x w Gaussian of one box, exactly 1 at the cell holding its centre."""
    x1, y1, x2, y2 = (float(v) for v in box)
    h, w = cy.shape
    # The centre cell, so that the peak is a cell centre (the decoder reads boxes at peaks).
    row = min(h - 1, max(0, int((y1 + y2) / 2 // stride)))
    col = min(w - 1, max(0, int((x1 + x2) / 2 // stride)))
    sigma_x = max(GAUSSIAN_ALPHA * (x2 - x1) / 6.0, stride / 4.0)
    sigma_y = max(GAUSSIAN_ALPHA * (y2 - y1) / 6.0, stride / 4.0)
    dx, dy = cx - cx[0, col], cy - cy[row, 0]
    return torch.exp(-(dx**2) / (2 * sigma_x**2) - dy**2 / (2 * sigma_y**2))


def decode_boxes(box: torch.Tensor, *, stride: int) -> torch.Tensor:
    """N x 4 x h x w raw box outputs -> N x h x w x 4 boxes (x1, y1, x2, y2) in input pixels."""
    _, _, h, w = box.shape
    cy, cx = _cell_centres(h, w, stride, box.device)
    centre_x, centre_y = cx + stride * box[:, 0], cy + stride * box[:, 1]
    half = torch.exp(box[:, 2:].clamp(max=MAX_LOG_SIZE)) * (stride / 2)
    return torch.stack([centre_x - half[:, 0], centre_y - half[:, 1], centre_x + half[:, 0], centre_y + half[:, 1]], -1)


def decode(
    heatmap: torch.Tensor,
    box: torch.Tensor,
    *,
    stride: int,
    image_size: tuple[int, int],
    settings: DecodeSettings = DEFAULT_DECODE,
) -> list[Detections]:
    """Raw head outputs of a batch -> detections per image (boxes clipped to ``image_size`` = (H, W))."""
    n, k, h, w = heatmap.shape
    scores = torch.sigmoid(heatmap.float())
    peaks = scores == F.max_pool2d(scores, 3, stride=1, padding=1)
    scores = torch.where(peaks, scores, torch.zeros_like(scores)).reshape(n, -1)
    boxes = decode_boxes(box.float(), stride=stride).reshape(n, h * w, 4)
    height, width = image_size
    limit = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    found = []
    for i in range(n):
        top_scores, top = torch.topk(scores[i], min(settings.max_detections, k * h * w))
        keep = top_scores >= settings.score_threshold
        top_scores, top = top_scores[keep], top[keep]
        labels, cells = top // (h * w), top % (h * w)
        image_boxes = torch.minimum(boxes[i, cells].clamp(min=0), limit)
        kept = nms(image_boxes, top_scores, labels, iou_threshold=settings.nms_iou)
        found.append(Detections(boxes=image_boxes[kept], scores=top_scores[kept], labels=labels[kept]))
    return found


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every pair: ``a`` A x 4, ``b`` B x 4 (x1, y1, x2, y2) -> A x B."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, *, iou_threshold: float) -> torch.Tensor:
    """Indices kept by greedy per-class non-maximum suppression, best score first."""
    order = torch.argsort(scores, descending=True)
    if order.numel() == 0:
        return order
    iou = box_iou(boxes[order], boxes[order])
    same_class = labels[order][:, None] == labels[order][None, :]
    suppressed = torch.zeros(order.numel(), dtype=torch.bool, device=boxes.device)
    later = torch.arange(order.numel(), device=boxes.device)
    for i in range(order.numel()):
        if not suppressed[i]:
            suppressed |= (iou[i] > iou_threshold) & same_class[i] & (later > i)
    return order[~suppressed]
