"""PostgreSQL store (psycopg 3): several server processes share one database.

Why an advisory transaction lock for writes: server versions must be committed
in the order they are allocated, or a long-poll could move its cursor past a
version that commits later and miss it.  ``pg_advisory_xact_lock`` serialises
version-allocating transactions and is released only after the commit is
visible, so every snapshot sees a gap-free prefix of versions.

Why LISTEN/NOTIFY: a change uploaded to one server process must wake the
long-polls waiting in every other process.  ``NOTIFY`` is sent inside the
committing transaction (PostgreSQL delivers it only on commit); one listener
thread per process turns notifications into ``Store`` listener calls, except
the process's own (sent by one of its pooled connections: it fired them at
commit already), which cost a second wake-up per commit.  A lost
notification can only delay a long-poll until its timeout: each poll re-reads
the database before waiting.

Why the lock key and the channel are derived from the schema: apps kept in
separate schemas of one database (``?options=-csearch_path=tenant_a``) must
not serialise each other's uploads nor wake each other's long-polls.  The key
and channel come from ``current_schema()`` (a 63-bit BLAKE2b digest, and
``realmpy_sv_<hex>``); the ``public`` schema keeps the original constants, so
servers of an older release and this one still share one lock while a
single-tenant deployment is upgraded process by process.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from typing import Any, Final

import psycopg

from realmpy.server.store import DEFAULT_POOL_SIZE, Commit, Store

__all__ = ["PostgresStore"]

_LOCK_KEY: Final = 0x5265616C6D7079  # "Realmpy": the public schema's key
_CHANNEL: Final = "realmpy_sv"
log = logging.getLogger("realmpy.server.store")


def tenant_identity(schema: str | None) -> tuple[int, str]:
    """(advisory lock key, NOTIFY channel) for an app kept in ``schema``."""
    if schema in (None, "public"):
        return _LOCK_KEY, _CHANNEL
    digest = hashlib.blake2b(str(schema).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1, f"{_CHANNEL}_{digest.hex()}"


class PostgresStore(Store):
    """History and state in a PostgreSQL database given by a ``postgresql://`` URL."""

    dialect = "postgresql"
    blob_type = "BYTEA"
    serial_type = "BIGSERIAL"

    def __init__(self, url: str, *, max_connections: int = DEFAULT_POOL_SIZE) -> None:
        super().__init__(max_connections=max_connections)
        self.url = url
        self._tenant: tuple[int, str] | None = None
        self._listen_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._listen_conn: psycopg.Connection[Any] | None = None
        self._own_backends: dict[int, int] = {}
        self._own_pids: frozenset[int] = frozenset()
        """Backend pids of the pooled connections: this process's own notifications were
        heard at commit (``Store._fire``) and are skipped when they come back."""

    def _connect(self) -> Any:
        conn = psycopg.connect(self.url, autocommit=False)
        with self._lock:
            self._own_backends[id(conn)] = conn.info.backend_pid
            self._own_pids = frozenset(self._own_backends.values())
        return conn

    def _discard(self, conn: Any) -> None:
        with self._lock:  # its pid may be another process's later
            self._own_backends.pop(id(conn), None)
            self._own_pids = frozenset(self._own_backends.values())
        super()._discard(conn)

    def _execute(self, conn: Any, sql: str, params: Sequence[Any]) -> Any:
        return conn.execute(sql.replace("?", "%s"), tuple(params))

    def _executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """psycopg 3 pipelines ``executemany``: one network round trip for the batch."""
        with conn.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), [tuple(r) for r in rows])

    def _script(
        self, conn: Any, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[Any]]:
        """One simple-protocol query of every statement, the parameters bound client-side:
        one round trip and a few system calls.  (psycopg's pipeline mode also sends many
        statements at once, but syncs again on leaving the block — two round trips — and
        polls the socket around each message: ~20 polls, each a GIL hand-off, per group.)"""
        if not statements:
            return []
        with psycopg.ClientCursor(conn) as cur:
            cur.execute(
                ";\n".join(cur.mogrify(sql.replace("?", "%s"), tuple(p)) for sql, p in statements)
            )
            out: list[list[Any]] = []
            while True:
                out.append(list(cur.fetchall()) if cur.description else [])
                if not cur.nextset():
                    break
        return out

    def _commit(self, conn: Any, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        if statements:  # the writes and the commit in one round trip
            self._script(conn, [*statements, ("COMMIT", ())])
        conn.commit()  # (a no-op once the script committed)

    def _begin(self, conn: Any, write: bool) -> None:
        """psycopg opens a READ COMMITTED transaction implicitly at the first statement."""

    def tenant(self, conn: Any | None = None) -> tuple[int, str]:
        """(advisory lock key, NOTIFY channel) of this store's schema (module docstring)."""
        if self._tenant is None:
            if conn is None:
                with self._conn() as c:
                    try:
                        return self.tenant(c)
                    finally:
                        c.rollback()  # a plain read: end its implicit transaction
            schema = conn.execute("SELECT current_schema()").fetchone()[0]
            self._tenant = tenant_identity(schema)
        return self._tenant

    def _lock_statements(self, conn: Any) -> list[tuple[str, Sequence[Any]]]:
        return [("SELECT pg_advisory_xact_lock(?)", (self.tenant(conn)[0],))]

    def _notify_statements(self, conn: Any, commit: Commit) -> list[tuple[str, Sequence[Any]]]:
        return [("SELECT pg_notify(?, ?)", (self.tenant(conn)[1], commit.to_payload()))]

    def start_listening(self) -> None:
        """Start the LISTEN thread (idempotent)."""
        if self._listen_thread is not None:
            return
        channel = self.tenant()[1]
        conn = psycopg.connect(self.url, autocommit=True)
        conn.execute(f"LISTEN {channel}")
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
                    if note.pid in self._own_pids:
                        continue
                    try:
                        commit = Commit.from_payload(note.payload)
                    except (ValueError, TypeError, IndexError):
                        continue
                    self._fire(commit)
            except psycopg.Error as exc:
                if self._stop.is_set():
                    return
                log.warning("postgres listener failed, reconnecting", extra={"error": str(exc)})
                try:
                    conn = psycopg.connect(self.url, autocommit=True)
                    conn.execute(f"LISTEN {self.tenant()[1]}")
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
