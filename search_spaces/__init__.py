"""Curated search spaces, architectures, the block builder and analytic counts.

This package knows nothing of the others (DESIGN.md: imports point one way).
"""

from __future__ import annotations

from pathlib import Path

from search_spaces.arch import ArchConfig, HeadConfig, StageConfig, StemConfig
from search_spaces.builder import build_block, build_model
from search_spaces.counts import ArchCounts, LayerCount, count_arch
from search_spaces.errors import EdgeNasError, SearchSpaceError
from search_spaces.loader import load_space, parse_space
from search_spaces.plan import BlockPlan, OpSpec, plan_network
from search_spaces.space import SearchSpace

__all__ = [
    "SHIPPED_SPACES",
    "SPACES_DIR",
    "ArchConfig",
    "ArchCounts",
    "BlockPlan",
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
# fused-IBN search, and both.
SHIPPED_SPACES = ("baseline", "channels", "fused_ibn", "combined", "memory")


def shipped_space_path(name: str) -> Path:
    if name not in SHIPPED_SPACES:
        raise SearchSpaceError(f"unknown shipped space {name!r}, known: {list(SHIPPED_SPACES)}")
    return SPACES_DIR / f"{name}.yaml"


def baseline_arch(*, parallelism_factor: int | None = None) -> ArchConfig:
    """The one architecture of ``baseline.yaml``: the reference of every search."""
    space = load_space(shipped_space_path("baseline"), parallelism_factor=parallelism_factor)
    if space.size() != 1:
        raise SearchSpaceError(f"{space.source}: the baseline space must have exactly one point, has {space.size()}")
    return space.resolve({name: choices[0] for name, choices in space.parameters().items()})
