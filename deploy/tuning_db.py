"""The tuning database: where a target's database lives, what it records, and applying it to a module.

A tuning database (``--tuning-db``) is a MetaSchedule JSON database plus
``edgenas-tuning.json`` (:data:`BUDGET_FILE`), which records the trial budget
each task (a fused TIR function for one target, keyed by its structural hash,
:func:`task_key`) has received. A task is tuned only when the requested budget
exceeds what it already got, so tuning the same shapes twice measures nothing;
networks that share layer shapes share tuning. The budget file is written
after every round, and MetaSchedule appends every measured candidate to the
database at once, so an interrupted tuning run loses at most the round it was
in (:func:`drop_torn_lines` cuts what it left half-written); the next run
goes on there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from deploy.errors import CompileError

__all__ = [
    "BUDGET_FILE",
    "DB_ENV",
    "apply_database",
    "default_tuning_db",
    "drop_torn_lines",
    "read_budgets",
    "task_key",
    "write_budgets",
]

logger = logging.getLogger(__name__)

BUDGET_FILE = "edgenas-tuning.json"
DB_ENV = "EDGENAS_TUNING_DB"  # folder that holds the per-target default databases


def default_tuning_db(target_name: str) -> Path:
    """The persistent tuning database of a deploy target: ``$EDGENAS_TUNING_DB/<target>``, by default
    ``~/.cache/edgenas/tvm/<target>``. Every deploy for that target reads and extends it."""
    root = os.environ.get(DB_ENV) or Path.home() / ".cache" / "edgenas" / "tvm"
    return Path(root) / target_name


def apply_database(mod: Any, *, target: Any, database: str | Path) -> Any:
    """Replace each TIR function that the database has a record for by its best schedule."""
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    db_dir = Path(database)
    if not (db_dir / "database_workload.json").is_file():
        raise CompileError(f"{db_dir}: not a tuning database (no database_workload.json)")
    db = ms.database.JSONDatabase(work_dir=str(db_dir), allow_missing=False)
    with tvm.target.Target(target), db:
        return relax.transform.MetaScheduleApplyDatabase()(mod)


def task_key(task: Any, target: Any) -> str:
    """A task's key in the budget file: its structural hash and a digest of the target."""
    import tvm
    import tvm_ffi

    mod_hash = tvm_ffi.structural_hash(task.dispatched[0])
    target_json = json.dumps(tvm.target.Target(target).export(), sort_keys=True, default=str)
    return f"{mod_hash:x}-{hashlib.sha256(target_json.encode()).hexdigest()[:12]}"


def drop_torn_lines(db_dir: Path) -> None:
    """Cut a line that a killed tuning run left half-written from the end of the database files.

    MetaSchedule appends one JSON line per workload and per measured candidate; a record is written
    after its workload, so a torn last line of the workload file has no records pointing at it.
    """
    for name in ("database_workload.json", "database_tuning_record.json"):
        path = db_dir / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        lines = data.splitlines(keepends=True)
        if not lines:
            continue
        try:
            json.loads(lines[-1])
            if lines[-1].endswith(b"\n"):
                continue
            path.write_bytes(data + b"\n")  # a complete last line without its newline
        except ValueError:
            logger.warning("%s: dropped a half-written last line (an interrupted tuning run)", path)
            path.write_bytes(b"".join(lines[:-1]))


def read_budgets(db_dir: Path) -> dict[str, int]:
    """The trials each task key has received, from the budget file (empty when there is none)."""
    path = db_dir / BUDGET_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CompileError(f"{path}: corrupt tuning budget file ({exc})") from None
    return {str(key): int(value) for key, value in data.get("tasks", {}).items()}


def write_budgets(db_dir: Path, budgets: dict[str, int]) -> None:
    """Replace the budget file at once (write, then rename), so that a kill leaves the old or the new one."""
    path = db_dir / BUDGET_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": 1, "tasks": budgets}, indent=1, sort_keys=True))
    tmp.replace(path)
