"""Typed, path-aware reading of parsed YAML.

Every value is read through a :class:`Node` that knows the file it came from
and its YAML path, so that every error reads like
``search_spaces/fused.yaml: stages[2].kernel: got 4, allowed [3, 5, 7]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from search_spaces.errors import SearchSpaceError


class Node:
    def __init__(self, value: Any, source: str, path: str = "") -> None:
        self.value = value
        self.source = source
        self.path = path

    def error(self, message: str) -> SearchSpaceError:
        where = f"{self.source}: {self.path}" if self.path else self.source
        return SearchSpaceError(f"{where}: {message}")

    def child(self, key: str | int, value: Any) -> Node:
        if isinstance(key, int):
            return Node(value, self.source, f"{self.path}[{key}]")
        return Node(value, self.source, f"{self.path}.{key}" if self.path else key)

    def mapping(self, *, required: Iterable[str], optional: Iterable[str] = ()) -> dict[str, Node]:
        """The keys present, as nodes; a missing required or unknown key is an error."""
        required, optional = list(required), list(optional)
        if not isinstance(self.value, dict):
            raise self.error(f"got {_show(self.value)}, allowed a mapping with keys {required + optional}")
        allowed = required + optional
        for key in self.value:
            if key not in allowed:
                raise self.child(str(key), None).error(f"unknown key {key!r}, allowed {allowed}")
        for key in required:
            if key not in self.value:
                raise self.error(f"missing required key {key!r}")
        return {key: self.child(key, value) for key, value in self.value.items()}

    def sequence(self) -> list[Node]:
        """A non-empty list (a lone scalar is accepted as a one-item list)."""
        items = self.value if isinstance(self.value, list) else [self.value]
        if isinstance(self.value, dict) or not items:
            raise self.error(f"got {_show(self.value)}, allowed a non-empty list of choices")
        return [self.child(i, item) for i, item in enumerate(items)]

    def integer(self, *, low: int | None = None, high: int | None = None) -> int:
        value = self.value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"got {_show(value)}, allowed an integer{_range(low, high)}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.error(f"got {value}, allowed an integer{_range(low, high)}")
        return value

    def number(self, *, low: float | None = None, high: float | None = None) -> float:
        value = self.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(f"got {_show(value)}, allowed a number{_range(low, high)}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.error(f"got {value}, allowed a number{_range(low, high)}")
        return float(value)

    def string(self, *, allowed: Iterable[str] | None = None) -> str:
        options = list(allowed) if allowed is not None else None
        if not isinstance(self.value, str) or (options is not None and self.value not in options):
            rule = f"one of {options}" if options is not None else "a string"
            raise self.error(f"got {_show(self.value)}, allowed {rule}")
        return self.value

    def kernel(self) -> int:
        kernel = self.integer(low=1, high=11)
        if kernel % 2 == 0:
            raise self.error(f"got {kernel}, allowed an odd kernel size (1, 3, 5, 7, 9, 11)")
        return kernel

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.error(f"got {_show(self.value)}, allowed true or false")
        return self.value


def check_strides(source: str, resolution: int, strides: list[tuple[str, int]]) -> None:
    """A stride applied to a map smaller than the stride would shrink it below 1x1."""
    size = resolution
    for path, stride in strides:
        if size < stride:
            raise Node(stride, source, path).error(
                f"got {stride}, but at input resolution {resolution} the feature map is already {size}x{size} "
                f"here: the stride would shrink it below 1x1 (allowed: 1, or a larger resolution)"
            )
        size = -(-size // stride)


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "nothing (null)"
    return str(value)
