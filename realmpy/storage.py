"""The storage layer: environments, snapshots and write transactions.

This is a thin, typed wrapper over the C engine (``csrc/realmpy.h``,
compiled by ``build.py`` into ``realmpy._engine``).  An :class:`Environment`
is one database file shared by any number of processes and threads::

    with Environment("cars.db") as env:
        with env.write() as txn:              # one writer across processes
            txn.put("cars", b"k1", b"v1")     # commits on clean exit
        with env.read() as snap:              # a pinned snapshot
            assert snap.get("cars", b"k1") == b"v1"

Rules the wrapper enforces so that no C pointer is ever used after it is
freed, whatever the caller does:

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
  once every other thread's transaction has ended (those finish normally).
  We chose this over raising ``BusyError``: closing never fails and never
  leaves a half-closed handle behind.
* Scans hold no C cursor between items: each batch opens a cursor, seeks,
  copies a batch of records into a per-thread buffer and closes it, so an
  abandoned iterator pins nothing and can be collected in any thread.
* After ``fork()`` the engine answers :class:`ForkedError` to every call;
  the child must open its own environment.

Hot paths (``get``, ``put``, ``scan``, read begin/end) avoid per-call cffi
allocations: out-parameters are pooled per environment and reused by each
transaction, table names are encoded once and cached, and classes use
``__slots__``.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import os
import struct
import threading
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, NoReturn, Protocol, Union

import msgpack  # type: ignore[import-untyped,unused-ignore]

import realmpy.errors as _e

from ._engine import ffi, lib
from ._native import columns_ok as _columns_ok
from ._native import pack_keys as _pack_keys
from ._native import pack_records as _pack_records

__all__ = [
    "FILTER_FALSE",
    "FILTER_TRUE",
    "FILTER_UNKNOWN",
    "Environment",
    "ReaderInfo",
    "Snapshot",
    "Stats",
    "WriteTransaction",
    "filter_verdict",
]

StrPath = Union[str, "os.PathLike[str]"]
# Keys and values are bytes; other bytes-like objects are copied to bytes.
BytesLike = Union[bytes, bytearray, memoryview]
Durability = Literal["full", "none"]

MAX_KEY: Final[int] = int(lib.RP_MAX_KEY)
MAX_TABLE_NAME: Final[int] = int(lib.RP_MAX_TABLE_NAME)

_OK: Final = 0
_NOTFOUND: Final[int] = int(lib.RP_NOTFOUND)
_CORRUPT: Final[int] = int(lib.RP_CORRUPT)
_SEEK_FIRST: Final[int] = int(lib.RP_SEEK_FIRST)
_SEEK_LAST: Final[int] = int(lib.RP_SEEK_LAST)
_SEEK_GE: Final[int] = int(lib.RP_SEEK_GE)
_SEEK_LT: Final[int] = int(lib.RP_SEEK_LT)

_get_ident = threading.get_ident
_rec_hdr = struct.Struct("<II")  # rp_put_many record header
_pack_hdr = _rec_hdr.pack
_pack_u32 = struct.Struct("<I").pack  # rp_get_many key header
_NULL = ffi.NULL
# Bound once: a module global is cheaper than an attribute of lib/ffi.
_txn_begin = lib.rp_txn_begin
_txn_abort = lib.rp_txn_abort
_txn_reset = lib.rp_txn_reset
_txn_renew = lib.rp_txn_renew
_txn_refresh = lib.rp_txn_refresh
# Ended snapshots park their engine handle (rp_txn_reset: it pins nothing)
# for the next read() to renew, which skips an allocation, a reader-slot
# claim and a cffi out-parameter on the hot path.  Each parked handle keeps
# one reader slot claimed, so only a few are kept per environment.
_PARKED_MAX: Final = 4
_rp_get = lib.rp_get
_rp_put = lib.rp_put
_rp_del = lib.rp_del
_unpack = ffi.unpack
_env_version = lib.rp_env_version

# Thread ids are never negative; an ended transaction's owner is set to this
# so that a single comparison on the hot path catches both "ended" and
# "wrong thread".
_ENDED: Final = -1
# The owner of a shared snapshot (Snapshot.share): no thread matches it, so
# every call takes the slow path, _not_owner, which lets it through.
_SHARED: Final = -2
# wait_for_change blocks in slices so that signals (Ctrl-C) are handled.
_WAIT_SLICE_NS: Final = 200_000_000
# Scan batches start small (a scan that stops early copies little) and grow.
_chain_batches = itertools.chain.from_iterable
_new_snapshot = object.__new__
_BATCH_CURRENT: Final[int] = int(lib.RP_BATCH_CURRENT)
_BATCH_RAW: Final[int] = int(lib.RP_BATCH_RAW_VALUES)


# A batch decoder for scan_filter_msgpack / scan_join: given the bytes of
# one engine buffer (a msgpack array of bin keys and raw msgpack values),
# its [(key, value), ...].
PairDecoder = Callable[[bytes], list[tuple[bytes, Any]]]


def _decoder(options: Mapping[str, Any] | None) -> Any:
    """A batch decoder for msgpack-valued tables: ``msgpack.unpackb`` with
    the caller's options and limits raised to the engine's."""
    if options is not None and not isinstance(options, Mapping):
        raise _type_error("options", "a mapping of msgpack.unpackb options", options)
    return functools.partial(
        msgpack.unpackb, **{"max_bin_len": 2**31, "max_array_len": 2**32 - 1, **(options or {})}
    )


# A scan batch is one msgpack array of bin strings (rp_cursor_batch); the
# max_*_len limits are raised from their defaults to the engine's limits.
_unpackb = functools.partial(
    msgpack.unpackb,
    max_bin_len=2**31,
    max_array_len=2**32 - 1,
)
_FIRST_BATCH_ITEMS: Final = 16
_MAX_BATCH_ITEMS: Final = 1 << 16
_BATCH_BUF_BYTES: Final = 1 << 16
# put_many packs at most this many bytes per engine call.
_PUT_MANY_CHUNK: Final = 1 << 20
# Encoded table names cached per environment (tables are few; bound anyway).
_NAME_CACHE_MAX: Final = 4096


def _engine_message(code: int) -> str:
    return str(ffi.string(lib.rp_strerror(code)).decode("utf-8", "replace"))


def _error(code: int, what: str, path: str | None) -> _e.StorageError:
    if code == _CORRUPT:
        # Where the engine found it (page, table, check that failed): per
        # thread, set by the call that just failed.
        detail = ffi.string(lib.rp_corrupt_detail()).decode("utf-8", "replace")
        lib.rp_corrupt_clear()
        if detail:
            what = f"{what} ({detail})"
    return _e.error_for_code(code, _engine_message(code), what, path)


def _type_error(what: str, expected: str, got: object) -> _e.ArgumentTypeError:
    return _e.ArgumentTypeError(f"{what} must be {expected}, not {type(got).__name__}")


def _as_bytes(value: object, what: str) -> bytes:
    """Coerce a bytes-like argument (slow path; bytes take the fast path)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise _type_error(what, "bytes", value)


def _check_int(value: object, what: str, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(what, "an int", value)
    if not minimum <= value <= maximum:
        raise _e.InvalidArgumentError(
            f"{what} must be between {minimum} and {maximum}, not {value}"
        )
    return value


FILTER_FALSE: Final[int] = int(lib.RP_FILTER_FALSE)
FILTER_TRUE: Final[int] = int(lib.RP_FILTER_TRUE)
FILTER_UNKNOWN: Final[int] = int(lib.RP_FILTER_UNKNOWN)


def filter_verdict(program: BytesLike, record: BytesLike) -> int:
    """The engine's verdict on one record under a filter program:
    :data:`FILTER_FALSE`, :data:`FILTER_TRUE` or :data:`FILTER_UNKNOWN`
    (``rp_filter_eval``).  Raises
    :class:`~realmpy.errors.InvalidArgumentError` for a malformed program,
    :class:`~realmpy.errors.CorruptError` for a record that is not msgpack
    up to a field the program compares."""
    if type(program) is not bytes:
        program = _as_bytes(program, "program")
    if type(record) is not bytes:
        record = _as_bytes(record, "record")
    out = ffi.new("int *")
    rc = lib.rp_filter_eval(program, len(program), record, len(record), out)
    if rc != _OK:
        raise _error(rc, "filter program", None)
    return int(out[0])


class _Outs:
    """Out-parameters for engine calls, pooled and reused across transactions.

    Allocating cffi objects costs far more than the engine calls they serve,
    so each live transaction borrows one set from its environment's pool.
    """

    __slots__ = ("kl", "kp", "kpc", "n", "txn", "u64", "used", "vl", "vp", "vpc")

    def __init__(self) -> None:
        self.txn: Any = ffi.new("rp_txn **")
        self.vp: Any = ffi.new("const void **")
        self.vl: Any = ffi.new("size_t *")
        self.kp: Any = ffi.new("const void **")
        self.kl: Any = ffi.new("size_t *")
        # char views of the void* out-params: ffi.unpack(vpc[0], n) is ~40%
        # cheaper than casting the void* on every call.  vp/kp own the memory.
        self.vpc: Any = ffi.cast("const char **", self.vp)
        self.kpc: Any = ffi.cast("const char **", self.kp)
        self.n: Any = ffi.new("size_t *")
        self.used: Any = ffi.new("size_t *")
        self.u64: Any = ffi.new("uint64_t *")


class _ScanBuffer(threading.local):
    """Per-thread batch buffer for scans (copied out after every batch)."""

    def __init__(self) -> None:
        self.size = _BATCH_BUF_BYTES
        self.buf: Any = ffi.new("char[]", self.size)
        self.cur: Any = ffi.new("rp_cursor **")

    def grow(self, need: int) -> None:
        size = self.size
        while size < need:
            size *= 2
        self.buf = ffi.new("char[]", size)
        self.size = size


_scan_buffer = _ScanBuffer()


@dataclass(frozen=True)
class Stats:
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


@dataclass(frozen=True)
class ReaderInfo:
    """One claimed reader slot: who pins which version (0 = idle slot)."""

    pid: int
    thread: int
    version: int
    alive: bool


class Environment:
    """One database file, shared by processes and threads.

    Args:
        path: the data file; its lock file is ``<path>.lock``.
        durability: ``"full"`` (a commit that returned survives power loss;
            one fdatasync per commit) or ``"none"`` (survives a crash of the
            process, not of the OS).
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
    """

    __slots__ = (
        "__weakref__",
        "_closing",
        "_durability",
        "_env",
        "_inflight",
        "_live",
        "_lock",
        "_names",
        "_parked",
        "_path",
        "_pid",
        "_pool",
        "_read_only",
        "_recovered_from",
        "_recovery_note",
    )

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
        self._env: Any = None
        self._closing = True
        if not isinstance(path, (str, os.PathLike)):
            raise _type_error("path", "a str or os.PathLike", path)
        fspath = os.fspath(path)
        if not isinstance(fspath, str):
            raise _type_error("path", "a str path", fspath)
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
                raise _type_error(name, "a bool", flag)
        size = 0 if max_size is None else _check_int(max_size, "max_size", 0, 2**63)
        readers = 0 if max_readers is None else _check_int(max_readers, "max_readers", 1, 2**31 - 1)
        versions = (
            0
            if max_active_versions is None
            else _check_int(max_active_versions, "max_active_versions", 1, 2**31 - 1)
        )
        self._path = fspath
        self._durability: Durability = durability
        self._read_only = read_only
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._inflight: list[None] = []
        self._live: set[_Transaction] = set()
        self._pool: list[_Outs] = []
        self._parked: list[tuple[Any, _Outs]] = []
        self._names: dict[str, bytes] = {}

        flags = (
            (lib.RP_NOSYNC if durability == "none" else 0)
            | (lib.RP_RDONLY if read_only else 0)
            | (0 if verify else lib.RP_NOVERIFY)
            | (lib.RP_RECOVER if recover else 0)
        )
        envp = ffi.new("rp_env **")
        rc = lib.rp_env_open(os.fsencode(fspath), flags, size, readers, versions, envp)
        if rc != _OK:
            what = "cannot open database"
            if rc == _CORRUPT and not recover:
                what += " (recover=True opens the newest intact version instead)"
            raise _error(rc, what, fspath)
        self._env = envp[0]
        self._closing = False
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
        inflight = self._inflight
        inflight.append(None)
        try:
            if self._closing:
                raise self._closed_error("read the version")
            return int(lib.rp_env_version(self._env))
        finally:
            inflight.pop()

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

    # ---- transactions ---------------------------------------------------

    def read(self) -> Snapshot:
        """Begin a read snapshot of the latest version.

        The snapshot sees that one version for its whole life and pins it;
        end it promptly (``with env.read() as snap:``) so that old pages can
        be reused.
        """
        # _begin() inlined: this is a hot path (read-txn begin+end).
        inflight = self._inflight
        inflight.append(None)
        try:
            if self._closing:
                raise self._closed_error("begin a read snapshot")
            parked = self._parked
            if parked:
                handle, outs = parked.pop()
                rc = _txn_renew(handle)
                if rc != _OK:
                    _txn_abort(handle)
                    self._pool.append(outs)
                    raise _error(rc, "cannot begin a read snapshot", self._path)
            else:
                pool = self._pool
                outs = pool.pop() if pool else _Outs()
                rc = _txn_begin(self._env, 0, outs.txn)
                if rc != _OK:
                    pool.append(outs)
                    raise _error(rc, "cannot begin a read snapshot", self._path)
                handle = outs.txn[0]
            # Snapshot.__init__ inlined (hot path): same fields as _Transaction.
            snap = _new_snapshot(Snapshot)
            snap._env = self
            snap._txn = handle
            snap._outs = outs
            snap._owner = _get_ident()
            snap._names = self._names
            snap._path = self._path
            snap._state = "open"
            snap._version = None
            self._live.add(snap)
        finally:
            inflight.pop()
        # close() may have run meanwhile in another thread (mypy cannot know).
        if self._closing:
            snap.end()  # type: ignore[unreachable]
            raise self._closed_error("begin a read snapshot")
        return snap

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
                raise _type_error("timeout", "a number or None", timeout)
            if not timeout >= 0:
                raise _e.InvalidArgumentError(f"timeout must be >= 0 or None, not {timeout}")
            if timeout != float("inf"):
                ms = min(int(timeout * 1000), 2**62)
        txn: WriteTransaction = self._begin(WriteTransaction, 1, ms)  # type: ignore[assignment]
        txn._observer = _UNRESOLVED if record_history else None
        txn._changed = {}
        txn._record = False
        return txn

    def _begin(self, cls: type[_Transaction], flags: int, timeout_ms: int = -1) -> _Transaction:
        inflight = self._inflight
        inflight.append(None)
        try:
            if self._closing:
                raise self._closed_error("begin a transaction")
            pool = self._pool
            outs = pool.pop() if pool else _Outs()
            if timeout_ms < 0:
                rc = lib.rp_txn_begin(self._env, flags, outs.txn)
            else:
                rc = lib.rp_txn_begin_timed(self._env, flags, timeout_ms, outs.txn)
            if rc != _OK:
                pool.append(outs)
                raise _error(
                    rc,
                    "cannot begin a write transaction" if flags else "cannot begin a read snapshot",
                    self._path,
                )
            txn = cls(self, outs.txn[0], outs)
            self._live.add(txn)
        finally:
            inflight.pop()
        if self.closed:  # close() ran while we waited for the writer mutex
            txn._end(lib.rp_txn_abort, "closed with its environment")
            raise self._closed_error("begin a transaction")
        return txn

    # ---- waiting for other processes -------------------------------------

    def wait_for_change(self, since: int, timeout: float | None = None) -> int:
        """Block until the version differs from ``since``; return it.

        Returns ``since`` if ``timeout`` seconds pass first.  Costs no CPU
        while waiting (futex).  The wait is cut into short slices so that
        signal handlers (Ctrl-C) run promptly.  Raises :class:`ClosedError`
        if the environment is closed meanwhile.
        """
        _check_int(since, "since", 0, 2**64 - 1)
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise _type_error("timeout", "a number or None", timeout)
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
                if left <= 0:
                    slice_ns = 0
                else:
                    slice_ns = min(_WAIT_SLICE_NS, int(left * 1e9) + 1)
            inflight = self._inflight
            inflight.append(None)
            try:
                if self._closing:
                    raise self._closed_error("wait for a change")
                rc = lib.rp_env_wait(self._env, since, slice_ns, out)
            finally:
                inflight.pop()
            if rc != _OK:
                raise _error(rc, "wait for a change failed", self._path)
            version = int(out[0])
            if version != since or slice_ns == 0:
                return version

    # ---- whole-environment operations -------------------------------------

    def _call(self, what: str, fn: Any, *args: Any) -> None:
        """Run an env-level engine call under the in-flight guard."""
        inflight = self._inflight
        inflight.append(None)
        try:
            if self._closing:
                raise self._closed_error(what)
            rc = fn(self._env, *args)
        finally:
            inflight.pop()
        if rc != _OK:
            raise _error(rc, f"cannot {what}", self._path)

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

        Raises :class:`CorruptError` describing the first problem found.
        """
        msg = ffi.new("char[]", 1024)
        inflight = self._inflight
        inflight.append(None)
        try:
            if self._closing:
                raise self._closed_error("check the database")
            rc = lib.rp_env_check(self._env, msg, 1024)
        finally:
            inflight.pop()
        if rc != _OK:
            # _error adds where (rp_corrupt_detail, which msg repeats).
            raise _error(rc, "integrity check failed", self._path)

    def compact(self, dest_path: StrPath) -> None:
        """Write a compacted copy of the latest version to ``dest_path``.

        ``dest_path`` must not exist.  The copy is durable on return.
        """
        if not isinstance(dest_path, (str, os.PathLike)):
            raise _type_error("dest_path", "a str or os.PathLike", dest_path)
        dest = os.fspath(dest_path)
        if not isinstance(dest, str) or not dest or "\0" in dest:
            raise _e.InvalidArgumentError(f"bad dest_path: {dest!r}")
        self._call(f"compact into {dest!r}", lib.rp_env_compact, os.fsencode(dest))

    # ---- closing ---------------------------------------------------------

    def close(self) -> None:
        """Close the environment.  Idempotent; never raises.

        Ends this thread's open transactions (write transactions are
        aborted), makes new calls raise :class:`ClosedError`, wakes
        :meth:`wait_for_change` callers, and frees the engine handle once
        the transactions of other threads have ended (they keep working
        until then).
        """
        if self._env is None:  # never opened (or already released)
            self._closing = True
            return
        with self._lock:
            if self._closing:
                return
            self._closing = True
        if os.getpid() != self._pid:
            # Inherited across fork(): the handle is the parent's; drop it.
            self._env = None
            self._live.clear()
            return
        lib.rp_env_interrupt(self._env)
        me = _get_ident()
        for txn in list(self._live):
            if txn._owner == me:
                txn._end(lib.rp_txn_abort, "closed with its environment")
        self._release_if_idle()

    def _release_if_idle(self) -> None:
        """Free the engine handle once nothing uses it (closing only)."""
        while self._inflight:  # env-level calls finish quickly once interrupted
            time.sleep(0.0005)
        with self._lock:
            env = self._env
            if env is None or self._live:
                return
            self._env = None
            parked, self._parked = self._parked, []
        for handle, _ in parked:  # parked handles belong to no thread
            _txn_abort(handle)
        rc = lib.rp_env_close(env)
        if rc != _OK:  # pragma: no cover - we checked there is nothing open
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
            raise _type_error("table name", "a str", table)
        try:
            name = table.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _e.BadTableError(f"table name {table!r} is not valid UTF-8") from exc
        if not name or len(name) > MAX_TABLE_NAME:
            raise _e.BadTableError(
                f"table name {table!r}: must be 1 to {MAX_TABLE_NAME} bytes of UTF-8"
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
_NEW: Final[Any] = object()  # WriteTransaction._note: a table not changed yet
# Beyond this many keys a transaction records a table as changed as a whole.
CHANGED_KEYS_MAX: Final = 1024
# Change records (docs/format.md): the table, how many versions are kept (at
# least), and how many are pruned at once (most commits touch one leaf).
CHANGES_TABLE: Final = "_changes"
CHANGES_KEEP: Final = 1000
_CHANGES_PRUNE: Final = 64
_version_key = struct.Struct(">Q").pack


@functools.cache
def _native_engine() -> None:
    """Hand realmpy._native the engine functions its one-call writes use."""
    from ._native import set_engine

    set_engine(*(int(ffi.cast("uintptr_t", ffi.addressof(lib, f))) for f in ("rp_get", "rp_put")))


def register_history(kind: str, factory: Callable[[], WriteObserver]) -> None:
    """Make every write transaction on a file with ``kind`` history call
    ``factory()``'s observer (one per transaction)."""
    _HISTORY_OBSERVERS[kind.encode()] = factory


class _Transaction:
    """Shared part of snapshots and write transactions."""

    __slots__ = (
        "_env",
        "_names",
        "_outs",
        "_owner",
        "_path",
        "_state",
        "_txn",
        "_version",
    )

    _kind = "transaction"

    def __init__(self, env: Environment, txn: Any, outs: _Outs) -> None:
        self._env = env
        self._txn = txn
        self._outs = outs
        self._owner = _get_ident()
        self._names = env._names
        self._path = env._path
        self._state = "open"
        self._version: int | None = None

    # ---- state -------------------------------------------------------------

    def _not_owner(self) -> None:
        """Called when the calling thread is not the recorded owner: return
        for a shared snapshot (:meth:`Snapshot.share`: every thread may use
        it, the caller serialises), else raise why this transaction cannot
        be used from here.  Kept off the hot path: the owner's calls never
        get here."""
        if self._owner == _SHARED:
            return
        if self._owner == _ENDED:
            exc: _e.StorageError = _e.TransactionError(
                f"the {self._kind} is {self._state}: begin a new one [{self._path}]"
            )
        else:
            exc = _e.WrongThreadError(
                f"the {self._kind} belongs to thread {self._owner}, not "
                f"{_get_ident()}: a transaction belongs to the thread that "
                f"began it; begin one in this thread [{self._path}]"
            )
        exc.path = self._path
        raise exc

    def _end(self, fn: Any, state: str) -> int:
        """End the C transaction with ``fn`` and return to the pool.

        Only the owner thread calls this (checked by callers), or any thread
        for a shared snapshot (its user serialises the calls).
        """
        txn = self._txn
        self._owner = _ENDED
        self._state = state
        self._txn = _NULL
        rc = int(fn(txn))
        env = self._env
        env._live.discard(self)
        env._pool.append(self._outs)
        if env._closing:
            env._release_if_idle()
        return rc

    @property
    def active(self) -> bool:
        """True until the transaction is committed, aborted or ended."""
        return self._owner != _ENDED

    @property
    def version(self) -> int:
        """The version this transaction reads.

        For a write transaction: the version it will commit, minus one.
        """
        if self._owner != _get_ident():
            self._not_owner()
        v = self._version
        if v is None:
            v = self._version = int(lib.rp_txn_version(self._txn))
        return v

    def abort(self) -> None:
        """End the transaction, discarding any changes.  Idempotent."""
        if self._owner != _get_ident():
            if self._owner == _ENDED:
                return
            self._not_owner()
        self._end(lib.rp_txn_abort, "aborted")

    def _fail(self, rc: int, what: str, table: object = None) -> NoReturn:
        if table is not None:
            what = f"{what} (table {table!r})"
        raise _error(rc, what, self._path)

    def _name(self, table: str) -> bytes:
        try:
            return self._names[table]
        except (KeyError, TypeError):  # first use, or not a (hashable) str
            return self._env._encode_name(table)

    # ---- reads -------------------------------------------------------------

    def get(self, table: str, key: BytesLike) -> bytes | None:
        """The value stored under ``key`` in ``table``, or ``None``."""
        if self._owner != _get_ident():
            self._not_owner()
        try:
            name = self._names[table]
        except (KeyError, TypeError):  # first use, or not a (hashable) str
            name = self._env._encode_name(table)
        if type(key) is not bytes:
            key = _as_bytes(key, "key")
        outs = self._outs
        vl = outs.vl
        rc = _rp_get(self._txn, name, len(name), key, len(key), outs.vp, vl)
        if rc == _OK:
            return _unpack(outs.vpc[0], vl[0])  # type: ignore[no-any-return]
        if rc == _NOTFOUND:
            return None
        self._fail(rc, "get failed", table)

    def get_many(
        self, table: str, keys: Iterable[BytesLike], program: BytesLike | None = None
    ) -> list[bytes | None]:
        """``[get(table, k) for k in keys]``, answered in batches by the engine.

        With a filter ``program`` (see :meth:`scan_filter`), a value the
        program rejects comes back as ``None``, like an absent key."""
        return self._get_many(table, keys, None, program)

    def get_many_msgpack(
        self,
        table: str,
        keys: Iterable[BytesLike],
        options: Mapping[str, Any] | None = None,
        program: BytesLike | None = None,
    ) -> list[Any]:
        """Like :meth:`get_many` for a table whose values are msgpack
        documents: each value comes back decoded (``msgpack.unpackb`` with
        ``options``, in one call per batch), ``None`` for an absent key (and
        for an empty value, and for a value ``program`` rejects)."""
        return self._get_many(table, keys, _decoder(options), program)

    def _get_many(
        self, table: str, keys: Iterable[BytesLike], decode: Any, program: BytesLike | None
    ) -> list[Any]:
        if self._owner != _get_ident():
            self._not_owner()
        if program is not None:
            if type(program) is not bytes:
                program = _as_bytes(program, "program")
            filter_verdict(program, b"")  # checks it even when no key is given
        try:
            name = self._names[table]
        except (KeyError, TypeError):  # first use, or not a (hashable) str
            name = self._env._encode_name(table)
        keyl: list[Any] = keys if type(keys) is list else list(keys)
        if not keyl:
            return []
        # One engine call answers a whole batch: keys go in packed as
        # [u32 len][key], values come back as one msgpack array (nil when
        # absent) that msgpack's C unpacker turns into the result list.
        try:
            packed = _pack_keys(keyl)  # bytes keys only
        except TypeError:
            keyl = [k if type(k) is bytes else _as_bytes(k, "key") for k in keyl]
            packed = _pack_keys(keyl)
        src = ffi.from_buffer(packed)
        outs, sb = self._outs, _scan_buffer
        done, used = outs.n, outs.used
        result: list[Any] = []
        flags = 0 if decode is None else _BATCH_RAW
        decode = decode or _unpackb
        first = off = 0
        while first < len(keyl):
            if program is None:
                rc = lib.rp_get_many(
                    self._txn, name, len(name), src + off, len(packed) - off,
                    len(keyl) - first, flags, sb.buf, sb.size, done, used,
                )  # fmt: skip
            else:
                rc = lib.rp_get_many_filter(
                    self._txn, name, len(name), src + off, len(packed) - off,
                    len(keyl) - first, flags, program, len(program), sb.buf, sb.size,
                    done, used,
                )  # fmt: skip
            if rc != _OK:
                self._fail(rc, "get failed", table)
            answered = int(done[0])
            if not answered:  # not even one value fits: grow and retry
                sb.grow(int(used[0]))
                continue
            result += decode(ffi.buffer(sb.buf, used[0]))
            first += answered
            if first < len(keyl):  # more to come: skip the answered keys
                off += sum(4 + len(k) for k in keyl[first - answered : first])
        return result

    def count(self, table: str) -> int:
        """Number of keys in ``table`` (0 if it does not exist)."""
        if self._owner != _get_ident():
            self._not_owner()
        name = self._name(table)
        out = self._outs.u64
        rc = lib.rp_table_count(self._txn, name, len(name), out)
        if rc != _OK:
            self._fail(rc, "count failed", table)
        return int(out[0])

    def scan(
        self,
        table: str,
        start: BytesLike | None = None,
        stop: BytesLike | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]:
        """Iterate ``(key, value)`` pairs of ``table`` in key order.

        Covers keys ``start <= key < stop`` (``None``: unbounded), ascending,
        or descending with ``reverse=True``.  Arguments are checked now; the
        records are read in batches as the iterator advances, and must be
        consumed in the transaction's thread while it is open.  In a write
        transaction, changes made during the iteration may or may not be
        seen (records are read a batch at a time).
        """
        return self._scan(table, start, stop, reverse, None)

    def scan_msgpack(
        self,
        table: str,
        start: BytesLike | None = None,
        stop: BytesLike | None = None,
        reverse: bool = False,
        options: Mapping[str, Any] | None = None,
    ) -> Iterator[tuple[bytes, Any]]:
        """Like :meth:`scan` for a table whose values are msgpack documents:
        yields ``(key, decoded value)``.

        The engine embeds the values in its batch as they are, so one
        ``msgpack.unpackb(batch, **options)`` call decodes a whole batch of
        keys and values in C (an empty value decodes as ``None``).  A value
        that is not msgpack raises msgpack's error.
        """
        return self._scan(table, start, stop, reverse, _decoder(options))

    def _scan(
        self,
        table: str,
        start: BytesLike | None,
        stop: BytesLike | None,
        reverse: bool,
        decode: Any,
    ) -> Iterator[tuple[bytes, Any]]:
        """Check the arguments now (the records are read lazily), then
        iterate the records of scan / scan_msgpack."""
        if self._owner != _get_ident():
            self._not_owner()
        name = self._name(table)
        if start is not None and type(start) is not bytes:
            start = _as_bytes(start, "start")
        if stop is not None and type(stop) is not bytes:
            stop = _as_bytes(stop, "stop")
        if not isinstance(reverse, bool):
            raise _type_error("reverse", "a bool", reverse)
        if start == b"":
            start = None  # every key is >= b""
        if stop is not None and (stop == b"" or (start is not None and start >= stop)):
            return iter(())
        # Items flow through C-level code only (msgpack builds each batch's
        # bytes objects, chain + zip pair them): no Python code runs per item.
        return _chain_batches(self._batches(table, name, start, stop, reverse, decode))

    def _batches(
        self,
        table: str,
        name: bytes,
        start: bytes | None,
        stop: bytes | None,
        reverse: bool,
        decode: Any,
    ) -> Iterator[Iterator[tuple[bytes, Any]]]:
        last: bytes | None = None  # last key yielded
        max_items = _FIRST_BATCH_ITEMS
        while True:
            flat = self._batch(table, name, start, stop, reverse, last, max_items, decode)
            if not flat:
                return
            it = iter(flat)  # [k0, v0, k1, v1, ...]
            yield zip(it, it)
            last = flat[-2]
            if max_items < _MAX_BATCH_ITEMS:
                max_items *= 8

    def _batch(
        self,
        table: str,
        name: bytes,
        start: bytes | None,
        stop: bytes | None,
        reverse: bool,
        last: bytes | None,
        max_items: int,
        decode: Any = None,
    ) -> list[Any]:
        """Read the next batch of records after ``last`` (None: from the start).

        Opens a cursor, positions it, copies one batch into the thread's
        buffer (a msgpack array, see ``rp_cursor_batch``), closes the cursor,
        and returns ``[k0, v0, k1, v1, ...]`` (empty at the end).  With a
        ``decode`` (from :func:`_decoder`) values come embedded and decoded.
        """
        if self._owner != _get_ident():
            self._not_owner()
        sb = _scan_buffer
        outs = self._outs
        kp, kl, vp, vl = outs.kp, outs.kl, outs.vp, outs.vl
        curp = sb.cur
        rc = lib.rp_cursor_open(self._txn, name, len(name), curp)
        if rc != _OK:
            if rc == _NOTFOUND:
                return []
            self._fail(rc, "scan failed", table)
        cur = curp[0]
        try:
            seek = lib.rp_cursor_seek
            flags = _BATCH_CURRENT | (_BATCH_RAW if decode is not None else 0)
            if not reverse:
                # Seek to `key` (GE); `exclusive` skips an entry equal to it.
                # A start bound longer than any key (MAX_KEY) is exclusive
                # at its MAX_KEY prefix: k >= start <=> k > start[:MAX_KEY].
                key: bytes | None
                exclusive: bool
                if last is not None:
                    key, exclusive = last, True
                elif start is not None and len(start) > MAX_KEY:
                    key, exclusive = start[:MAX_KEY], True
                else:
                    key, exclusive = start, False
                if key is None:
                    rc = seek(cur, _SEEK_FIRST, _NULL, 0, kp, kl, vp, vl)
                else:
                    rc = seek(cur, _SEEK_GE, key, len(key), kp, kl, vp, vl)
                    if exclusive and rc == _OK and ffi.unpack(outs.kpc[0], kl[0]) == key:
                        flags &= ~_BATCH_CURRENT
                bound = stop
                direction = 1
            else:
                edge = last if last is not None else stop
                if edge is None:
                    rc = seek(cur, _SEEK_LAST, _NULL, 0, kp, kl, vp, vl)
                elif len(edge) <= MAX_KEY:
                    rc = seek(cur, _SEEK_LT, edge, len(edge), kp, kl, vp, vl)
                else:
                    # k < edge <=> k <= edge[:MAX_KEY] for keys of <= MAX_KEY.
                    cut = edge[:MAX_KEY]
                    rc = seek(cur, _SEEK_GE, cut, len(cut), kp, kl, vp, vl)
                    if rc != _OK or ffi.unpack(outs.kpc[0], kl[0]) != cut:
                        rc = seek(cur, _SEEK_LT, cut, len(cut), kp, kl, vp, vl)
                bound = start
                direction = -1
            if rc == _NOTFOUND:
                return []
            if rc != _OK:
                self._fail(rc, "scan failed", table)
            bound_p = _NULL if bound is None else bound
            bound_len = 0 if bound is None else len(bound)
            n, used = outs.n, outs.used
            while True:
                rc = lib.rp_cursor_batch(
                    cur,
                    direction,
                    flags,
                    bound_p,
                    bound_len,
                    sb.buf,
                    sb.size,
                    max_items,
                    n,
                    used,
                )
                if rc == _NOTFOUND:
                    return []
                if rc != _OK:
                    self._fail(rc, "scan failed", table)
                count = int(n[0])
                if count:
                    return (decode or _unpackb)(ffi.buffer(sb.buf, used[0]))  # type: ignore[no-any-return]
                if int(used[0]) <= sb.size:  # pragma: no cover - engine contract
                    return []
                sb.grow(int(used[0]))
        finally:
            lib.rp_cursor_close(cur)

    def scan_filter(self, table: str, program: BytesLike) -> list[tuple[bytes, bytes]]:
        """``(key, value)`` pairs of ``table`` in key order whose value a
        filter program does not reject (see ``FILTER PROGRAMS`` in
        ``csrc/realmpy.h``; :mod:`realmpy.filterprogram` builds them).

        Values must be msgpack arrays ("records").  The engine keeps records
        whose verdict is true *or unknown*, so the caller re-checks what it
        gets with the full predicate.  Unlike :meth:`scan` the result is one
        list, read with one cursor in this call.  Raises
        :class:`~realmpy.errors.InvalidArgumentError` for a malformed
        program and :class:`~realmpy.errors.CorruptError` for a value the
        program cannot read.
        """
        return self._engine_scan(table, None, None, program, None, None)

    def scan_filter_msgpack(
        self,
        table: str,
        program: BytesLike | None,
        options: Mapping[str, Any] | None = None,
        decode: PairDecoder | None = None,
        start: BytesLike | None = None,
        stop: BytesLike | None = None,
    ) -> list[tuple[bytes, Any]]:
        """:meth:`scan_filter` with the values decoded in C, as
        :meth:`scan_msgpack` does (``msgpack.unpackb`` with ``options``);
        ``program`` None keeps every record.  ``start <= key < stop``
        bound the scan as in :meth:`scan` (``None``: unbounded).

        ``decode`` (instead of ``options``): a batch decoder given each
        buffer's bytes (a msgpack array of bin keys and raw msgpack
        values) that returns its ``[(key, value), ...]``."""
        if start is not None and type(start) is not bytes:
            start = _as_bytes(start, "start")
        if stop is not None and type(stop) is not bytes:
            stop = _as_bytes(stop, "stop")
        if stop is not None and (stop == b"" or (start is not None and start >= stop)):
            return []
        return self._engine_scan(
            table,
            start or None,
            stop,
            program,
            _decoder(options) if decode is None else decode,
            None,
            paired=decode is not None,
        )

    def scan_join(
        self,
        index: str,
        prefix: BytesLike,
        table: str,
        program: BytesLike | None = None,
        options: Mapping[str, Any] | None = None,
        decode: PairDecoder | None = None,
    ) -> list[tuple[bytes, Any]]:
        """For an index table whose keys are ``prefix + key``: ``(key, value
        of key in table)`` for every index key starting with ``prefix``, in
        index order, values decoded as by :meth:`scan_msgpack`; keys absent
        from ``table`` are left out.  With a filter ``program`` only the
        values it does not reject (see :meth:`scan_filter`).  One engine
        call per buffer instead of an index scan plus :meth:`get_many`.
        ``decode``: as for :meth:`scan_filter_msgpack`."""
        if type(prefix) is not bytes:
            prefix = _as_bytes(prefix, "prefix")
        if not prefix or len(prefix) > MAX_KEY:
            raise _e.InvalidArgumentError(f"prefix: 1 to {MAX_KEY} bytes, not {len(prefix)}")
        return self._engine_scan(
            index,
            prefix,
            prefix + b"\xff",
            program,
            _decoder(options) if decode is None else decode,
            self._name(table),
            paired=decode is not None,
        )

    def _engine_scan(
        self,
        table: str,
        start: bytes | None,
        stop: bytes | None,
        program: BytesLike | None,
        decode: Any,
        join: bytes | None,
        paired: bool = False,
    ) -> list[Any]:
        """The records rp_cursor_filter (or, with ``join``, rp_cursor_join
        looking up keys past ``start`` in table ``join``) copies from
        ``table``'s keys in [start, stop), read with one cursor.  ``paired``:
        ``decode`` takes each buffer's bytes and returns its (key, value)
        pairs (else the flat list of a msgpack batch decoder)."""
        if self._owner != _get_ident():
            self._not_owner()
        name = self._name(table)
        if program is not None:
            if type(program) is not bytes:
                program = _as_bytes(program, "program")
            filter_verdict(program, b"")  # checks the program even on an empty table
        prog, proglen = (_NULL, 0) if program is None else (program, len(program))
        sb = _scan_buffer
        outs = self._outs
        n, used = outs.n, outs.used
        curp = sb.cur
        rc = lib.rp_cursor_open(self._txn, name, len(name), curp)
        if rc != _OK:
            if rc == _NOTFOUND:
                return []
            self._fail(rc, "filtered scan failed", table)
        cur = curp[0]
        out: list[Any] = []
        flags = _BATCH_CURRENT | (_BATCH_RAW if decode is not None else 0)
        decode = decode or _unpackb
        stop_p, stop_len = (_NULL, 0) if stop is None else (stop, len(stop))
        try:
            kp, kl, vp, vl = outs.kp, outs.kl, outs.vp, outs.vl
            if start is None:
                rc = lib.rp_cursor_seek(cur, _SEEK_FIRST, _NULL, 0, kp, kl, vp, vl)
            else:
                rc = lib.rp_cursor_seek(cur, _SEEK_GE, start, len(start), kp, kl, vp, vl)
            while rc == _OK:
                # The cursor stays on the first record not examined, so each
                # call resumes where the last one stopped (buffer full).
                if join is None:
                    rc = lib.rp_cursor_filter(
                        cur, 1, flags, stop_p, stop_len, prog, proglen,
                        sb.buf, sb.size, _MAX_BATCH_ITEMS, n, used,
                    )  # fmt: skip
                else:
                    rc = lib.rp_cursor_join(
                        cur, 1, flags, stop_p, stop_len, len(start or b""), join, len(join),
                        prog, proglen, sb.buf, sb.size, _MAX_BATCH_ITEMS, n, used,
                    )  # fmt: skip
                if rc != _OK:
                    break
                if not n[0]:  # the next match does not fit: grow, retry it
                    sb.grow(int(used[0]))
                    continue
                if paired:
                    out += decode(ffi.buffer(sb.buf, used[0])[:])
                    continue
                flat = decode(ffi.buffer(sb.buf, used[0]))
                it = iter(flat)
                out += zip(it, it)
            if rc != _NOTFOUND:
                self._fail(rc, "filtered scan failed", table)
            return out
        finally:
            lib.rp_cursor_close(cur)

    def tables(self) -> list[str]:
        """Names of the tables in this version, sorted."""
        if self._owner != _get_ident():
            self._not_owner()
        names: list[str] = []
        sb = _scan_buffer
        outs = self._outs
        kp, kl, vp, vl = outs.kp, outs.kl, outs.vp, outs.vl
        curp = sb.cur
        rc = lib.rp_cursor_open(self._txn, _NULL, 0, curp)
        if rc != _OK:
            self._fail(rc, "list tables failed")
        cur = curp[0]
        try:
            rc = lib.rp_cursor_seek(cur, _SEEK_FIRST, _NULL, 0, kp, kl, vp, vl)
            while rc == _OK:
                raw = ffi.unpack(outs.kpc[0], kl[0])
                names.append(raw.decode("utf-8", "surrogateescape"))
                rc = lib.rp_cursor_step(cur, 1, kp, kl, vp, vl)
            if rc != _NOTFOUND:
                self._fail(rc, "list tables failed")
        finally:
            lib.rp_cursor_close(cur)
        return names

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state} [{self._path}]>"


class Snapshot(_Transaction):
    """A read-only view of one committed version, pinned until it ends.

    Use as a context manager (``with env.read() as snap:``) or call
    :meth:`end`.  Reads never block and are never blocked by writers.
    """

    __slots__ = ()
    _kind = "snapshot"

    def end(self, *_exc_info: object) -> None:
        """End the snapshot, unpinning its version.  Idempotent.

        Also the context manager's ``__exit__`` (it ignores the exception
        arguments), which saves a call on the read hot path.
        """
        if self._owner != _get_ident():
            if self._owner == _ENDED:
                return
            self._not_owner()
        # _end() inlined: this is a hot path (read-txn begin+end).
        txn = self._txn
        self._owner = _ENDED
        self._state = "ended"
        self._txn = _NULL
        env = self._env
        parked = env._parked
        if len(parked) < _PARKED_MAX and not env._closing and _txn_reset(txn) == _OK:
            parked.append((txn, self._outs))
        else:
            _txn_abort(txn)
            env._pool.append(self._outs)
        env._live.discard(self)
        if env._closing:
            env._release_if_idle()

    abort = end

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
        if self._owner != _get_ident():
            if self._owner == _SHARED:
                return
            self._not_owner()
        rc = int(lib.rp_txn_share(self._txn))
        if rc != _OK:
            raise _error(rc, "cannot share the snapshot", self._path)
        self._owner = _SHARED

    def refresh(self) -> None:
        """Move this snapshot to the latest version, in place.

        Equivalent to ending it and beginning a new one, in one engine call
        and without a new object: the cheap way for a long-lived reader
        (a realm advancing, a poller) to see other processes' commits.
        """
        if self._owner != _get_ident():
            self._not_owner()
        rc = _txn_refresh(self._txn)
        self._version = None
        if rc != _OK:
            # The engine left the handle parked (pinning nothing): end it.
            txn = self._txn
            self._owner = _ENDED
            self._state = "failed"
            self._txn = _NULL
            _txn_abort(txn)
            env = self._env
            env._pool.append(self._outs)
            env._live.discard(self)
            if env._closing:
                env._release_if_idle()
            raise _error(rc, "cannot refresh the snapshot", self._path)

    def latest_version(self) -> int:
        """The environment's latest committed version (a fast path).

        Same value as :attr:`Environment.version`, without its in-flight
        guard: this live snapshot keeps the engine handle open, so the
        handle cannot be freed during the call.  A caller that holds a
        snapshot can compare this with :attr:`version` on every read to
        decide whether a newer version exists (one atomic load).
        """
        if self._owner != _get_ident():
            self._not_owner()
        handle = self._env._env
        if handle is None:  # pragma: no cover - the env was dropped after fork()
            raise self._env._closed_error("read the version")
        return _env_version(handle)  # type: ignore[no-any-return]

    def __enter__(self) -> Snapshot:
        return self

    __exit__ = end


class WriteTransaction(_Transaction):
    """The write transaction: one at a time across all processes.

    As a context manager it commits on a clean exit and aborts if the block
    raises.  :meth:`commit` and :meth:`abort` end it explicitly.
    """

    __slots__ = ("_changed", "_observer", "_record")
    _kind = "write transaction"
    # What this transaction changed, per table: the keys written or deleted,
    # or None for "any key" (a dropped table, or more than CHANGED_KEYS_MAX
    # keys).  Kept in memory only; the object layer stores it with each of
    # its commits so listeners re-read only what a commit changed.
    _changed: dict[str, set[bytes] | None]
    # None: no history; _UNRESOLVED until the first change looks the kind up.
    _observer: WriteObserver | None

    # ---- the history observer ------------------------------------------------

    def _observe(self, table: str, keys: Sequence[bytes]) -> None:
        obs = self._observer
        if obs is _UNRESOLVED:
            obs = self._observer = self._history_observer()
        if obs is not None:
            obs.before_change(self, table, keys)

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
                f"(realmpy.storage.register_history) before writing to it [{self._path}]"
            )
        return factory()

    def _history_key_written(self) -> None:
        """The history kind was just written: if no observer is attached yet,
        look the kind up again at the next change (a new synced file records
        its changes from the write that made it synced)."""
        if self._observer is None:
            self._observer = _UNRESOLVED

    def _note(self, table: str, keys: Collection[bytes]) -> None:
        changed = self._changed
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
        out: dict[str, list[bytes] | None] = {}
        for table, keys in self._changed.items():
            if table != CHANGES_TABLE:
                out[table] = None if keys is None or len(keys) > CHANGED_KEYS_MAX else sorted(keys)
        version = self.version + 1
        self.put(CHANGES_TABLE, _version_key(version), msgpack.packb(out, use_bin_type=True))
        if version % _CHANGES_PRUNE == 0 and version > CHANGES_KEEP:
            for old in range(
                max(1, version - CHANGES_KEEP - _CHANGES_PRUNE + 1), version - CHANGES_KEEP + 1
            ):
                self.delete(CHANGES_TABLE, _version_key(old))

    def changed(self) -> dict[str, set[bytes] | None]:
        """What this transaction changed so far: per table, the keys written
        or deleted, or None for any key of it.  The live record: a direct
        writer (:meth:`direct_handle`) adds the keys it writes to the
        table's set, if it has one (None stays None)."""
        return self._changed

    def raise_error(self, rc: int, what: str, table: str) -> NoReturn:
        """Raise the error of engine result ``rc`` (of a direct write, see
        :meth:`direct_handle`) as this transaction's methods would."""
        self._fail(rc, what, table)

    def direct_handle(self) -> int | None:
        """The engine address of this transaction for realmpy._native's
        one-call writes (``add_new``), or None where every change must go
        through this object's methods: a history to record (the observer
        sees every change), another thread, or a transaction that ended.
        Valid until the transaction ends; the caller writes only plain
        records and index entries (never the history table)."""
        if self._owner != _get_ident() or self._state != "open":
            return None
        if self._observer is _UNRESOLVED:
            self._observer = self._history_observer()
        if self._observer is not None:
            return None
        _native_engine()
        return int(ffi.cast("uintptr_t", self._txn))

    # ---- writes ----------------------------------------------------------------

    def put(self, table: str, key: BytesLike, value: BytesLike) -> None:
        """Insert or replace ``key`` -> ``value`` (creates the table)."""
        if self._owner != _get_ident():
            self._not_owner()
        try:
            name = self._names[table]
        except (KeyError, TypeError):  # first use, or not a (hashable) str
            name = self._env._encode_name(table)
        if type(key) is not bytes:
            key = _as_bytes(key, "key")
        if type(value) is not bytes:
            value = _as_bytes(value, "value")
        if self._observer is not None:
            self._observe(table, (key,))
        self._note(table, (key,))
        rc = _rp_put(self._txn, name, len(name), key, len(key), value, len(value))
        if rc != _OK:
            self._fail(rc, "put failed", table)
        if table == HISTORY_TABLE and key == HISTORY_KEY:
            self._history_key_written()

    def put_many(self, table: str, items: Iterable[tuple[BytesLike, BytesLike]]) -> int:
        """Insert or replace many pairs with few engine calls; return how many.

        The pairs are packed into one buffer per chunk of about 1 MiB (the
        engine's ``rp_put_many`` format), which amortises the per-call cost.
        """
        if self._owner != _get_ident():
            self._not_owner()
        name = self._name(table)
        parts: list[bytes] = []
        append = parts.append
        pack = _pack_hdr
        size = n = total = 0
        keys: list[bytes] = []
        for pair in items:
            try:
                key, value = pair
            except (TypeError, ValueError):
                raise _type_error("each item", "a (key, value) pair", pair) from None
            if type(key) is not bytes:
                key = _as_bytes(key, "key")
            if type(value) is not bytes:
                value = _as_bytes(value, "value")
            kl, vl = len(key), len(value)
            if not 0 < kl <= MAX_KEY:
                self._fail(int(lib.RP_KEY_TOO_LONG), "put_many failed", table)
            append(pack(kl, vl))
            append(key)
            append(value)
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
        self, table: str, name: bytes, parts: list[bytes], n: int, keys: list[bytes]
    ) -> None:
        if keys:  # the observer sees each chunk's keys before they change
            if self._observer is not None:
                self._observe(table, keys)
            self._note(table, keys)
            keys.clear()
        buf = b"".join(parts)
        rc = lib.rp_put_many(self._txn, name, len(name), buf, len(buf), n)
        if rc != _OK:
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
        if self._owner != _get_ident():
            self._not_owner()
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
        if not _columns_ok(keyl, vall, MAX_KEY):  # one C pass; else find the culprit
            if set(map(type, keys)) != {bytes}:
                bad = next(k for k in keys if type(k) is not bytes)
                raise _type_error("each key", "bytes", bad)
            klens = list(map(len, keys))
            if min(klens) == 0 or max(klens) > MAX_KEY:
                self._fail(int(lib.RP_KEY_TOO_LONG), "put_columns failed", table)
            if values is not None and set(map(type, values)) != {bytes}:
                bad = next(v for v in values if type(v) is not bytes)
                raise _type_error("each value", "bytes", bad)
        if self._observer is not None:
            self._observe(table, keyl)
        self._note(table, keyl)
        # Chunks of about _PUT_MANY_CHUNK bytes, as put_many does, each
        # packed as [u32 klen][u32 vlen][key][value]... in C.
        start = 0
        while start < n:
            buf, stop = _pack_records(keyl, vall, start, _PUT_MANY_CHUNK)
            rc = lib.rp_put_many(self._txn, name, len(name), buf, len(buf), stop - start)
            if rc != _OK:
                self._fail(rc, "put_columns failed", table)
            start = stop
        return n

    def delete(self, table: str, key: BytesLike) -> bool:
        """Delete ``key``; return whether it existed."""
        if self._owner != _get_ident():
            self._not_owner()
        try:
            name = self._names[table]
        except (KeyError, TypeError):  # first use, or not a (hashable) str
            name = self._env._encode_name(table)
        if type(key) is not bytes:
            key = _as_bytes(key, "key")
        if self._observer is not None:
            self._observe(table, (key,))
        self._note(table, (key,))
        rc = _rp_del(self._txn, name, len(name), key, len(key))
        if rc == _OK:
            return True
        if rc == _NOTFOUND:
            return False
        self._fail(rc, "delete failed", table)

    def drop(self, table: str) -> bool:
        """Remove ``table`` and all its keys; return whether it existed."""
        if self._owner != _get_ident():
            self._not_owner()
        name = self._name(table)
        obs = self._observer
        if obs is _UNRESOLVED:
            obs = self._observer = self._history_observer()
        if obs is not None:
            obs.before_drop(self, table)
        self._changed[table] = None
        rc = lib.rp_drop_table(self._txn, name, len(name))
        if rc == _OK:
            return True
        if rc == _NOTFOUND:
            return False
        self._fail(rc, "drop failed", table)

    def commit(self) -> int:
        """Commit and end the transaction; return the version it created.

        With durability ``"full"`` the changes are on stable storage when
        this returns.  On failure the transaction is rolled back (and still
        ended) and the error is raised; the file keeps its previous version.
        """
        if self._owner != _get_ident():
            self._not_owner()
        obs = self._observer
        if obs is not None:
            self._observer = None  # its own writes (the changeset) are not observed
            if obs is not _UNRESOLVED:
                obs.before_commit(self)
        if self._state == "open":
            try:
                self._write_changes()
            except BaseException:
                self.abort()  # a commit that fails is rolled back and ended
                raise
        out = self._outs.u64
        version = 0

        def commit_ex(txn: Any) -> int:
            nonlocal version  # read before _end() returns the out-param to the pool
            rc = int(lib.rp_txn_commit_ex(txn, out))
            version = int(out[0])
            return rc

        rc = self._end(commit_ex, "committed")
        if rc != _OK:
            self._state = "failed"
            raise _error(rc, "commit failed (rolled back)", self._path)
        return version

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
