"""SQLite study files: a write-ahead log while the search runs, one plain file again when it ends.

Optuna commits every suggested parameter and every attribute on its own: a
zero-shot trial makes about 50 commits. In SQLite's default (rollback
journal) mode each commit waits for the disk (fsync: 6-20 ms on this
machine), so a proposal whose own work takes milliseconds cost 0.3-1 s. In
write-ahead-log mode with ``synchronous=NORMAL`` a commit is an append to
``study.db-wal`` (tens of microseconds). A commit is still atomic and
survives a killed process; only a power cut may lose the last commits, and
the database is never corrupted. Readers and the one writer no longer block
each other, which helps several workers on one machine.

WAL needs the workers on one host (it shares memory between them): workers
on several machines use PostgreSQL or a journal file (``--storage``), as
Optuna advises for SQLite anyway.

When the search ends, :func:`settle` folds the log back into ``study.db`` and
returns it to rollback mode, so the file a search leaves behind is
self-contained as before (it can be copied, committed, opened read-only).
While another worker still has the study open the file stays in WAL mode;
the last worker to finish settles it.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from optuna.storages import BaseStorage, RDBStorage
from sqlalchemy import event

__all__ = ["settle", "write_ahead"]

logger = logging.getLogger(__name__)


def _sqlite_file(storage: BaseStorage) -> Path | None:
    if not isinstance(storage, RDBStorage) or storage.engine.dialect.name != "sqlite":
        return None
    database = storage.engine.url.database
    return None if database in (None, "", ":memory:") else Path(database)


def _fast_commits(dbapi_connection, _record) -> None:
    dbapi_connection.execute("PRAGMA journal_mode=WAL")  # kept by the file: a no-op once set
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")  # per connection


def write_ahead(storage: BaseStorage) -> None:
    """Every connection ``storage`` opens from now on commits to the write-ahead log (SQLite files only)."""
    if _sqlite_file(storage) is None:
        return
    event.listen(storage.engine, "connect", _fast_commits)
    storage.engine.dispose()  # the connections Optuna opened to create the tables: reopened with the pragmas


def settle(*storages: BaseStorage) -> None:
    """Close ``storages``' connections and, unless another process has the file open, fold the log into it.

    Later use of the storages reconnects in the file's plain (rollback) mode.
    """
    files = set()
    for storage in storages:
        path = _sqlite_file(storage)
        if path is None:
            continue
        if event.contains(storage.engine, "connect", _fast_commits):
            event.remove(storage.engine, "connect", _fast_commits)
        storage.engine.dispose()
        files.add(path)
    for path in sorted(files):
        _rollback_mode(path)


def _rollback_mode(path: Path) -> None:
    connection = sqlite3.connect(path, timeout=0)  # never wait: a busy file belongs to a worker still running
    try:
        connection.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.OperationalError as exc:
        logger.debug("%s stays in WAL mode (%s): another worker has it open and settles it", path, exc)
    finally:
        connection.close()
