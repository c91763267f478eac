"""SQLite store (WAL): the embedded default, one server process per data directory.

Why WAL and ``BEGIN IMMEDIATE``: readers (downloads that only read) never
wait for the writer, and a write transaction takes SQLite's single write lock
up front, so server versions are allocated and committed in one order and a
transaction can never fail half-way on a lock upgrade.  ``synchronous=FULL``
makes an acknowledged upload survive power loss, not just a killed process.

Long-polls in the same process are woken through ``Store.add_listener``; a
second server process on the same directory is refused by an exclusive lock
on ``server.lock`` (use PostgreSQL to run several).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path
from typing import IO, Any

from realmpy.server.store import DEFAULT_POOL_SIZE, Store

__all__ = ["DataDirLocked", "SQLiteStore"]


class DataDirLocked(RuntimeError):
    """Another server process already serves this data directory."""


class SQLiteStore(Store):
    """History and state in ``<data>/realmpy-server.sqlite3``."""

    dialect = "sqlite"
    blob_type = "BLOB"
    serial_type = "INTEGER"

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        max_connections: int = DEFAULT_POOL_SIZE,
        lock: bool = True,
    ) -> None:
        super().__init__(max_connections=max_connections)
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / "realmpy-server.sqlite3"
        self._lock_file: IO[bytes] | None = None
        if lock:
            f = open(self.data_dir / "server.lock", "wb")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                raise DataDirLocked(
                    f"{self.data_dir} is in use by another realmpy-server process "
                    "(SQLite serves one process; use --database postgresql://... for several)"
                ) from None
            self._lock_file = f

    def _connect(self) -> Any:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=60.0
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=60000")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _begin(self, conn: Any, write: bool) -> None:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")

    def close(self) -> None:
        """Close connections and release the data-directory lock."""
        super().close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
