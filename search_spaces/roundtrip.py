"""Round-trip editing of search-space YAML files: comments, key order and layout survive.

Whenever edgenas itself rewrites a space (``edgenas space derive`` narrowing
a space an expert edited by hand), it goes through :class:`SpaceDocument`:
ruamel.yaml's round-trip mode keeps every comment, the key order, flow or
block style and quoting; only the values the tool sets change. Nothing is
written that :func:`search_spaces.parse_space` would reject.

    doc = SpaceDocument.load("search_spaces/combined.yaml")
    doc.set_choices("stages.5.block", ["ibn"], comment="fused_ibn never on the Pareto front")
    doc.save("search_spaces/derived.yaml")

Choices are addressed by their parameter names (``resolution``,
``depth_multiplier``, ``stem.channels``, ``stages.N.block``, ``head.channels``;
see :meth:`SearchSpace.parameters`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError as RuamelYAMLError

from search_spaces.errors import SearchSpaceError, one_line
from search_spaces.loader import parse_space
from search_spaces.safe_files import parse_yaml, read_text
from search_spaces.space import SearchSpace

__all__ = ["SpaceDocument", "choice_location"]

Choice = int | float | str
# Where a parameter's choices live: (path of the mapping that holds them, key).
_TOP = {"resolution": (("input",), "resolution"), "depth_multiplier": ((), "depth_multiplier")}
_SCALARS = ("name", "description", "parallelism_factor", "align_channels", "activation")


def choice_location(name: str) -> tuple[tuple[str | int, ...], str]:
    """(path of the mapping holding parameter ``name``, its key): ``stages.2.block`` -> (("stages", 2), "block")."""
    if name in _TOP:
        return _TOP[name]
    parts = name.split(".")
    if len(parts) == 2 and parts[0] in ("stem", "head"):
        return (parts[0],), parts[1]
    if len(parts) == 3 and parts[0] == "stages" and parts[1].isdigit():
        return ("stages", int(parts[1])), parts[2]
    raise SearchSpaceError(f"unknown search-space parameter {name!r}")


class SpaceDocument:
    """A search-space file held in round-trip form; edit it, then :meth:`save` or :meth:`text`."""

    def __init__(self, data: CommentedMap, *, source: str, yaml_io: YAML) -> None:
        self.data = data
        self.source = source
        self._yaml = yaml_io

    @classmethod
    def load(cls, path: str | Path) -> SpaceDocument:
        path = Path(path)
        return cls.parse(read_text(path, what="search-space file"), source=str(path))

    @classmethod
    def parse(cls, text: str, *, source: str) -> SpaceDocument:
        parse_yaml(text, source=source)  # size, nesting and duplicate keys checked before the round-trip parser
        yaml_io = _yaml_for(text)
        try:
            data = yaml_io.load(text)
        except RuamelYAMLError as exc:
            raise SearchSpaceError(f"{source}: not valid YAML ({one_line(exc)})") from None
        if not isinstance(data, CommentedMap):
            raise SearchSpaceError(f"{source}: a search space must be a YAML mapping")
        return cls(data, source=source, yaml_io=yaml_io)

    # ----- reading ----------------------------------------------------------
    def text(self) -> str:
        buffer = io.StringIO()
        self._yaml.dump(self.data, buffer)
        return buffer.getvalue()

    def space(self, *, parallelism_factor: int | None = None) -> SearchSpace:
        """The document as it stands, validated like :func:`load_space` would."""
        return parse_space(yaml.safe_load(self.text()), source=self.source, parallelism_factor=parallelism_factor)

    # ----- editing ----------------------------------------------------------
    def set_scalar(self, key: str, value: Any, *, comment: str | None = None) -> None:
        """Set a top-level setting (``name``, ``description``, ``parallelism_factor``, ...); comments stay."""
        if key not in _SCALARS:
            raise SearchSpaceError(f"{self.source}: {key!r} is not a top-level setting, allowed {list(_SCALARS)}")
        if key in self.data:
            self.data[key] = value
        else:
            self.data.insert(_insert_position(self.data, key), key, value)
        if comment:
            self.data.yaml_add_eol_comment(comment, key)

    def set_choices(self, name: str, values: Sequence[Choice], *, comment: str | None = None) -> None:
        """Replace the choice list of parameter ``name``; ``comment`` goes on its own line before it.

        Kept values are written as the file wrote them (``6`` stays ``6``, not
        ``6.0``); a ``{multiples_of_p: [a, b]}`` range becomes an explicit list.
        """
        if not values:
            raise SearchSpaceError(f"{self.source}: {name}: got an empty choice list, allowed at least one choice")
        parent_path, key = choice_location(name)
        parent = self._node(parent_path, name)
        parent[key] = _flow_list([_as_written(parent.get(key), value) for value in values])
        if comment:
            self.add_comment(name, comment)

    def add_comment(self, name: str, text: str) -> None:
        """A comment line before parameter ``name`` (before the whole stage for ``stages.N.*``)."""
        parent_path, key = choice_location(name)
        if parent_path and parent_path[0] == "stages":
            self._node(parent_path, name)
            stages = self.data["stages"]
            stages.yaml_set_comment_before_after_key(parent_path[1], before=text, indent=_seq_indent(self._yaml))
            return
        parent = self._node(parent_path, name)
        if key not in parent:
            raise SearchSpaceError(f"{self.source}: {name}: not set in the file, nothing to comment on")
        parent.yaml_set_comment_before_after_key(key, before=text, indent=_map_indent(self._yaml) * len(parent_path))

    def add_header(self, text: str) -> None:
        """Comment lines after the file's own opening comment, before its first key."""
        first = next(iter(self.data))
        self.data.yaml_set_comment_before_after_key(first, before=text)

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Validate, then write atomically; an existing file is replaced only with ``overwrite``."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise SearchSpaceError(f"{path}: already exists (use --force to overwrite)")
        if not path.parent.is_dir():
            raise SearchSpaceError(f"{path}: the folder {path.parent} does not exist")
        text = self.text()
        parse_space(yaml.safe_load(text), source=str(path))
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return path

    def _node(self, path: tuple[str | int, ...], name: str) -> Any:
        node: Any = self.data
        for part in path:
            missing = part not in node if isinstance(node, dict) else not (0 <= int(part) < len(node))
            if missing:
                raise SearchSpaceError(f"{self.source}: {name}: the file has no {'.'.join(map(str, path))}")
            node = node[part]
        if not isinstance(node, dict):
            raise SearchSpaceError(f"{self.source}: {name}: {'.'.join(map(str, path))} is not a mapping")
        return node


def _flow_list(items: list[Any]) -> CommentedSeq:
    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


def _as_written(original: Any, value: Choice) -> Any:
    """``value`` as the original list wrote it (``6`` for 6.0), else as itself (ints stay ints)."""
    items = original if isinstance(original, list) else [original]
    for item in items:
        if not isinstance(item, (dict, list)) and item == value and type(item) is not bool:
            return item
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _insert_position(data: CommentedMap, key: str) -> int:
    """Where a missing top-level setting goes: after the settings that precede it in the schema."""
    order = ["name", "description", "parallelism_factor", "align_channels", "input", "depth_multiplier", "activation"]
    before = set(order[: order.index(key)]) if key in order else set(data)
    return sum(1 for existing in data if existing in before)


def _yaml_for(text: str) -> YAML:
    """A round-trip YAML instance that writes block sequences indented the way ``text`` does."""
    yaml_io = YAML(typ="rt")
    yaml_io.preserve_quotes = True
    yaml_io.width = 4096  # never re-wrap an expert's long flow lines
    mapping, offset = _guess_indents(text)
    yaml_io.indent(mapping=mapping, sequence=mapping + offset, offset=offset)
    return yaml_io


def _guess_indents(text: str) -> tuple[int, int]:
    """(mapping indent, indent of a block sequence's dash under its key); edgenas files use (2, 2)."""
    mapping, offset, previous = None, None, None
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        if previous is not None and previous[1].split(" #")[0].rstrip().endswith(":"):
            if stripped.startswith("- ") and offset is None and indent >= previous[0]:
                offset = indent - previous[0]
            elif not stripped.startswith("- ") and mapping is None and indent > previous[0]:
                mapping = indent - previous[0]
        previous = (indent, stripped)
    return mapping or 2, offset if offset is not None else 2


def _seq_indent(yaml_io: YAML) -> int:
    return int(yaml_io.sequence_dash_offset or 0)


def _map_indent(yaml_io: YAML) -> int:
    return int(yaml_io.map_indent or 2)
