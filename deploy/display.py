"""DISPLAY_DECODE: the decoding a deployed detector records for `edgenas run` (light: the CLI reads it)."""

from __future__ import annotations

from search_spaces.decode_settings import DecodeSettings

__all__ = ["DISPLAY_DECODE"]

# What `edgenas run` shows: evaluation decodes at 0.05 (COCO), a person looking at boxes wants fewer, surer ones.
DISPLAY_DECODE = DecodeSettings(score_threshold=0.3, max_detections=100, nms_iou=0.5)
