"""Flexible-sync subscriptions: which objects this file wants from the server.

Why they are stored in the file (``_sync.subs``): every process of the file
sees the same subscriptions and their states, whichever process changed them
and whichever runs the sync agent.  A ``disconnected_sync`` secondary may
update them (Realm forbids it; realmpy allows it on purpose): the commit wakes
the agent, which posts the new set, and ``wait_for_synchronization`` works in
the secondary as in the main process.  Each committed change is a new *version*
(the protocol's ``query_version``); its state moves

    pending → bootstrapping → complete        (or error; older sets → superseded)

``pending``: committed locally, not yet accepted by the server;
``bootstrapping``: accepted, the matching objects are being downloaded;
``complete``: the bootstrap is applied to the file (so a query run after
:meth:`SubscriptionSet.wait_for_synchronization` returns sees the data);
``error``: the server refused the set (``error`` says why);
``superseded``: a newer set replaced it.

Objects that leave every subscription are removed from the file by the
server's ``forget`` entries (see ``integrate``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any, Final

import realmpy.waiting as waiting
from realmpy.errors import ConfigurationError
from realmpy.mapnames import in_file_names
from realmpy.storage import Environment, Snapshot, WriteTransaction
from realmpy.sync.errors import SubscriptionError, SyncTimeoutError
from realmpy.sync.history import SUBS, cv_key, key_cv
from realmpy.sync.status import read_error
from realmpy.wire import protocol as P

if TYPE_CHECKING:
    from realmpy.realm import Realm
    from realmpy.results import Results

__all__ = ["MutableSubscriptionSet", "Subscription", "SubscriptionSet", "SubscriptionSetState"]


class SubscriptionSetState(str, Enum):
    """Where a subscription set is on its way to the server and back."""

    PENDING = "pending"
    BOOTSTRAPPING = "bootstrapping"
    COMPLETE = "complete"
    ERROR = "error"
    SUPERSEDED = "superseded"


@dataclass(frozen=True)
class Subscription:
    """One query of a subscription set."""

    name: str | None
    object_class_name: str
    query_string: str
    args: tuple[Any, ...]
    created_at: datetime
    updated_at: datetime

    def _wire(self) -> list[Any]:
        return [
            self.name,
            self.object_class_name,
            self.query_string,
            list(self.args),
            int(self.created_at.timestamp() * 1000),
            int(self.updated_at.timestamp() * 1000),
        ]

    @classmethod
    def _from(cls, w: list[Any]) -> Subscription:
        return cls(w[0], w[1], w[2], tuple(w[3]), _dt(w[4]), _dt(w[5]))


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def _now() -> datetime:
    return datetime.now(timezone.utc)


# ----------------------------------------------------------------------------- storage


def _read(txn: Snapshot | WriteTransaction, qv: int | None = None) -> tuple[int, dict[str, Any]]:
    """(version, record) of set ``qv`` or of the newest set; version 0 = the empty initial set."""
    if qv is None:
        for k, v in txn.scan(SUBS, reverse=True):
            return key_cv(k), P.unpack(v)
        return 0, {"state": "complete", "error": None, "subs": []}
    raw = txn.get(SUBS, cv_key(qv))
    if raw is None:
        return 0, {"state": "complete", "error": None, "subs": []}
    return qv, P.unpack(raw)


def _write(txn: WriteTransaction, qv: int, rec: dict[str, Any]) -> None:
    txn.put(SUBS, cv_key(qv), P.pack(rec))


_RANK: Final = {"pending": 0, "bootstrapping": 1, "complete": 2, "superseded": 3, "error": 3}
"""A set's state only moves up this order: the agent's two threads learn about one set from two
answers (the upload thread's post, the download thread's bootstrap) in either order, and the
older answer must not undo the newer (``complete`` → ``bootstrapping`` after
``wait_for_synchronization`` returned).  Only a client reset sends a set again from ``pending``
(``repend_latest``: the server forgot it with the old identity)."""


def mark(
    txn: WriteTransaction, qv: int, state: SubscriptionSetState, error: str | None = None
) -> None:
    """Move set ``qv`` up to ``state``; a complete set supersedes every older one."""
    v, rec = _read(txn, qv)
    if v == 0 or _RANK[rec["state"]] >= _RANK[state.value]:
        return
    rec["state"] = state.value
    rec["error"] = error
    _write(txn, qv, rec)
    if state is SubscriptionSetState.COMPLETE:
        for k, raw in list(txn.scan(SUBS, None, cv_key(qv))):
            old = P.unpack(raw)
            if old["state"] != "superseded":
                old["state"] = "superseded"
                txn.put(SUBS, k, P.pack(old))


def to_post(
    txn: Snapshot | WriteTransaction, sent: int
) -> tuple[int, dict[str, list[list[Any]]]] | None:
    """The newest set if the server has not accepted it yet: (version, table → [[query, args]])."""
    qv, rec = _read(txn)
    if qv <= sent or rec["state"] not in ("pending", "bootstrapping"):
        return None
    queries: dict[str, list[list[Any]]] = {}
    for w in rec["subs"]:
        s = Subscription._from(w)
        queries.setdefault(s.object_class_name, []).append([s.query_string, list(s.args)])
    return qv, queries


def on_download(txn: WriteTransaction, resp: P.DownloadResponse) -> None:
    """Advance the set the server says it is serving (called inside the download's transaction)."""
    qv = resp.query_version
    if qv == 0:
        return
    v, rec = _read(txn, qv)
    if v == 0:
        return
    if resp.batch == "more" and rec["state"] == "pending":
        mark(txn, qv, SubscriptionSetState.BOOTSTRAPPING)
    elif resp.batch in ("last", "steady") and rec["state"] in ("pending", "bootstrapping"):
        mark(txn, qv, SubscriptionSetState.COMPLETE)


def repend_latest(txn: WriteTransaction) -> None:
    """After a client reset the new file ident has no subscriptions: send the newest set again."""
    qv, rec = _read(txn)
    if qv and rec["state"] in ("complete", "bootstrapping"):
        rec["state"] = "pending"
        _write(txn, qv, rec)


# ----------------------------------------------------------------------------- public API


class SubscriptionSet:
    """The newest subscription set of a realm's file (``realm.subscriptions``).

    Reading it always looks at the file, so it reflects changes made by any
    process.  Change it with :meth:`update`.
    """

    def __init__(self, realm: Realm) -> None:
        self._realm = realm

    @property
    def _env(self) -> Environment:
        return self._realm._env

    def _snapshot(self) -> tuple[int, dict[str, Any]]:
        with self._env.read() as snap:
            return _read(snap)

    @property
    def version(self) -> int:
        """The newest set's version (0 before the first update)."""
        return self._snapshot()[0]

    @property
    def state(self) -> SubscriptionSetState:
        return SubscriptionSetState(self._snapshot()[1]["state"])

    @property
    def error(self) -> str | None:
        """Why the server refused the set (state ``error``), else None."""
        return self._snapshot()[1].get("error")

    def _subs(self) -> list[Subscription]:
        return [Subscription._from(w) for w in self._snapshot()[1]["subs"]]

    def __len__(self) -> int:
        return len(self._subs())

    def __iter__(self) -> Iterator[Subscription]:
        return iter(self._subs())

    def find(self, results: Results[Any]) -> Subscription | None:
        """The subscription with the same class, query and arguments as ``results``, if any."""
        table, text, args = _describe(results)
        for s in self._subs():
            if (s.object_class_name, s.query_string, s.args) == (table, text, args):
                return s
        return None

    def find_by_name(self, name: str) -> Subscription | None:
        for s in self._subs():
            if s.name == name:
                return s
        return None

    def update(self) -> MutableSubscriptionSet:
        """``with realm.subscriptions.update() as subs: subs.add(...)`` commits a new version on exit."""
        if self._realm.is_in_transaction:
            raise SubscriptionError(
                "cannot update subscriptions inside an open write transaction of the same realm: "
                "commit it first",
                code="wrong_state",
            )
        qv, rec = self._snapshot()
        return MutableSubscriptionSet(self._env, qv, [Subscription._from(w) for w in rec["subs"]])

    def wait_for_synchronization(self, timeout: float | None = None) -> bool:
        """Block until the newest set (at the call) is complete; raise if the server refused it.

        Returns True once the matching objects are in the file (or a newer set superseded it).
        """
        ready, timed_out = self._synchronized(timeout)
        waiting.wait_until(self._env, ready, timeout, timed_out=timed_out)
        return True

    async def wait_for_synchronization_async(self, timeout: float | None = None) -> bool:
        """:meth:`wait_for_synchronization` for asyncio: the event loop runs on while it waits."""
        ready, timed_out = self._synchronized(timeout)
        await waiting.wait_until_async(self._env, ready, timeout, timed_out=timed_out)
        return True

    def _synchronized(
        self, timeout: float | None
    ) -> tuple[Callable[[], bool], Callable[[], SyncTimeoutError]]:
        """(ready, timed_out) of a wait for the newest set at the call."""
        with self._env.read() as snap:
            target, _ = _read(snap)
        state = ["complete"]

        def ready() -> bool:
            if target == 0:
                return True
            with self._env.read() as snap:
                _, rec = _read(snap, target)
                final = read_error(snap)
            state[0] = rec["state"]
            if state[0] in ("complete", "superseded"):
                return True
            if state[0] == "error":
                raise SubscriptionError(
                    f"subscription set {target} was refused: {rec.get('error')}",
                    code="subscription_error",
                )
            if final is not None:
                raise final  # the session stopped for good: the set cannot complete
            return False

        def timed_out() -> SyncTimeoutError:
            return SyncTimeoutError(
                f"subscription set {target} is still {state[0]} after {timeout}s ({self._why()})",
                code="timeout",
            )

        return ready, timed_out

    def _why(self) -> str:
        """What a timed-out wait says about the session (its last error, or whether an agent runs)."""
        try:
            session = self._realm.sync_session
        except ConfigurationError:
            return "no sync session"
        last = session.last_error
        if last is not None:
            return f"last error: [{last.code}] {last.message}"
        if session.agent_pid is None:
            return "no process is syncing this file: open it with a flexible_sync configuration"
        return f"connection {session.connection_state.value}"

    def __repr__(self) -> str:
        qv, rec = self._snapshot()
        return f"<SubscriptionSet v{qv} {rec['state']} {len(rec['subs'])} subscription(s)>"


def _describe(results: Results[Any]) -> tuple[str, str, tuple[Any, ...]]:
    q = results._query
    # The server knows properties by their file names (field(map_to=...)).
    realm = getattr(results, "_realm", None)
    if q is None:
        text = "TRUEPREDICATE"
    elif realm is None:
        text = q.text
    else:
        text = in_file_names(realm._schema, results._name, q)
    args = tuple(results._args)
    try:
        P.pack(list(args))
    except TypeError as exc:
        raise SubscriptionError(
            f"subscription arguments must be plain values: {exc}", code="invalid_query"
        ) from None
    return results._name, text, args


class MutableSubscriptionSet:
    """A subscription set being edited; committed as a new version when the ``with`` block exits cleanly."""

    def __init__(self, env: Environment, base_version: int, subs: list[Subscription]) -> None:
        self._env = env
        self._base = base_version
        self._subs = list(subs)
        self._changed = False

    def __iter__(self) -> Iterator[Subscription]:
        return iter(list(self._subs))

    def __len__(self) -> int:
        return len(self._subs)

    def add(
        self, results: Results[Any], *, name: str | None = None, update: bool = False
    ) -> Subscription:
        """Subscribe to ``results`` (``realm.query(Car, "miles > 100")``); idempotent for the same query.

        A ``name`` already used by another query raises unless ``update=True``,
        which replaces that query.
        """
        table, text, args = _describe(results)
        now = _now()
        for i, s in enumerate(self._subs):
            if name is not None and s.name == name:
                if (s.object_class_name, s.query_string, s.args) == (table, text, args):
                    return s
                if not update:
                    raise SubscriptionError(
                        f"a subscription named {name!r} already exists with another query; pass update=True to replace it",
                        code="duplicate_subscription",
                    )
                new = Subscription(name, table, text, args, s.created_at, now)
                self._subs[i] = new
                self._changed = True
                return new
            if name is None and (s.object_class_name, s.query_string, s.args) == (
                table,
                text,
                args,
            ):
                return s
        new = Subscription(name, table, text, args, now, now)
        self._subs.append(new)
        self._changed = True
        return new

    def remove(self, results: Results[Any]) -> bool:
        """Remove every subscription with the same query as ``results``."""
        key = _describe(results)
        before = len(self._subs)
        self._subs = [s for s in self._subs if (s.object_class_name, s.query_string, s.args) != key]
        self._changed |= len(self._subs) != before
        return len(self._subs) != before

    def remove_by_name(self, name: str) -> bool:
        before = len(self._subs)
        self._subs = [s for s in self._subs if s.name != name]
        self._changed |= len(self._subs) != before
        return len(self._subs) != before

    def remove_by_class(self, cls: type) -> int:
        """Remove every subscription on model ``cls``; returns how many."""
        name = getattr(cls, "__realm_name__", cls.__name__)
        before = len(self._subs)
        self._subs = [s for s in self._subs if s.object_class_name != name]
        self._changed |= len(self._subs) != before
        return before - len(self._subs)

    def clear(self) -> None:
        self._changed |= bool(self._subs)
        self._subs = []

    def commit(self) -> int:
        """Store the edited set as a new pending version (no-op if nothing changed); returns its version."""
        if not self._changed:
            return self._base
        with self._env.write(record_history=False) as txn:
            qv, _ = _read(txn)
            qv += 1
            _write(
                txn,
                qv,
                {
                    "state": "pending",
                    "error": None,
                    "subs": [s._wire() for s in self._subs],
                    "created": int(time.time() * 1000),
                },
            )
            # Older sets that never completed will never be served.
            for k, raw in list(txn.scan(SUBS, None, cv_key(qv))):
                old = P.unpack(raw)
                if old["state"] in ("pending", "bootstrapping"):
                    old["state"] = "superseded"
                    txn.put(SUBS, k, P.pack(old))
        self._changed = False
        self._base = qv
        return qv

    def __enter__(self) -> MutableSubscriptionSet:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
