"""Decode an ArchConfig from parsed YAML/JSON, checking every field.

The reader builds the stem, stage and head records and returns the keyword
arguments of an ArchConfig; ``ArchConfig.from_dict`` (and ``load``) call it,
so this module sits below ``search_spaces.arch`` and never imports it.
"""

from __future__ import annotations

from typing import Any

from search_spaces._arch_parts import ACTIVATIONS, BLOCK_TYPES, HeadConfig, StageConfig, StemConfig
from search_spaces._reader import Node, check_strides
from search_spaces.heads import HEAD_TYPES

STAGE_KEYS = ["block", "kernel", "expansion", "channels", "depth", "stride"]


def read_arch_fields(data: Any, source: str) -> dict[str, Any]:
    """The checked fields of the ArchConfig in ``data``, as keyword arguments."""
    root = Node(data, source)
    keys = root.mapping(
        required=["input_channels", "resolution", "channel_divisor", "activation", "stem", "stages", "head"]
    )
    stem = keys["stem"].mapping(required=["kernel", "channels", "stride"])
    head = keys["head"].mapping(required=["type", "channels", "num_classes"], optional=["dropout"])
    stages = keys["stages"].sequence()
    fields = dict(
        input_channels=keys["input_channels"].integer(low=1),
        resolution=keys["resolution"].integer(low=1),
        channel_divisor=keys["channel_divisor"].integer(low=1),
        activation=keys["activation"].string(allowed=ACTIVATIONS),
        stem=StemConfig(
            kernel=stem["kernel"].kernel(),
            channels=stem["channels"].integer(low=1),
            stride=stem["stride"].integer(low=1, high=4),
        ),
        stages=tuple(_read_stage(node) for node in stages),
        head=HeadConfig(
            type=head["type"].string(allowed=HEAD_TYPES),
            channels=head["channels"].integer(low=0),
            num_classes=head["num_classes"].integer(low=2),
            dropout=head["dropout"].number(low=0.0, high=0.9) if "dropout" in head else 0.0,
        ),
    )
    _check_strides(fields, source)
    return fields


def _read_stage(node: Node) -> StageConfig:
    keys = node.mapping(required=STAGE_KEYS)
    return StageConfig(
        block=keys["block"].string(allowed=BLOCK_TYPES),
        kernel=keys["kernel"].kernel(),
        expansion=keys["expansion"].number(low=1.0, high=16.0),
        channels=keys["channels"].integer(low=1),
        depth=keys["depth"].integer(low=1, high=16),
        stride=keys["stride"].integer(low=1, high=2),
    )


def _check_strides(fields: dict[str, Any], source: str) -> None:
    strides = [("stem.stride", fields["stem"].stride)]
    strides += [(f"stages[{i}].stride", stage.stride) for i, stage in enumerate(fields["stages"])]
    check_strides(source, fields["resolution"], strides)
