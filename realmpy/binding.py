"""The engine binding under :mod:`realmpy.storage`: one engine, two doors.

The engine (``csrc/``) is compiled once, into the cffi module
``realmpy._engine``.  Two bindings call it:

* **the native storage types** (``realmpy._native``: ``EnvCore``,
  ``ReadTxn``, ``WriteTxn``, ``ScanIter``, ``csrc/py/storage.c``) for the
  calls made per key or per snapshot -- ``read()``, ``get``, ``put``,
  ``delete``, the steps of a scan, ending and committing.  Each is one C
  call from Python into the engine: through cffi the call plus
  ``ffi.unpack`` alone cost more than py-lmdb's whole ``get``.  The
  ``bind_engine`` call at the end of this module hands them the addresses
  of the engine functions they call, taken from ``_engine``, so there is
  one engine per process (one copy of its fork detection, thread ids and
  fault injection), not one per binding;
* **cffi** for everything else (opening, filtered scans, joins, batched
  lookups, statistics, checks, compaction): those calls are per batch or
  per environment, the cffi declarations are read from ``csrc/realmpy.h``
  itself, and rewriting them in C would buy nothing measurable.

This module also holds what both :mod:`realmpy.storage` and
:mod:`realmpy.storagereads` need: the typed error for an engine code, the
argument coercions, the engine's constants and the per-thread buffers.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Union

import realmpy.errors as _e

from ._engine import ffi, lib
from ._native import bind_engine
from .ondemand import on_first_use

if TYPE_CHECKING:
    import msgpack  # type: ignore[import-untyped,unused-ignore]
else:
    # Loaded by the first batch decoded: an open and a count decode none.
    msgpack = on_first_use("msgpack", "msgpack", globals())

__all__ = ["FILTER_FALSE", "FILTER_TRUE", "FILTER_UNKNOWN", "filter_verdict"]

# Keys and values are bytes; other bytes-like objects are copied to bytes.
BytesLike = Union[bytes, bytearray, memoryview]

MAX_KEY: Final[int] = int(lib.RP_MAX_KEY)
MAX_TABLE_NAME: Final[int] = int(lib.RP_MAX_TABLE_NAME)
OK: Final = 0
NOTFOUND: Final[int] = int(lib.RP_NOTFOUND)
CORRUPT: Final[int] = int(lib.RP_CORRUPT)
SEEK_FIRST: Final[int] = int(lib.RP_SEEK_FIRST)
SEEK_LAST: Final[int] = int(lib.RP_SEEK_LAST)
SEEK_GE: Final[int] = int(lib.RP_SEEK_GE)
SEEK_LT: Final[int] = int(lib.RP_SEEK_LT)
BATCH_CURRENT: Final[int] = int(lib.RP_BATCH_CURRENT)
BATCH_RAW: Final[int] = int(lib.RP_BATCH_RAW_VALUES)
NULL: Final = ffi.NULL

FILTER_FALSE: Final[int] = int(lib.RP_FILTER_FALSE)
FILTER_TRUE: Final[int] = int(lib.RP_FILTER_TRUE)
FILTER_UNKNOWN: Final[int] = int(lib.RP_FILTER_UNKNOWN)


# ---- errors and arguments ------------------------------------------------------


def engine_message(code: int) -> str:
    return str(ffi.string(lib.rp_strerror(code)).decode("utf-8", "replace"))


def error(code: int, what: str, path: str | None) -> _e.StorageError:
    """The typed exception for engine error ``code`` (errors.py's table)."""
    if code == CORRUPT:
        # Where the engine found it (page, table, check that failed): per
        # thread, set by the call that just failed.
        detail = ffi.string(lib.rp_corrupt_detail()).decode("utf-8", "replace")
        lib.rp_corrupt_clear()
        if detail:
            what = f"{what} ({detail})"
    return _e.error_for_code(code, engine_message(code), what, path)


def raise_error(code: int, what: str, path: str | None) -> None:
    """:func:`error`, raised (the native types call this)."""
    raise error(code, what, path)


def type_error(what: str, expected: str, got: object) -> _e.ArgumentTypeError:
    return _e.ArgumentTypeError(f"{what} must be {expected}, not {type(got).__name__}")


def as_bytes(value: object, what: str) -> bytes:
    """Coerce a bytes-like argument (slow path; bytes take the fast path)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise type_error(what, "bytes", value)


def check_int(value: object, what: str, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise type_error(what, "an int", value)
    if not minimum <= value <= maximum:
        raise _e.InvalidArgumentError(
            f"{what} must be between {minimum} and {maximum}, not {value}"
        )
    return value


def filter_verdict(program: BytesLike, record: BytesLike) -> int:
    """The engine's verdict on one record under a filter program:
    :data:`FILTER_FALSE`, :data:`FILTER_TRUE` or :data:`FILTER_UNKNOWN`
    (``rp_filter_eval``).  Raises
    :class:`~realmpy.errors.InvalidArgumentError` for a malformed program,
    :class:`~realmpy.errors.CorruptError` for a record that is not msgpack
    up to a field the program compares."""
    if type(program) is not bytes:
        program = as_bytes(program, "program")
    if type(record) is not bytes:
        record = as_bytes(record, "record")
    out = ffi.new("int *")
    rc = lib.rp_filter_eval(program, len(program), record, len(record), out)
    if rc != OK:
        raise error(rc, "filter program", None)
    return int(out[0])


# ---- msgpack batches -------------------------------------------------------------


# A scan batch is one msgpack array of bin strings (rp_cursor_batch); the
# max_*_len limits are raised from their defaults to the engine's limits.
def unpackb(batch: bytes) -> Any:
    """``msgpack.unpackb`` of one batch with the engine's limits."""
    return msgpack.unpackb(batch, max_bin_len=2**31, max_array_len=2**32 - 1)


def decoder(options: Mapping[str, Any] | None) -> Any:
    """A batch decoder for msgpack-valued tables: ``msgpack.unpackb`` with
    the caller's options and limits raised to the engine's."""
    if options is not None and not isinstance(options, Mapping):
        raise type_error("options", "a mapping of msgpack.unpackb options", options)
    return functools.partial(
        msgpack.unpackb, **{"max_bin_len": 2**31, "max_array_len": 2**32 - 1, **(options or {})}
    )


# ---- per-thread buffers ----------------------------------------------------------

_BATCH_BUF_BYTES: Final = 1 << 16


class Buffers(threading.local):
    """One thread's batch buffer and engine out-parameters.

    Allocating cffi objects costs more than the engine calls they serve, so
    each thread keeps one set; a call uses them only while it runs (a scan's
    batch is copied out before it yields), so calls never share them.
    """

    def __init__(self) -> None:
        self.size = _BATCH_BUF_BYTES
        self.buf: Any = ffi.new("char[]", self.size)
        self.cur: Any = ffi.new("rp_cursor **")
        self.kp: Any = ffi.new("const void **")
        self.kl: Any = ffi.new("size_t *")
        self.vp: Any = ffi.new("const void **")
        self.vl: Any = ffi.new("size_t *")
        # char view of the key out-param (cheaper to unpack than the void*).
        self.kpc: Any = ffi.cast("const char **", self.kp)
        self.n: Any = ffi.new("size_t *")
        self.used: Any = ffi.new("size_t *")
        self.u64: Any = ffi.new("uint64_t *")

    def grow(self, need: int) -> None:
        size = self.size
        while size < need:
            size *= 2
        self.buf = ffi.new("char[]", size)
        self.size = size


buffers = Buffers()


# ---- binding the native types to this engine ----------------------------------------

_HOT_CALLS = (
    "rp_txn_begin",
    "rp_txn_abort",
    "rp_txn_reset",
    "rp_txn_renew",
    "rp_txn_commit_ex",
    "rp_txn_version",
    "rp_env_version",
    "rp_get",
    "rp_put",
    "rp_del",
    "rp_cursor_open",
    "rp_cursor_close",
    "rp_cursor_seek",
    "rp_cursor_batch",
)


def _txn_pointer(address: int) -> Any:
    return ffi.cast("rp_txn *", address)


bind_engine(
    {name: int(ffi.cast("uintptr_t", ffi.addressof(lib, name))) for name in _HOT_CALLS},
    raise_error,
    as_bytes,
    _txn_pointer,
    _e.TransactionError,
    _e.WrongThreadError,
)
