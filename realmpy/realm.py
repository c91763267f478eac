"""The Realm: models on top of ``realmpy.storage``.

Layout in the data file (all tables of one environment):

- ``_meta``: ``schema`` (msgpack of :meth:`Schema.to_dict`), ``schema_version``,
  ``key_format`` (:data:`codec.KEY_FORMAT` as text: the layout of every
  encoded key below; a file without it has format 1, fixed 8-byte ints, and
  is refused with :class:`~realmpy.errors.KeyFormatError`),
  ``history`` (``"local"`` or ``"sync"``), ``seq:<Class>`` (next key of a
  model without primary key);
- ``o:<Class>``: encoded primary key (``codec.encode_key``) → msgpack array
  of the property values in the stored schema's property order (see
  :mod:`realmpy.codec`; a shorter record lacks properties added later);
- ``i:<Class>:<prop>``: encoded value + encoded primary key → empty, one
  table per indexed property, so equality and range queries are scans.

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

import asyncio
import copy
import functools
import operator
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar, cast

import realmpy.codec as codec
import realmpy.filterprogram as _pushdown
import realmpy.planner as _planner
import realmpy.query as _query
import realmpy.results as _results
import realmpy.waiting as _waiting
from realmpy._speedups import RealmState
from realmpy._speedups import Record as _Record
from realmpy._speedups import all_full as _all_full
from realmpy._speedups import column_keys as _column_keys
from realmpy._speedups import found_rows as _found_rows
from realmpy._speedups import make_object as _make_object
from realmpy._speedups import manage as _manage
from realmpy._speedups import pack_rows as _pack_rows
from realmpy._speedups import record as _make_record
from realmpy._speedups import record_pairs as _record_pairs
from realmpy._speedups import rows_full as _rows_full
from realmpy._speedups import strictly_increasing as _strictly_increasing
from realmpy._speedups import unmanaged_dicts as _unmanaged_dicts
from realmpy.codec import Link
from realmpy.config import Configuration
from realmpy.dynamic import DynamicObject
from realmpy.errors import (
    ClosedRealmError,
    CodecError,
    ConfigurationError,
    CorruptError,
    DuplicatePrimaryKeyError,
    FrozenRealmError,
    InvalidArgumentError,
    InvalidObjectError,
    KeyFormatError,
    MigrationRequiredError,
    ObjectTypeError,
    RealmThreadError,
    SchemaError,
    TransactionStateError,
    WriteLockTimeoutError,
    WrongRealmError,
)
from realmpy.layout import (
    HISTORY_KEY,
    KEY_FORMAT_KEY,
    KEY_FORMAT_VALUE,
    META,
    OLD_PREFIX,
    SCHEMA_KEY,
    VERSION_KEY,
    index_name,
    table_name,
    zero_value,
)
from realmpy.managed import ManagedDict, ManagedList, ManagedSet
from realmpy.notifier import Listenable
from realmpy.query.bind import Binding as _Binding
from realmpy.query.bind import bind as _bind
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
    validator,
)
from realmpy.sharedfile import SharedFile, compact_file, wants_compaction
from realmpy.storage import Environment, Snapshot, WriteTransaction

if TYPE_CHECKING:
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
# How many validated (class, query text) pairs a realm remembers.
_VALID_QUERIES_MAX: Final = 1024
# How a property's stored value becomes what a read returns.
K_PLAIN = 0  # the stored value itself (scalars)
K_COUNTER = 1  # an int bound to its object as a Counter
K_COLLECTION = 2  # a live ManagedList / ManagedSet / ManagedDict view
K_LINK = 3  # a to-one link: the target object or None
K_EMBEDDED = 4  # a to-one embedded object or None


def _kind(prop: Property) -> int:
    if prop.collection is not None:
        return K_COLLECTION
    if prop.type == "link":
        return K_LINK
    if prop.type == "embedded":
        return K_EMBEDDED
    if prop.type == "counter":
        return K_COUNTER
    return K_PLAIN


class _ClassInfo:
    """Everything the hot paths need about one class, computed once per schema."""

    __slots__ = (
        "defaults",
        "fill",
        "indexed",
        "kinds",
        "model",
        "n",
        "name",
        "names",
        "pk",
        "pk_check",
        "pos",
        "props",
        "row",
        "row_tuple",
        "schema",
        "simple",
        "table",
    )

    def __init__(self, schema: ObjectSchema, model: type[_Model] | None) -> None:
        self.schema = schema
        self.model = model
        self.name = schema.name
        self.table = table_name(schema.name)
        self.props = {p.name: p for p in schema.properties}
        self.defaults = {p.name: zero_value(p, model) for p in schema.properties}
        self.kinds = {p.name: _kind(p) for p in schema.properties}
        # Records are positional, in this (the stored schema's) order.
        self.names = tuple(p.name for p in schema.properties)
        self.n = len(self.names)
        self.pos = {n: i for i, n in enumerate(self.names)}
        self.fill = [self.defaults[n] for n in self.names]
        # values dict (of a model object) -> record row
        self.row: Callable[[dict[str, Any]], list[Any]]
        # values dict -> record as a tuple (a C-level getter; reads index
        # tuples and lists alike, and pack_plain_rows packs them)
        self.row_tuple: Callable[[dict[str, Any]], tuple[Any, ...]]
        if self.n == 1:
            only = self.names[0]
            self.row = lambda values: [values[only]]
            self.row_tuple = lambda values: (values[only],)
        else:
            getter = operator.itemgetter(*self.names)
            self.row = lambda values: list(getter(values))
            self.row_tuple = getter
        self.pk = schema.primary_key
        self.pk_check: Callable[[Any], Any] | None = None
        if self.pk is not None and model is not None:
            self.pk_check = validator(model, self.props[self.pk])
        self.indexed = tuple(
            (p.name, index_name(schema.name, p.name)) for p in schema.properties if p.has_index
        )
        # No links or embedded objects: the validated values are the record.
        self.simple = not schema.embedded and all(
            p.type not in ("link", "embedded") for p in schema.properties
        )

    def full(self, rec: list[Any]) -> list[Any]:
        """``rec`` (a decoded record) padded with the defaults of properties
        added after it was written, so every position of the schema exists."""
        if len(rec) < self.n:
            rec.extend(self.fill[len(rec) :])
        return rec

    def decode(self, raw: bytes) -> list[Any]:
        return self.full(_unpack_row(raw))

    def record(self, raw: bytes) -> Sequence[Any]:
        """One stored record as a lazy :class:`~realmpy._speedups.Record`:
        reads as :meth:`decode` would return it, a field decoded when it is
        first read; damage to its structure raises CodecError here."""
        return _make_record(raw, self.n, self.fill, _decode_value, codec.CodecError)

    def lazy_rows(self, batch: bytes) -> list[tuple[bytes, Any]]:
        """``[(key, record), ...]`` of a raw engine batch, each record a lazy
        :class:`~realmpy._speedups.Record` (full: padded with ``fill``)
        that decodes a field when it is first read; a damaged record
        raises CodecError."""
        return _record_pairs(batch, self.n, self.fill, _decode_value, codec.CodecError)


# ----------------------------------------------------------------------------
# Evaluation helpers


class _Bound:
    """A record with its class, as the query evaluator sees it."""

    __slots__ = ("cls", "key", "rec")

    def __init__(self, cls: str, key: bytes, rec: Any) -> None:
        # rec: a top-level record (a full list) or an embedded one (a dict)
        self.cls = cls
        self.key = key
        self.rec = rec

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Bound):
            return self.cls == other.cls and self.key == other.key
        if isinstance(other, Object) and other._rp_store is not None:
            return type(other).__realm_name__ == self.cls and other._rp_key == self.key
        return False

    def __hash__(self) -> int:
        return hash((self.cls, self.key))


class _SchemaRaced(Exception):
    """Another process stored a schema while this realm was opening."""


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
        if not self.is_open:
            return
        if exc_type is None:
            self.commit()
        else:
            self.rollback()


# ----------------------------------------------------------------------------
# The realm


def _record_access(
    info: _ClassInfo,
) -> tuple[Callable[[str], tuple[Any] | None], Callable[[Any], Any]]:
    """How compiled queries read a decoded record of ``info``'s class: plain
    properties by position (``direct``), anything else through a
    :class:`_Bound` wrapper (``bind``) made only when needed."""
    kinds, pos, name = info.kinds, info.pos, info.name

    def direct(prop: str) -> tuple[Any] | None:
        if kinds.get(prop) in (K_PLAIN, K_COUNTER):
            return (pos[prop],)
        return None

    def bind(rec: Any) -> Any:
        return _Bound(name, b"", rec)

    return direct, bind


def _filter_program(info: _ClassInfo, q: _query.Query, args: tuple[Any, ...]) -> bytes | None:
    """The engine filter program of ``q`` with ``args`` over ``info``'s
    records (see :mod:`realmpy.filterprogram`), cached per (class, query, args)
    for plain scalar arguments.  The key carries the arguments' types too:
    ``1 == True == 1.0`` as dict keys, but they are different queries."""
    if all(type(a) in _CACHE_ARG_TYPES for a in args):
        return _filter_program_cached(info, q, tuple(map(type, args)), args)
    return _compile_filter(info, q, (), args)  # a list for IN, a datetime, ...


_CACHE_ARG_TYPES = frozenset({type(None), bool, int, float, str, bytes})


def _compile_filter(
    info: _ClassInfo, q: _query.Query, _types: tuple[type, ...], args: tuple[Any, ...]
) -> bytes | None:
    # _types is unused here: it only makes the arguments' types part of the
    # lru_cache key of _filter_program_cached.
    kinds, pos = info.kinds, info.pos

    def slot(prop: str) -> int | None:
        return pos[prop] if kinds.get(prop) in (K_PLAIN, K_COUNTER) else None

    return _pushdown.compile_filter(q, args, slot, info.fill)


_filter_program_cached = functools.lru_cache(maxsize=256)(_compile_filter)


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
        # which the property descriptors read directly (realmpy._speedups).
        self._guard = None
        self._wtxn: WriteTransaction | None = None
        self._wtxn_owner: Transaction | None = None
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
        self._models: dict[str, type[_Model]] = {}
        self._shared = SharedFile.acquire(config)
        self._env = self._shared.env
        self._closed = False
        self._guard = self._owner
        try:
            self._open()
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
        self._valid_queries: dict[tuple[str, str], _Binding] = {}
        models = {object_schema(m).name: m for m in self._config.schema}
        self._models = models
        self._info = {c.name: _ClassInfo(c, models.get(c.name)) for c in schema.classes}
        self._by_cls: dict[type, _ClassInfo] = {
            m: self._info[n]
            for n, m in models.items()
            if n in self._info and isinstance(m, type) and issubclass(m, Object)
        }
        self._defaults: dict[str, dict[str, Any]] = {n: i.defaults for n, i in self._info.items()}
        self._props: dict[str, dict[str, Property]] = {n: i.props for n, i in self._info.items()}
        self._reach = _link_reach(schema)

    def _open(self) -> None:
        config = self._config
        if config.should_compact is not None and config.kind != "in_memory":
            with self._shared.alone() as alone:
                if alone and wants_compaction(self._env, config.should_compact):
                    self._compact_in_place()
        # Records are positional in the stored schema's order, so the schema
        # this realm uses must be the one it stores: if another process
        # stored one between our read and our write, start again from it.
        for _attempt in range(100):
            try:
                self._open_schema()
                return
            except _SchemaRaced:
                continue
        raise ConfigurationError(f"{config.path}: the stored schema kept changing while opening")

    def _check_schema_unchanged(self, raw_schema: bytes | None) -> None:
        """Inside the opening write: raise _SchemaRaced if the stored schema
        is no longer the one read before it (the write then rolls back)."""
        if self._require_write().get(META, SCHEMA_KEY) != raw_schema:
            raise _SchemaRaced

    def _open_schema(self) -> None:
        config = self._config
        wanted = config.model_schema
        with self._env.read() as snap:
            raw_schema = snap.get(META, SCHEMA_KEY)
            raw_version = snap.get(META, VERSION_KEY)
            raw_history = snap.get(META, HISTORY_KEY)
            raw_key_format = snap.get(META, KEY_FORMAT_KEY)
        if raw_history is not None and raw_history.decode() != config.history:
            raise ConfigurationError(
                f"{config.path} has {raw_history.decode()} history but was opened "
                f"with a {config.kind} configuration ({config.history} history): "
                "open it with the configuration kind that created it"
            )
        if raw_schema is None:
            self._set_schema(wanted)
            if config.read_only:
                raise ConfigurationError(
                    f"{config.path} is not a realm yet and read_only=True cannot create it"
                )
            with self.write():
                self._check_schema_unchanged(None)
                self._store_schema(wanted, config.schema_version)
                self._wtxn_put_meta(HISTORY_KEY, config.history.encode())
                if config.initial_data is not None:
                    config.initial_data(self)
            return
        if raw_key_format != KEY_FORMAT_VALUE:
            # Its keys would decode as other values (or not at all) and sort
            # in another order than this version's queries expect.
            if config.delete_if_migration_needed and not config.read_only:
                self._set_schema(wanted)
                self._reset(wanted)
                return
            found = (raw_key_format or b"1").decode(errors="replace")
            raise KeyFormatError(
                f"{config.path} stores keys in format {found} (written by an "
                f"older realmpy), this realmpy reads only format {codec.KEY_FORMAT} "
                "(variable-length int keys): copy the objects out with the realmpy "
                "that wrote the file and add them to a new one, or open it with "
                "delete_if_migration_needed=True to discard its data"
            )
        stored = Schema.from_dict(codec.unpack_record(raw_schema))
        stored_version = int(raw_version or b"0")
        diff = wanted.diff(stored)
        merged = wanted.merged_with(stored)
        if config.schema_version < stored_version:
            raise MigrationRequiredError(
                f"{config.path} has schema_version {stored_version}, newer than the "
                f"configured {config.schema_version}: open it with the newer models"
            )
        if diff.breaking and config.schema_version == stored_version:
            if config.delete_if_migration_needed:
                self._set_schema(merged)
                self._reset(wanted)
                return
            raise MigrationRequiredError(
                "the models changed incompatibly with the file: "
                + "; ".join(diff.breaking)
                + f". Raise schema_version above {stored_version} (and pass a "
                "migration callback to convert data) or set "
                "delete_if_migration_needed=True"
            )
        self._set_schema(merged)
        if diff.is_empty and config.schema_version == stored_version:
            return
        if config.read_only:
            raise MigrationRequiredError(
                f"{config.path} needs a schema update ({'; '.join(diff.additive)}) "
                "but the realm is read-only"
            )
        with self.write():
            self._check_schema_unchanged(raw_schema)
            moved = self._relayout(stored)
            self._rebuild_indexes(stored, merged)
            self._store_schema(merged, config.schema_version)
            if config.schema_version > stored_version and config.migration is not None:
                old = _OldRealm(self, stored, moved)
                config.migration(old, self)
            txn = self._require_write()
            for name in moved:
                txn.drop(OLD_PREFIX + name)

    def _reset(self, schema: Schema) -> None:
        with self.write():
            txn = self._require_write()
            for name in txn.tables():
                txn.drop(name)
            self._set_schema(schema)
            self._store_schema(schema, self._config.schema_version)
            self._wtxn_put_meta(HISTORY_KEY, self._config.history.encode())
            if self._config.initial_data is not None:
                self._config.initial_data(self)

    def _store_schema(self, schema: Schema, version: int) -> None:
        self._wtxn_put_meta(SCHEMA_KEY, codec.pack_record(schema.to_dict()))
        self._wtxn_put_meta(VERSION_KEY, str(version).encode())
        self._wtxn_put_meta(KEY_FORMAT_KEY, KEY_FORMAT_VALUE)

    def _wtxn_put_meta(self, key: bytes, value: bytes) -> None:
        self._require_write().put(META, key, value)

    def _relayout(self, stored: Schema) -> set[str]:
        """Rewrite the records of classes whose property order changed other
        than by appending (a property removed in a migration) in the current
        layout; returns those classes, whose old records are kept in
        ``_old:<Class>`` for the migration's old realm until it returns."""
        txn = self._require_write()
        moved: set[str] = set()
        for info in self._info.values():
            if info.schema.embedded or info.name not in stored:
                continue
            old_names = codec.record_names(stored[info.name])
            if info.names[: len(old_names)] == old_names:
                continue
            pairs = list(txn.scan(info.table))
            if not pairs:
                continue
            moved.add(info.name)
            txn.put_many(OLD_PREFIX + info.name, pairs)
            rows = []
            for key, raw in pairs:
                d = codec.record_to_dict(raw, old_names)
                row = [d.get(n, f) for n, f in zip(info.names, info.fill, strict=True)]
                rows.append((key, _pack(row)))
            txn.put_many(info.table, rows)
        return moved

    def _rebuild_indexes(self, stored: Schema, new: Schema) -> None:
        txn = self._require_write()
        for c in new.classes:
            old = stored[c.name] if c.name in stored else None
            for p in c.properties:
                was = old.get(p.name) if old is not None else None
                had = was is not None and was.has_index
                if p.has_index and not had:
                    info = self._info[c.name]
                    i = info.pos[p.name]
                    for key, raw in txn.scan(table_name(c.name)):
                        value = info.decode(raw)[i]
                        pk = codec.decode_key(key)[0]
                        txn.put(index_name(c.name, p.name), codec.encode_keys(value, pk), b"")
                elif had and not p.has_index:
                    txn.drop(index_name(c.name, p.name))

    def _compact_in_place(self) -> None:
        compact_file(self._env, self._config.path)
        self._shared.env = Environment(
            self._config.path,
            durability=self._config.durability,
            max_active_versions=self._config.max_active_versions,
        )
        self._env = self._shared.env

    # -- static operations --------------------------------------------------

    @staticmethod
    def compact(config: Configuration) -> bool:
        """Compact the file if no process has it open; True if it did."""
        with SharedFile._registry_lock:
            if config.path in SharedFile._registry:
                return False
        if not os.path.exists(config.path):
            return False
        shared = SharedFile.acquire(config)
        try:
            with shared.alone() as alone:
                if not alone:
                    return False
                realm = Realm.__new__(Realm)
                realm._config = config
                realm._shared = shared
                realm._env = shared.env
                realm._compact_in_place()
                return True
        finally:
            shared.release()

    @staticmethod
    def delete_realm(path: str | os.PathLike[str]) -> None:
        """Delete a realm's files; refuses while this process has it open."""
        p = os.path.abspath(os.fspath(path))
        with SharedFile._registry_lock:
            if p in SharedFile._registry:
                raise ConfigurationError(f"cannot delete {p}: it is open in this process")
        for suffix in ("", ".lock", ".session"):
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
        self._check()
        if self._frozen:
            raise FrozenRealmError("a frozen realm cannot be written")
        if self._config.read_only:
            raise TransactionStateError(f"{self._config.path} was opened read-only")
        if self._wtxn is not None:
            raise TransactionStateError(
                "a write transaction is already open in this realm: nested writes are not supported"
            )
        self._drop_snapshot()
        self._wtxn = self._env.write(timeout)
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
        txn = self._require_write()
        self._flush_links()
        self._wtxn = None
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
        q = _query.parse(text)
        bound = self._valid_queries
        binding = bound.get((schema.name, text))
        if binding is None:
            binding = _bind(self._schema.__getitem__, schema, q)
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

    # -- evaluation (used by Results and the notifier) -------------------------------

    def _resolve(self, value: Any, name: str) -> Any:
        if type(value) is _Bound:
            rec = value.rec
            if type(rec) is list or type(rec) is _Record:  # a top-level record: positional
                info = self._info[value.cls]
                i = info.pos.get(name)
                if i is None:
                    return None
                prop = info.props[name]
                stored = rec[i]
            else:  # an embedded record: a map
                eprop = self._props[value.cls].get(name)
                if eprop is None:
                    return None
                prop = eprop
                stored = rec.get(name, self._defaults[value.cls][name])
            if prop.type == "link":
                return self._bind_links(prop, stored)
            if prop.type == "embedded":
                target = prop.target or ""
                if prop.collection == "list":
                    return [_Bound(target, b"", r) for r in stored]
                if prop.collection == "dict":
                    return {
                        k: (None if r is None else _Bound(target, b"", r))
                        for k, r in stored.items()
                    }
                return None if stored is None else _Bound(target, b"", stored)
            return stored
        return _query.default_resolver(value, name)

    def _bind_links(self, prop: Property, stored: Any) -> Any:
        txn = self._reader()
        target = prop.target or ""
        info = self._info[target]
        table = info.table

        def load(link: Any) -> _Bound | None:
            if link is None:
                return None
            raw = txn.get(table, bytes(link))
            return None if raw is None else _Bound(target, bytes(link), info.record(raw))

        if prop.collection in ("list", "set"):
            keys = [bytes(x) for x in stored if x is not None]
            recs = self._get_records(txn, info, keys)
            return [_Bound(target, k, r) for k, r in zip(keys, recs, strict=True) if r is not None]
        if prop.collection == "dict":
            return {k: load(v) for k, v in stored.items()}
        return load(stored)

    @staticmethod
    def _get_records(
        txn: Snapshot | WriteTransaction, info: _ClassInfo, keys: list[bytes]
    ) -> list[list[Any] | None]:
        """Full records of ``keys`` (None where absent): one batched read,
        decoded in C."""
        try:
            recs: list[Any] = txn.get_many_msgpack(info.table, keys, _OPTS)
        except codec.CodecError:
            raise
        except Exception:  # a damaged record: find it and name it
            raws = txn.get_many(info.table, keys)
            return [None if r is None else info.decode(r) for r in raws]
        n = info.n
        if _all_full(recs, n):
            return recs
        out: list[list[Any] | None] = []
        for r in recs:
            if r is not None and type(r) is not list:
                raise codec.CodecError("corrupt object record: not an array")
            out.append(None if r is None else info.full(r))
        return out

    def _plan(
        self, schema: ObjectSchema, q: _query.Query, args: tuple[Any, ...]
    ) -> tuple[list[bytes], bool] | None:
        return _planner.plan(self, schema, _planner.choose(schema, q, args))

    def _matcher(
        self, info: _ClassInfo, q: _query.Query, args: tuple[Any, ...]
    ) -> Callable[[list[Any]], bool]:
        """The predicate over decoded (positional) records of ``info``'s class.

        Plain properties are read straight from the record by position;
        anything else (links, embedded objects, collections) goes through
        the resolver on a :class:`_Bound` made only when needed."""
        direct, bind = _record_access(info)
        return q.matcher(args, resolver=self._resolve, direct=direct, wrap=bind)

    def _row_filter(
        self, info: _ClassInfo, q: _query.Query, args: tuple[Any, ...]
    ) -> Callable[[Iterable[tuple[bytes, Any]]], list[Any]]:
        """:meth:`_matcher` over many (key, record) pairs at once."""
        direct, bind = _record_access(info)
        return q.row_filter(args, resolver=self._resolve, direct=direct, wrap=bind)

    def _evaluate(
        self, name: str, q: _query.Query | None, args: tuple[Any, ...]
    ) -> list[tuple[bytes, list[Any] | None]]:
        """Matching (key, full record) in result order.

        Scans and index joins read one engine buffer at a time and return
        lazy records (:class:`~realmpy._speedups.Record`: a field is decoded
        when something reads it); key lookups decode a batch at a time in C
        (``get_many_msgpack``).  The predicate reads records by position: no
        object is built for a record that does not match.  Where the engine
        can decide part of the predicate (:mod:`realmpy.filterprogram`), it drops
        the records that part rejects before any is decoded (``scan_filter``
        / ``scan_join``); the rest is re-checked here as always."""
        txn = self._reader()
        info = self._info[name]
        table = info.table
        if q is None:
            return txn.scan_filter_msgpack(table, None, decode=info.lazy_rows)
        pairs: list[tuple[bytes, Any]] | None = None
        chosen = _planner.choose(info.schema, q, args)  # the index read, if any
        ranged = _planner.index_prefix(info.schema, chosen)
        if ranged is not None:
            # One range of a secondary index: the engine reads it, looks the
            # keys up and (if the index does not decide everything) filters
            # the records, in one call per buffer.
            iname, prefix, exact = ranged
            program = None if exact else _filter_program(info, q, args)
            try:
                pairs = txn.scan_join(iname, prefix, table, program, decode=info.lazy_rows)
            except InvalidArgumentError:
                raise
            except (CorruptError, ValueError):
                pairs = None  # a damaged record: the plain path reports it
            if pairs is not None and exact and not q.descriptors:
                return pairs
        if pairs is None and ranged is None:
            bounds = _planner.table_range(chosen)
            if bounds is not None:
                # A range of primary keys: the engine scans just that part
                # of the table, filtering as it goes; re-checked below.
                try:
                    pairs = txn.scan_filter_msgpack(
                        table,
                        _filter_program(info, q, args),
                        decode=info.lazy_rows,
                        start=bounds[0],
                        stop=bounds[1],
                    )
                except InvalidArgumentError:
                    raise
                except (CorruptError, ValueError):
                    pairs = None  # a damaged record: the plain path reports it
        planned = None if pairs is not None else _planner.plan(self, info.schema, chosen)
        if planned is not None:
            keys, exact = planned
            program = None if exact else _filter_program(info, q, args)
            if program is not None:
                # The engine drops the candidates the pushable part rejects
                # (they come back as None, like absent keys).
                try:
                    found = txn.get_many_msgpack(table, keys, _OPTS, program)
                    pairs = self._full_rows(
                        info, [(k, r) for k, r in zip(keys, found, strict=True) if r is not None]
                    )
                except InvalidArgumentError:
                    raise
                except (CorruptError, ValueError):
                    pairs = None  # a damaged record: the plain path reports it
            if pairs is None:
                recs = self._get_records(txn, info, keys)
                pairs = _found_rows(keys, recs)  # (k, r) where r is not None
            if exact and not q.descriptors:
                # The index decided the whole predicate: nothing to re-check.
                return pairs
        elif pairs is None:
            program = _filter_program(info, q, args)
            if program is not None:
                # The engine drops the records the pushable part rejects;
                # the survivors are re-checked in full below.
                try:
                    pairs = txn.scan_filter_msgpack(table, program, decode=info.lazy_rows)
                except InvalidArgumentError:
                    raise
                except (CorruptError, ValueError):
                    pairs = None  # a damaged record: the plain path reports it
        keep = self._row_filter(info, q, args)
        try:
            out = keep(pairs if pairs is not None else txn.scan_msgpack(table, options=_OPTS))
        except (IndexError, TypeError, AttributeError, KeyError, ValueError):
            # A record shorter than the schema (written before a property was
            # added) or a damaged one: decode and pad each, then match.
            full = info.decode
            if pairs is None:
                pairs = [(k, full(v)) for k, v in txn.scan(table)]
            else:
                pairs = [(k, info.full(r)) for k, r in pairs]
            out = keep(pairs)
        out = self._full_rows(info, out)
        if q.descriptors:
            bound = [_Bound(name, k, rec) for k, rec in out]
            by_key = dict(out)
            out = [(b.key, by_key[b.key]) for b in q.order(bound, resolver=self._resolve)]
        return out

    @staticmethod
    def _full_rows(info: _ClassInfo, rows: list[tuple[bytes, Any]]) -> list[tuple[bytes, Any]]:
        """``rows`` with every record padded to the schema (checked once)."""
        n = info.n
        if type(rows) is list and _rows_full(rows, n):  # the usual case, checked in C
            return rows
        for _k, r in rows:
            if type(r) is _Record:
                continue  # made full
            if type(r) is not list or len(r) < n:
                break
        else:
            return rows
        out: list[tuple[bytes, Any]] = []
        for k, r in rows:
            if type(r) is _Record:
                out.append((k, r))
                continue
            if type(r) is not list:
                raise codec.CodecError("corrupt object record: not an array")
            out.append((k, info.full(r)))
        return out

    def _evaluate_raw(
        self, name: str, q: _query.Query | None, args: tuple[Any, ...]
    ) -> list[tuple[bytes, bytes]]:
        """Matching (key, raw record) in result order (the notifier diffs
        raw records); a record is decoded only where the predicate needs it."""
        txn = self._reader()
        info = self._info[name]
        table = info.table
        if q is None:
            return list(txn.scan(table))
        planned = self._plan(info.schema, q, args)
        rows: Iterable[tuple[bytes, bytes]]
        if planned is None:
            program = _filter_program(info, q, args)
            rows = txn.scan(table)
            if program is not None:
                # The engine drops what the pushable part rejects; a damaged
                # record makes it fail, and the plain scan reports it.
                try:
                    rows = txn.scan_filter(table, program)
                except CorruptError:
                    pass
        else:
            keys, exact = planned
            program = None if exact else _filter_program(info, q, args)
            try:
                # Candidates the pushable part rejects come back as None.
                raws = txn.get_many(table, keys, program)
            except CorruptError:
                raws = txn.get_many(table, keys)  # the matcher reports the damage
            found = [(k, v) for k, v in zip(keys, raws, strict=True) if v is not None]
            if exact and not q.descriptors:
                return found
            rows = found
        match = self._matcher(info, q, args)
        decode = info.decode
        out: list[tuple[bytes, bytes, list[Any]]] = []
        for k, v in rows:  # one record at a time: a rejected one is freed at once
            rec = decode(v)
            if match(rec):
                out.append((k, v, rec))
        if q.descriptors:
            bound = [_Bound(name, k, rec) for k, _, rec in out]
            by_key = {k: (k, v, rec) for k, v, rec in out}
            out = [by_key[b.key] for b in q.order(bound, resolver=self._resolve)]
        return [(k, v) for k, v, _ in out]

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
        if prop.has_index and old != stored:
            pk = codec.decode_key(obj._rp_key)[0]
            iname = index_name(cls_name, name)
            txn.delete(iname, codec.encode_keys(old, pk))
            txn.put(iname, codec.encode_keys(stored, pk), b"")
        txn.put(info.table, obj._rp_key, _pack(rec))
        self._stamp += 1
        object.__setattr__(obj, "_rp_cache", (self._stamp, rec, info.pos))

    def read_plain(self, obj: _Model, name: str) -> Any:
        # The reference for the C descriptor's fast path (realmpy._speedups),
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
            return ManagedList(self, owner, prop)
        if prop.collection == "set":
            return ManagedSet(self, owner, prop)
        if prop.collection == "dict":
            return ManagedDict(self, owner, prop)
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
            object.__setattr__(emb, "_rp_store", _EmbeddedStore(self, owner, prop.name, slot))
            object.__setattr__(emb, "_rp_key", b"")
            return emb
        return stored

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

    def add(self, obj: T, update: bool = False) -> T:
        """Add an unmanaged object (and the unmanaged objects it links to);
        with ``update=True`` replace an existing object with the same
        primary key.  Returns the object, now managed by this realm."""
        self._check()
        self._require_write()
        info = self._add_info(obj)
        store = obj._rp_store
        if store is self:
            return obj
        if store is not None:
            raise WrongRealmError(f"this {type(obj).__name__} is already managed by another realm")
        if info.simple:
            self._add_simple(info, [obj], update)
        else:
            self._add(obj, update=update, cascade=False)
        return obj

    def _add_info(self, obj: object) -> _ClassInfo:
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
                self._add_simple(info, out, update)
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
            self._add_simple(info, out[i:j], update)
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

    def _add_simple(self, info: _ClassInfo, objs: list[Any], update: bool) -> None:
        """Add objects of one class without links or embedded objects.

        Their validated values are their records: each is packed once, the
        records go in with one ``put_many``, index entries with one per
        index.  On any error the objects before the failing one are added
        (as a loop of ``add`` would) and the error is raised."""
        txn = self._require_write()
        values = _unmanaged_dicts(objs)  # their __dict__s, None if some are managed
        if values is not None:
            todo = objs  # the common case: all unmanaged
        else:
            stores = [o._rp_store for o in objs]
            for o, store in zip(objs, stores, strict=True):
                if store is not None and store is not self:
                    raise WrongRealmError(
                        f"this {type(o).__name__} is already managed by another realm"
                    )
            todo = [o for o, store in zip(objs, stores, strict=True) if store is None]
            values = [o.__dict__ for o in todo]  # unmanaged: the values (see _rp_values)
        if not todo:
            return
        if info.name in self._dead:
            self._flush_links()  # before a deleted key can come back
        encode_list = codec.encode_key_list
        pk = info.pk
        try:
            if pk is not None:
                keys = _column_keys(values, pk, None, codec.MAX_KEY)  # None: not ints/strs
                if keys is None:
                    keys = encode_list([v[pk] for v in values])
            else:
                first = self._next_seq(info.name, len(todo))
                keys = encode_list(list(range(first, first + len(todo))))
        except Exception:
            # A key that cannot be encoded: add one by one up to it.
            self._add_simple_each(info, todo, None, update)
            return
        # Into an empty table nothing is replaced: skip the lookups.
        olds = [] if txn.count(info.table) == 0 else txn.get_many(info.table, keys)
        if olds.count(None) != len(olds) or (
            not _strictly_increasing(keys) and len(set(keys)) != len(keys)
        ):
            # Replacements or repeats: the careful loop.
            self._add_simple_each(info, todo, keys, update)
            return
        try:
            # Tuples: cached records are only indexed, and a write copies.
            # Records of plain scalars are built and packed in C (the same
            # bytes as pack_plain_rows), index entries of ints and strs too.
            done = _pack_rows(values, info.names)
            if done is not None:
                rows, packed = done
            else:
                rows = list(map(info.row_tuple, values))
                packed = codec.pack_plain_rows(rows)
            entries = []
            for pname, _iname in info.indexed:
                ik = _column_keys(values, pname, keys, codec.MAX_KEY)
                if ik is None:
                    ik = list(map(bytes.__add__, encode_list([v[pname] for v in values]), keys))
                    if max(map(len, ik)) > codec.MAX_KEY:
                        raise codec.CodecError("index entry over the key limit")
                entries.append(ik)
        except Exception:
            self._add_simple_each(info, todo, keys, update)
            return
        _put_all(txn, info.table, keys, packed)
        for (_pname, iname), ik in zip(info.indexed, entries, strict=True):
            _put_all(txn, iname, ik, None)
        self._stamp += 1
        # Each object: _rp_store, _rp_key, and its record cached with the stamp.
        _manage(todo, self, keys, rows, self._stamp, info.pos)

    def _add_simple_each(
        self, info: _ClassInfo, todo: list[Any], keys: list[bytes] | None, update: bool
    ) -> None:
        """The careful path of :meth:`_add_simple`: one object at a time
        (replacements, repeats, errors), with the same outcome as a loop of
        :meth:`add`."""
        txn = self._require_write()
        encode = _encode_key
        pk = info.pk
        for i, obj in enumerate(todo):
            if obj._rp_store is not None:
                continue  # the same object twice
            values = obj._rp_values
            if keys is not None:
                key = keys[i]
            else:
                key = encode(values[pk] if pk is not None else self._next_seq(info.name))
            old_raw = txn.get(info.table, key)
            if old_raw is not None and not update:
                raise DuplicatePrimaryKeyError(
                    f"a {info.name} with primary key {values[pk or ''] if pk else key!r} "
                    "already exists: use add(obj, update=True) to replace it"
                )
            row = info.row(values)
            packed = _pack(row)
            puts = []
            for pname, iname in info.indexed:
                ik = encode(values[pname]) + key
                if len(ik) > codec.MAX_KEY:
                    raise codec.CodecError(
                        f"{info.name}.{pname}: index entry of {len(ik)} bytes, "
                        f"over the {codec.MAX_KEY}-byte key limit"
                    )
                puts.append((iname, ik))
            if old_raw is not None:
                old = info.decode(old_raw)
                for pname, iname in info.indexed:
                    txn.delete(iname, encode(old[info.pos[pname]]) + key)
            for iname, ik in puts:
                txn.put(iname, ik, b"")
            txn.put(info.table, key, packed)
            self._stamp += 1
            _manage([obj], self, [key], [row], self._stamp, info.pos)

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
            iname = index_name(name, p.name)
            if old is not None:
                txn.delete(iname, codec.encode_keys(old[info.pos[p.name]], pk))
            txn.put(iname, codec.encode_keys(rec[p.name], pk), b"")
        row = info.row(rec)
        txn.put(table, key, _pack(row))
        self._stamp += 1
        object.__setattr__(obj, "_rp_cache", (self._stamp, row, info.pos))
        return key

    def _manage(self, obj: Object, key: bytes, rec: list[Any] | None) -> None:
        object.__setattr__(obj, "_rp_store", self)
        object.__setattr__(obj, "_rp_key", key)
        object.__setattr__(obj, "_rp_cache", None)

    def _deletable(self, obj: object) -> _ClassInfo:
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
                    txn.drop(index_name(name, p.name))
        self._stamp += 1
        if cls is None:
            self._dead = {}  # nothing is left to link to anything
        elif self._linked(names[0]):
            self._dead[names[0]] = None

    def _linked(self, name: str) -> bool:
        """Whether objects of some class can link to objects of ``name``."""
        return any(name in targets for targets in self._reach.values())

    def _flush_links(self) -> None:
        """Clear the stored links to the objects deleted in this write."""
        if self._dead:
            dead, self._dead = self._dead, {}
            self._clear_links(dead)

    def _clear_links(self, dead: dict[str, set[bytes] | None]) -> None:
        """Remove links to deleted objects (``dead``: class -> keys, None =
        all) from every object that can hold one, in the open write.

        There is no backlink index: each class that can link to a dead
        class (directly or through embedded objects) is scanned once."""
        txn = self._require_write()
        targets = set(dead)
        for c in self._schema.classes:
            if c.embedded or not (self._reach.get(c.name, set()) & targets):
                continue
            table = table_name(c.name)
            names = self._info[c.name].names
            changed: list[tuple[bytes, bytes]] = []
            for key, raw in txn.scan(table):
                rec = _strip_links(self._schema, c, codec.record_to_dict(raw, names), dead)
                if rec is not None:
                    changed.append((key, codec.record_from_dict(rec, names)))
            if changed:
                txn.put_many(table, changed)
                self._stamp += 1


def _put_all(
    txn: WriteTransaction, table: str, keys: list[bytes], values: list[bytes] | None
) -> None:
    """``put_many`` of parallel lists (``values`` None: empty values)."""
    txn.put_columns(table, keys, values)


def _link_reach(schema: Schema) -> dict[str, set[str]]:
    """Class name -> classes its objects can link to, also through embedded objects."""
    direct: dict[str, set[str]] = {}
    embeds: dict[str, set[str]] = {}
    for c in schema.classes:
        direct[c.name] = {p.target for p in c.properties if p.type == "link" and p.target}
        embeds[c.name] = {p.target for p in c.properties if p.type == "embedded" and p.target}
    reach: dict[str, set[str]] = {}
    for c in schema.classes:
        seen: set[str] = set()
        out: set[str] = set()
        stack = [c.name]
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            out |= direct.get(n, set())
            stack.extend(embeds.get(n, set()))
        reach[c.name] = out
    return reach


def _strip_links(
    schema: Schema, cls: ObjectSchema, rec: dict[str, Any], dead: dict[str, set[bytes] | None]
) -> dict[str, Any] | None:
    """``rec`` without its links to dead objects, or None if it has none."""
    out: dict[str, Any] | None = None
    for p in cls.properties:
        value = rec.get(p.name)
        if value is None or p.target is None:
            continue
        new: Any = value
        if p.type == "link":
            if p.target not in dead:
                continue
            keys = dead[p.target]

            def gone(x: Any, keys: set[bytes] | None = keys) -> bool:
                return x is not None and (keys is None or x in keys)

            if p.collection is None:
                new = None if gone(value) else value
            elif p.collection == "list":
                new = [x for x in value if not gone(x)]
            elif p.collection == "set":
                new = {x for x in value if not gone(x)}
            else:
                new = {k: (None if gone(x) else x) for k, x in value.items()}
            if new == value:
                continue
        else:  # embedded: strip inside
            emb = schema[p.target]
            if p.collection is None:
                inner = _strip_links(schema, emb, value, dead)
                if inner is None:
                    continue
                new = inner
            elif p.collection == "list":
                items = [_strip_links(schema, emb, x, dead) if x else None for x in value]
                if all(x is None for x in items):
                    continue
                new = [x if y is None else y for x, y in zip(value, items, strict=True)]
            elif p.collection == "dict":
                parts = {
                    k: (_strip_links(schema, emb, x, dead) if x else None) for k, x in value.items()
                }
                if all(x is None for x in parts.values()):
                    continue
                new = {k: (x if parts[k] is None else parts[k]) for k, x in value.items()}
            else:
                continue
        if out is None:
            out = dict(rec)
        out[p.name] = new
    return out


class _EmbeddedStore:
    """ObjectStore of a managed embedded object: reads and writes go to the
    parent's record at (property, slot)."""

    def __init__(self, realm: Realm, parent: _Model, prop: str, slot: Any) -> None:
        self.realm = realm
        self.parent = parent
        self.prop = prop
        self.slot = slot
        self._shared = realm._shared
        self._frozen = realm._frozen

    def _node(self, container: Any) -> dict[str, Any]:
        node = container if self.slot is None else None
        try:
            if self.slot is not None:
                node = container[self.slot]
        except (IndexError, KeyError, TypeError):
            node = None
        if node is None:
            raise InvalidObjectError("this embedded object was removed from its parent")
        return cast(dict[str, Any], node)

    def raw_get(self, obj: _Model, name: str) -> Any:
        store = self.parent._rp_store
        container = store.raw_get(self.parent, self.prop)  # type: ignore[union-attr]
        node = self._node(container)
        if name in node:
            return node[name]
        prop = object_schema(type(obj)).property(name)
        return zero_value(prop, type(obj))

    def raw_set(self, obj: _Model, name: str, stored: Any) -> None:
        store = self.parent._rp_store
        container = copy.deepcopy(store.raw_get(self.parent, self.prop))  # type: ignore[union-attr]
        node = self._node(container)
        node[name] = stored
        store.raw_set(self.parent, self.prop, container)  # type: ignore[union-attr]

    def read_plain(self, obj: _Model, name: str) -> Any:
        return self.read_property(obj, name)

    def read_property(self, obj: _Model, name: str) -> Any:
        prop = object_schema(type(obj)).property(name)
        stored = self.raw_get(obj, name)
        if prop.collection is not None:
            kind = {"list": ManagedList, "set": ManagedSet, "dict": ManagedDict}[prop.collection]
            return kind(self, obj, prop)
        if prop.type == "counter" and type(stored) is int:
            return bind_counter(obj, name, stored)
        return self.realm._elem_to_py(obj, prop, stored, None)

    def write_property(self, obj: _Model, name: str, value: Any) -> None:
        self.realm._require_write()
        prop = object_schema(type(obj)).property(name)
        py = validate_value(type(obj), prop, value)
        self.raw_set(obj, name, self.realm._to_stored(prop, py))

    def increment_property(self, obj: _Model, name: str, delta: int) -> None:
        self.realm._require_write()
        self.raw_set(obj, name, self.raw_get(obj, name) + delta)

    # collections inside embedded objects convert elements through the realm
    def _elem_to_py(self, owner: _Model, prop: Property, stored: Any, slot: Any) -> Any:
        return self.realm._elem_to_py(owner, prop, stored, slot)

    def _elem_to_stored(self, prop: Property, v: Any) -> Any:
        return self.realm._elem_to_stored(prop, v)

    def _require_write(self) -> WriteTransaction:
        return self.realm._require_write()


class _OldRealm:
    """What ``migration`` receives as the old realm: the records as the
    previous schema stored them, read-only, as :class:`~realmpy.dynamic.
    DynamicObject` s (attribute access that follows links, and dict access to
    the stored values for code written against the earlier dict records).

    ``old.all("Person")``, ``old.find("Person", pk)``; ``old.dynamic`` is
    the same object (Realm's ``oldRealm.dynamic.all(...)``).  Class names may
    also be given as model classes."""

    def __init__(self, realm: Realm, schema: Schema, moved: set[str] | None = None) -> None:
        self._realm = realm
        self.schema = schema
        self._moved = moved or set()

    @property
    def dynamic(self) -> _OldRealm:
        return self

    def _where(self, class_name: str) -> tuple[str, tuple[str, ...]]:
        if class_name not in self.schema:
            raise SchemaError(
                f"the old schema has no class {class_name!r}; it has "
                f"{', '.join(self.schema.names())}"
            )
        names = codec.record_names(self.schema[class_name])
        if class_name in self._moved:  # rewritten in the new layout: the saved copy
            return OLD_PREFIX + class_name, names
        return table_name(class_name), names

    @staticmethod
    def _name(cls: str | type[_Model]) -> str:
        return cls if isinstance(cls, str) else cls.__realm_name__

    def _object(self, class_name: str, raw: bytes, names: tuple[str, ...]) -> DynamicObject:
        values = codec.record_to_dict(raw, names)
        return DynamicObject(values, class_name, self.schema, self._load)

    def _load(self, class_name: str, key: bytes) -> DynamicObject | None:
        """A link's target (``None`` if it is gone), for DynamicObject."""
        txn = self._realm._require_write()
        table, names = self._where(class_name)
        raw = txn.get(table, key)
        return None if raw is None else self._object(class_name, raw, names)

    def all(self, cls: str | type[_Model]) -> Iterator[DynamicObject]:
        """Each stored object of the class (by its old name)."""
        name = self._name(cls)
        txn = self._realm._require_write()
        table, names = self._where(name)
        for _k, v in txn.scan(table):
            yield self._object(name, v, names)

    def find(self, cls: str | type[_Model], primary_key: Any) -> DynamicObject | None:
        """The stored object with this primary key, or ``None``."""
        name = self._name(cls)
        return self._load(name, codec.encode_key(primary_key))


_ = Counter  # re-exported type used by models
