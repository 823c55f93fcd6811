"""Box coding of the detection head: targets decode back to the boxes they came from; NMS; the losses."""

from __future__ import annotations

import pytest
import torch

from nas.dense_datasets import load_dense_dataset
from nas.dense_losses import detection_loss, heatmap_focal_loss, segmentation_loss
from nas.dense_metrics import detection_map
from search_spaces.box_coding import DecodeSettings, box_iou, decode, encode_targets, nms

STRIDE = 8


@pytest.fixture(scope="module")
def scene_batch():
    data = load_dense_dataset("digit-scenes", resolution=128, limit=16, eval_limit=8)
    return next(iter(data.train.loader(batch_size=16)))


def perfect_outputs(targets) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw outputs a perfect head would give: the targets' logits and box codes."""
    return torch.logit(targets.heatmap.clamp(1e-4, 1 - 1e-4)), targets.box


def test_targets_decode_back_to_the_boxes(scene_batch):
    targets = encode_targets(scene_batch.boxes, scene_batch.labels, num_classes=10, grid=(16, 16), stride=STRIDE)
    assert targets.heatmap.shape == (16, 10, 16, 16) and targets.box.shape == (16, 4, 16, 16)
    # one peak of exactly 1 per object (scenes never overlap)
    assert int(targets.heatmap.eq(1.0).sum()) == sum(len(b) for b in scene_batch.boxes)
    heatmap, box = perfect_outputs(targets)
    found = decode(heatmap, box, stride=STRIDE, image_size=(128, 128))
    for detections, boxes, labels in zip(found, scene_batch.boxes, scene_batch.labels):
        assert len(detections.boxes) == len(boxes)
        order = torch.argsort(box_iou(detections.boxes, boxes).argmax(dim=1))
        assert torch.allclose(detections.boxes[order], boxes, atol=1e-3)
        assert torch.equal(detections.labels[order], labels)
    truth = list(zip(scene_batch.boxes, scene_batch.labels))
    assert detection_map(found, truth, num_classes=10).map == pytest.approx(1.0)


def test_decode_settings_limit_the_detections(scene_batch):
    targets = encode_targets(scene_batch.boxes, scene_batch.labels, num_classes=10, grid=(16, 16), stride=STRIDE)
    heatmap, box = perfect_outputs(targets)
    found = decode(heatmap, box, stride=STRIDE, image_size=(128, 128), settings=DecodeSettings(max_detections=1))
    assert all(len(d.boxes) == 1 for d in found)
    untrained = decode(torch.zeros_like(heatmap), torch.full_like(box, 50.0), stride=STRIDE, image_size=(128, 128))
    boxes = torch.cat([d.boxes for d in untrained])
    assert torch.isfinite(boxes).all() and boxes.min() >= 0 and boxes.max() <= 128  # clamped, clipped
    with pytest.raises(ValueError, match="nms_iou"):
        DecodeSettings(nms_iou=0.0)


def test_nms_suppresses_overlaps_within_a_class_only():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 0, 1, 0])
    assert nms(boxes, scores, labels, iou_threshold=0.5).tolist() == [0, 2, 3]
    assert nms(boxes, scores, torch.zeros(4, dtype=torch.long), iou_threshold=0.5).tolist() == [0, 3]
    assert nms(boxes, scores, labels, iou_threshold=1.0).tolist() == [0, 1, 2, 3]


def test_losses_are_lower_for_the_perfect_outputs(scene_batch):
    targets = encode_targets(scene_batch.boxes, scene_batch.labels, num_classes=10, grid=(16, 16), stride=STRIDE)
    heatmap, box = perfect_outputs(targets)
    perfect = detection_loss(heatmap, box, targets)
    noisy = detection_loss(heatmap + torch.randn_like(heatmap), box + torch.randn_like(box), targets)
    assert 0 <= perfect < noisy and torch.isfinite(noisy)
    assert heatmap_focal_loss(torch.zeros_like(heatmap), targets.heatmap) > heatmap_focal_loss(heatmap, targets.heatmap)
    masks = scene_batch.masks
    logits = torch.nn.functional.one_hot(masks, 11).permute(0, 3, 1, 2).float() * 20
    assert segmentation_loss(logits, masks) < 1e-6 < segmentation_loss(torch.zeros_like(logits), masks)


def test_segmentation_loss_weighs_every_present_class_equally():
    masks = torch.zeros(1, 4, 4, dtype=torch.long)
    masks[0, 0, 0] = 1  # one pixel of class 1, fifteen of background
    masks[0, 3, 3] = 255  # ignored
    logits = torch.zeros(1, 3, 4, 4)
    logits[0, 0] = 5.0  # confident background everywhere: right on 14 pixels, wrong on the class-1 pixel
    per_pixel = torch.nn.functional.cross_entropy(logits, masks, ignore_index=255, reduction="none")[0]
    expected = (per_pixel[masks[0] == 0].mean() + per_pixel[0, 0]) / 2
    assert segmentation_loss(logits, masks) == pytest.approx(float(expected))
    assert segmentation_loss(logits, torch.full_like(masks, 255)) == 0.0
