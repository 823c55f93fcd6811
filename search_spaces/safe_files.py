"""Reading user files safely: size and nesting limits before parsing, UTF-8 checked, duplicate keys refused.

Every loader of a text file a user names (search spaces, ARCH files, device
profiles, manifests, estimator metadata) reads it through
:func:`read_text` and parses it with :func:`parse_yaml` or
:func:`parse_json`, so that a binary file, a file in another encoding, a
file of gigabytes, YAML nested ten thousand deep or alias bombs are one
:class:`~search_spaces.errors.EdgeNasError` naming the file, never a
traceback, a hang or unbounded memory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from search_spaces.errors import EdgeNasError, SearchSpaceError, one_line

__all__ = ["MAX_ALIASES", "MAX_DEPTH", "MAX_TEXT_BYTES", "parse_json", "parse_yaml", "read_text"]

MAX_TEXT_BYTES = 4 * 1024 * 1024  # the largest shipped YAML is a few KiB; an estimator's metadata a few hundred KiB
MAX_DEPTH = 64  # a search space nests 4 deep; Python's recursion limit is 1000
MAX_ALIASES = 64  # YAML anchors may be reused, but an alias bomb expands each one many times


def read_text(
    path: str | Path, *, what: str, error: type[EdgeNasError] = SearchSpaceError, max_bytes: int = MAX_TEXT_BYTES
) -> str:
    """The UTF-8 text of ``path`` (``what`` names the kind of file in errors); checked before it is read whole."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise error(f"{path}: not a file (expected {_a(what)})")
        if size > max_bytes:
            raise error(f"{path}: {size:,} bytes is too large for {_a(what)} (at most {max_bytes:,})")
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({one_line(exc)})") from None
    if b"\x00" in data:
        raise error(f"{path}: a binary file, not {_a(what)} (it holds NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text at byte {exc.start} (expected {_a(what)})") from None


def _a(what: str) -> str:
    return f"an {what}" if what[:1] in "aeiou" else f"a {what}"


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a nesting limit, an alias limit and duplicate mapping keys refused."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent, index):  # noqa: ANN001, ANN201 (PyYAML's signature)
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases (*name)")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"nested deeper than {MAX_DEPTH} levels (line {mark.line + 1})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):  # noqa: ANN001, ANN201
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value", key_node.start_mark
                ) from None
            if key in seen:
                raise yaml.YAMLError(
                    f"key {key!r} is given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})"
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, *, source: str, error: type[EdgeNasError] = SearchSpaceError) -> Any:
    """Parse YAML ``text`` safely; any problem is ``error`` naming ``source``."""
    try:
        return yaml.load(text, Loader=_LimitedLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise error(f"{source}: not valid YAML ({one_line(exc)})") from None
    except RecursionError:
        raise error(f"{source}: not valid YAML (nested too deep)") from None


def parse_json(text: str, *, source: str, error: type[EdgeNasError] = SearchSpaceError) -> Any:
    """Parse JSON ``text``; duplicate keys, NaN/Infinity and deep nesting are ``error`` naming ``source``."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                raise ValueError(f"key {key!r} is given twice")
            result[key] = value
        return result

    def constant(name: str) -> float:
        raise ValueError(f"{name} is not a JSON number")

    if _json_depth(text) > MAX_DEPTH:
        raise error(f"{source}: not valid JSON (nested deeper than {MAX_DEPTH} levels)")
    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except (ValueError, RecursionError) as exc:
        raise error(f"{source}: not valid JSON ({one_line(exc)})") from None


def _json_depth(text: str) -> int:
    """The deepest bracket nesting of ``text``, strings skipped (a linear scan, before parsing)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest
