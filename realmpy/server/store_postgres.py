"""PostgreSQL store (psycopg 3): several server processes share one database.

Why an advisory transaction lock for writes: server versions must be committed
in the order they are allocated, or a long-poll could move its cursor past a
version that commits later and miss it.  ``pg_advisory_xact_lock`` serialises
version-allocating transactions and is released only after the commit is
visible, so every snapshot sees a gap-free prefix of versions.

Why LISTEN/NOTIFY: a change uploaded to one server process must wake the
long-polls waiting in every other process.  ``NOTIFY`` is sent inside the
committing transaction (PostgreSQL delivers it only on commit); one listener
thread per process turns notifications into ``Store`` listener calls.  A lost
notification can only delay a long-poll until its timeout: each poll re-reads
the database before waiting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, Final

import psycopg

from realmpy.server.store import Store

__all__ = ["PostgresStore"]

_LOCK_KEY: Final = 0x5265616C6D7079  # "Realmpy"
_CHANNEL: Final = "realmpy_sv"
log = logging.getLogger("realmpy.server.store")


class PostgresStore(Store):
    """History and state in a PostgreSQL database given by a ``postgresql://`` URL."""

    dialect = "postgresql"
    blob_type = "BYTEA"
    serial_type = "BIGSERIAL"

    def __init__(self, url: str, *, max_connections: int = 8) -> None:
        super().__init__(max_connections=max_connections)
        self.url = url
        self._listen_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._listen_conn: psycopg.Connection[Any] | None = None

    def _connect(self) -> Any:
        return psycopg.connect(self.url, autocommit=False)

    def _execute(self, conn: Any, sql: str, params: Sequence[Any]) -> Any:
        return conn.execute(sql.replace("?", "%s"), tuple(params))

    def _executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """psycopg 3 pipelines ``executemany``: one network round trip for the batch."""
        with conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), [tuple(r) for r in rows])

    def _begin(self, conn: Any, write: bool) -> None:
        """psycopg opens a READ COMMITTED transaction implicitly at the first statement."""

    def _lock_versions(self, conn: Any) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))

    def _publish(self, conn: Any, sv: int) -> None:
        conn.execute("SELECT pg_notify(%s, %s)", (_CHANNEL, str(sv)))

    def start_listening(self) -> None:
        """Start the LISTEN thread (idempotent)."""
        if self._listen_thread is not None:
            return
        conn = psycopg.connect(self.url, autocommit=True)
        conn.execute(f"LISTEN {_CHANNEL}")
        self._listen_conn = conn
        self._listen_thread = threading.Thread(
            target=self._listen, name="realmpy-pg-listen", daemon=True
        )
        self._listen_thread.start()

    def _listen(self) -> None:
        conn = self._listen_conn
        assert conn is not None
        while not self._stop.is_set():
            try:
                for note in conn.notifies(timeout=0.5):
                    try:
                        sv = int(note.payload)
                    except ValueError:
                        continue
                    self._fire(sv)
            except psycopg.Error as exc:
                if self._stop.is_set():
                    return
                log.warning("postgres listener failed, reconnecting", extra={"error": str(exc)})
                try:
                    conn = psycopg.connect(self.url, autocommit=True)
                    conn.execute(f"LISTEN {_CHANNEL}")
                    self._listen_conn = conn
                except psycopg.Error:
                    self._stop.wait(1.0)

    def close(self) -> None:
        """Stop listening and close connections."""
        self._stop.set()
        if self._listen_thread is not None:
            self._listen_thread.join(timeout=5)
        if self._listen_conn is not None:
            self._listen_conn.close()
        super().close()
