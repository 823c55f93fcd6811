"""Load a search-space YAML file into a frozen :class:`SearchSpace`.

The schema is documented, with a worked example, in ``search_spaces/README.md``.
Everything is checked here, once; nothing past this module sees a raw dict.
"""

from __future__ import annotations

from pathlib import Path

from search_spaces._reader import Node, check_strides
from search_spaces.arch import ACTIVATIONS, BLOCK_TYPES
from search_spaces.dense_head import DenseHeadSpace, read_dense_head_space
from search_spaces.documents import read_document
from search_spaces.errors import SearchSpaceError
from search_spaces.heads import HEAD_TYPES, head_type
from search_spaces.space import HeadSpace, SearchSpace, StageSpace, StemSpace

__all__ = ["load_space", "parse_space"]

TOP_KEYS = ["name", "parallelism_factor", "input", "stem", "stages", "head"]
OPTIONAL_TOP_KEYS = ["description", "align_channels", "depth_multiplier", "activation"]
STAGE_KEYS = ["block", "kernel", "expansion", "channels", "depth", "stride"]
MAX_CHANNELS = 4096


def load_space(path: str | Path, *, parallelism_factor: int | None = None) -> SearchSpace:
    """Load and validate a space; ``parallelism_factor`` overrides the file's P."""
    path = Path(path)
    data = read_document(
        path, error=SearchSpaceError, missing=f"{path}: no such search-space file", what="search-space file"
    )
    return parse_space(data, source=str(path), parallelism_factor=parallelism_factor)


def parse_space(data: object, *, source: str, parallelism_factor: int | None = None) -> SearchSpace:
    root = Node(data, source)
    keys = root.mapping(required=TOP_KEYS, optional=OPTIONAL_TOP_KEYS)
    if parallelism_factor is None:
        parallelism_factor = keys["parallelism_factor"].integer(low=1, high=1024)
    elif parallelism_factor < 1:
        raise SearchSpaceError(
            f"{source}: parallelism_factor (command line): got {parallelism_factor}, allowed an integer >= 1"
        )
    align = keys["align_channels"].boolean() if "align_channels" in keys else True
    reader = _ChannelReader(parallelism_factor, align)
    input_keys = keys["input"].mapping(required=["channels", "resolution"])
    space = SearchSpace(
        name=keys["name"].string(),
        source=source,
        description=keys["description"].string() if "description" in keys else "",
        parallelism_factor=parallelism_factor,
        align_channels=align,
        input_channels=input_keys["channels"].integer(low=1, high=64),
        resolution=_choices(input_keys["resolution"], lambda n: n.integer(low=1, high=4096)),
        depth_multiplier=_choices(keys["depth_multiplier"], lambda n: n.number(low=0.05, high=8.0))
        if "depth_multiplier" in keys
        else (1.0,),
        activation=keys["activation"].string(allowed=ACTIVATIONS) if "activation" in keys else "relu6",
        stem=_read_stem(keys["stem"], reader),
        stages=tuple(_read_stage(node, reader) for node in keys["stages"].sequence()),
        head=_read_head(keys["head"], reader, num_stages=len(keys["stages"].sequence())),
    )
    _check_strides(space)
    return space


class _ChannelReader:
    """Channel choices: an explicit list, or ``{multiples_of_p: [low, high]}``."""

    def __init__(self, parallelism_factor: int, align: bool) -> None:
        self.parallelism_factor, self.align = parallelism_factor, align

    def read(self, node: Node, *, allow_zero: bool = False) -> tuple[int, ...]:
        if isinstance(node.value, dict):
            return self._multiples(node)
        low = 0 if allow_zero else 1
        channels = _choices(node, lambda n: self._aligned(n, n.integer(low=low, high=MAX_CHANNELS)))
        return channels

    def _multiples(self, node: Node) -> tuple[int, ...]:
        bounds_node = node.mapping(required=["multiples_of_p"])["multiples_of_p"]
        bounds = [n.integer(low=1, high=MAX_CHANNELS) for n in bounds_node.sequence()]
        if len(bounds) != 2 or bounds[0] > bounds[1]:
            raise bounds_node.error(f"got {bounds_node.value}, allowed [low, high] with low <= high")
        values = tuple(c for c in range(bounds[0], bounds[1] + 1) if c % self.parallelism_factor == 0)
        if not values:
            raise bounds_node.error(f"got {bounds}, but no multiple of P={self.parallelism_factor} lies in that range")
        return values

    def _aligned(self, node: Node, channels: int) -> int:
        if self.align and channels % self.parallelism_factor:
            raise node.error(
                f"got {channels}, allowed a multiple of the parallelism factor P={self.parallelism_factor} "
                f"(set align_channels: false to allow any count)"
            )
        return channels


def _read_stem(node: Node, reader: _ChannelReader) -> StemSpace:
    keys = node.mapping(required=["kernel", "channels", "stride"])
    return StemSpace(
        kernel=_choices(keys["kernel"], Node.kernel),
        channels=reader.read(keys["channels"]),
        stride=keys["stride"].integer(low=1, high=4),
    )


def _read_stage(node: Node, reader: _ChannelReader) -> StageSpace:
    keys = node.mapping(required=STAGE_KEYS)
    return StageSpace(
        block=_choices(keys["block"], lambda n: n.string(allowed=BLOCK_TYPES)),
        kernel=_choices(keys["kernel"], Node.kernel),
        expansion=_choices(keys["expansion"], lambda n: n.number(low=1.0, high=16.0)),
        channels=reader.read(keys["channels"]),
        depth=_choices(keys["depth"], lambda n: n.integer(low=1, high=16)),
        stride=keys["stride"].integer(low=1, high=2),
    )


def _read_head(node: Node, reader: _ChannelReader, *, num_stages: int) -> HeadSpace | DenseHeadSpace:
    if head_type(node) != "classification":
        return read_dense_head_space(node, num_stages=num_stages, read_channels=reader.read, choices=_choices)
    keys = node.mapping(required=["type", "num_classes"], optional=["channels", "dropout"])
    return HeadSpace(
        type=keys["type"].string(allowed=HEAD_TYPES),
        channels=reader.read(keys["channels"], allow_zero=True) if "channels" in keys else (0,),
        num_classes=keys["num_classes"].integer(low=2, high=100_000),
        dropout=keys["dropout"].number(low=0.0, high=0.9) if "dropout" in keys else 0.0,
    )


def _choices(node: Node, read_one) -> tuple:
    values = tuple(read_one(item) for item in node.sequence())
    if len(set(values)) != len(values):
        raise node.error(f"got {node.value}, allowed a list without repeated choices")
    return values


def _check_strides(space: SearchSpace) -> None:
    strides = [("stem.stride", space.stem.stride)]
    strides += [(f"stages[{i}].stride", stage.stride) for i, stage in enumerate(space.stages)]
    check_strides(space.source, min(space.resolution), strides)
