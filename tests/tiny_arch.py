"""Tiny architectures that build, train a step and compile in seconds."""

from __future__ import annotations

import copy

from search_spaces import ArchConfig

TINY = {
    "input_channels": 1,
    "resolution": 16,
    "channel_divisor": 1,
    "activation": "relu6",
    "stem": {"kernel": 3, "channels": 8, "stride": 2},
    "stages": [
        {"block": "ibn", "kernel": 3, "expansion": 2, "channels": 8, "depth": 2, "stride": 1},
        {"block": "fused_ibn", "kernel": 3, "expansion": 2, "channels": 16, "depth": 1, "stride": 2},
    ],
    "head": {"type": "classification", "channels": 32, "num_classes": 10},
}

# A stem, one IBN and the head: 7 distinct TVM tasks (stem, expand = head conv, depthwise, project + residual, mean,
# reshape, classifier; TINY has 10), about the fewest a classification network has: for tests that tune every task.
ONE_BLOCK = {
    **TINY,
    "stages": [{"block": "ibn", "kernel": 3, "expansion": 2, "channels": 8, "depth": 1, "stride": 1}],
    "head": {"type": "classification", "channels": 16, "num_classes": 10},
}

# 64 px, stride-4 heatmap: a detector (or, through dense_arch, a segmenter) for the dense training and deploy tests.
DENSE_RESOLUTION = 64
TINY_DETECTOR_64 = {
    "input_channels": 1,
    "resolution": DENSE_RESOLUTION,
    "channel_divisor": 1,
    "activation": "relu6",
    "stem": {"kernel": 3, "channels": 8, "stride": 2},
    "stages": [
        {"block": "fused_ibn", "kernel": 3, "expansion": 2, "channels": 16, "depth": 1, "stride": 2},
        {"block": "ibn", "kernel": 3, "expansion": 4, "channels": 24, "depth": 1, "stride": 2},
    ],
    "head": {"type": "detection", "num_classes": 10, "taps": [0, 1], "channels": 16, "depth": 1, "kernel": 3},
}


def dense_arch(task: str, **head) -> ArchConfig:
    """TINY_DETECTOR_64 for ``task`` (segmentation: 11 classes with background), head fields overridden."""
    data = copy.deepcopy(TINY_DETECTOR_64)
    if task == "segmentation":
        data["head"].update(type="segmentation", num_classes=11)
    data["head"].update(head)
    return ArchConfig.from_dict(data)
