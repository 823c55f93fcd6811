"""DecodeSettings: how a detection head's raw outputs become boxes (no torch: the CLI reads the defaults).

The decoding itself is :func:`search_spaces.box_coding.decode`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_DECODE", "DecodeSettings"]


@dataclass(frozen=True)
class DecodeSettings:
    """How raw detection outputs become boxes; recorded with a deployed model."""

    score_threshold: float = 0.05  # low, as COCO evaluation expects; raise it for display
    max_detections: int = 100  # per image, COCO's maxDets
    nms_iou: float = 0.5  # boxes of one class overlapping more than this are suppressed

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold < 1.0:
            raise ValueError(f"`0 <= score_threshold < 1` must hold, but got {self.score_threshold=}")
        if self.max_detections < 1:
            raise ValueError(f"`max_detections >= 1` must hold, but got {self.max_detections=}")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ValueError(f"`0 < nms_iou <= 1` must hold, but got {self.nms_iou=}")


DEFAULT_DECODE = DecodeSettings()
