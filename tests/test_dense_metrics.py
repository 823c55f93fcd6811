"""Dense metrics: COCO mAP through pycocotools, mIoU and pixel accuracy checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nas.datasets import DatasetError
from nas.dense_metrics import ConfusionMatrix, detection_map
from search_spaces.box_coding import Detections

TARGETS = [
    (np.array([[10.0, 10.0, 50.0, 50.0], [60.0, 60.0, 90.0, 100.0]]), np.array([0, 1])),
    (np.array([[5.0, 20.0, 25.0, 60.0]]), np.array([2])),
]


def perfect() -> list[Detections]:
    return [
        Detections(boxes=boxes, scores=np.linspace(0.9, 0.5, len(labels)), labels=labels) for boxes, labels in TARGETS
    ]


def test_a_perfect_prediction_scores_one():
    scores = detection_map(perfect(), TARGETS, num_classes=3)
    assert scores.map == pytest.approx(1.0) and scores.map50 == pytest.approx(1.0)


def test_shifted_boxes_score_below_one_and_fall_with_the_shift():
    def shifted(dx: float) -> list[Detections]:
        return [Detections(d.boxes + dx, d.scores, d.labels) for d in perfect()]

    small, large = (
        detection_map(shifted(2.0), TARGETS, num_classes=3),
        detection_map(shifted(6.0), TARGETS, num_classes=3),
    )
    assert small.map50 == pytest.approx(1.0)  # IoU still above 0.5
    assert small.map < 1.0 and large.map < small.map
    assert detection_map(shifted(30.0), TARGETS, num_classes=3).map50 == 0.0


def test_wrong_class_false_positive_and_tensors():
    wrong = [Detections(torch.tensor(b), torch.tensor([0.9] * len(c)), torch.tensor((c + 1) % 3)) for b, c in TARGETS]
    assert detection_map(wrong, TARGETS, num_classes=3).map50 == 0.0
    # a confident false positive ranked first lowers the precision of class 0
    extra = perfect()
    extra[1] = Detections(np.vstack([[70.0, 0.0, 80.0, 10.0], TARGETS[1][0]]), np.array([0.99, 0.5]), np.array([0, 2]))
    assert detection_map(extra, TARGETS, num_classes=3).map50 < 1.0
    empty = [Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=int)) for _ in TARGETS]
    assert detection_map(empty, TARGETS, num_classes=3).map == 0.0


def test_no_ground_truth_is_an_error():
    with pytest.raises(DatasetError, match="no ground-truth box"):
        detection_map(perfect()[:1], [(np.zeros((0, 4)), np.zeros(0))], num_classes=3)


def test_miou_by_hand_on_a_4x4_example():
    label = torch.tensor(
        [
            [0, 0, 1, 1],
            [0, 0, 1, 1],
            [2, 2, 2, 2],
            [2, 2, 255, 255],
        ]
    )
    prediction = torch.tensor(
        [
            [0, 1, 1, 1],
            [0, 0, 1, 1],
            [2, 2, 0, 2],
            [2, 2, 1, 0],
        ]
    )
    matrix = ConfusionMatrix(4)
    matrix.update(prediction[None], label[None])
    scores = matrix.scores()
    # 14 scored pixels (two ignored); correct: class 0 three, class 1 four, class 2 five -> 12 / 14
    assert scores.pixel_accuracy == pytest.approx(12 / 14)
    # class 0: TP 3, FP 1 (a label-2 pixel), FN 1 -> 3/5; class 1: TP 4, FP 1, FN 0 -> 4/5;
    # class 2: TP 5, FP 0, FN 1 -> 5/6; class 3 never occurs -> no IoU
    assert scores.iou[:3] == pytest.approx((3 / 5, 4 / 5, 5 / 6)) and math.isnan(scores.iou[3])
    assert scores.miou == pytest.approx((3 / 5 + 4 / 5 + 5 / 6) / 3)
    # accumulating twice the same batch leaves the ratios unchanged
    matrix.update(prediction[None], label[None])
    assert matrix.scores().miou == pytest.approx(scores.miou)


def test_confusion_matrix_rejects_out_of_range_ids():
    matrix = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        matrix.update(torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), 5))
    with pytest.raises(ValueError, match="predictions must lie"):
        matrix.update(torch.full((2, 2), 3), torch.zeros(2, 2, dtype=torch.long))
    matrix.update(torch.zeros(1, 2), torch.full((1, 2), 255))
    with pytest.raises(DatasetError, match="no pixel"):
        matrix.scores()
