"""Curated search spaces, architectures, the block builder and analytic counts.

This package knows nothing of the others (DESIGN.md: imports point one way).
"""

from __future__ import annotations

from pathlib import Path

from search_spaces.arch import ArchConfig, HeadConfig, StageConfig, StemConfig
from search_spaces.counts import ArchCounts, LayerCount, count_arch
from search_spaces.dense_head import DenseHeadConfig
from search_spaces.errors import EdgeNasError, SearchSpaceError
from search_spaces.loader import load_space, parse_space
from search_spaces.plan import BlockPlan, OpSpec, plan_network
from search_spaces.space import SearchSpace

__all__ = [
    "ALL_SPACES",
    "DENSE_SPACES",
    "HIGH_RESOLUTION_SPACES",
    "SHIPPED_SPACES",
    "SPACES_DIR",
    "ArchConfig",
    "ArchCounts",
    "BlockPlan",
    "DenseHeadConfig",
    "EdgeNasError",
    "HeadConfig",
    "LayerCount",
    "OpSpec",
    "SearchSpace",
    "SearchSpaceError",
    "StageConfig",
    "StemConfig",
    "baseline_arch",
    "build_block",
    "build_model",
    "count_arch",
    "load_space",
    "parse_space",
    "plan_network",
    "shipped_space_path",
]

SPACES_DIR = Path(__file__).resolve().parent
# The published neural-engine ablation: the reference, depth-multiplier search,
# fused-IBN search, and both (32x32 classification; latency profiling draws from these).
SHIPPED_SPACES = ("baseline", "channels", "fused_ibn", "combined", "memory")
# The same ablation for the dense tasks at the scenes' 128x128, plus each task's full space.
DENSE_SPACES = tuple(
    f"{task}{variant}"
    for task in ("detection", "segmentation")
    for variant in ("_baseline", "_channels", "_fused_ibn", "_combined", "")
)
# Classification at 96-128 px, where high-resolution stages exist.
HIGH_RESOLUTION_SPACES = ("classification_96",)
ALL_SPACES = SHIPPED_SPACES + HIGH_RESOLUTION_SPACES + DENSE_SPACES


def __getattr__(name: str) -> object:
    """The block builder needs torch; it is imported on first use so that reading a space stays fast."""
    if name in ("build_block", "build_model"):
        from search_spaces import builder

        return getattr(builder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def shipped_space_path(name: str) -> Path:
    if name not in ALL_SPACES:
        raise SearchSpaceError(f"unknown shipped space {name!r}, known: {list(ALL_SPACES)}")
    return SPACES_DIR / f"{name}.yaml"


def baseline_arch(*, parallelism_factor: int | None = None, task: str = "classification") -> ArchConfig:
    """The one architecture of ``baseline.yaml`` (``<task>_baseline.yaml`` for a dense task): the reference."""
    name = "baseline" if task == "classification" else f"{task}_baseline"
    space = load_space(shipped_space_path(name), parallelism_factor=parallelism_factor)
    if space.size() != 1:
        raise SearchSpaceError(f"{space.source}: the baseline space must have exactly one point, has {space.size()}")
    return space.resolve({name: choices[0] for name, choices in space.parameters().items()})
