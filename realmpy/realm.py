"""The Realm: models on top of ``realmpy.storage``.

The realm is the façade of the object layer: lifecycle, transactions,
refresh, reads and writes.  The rest lives in one module per concept: the
on-disk names in :mod:`realmpy.layout` (every table and key: docs/format.md),
the per-class layout in :mod:`realmpy.classinfo`, opening and migrating a
file in :mod:`realmpy.migration`, the query executor in
:mod:`realmpy.execute`, ``add_all``'s bulk path in :mod:`realmpy.bulkadd`,
embedded objects' store in :mod:`realmpy.embeddedstore`, and clearing links
to deleted objects in :mod:`realmpy.deletedlinks`.

When a realm advances (auto-refresh), exactly:

1. every *read* of a live realm — :meth:`Realm.find`, :meth:`Realm.all`,
   :meth:`Realm.query`, ``len()``/iteration/indexing/``first()`` of
   :class:`~realmpy.results.Results`, and reading a property of a managed
   object — first moves the realm to the newest committed version (one
   atomic load when nothing changed).  So a read that starts after another
   process's commit returned sees it, with no ``refresh()``;
2. :meth:`Realm.begin_write` / :meth:`Realm.write` always start from the
   newest version (the writer lock serialises all writers);
3. :meth:`Realm.refresh` advances and delivers pending notifications;
4. it never advances inside an open write transaction (reads see the
   transaction's own changes), and a frozen realm never advances.

Iterating a ``Results`` walks the list of objects computed when the
iteration started, so membership and order never change under the loop; the
objects themselves are live (reading one gives its newest values).

A live realm belongs to the thread that opened it (other threads get
:class:`~realmpy.errors.RealmThreadError`); open one per thread — they
share one storage environment and one notifier per file and process.  A
frozen realm from :meth:`Realm.freeze` (with its results and objects) is
immutable and usable from any thread (:mod:`realmpy.sharedsnapshot`).
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar, cast

import realmpy.codec as codec
import realmpy.migration as _migration
import realmpy.mixed as _mixed
import realmpy.results as _results
from realmpy._native import RealmState
from realmpy._native import make_object as _make_object
from realmpy.classinfo import K_COUNTER, K_PLAIN, ClassInfo
from realmpy.codec import Link, MixedLink
from realmpy.config import Configuration
from realmpy.deletedlinks import clear_links, embedded_reach, link_reach
from realmpy.errors import (
    ClosedRealmError,
    CodecError,
    ConfigurationError,
    DuplicatePrimaryKeyError,
    FrozenRealmError,
    InvalidObjectError,
    ObjectTypeError,
    RealmThreadError,
    SchemaError,
    TransactionStateError,
    WriteLockTimeoutError,
    WrongRealmError,
)
from realmpy.hooks import Listenable
from realmpy.layout import (
    META,
    backlink_name,
    fulltext_name,
    index_name,
    table_name,
)
from realmpy.ondemand import on_first_use
from realmpy.schema import (
    MAX_EMBEDDED_DEPTH,
    Counter,
    EmbeddedObject,
    Object,
    ObjectSchema,
    Property,
    Schema,
    _Model,
    bind_counter,
    object_schema,
    validate_value,
)
from realmpy.sharedfile import SharedFile
from realmpy.storage import Snapshot, WriteTransaction

# The write path's modules and the waits: imported where first used, so that
# a new process that opens and reads does not load them (realmpy.ondemand).
if TYPE_CHECKING:
    import realmpy.backlinkindex as _backlinkindex
    import realmpy.bulkadd as _bulkadd
    import realmpy.embeddedstore as _embeddedstore
    import realmpy.fulltextindex as _fulltextindex
    import realmpy.managed as _managed
    import realmpy.waiting as _waiting
else:
    _backlinkindex = on_first_use("realmpy.backlinkindex", "_backlinkindex", globals())
    _bulkadd = on_first_use("realmpy.bulkadd", "_bulkadd", globals())
    _embeddedstore = on_first_use("realmpy.embeddedstore", "_embeddedstore", globals())
    _fulltextindex = on_first_use("realmpy.fulltextindex", "_fulltextindex", globals())
    _managed = on_first_use("realmpy.managed", "_managed", globals())
    _waiting = on_first_use("realmpy.waiting", "_waiting", globals())

if TYPE_CHECKING:
    import asyncio  # at run time only where a coroutine runs: see refresh_async

    import realmpy.query as _query
    from realmpy.query.bind import Binding
    from realmpy.results import Results
    from realmpy.sync.session import SyncSession  # types only: no run-time import of the sync layer
    from realmpy.sync.subscriptions import SubscriptionSet

__all__ = ["Realm", "Transaction"]

T = TypeVar("T", bound=Object)
_T = TypeVar("_T")

_get_ident = threading.get_ident
_encode_key = codec.encode_key
_unpack_row = codec.unpack_row
_decode_value = codec.decode_value
_pack = codec.pack_row
_OPTS = codec.RECORD_OPTIONS
# Stored mixed values that a read converts (the others are their value).
_MIXED_CONTAINERS: Final = (MixedLink, list, dict)
# How many validated (class, query text) pairs a realm remembers.
_VALID_QUERIES_MAX: Final = 1024


class Transaction:
    """An open write transaction; also a context manager.

    ``with realm.write():`` commits on a clean exit and rolls back on an
    exception.  ``realm.begin_write()`` returns the same object for explicit
    ``commit()`` / ``rollback()``.
    """

    def __init__(self, realm: Realm) -> None:
        self._realm = realm

    @property
    def is_open(self) -> bool:
        return self._realm._wtxn_owner is self

    def commit(self) -> None:
        if not self.is_open:
            raise TransactionStateError("this transaction is no longer open")
        self._realm._commit()

    def rollback(self) -> None:
        if not self.is_open:
            raise TransactionStateError("this transaction is no longer open")
        self._realm._rollback()

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # commit() / rollback() inlined: this runs once per write() block.
        realm = self._realm
        if realm._wtxn_owner is not self:
            return
        if exc_type is None:
            realm._commit()
        else:
            realm._rollback()


# ----------------------------------------------------------------------------
# The realm


class Realm(RealmState, Listenable):
    """A realm opened with a :class:`~realmpy.config.Configuration`.

    Also a context manager (closes on exit).  See the module docstring for
    exactly when a live realm advances to newer versions.
    """

    _open_realms: ClassVar[weakref.WeakSet[Realm]] = weakref.WeakSet()
    """Every live realm of this process (for :meth:`shutdown`)."""
    _open_lock: ClassVar[threading.Lock] = threading.Lock()

    @staticmethod
    def shutdown() -> None:
        """Close every realm this process has open, from any thread, and so stop its sync agents.

        Realm's ``Realm.shutdown()``: for the end of a program or a test (a
        standby elsewhere takes over syncing at once).  Objects and results of
        the closed realms become unusable; a realm can be opened again after.
        """
        with Realm._open_lock:
            realms = list(Realm._open_realms)
        for realm in realms:
            realm.close()

    def __init__(self, config: Configuration) -> None:
        if not isinstance(config, Configuration):
            raise ConfigurationError(f"Realm() takes a Configuration, not {type(config).__name__}")
        self._closed = True
        self._config = config
        self._frozen = False
        self._any_thread = False  # a frozen realm from freeze(): see _check
        self._owner = threading.get_ident()
        # The owner's thread id while open, else None: one comparison checks
        # both.  _guard, _version, _stamp and _vh are C fields of RealmState,
        # which the property descriptors read directly (realmpy._native).
        self._guard = None
        self._wtxn: WriteTransaction | None = None
        self._wtxn_owner: Transaction | None = None
        # The write transaction whose one-call adds were decided (see
        # _add_slow): None until the first add of each transaction.
        self._direct: WriteTransaction | None = None
        self._snap: Snapshot | None = None
        # The address of the shared version counter that tells whether a
        # newer version exists, while a live snapshot is open (None: no
        # check: no snapshot, a write transaction, or a frozen realm).
        # self._moved() is one atomic load of it; the open snapshot keeps
        # the engine handle, and so the counter, alive.
        self._vh = None
        self._version = 0
        self._stamp = 0
        self._pending: list[Callable[[], None]] = []
        self._pending_lock = threading.Lock()
        self._tokens: list[Any] = []
        # Objects deleted in the open write whose incoming links are not
        # cleared yet: class -> keys (None: all).  See _flush_links.
        self._dead: dict[str, set[bytes] | None] = {}
        # False for a read-only file of an older realmpy without backlink
        # tables (realmpy.backlinkindex): backlinks are then found by a scan.
        self._backlinks_indexed = True
        self._models: dict[str, type[_Model]] = {}
        self._shared = SharedFile.acquire(config)
        self._env = self._shared.env
        self._closed = False
        self._guard = self._owner
        try:
            _migration.open_file(self)
            if config.sync is not None:  # sync hook (issue 5): join the file's sync client
                config.sync.on_open(self)
        except BaseException:
            self.close()
            raise
        with Realm._open_lock:
            Realm._open_realms.add(self)

    # -- opening ------------------------------------------------------------

    def _set_schema(self, schema: Schema) -> None:
        self._schema = schema
        # (class, query text) -> the query bound to that class (checked; its
        # arguments' checks, run on every call).
        self._valid_queries: dict[tuple[str, str], Binding] = {}
        models = {object_schema(m).name: m for m in self._config.schema}
        self._models = models
        self._info = {c.name: ClassInfo(c, models.get(c.name)) for c in schema.classes}
        for info in self._info.values():
            info.plan_linked(models)
        self._by_cls: dict[type, ClassInfo] = {
            m: self._info[n]
            for n, m in models.items()
            if n in self._info and isinstance(m, type) and issubclass(m, Object)
        }
        self._defaults: dict[str, dict[str, Any]] = {n: i.defaults for n, i in self._info.items()}
        self._props: dict[str, dict[str, Property]] = {n: i.props for n, i in self._info.items()}
        self._reach = link_reach(schema)
        self._embedded_reach = embedded_reach(schema)

    # -- static operations --------------------------------------------------

    @staticmethod
    def compact(config: Configuration) -> bool:
        """Compact the file if no process has it open; True if it did."""
        if config.path in SharedFile.registry:
            return False
        if not os.path.exists(config.path):
            return False
        shared = SharedFile.acquire(config)
        try:
            with shared.alone() as alone:
                if not alone:
                    return False
                _migration.compact_in_place(shared, config)
                return True
        finally:
            shared.release()

    @staticmethod
    def delete_realm(path: str | os.PathLike[str]) -> None:
        """Delete a realm's files (the data file and its ``.lock``, ``.session``
        and ``.sync`` side files); refuses while this process has it open."""
        p = os.path.abspath(os.fspath(path))
        if p in SharedFile.registry:
            raise ConfigurationError(f"cannot delete {p}: it is open in this process")
        for suffix in ("", ".lock", ".session", ".sync"):
            try:
                os.unlink(p + suffix)
            except FileNotFoundError:
                pass

    # -- state ------------------------------------------------------------------

    @property
    def config(self) -> Configuration:
        return self._config

    @property
    def schema(self) -> Schema:
        return self._schema

    @property
    def path(self) -> str:
        return self._config.path

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def is_frozen(self) -> bool:
        return self._frozen

    @property
    def is_in_transaction(self) -> bool:
        return self._wtxn is not None

    # -- sync (issue 5: provided by realmpy.sync through config.sync) -----------------

    @property
    def sync_session(self) -> SyncSession:
        """The :class:`realmpy.sync.session.SyncSession` of a synced realm.

        Raises :class:`ConfigurationError` for a local realm, or when the
        configuration kind gives no session (as Realm's ``syncSession`` throws).
        """
        session: SyncSession | None = (
            None if self._config.sync is None else self._config.sync.sync_session(self)
        )
        if session is None:
            raise ConfigurationError(
                f"a {self._config.kind} realm has no sync session: open the file with "
                "Configuration.flexible_sync in the process that syncs it"
            )
        return session

    @property
    def subscriptions(self) -> SubscriptionSet:
        """The :class:`realmpy.sync.subscriptions.SubscriptionSet` of a synced realm."""
        if self._config.sync is None:
            raise ConfigurationError(
                "subscriptions need a flexible_sync or disconnected_sync configuration"
            )
        self._check()
        subs: SubscriptionSet = self._config.sync.subscriptions(self)
        return subs

    @property
    def version(self) -> int:
        """The committed version this realm currently reads."""
        self._check()
        self._reader()
        return self._version

    def _check(self) -> None:
        if self._closed:
            raise ClosedRealmError(f"the realm {self._config.path} is closed")
        if threading.get_ident() != self._owner and not self._any_thread:
            if self._frozen:  # lent to a listener's callback (see _frozen_at)
                raise RealmThreadError(
                    "the frozen results or object a listener receives are valid in "
                    "the callback, on its thread: copy out what you need there, or "
                    "use realm.freeze() for a snapshot that any thread can read"
                )
            raise RealmThreadError(
                "this realm belongs to the thread that opened it: open a Realm in "
                "this thread instead, or pass a frozen one (realm.freeze())"
            )

    def _reader(self) -> Snapshot | WriteTransaction:
        if self._wtxn is not None:
            return self._wtxn
        if self._snap is None:
            snap = self._snap = self._env.read()
            self._version = snap.version
            self._stamp += 1
            if not self._frozen:
                self._vh = self._env.version_address
        return self._snap

    def _safe_point(self) -> None:
        """Advance to the newest version if one exists (see module docs)."""
        if self._moved():
            self._advance()

    def _advance(self) -> None:
        """Move the snapshot to the newest version (in place).

        Bumps the stamp, so every record cached by an object (or rows by a
        Results) before this point is re-read."""
        snap = self._snap
        self._stamp += 1
        if snap is None:
            return
        try:
            snap.refresh()
            self._version = snap.version
        except Exception:  # the snapshot is gone: the next read begins one
            self._snap = None
            self._vh = None

    def _drop_snapshot(self) -> None:
        snap = self._snap
        self._snap = None
        self._vh = None
        if snap is not None:
            snap.end()

    def _read(self) -> Snapshot | WriteTransaction:
        """Entry of every public read: checks, auto-refresh, the reader."""
        if self._closed or _get_ident() != self._owner:
            self._check()
        txn = self._wtxn
        if txn is not None:
            return txn
        snap = self._snap
        if snap is not None:
            if not self._moved():
                return snap
            self._advance()
            if self._snap is not None:
                return self._snap
        return self._reader()

    # -- refresh ----------------------------------------------------------------

    def refresh(self) -> bool:
        """Advance to the newest version now and deliver pending
        notifications of listeners bound to this realm; True if it moved."""
        self._check()
        if self._frozen or self._wtxn is not None:
            return False
        before = self._version
        self._safe_point()
        self._reader()
        self._drain()
        return self._version != before

    async def refresh_async(self) -> bool:
        """Complete when this realm reaches the newest version that existed
        at the call (after its listeners' notifications were computed);
        ``False`` at once if it is already there."""
        self._check()
        if self._frozen or self._wtxn is not None:
            return False
        target = self._env.version
        if self._version >= target:
            return False
        notifier = self._shared.notifier
        if notifier is not None and self._tokens:
            import asyncio  # loaded already: this is a coroutine

            await notifier.wait_processed(target, asyncio.get_running_loop())
        self.refresh()
        return True

    def _post(self, deliver: Callable[[], None], loop: asyncio.AbstractEventLoop) -> None:
        """Queue a delivery for this realm's loop (from the notifier)."""
        with self._pending_lock:
            self._pending.append(deliver)
        try:
            loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # loop closed
            pass

    def _drain(self) -> None:
        if self._closed or threading.get_ident() != self._owner:
            return
        with self._pending_lock:
            todo, self._pending = self._pending, []
        if todo and self._wtxn is None:
            self._safe_point()
        for deliver in todo:
            deliver()

    # -- transactions ----------------------------------------------------------

    def begin_write(self, timeout: float | None = None) -> Transaction:
        """Begin the write transaction at the newest version (waits for
        writers in other processes and threads; at most ``timeout`` seconds
        if given, then :class:`~realmpy.errors.WriteLockTimeoutError`)."""
        if self._closed or _get_ident() != self._owner:
            self._check()
        if self._frozen:
            raise FrozenRealmError("a frozen realm cannot be written")
        if self._config.read_only:
            raise TransactionStateError(f"{self._config.path} was opened read-only")
        if self._wtxn is not None:
            raise TransactionStateError(
                "a write transaction is already open in this realm: nested writes are not supported"
            )
        if self._snap is not None:
            self._drop_snapshot()
        else:
            self._vh = None
        self._wtxn = self._env.write(timeout)
        self._wtxn.track_changes()  # for the commit's change record (realmpy.changelog)
        self._dead = {}
        self._version = self._wtxn.version
        self._stamp += 1
        tx = Transaction(self)
        self._wtxn_owner = tx
        return tx

    def write(self, timeout: float | None = None) -> Transaction:
        """``with realm.write():`` — commits on success, rolls back on error.

        ``timeout`` bounds the wait for the cross-process write lock (seconds;
        None waits as long as another writer holds it):
        :class:`~realmpy.errors.WriteLockTimeoutError` after it, with nothing begun.
        """
        return self.begin_write(timeout)

    async def write_async(self, fn: Callable[[], _T], *, timeout: float | None = None) -> _T:
        """Run ``fn()`` in a write transaction, waiting for the write lock without blocking the loop.

        Realm's ``writeAsync``: returns ``fn``'s result after the commit; an
        exception from ``fn`` rolls back and propagates.  The lock is taken
        only when free (``begin_write(timeout=0)``); while another writer holds
        it the coroutine awaits the next commit of the file (``waiting``), so a
        burst of writers never blocks the event loop; a holder that ends
        without committing is noticed within 50 ms.  Raises
        :class:`~realmpy.errors.WriteLockTimeoutError` after ``timeout``
        seconds.  The commit itself (one ``fdatasync`` with durability
        "full") runs on the loop's thread, which owns this realm.
        """
        self._check()
        began: list[Transaction] = []

        def take() -> bool:
            try:
                began.append(self.begin_write(timeout=0))
            except WriteLockTimeoutError:
                return False
            return True

        def timed_out() -> WriteLockTimeoutError:
            return WriteLockTimeoutError(
                f"write_async: the write lock of {self._config.path} stayed taken for {timeout}s"
            )

        await _waiting.wait_until_async(self._env, take, timeout, timed_out=timed_out, slice_s=0.05)
        with began[0]:
            return fn()

    def _commit(self) -> None:
        txn = self._wtxn
        if txn is None:
            txn = self._require_write()  # raises the reason
        if self._dead:
            self._flush_links()
        # What this commit changed, for listeners (realmpy.changelog).
        txn.record_changes()
        self._wtxn = None
        self._adder = None  # _drop_adder, inlined (once per commit)
        self._direct = None
        self._wtxn_owner = None
        self._stamp += 1
        base = txn.version
        txn.commit()
        # The next read begins a snapshot lazily; until then this realm is at
        # (at least) its own commit.
        self._version = base + 1

    def _rollback(self) -> None:
        txn = self._require_write()
        self._dead = {}
        self._wtxn = None
        self._drop_adder()
        self._wtxn_owner = None
        self._stamp += 1
        txn.abort()

    def _require_write(self) -> WriteTransaction:
        if self._wtxn is None:
            if self._frozen:
                raise FrozenRealmError("a frozen realm cannot be written")
            raise TransactionStateError(
                "cannot modify objects outside a write transaction: "
                "wrap the change in 'with realm.write():'"
            )
        return self._wtxn

    # -- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        """Close the realm (idempotent); its objects become unusable."""
        if self._closed and not hasattr(self, "_shared"):
            return
        if getattr(self, "_closed_done", False):
            return
        self._closed_done = True
        self._closed = True
        with Realm._open_lock:
            Realm._open_realms.discard(self)
        self._guard = None
        for token in list(getattr(self, "_tokens", [])):
            token.remove()
        try:
            if self._wtxn is not None:
                self._wtxn.abort()
            self._vh = None
            if self._snap is not None:
                self._snap.end()
        except Exception:  # another thread's or a closed env's handle
            pass
        self._wtxn = None
        self._drop_adder()
        self._snap = None
        self._vh = None
        if not self._frozen and self._config.sync is not None:  # sync hook (issue 5)
            self._config.sync.on_close(self)
        if not self._frozen and hasattr(self, "_shared"):
            self._shared.release()

    def __enter__(self) -> Realm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if sys.is_finalizing():
            # CPython has stopped the daemon threads (the notifier's) where
            # they stood, maybe holding a lock close() takes: leave the
            # realm to the process's exit, which releases all it holds.
            return
        try:
            if not self._closed and (threading.get_ident() == self._owner or self._any_thread):
                self.close()
        except Exception:
            pass

    def freeze(self) -> Realm:
        """A frozen realm at this realm's (newest) version.

        It never changes and pins its version until closed (or garbage
        collected).  It, its results and its objects are immutable, so any
        thread may read them, concurrently: pass them to worker threads
        freely (see :mod:`realmpy.sharedsnapshot` for how).
        """
        from realmpy.sharedsnapshot import SharedSnapshot

        self._check()
        if self._frozen:
            return self
        self._safe_point()
        if self._wtxn is not None:
            raise TransactionStateError("cannot freeze inside a write transaction")
        # Duck-typed: a SharedSnapshot has the read methods of a Snapshot.
        snap = cast(Snapshot, SharedSnapshot(self._env))
        return Realm._frozen_at(self, snap, any_thread=True)

    @classmethod
    def _frozen_at(cls, source: Realm, snap: Snapshot, any_thread: bool = False) -> Realm:
        """A frozen realm reading ``snap``.  With ``any_thread`` (``snap`` is
        a :class:`~realmpy.sharedsnapshot.SharedSnapshot`) every thread may use it;
        without, it is the notifier's: lent to callbacks on the thread that
        owns ``snap``, for the duration of the call."""
        r = cls.__new__(cls)
        r._config = source._config
        r._frozen = True
        r._any_thread = any_thread
        r._closed = False
        r._owner = threading.get_ident()
        r._guard = r._owner
        r._wtxn = None
        r._wtxn_owner = None
        r._snap = snap
        r._vh = None
        r._version = snap.version
        r._stamp = 1
        r._pending = []
        r._pending_lock = threading.Lock()
        r._tokens = []
        r._dead = {}
        r._shared = source._shared
        r._env = source._env
        r._schema = source._schema
        r._models = source._models
        r._defaults = source._defaults
        r._props = source._props
        r._info = source._info
        r._by_cls = source._by_cls
        r._reach = source._reach
        r._embedded_reach = source._embedded_reach
        r._backlinks_indexed = source._backlinks_indexed
        r._valid_queries = source._valid_queries
        return r

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("frozen" if self._frozen else "open")
        return f"<Realm {state} {self._config.path} v{self._version}>"

    # -- model lookup -------------------------------------------------------------

    def _class_schema(self, cls: type[_Model]) -> ObjectSchema:
        if not isinstance(cls, type) or not issubclass(cls, Object):
            raise SchemaError(f"{cls!r} is not a model class (subclass realmpy.Object)")
        name = cls.__realm_name__
        if self._models.get(name) is not cls:
            raise SchemaError(
                f"{cls.__name__} is not in this realm's schema: add it to the "
                "Configuration's model list"
            )
        return self._schema[name]

    def _make(
        self, name: str, key: bytes, rec: Sequence[Any] | None = None, stamp: int | None = None
    ) -> Any:
        """A managed object; ``rec`` (a full record read at ``stamp``,
        default now) is cached."""
        return _make_object(
            self._models[name],
            self,
            key,
            rec,
            self._stamp if stamp is None else stamp,
            self._info[name].pos,
        )

    # -- reads ------------------------------------------------------------------------

    def find(self, cls: type[T], primary_key: Any) -> T | None:
        """The object of ``cls`` with this primary key, or ``None``."""
        info = self._by_cls.get(cls)
        if info is None:
            self._class_schema(cls)  # raises the reason
            raise SchemaError(f"{cls!r} is not in this realm's schema")  # pragma: no cover
        check = info.pk_check
        if check is None:
            raise SchemaError(f"{cls.__name__} has no primary key: use query()")
        # _read() inlined: find is a hot path.
        if self._closed or _get_ident() != self._owner:
            self._check()
        txn: Snapshot | WriteTransaction | None = self._wtxn
        if txn is None:
            if self._moved():
                self._advance()
            txn = self._snap
            if txn is None:
                txn = self._reader()
        try:
            value = check(primary_key)
        except ObjectTypeError:
            prop = info.props[info.pk or ""]
            raise ObjectTypeError(
                f"{cls.__name__}'s primary key is {prop.describe()}, got "
                f"{type(primary_key).__name__} {primary_key!r:.60}"
            ) from None
        key = _encode_key(value)
        raw = txn.get(info.table, key)
        if raw is None:
            return None
        obj: T = _make_object(cls, self, key, info.record(raw), self._stamp, info.pos)
        return obj

    def all(self, cls: type[T]) -> Results[T]:
        """Live results of every object of ``cls``."""
        self._class_schema(cls)
        self._check()
        return _results.Results(self, cls, None, ())

    def query(self, cls: type[T], text: str, *args: Any) -> Results[T]:
        """Live results of the objects of ``cls`` matching ``text`` (RQL)."""
        schema = self._class_schema(cls)
        self._check()
        # The query compiler and executor load at the first query, not with
        # realmpy (a realm that only adds, finds and counts never needs them).
        import realmpy.query as _query
        from realmpy.query.bind import bind

        text = _query.with_key_path_args(text, args)  # ``$K0``: a key path given as argument
        q = _query.parse(text)
        bound = self._valid_queries
        binding = bound.get((schema.name, text))
        if binding is None:
            binding = bind(self._schema.__getitem__, schema, q, self._schema.classes)
            if len(bound) < _VALID_QUERIES_MAX:
                bound[(schema.name, text)] = binding
        binding.check_args(args)
        q = binding.query
        if len(args) < q.arg_count:
            raise _query.QueryArgumentError(
                f"the query uses ${q.arg_count - 1} but {len(args)} argument(s) "
                f"were given: {text!r}"
            )
        return _results.Results(self, cls, q, args)

    # -- evaluation (Results and the notifier; the executor is realmpy.execute) -----

    def _evaluate(
        self, name: str, q: _query.Query | None, args: tuple[Any, ...]
    ) -> list[tuple[bytes, list[Any] | None]]:
        import realmpy.execute as _execute  # loaded at the first query (see query)

        return _execute.evaluate(self, name, q, args)

    def _evaluate_raw(
        self, name: str, q: _query.Query | None, args: tuple[Any, ...]
    ) -> list[tuple[bytes, bytes]]:
        import realmpy.execute as _execute  # loaded at the first query (see query)

        return _execute.evaluate_raw(self, name, q, args)

    # -- ObjectStore (managed objects) ------------------------------------------------

    def _record(self, obj: _Model) -> Sequence[Any]:
        """The object's decoded (full, positional) record at the current version.

        Cached on the object with the realm's stamp; the stamp changes
        whenever what this realm reads changes (advance, write, commit), so
        a cached record with the current stamp is current."""
        if self._closed or _get_ident() != self._owner:
            self._check()
        if self._moved():
            self._advance()
        cache = obj._rp_cache
        if cache is not None and cache[0] == self._stamp:
            return cache[1]
        return self._load(obj)

    def _load(self, obj: _Model) -> Sequence[Any]:
        txn = self._reader()
        info = self._info[type(obj).__realm_name__]
        raw = txn.get(info.table, obj._rp_key)
        if raw is None:
            raise InvalidObjectError(
                f"this {info.name} object was deleted (or its write was rolled back)"
            )
        rec = info.record(raw)
        object.__setattr__(obj, "_rp_cache", (self._stamp, rec, info.pos))
        return rec

    def raw_get(self, obj: _Model, name: str) -> Any:
        rec = self._record(obj)
        return rec[self._info[type(obj).__realm_name__].pos[name]]

    def raw_set(self, obj: _Model, name: str, stored: Any) -> None:
        txn = self._require_write()
        cls_name = type(obj).__realm_name__
        info = self._info[cls_name]
        rec = list(self._record(obj))
        prop = info.props[name]
        if prop.primary_key:
            raise ObjectTypeError(
                f"{cls_name}.{name} is the primary key and cannot change: "
                "delete the object and add a new one"
            )
        i = info.pos[name]
        old = rec[i]
        rec[i] = stored
        if prop.type == "link" and info.links:
            _backlinkindex.update(
                txn, info.schema, (prop,), obj._rp_key, {name: old}, {name: stored}
            )
        if prop.fulltext and info.fulltext:
            _fulltextindex.update(
                txn, info.schema, (prop,), obj._rp_key, {name: old}, {name: stored}
            )
        if prop.has_index and old != stored:
            pk = codec.decode_key(obj._rp_key)[0]
            iname = index_name(cls_name, prop.file_name)
            txn.delete(iname, codec.encode_keys(old, pk))
            txn.put(iname, codec.encode_keys(stored, pk), b"")
        txn.put(info.table, obj._rp_key, _pack(rec))
        self._stamp += 1
        object.__setattr__(obj, "_rp_cache", (self._stamp, rec, info.pos))

    def read_backlinks(self, obj: _Model, name: str) -> list[Any]:
        """The objects listed by the declared backlinks property ``name`` of
        ``obj``, in key order (see :meth:`_backlink_rows`)."""
        self._record(obj)  # checks the thread and that obj still exists
        found = self._backlink_rows(type(obj).__realm_name__, name, obj._rp_key)
        if found is None:
            return []
        origin, rows = found
        return [self._make(origin, k, rec) for k, rec in rows]

    def backlinks_results(self, obj: _Model, name: str) -> Any:
        """Live results of the objects that the backlinks property ``name``
        of ``obj`` lists: a query on their class that matches what
        :meth:`read_backlinks` reads from the index."""
        self._record(obj)
        found = _backlinkindex.origin_of(self._info, type(obj).__realm_name__, name)
        model = self._models.get(found[0].name) if found is not None else None
        if found is None or model is None or not issubclass(model, Object):
            raise SchemaError(f"{type(obj).__name__}.{name} has no origin class in this realm")
        prop = found[1]
        if prop.collection is None:
            text = f"{prop.name} == $0"
        elif prop.collection == "dict":
            text = f"ANY {prop.name}.@values == $0"
        else:
            text = f"ANY {prop.name} == $0"
        return self.query(model, text, obj)

    def _backlink_rows(
        self, cls_name: str, name: str, key: bytes
    ) -> tuple[str, list[tuple[bytes, list[Any]]]] | None:
        """:func:`realmpy.backlinkindex.linking_rows` in this realm's view."""
        txn = self._reader()
        return _backlinkindex.linking_rows(
            self._info, txn, self._backlinks_indexed, cls_name, name, key
        )

    def read_plain(self, obj: _Model, name: str) -> Any:
        # The reference for the C descriptor's fast path (realmpy._native),
        # which calls this whenever one of its checks fails: a current cached
        # record is read through the positions cached with it.
        if self._closed or _get_ident() != self._owner:
            self._check()
        if self._moved():
            self._advance()
        cache = obj._rp_cache
        if cache is not None and cache[0] == self._stamp:
            return cache[1][cache[2][name]]
        rec = self._load(obj)
        return rec[self._info[type(obj).__realm_name__].pos[name]]

    def read_property(self, obj: _Model, name: str) -> Any:
        rec = self._record(obj)
        info = self._info[type(obj).__realm_name__]
        stored = rec[info.pos[name]]
        kind = info.kinds[name]
        if kind == K_PLAIN:
            return stored
        if kind == K_COUNTER:
            return bind_counter(obj, name, stored)
        return self._to_py(obj, info.props[name], stored)

    def write_property(self, obj: _Model, name: str, value: Any) -> None:
        self._require_write()
        prop = self._props[type(obj).__realm_name__][name]
        py = validate_value(type(obj), prop, value)
        self.raw_set(obj, name, self._to_stored(prop, py))

    def increment_property(self, obj: _Model, name: str, delta: int) -> None:
        self._require_write()
        current = self.raw_get(obj, name)
        value = current + delta
        if not -(1 << 63) <= value < (1 << 63):
            raise ObjectTypeError(f"counter {name} would overflow 64 bits")
        self.raw_set(obj, name, value)

    # -- conversions ---------------------------------------------------------------------

    def _to_py(self, owner: _Model, prop: Property, stored: Any) -> Any:
        if prop.collection == "list":
            return _managed.ManagedList(self, owner, prop)
        if prop.collection == "set":
            return _managed.ManagedSet(self, owner, prop)
        if prop.collection == "dict":
            return _managed.ManagedDict(self, owner, prop)
        return self._elem_to_py(owner, prop, stored, None)

    def _elem_to_py(self, owner: _Model, prop: Property, stored: Any, slot: Any) -> Any:
        if stored is None:
            return None
        if prop.type == "link":
            target = prop.target or ""
            info = self._info[target]
            raw = self._reader().get(info.table, bytes(stored))
            if raw is None:
                return None
            return self._make(target, bytes(stored), info.record(raw))
        if prop.type == "embedded":
            cls = self._models[prop.target or ""]
            emb = cls.__new__(cls)
            object.__setattr__(
                emb, "_rp_store", _embeddedstore.EmbeddedStore(self, owner, prop.name, slot)
            )
            object.__setattr__(emb, "_rp_key", b"")
            return emb
        if prop.type == "mixed" and type(stored) in _MIXED_CONTAINERS:
            return _mixed.from_stored(
                stored, self._follow_mixed, _mixed.NestedValueList, _mixed.NestedValueDict
            )
        return stored

    def _follow_mixed(self, link: MixedLink) -> Any:
        """The object a mixed value links to, or None if it was deleted (as
        Realm nulls such links) or its class is not in this realm."""
        info = self._info.get(link.cls)
        if info is None or info.schema.embedded:
            return None
        raw = self._reader().get(info.table, link.key)
        if raw is None:
            return None
        return self._make(link.cls, link.key, info.record(raw))

    def _mixed_link(self, target: Any) -> MixedLink:
        """The stored link of a mixed value to ``target`` (added if unmanaged)."""
        name = type(target).__realm_name__
        if name not in self._info:
            raise SchemaError(
                f"a mixed value links to a {type(target).__name__}, which is not in "
                "this realm's schema: add it to the configuration's model list"
            )
        return MixedLink(name, self._link_key(target))

    def _to_stored(self, prop: Property, py: Any, depth: int = 0) -> Any:
        if prop.collection == "list":
            return [self._elem_to_stored(prop, v, depth) for v in py]
        if prop.collection == "set":
            return {self._elem_to_stored(prop, v, depth) for v in py}
        if prop.collection == "dict":
            return {k: self._elem_to_stored(prop, v, depth) for k, v in py.items()}
        return self._elem_to_stored(prop, py, depth)

    def _elem_to_stored(self, prop: Property, v: Any, depth: int = 0) -> Any:
        """``depth``: how many embedded objects ``v`` sits in (see MAX_EMBEDDED_DEPTH)."""
        if v is None:
            return None
        if prop.type == "link":
            return Link(self._link_key(v))
        if prop.type == "embedded":
            return self._embedded_record(v, depth + 1)
        if prop.type == "counter":
            return int(v)
        if prop.type == "mixed":
            return _mixed.to_stored(v, self._mixed_link)
        return v

    def _embedded_record(self, emb: _Model, depth: int = 1) -> dict[str, Any]:
        if depth > MAX_EMBEDDED_DEPTH:
            raise CodecError(
                f"embedded objects nested deeper than {MAX_EMBEDDED_DEPTH} "
                "(realmpy.schema.MAX_EMBEDDED_DEPTH): store deep structures as links"
            )
        schema = object_schema(type(emb))
        rec: dict[str, Any] = {}
        for p in schema.properties:
            value = getattr(emb, p.name)
            if p.collection == "list":
                value = list(value)
            elif p.collection == "set":
                value = set(value)
            elif p.collection == "dict":
                value = dict(value)
            rec[p.name] = self._to_stored(p, value, depth)
        return rec

    def _link_key(self, target: Object) -> bytes:
        store = target._rp_store
        if store is None:
            return self._add(target, update=False, cascade=True)
        if store is not self:
            if getattr(store, "_shared", None) is self._shared and not getattr(
                store, "_frozen", True
            ):
                return target._rp_key
            raise WrongRealmError(
                f"this {type(target).__name__} belongs to another realm instance: "
                "find it in this realm (realm.find) before linking to it"
            )
        return target._rp_key

    # -- writes --------------------------------------------------------------------------

    if TYPE_CHECKING:
        # At run time add is RealmState.add (csrc/py/add.c): a new object of
        # a class without links, in a transaction whose writes no history
        # observer needs to see, is written in one native call; everything
        # else goes to _add_slow.
        def add(self, obj: T, update: bool = False) -> T:
            """Add an unmanaged object (and the unmanaged objects it links to);
            with ``update=True`` replace an existing object with the same
            primary key.  Returns the object, now managed by this realm."""
            ...

    def _add_slow(self, obj: T, update: bool = False) -> T:
        """:meth:`add` beyond the native fast path (its reference)."""
        if self._closed or _get_ident() != self._owner:
            self._check()
        txn = self._wtxn
        if txn is None:
            txn = self._require_write()  # raises the reason
        info = self._by_cls.get(type(obj)) or self._add_info(obj)
        store = obj._rp_store
        if store is self:
            return obj
        if store is not None:
            raise WrongRealmError(f"this {type(obj).__name__} is already managed by another realm")
        if self._direct is not txn:
            # The first add of this transaction: allow the native path if
            # its writes may bypass the storage wrappers.  Then add again,
            # natively (this time, whatever it declines comes back here and
            # takes the general path).
            self._direct = txn
            if self._start_adder(txn):
                return self.add(obj, update)
        if info.simple:
            _bulkadd.add_simple(self, info, [obj], update)
        else:
            self._add(obj, update=update, cascade=False)
        return obj

    def _start_adder(self, txn: WriteTransaction) -> bool:
        """Set ``_adder`` for ``txn`` if some class can take the native add
        path in it: no history observer to call (a synced file's every
        change is observed), and classes with a plan that were not deleted
        from in this transaction (an add there must clear links first)."""
        if not txn.allows_direct():
            return False
        plans = {
            cls: info.add_plan
            for cls, info in self._by_cls.items()
            if info.add_plan is not None and info.name not in self._dead
        }
        if plans:
            self._adder = (txn, txn.changed(), plans)
        return bool(plans)

    def _drop_adder(self) -> None:
        """End the native add path (the transaction ended, or a class's
        objects were deleted): the next add decides again."""
        self._adder = None
        self._direct = None

    def _add_info(self, obj: object) -> ClassInfo:
        info = self._by_cls.get(type(obj))
        if info is not None:
            return info
        if isinstance(obj, EmbeddedObject):
            raise ObjectTypeError(
                f"{type(obj).__name__} is embedded: assign it to a property of an "
                "object instead of adding it"
            )
        if not isinstance(obj, Object):
            raise ObjectTypeError(f"add() takes a model object, not {type(obj).__name__}")
        self._class_schema(type(obj))  # raises the reason
        raise SchemaError(f"{type(obj).__name__} is not in this realm's schema")  # pragma: no cover

    def upsert(self, obj: T) -> T:
        """``add(obj, update=True)``."""
        return self.add(obj, update=True)

    def add_all(self, objects: Iterable[T], update: bool = False) -> list[T]:
        """Add several objects; returns them managed.

        Same result as ``[add(o, update) for o in objects]``; runs of
        objects of a class without links are encoded once each and written
        with one bulk put per table."""
        self._check()
        self._require_write()
        out = list(objects)
        i, n = 0, len(out)
        if n and list(map(type, out)).count(type(out[0])) == n:
            info = self._add_info(out[0])  # one class (the common case)
            if info.simple:
                _bulkadd.add_simple(self, info, out, update)
                return out
        while i < n:
            obj = out[i]
            info = self._add_info(obj)
            if not info.simple:
                self.add(obj, update=update)
                i += 1
                continue
            j = i + 1
            cls = type(obj)
            while j < n and type(out[j]) is cls:
                j += 1
            _bulkadd.add_simple(self, info, out[i:j], update)
            i = j
        return out

    def _next_seq(self, name: str, count: int = 1) -> int:
        """Reserve ``count`` sequence numbers for keys of a class without a
        primary key; returns the first."""
        txn = self._require_write()
        key = b"seq:" + name.encode()
        raw = txn.get(META, key)
        n = int(raw) if raw else 1
        txn.put(META, key, str(n + count).encode())
        return n

    def _add(self, obj: Object, update: bool, cascade: bool) -> bytes:
        txn = self._require_write()
        cls = type(obj)
        schema = self._class_schema(cls)
        name = schema.name
        if name in self._dead:
            self._flush_links()  # before a deleted key can come back
        values = obj._rp_values
        pk_name = schema.primary_key
        pk = values[pk_name] if pk_name else self._next_seq(name)
        key = codec.encode_key(pk)
        table = table_name(name)
        old_raw = txn.get(table, key)
        if old_raw is not None and not update:
            if cascade:
                # A link to an unmanaged object whose key exists: link to it.
                self._manage(obj, key, None)
                return key
            raise DuplicatePrimaryKeyError(
                f"a {name} with primary key {pk!r} already exists: use "
                "add(obj, update=True) to replace it"
            )
        # Mark managed first so link cycles (a -> b -> a) terminate.
        self._manage(obj, key, None)
        try:
            rec = {}
            for p in schema.properties:
                rec[p.name] = self._to_stored(p, values[p.name])
        except BaseException:
            object.__setattr__(obj, "_rp_store", None)
            raise
        info = self._info[name]
        old = info.decode(old_raw) if old_raw is not None else None
        for p in schema.properties:
            if not p.has_index:
                continue
            iname = index_name(name, p.file_name)
            if old is not None:
                txn.delete(iname, codec.encode_keys(old[info.pos[p.name]], pk))
            txn.put(iname, codec.encode_keys(rec[p.name], pk), b"")
        if info.links or info.fulltext:
            before = dict(zip(info.names, old, strict=True)) if old is not None else None
            _backlinkindex.update(txn, info.schema, info.links, key, before, rec)
            _fulltextindex.update(txn, info.schema, info.fulltext, key, before, rec)
        row = info.row(rec)
        txn.put(table, key, _pack(row))
        self._stamp += 1
        object.__setattr__(obj, "_rp_cache", (self._stamp, row, info.pos))
        return key

    def _manage(self, obj: Object, key: bytes, rec: list[Any] | None) -> None:
        object.__setattr__(obj, "_rp_store", self)
        object.__setattr__(obj, "_rp_key", key)
        object.__setattr__(obj, "_rp_cache", None)

    def _deletable(self, obj: object) -> ClassInfo:
        if not isinstance(obj, Object):
            raise ObjectTypeError(f"delete() takes a model object, not {type(obj).__name__}")
        if obj._rp_store is None:
            raise InvalidObjectError("this object is not managed by a realm: nothing to delete")
        if obj._rp_store is not self:
            raise WrongRealmError("this object belongs to another realm instance")
        return self._info[type(obj).__realm_name__]

    def delete(self, obj: Object) -> None:
        """Delete a managed object, in this write transaction.

        As in Realm, links to it are cleared in the same transaction:
        to-one links become ``None``, it is removed from lists and sets of
        links, and dictionary values linking to it become ``None``.  Its
        embedded objects go with it.

        The stored links are rewritten once per write transaction (at
        commit, or before an object of the class is added again), so a loop
        of deletes scans the linking classes once; until then, reads inside
        the transaction already see the links as cleared (a link to a
        missing object reads as ``None`` and lists skip it)."""
        self.delete_many([obj])

    def delete_many(self, objects: Iterable[Object]) -> int:
        """Delete every object of an iterable (e.g. a Results), clearing
        links to them as :meth:`delete` does; returns how many were deleted."""
        self._check()
        txn = self._require_write()
        doomed: dict[str, dict[bytes, Sequence[Any]]] = {}
        for obj in list(objects):
            info = self._deletable(obj)
            per_class = doomed.setdefault(info.name, {})
            if obj._rp_key not in per_class:
                per_class[obj._rp_key] = self._record(obj)
        count = 0
        for name, items in doomed.items():
            info = self._info[name]
            for key, rec in items.items():
                for pname, iname in info.indexed:
                    txn.delete(iname, _encode_key(rec[info.pos[pname]]) + key)
                if info.links or info.fulltext:
                    old = dict(zip(info.names, rec, strict=True))
                    _backlinkindex.update(txn, info.schema, info.links, key, old, None)
                    _fulltextindex.update(txn, info.schema, info.fulltext, key, old, None)
                txn.delete(info.table, key)
                count += 1
        self._stamp += 1
        dead = self._dead
        for name, items in doomed.items():
            if name in dead:
                pending = dead[name]
                if pending is not None:
                    pending.update(items)
            elif self._linked(name):
                dead[name] = set(items)
                self._drop_adder()  # adds of this class must clear links first
        return count

    def delete_all(self, cls: type[Object] | None = None) -> None:
        """Delete every object of ``cls``, or of every class (clearing links
        to them as :meth:`delete` does)."""
        self._check()
        txn = self._require_write()
        names = [self._class_schema(cls).name] if cls is not None else self._schema.names()
        for name in names:
            txn.drop(table_name(name))
            for p in self._schema[name].properties:
                if p.has_index:
                    txn.drop(index_name(name, p.file_name))
                if p.type == "link":
                    txn.drop(backlink_name(name, p.file_name))
                if p.fulltext:
                    txn.drop(fulltext_name(name, p.file_name))
        self._stamp += 1
        if cls is None:
            self._dead = {}  # nothing is left to link to anything
        elif self._linked(names[0]):
            self._dead[names[0]] = None
            self._drop_adder()  # adds of this class must clear links first

    def _linked(self, name: str) -> bool:
        """Whether objects of some class can link to objects of ``name``."""
        return any(name in targets for targets in self._reach.values())

    def _flush_links(self) -> None:
        """Clear the stored links to the objects deleted in this write."""
        if self._dead:
            dead, self._dead = self._dead, {}
            clear_links(self, dead)


_ = Counter  # re-exported type used by models
