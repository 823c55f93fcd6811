"""Wherever an architecture is asked for: an ARCH file, or a search space with exactly one point.

``baseline.yaml`` is a one-point space; ``edgenas arch show``, ``train``,
``deploy`` and ``latency predict`` take it as the architecture it holds.
"""

from __future__ import annotations

from pathlib import Path

from search_spaces.arch import ArchConfig
from search_spaces.errors import SearchSpaceError
from search_spaces.loader import parse_space
from search_spaces.safe_files import parse_json, parse_yaml, read_text

__all__ = ["load_arch"]

# Keys only a search space has at its top level (an ArchConfig has input_channels, resolution, ...).
SPACE_KEYS = ("parallelism_factor", "input")


def load_arch(path: str | Path, *, parallelism_factor: int | None = None) -> ArchConfig:
    """The architecture in ``path``: an ArchConfig YAML/JSON file, or a one-point search space."""
    path = Path(path)
    text = read_text(path, what="architecture file")
    data = (parse_json if path.suffix == ".json" else parse_yaml)(text, source=str(path))
    if not (isinstance(data, dict) and all(key in data for key in SPACE_KEYS)):
        return ArchConfig.from_dict(data, source=str(path))
    space = parse_space(data, source=str(path), parallelism_factor=parallelism_factor)
    if space.size() != 1:
        raise SearchSpaceError(
            f"{path}: a search space with {space.size():,} points, not one architecture "
            f"(give an ARCH file, or a space with a single choice everywhere, like baseline.yaml)"
        )
    return space.resolve({name: choices[0] for name, choices in space.parameters().items()})
