"""The storage layer: environments, snapshots and write transactions.

The typed API over the C engine (``csrc/realmpy.h``).  An
:class:`Environment` is one database file shared by any number of processes
and threads::

    with Environment("cars.db") as env:
        with env.write() as txn:              # one writer across processes
            txn.put("cars", b"k1", b"v1")     # commits on clean exit
        with env.read() as snap:              # a pinned snapshot
            assert snap.get("cars", b"k1") == b"v1"

Two bindings, one engine (why: :mod:`realmpy.binding`).  The calls made
per key or per snapshot -- :meth:`Environment.read`, ``get``, ``put``,
``delete``, ending and committing -- are methods of the native base classes
(``realmpy._native``, ``csrc/py/storage.c``) and cross from Python into the
engine once; through cffi the call plus ``ffi.unpack`` alone cost more than
py-lmdb's whole ``get``.  Everything per batch or per environment (opening,
scans, batched lookups, statistics, checks) goes through cffi
(``realmpy._engine``), whose declarations are read from the C header
itself.  Both call the same compiled engine.

Rules enforced so that no C pointer is ever used after it is freed,
whatever the caller does:

* A transaction belongs to the thread that began it.  Every call checks the
  thread first (:class:`WrongThreadError` otherwise), so only the owner can
  end it and no other thread can race with its end.  The one exception is
  a snapshot made shared (:meth:`Snapshot.share`, ``rp_txn_share``): any
  thread may use and end it, and its user serialises the calls
  (:mod:`realmpy.sharedsnapshot` does, for frozen realms).
* A finished transaction raises :class:`TransactionError` on use.
* :meth:`Environment.close` ends this thread's open transactions (aborting
  write transactions), refuses new work with :class:`ClosedError`, wakes
  :meth:`Environment.wait_for_change` callers, and frees the engine handle
  once nothing uses it: whichever ends last -- close itself, another
  thread's transaction, or another thread's call in the engine (a wait) --
  frees it.  Closing never waits for another thread, so it never hangs:
  not even at interpreter exit, where CPython stops daemon threads
  mid-call (their handle is then left to the process's exit).  We chose
  this over raising ``BusyError``: closing never fails and never leaves a
  half-closed handle behind.
* Scans hold no C cursor between items (:mod:`realmpy.storagereads`).
* After ``fork()`` the engine answers :class:`ForkedError` to every call;
  the child must open its own environment.
"""

from __future__ import annotations

import importlib
import os
import struct
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn, Protocol, Union

import msgpack  # type: ignore[import-untyped,unused-ignore]

import realmpy.binding as _b
import realmpy.errors as _e
from realmpy.valueclass import ValueClass

from ._engine import ffi, lib
from ._native import CHANGED_KEYS_MAX as _NATIVE_CHANGED_KEYS_MAX
from ._native import EnvCore, ReadTxn, WriteTxn
from ._native import columns_ok as _columns_ok
from ._native import pack_records as _pack_records
from .binding import FILTER_FALSE, FILTER_TRUE, FILTER_UNKNOWN, BytesLike, filter_verdict
from .storagereads import PairDecoder, ReadMethods

__all__ = [
    "FILTER_FALSE",
    "FILTER_TRUE",
    "FILTER_UNKNOWN",
    "BytesLike",
    "Environment",
    "PairDecoder",
    "ReaderInfo",
    "Snapshot",
    "Stats",
    "WriteTransaction",
    "filter_verdict",
    "upgrade_file",
]

StrPath = Union[str, "os.PathLike[str]"]
Durability = Literal["full", "none"]

MAX_KEY: Final[int] = _b.MAX_KEY
MAX_TABLE_NAME: Final[int] = _b.MAX_TABLE_NAME

_pack_hdr = struct.Struct("<II").pack  # rp_put_many record header
# A transaction's _owner when it has none (the native types' encoding).
_ENDED: Final = -1
_SHARED: Final = -2
# wait_for_change blocks in slices so that signals (Ctrl-C) are handled.
_WAIT_SLICE_NS: Final = 200_000_000
# put_many packs at most this many bytes per engine call.
_PUT_MANY_CHUNK: Final = 1 << 20
# Encoded table names cached per environment (tables are few; bound anyway).
_NAME_CACHE_MAX: Final = 4096


class Stats(ValueClass, slots=False):
    """Statistics of the latest committed version (see ``rp_stat``)."""

    version: int
    page_size: int
    pages_used: int
    file_size: int
    map_size: int
    free_pages: int
    pending_pages: int
    tables: int
    entries: int
    tree_pages: int
    readers_used: int
    max_readers: int
    oldest_version: int
    active_versions: int


class ReaderInfo(ValueClass, slots=False):
    """One claimed reader slot: who pins which version (0 = idle slot)."""

    pid: int
    thread: int
    version: int
    alive: bool


class Environment(EnvCore):
    """One database file, shared by processes and threads.

    Args:
        path: the data file; its lock file is ``<path>.lock``.
        durability: ``"full"`` (a commit that returned survives power loss;
            one fdatasync per commit) or ``"none"`` (survives a crash of the
            process, not of the OS; a clean :meth:`close` syncs once, so
            the state at close survives an OS crash too, and damage to it
            is reported rather than silently rolled back: docs/integrity.md).
        max_size: largest size in bytes the file may reach (address space is
            reserved, not memory); ``None`` for the engine default (64 GiB).
        max_readers: reader slots when the lock file is built; ``None`` for
            the default (126).  A lock file in use keeps its size.
        max_active_versions: ``None`` for no limit; else beginning a write
            that would keep more distinct versions alive raises
            :class:`VersionLimitError` (long-lived snapshots pin versions and
            make the file grow).
        read_only: open for reading only; the file must exist.  Where the
            lock file cannot be opened for writing (a read-only directory or
            medium) the database opens *immutable*, creating no file: no
            reader slot and no change notifications, so only where nothing
            writes it -- if another process has it open, the open is refused
            with a :class:`SideFileError` naming ``<path>.lock``.
        verify: verify each page's checksum the first time this process
            reads that page version (the default), so damaged bytes raise
            :class:`CorruptError` instead of being returned; ``False`` skips
            the checksums for raw speed (structure is still checked).
        recover: salvage a damaged file: if the newest acknowledged version
            is damaged (or both copies of a meta record, or the file was
            truncated), open the newest intact version instead of raising
            :class:`CorruptError`.  :attr:`recovered_from` then tells the
            version given up, :attr:`recovery_note` why, and a
            :class:`~realmpy.errors.RecoveryWarning` is issued.  Only the
            first process to open the file recovers.

    Side files: ``<path>.lock`` is never followed if it is a symlink; every
    problem with it is a :class:`SideFileError` (errno, ``filename``).  If it
    is deleted, replaced or truncated while open, reads and writes raise
    :class:`LockFileChangedError` until the environment is reopened.

    The environment may be shared by threads; each transaction belongs to
    the thread that began it.  Use it as a context manager or call
    :meth:`close`.

    ``read()`` (native: ``realmpy._native.EnvCore.read``) begins a read
    :class:`Snapshot` of the latest version.  The snapshot sees that one
    version for its whole life and pins it; end it promptly (``with
    env.read() as snap:``) so that old pages can be reused.
    """

    __slots__ = (
        "__weakref__",
        "_durability",
        "_env",
        "_inflight",
        "_lock",
        "_pid",
        "_read_only",
        "_recovered_from",
        "_recovery_note",
    )

    if TYPE_CHECKING:

        def read(self) -> Snapshot: ...

    def __init__(
        self,
        path: StrPath,
        *,
        durability: Durability = "full",
        max_size: int | None = None,
        max_readers: int | None = None,
        max_active_versions: int | None = None,
        read_only: bool = False,
        verify: bool = True,
        recover: bool = False,
    ) -> None:
        # Set first so that __del__ and close() work even if we raise below.
        self._env: Any = None  # the cffi handle; _closing is True until _attach
        if not isinstance(path, (str, os.PathLike)):
            raise _b.type_error("path", "a str or os.PathLike", path)
        fspath = os.fspath(path)
        if not isinstance(fspath, str):
            raise _b.type_error("path", "a str path", fspath)
        if not fspath or "\0" in fspath:
            raise _e.InvalidArgumentError(
                f"path must be a non-empty file name without NUL: {fspath!r}"
            )
        if durability not in ("full", "none"):
            raise _e.InvalidArgumentError(
                f"durability must be 'full' or 'none', not {durability!r}"
            )
        for name, flag in (("read_only", read_only), ("verify", verify), ("recover", recover)):
            if not isinstance(flag, bool):
                raise _b.type_error(name, "a bool", flag)
        size = 0 if max_size is None else _b.check_int(max_size, "max_size", 0, 2**63)
        readers = (
            0 if max_readers is None else _b.check_int(max_readers, "max_readers", 1, 2**31 - 1)
        )
        versions = (
            0
            if max_active_versions is None
            else _b.check_int(max_active_versions, "max_active_versions", 1, 2**31 - 1)
        )
        self._path = fspath
        self._durability: Durability = durability
        self._read_only = read_only
        self._pid = os.getpid()
        self._lock = threading.Lock()
        # One entry per call in the engine with the GIL released: the handle
        # is freed only once they have all returned (see _leave).
        self._inflight: list[None] = []
        self._live = set()
        self._names = {}

        flags = (
            (lib.RP_NOSYNC if durability == "none" else 0)
            | (lib.RP_RDONLY if read_only else 0)
            | (0 if verify else lib.RP_NOVERIFY)
            | (lib.RP_RECOVER if recover else 0)
        )
        envp = ffi.new("rp_env **")
        rc = lib.rp_env_open(os.fsencode(fspath), flags, size, readers, versions, envp)
        if rc != _b.OK:
            what = "cannot open database"
            if rc == _b.CORRUPT and not recover:
                what += " (recover=True opens the newest intact version instead)"
            raise _b.error(rc, what, fspath)
        self._env = envp[0]
        self._attach(int(ffi.cast("uintptr_t", self._env)), Snapshot)
        rolled = int(lib.rp_env_recovered_from(self._env))
        self._recovered_from: int | None = rolled or None
        self._recovery_note: str = ffi.string(lib.rp_env_recovery_note(self._env)).decode(
            "utf-8", "replace"
        )
        if rolled:
            warnings.warn(
                f"{fspath}: recovered a damaged database: {self._recovery_note}",
                _e.RecoveryWarning,
                stacklevel=2,
            )

    # ---- properties -----------------------------------------------------

    @property
    def path(self) -> str:
        """The data file's path, as given."""
        return self._path

    @property
    def durability(self) -> Durability:
        """``"full"`` or ``"none"``."""
        return self._durability

    @property
    def read_only(self) -> bool:
        """Whether write transactions are refused."""
        return self._read_only

    @property
    def recovered_from(self) -> int | None:
        """With ``recover=True``: the newest version this open gave up because
        it was damaged (a lower bound when a damaged meta record hid it);
        ``None`` when nothing was rolled back."""
        return self._recovered_from

    @property
    def recovery_note(self) -> str:
        """What the recovery rolled back and why (``""`` if nothing)."""
        return self._recovery_note

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (or the open failed)."""
        return self._closing

    @property
    def version(self) -> int:
        """Latest committed version: one atomic load from shared memory."""
        env = self._enter("read the version")
        try:
            return int(lib.rp_env_version(env))
        finally:
            self._leave()

    @property
    def version_address(self) -> int:
        """Address of the shared version counter that :attr:`version` loads
        (``rp_env_version_addr``), for C code that checks for newer versions
        without a call (the object layer's property fast path).

        Only an acquire atomic load may read it, and only while a
        transaction of this environment is open: that keeps the engine
        handle, and so the counter's mapping, alive."""
        if self._closing:
            raise self._closed_error("read the version counter's address")
        return int(lib.rp_env_version_addr(self._env))

    # ---- calls in the engine ------------------------------------------------

    def _enter(self, what: str) -> Any:
        """Register a call about to run in the engine without the GIL and
        return the engine handle, which stays allocated until the matching
        :meth:`_leave`; :class:`ClosedError` once closing."""
        self._inflight.append(None)
        if self._closing:
            self._leave()
            raise self._closed_error(what)
        return self._env

    def _leave(self) -> None:
        """The call registered by :meth:`_enter` returned; the last one out
        of a closing environment frees it."""
        inflight = self._inflight
        inflight.pop()
        if self._closing and not inflight:
            self._release_if_idle()

    def _call(self, what: str, fn: Any, *args: Any) -> None:
        """Run an env-level engine call: ``fn(handle, *args)``."""
        env = self._enter(what)
        try:
            rc = fn(env, *args)
        finally:
            self._leave()
        if rc != _b.OK:
            raise _b.error(rc, f"cannot {what}", self._path)

    # ---- transactions ---------------------------------------------------

    def write(
        self, timeout: float | None = None, *, record_history: bool = True
    ) -> WriteTransaction:
        """Begin the write transaction, waiting for other writers to finish.

        One writer at a time across every process and thread.  As a context
        manager it commits on a clean exit and aborts on an exception.
        ``timeout`` (seconds; None waits forever, 0 only takes a free lock)
        bounds the wait for the write lock: :class:`WriteLockTimeoutError`
        after it.

        On a file that keeps a history (a synced file) the transaction
        records its changes there (see :func:`register_history`);
        ``record_history=False`` is for the history's own keeper (the sync
        client applying the server's changes, which are not local ones).
        """
        ms = -1
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise _b.type_error("timeout", "a number or None", timeout)
            if not timeout >= 0:
                raise _e.InvalidArgumentError(f"timeout must be >= 0 or None, not {timeout}")
            if timeout != float("inf"):
                ms = min(int(timeout * 1000), 2**62)
        out = ffi.new("rp_txn **")
        env = self._enter("begin a transaction")
        try:
            # Waits for the writer mutex with the GIL released.
            rc = lib.rp_txn_begin_timed(env, lib.RP_TXN_WRITE, ms, out)
            if rc != _b.OK:
                raise _b.error(rc, "cannot begin a write transaction", self._path)
            try:
                txn: WriteTransaction = self._adopt(
                    WriteTransaction, int(ffi.cast("uintptr_t", out[0]))
                )
            except BaseException:
                lib.rp_txn_abort(out[0])
                raise
        finally:
            self._leave()
        if self._closing:  # close() ran while we waited for the writer mutex
            txn._end("closed with its environment")
            raise self._closed_error("begin a transaction")
        txn._observer = _UNRESOLVED if record_history else _CHANGES_UNRESOLVED
        txn._changed = None
        txn._record = False
        return txn

    # ---- waiting for other processes -------------------------------------

    def wait_for_change(self, since: int, timeout: float | None = None) -> int:
        """Block until the version differs from ``since``; return it.

        Returns ``since`` if ``timeout`` seconds pass first.  Costs no CPU
        while waiting (futex).  The wait is cut into short slices so that
        signal handlers (Ctrl-C) run promptly.  Raises :class:`ClosedError`
        if the environment is closed meanwhile.
        """
        _b.check_int(since, "since", 0, 2**64 - 1)
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise _b.type_error("timeout", "a number or None", timeout)
            if not timeout >= 0:
                raise _e.InvalidArgumentError(f"timeout must be >= 0 or None, not {timeout}")
            if timeout == float("inf"):
                timeout = None
        deadline = None if timeout is None else time.monotonic() + timeout
        out = ffi.new("uint64_t *")
        while True:
            if deadline is None:
                slice_ns = _WAIT_SLICE_NS
            else:
                left = deadline - time.monotonic()
                slice_ns = 0 if left <= 0 else min(_WAIT_SLICE_NS, int(left * 1e9) + 1)
            env = self._enter("wait for a change")
            try:
                rc = lib.rp_env_wait(env, since, slice_ns, out)
            finally:
                self._leave()
            if rc != _b.OK:
                raise _b.error(rc, "wait for a change failed", self._path)
            version = int(out[0])
            if version != since or slice_ns == 0:
                return version

    # ---- whole-environment operations -------------------------------------

    def stats(self) -> Stats:
        """Statistics of the latest version (sizes, free pages, readers)."""
        st = ffi.new("rp_stat *")
        self._call("read statistics", lib.rp_env_stat, st)
        return Stats(
            version=st.version,
            page_size=st.page_size,
            pages_used=st.pages_used,
            file_size=st.file_size,
            map_size=st.map_size,
            free_pages=st.free_pages,
            pending_pages=st.pending_pages,
            tables=st.tables,
            entries=st.entries,
            tree_pages=st.tree_pages,
            readers_used=st.readers_used,
            max_readers=st.max_readers,
            oldest_version=st.oldest_version,
            active_versions=st.active_versions,
        )

    def readers(self) -> list[ReaderInfo]:
        """Claimed reader slots: who pins which version (0 = idle)."""
        # Not sized from stats(): that needs a reader slot itself, and this
        # is most useful exactly when every slot is taken.
        cap = 128
        count = ffi.new("unsigned *")
        while True:
            out = ffi.new("rp_reader_info[]", cap)
            self._call("list readers", lib.rp_env_readers, out, cap, count)
            if int(count[0]) < cap:
                break
            cap *= 4
        return [
            ReaderInfo(
                pid=int(r.pid),
                thread=int(r.thread),
                version=int(r.version),
                alive=bool(r.alive),
            )
            for r in (out[i] for i in range(min(int(count[0]), cap)))
        ]

    def reader_check(self) -> int:
        """Free the reader slots of dead processes now; return how many.

        Writers do this by themselves; this is for tools and tests.
        """
        reaped = ffi.new("unsigned *")
        self._call("reap readers", lib.rp_env_reap_readers, reaped)
        return int(reaped[0])

    def check(self) -> None:
        """Verify the latest version: every tree, page checksum and page.

        Raises :class:`CorruptError` describing the first problem found
        (where: page, table, the check that failed).
        """
        msg = ffi.new("char[]", 1024)
        self._call("check the database (integrity check failed)", lib.rp_env_check, msg, 1024)

    def compact(self, dest_path: StrPath) -> None:
        """Write a compacted copy of the latest version to ``dest_path``.

        ``dest_path`` must not exist.  The copy is durable on return.
        """
        if not isinstance(dest_path, (str, os.PathLike)):
            raise _b.type_error("dest_path", "a str or os.PathLike", dest_path)
        dest = os.fspath(dest_path)
        if not isinstance(dest, str) or not dest or "\0" in dest:
            raise _e.InvalidArgumentError(f"bad dest_path: {dest!r}")
        self._call(f"compact into {dest!r}", lib.rp_env_compact, os.fsencode(dest))

    # ---- closing ---------------------------------------------------------

    def close(self) -> None:
        """Close the environment.  Idempotent; never raises, never waits.

        Ends this thread's open transactions (write transactions are
        aborted), makes new calls raise :class:`ClosedError`, wakes
        :meth:`wait_for_change` callers, and frees the engine handle once
        the transactions of other threads have ended and their calls in the
        engine have returned (they keep working until then; whichever ends
        last frees it).
        """
        if self._env is None:  # never opened (or already released)
            self._closing = True
            return
        with self._lock:
            if self._closing:
                return
            self._closing = True
            # Our own use of the handle below counts as a call in the engine.
            self._inflight.append(None)
        if os.getpid() != self._pid:
            # Inherited across fork(): the handle and parked snapshots are
            # the parent's; drop them.
            self._env = None
            self._detach(False)
            self._live.clear()
            return
        lib.rp_env_interrupt(self._env)
        me = threading.get_ident()
        for txn in list(self._live):
            if txn._owner == me:
                txn._end("closed with its environment")
        self._leave()

    def _release_if_idle(self) -> None:
        """Free the engine handle once nothing uses it (closing only): no
        live transaction, no call in the engine.  Never waits."""
        with self._lock:
            env = self._env
            if env is None or self._live or self._inflight:
                return
            self._env = None
            self._detach(True)  # frees the parked read handles
        rc = lib.rp_env_close(env)
        if rc != _b.OK:  # pragma: no cover - we checked there is nothing open
            self._env = env

    def _closed_error(self, what: str) -> _e.ClosedError:
        exc = _e.ClosedError(
            f"cannot {what}: the environment is closed (open it again) [{self._path}]"
        )
        exc.path = self._path
        return exc

    def __enter__(self) -> Environment:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closing else "open"
        return f"<Environment {self._path!r} {state}>"

    # ---- helpers used by transactions -------------------------------------

    def _encode_name(self, table: object) -> bytes:
        """Validate and encode a table name (slow path; results are cached)."""
        if not isinstance(table, str):
            raise _b.type_error("table name", "a str", table)
        try:
            name = table.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _e.BadTableError(f"table name {table!r} is not valid UTF-8") from exc
        if not name or len(name) > _b.MAX_TABLE_NAME:
            raise _e.BadTableError(
                f"table name {table!r}: must be 1 to {_b.MAX_TABLE_NAME} bytes of UTF-8"
            )
        names = self._names
        if len(names) >= _NAME_CACHE_MAX:
            names.clear()
        names[table] = name
        return name


# ----------------------------------------------------------------------------
# History observers
#
# A file may keep a history of its changes (a synced file records every
# write's changeset, in the same transaction, for upload).  That must hold
# for every write, whoever makes it, so the write transaction itself calls
# the observer: the kind of history is stored in the file (HISTORY_TABLE /
# HISTORY_KEY; "local" or absent: none), and the layer that keeps that kind
# of history (realmpy.sync.history, for "sync") registers a factory here.


HISTORY_TABLE: Final = "_meta"
HISTORY_KEY: Final = b"history"


class WriteObserver(Protocol):
    """What a write transaction on a file with history calls."""

    def before_change(self, txn: WriteTransaction, table: str, keys: Sequence[bytes]) -> None:
        """``keys`` of ``table`` are about to be put or deleted."""

    def before_drop(self, txn: WriteTransaction, table: str) -> None:
        """``table`` is about to be dropped."""

    def before_commit(self, txn: WriteTransaction) -> None:
        """The transaction is about to commit (its writes here are not observed)."""


_HISTORY_OBSERVERS: dict[bytes, Callable[[], WriteObserver]] = {}
# The history kinds realmpy provides, by the module that registers each: it is
# imported at the first write to such a file (so that ``import realmpy`` does
# not load the sync client, yet every writer of a synced file records).
_HISTORY_MODULES: Final[dict[bytes, str]] = {b"sync": "realmpy.sync.history"}
_UNRESOLVED: Final[Any] = object()  # not looked up yet: at the first change
_CHANGES_UNRESOLVED: Final[Any] = object()  # no history; change records not looked up yet
_UNKNOWN_CHANGES: Final = b"\xc0"  # msgpack nil: a change record that says "unknown"
_NEW: Final[Any] = object()  # WriteTransaction._note: a table not changed yet
# Beyond this many keys a transaction records a table as changed as a whole
# (the native put/delete note keys too: the constant is theirs).
CHANGED_KEYS_MAX: Final = _NATIVE_CHANGED_KEYS_MAX
# Change records (docs/format.md): the table, how many versions are kept (at
# least), and how many are pruned at once (most commits touch one leaf).
CHANGES_TABLE: Final = "_changes"
CHANGES_KEEP: Final = 1000
_CHANGES_PRUNE: Final = 64
_version_key = struct.Struct(">Q").pack


def upgrade_file(path: StrPath) -> bool:
    """Convert the data file at ``path`` from format 1 or 2 to the current
    format in place (csrc/legacy.c, docs/format.md); False if it is not of an
    old format (nothing done).

    Safe against a crash at any point (the old file stays whole until a
    complete, durable copy is renamed over it), but only when no other
    process has the file open: callers hold its session file exclusively
    (``realmpy.sharedfile.upgrade_alone``).  A damaged old file raises
    :class:`~realmpy.errors.CorruptError` and is left as it was.
    """
    fspath = os.fspath(path)
    converted = ffi.new("int *")
    rc = lib.rp_env_upgrade(os.fsencode(fspath), converted)
    if rc != _b.OK:
        raise _b.error(rc, "cannot convert the database from format 1 or 2", fspath)
    return bool(converted[0])


def register_history(kind: str, factory: Callable[[], WriteObserver]) -> None:
    """Make every write transaction on a file with ``kind`` history call
    ``factory()``'s observer (one per transaction)."""
    _HISTORY_OBSERVERS[kind.encode()] = factory


class Snapshot(ReadMethods, ReadTxn):
    """A read-only view of one committed version, pinned until it ends.

    Use as a context manager (``with env.read() as snap:``) or call
    :meth:`end`.  Reads never block and are never blocked by writers.

    Native methods (``realmpy._native.ReadTxn`` and ``TxnBase``):
    ``get(table, key)`` (the value stored under ``key`` in ``table``, or
    ``None``); ``end()`` (end the snapshot, unpinning its version;
    idempotent; also ``__exit__`` and ``abort``); ``latest_version()`` (the
    environment's latest committed version without :attr:`Environment.version`'s
    in-flight guard -- this live snapshot keeps the engine handle open --
    so a holder of a snapshot can compare it with :attr:`version` on every
    read, one atomic load); ``version`` (the version it reads) and
    ``active``.  The batched reads are :class:`~realmpy.storagereads.ReadMethods`'.
    """

    __slots__ = ()

    if TYPE_CHECKING:

        def __enter__(self) -> Snapshot: ...

    def share(self) -> None:
        """Make this snapshot usable from every thread (``rp_txn_share``).

        From then on any thread may call its methods and end it, and
        :meth:`Environment.close` no longer ends it (it has no owner thread;
        the environment is freed once it ends).  The caller must serialise
        every call on it: at most one thread inside a method of this
        snapshot at a time, scans included (a scan reads a batch per
        ``next()`` that needs one; see :class:`realmpy.sharedsnapshot.SharedSnapshot`,
        which does this with a lock).  Only the owner may share it.
        Idempotent.
        """
        if self._owner == _SHARED:
            return
        rc = int(lib.rp_txn_share(self._handle()))
        if rc != _b.OK:
            raise _b.error(rc, "cannot share the snapshot", self._env._path)
        self._set_shared()

    def refresh(self) -> None:
        """Move this snapshot to the latest version, in place.

        Equivalent to ending it and beginning a new one, in one engine call
        and without a new object: the cheap way for a long-lived reader
        (a realm advancing, a poller) to see other processes' commits.
        """
        rc = lib.rp_txn_refresh(self._handle())
        self._version = None
        if rc != _b.OK:
            # The engine left the handle parked (pinning nothing): end it.
            self._end("failed")
            raise _b.error(rc, "cannot refresh the snapshot", self._env._path)


class WriteTransaction(ReadMethods, WriteTxn):
    """The write transaction: one at a time across all processes.

    As a context manager it commits on a clean exit and aborts if the block
    raises.  :meth:`commit` and :meth:`abort` end it explicitly.

    Native methods (``realmpy._native.WriteTxn`` and ``TxnBase``):
    ``get(table, key)``; ``put(table, key, value)`` (insert or replace,
    creating the table); ``delete(table, key)`` (whether it existed);
    ``abort()`` (idempotent); ``version`` (the version it will commit,
    minus one) and ``active``.  ``put`` and ``delete`` call the history
    observer first (:meth:`_observe`) when the file keeps a history.
    """

    __slots__ = ("_changed", "_record")
    # What this transaction changed, per table: the keys written or deleted,
    # or None for "any key" (a dropped table, or more than CHANGED_KEYS_MAX
    # keys); None when nobody asked (track_changes).  Kept in memory only;
    # the object layer stores it with each of its commits so listeners
    # re-read only what a commit changed.
    _changed: dict[str, set[bytes] | None] | None
    _record: bool

    # ---- the history observer ------------------------------------------------

    # The native put/delete call _observe only while _observer is not None:
    # it holds the history observer, _UNRESOLVED until the first change
    # looks the file's history kind up (_CHANGES_UNRESOLVED: a transaction
    # that records no history still looks up whether the file keeps change
    # records), or, when there is no history but the keys changed are kept
    # (track_changes), the change record itself (the dict _changed): the
    # native put/delete then note the key in it without calling Python
    # (csrc/py/storage.c, note_changed).

    def _observe(self, table: str, keys: Sequence[bytes]) -> None:
        obs = self._resolved_observer()
        if self._changed is not None:
            self._note(table, keys)
        if obs is not None:
            obs.before_change(self, table, keys)

    def _resolved_observer(self) -> WriteObserver | None:
        """The history observer (looked up at the first change), or None."""
        obs = self._observer
        if obs is _UNRESOLVED or obs is _CHANGES_UNRESOLVED:
            # A file with change records gets this commit's record whoever
            # writes (a realm, the sync client, a plain transaction), so
            # that each version's record is that commit's.
            if self._changed is None and self.count(CHANGES_TABLE):
                self._changed = {}
            obs = self._history_observer() if obs is _UNRESOLVED else None
            self._observer = obs if obs is not None else self._no_history()
        return None if type(obs) is dict else obs

    def _no_history(self) -> Any:
        return self._changed  # the change record, if kept (see above), else None

    def _history_observer(self) -> WriteObserver | None:
        """The observer this file's history kind asks for (read in this
        transaction), or None."""
        kind = self.get(HISTORY_TABLE, HISTORY_KEY)
        if kind is None or kind == b"local":
            return None
        factory = _HISTORY_OBSERVERS.get(kind)
        if factory is None and kind in _HISTORY_MODULES:
            importlib.import_module(_HISTORY_MODULES[kind])  # registers it
            factory = _HISTORY_OBSERVERS.get(kind)
        if factory is None:
            raise _e.TransactionError(
                f"this file keeps {kind.decode(errors='replace')!r} history and nothing "
                "in this process records it: import the module that registers it "
                f"(realmpy.storage.register_history) before writing to it [{self._env._path}]"
            )
        return factory()

    def _history_key_written(self) -> None:
        """The history kind was just written: if no observer is attached yet,
        look the kind up again at the next change (a new synced file records
        its changes from the write that made it synced)."""
        obs = self._observer
        if obs is None or obs is _CHANGES_UNRESOLVED or type(obs) is dict:
            self._observer = _UNRESOLVED

    def track_changes(self) -> None:
        """Keep the keys this transaction writes and deletes (:meth:`changed`)
        from now on; the object layer asks right after it begins."""
        if self._changed is None:
            self._changed = {}
            if self._observer is None:
                self._observer = self._changed

    def _note(self, table: str, keys: Collection[bytes]) -> None:
        changed = self._changed
        assert changed is not None
        seen = changed.get(table, _NEW)
        if seen is _NEW:
            seen = changed[table] = set()
        if seen is not None:
            if len(seen) + len(keys) > CHANGED_KEYS_MAX:
                changed[table] = None
            else:
                seen.update(keys)

    def record_changes(self) -> None:
        """Store what this transaction changed as its version's change
        record (table ``CHANGES_TABLE``, created here if the file has none).
        Every later commit to a file that has the table stores its record
        too, whoever makes it, so each version's record is that commit's."""
        self._record = True

    def _write_changes(self) -> None:
        if not self._record and self.count(CHANGES_TABLE) == 0:
            return  # a file without change records
        version = self.version + 1
        if self._changed is None:
            # Nobody tracked this commit's keys (a plain storage or sync
            # transaction): its record says "unknown" (nil, not a map), which
            # readers answer with a full re-run, and replaces any older
            # record under this version number.
            self.put(CHANGES_TABLE, _version_key(version), _UNKNOWN_CHANGES)
        else:
            out: dict[str, list[bytes] | None] = {}
            for table, keys in self._changed.items():
                if table != CHANGES_TABLE:
                    out[table] = (
                        None if keys is None or len(keys) > CHANGED_KEYS_MAX else sorted(keys)
                    )
            self.put(CHANGES_TABLE, _version_key(version), msgpack.packb(out, use_bin_type=True))
        if version % _CHANGES_PRUNE == 0 and version > CHANGES_KEEP:
            for old in range(
                max(1, version - CHANGES_KEEP - _CHANGES_PRUNE + 1), version - CHANGES_KEEP + 1
            ):
                self.delete(CHANGES_TABLE, _version_key(old))

    def changed(self) -> dict[str, set[bytes] | None]:
        """What this transaction changed so far (starting :meth:`track_changes`
        if nobody had): per table, the keys written or deleted, or None for
        any key of it.  The live record: a direct writer
        (:meth:`allows_direct`) adds the keys it writes to the table's set,
        if it has one (None stays None)."""
        self.track_changes()
        assert self._changed is not None
        return self._changed

    def raise_error(self, rc: int, what: str, table: str) -> NoReturn:
        """Raise the error of engine result ``rc`` (of a direct write, see
        :meth:`allows_direct`) as this transaction's methods would."""
        self._fail(rc, what, table)

    def allows_direct(self) -> bool:
        """Whether realmpy's native one-call writes (``RealmState.add``,
        csrc/py/add.c) may write in this transaction without these methods:
        False where every change must go through them (a history observer
        sees every change) or the transaction is not usable here (another
        thread, ended).  They write only plain records and index entries
        (never the history table) and add the keys to :meth:`changed`."""
        if not self.active:
            return False
        try:
            self._handle()  # checks the owner thread
        except _e.RealmpyError:
            return False  # the general path raises the typed error
        return self._resolved_observer() is None

    # ---- writes ----------------------------------------------------------------

    def put_many(self, table: str, items: Iterable[tuple[BytesLike, BytesLike]]) -> int:
        """Insert or replace many pairs with few engine calls; return how many.

        The pairs are packed into one buffer per chunk of about 1 MiB (the
        engine's ``rp_put_many`` format), which amortises the per-call cost.
        """
        self._handle()  # checks the thread and that the transaction is open
        name = self._name(table)
        parts: list[bytes] = []
        append = parts.append
        pack = _pack_hdr
        size = n = total = 0
        keys: list[bytes] | None = [] if self._observer is not None else None
        for pair in items:
            try:
                key, value = pair
            except (TypeError, ValueError):
                raise _b.type_error("each item", "a (key, value) pair", pair) from None
            if type(key) is not bytes:
                key = _b.as_bytes(key, "key")
            if type(value) is not bytes:
                value = _b.as_bytes(value, "value")
            kl, vl = len(key), len(value)
            if not 0 < kl <= _b.MAX_KEY:
                self._fail(int(lib.RP_KEY_TOO_LONG), "put_many failed", table)
            append(pack(kl, vl))
            append(key)
            append(value)
            if keys is not None:
                keys.append(key)
            n += 1
            size += 8 + kl + vl
            if size >= _PUT_MANY_CHUNK:
                self._put_packed(table, name, parts, n, keys)
                total += n
                parts.clear()
                size = n = 0
        if n:
            self._put_packed(table, name, parts, n, keys)
            total += n
        return total

    def _put_packed(
        self, table: str, name: bytes, parts: list[bytes], n: int, keys: list[bytes] | None
    ) -> None:
        if keys:  # the observer sees each chunk's keys before they change
            self._observe(table, keys)
            keys.clear()
        buf = b"".join(parts)
        rc = lib.rp_put_many(self._handle(), name, len(name), buf, len(buf), n)
        if rc != _b.OK:
            self._fail(rc, "put_many failed", table)

    def put_columns(
        self, table: str, keys: Sequence[bytes], values: Sequence[bytes] | None = None
    ) -> int:
        """``put_many(table, zip(keys, values))`` for parallel sequences of
        ``bytes`` (``values=None``: every value empty); returns how many.

        A fast path for bulk loads (the object layer's ``add_all`` and
        index entries): the engine buffer is built in C
        (``realmpy._native.pack_records``) rather than by a Python loop
        per pair.  Keys and values must be exactly ``bytes``.
        """
        txn = self._handle()
        name = self._name(table)
        n = len(keys)
        if values is not None and len(values) != n:
            raise _e.InvalidArgumentError(
                f"put_columns: {n} keys but {len(values)} values (table {table!r})"
            )
        if not n:
            return 0
        keyl = list(keys) if type(keys) is not list else keys
        vall = None if values is None else list(values) if type(values) is not list else values
        if not _columns_ok(keyl, vall, _b.MAX_KEY):  # one C pass; else find the culprit
            if set(map(type, keys)) != {bytes}:
                bad = next(k for k in keys if type(k) is not bytes)
                raise _b.type_error("each key", "bytes", bad)
            klens = list(map(len, keys))
            if min(klens) == 0 or max(klens) > _b.MAX_KEY:
                self._fail(int(lib.RP_KEY_TOO_LONG), "put_columns failed", table)
            if values is not None and set(map(type, values)) != {bytes}:
                bad = next(v for v in values if type(v) is not bytes)
                raise _b.type_error("each value", "bytes", bad)
        if self._observer is not None:
            self._observe(table, keyl)
        # Chunks of about _PUT_MANY_CHUNK bytes, as put_many does, each
        # packed as [u32 klen][u32 vlen][key][value]... in C.
        start = 0
        while start < n:
            buf, stop = _pack_records(keyl, vall, start, _PUT_MANY_CHUNK)
            rc = lib.rp_put_many(txn, name, len(name), buf, len(buf), stop - start)
            if rc != _b.OK:
                self._fail(rc, "put_columns failed", table)
            start = stop
        return n

    def drop(self, table: str) -> bool:
        """Remove ``table`` and all its keys; return whether it existed."""
        txn = self._handle()
        name = self._name(table)
        obs = self._resolved_observer()
        if obs is not None:
            obs.before_drop(self, table)
        if self._changed is not None:
            self._changed[table] = None
        rc = lib.rp_drop_table(txn, name, len(name))
        if rc == _b.OK:
            return True
        if rc == _b.NOTFOUND:
            return False
        self._fail(rc, "drop failed", table)

    def commit(self) -> int:
        """Commit and end the transaction; return the version it created.

        With durability ``"full"`` the changes are on stable storage when
        this returns.  On failure the transaction is rolled back (and still
        ended) and the error is raised; the file keeps its previous version.
        """
        self._handle()  # checks the thread before the observer runs
        obs = self._observer
        if obs is not None:
            self._observer = None  # its own writes (the changeset) are not observed
            if obs is not _UNRESOLVED and obs is not _CHANGES_UNRESOLVED and type(obs) is not dict:
                obs.before_commit(self)
        if self._state == "open":
            try:
                self._write_changes()
            except BaseException:
                self.abort()  # a commit that fails is rolled back and ended
                raise
        return self._commit()

    def __enter__(self) -> WriteTransaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._owner == _ENDED:
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()
