"""Head types a network may end with.

``classification`` (optional 1x1 conv, global average pooling, linear), and
the dense heads ``detection`` and ``segmentation`` (an FPN neck on tapped
stages; ``search_spaces.dense_head``), each with its own keys under ``head:``.
"""

from __future__ import annotations

from typing import Any

from search_spaces._reader import Node
from search_spaces.dense_head import DENSE_HEAD_TYPES

HEAD_TYPES = ("classification", *DENSE_HEAD_TYPES)


def head_type(node: Node) -> str:
    """The ``type`` of a ``head:`` mapping, read first: it decides which keys the head may have."""
    value: Any = node.value
    if not isinstance(value, dict):
        node.mapping(required=["type", "num_classes"])  # raises: not a mapping
    if "type" not in value:
        raise node.error("missing required key 'type'")
    return node.child("type", value["type"]).string(allowed=HEAD_TYPES)
