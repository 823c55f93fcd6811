"""Dense heads (detection, segmentation) as data: the searchable head space and its concrete config.

Both heads share one light FPN neck on feature maps tapped from stages of
the backbone, coarsest first: a 1x1 lateral conv (+BN) brings each tapped
map to ``channels``; going finer, the running map is resized (bilinear) to
the next tap's size and added to its lateral. ``depth`` depthwise-separable
blocks (KxK depthwise + 1x1, each +BN+activation, ``kernel`` K) refine the
result at the finest tapped stride. Then:

* ``detection``: two 1x1 convs with bias, ``heatmap`` (num_classes) and
  ``box`` (4), at that stride: the anchor-free outputs decoded by
  ``search_spaces.box_coding`` outside the network;
* ``segmentation``: a 1x1 conv with bias to ``num_classes`` (the background
  included) and a bilinear resize to the input size.

In a space::

    head:
      type: detection          # or segmentation
      num_classes: 10
      taps: [3, 5]             # stage indices, increasing; the last must be the last stage
      channels: [64, 96]       # neck width choices (scaled by the depth multiplier)
      depth: [1, 2]            # separable blocks after the neck (0 allowed)
      kernel: [3, 5]           # their depthwise kernel

``taps`` is structure, not a choice: it is fixed for the space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from search_spaces._reader import Node

__all__ = [
    "DENSE_HEAD_TYPES",
    "DenseHeadConfig",
    "DenseHeadSpace",
    "read_dense_head_config",
    "read_dense_head_space",
]

DENSE_HEAD_TYPES = ("detection", "segmentation")
MAX_TAPS = 4
HEAD_SPACE_KEYS = ["type", "num_classes", "taps", "channels", "depth", "kernel"]


@dataclass(frozen=True)
class DenseHeadConfig:
    type: str  # one of DENSE_HEAD_TYPES
    num_classes: int
    taps: tuple[int, ...]  # stage indices feeding the neck, increasing
    channels: int  # neck and tower width
    depth: int  # separable blocks after the neck
    kernel: int  # their depthwise kernel

    def block_string(self) -> str:
        prefix = "det" if self.type == "detection" else "seg"
        taps = ".".join(str(t) for t in self.taps)
        return f"{prefix}_t{taps}_c{self.channels}_d{self.depth}_k{self.kernel}"


@dataclass(frozen=True)
class DenseHeadSpace:
    type: str
    num_classes: int
    taps: tuple[int, ...]
    channels: tuple[int, ...]
    depth: tuple[int, ...]
    kernel: tuple[int, ...]


def _read_taps(node: Node, num_stages: int) -> tuple[int, ...]:
    taps = tuple(item.integer(low=0, high=num_stages - 1) for item in node.sequence())
    if len(taps) > MAX_TAPS or any(b <= a for a, b in zip(taps, taps[1:])):
        raise node.error(f"got {node.value}, allowed 1 to {MAX_TAPS} increasing stage indices")
    if taps[-1] != num_stages - 1:
        raise node.error(
            f"got {node.value}, but the last tap must be the last stage ({num_stages - 1}): "
            f"stages after it would never be used"
        )
    return taps


def read_dense_head_space(
    node: Node,
    *,
    num_stages: int,
    read_channels: Callable[[Node], tuple[int, ...]],
    choices: Callable[[Node, Callable[[Node], object]], tuple],
) -> DenseHeadSpace:
    """The ``head:`` of a space whose type is detection or segmentation (paths as in the file)."""
    keys = node.mapping(required=HEAD_SPACE_KEYS)
    return DenseHeadSpace(
        type=keys["type"].string(allowed=DENSE_HEAD_TYPES),
        num_classes=keys["num_classes"].integer(low=1 if _is_detection(keys) else 2, high=100_000),
        taps=_read_taps(keys["taps"], num_stages),
        channels=read_channels(keys["channels"]),
        depth=choices(keys["depth"], lambda n: n.integer(low=0, high=8)),
        kernel=choices(keys["kernel"], Node.kernel),
    )


def read_dense_head_config(node: Node, *, num_stages: int) -> DenseHeadConfig:
    """The ``head:`` of an ArchConfig file whose type is detection or segmentation."""
    keys = node.mapping(required=HEAD_SPACE_KEYS)
    taps_node = keys["taps"]
    return DenseHeadConfig(
        type=keys["type"].string(allowed=DENSE_HEAD_TYPES),
        num_classes=keys["num_classes"].integer(low=1 if _is_detection(keys) else 2),
        taps=_read_taps(taps_node, num_stages),
        channels=keys["channels"].integer(low=1),
        depth=keys["depth"].integer(low=0, high=8),
        kernel=keys["kernel"].kernel(),
    )


def _is_detection(keys: dict[str, Node]) -> bool:
    return keys["type"].value == "detection"
