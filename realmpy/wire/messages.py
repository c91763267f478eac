"""The request and response messages of every endpoint, each with
``to_wire`` and a validating ``from_wire``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

import msgpack  # type: ignore[import-untyped,unused-ignore]

from realmpy.wire.changesets import Changeset
from realmpy.wire.errors import MalformedMessage
from realmpy.wire.shapes import _get, _map, _name, _str, _uint
from realmpy.wire.tables import TableSpec, _tables_from_wire
from realmpy.wire.values import PrimaryKey, pack


@dataclass(frozen=True)
class ErrorResponse:
    """Every 4xx/5xx body: a typed ``error`` code, a message and optional detail."""

    error: str
    message: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message, "detail": dict(self.detail)}

    @classmethod
    def from_wire(cls, obj: object) -> ErrorResponse:
        m = _map(obj, "error")
        return cls(
            _str(m, "error", "error"),
            _str(m, "message", "error", max_len=65536),
            _map(m.get("detail", {}), "detail"),
        )


@dataclass(frozen=True)
class RegisterRequest:
    """Email/password registration."""

    email: str
    password: str

    @classmethod
    def from_wire(cls, obj: object) -> RegisterRequest:
        m = _map(obj, "register")
        email = _str(m, "email", "register", max_len=254)
        if "@" not in email or email.strip() != email:
            raise MalformedMessage("register: not an email address")
        return cls(email.lower(), _str(m, "password", "register", max_len=1024))

    def to_wire(self) -> dict[str, Any]:
        return {"email": self.email, "password": self.password}


@dataclass(frozen=True)
class LoginRequest:
    """Log in with one provider: ``anonymous``, ``email_password`` or ``api_key``."""

    provider: str
    email: str | None = None
    password: str | None = None
    key: str | None = None

    PROVIDERS: ClassVar[frozenset[str]] = frozenset({"anonymous", "email_password", "api_key"})

    @classmethod
    def from_wire(cls, obj: object) -> LoginRequest:
        m = _map(obj, "login")
        provider = _str(m, "provider", "login")
        if provider not in cls.PROVIDERS:
            raise MalformedMessage(f"login: unknown provider {provider!r}")
        if provider == "email_password":
            return cls(
                provider,
                _str(m, "email", "login", max_len=254).lower(),
                _str(m, "password", "login"),
            )
        if provider == "api_key":
            return cls(provider, key=_str(m, "key", "login"))
        return cls(provider)

    def to_wire(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "email": self.email,
            "password": self.password,
            "key": self.key,
        }


@dataclass(frozen=True)
class TokenResponse:
    """Answer to login and refresh; ``refresh_token`` is absent on refresh."""

    user_id: str
    access_token: str
    access_expires_at: int
    refresh_token: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "access_token": self.access_token,
            "access_expires_at": self.access_expires_at,
            "refresh_token": self.refresh_token,
        }

    @classmethod
    def from_wire(cls, obj: object) -> TokenResponse:
        m = _map(obj, "token")
        return cls(
            _str(m, "user_id", "token"),
            _str(m, "access_token", "token", max_len=4096),
            _uint(m, "access_expires_at", "token"),
            _str(m, "refresh_token", "token", optional=True, max_len=4096),
        )


@dataclass(frozen=True)
class ApiKeyRequest:
    """Create an API key for the calling user."""

    name: str

    @classmethod
    def from_wire(cls, obj: object) -> ApiKeyRequest:
        return cls(_name(_map(obj, "api key").get("name"), "api key name"))


@dataclass(frozen=True)
class ApiKeyResponse:
    """A created (``key`` set once) or listed API key."""

    id: str
    name: str
    key: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "key": self.key}


@dataclass(frozen=True)
class IdentRequest:
    """Ask for a file ident.  The same ``nonce`` from the same user gets the same
    answer, so a lost response can be retried without leaking idents."""

    nonce: str

    @classmethod
    def from_wire(cls, obj: object) -> IdentRequest:
        nonce = _str(_map(obj, "ident"), "nonce", "ident", max_len=128)
        if len(nonce) < 8:
            raise MalformedMessage("ident: nonce must have at least 8 characters")
        return cls(nonce)

    def to_wire(self) -> dict[str, Any]:
        return {"nonce": self.nonce}


@dataclass(frozen=True)
class IdentResponse:
    """A server-assigned file ident and its salt (the client stores both)."""

    file_ident: int
    salt: int
    server_salt: int

    def to_wire(self) -> dict[str, Any]:
        return {"file_ident": self.file_ident, "salt": self.salt, "server_salt": self.server_salt}


@dataclass(frozen=True)
class SchemaRequest:
    """The client's schema; in development mode the server adopts additions."""

    tables: Mapping[str, TableSpec]

    @classmethod
    def from_wire(cls, obj: object) -> SchemaRequest:
        return cls(_tables_from_wire(_map(obj, "schema").get("tables"), "schema.tables"))

    def to_wire(self) -> dict[str, Any]:
        return {"tables": {k: v.to_wire() for k, v in self.tables.items()}}


class _FileMsg:
    @staticmethod
    def _ident(m: Mapping[str, Any], what: str) -> tuple[int, int]:
        return _uint(m, "file_ident", what), _uint(m, "salt", what)


@dataclass(frozen=True)
class UploadRequest(_FileMsg):
    """Changesets in increasing ``client_version``; already-integrated ones are skipped."""

    file_ident: int
    salt: int
    changesets: tuple[Changeset, ...]

    @classmethod
    def from_wire(cls, obj: object) -> UploadRequest:
        m = _map(obj, "upload")
        fi, salt = cls._ident(m, "upload")
        raw = _get(m, "changesets", list, "upload")
        css = tuple(Changeset.from_wire(c, f"changeset {i}") for i, c in enumerate(raw))
        for a, b in zip(css, css[1:]):
            if b.client_version <= a.client_version:
                raise MalformedMessage("upload: client versions must increase")
        return cls(fi, salt, css)

    def to_wire(self) -> dict[str, Any]:
        return {
            "file_ident": self.file_ident,
            "salt": self.salt,
            "changesets": [c.to_wire() for c in self.changesets],
        }


@dataclass(frozen=True)
class RejectedWrite:
    """A write the permission rules refused; undone by a compensating reset."""

    client_version: int
    table: str
    pk: PrimaryKey
    reason: str
    server_version: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "client_version": self.client_version,
            "table": self.table,
            "pk": self.pk,
            "reason": self.reason,
            "server_version": self.server_version,
        }

    @classmethod
    def from_wire(cls, obj: object) -> RejectedWrite:
        m = _map(obj, "rejected write")
        return cls(
            _uint(m, "client_version", "rejected"),
            _str(m, "table", "rejected"),
            m.get("pk"),
            _str(m, "reason", "rejected", max_len=4096),
            _uint(m, "server_version", "rejected"),
        )


@dataclass(frozen=True)
class UploadResponse:
    """``acked_client_version``: every changeset up to it is durably integrated."""

    acked_client_version: int
    server_version: int
    rejected: tuple[RejectedWrite, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {
            "acked_client_version": self.acked_client_version,
            "server_version": self.server_version,
            "rejected": [r.to_wire() for r in self.rejected],
        }

    @classmethod
    def from_wire(cls, obj: object) -> UploadResponse:
        m = _map(obj, "upload response")
        return cls(
            _uint(m, "acked_client_version", "upload response"),
            _uint(m, "server_version", "upload response"),
            tuple(RejectedWrite.from_wire(r) for r in _get(m, "rejected", list, "upload response")),
        )


@dataclass(frozen=True)
class SubscriptionRequest(_FileMsg):
    """A new subscription set: ``queries`` maps a table to [query text, args] pairs."""

    file_ident: int
    salt: int
    query_version: int
    queries: Mapping[str, tuple[tuple[str, tuple[Any, ...]], ...]]

    @classmethod
    def from_wire(cls, obj: object) -> SubscriptionRequest:
        m = _map(obj, "subscriptions")
        fi, salt = cls._ident(m, "subscriptions")
        qv = _uint(m, "query_version", "subscriptions")
        raw = _map(m.get("queries"), "subscriptions.queries")
        queries: dict[str, tuple[tuple[str, tuple[Any, ...]], ...]] = {}
        total = 0
        for table, qs in raw.items():
            _name(table, "subscription table")
            if not isinstance(qs, list):
                raise MalformedMessage("subscriptions: each table maps to a list of [query, args]")
            items = []
            for q in qs:
                if not (
                    isinstance(q, list)
                    and len(q) == 2
                    and isinstance(q[0], str)
                    and isinstance(q[1], list)
                ):
                    raise MalformedMessage("subscriptions: a query is [text, [args...]]")
                if len(q[0]) > 4096:
                    raise MalformedMessage("subscriptions: query text too long")
                items.append((q[0], tuple(q[1])))
            total += len(items)
            queries[table] = tuple(items)
        if total > 1000:
            raise MalformedMessage("subscriptions: at most 1000 queries")
        return cls(fi, salt, qv, queries)

    def to_wire(self) -> dict[str, Any]:
        return {
            "file_ident": self.file_ident,
            "salt": self.salt,
            "query_version": self.query_version,
            "queries": {t: [[q, list(a)] for q, a in qs] for t, qs in self.queries.items()},
        }


@dataclass(frozen=True)
class SubscriptionResponse:
    """The accepted query version and its server-side state."""

    query_version: int
    state: str

    def to_wire(self) -> dict[str, Any]:
        return {"query_version": self.query_version, "state": self.state}


BATCH_STATES: Final = frozenset({"more", "last", "steady"})


@dataclass(frozen=True)
class DownloadRequest(_FileMsg):
    """Long-poll for changes after ``after_server_version`` (or continue a bootstrap)."""

    file_ident: int
    salt: int
    after_server_version: int
    bootstrap_token: bytes | None = None
    wait_ms: int = 0
    max_bytes: int = 1 << 20
    query_version: int | None = None
    """The query version whose bootstrap the client applied (None: not said)."""
    skip_own: bool = False
    """The client holds every operation it wrote: an incremental batch may leave out objects
    whose server state holds only this file's operations (the cursor still moves past them)."""

    @classmethod
    def from_wire(cls, obj: object) -> DownloadRequest:
        m = _map(obj, "download")
        fi, salt = cls._ident(m, "download")
        after = _uint(m, "after_server_version", "download")
        token = _get(m, "bootstrap_token", bytes, "download", optional=True)
        if token is not None and len(token) > 4096:
            raise MalformedMessage("download: bootstrap token too long")
        wait = _uint(m, "wait_ms", "download", optional=True, default=0, maximum=60_000)
        mb = _uint(m, "max_bytes", "download", optional=True, default=1 << 20, maximum=64 << 20)
        qv = _get(m, "query_version", int, "download", optional=True)
        if qv is not None and not 0 <= qv < 2**63:
            raise MalformedMessage("download: 'query_version' out of range")
        skip_own = _get(m, "skip_own", bool, "download", optional=True, default=False)
        return cls(fi, salt, after, token, wait, max(mb, 1024), qv, skip_own)

    def to_wire(self) -> dict[str, Any]:
        return {
            "file_ident": self.file_ident,
            "salt": self.salt,
            "after_server_version": self.after_server_version,
            "bootstrap_token": self.bootstrap_token,
            "wait_ms": self.wait_ms,
            "max_bytes": self.max_bytes,
            "query_version": self.query_version,
            "skip_own": self.skip_own,
        }


@dataclass(frozen=True)
class DownloadEntry:
    """One object in a download.

    ``kind``: ``state`` (join this merge state into the local object),
    ``forget`` (the object left the client's view: remove it locally, it is not
    deleted on the server), ``reset`` (a compensating write: replace the local
    object by ``state``, or remove it when ``state`` is nil, then re-apply
    local changesets not yet acknowledged; ``error`` says why).
    """

    kind: str
    table: str
    pk: PrimaryKey
    state: Any = None
    error: RejectedWrite | None = None

    KINDS: ClassVar[frozenset[str]] = frozenset({"state", "forget", "reset"})

    def to_wire(self) -> list[Any]:
        return [
            self.kind,
            self.table,
            self.pk,
            self.state,
            None if self.error is None else self.error.to_wire(),
        ]

    @classmethod
    def from_wire(cls, obj: object) -> DownloadEntry:
        if not isinstance(obj, list) or len(obj) != 5 or obj[0] not in cls.KINDS:
            raise MalformedMessage("download entry: [kind, table, pk, state, error]")
        return cls(
            obj[0],
            _name(obj[1], "entry table"),
            obj[2],
            obj[3],
            None if obj[4] is None else RejectedWrite.from_wire(obj[4]),
        )


@dataclass(frozen=True)
class DownloadResponse:
    """A download batch.

    After applying ``entries`` (atomically, together with the cursor), the
    client's cursor is ``server_version``.  ``batch`` is ``more`` (call again
    at once, passing ``bootstrap_token`` when set), ``last`` (end of a
    bootstrap for ``query_version``) or ``steady`` (caught up).
    """

    server_version: int
    latest_server_version: int
    server_salt: int
    acked_client_version: int
    query_version: int
    batch: str
    progress: float
    entries: tuple[DownloadEntry, ...]
    bootstrap_token: bytes | None = None
    skipped_own: int = 0
    """Not on the wire (the server's own bookkeeping): how many states ``skip_own`` left out.
    A long poll answers such a batch at once, although it has no entries, so that the
    client's cursor (and ``wait_for_download``) follows its own uploads."""

    def to_wire(self) -> dict[str, Any]:
        return {
            "server_version": self.server_version,
            "latest_server_version": self.latest_server_version,
            "server_salt": self.server_salt,
            "acked_client_version": self.acked_client_version,
            "query_version": self.query_version,
            "batch": self.batch,
            "progress": self.progress,
            "entries": [e.to_wire() for e in self.entries],
            "bootstrap_token": self.bootstrap_token,
        }

    def pack(self) -> bytes:
        """``pack(self.to_wire())``, byte for byte, encoded one entry at a time.

        Why: one ``msgpack.packb`` of a whole batch (up to 64 MiB) is one C call
        that holds the GIL throughout (~55 ms for 20,000 small objects), stalling
        the server's event loop; entry by entry, other threads run in between.
        """
        wire = self.to_wire()
        header = msgpack.Packer()
        out = [header.pack_map_header(len(wire))]
        for key, value in wire.items():
            out.append(pack(key))
            if key == "entries":
                out.append(header.pack_array_header(len(value)))
                out.extend(pack(e) for e in value)
            else:
                out.append(pack(value))
        return b"".join(out)

    @classmethod
    def from_wire(cls, obj: object) -> DownloadResponse:
        m = _map(obj, "download response")
        w = "download response"
        batch = _str(m, "batch", w)
        if batch not in BATCH_STATES:
            raise MalformedMessage(f"{w}: unknown batch state {batch!r}")
        return cls(
            _uint(m, "server_version", w),
            _uint(m, "latest_server_version", w),
            _uint(m, "server_salt", w),
            _uint(m, "acked_client_version", w),
            _uint(m, "query_version", w),
            batch,
            float(_get(m, "progress", (float, int), w)),
            tuple(DownloadEntry.from_wire(e) for e in _get(m, "entries", list, w)),
            _get(m, "bootstrap_token", bytes, w, optional=True),
        )


def ensure_sequence(obj: object, what: str) -> Sequence[Any]:
    """Return ``obj`` if it is a msgpack array, else raise ``MalformedMessage``."""
    if not isinstance(obj, list):
        raise MalformedMessage(f"{what} must be an array")
    return obj
