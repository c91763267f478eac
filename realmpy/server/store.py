"""The server's history and state store: one small abstract base, SQL shared by SQLite and PostgreSQL.

Why one base with a dialect rather than two implementations: every query the
server runs is plain SQL that both engines accept (``INSERT … ON CONFLICT``,
``RETURNING``, row-value comparisons), so the data-access code is written once
in ``Tx`` and a back end only supplies connections, the write lock, the
schema's column types and the cross-process wake-up (``store_sqlite``,
``store_postgres``).

Guarantees the rest of the server relies on:

- ``write()`` transactions are serialised and allocate server versions with
  ``Tx.next_server_version``; commit order equals version order, so a reader
  that sees version *v* sees every version below it (no gaps for long-polls);
- a transaction commits whole or not at all (never half an upload);
- ``on_commit`` callbacks run only after a successful commit (wake-ups).

Why ``transaction(allocates=True)`` queues on a process-local lock *before*
taking a pooled connection: a version-allocating transaction (an upload, a
history trim) waits for the store-wide version lock.  If it waited while
holding a connection, a dozen queued uploads would take the whole pool and
downloads, logins and readiness checks would wait behind the upload lock.
Queued on the local lock, at most one upload per process holds a connection
while it waits for (or holds) the store-wide lock.
"""

from __future__ import annotations

import abc
import contextlib
import json
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from realmpy.wire.merge import ObjectState
    from realmpy.wire.protocol import PrimaryKey

__all__ = [
    "ChangedObject",
    "ClientRow",
    "Commit",
    "ConflictError",
    "ObjectRow",
    "SessionRow",
    "Store",
    "Tx",
    "UserRow",
]

SCHEMA_VERSION: Final = 1
DEFAULT_POOL_SIZE: Final = 8
"""Database connections per server process (``--pool-size``, ``[database] pool_size``)."""


ChangedObject = tuple[str, "PrimaryKey", "ObjectState | None", "ObjectState"]
"""(table, primary key, state before, state after) of an object a commit changed."""


@dataclass(frozen=True)
class Commit:
    """What a committed write changed, for waking long-polls (``Store.add_listener``)."""

    sv: int
    """The newest server version it made (0: none, e.g. a subscription change)."""
    tables: frozenset[str] | None = None
    """Tables whose objects changed; None: not known (wake every poll)."""
    files: frozenset[int] = frozenset()
    """Files with news of their own (their uploads' refusals and views, new subscriptions)."""
    objects: tuple[ChangedObject, ...] | None = field(default=None, compare=False)
    """The changed objects, in the process that committed (never in a NOTIFY), when few
    enough to match against each poll's queries (``wake_filter``); None: not known."""

    def to_payload(self) -> str:
        """NOTIFY text (PostgreSQL's limit is 8,000 bytes: past it, say "unknown")."""
        if self.tables is not None:
            text = json.dumps([self.sv, sorted(self.tables), sorted(self.files)])
            if len(text) < 7_000:
                return text
        return json.dumps([self.sv])

    @classmethod
    def from_payload(cls, text: str) -> Commit:
        """The inverse of ``to_payload``; a bare number (older servers) changed anything."""
        v = json.loads(text)
        if isinstance(v, int):
            return cls(v)
        if len(v) == 1:
            return cls(int(v[0]))
        return cls(int(v[0]), frozenset(map(str, v[1])), frozenset(map(int, v[2])))


class ConflictError(Exception):
    """A uniqueness constraint refused a row (an email already registered, ...)."""


@dataclass(frozen=True)
class UserRow:
    """A user: id, the provider that created it, email and password hash if any."""

    id: str
    provider: str
    email: str | None
    pw_hash: bytes | None
    created_at: int


@dataclass(frozen=True)
class SessionRow:
    """A login session; its refresh token is stored only as a hash."""

    id: str
    user_id: str
    refresh_hash: bytes
    expires_at: int
    revoked: bool


@dataclass(frozen=True)
class ClientRow:
    """A client file: identity, upload cursor and subscription state."""

    file_ident: int
    salt: int
    user_id: str
    last_cv: int
    last_base_sv: int
    last_ts: int
    query_version: int
    queries: bytes | None
    bootstrapped_qv: int
    bootstrapped_rules: str


@dataclass(frozen=True)
class ObjectRow:
    """One object's merge state and the server version of its last change."""

    table: str
    pk: bytes
    state: bytes
    last_sv: int


_TABLES: Final = """
CREATE TABLE IF NOT EXISTS server_state (
    id INTEGER PRIMARY KEY, sv BIGINT NOT NULL, salt BIGINT NOT NULL,
    secret {blob} NOT NULL, schema {blob}, format INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY, provider TEXT NOT NULL, email TEXT UNIQUE,
    pw_hash {blob}, created_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, refresh_hash {blob} NOT NULL,
    expires_at BIGINT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL,
    key_hash {blob} NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS clients (
    file_ident {serial} PRIMARY KEY, salt BIGINT NOT NULL, user_id TEXT NOT NULL,
    nonce TEXT NOT NULL, last_cv BIGINT NOT NULL DEFAULT 0,
    last_base_sv BIGINT NOT NULL DEFAULT 0, last_ts BIGINT NOT NULL DEFAULT 0,
    query_version BIGINT NOT NULL DEFAULT 0, queries {blob},
    bootstrapped_qv BIGINT NOT NULL DEFAULT -1, bootstrapped_rules TEXT NOT NULL DEFAULT '',
    UNIQUE (user_id, nonce));
CREATE TABLE IF NOT EXISTS changesets (
    sv BIGINT PRIMARY KEY, file_ident BIGINT NOT NULL, client_version BIGINT NOT NULL,
    ts BIGINT NOT NULL, base_sv BIGINT NOT NULL, ops {blob} NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    tbl TEXT NOT NULL, pk {blob} NOT NULL, state {blob} NOT NULL, last_sv BIGINT NOT NULL,
    PRIMARY KEY (tbl, pk));
CREATE INDEX IF NOT EXISTS objects_by_sv ON objects (last_sv, tbl, pk);
CREATE TABLE IF NOT EXISTS views (
    file_ident BIGINT NOT NULL, tbl TEXT NOT NULL, pk {blob} NOT NULL,
    in_view INTEGER NOT NULL, changed_sv BIGINT NOT NULL,
    PRIMARY KEY (file_ident, tbl, pk));
CREATE TABLE IF NOT EXISTS history_horizon (
    id INTEGER PRIMARY KEY, sv BIGINT NOT NULL, trimmed_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS disabled_users (
    user_id TEXT PRIMARY KEY, disabled_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS rejections (
    file_ident BIGINT NOT NULL, sv BIGINT NOT NULL, tbl TEXT NOT NULL, pk {blob} NOT NULL,
    client_version BIGINT NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (file_ident, sv, tbl, pk));
"""


class Tx:
    """Data access inside one transaction.  SQL uses ``?``; the store translates."""

    def __init__(self, store: Store, conn: Any) -> None:
        self._store = store
        self._conn = conn
        self._after_commit: list[Callable[[], None]] = []
        self._before_commit: list[Callable[[], None]] = []
        self._deferred: list[tuple[str, Sequence[Any]]] | None = None
        """While ``before_commit`` functions run: their statements, sent with the commit."""
        self.new_server_version: int | None = None
        self.changed: Commit | None = None
        """What the commit changes (tables, files), when the writer knows; else every poll wakes."""
        self._versions_locked = False

    def _x(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self._deferred is not None:
            self._deferred.append((sql, params))
            return None
        return self._store._execute(self._conn, sql, params)

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._x(sql, params).fetchone()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self._x(sql, params).fetchall())

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for many parameter rows (a single round trip where the driver can)."""
        if self._deferred is not None:
            self._deferred += [(sql, r) for r in rows]
        elif rows:
            self._store._executemany(self._conn, sql, rows)

    def commit_note(self) -> Commit | None:
        """What listeners hear of this transaction's commit (None: it made no version)."""
        if self.new_server_version is None:
            return None
        if self.changed is None:
            return Commit(self.new_server_version)
        return Commit(
            self.new_server_version, self.changed.tables, self.changed.files, self.changed.objects
        )

    def before_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` at the end of the transaction: its statements (writes: nothing reads
        their results) are sent with the notification and the commit, in one round trip on
        PostgreSQL; an error in them rolls the transaction back."""
        self._before_commit.append(fn)

    def on_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` after this transaction commits (never if it rolls back)."""
        self._after_commit.append(fn)

    # ----------------------------------------------------------------- server state

    def server_state(self) -> tuple[int, int, bytes, bytes | None]:
        """(latest server version, server salt, token secret, stored schema)."""
        row = self._one("SELECT sv, salt, secret, schema FROM server_state WHERE id = 1")
        assert row is not None, "store not initialised"
        return int(row[0]), int(row[1]), bytes(row[2]), None if row[3] is None else bytes(row[3])

    def latest_server_version(self) -> int:
        """The newest committed server version visible to this transaction."""
        row = self._one("SELECT sv FROM server_state WHERE id = 1")
        return int(row[0])

    def versions(self) -> tuple[int, int]:
        """(``latest_server_version``, ``horizon``) in one statement."""
        row = self._one(self._VERSIONS)
        return int(row[0]), int(row[1])

    _VERSIONS: Final = (
        "SELECT s.sv, COALESCE((SELECT h.sv FROM history_horizon h WHERE h.id = 1), 0) "
        "FROM server_state s WHERE s.id = 1"
    )

    def lock_versions(self) -> None:
        """Take the store-wide version lock now (before reading rows an upload depends on).

        Held until commit; serialises every transaction that allocates server
        versions, so commit order equals version order.
        """
        if not self._versions_locked:
            self._store._lock_versions(self._conn)
            self._versions_locked = True

    def next_server_version(self) -> int:
        """Allocate the next server version (write transactions only)."""
        self.lock_versions()
        row = self._one("UPDATE server_state SET sv = sv + 1 WHERE id = 1 RETURNING sv")
        sv = int(row[0])
        self.new_server_version = sv
        return sv

    def advance_server_version(self, to: int) -> None:
        """Allocate every server version up to ``to`` in one statement (a group of uploads
        counts its versions itself, under the version lock, and records the last here)."""
        self.lock_versions()
        self._x("UPDATE server_state SET sv = ? WHERE id = 1", (to,))
        self.new_server_version = to

    def set_schema(self, blob: bytes) -> None:
        """Store the app schema (development mode adopts clients' additions)."""
        self._x("UPDATE server_state SET schema = ? WHERE id = 1", (blob,))

    # ----------------------------------------------------------------- users

    def create_user(self, user: UserRow) -> None:
        """Insert a user; ``ConflictError`` if the email is taken."""
        if user.email is not None and self.user_by_email(user.email) is not None:
            raise ConflictError("email already registered")
        self._x(
            "INSERT INTO users (id, provider, email, pw_hash, created_at) VALUES (?, ?, ?, ?, ?)",
            (user.id, user.provider, user.email, user.pw_hash, user.created_at),
        )

    def _user(self, row: Any) -> UserRow | None:
        if row is None:
            return None
        return UserRow(
            row[0], row[1], row[2], None if row[3] is None else bytes(row[3]), int(row[4])
        )

    def get_user(self, user_id: str) -> UserRow | None:
        """A user by id."""
        return self._user(
            self._one(
                "SELECT id, provider, email, pw_hash, created_at FROM users WHERE id = ?",
                (user_id,),
            )
        )

    def user_by_email(self, email: str) -> UserRow | None:
        """A user by (lower-cased) email."""
        return self._user(
            self._one(
                "SELECT id, provider, email, pw_hash, created_at FROM users WHERE email = ?",
                (email,),
            )
        )

    def create_session(self, s: SessionRow) -> None:
        """Record a new login session."""
        self._x(
            "INSERT INTO sessions (id, user_id, refresh_hash, expires_at, revoked) VALUES (?, ?, ?, ?, ?)",
            (s.id, s.user_id, s.refresh_hash, s.expires_at, int(s.revoked)),
        )

    def get_session(self, sid: str) -> SessionRow | None:
        """A session by id."""
        row = self._one(
            "SELECT id, user_id, refresh_hash, expires_at, revoked FROM sessions WHERE id = ?",
            (sid,),
        )
        if row is None:
            return None
        return SessionRow(row[0], row[1], bytes(row[2]), int(row[3]), bool(row[4]))

    def revoke_session(self, sid: str) -> None:
        """Log-out: the session's refresh and access tokens stop working."""
        self._x("UPDATE sessions SET revoked = 1 WHERE id = ?", (sid,))

    def create_api_key(
        self, key_id: str, user_id: str, name: str, key_hash: bytes, now: int
    ) -> None:
        """Record an API key (only its hash)."""
        self._x(
            "INSERT INTO api_keys (id, user_id, name, key_hash, created_at) VALUES (?, ?, ?, ?, ?)",
            (key_id, user_id, name, key_hash, now),
        )

    def get_api_key(self, key_id: str) -> tuple[str, str, bytes] | None:
        """(user id, name, key hash) of an API key."""
        row = self._one("SELECT user_id, name, key_hash FROM api_keys WHERE id = ?", (key_id,))
        return None if row is None else (row[0], row[1], bytes(row[2]))

    def list_api_keys(self, user_id: str) -> list[tuple[str, str]]:
        """(id, name) of a user's API keys."""
        return [
            (r[0], r[1])
            for r in self._all(
                "SELECT id, name FROM api_keys WHERE user_id = ? ORDER BY created_at, id",
                (user_id,),
            )
        ]

    def delete_api_key(self, key_id: str, user_id: str) -> bool:
        """Delete one of the user's keys; False if there was none."""
        return bool(
            self._x("DELETE FROM api_keys WHERE id = ? AND user_id = ?", (key_id, user_id)).rowcount
        )

    # ----------------------------------------------------------------- clients

    _CLIENT_COLS: Final = (
        "file_ident, salt, user_id, last_cv, last_base_sv, last_ts, query_version, queries, "
        "bootstrapped_qv, bootstrapped_rules"
    )

    def _client(self, row: Any) -> ClientRow | None:
        if row is None:
            return None
        return ClientRow(
            int(row[0]),
            int(row[1]),
            row[2],
            int(row[3]),
            int(row[4]),
            int(row[5]),
            int(row[6]),
            None if row[7] is None else bytes(row[7]),
            int(row[8]),
            row[9],
        )

    def client_by_nonce(self, user_id: str, nonce: str) -> ClientRow | None:
        """The file a user already asked for with this nonce (idempotent ident)."""
        return self._client(
            self._one(
                f"SELECT {self._CLIENT_COLS} FROM clients WHERE user_id = ? AND nonce = ?",
                (user_id, nonce),
            )
        )

    def create_client(self, user_id: str, nonce: str, salt: int) -> int:
        """Allocate a file ident."""
        row = self._one(
            "INSERT INTO clients (salt, user_id, nonce) VALUES (?, ?, ?) RETURNING file_ident",
            (salt, user_id, nonce),
        )
        return int(row[0])

    def get_client(self, file_ident: int, *, for_update: bool = False) -> ClientRow | None:
        """A client file by ident."""
        lock = " FOR UPDATE" if for_update and self._store.dialect == "postgresql" else ""
        return self._client(
            self._one(
                f"SELECT {self._CLIENT_COLS} FROM clients WHERE file_ident = ?{lock}", (file_ident,)
            )
        )

    def clients_many(self, file_idents: Sequence[int]) -> dict[int, ClientRow]:
        """``get_client`` for many files in one query."""
        out: dict[int, ClientRow] = {}
        for sql, params in self._clients_queries(file_idents):
            self._add_clients(out, self._all(sql, params))
        return out

    def _clients_queries(self, file_idents: Sequence[int]) -> list[tuple[str, list[Any]]]:
        idents = sorted(set(file_idents))
        out: list[tuple[str, list[Any]]] = []
        for i in range(0, len(idents), 256):
            chunk = idents[i : i + 256]
            marks = ", ".join(["?"] * len(chunk))
            out.append(
                (f"SELECT {self._CLIENT_COLS} FROM clients WHERE file_ident IN ({marks})", chunk)
            )
        return out

    def _add_clients(self, out: dict[int, ClientRow], rows: Sequence[Any]) -> None:
        for r in rows:
            row = self._client(r)
            assert row is not None
            out[row.file_ident] = row

    def begin_upload_group(
        self, file_idents: Sequence[int], keys: Sequence[tuple[str, bytes]]
    ) -> tuple[int, int, dict[int, ClientRow], dict[tuple[str, bytes], ObjectRow]]:
        """The version lock, then ``versions()``, ``clients_many(file_idents)`` and
        ``objects_many(keys)``: what a group of uploads reads first, in one round trip on
        PostgreSQL (``Store._script``: the statements run in order, so the reads see
        everything committed before the lock was granted)."""
        client_queries = self._clients_queries(file_idents)
        object_queries = self._objects_queries(keys)
        lock = [] if self._versions_locked else self._store._lock_statements(self._conn)
        results = self._store._script(
            self._conn,
            [
                *lock,
                (self._VERSIONS, ()),
                *client_queries,
                *((sql, params) for _, sql, params in object_queries),
            ],
        )[len(lock) :]
        self._versions_locked = True
        latest, horizon = results[0][0]
        clients: dict[int, ClientRow] = {}
        for rows in results[1 : 1 + len(client_queries)]:
            self._add_clients(clients, rows)
        objects: dict[tuple[str, bytes], ObjectRow] = {}
        for (table, _, _), rows in zip(object_queries, results[1 + len(client_queries) :]):
            self._add_objects(objects, table, rows)
        return int(latest), int(horizon), clients, objects

    def update_upload_cursors(self, rows: Sequence[tuple[int, int, int, int]]) -> None:
        """``update_upload_cursor`` for many files, rows of (file, cv, base sv, ts): one statement."""
        self._many(
            "UPDATE clients SET last_cv = ?, last_base_sv = ?, last_ts = ? WHERE file_ident = ?",
            [(cv, base, ts, fi) for fi, cv, base, ts in rows],
        )

    def update_upload_cursor(
        self, file_ident: int, last_cv: int, last_base_sv: int, last_ts: int
    ) -> None:
        """Advance a client's integrated client version (same transaction as the changes)."""
        self.update_upload_cursors([(file_ident, last_cv, last_base_sv, last_ts)])

    def set_subscriptions(self, file_ident: int, query_version: int, queries: bytes) -> None:
        """Store a client's newest subscription set."""
        self._x(
            "UPDATE clients SET query_version = ?, queries = ? WHERE file_ident = ?",
            (query_version, queries, file_ident),
        )

    def set_bootstrapped(self, file_ident: int, query_version: int, rules: str) -> None:
        """Mark the bootstrap of a query version (under a rule set) complete."""
        self._x(
            "UPDATE clients SET bootstrapped_qv = ?, bootstrapped_rules = ? WHERE file_ident = ?",
            (query_version, rules, file_ident),
        )

    # ----------------------------------------------------------------- history and objects

    def add_changeset(
        self, sv: int, file_ident: int, cv: int, ts: int, base_sv: int, ops: bytes
    ) -> None:
        """Append an integrated changeset to the history."""
        self.add_changesets([(sv, file_ident, cv, ts, base_sv, ops)])

    def add_changesets(self, rows: Sequence[tuple[int, int, int, int, int, bytes]]) -> None:
        """``add_changeset`` for many changesets: one batched statement."""
        self._many(
            "INSERT INTO changesets (sv, file_ident, client_version, ts, base_sv, ops) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )

    def history(self, after_sv: int, limit: int) -> list[tuple[int, int, int, int, int, bytes]]:
        """(sv, file ident, client version, timestamp, base sv, ops) after ``after_sv``; the ops blob
        keeps each op at its index in the changeset (its stamp), refused ops as nil."""
        rows = self._all(
            "SELECT sv, file_ident, client_version, ts, base_sv, ops FROM changesets WHERE sv > ? ORDER BY sv LIMIT ?",
            (after_sv, limit),
        )
        return [(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), bytes(r[5])) for r in rows]

    def changeset_count(self, file_ident: int, cv: int) -> int:
        """How many history entries a (file, client version) has (0 or 1; tests use it)."""
        row = self._one(
            "SELECT count(*) FROM changesets WHERE file_ident = ? AND client_version = ?",
            (file_ident, cv),
        )
        return int(row[0])

    def get_object(self, table: str, pk: bytes) -> ObjectRow | None:
        """One object's state."""
        row = self._one("SELECT state, last_sv FROM objects WHERE tbl = ? AND pk = ?", (table, pk))
        return None if row is None else ObjectRow(table, pk, bytes(row[0]), int(row[1]))

    def objects_many(self, keys: Sequence[tuple[str, bytes]]) -> dict[tuple[str, bytes], ObjectRow]:
        """``get_object`` for many objects: one query per table and 256 keys,
        (table, pk) → row.  ``tbl = ? AND pk IN (…)`` and not ``(tbl, pk) IN
        (VALUES …)``: SQLite plans the row-value form as a scan of the whole
        table (5,000 keys over 10k rows: 0.21 s against 0.033 s)."""
        out: dict[tuple[str, bytes], ObjectRow] = {}
        for table, sql, params in self._objects_queries(keys):
            self._add_objects(out, table, self._all(sql, params))
        return out

    @staticmethod
    def _objects_queries(keys: Sequence[tuple[str, bytes]]) -> list[tuple[str, str, list[Any]]]:
        by_table: dict[str, list[bytes]] = {}
        for t, pk in keys:
            by_table.setdefault(t, []).append(pk)
        out: list[tuple[str, str, list[Any]]] = []
        for table, pks in by_table.items():
            for i in range(0, len(pks), 256):
                chunk = pks[i : i + 256]
                marks = ", ".join(["?"] * len(chunk))
                sql = f"SELECT pk, state, last_sv FROM objects WHERE tbl = ? AND pk IN ({marks})"
                out.append((table, sql, [table, *chunk]))
        return out

    @staticmethod
    def _add_objects(
        out: dict[tuple[str, bytes], ObjectRow], table: str, rows: Sequence[Any]
    ) -> None:
        for r in rows:
            pk = bytes(r[0])
            out[(table, pk)] = ObjectRow(table, pk, bytes(r[1]), int(r[2]))

    def put_object(self, table: str, pk: bytes, state: bytes, sv: int) -> None:
        """Insert or replace an object's state, changed at ``sv``."""
        self._x(
            "INSERT INTO objects (tbl, pk, state, last_sv) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (tbl, pk) DO UPDATE SET state = excluded.state, last_sv = excluded.last_sv",
            (table, pk, state, sv),
        )

    def objects_changed(
        self, after_sv: int, upto_sv: int, pos: tuple[int, str, bytes], limit: int
    ) -> list[ObjectRow]:
        """Objects with ``after_sv < last_sv <= upto_sv`` after ``pos`` in (last_sv, table, pk) order."""
        rows = self._all(
            "SELECT tbl, pk, state, last_sv FROM objects WHERE last_sv > ? AND last_sv <= ? "
            "AND (last_sv, tbl, pk) > (?, ?, ?) ORDER BY last_sv, tbl, pk LIMIT ?",
            (after_sv, upto_sv, pos[0], pos[1], pos[2], limit),
        )
        return [ObjectRow(r[0], bytes(r[1]), bytes(r[2]), int(r[3])) for r in rows]

    def objects_scan(self, pos: tuple[str, bytes], limit: int) -> list[ObjectRow]:
        """Objects after ``pos`` in (table, pk) order (bootstraps)."""
        rows = self._all(
            "SELECT tbl, pk, state, last_sv FROM objects WHERE (tbl, pk) > (?, ?) ORDER BY tbl, pk LIMIT ?",
            (pos[0], pos[1], limit),
        )
        return [ObjectRow(r[0], bytes(r[1]), bytes(r[2]), int(r[3])) for r in rows]

    def count_objects(self) -> int:
        """Number of stored objects (bootstrap progress)."""
        return int(self._one("SELECT count(*) FROM objects")[0])

    # ----------------------------------------------------------------- history horizon

    def horizon(self) -> int:
        """The history horizon: history and tombstones at or below it may be gone (0 = none)."""
        row = self._one("SELECT sv FROM history_horizon WHERE id = 1")
        return 0 if row is None else int(row[0])

    def horizon_for_age(self, cutoff_ms: int) -> int:
        """The newest server version whose changeset is older than ``cutoff_ms`` (0 if none)."""
        row = self._one("SELECT max(sv) FROM changesets WHERE ts < ?", (cutoff_ms,))
        return 0 if row is None or row[0] is None else int(row[0])

    def trim_history(self, horizon: int, now: int, is_dead: Callable[[bytes], bool]) -> int:
        """Raise the horizon to ``horizon`` and drop what only clients behind it could need:
        changesets, refusals and forgotten-view rows at or below it, and erased objects
        (``is_dead(state)``) whose last change is at or below it, with their view rows.
        Returns the number of objects dropped.  Call under the version lock."""
        self.lock_versions()
        self._x(
            "INSERT INTO history_horizon (id, sv, trimmed_at) VALUES (1, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET sv = excluded.sv, trimmed_at = excluded.trimmed_at",
            (horizon, now),
        )
        self._x("DELETE FROM changesets WHERE sv <= ?", (horizon,))
        self._x("DELETE FROM rejections WHERE sv <= ?", (horizon,))
        self._x("DELETE FROM views WHERE in_view = 0 AND changed_sv <= ?", (horizon,))
        dropped = 0
        pos: tuple[int, str, bytes] = (-1, "", b"")
        while True:
            rows = self._all(
                "SELECT tbl, pk, state, last_sv FROM objects WHERE last_sv <= ? "
                "AND (last_sv, tbl, pk) > (?, ?, ?) ORDER BY last_sv, tbl, pk LIMIT 512",
                (horizon, pos[0], pos[1], pos[2]),
            )
            if not rows:
                break
            pos = (int(rows[-1][3]), rows[-1][0], bytes(rows[-1][1]))
            dead = [(r[0], bytes(r[1])) for r in rows if is_dead(bytes(r[2]))]
            if dead:
                self._many("DELETE FROM objects WHERE tbl = ? AND pk = ?", dead)
                self._many("DELETE FROM views WHERE tbl = ? AND pk = ?", dead)
                dropped += len(dead)
        return dropped

    # ----------------------------------------------------------------- per-client views

    def view_get(self, file_ident: int, table: str, pk: bytes) -> tuple[bool, int] | None:
        """(in view, server version of the last change) of an object for a client."""
        row = self._one(
            "SELECT in_view, changed_sv FROM views WHERE file_ident = ? AND tbl = ? AND pk = ?",
            (file_ident, table, pk),
        )
        return None if row is None else (bool(row[0]), int(row[1]))

    def view_put(
        self, file_ident: int, table: str, pk: bytes, in_view: bool, changed_sv: int
    ) -> None:
        """Record that an object entered or left a client's view."""
        self._x(
            "INSERT INTO views (file_ident, tbl, pk, in_view, changed_sv) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (file_ident, tbl, pk) DO UPDATE SET in_view = excluded.in_view, changed_sv = excluded.changed_sv",
            (file_ident, table, pk, int(in_view), changed_sv),
        )

    def views_many(
        self, file_ident: int, keys: Sequence[tuple[str, bytes]]
    ) -> dict[tuple[str, bytes], tuple[bool, int]]:
        """``view_get`` for many objects in one query: key → (in view, changed sv)."""
        out: dict[tuple[str, bytes], tuple[bool, int]] = {}
        for i in range(0, len(keys), 256):
            chunk = keys[i : i + 256]
            values = ", ".join(["(?, ?)"] * len(chunk))
            params: list[Any] = [file_ident]
            for t, pk in chunk:
                params += [t, pk]
            rows = self._all(
                "SELECT tbl, pk, in_view, changed_sv FROM views WHERE file_ident = ? "
                f"AND (tbl, pk) IN (VALUES {values})",
                params,
            )
            for r in rows:
                out[(r[0], bytes(r[1]))] = (bool(r[2]), int(r[3]))
        return out

    def view_put_many(self, file_ident: int, rows: Sequence[tuple[str, bytes, bool, int]]) -> None:
        """``view_put`` for many objects: one batched statement."""
        self.views_put([(file_ident, t, pk, iv, sv) for t, pk, iv, sv in rows])

    def views_put(self, rows: Sequence[tuple[int, str, bytes, bool, int]]) -> None:
        """``view_put`` for many (file, table, pk, in view, changed sv): one batched statement."""
        self._many(
            "INSERT INTO views (file_ident, tbl, pk, in_view, changed_sv) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (file_ident, tbl, pk) DO UPDATE SET in_view = excluded.in_view, "
            "changed_sv = excluded.changed_sv",
            [(fi, t, pk, int(iv), sv) for fi, t, pk, iv, sv in rows],
        )

    def put_objects(self, rows: Sequence[tuple[str, bytes, bytes, int]]) -> None:
        """``put_object`` for many objects: one batched statement."""
        self._many(
            "INSERT INTO objects (tbl, pk, state, last_sv) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (tbl, pk) DO UPDATE SET state = excluded.state, last_sv = excluded.last_sv",
            rows,
        )

    def view_gc(self, file_ident: int, confirmed_sv: int) -> None:
        """Forget 'left the view' rows the client has confirmed by moving its cursor past them."""
        self._x(
            "DELETE FROM views WHERE file_ident = ? AND in_view = 0 AND changed_sv <= ?",
            (file_ident, confirmed_sv),
        )

    def views_gc_many(self, rows: Sequence[tuple[int, int]]) -> None:
        """``view_gc`` for many (file, confirmed sv): one batched statement."""
        self._many(
            "DELETE FROM views WHERE file_ident = ? AND in_view = 0 AND changed_sv <= ?", rows
        )

    def views_of(
        self, keys: Sequence[tuple[int, str, bytes]]
    ) -> dict[tuple[int, str, bytes], tuple[bool, int]]:
        """``view_get`` for many (file, table, pk), any files: one query per 256 keys."""
        out: dict[tuple[int, str, bytes], tuple[bool, int]] = {}
        for i in range(0, len(keys), 256):
            chunk = keys[i : i + 256]
            values = ", ".join(["(?, ?, ?)"] * len(chunk))
            params = [x for key in chunk for x in key]
            for r in self._all(
                "SELECT file_ident, tbl, pk, in_view, changed_sv FROM views "
                f"WHERE (file_ident, tbl, pk) IN (VALUES {values})",
                params,
            ):
                out[(int(r[0]), r[1], bytes(r[2]))] = (bool(r[3]), int(r[4]))
        return out

    def add_rejection(
        self, file_ident: int, sv: int, table: str, pk: bytes, cv: int, reason: str
    ) -> None:
        """Record a refused write so the client's next download carries the compensating reset."""
        self.add_rejections([(file_ident, sv, table, pk, cv, reason)])

    def add_rejections(self, rows: Sequence[tuple[int, int, str, bytes, int, str]]) -> None:
        """``add_rejection`` for many (file, sv, table, pk, cv, reason): one batched statement."""
        self._many(
            "INSERT INTO rejections (file_ident, sv, tbl, pk, client_version, reason) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (file_ident, sv, tbl, pk) DO NOTHING",
            rows,
        )

    # ----------------------------------------------------------------- administration
    # (``realmpy-server users|api-keys``; not on any request's path)

    def list_users(self) -> list[UserRow]:
        """Every user, oldest first."""
        rows = self._all(
            "SELECT id, provider, email, pw_hash, created_at FROM users ORDER BY created_at, id"
        )
        return [u for u in map(self._user, rows) if u is not None]

    def disabled_users(self) -> set[str]:
        """Ids of disabled users."""
        return {r[0] for r in self._all("SELECT user_id FROM disabled_users")}

    def is_disabled(self, user_id: str) -> bool:
        """May this user no longer log in?"""
        return self._one("SELECT 1 FROM disabled_users WHERE user_id = ?", (user_id,)) is not None

    def set_disabled(self, user_id: str, disabled: bool, now: int) -> None:
        """Disable (and log out everywhere) or re-enable a user."""
        if disabled:
            self._x(
                "INSERT INTO disabled_users (user_id, disabled_at) VALUES (?, ?) "
                "ON CONFLICT (user_id) DO NOTHING",
                (user_id, now),
            )
            self.revoke_user_sessions(user_id)
        else:
            self._x("DELETE FROM disabled_users WHERE user_id = ?", (user_id,))

    def revoke_user_sessions(self, user_id: str) -> None:
        """Log a user out of every session (their access tokens stop working at once)."""
        self._x("UPDATE sessions SET revoked = 1 WHERE user_id = ?", (user_id,))

    def set_password(self, user_id: str, pw_hash: bytes) -> None:
        """Replace an email/password user's password hash."""
        self._x("UPDATE users SET pw_hash = ? WHERE id = ?", (pw_hash, user_id))

    def delete_user(self, user_id: str) -> None:
        """Remove a user with their sessions and API keys (their objects stay)."""
        for sql in (
            "DELETE FROM sessions WHERE user_id = ?",
            "DELETE FROM api_keys WHERE user_id = ?",
            "DELETE FROM disabled_users WHERE user_id = ?",
            "DELETE FROM users WHERE id = ?",
        ):
            self._x(sql, (user_id,))

    def all_api_keys(self) -> list[tuple[str, str, str, int]]:
        """(id, user id, name, created at) of every API key."""
        return [
            (r[0], r[1], r[2], int(r[3]))
            for r in self._all(
                "SELECT id, user_id, name, created_at FROM api_keys ORDER BY created_at, id"
            )
        ]

    def revoke_api_key(self, key_id: str) -> bool:
        """Delete any user's API key; False if there was none."""
        return bool(self._x("DELETE FROM api_keys WHERE id = ?", (key_id,)).rowcount)

    def rejections(
        self, file_ident: int, after_sv: int, upto_sv: int
    ) -> list[tuple[int, str, bytes, int, str]]:
        """(sv, table, pk, client version, reason) of a client's refused writes in a version range."""
        rows = self._all(
            "SELECT sv, tbl, pk, client_version, reason FROM rejections WHERE file_ident = ? AND sv > ? AND sv <= ? ORDER BY sv, tbl, pk",
            (file_ident, after_sv, upto_sv),
        )
        return [(int(r[0]), r[1], bytes(r[2]), int(r[3]), r[4]) for r in rows]

    def rejections_of(
        self, file_idents: Sequence[int], after_sv: int, upto_sv: int
    ) -> dict[int, list[tuple[int, str, bytes, int, str]]]:
        """``rejections`` of many files in one range: one query per 256 files."""
        out: dict[int, list[tuple[int, str, bytes, int, str]]] = {}
        idents = sorted(set(file_idents))
        for i in range(0, len(idents), 256):
            chunk = idents[i : i + 256]
            marks = ", ".join(["?"] * len(chunk))
            for r in self._all(
                "SELECT file_ident, sv, tbl, pk, client_version, reason FROM rejections "
                f"WHERE file_ident IN ({marks}) AND sv > ? AND sv <= ? "
                "ORDER BY file_ident, sv, tbl, pk",
                [*chunk, after_sv, upto_sv],
            ):
                out.setdefault(int(r[0]), []).append(
                    (int(r[1]), r[2], bytes(r[3]), int(r[4]), r[5])
                )
        return out


class Store(abc.ABC):
    """A connection pool plus transactions; subclasses supply the engine specifics."""

    dialect: str = ""
    blob_type: str = "BLOB"
    serial_type: str = "INTEGER"

    def __init__(self, *, max_connections: int = DEFAULT_POOL_SIZE) -> None:
        if max_connections < 2:
            raise ValueError("the connection pool needs at least 2 connections")
        self.max_connections = max_connections
        self._allocating = threading.Lock()
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._all_conns: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        self._listeners: list[Callable[[Commit], None]] = []

    # ----------------------------------------------------------------- for subclasses

    @abc.abstractmethod
    def _connect(self) -> Any:
        """A new DB-API connection, in manual-transaction mode."""

    @abc.abstractmethod
    def _begin(self, conn: Any, write: bool) -> None:
        """Start a transaction; a write transaction takes the store-wide write lock."""

    def _lock_statements(self, conn: Any) -> list[tuple[str, Sequence[Any]]]:
        """The statement that takes the store-wide version lock until commit (none where
        ``_begin(write=True)`` already serialises writers: SQLite's IMMEDIATE lock)."""
        return []

    def _lock_versions(self, conn: Any) -> None:
        for sql, params in self._lock_statements(conn):
            self._execute(conn, sql, params)

    def _execute(self, conn: Any, sql: str, params: Sequence[Any]) -> Any:
        return conn.execute(sql, tuple(params))

    def _executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        conn.executemany(sql, [tuple(r) for r in rows])

    def _script(
        self, conn: Any, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[Any]]:
        """Run ``statements`` in order; each one's rows (none for a write).  PostgreSQL sends
        them together (one round trip); here, one at a time (SQLite is in-process)."""
        out: list[list[Any]] = []
        for sql, params in statements:
            cur = self._execute(conn, sql, params)
            out.append(list(cur.fetchall()) if cur.description else [])
        return out

    def _notify_statements(self, conn: Any, commit: Commit) -> list[tuple[str, Sequence[Any]]]:
        """Inside a committing write: the statements that tell other processes (PostgreSQL
        NOTIFY); none by default."""
        return []

    def _commit(self, conn: Any, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run a transaction's last ``statements`` (writes) and commit."""
        self._script(conn, statements)
        conn.commit()

    def start_listening(self) -> None:  # noqa: B027 - optional hook
        """Start receiving other processes' commits (PostgreSQL LISTEN); no-op by default."""

    # ----------------------------------------------------------------- public

    def add_listener(self, fn: Callable[[Commit], None]) -> None:
        """``fn(commit)`` runs (on some thread) after any commit that made a new server version,
        in this process or — for stores that support it — another."""
        self._listeners.append(fn)

    def _fire(self, commit: Commit) -> None:
        for fn in list(self._listeners):
            fn(commit)

    def initialise(self, *, secret: bytes, salt: int) -> None:
        """Create tables and the server-state row if missing (idempotent, safe across processes)."""
        ddl = _TABLES.format(blob=self.blob_type, serial=self.serial_type)
        with self._conn() as conn:
            self._begin(conn, True)
            try:
                self._lock_versions(conn)
                for stmt in ddl.split(";"):
                    if stmt.strip():
                        self._execute(conn, stmt, ())
                self._execute(
                    conn,
                    "INSERT INTO server_state (id, sv, salt, secret, schema, format) VALUES (1, 0, ?, ?, NULL, ?) "
                    "ON CONFLICT (id) DO NOTHING",
                    (salt, secret, SCHEMA_VERSION),
                )
                conn.commit()
            except BaseException:
                conn.rollback()
                raise

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        if self._closed:
            raise RuntimeError("store is closed")
        self._slots.acquire()
        try:
            try:
                conn = self._pool.get_nowait()
            except queue.Empty:
                conn = self._connect()
                with self._lock:
                    self._all_conns.append(conn)
            ok = False
            try:
                yield conn
                ok = True
            finally:
                if ok:
                    self._pool.put(conn)
                else:
                    self._discard(conn)
        finally:
            self._slots.release()

    def _discard(self, conn: Any) -> None:
        with self._lock:
            if conn in self._all_conns:
                self._all_conns.remove(conn)
        try:
            conn.close()
        except Exception:
            pass

    @contextmanager
    def transaction(self, *, write: bool, allocates: bool = False) -> Iterator[Tx]:
        """One transaction: commits on clean exit, rolls back on any exception.

        ``allocates=True`` for transactions that will take the version lock (uploads,
        trims): they queue in this process before taking a connection (module docstring).
        """
        with contextlib.ExitStack() as stack:
            if allocates:
                stack.enter_context(self._allocating)
            with self._transaction(write) as tx:
                yield tx

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[Tx]:
        with self._conn() as conn:
            self._begin(conn, write)
            tx = Tx(self, conn)
            try:
                yield tx
                # the last writes, the notification and the commit: one round trip
                tx._deferred = []
                for fn in tx._before_commit:
                    fn()
                commit = tx.commit_note()
                last, tx._deferred = tx._deferred, None
                if commit is not None:
                    last += self._notify_statements(conn, commit)
                self._commit(conn, last)
            except BaseException:
                try:
                    conn.rollback()
                except Exception:
                    pass
                raise
        if commit is not None:
            self._fire(commit)
        for fn in tx._after_commit:
            fn()

    def close(self) -> None:
        """Close every connection."""
        self._closed = True
        with self._lock:
            conns, self._all_conns = self._all_conns, []
        for c in conns:
            try:
                c.close()
            except Exception:
                pass
