"""CSV files that survive interruption: rows appended and flushed one at a time, files replaced atomically,
older columns upgraded in place."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from latency_estimator.errors import EstimatorError

__all__ = [
    "append_csv_row",
    "read_csv_rows",
    "write_csv_rows",
]

logger = logging.getLogger(__name__)


def read_csv_rows(
    path: Path,
    fields: tuple[str, ...],
    *,
    required: tuple[str, ...] | None = None,
    added: dict[str, str] | None = None,
) -> list[dict]:
    """The complete rows of a CSV written by :func:`append_csv_row` (none if it does
    not exist); a row missing a ``required`` value (an interrupted write) is dropped.

    ``added``: columns that newer versions added, with the value an older row
    means. A file without them is upgraded in place (rewritten with them).
    """
    if not path.exists():
        return []
    added = added or {}
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = tuple(reader.fieldnames or ())
        rows = list(reader)
    missing = [field for field in fields if field not in columns]
    if columns != fields and not (set(missing) <= set(added) and set(columns) <= set(fields)):
        raise EstimatorError(
            f"{path}: columns {list(columns)}, expected {list(fields)} "
            "(written by another edgenas version? measure into a new folder)"
        )
    required = fields if required is None else required
    complete = [row for row in rows if None not in row.values() and all(row.get(f) for f in required if f in columns)]
    if len(complete) < len(rows):
        logger.warning("%s: dropping %d incomplete row(s)", path, len(rows) - len(complete))
    if missing:
        complete = [{field: row.get(field, added.get(field, "")) for field in fields} for row in complete]
        write_csv_rows(path, fields, complete)
        logger.info("%s: upgraded to the current columns (added %s)", path, ", ".join(missing))
    return complete


def write_csv_rows(path: Path, fields: tuple[str, ...], rows: Sequence[dict[str, str]]) -> None:
    """Replace the file with these rows, atomically: an interrupted write leaves the old file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.partial")
    with scratch.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(scratch, path)


def append_csv_row(path: Path, fields: tuple[str, ...], row: dict[str, str]) -> None:
    """Append one row (with the header if the file is new), on a line of its own
    even when an interrupted write left the last line unfinished."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new_file = not path.exists() or path.stat().st_size == 0
    with path.open("a+b") as raw:
        if not new_file:
            raw.seek(-1, os.SEEK_END)
            if raw.read(1) != b"\n":
                raw.write(b"\n")
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        if new_file:
            writer.writeheader()
        writer.writerow(row)
