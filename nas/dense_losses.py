"""Losses of the dense heads.

Detection (targets from ``search_spaces.box_coding.encode_targets``):
CenterNet's penalty-reduced focal loss on the class heatmaps plus a
Gaussian-weighted L1 loss on the box code, ``BOX_LOSS_WEIGHT`` times.
Segmentation: class-balanced per-pixel cross-entropy, pixels labelled
``IGNORE_INDEX`` left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nas.dense_sources import IGNORE_INDEX
from search_spaces.box_coding import DetectionTargets

__all__ = ["BOX_LOSS_WEIGHT", "box_loss", "detection_loss", "heatmap_focal_loss", "segmentation_loss"]

# The heatmap loss is normalised per object and the box loss per weighted cell: 1 keeps both O(1) at start.
BOX_LOSS_WEIGHT = 1.0


def heatmap_focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's focal loss (alpha 2, beta 4) over N x K x h x w, divided by the number of objects."""
    log_p = F.logsigmoid(logits.float())
    log_not_p = F.logsigmoid(-logits.float())
    prob = log_p.exp()
    positive = target.eq(1.0).float()
    pos_loss = log_p * (1 - prob) ** 2 * positive
    neg_loss = log_not_p * prob**2 * (1 - target) ** 4 * (1 - positive)
    return -(pos_loss.sum() + neg_loss.sum()) / positive.sum().clamp(min=1.0)


def box_loss(raw: torch.Tensor, targets: DetectionTargets) -> torch.Tensor:
    """Gaussian-weighted L1 loss of the N x 4 x h x w box code."""
    weight = targets.box_weight[:, None]
    error = F.l1_loss(raw.float(), targets.box, reduction="none") * weight
    return error.sum() / (4 * weight.sum()).clamp(min=1e-6)


def detection_loss(heatmap: torch.Tensor, box: torch.Tensor, targets: DetectionTargets) -> torch.Tensor:
    return heatmap_focal_loss(heatmap, targets.heatmap) + BOX_LOSS_WEIGHT * box_loss(box, targets)


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Class-balanced cross-entropy of N x K x H x W logits against N x H x W class ids.

    The mean over the classes present in the batch of each class's mean pixel
    loss, so every class counts as much as in mIoU. Plain pixel-mean
    cross-entropy lets the background (90 % of a scene) dominate: on
    digit-scenes a small network reached val mIoU 0.12 after 4 epochs with it,
    0.21 with this (512 scenes, batch 16, lr 0.05).
    """
    num_classes = logits.shape[1]
    loss = F.cross_entropy(logits.float(), masks, ignore_index=IGNORE_INDEX, reduction="none").flatten()
    ids = torch.where(masks == IGNORE_INDEX, torch.full_like(masks, num_classes), masks).flatten()  # K: ignored
    sums = torch.zeros(num_classes + 1, device=loss.device, dtype=loss.dtype).index_add_(0, ids, loss)
    counts = torch.bincount(ids, minlength=num_classes + 1)[:num_classes]
    present = counts > 0
    if not present.any():
        return loss.sum() * 0.0  # every pixel ignored: no gradient, but a finite loss
    return (sums[:num_classes][present] / counts[present]).mean()
