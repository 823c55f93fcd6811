"""Scores of dense predictions: detection mAP (pycocotools) and segmentation mIoU / pixel accuracy.

Detection is scored by pycocotools' ``COCOeval``, the reference
implementation: ``map`` is COCO's mAP@[.5:.95] (the mean over IoU thresholds
0.50, 0.55, ..., 0.95) and ``map50`` its mAP@0.5, both over all areas with up
to 100 detections per image. Boxes are ``(x1, y1, x2, y2)`` in pixels.

Segmentation accumulates a confusion matrix over every scored pixel (pixels
labelled ``ignore_index`` are not scored): the IoU of a class is
``TP / (TP + FP + FN)``; ``miou`` is the mean over the classes that occur in
the labels or the predictions (a class with an empty union has no IoU), and
``pixel_accuracy`` is the fraction of scored pixels predicted right.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from nas.datasets import DatasetError
from search_spaces.box_coding import Detections

__all__ = ["ConfusionMatrix", "DetectionScores", "SegmentationScores", "detection_map"]


@dataclass(frozen=True)
class DetectionScores:
    map: float  # COCO mAP@[.5:.95], in [0, 1]
    map50: float  # mAP@0.5


def detection_map(
    predictions: Sequence[Detections],
    targets: Sequence[tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]],
    *,
    num_classes: int,
) -> DetectionScores:
    """COCO mAP of ``predictions`` against ``targets`` ((boxes, labels) per image, same order)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} images")
    truth = _ground_truth(targets, num_classes)
    if not truth["annotations"]:
        raise DatasetError("cannot score detection: the evaluated images hold no ground-truth box")
    results = _results(predictions)
    if not results:
        return DetectionScores(map=0.0, map50=0.0)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and table
        gt = COCO()
        gt.dataset = truth
        gt.createIndex()
        evaluation = COCOeval(gt, gt.loadRes(results), iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    # stats[0] = AP@[.5:.95], stats[1] = AP@.5; -1 means "no ground truth", ruled out above.
    return DetectionScores(map=float(max(0.0, evaluation.stats[0])), map50=float(max(0.0, evaluation.stats[1])))


def _xywh(boxes: np.ndarray | torch.Tensor) -> np.ndarray:
    b = np.asarray(boxes.detach().cpu() if isinstance(boxes, torch.Tensor) else boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def _numpy(values: np.ndarray | torch.Tensor) -> np.ndarray:
    return np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values).reshape(-1)


def _ground_truth(targets, num_classes: int) -> dict:
    images, annotations = [], []
    for image_id, (boxes, labels) in enumerate(targets, start=1):
        images.append({"id": image_id})
        for box, label in zip(_xywh(boxes), _numpy(labels)):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label) + 1,
                    "bbox": box.tolist(),
                    "area": float(box[2] * box[3]),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": c + 1} for c in range(num_classes)]
    return {"images": images, "annotations": annotations, "categories": categories}


def _results(predictions: Sequence[Detections]) -> list[dict]:
    results = []
    for image_id, found in enumerate(predictions, start=1):
        for box, score, label in zip(_xywh(found.boxes), _numpy(found.scores), _numpy(found.labels)):
            results.append(
                {"image_id": image_id, "category_id": int(label) + 1, "bbox": box.tolist(), "score": float(score)}
            )
    return results


# ----- segmentation --------------------------------------------------


@dataclass(frozen=True)
class SegmentationScores:
    miou: float  # in [0, 1]
    pixel_accuracy: float
    iou: tuple[float, ...]  # per class; nan where the class has an empty union


class ConfusionMatrix:
    """Counts of (label, prediction) pixel pairs, accumulated batch by batch."""

    def __init__(self, num_classes: int, *, ignore_index: int = 255) -> None:
        if num_classes < 2:
            raise ValueError(f"`num_classes >= 2` must hold, but got {num_classes=}")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.counts = torch.zeros(num_classes, num_classes, dtype=torch.int64)  # [label, prediction]

    def update(self, prediction: torch.Tensor, label: torch.Tensor) -> None:
        """``prediction`` and ``label``: class ids of the same shape (N x H x W)."""
        if prediction.shape != label.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and label {tuple(label.shape)} differ in shape")
        keep = label != self.ignore_index
        label, prediction = label[keep].long().cpu(), prediction[keep].long().cpu()
        for what, ids in (("labels", label), ("predictions", prediction)):
            if ids.numel() and (ids.min() < 0 or ids.max() >= self.num_classes):
                raise ValueError(f"{what} must lie in 0..{self.num_classes - 1} (labels may be {self.ignore_index})")
        pairs = label * self.num_classes + prediction
        self.counts += torch.bincount(pairs, minlength=self.num_classes**2).view(self.num_classes, self.num_classes)

    def scores(self) -> SegmentationScores:
        counts = self.counts.double()
        total = float(counts.sum())
        if total == 0:
            raise DatasetError("cannot score segmentation: no pixel was labelled (all ignored)")
        tp = counts.diag()
        union = counts.sum(dim=0) + counts.sum(dim=1) - tp
        iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
        return SegmentationScores(
            miou=float(iou.nanmean()),
            pixel_accuracy=float(tp.sum() / total),
            iou=tuple(iou.tolist()),
        )
