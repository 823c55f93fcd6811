"""What changed between two search spaces, and how the size of the space changed.

Spaces are compared as loaded (``{multiples_of_p: ...}`` ranges expanded at
the parallelism factor P), so two files that write the same choices
differently are equal. ``edgenas space diff A.yaml B.yaml`` prints
:meth:`SpaceDiff.lines`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from search_spaces.dense_head import DenseHeadSpace
from search_spaces.loader import load_space
from search_spaces.space import SearchSpace

__all__ = ["ParameterChange", "SettingChange", "SpaceDiff", "diff_space_files", "diff_spaces"]

Choice = int | float | str


@dataclass(frozen=True)
class ParameterChange:
    """The choices of one parameter in A and in B (None where the space has no such parameter)."""

    name: str
    before: tuple[Choice, ...] | None
    after: tuple[Choice, ...] | None

    @property
    def removed(self) -> tuple[Choice, ...]:
        return tuple(c for c in self.before or () if c not in (self.after or ()))

    @property
    def added(self) -> tuple[Choice, ...]:
        return tuple(c for c in self.after or () if c not in (self.before or ()))

    def describe(self) -> str:
        if self.before is None:
            return f"+ {self.name}: {_show(self.after)} (only in B)"
        if self.after is None:
            return f"- {self.name}: {_show(self.before)} (only in A)"
        parts = []
        if self.removed:
            parts.append(f"dropped {_show(self.removed)}")
        if self.added:
            parts.append(f"added {_show(self.added)}")
        if not parts:
            parts.append("same choices, other order")
        ratio = f", {len(self.before)} -> {len(self.after)} choices" if len(self.before) != len(self.after) else ""
        return f"~ {self.name}: {_show(self.before)} -> {_show(self.after)} ({'; '.join(parts)}{ratio})"


@dataclass(frozen=True)
class SettingChange:
    """A fixed (not searched) setting that differs: P, strides, activation, classes, ..."""

    name: str
    before: object
    after: object

    def describe(self) -> str:
        return f"~ {self.name}: {self.before!r} -> {self.after!r}"


@dataclass(frozen=True)
class SpaceDiff:
    a: SearchSpace
    b: SearchSpace
    parameters: tuple[ParameterChange, ...]
    settings: tuple[SettingChange, ...]

    @property
    def size_ratio(self) -> float:
        """size(B) / size(A)."""
        return self.b.size() / self.a.size()

    @property
    def identical(self) -> bool:
        return not self.parameters and not self.settings

    def lines(self) -> list[str]:
        lines = [f"A: {self.a.source} ({self.a.name}), B: {self.b.source} ({self.b.name})"]
        if self.identical:
            lines.append("the two spaces offer the same choices")
        lines += [change.describe() for change in self.settings]
        lines += [change.describe() for change in self.parameters]
        lines.append(_size_line(self.a, self.b))
        return lines


def diff_spaces(a: SearchSpace, b: SearchSpace) -> SpaceDiff:
    """Parameter by parameter (in A's order, then B's new ones), then the fixed settings."""
    params_a, params_b = a.parameters(), b.parameters()
    changes = [
        ParameterChange(name, params_a.get(name), params_b.get(name))
        for name in [*params_a, *(n for n in params_b if n not in params_a)]
        if params_a.get(name) != params_b.get(name)
    ]
    return SpaceDiff(a=a, b=b, parameters=tuple(changes), settings=tuple(_setting_changes(a, b)))


def diff_space_files(a: str | Path, b: str | Path, *, parallelism_factor: int | None = None) -> SpaceDiff:
    """Load both files (at P ``parallelism_factor`` when given) and diff them."""
    return diff_spaces(
        load_space(a, parallelism_factor=parallelism_factor), load_space(b, parallelism_factor=parallelism_factor)
    )


def _fixed_settings(space: SearchSpace) -> dict[str, object]:
    settings: dict[str, object] = {
        "parallelism_factor": space.parallelism_factor,
        "align_channels": space.align_channels,
        "input.channels": space.input_channels,
        "activation": space.activation,
        "stem.stride": space.stem.stride,
        "stages (count)": len(space.stages),
        "head.type": space.head.type,
        "head.num_classes": space.head.num_classes,
    }
    if isinstance(space.head, DenseHeadSpace):
        settings["head.taps"] = list(space.head.taps)
    else:
        settings["head.dropout"] = space.head.dropout
    settings.update({f"stages.{i}.stride": stage.stride for i, stage in enumerate(space.stages)})
    return settings


def _setting_changes(a: SearchSpace, b: SearchSpace) -> list[SettingChange]:
    fixed_a, fixed_b = _fixed_settings(a), _fixed_settings(b)
    names = [*fixed_a, *(n for n in fixed_b if n not in fixed_a)]
    return [SettingChange(n, fixed_a.get(n), fixed_b.get(n)) for n in names if fixed_a.get(n) != fixed_b.get(n)]


def _size_line(a: SearchSpace, b: SearchSpace) -> str:
    size_a, size_b = a.size(), b.size()
    searched_a = sum(len(c) > 1 for c in a.parameters().values())
    searched_b = sum(len(c) > 1 for c in b.parameters().values())
    if size_b == size_a:
        factor = "same size"
    elif size_b < size_a:
        factor = f"{_times(size_a / size_b)} smaller"
    else:
        factor = f"{_times(size_b / size_a)} larger"
    return f"size: {size_a:,} -> {size_b:,} combinations ({factor}); searched parameters: {searched_a} -> {searched_b}"


def _times(ratio: float) -> str:
    return f"{ratio:,.0f}x" if ratio >= 100 else f"{ratio:.3g}x"


def _show(values: tuple[Choice, ...] | None) -> str:
    return "[" + ", ".join(_short(v) for v in values or ()) + "]"


def _short(value: Choice) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
