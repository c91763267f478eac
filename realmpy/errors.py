"""Exceptions raised by realmpy.

One hierarchy, rooted at :class:`RealmpyError`.  Everything the storage layer
raises is a :class:`StorageError`, with one subclass per engine error code
(built from the table ``_CODES`` below, the way py-lmdb does it) and a few
``OSError``-compatible ones for operating-system failures, so callers can
catch either the realmpy class or the matching builtin:

* bad argument *values* (key too long, value too large, bad table name,
  invalid option) are also ``ValueError``;
* arguments of the wrong Python *type* raise :class:`ArgumentTypeError`,
  which is also a ``TypeError``;
* I/O failures are :class:`StorageIOError` (also ``OSError``, with
  ``errno``), with ``DiskFullError`` for ``ENOSPC`` and the usual
  ``FileNotFoundError``/``PermissionError`` mix-ins.

Messages read ``"what: engine message (what to do) [path]"`` so that a log
line alone says what failed, why, and how to fix it.
"""

from __future__ import annotations

import errno as _errno
import os as _os

__all__ = [
    "ArgumentTypeError",
    "BadTableError",
    "BusyError",
    "ClosedError",
    "CorruptError",
    "DiskFullError",
    "ExistsError",
    "ForkedError",
    "FormatTooOldError",
    "FormatVersionError",
    "IncompatibleLockError",
    "InvalidArgumentError",
    "KeyTooLongError",
    "LockFileChangedError",
    "MapFullError",
    "NotADatabaseError",
    "NotFoundError",
    "PanicError",
    "ReadOnlyError",
    "ReadersFullError",
    "RealmpyError",
    "RecoveryWarning",
    "SideFileError",
    "StorageError",
    "StorageFileNotFoundError",
    "StorageIOError",
    "StoragePermissionError",
    "TransactionActiveError",
    "TransactionError",
    "ValueTooLargeError",
    "VersionLimitError",
    "WriteLockTimeoutError",
    "WrongThreadError",
    "error_for_code",
]


class RealmpyError(Exception):
    """Root of every exception realmpy raises on purpose."""


class StorageError(RealmpyError):
    """An error from the storage engine or its Python bindings.

    Attributes:
        code: the engine's RP_* code (negative) or an errno (positive);
            ``None`` for errors detected by the Python layer itself.
        path: the data file concerned, when known.
    """

    code: int | None = None
    path: str | None = None


# ---- one class per engine code -------------------------------------------


class NotFoundError(StorageError, KeyError):
    """RP_NOTFOUND where absence is an error (most APIs return None/False)."""


class CorruptError(StorageError):
    """RP_CORRUPT: a page or meta page failed validation."""


class RecoveryWarning(UserWarning):
    """Opening with ``recover=True`` rolled a damaged database back to its
    newest intact version (``Environment.recovered_from`` says from which)."""


class NotADatabaseError(StorageError):
    """RP_NOT_A_DB: the file is not a realmpy data file."""


class FormatVersionError(StorageError):
    """RP_FORMAT_VERSION: the data file has an unsupported format version."""


class FormatTooOldError(FormatVersionError):
    """RP_FORMAT_OLD: the data file is in an older format (1 or 2, written
    by a realmpy before format 3).  A realm converts it on its first
    writable open while no other process has the file open; a read-only
    open, an open while another process has it open, or the storage layer
    alone (:class:`~realmpy.storage.Environment`) raise this instead.
    ``realmpy upgrade PATH`` converts it (docs/format.md, "Format
    versions")."""


class IncompatibleLockError(StorageError):
    """RP_INCOMPATIBLE_LOCK: the lock file is in use with another layout/ABI."""


class LockFileChangedError(StorageError):
    """RP_LOCK_CHANGED: ``<path>.lock`` was deleted, replaced, truncated or
    damaged while the database was open.  The environment refuses to write (another
    process may be writing under another lock); close it and open again."""


class MapFullError(StorageError):
    """RP_MAP_FULL: the data file would grow beyond ``max_size``."""


class VersionLimitError(StorageError):
    """RP_VERSION_LIMIT: ``max_active_versions`` would be exceeded."""


class ReadersFullError(StorageError):
    """RP_READERS_FULL: every reader slot is taken."""


class TransactionError(StorageError):
    """RP_BAD_TXN: the transaction is finished or failed; begin a new one."""


class WrongThreadError(StorageError):
    """RP_WRONG_THREAD: a transaction was used outside the thread that began it."""


class ForkedError(StorageError):
    """RP_FORKED: a handle was inherited across ``fork()``."""


class KeyTooLongError(StorageError, ValueError):
    """RP_KEY_TOO_LONG: a key is empty or longer than the limit."""


class ValueTooLargeError(StorageError, ValueError):
    """RP_VALUE_TOO_LARGE: a value is longer than the limit."""


class ReadOnlyError(StorageError):
    """RP_READ_ONLY: a write on a read-only environment or a snapshot."""


class BusyError(StorageError):
    """RP_BUSY: the environment still has open transactions."""


class TransactionActiveError(StorageError):
    """RP_TXN_ACTIVE: this thread already has a write transaction."""


class PanicError(StorageError):
    """RP_PANIC: the environment is unusable; close it and open it again."""


class InvalidArgumentError(StorageError, ValueError):
    """RP_INVALID, or an argument of the right type with a bad value."""


class BadTableError(StorageError, ValueError):
    """RP_BAD_TABLE: a table name is empty or too long."""


class ClosedError(StorageError):
    """RP_CLOSED, or any use of a closed environment."""


class ExistsError(StorageError, FileExistsError):
    """RP_EXISTS: the destination of a compaction already exists."""


class WriteLockTimeoutError(StorageError, TimeoutError):
    """RP_TIMEOUT: the write lock was not acquired within the ``timeout`` given."""


class ArgumentTypeError(StorageError, TypeError):
    """An argument of the wrong Python type (e.g. ``str`` where ``bytes``)."""


# ---- operating-system errors (positive codes) -----------------------------


class StorageIOError(StorageError, OSError):
    """The operating system refused an operation; ``errno`` says why."""


class DiskFullError(StorageIOError):
    """ENOSPC: the disk is full.  The transaction was rolled back."""


class StorageFileNotFoundError(StorageIOError, FileNotFoundError):
    """ENOENT: the data file (or its directory) does not exist."""


class StoragePermissionError(StorageIOError, PermissionError):
    """EACCES/EPERM: no permission to open or write the file."""


class SideFileError(StorageIOError):
    """A side file of the database -- ``<path>.lock`` (engine),
    ``<path>.session`` (object layer), ``<path>.sync`` (sync client) --
    cannot be used: a symbolic link (never followed), a hard link, not a
    regular file, no permission, a read-only file system...  ``filename``
    is the side file, ``path`` the data file, ``errno`` the reason."""


# Engine codes (must match csrc/realmpy.h; tests check they do).
RP_NOTFOUND = -30800
RP_CORRUPT = -30801
RP_NOT_A_DB = -30802
RP_FORMAT_VERSION = -30803
RP_INCOMPATIBLE_LOCK = -30804
RP_MAP_FULL = -30805
RP_VERSION_LIMIT = -30806
RP_READERS_FULL = -30807
RP_BAD_TXN = -30808
RP_WRONG_THREAD = -30809
RP_FORKED = -30810
RP_KEY_TOO_LONG = -30811
RP_VALUE_TOO_LARGE = -30812
RP_READ_ONLY = -30813
RP_BUSY = -30814
RP_TXN_ACTIVE = -30815
RP_PANIC = -30816
RP_INVALID = -30817
RP_BAD_TABLE = -30818
RP_CLOSED = -30819
RP_EXISTS = -30820
RP_TIMEOUT = -30821
RP_FORMAT_OLD = -30822
RP_LOCK_CHANGED = -30830
RP_LOCK_ERRNO = -31000  # RP_LOCK_ERRNO - errno: that errno, about <path>.lock

# code -> (class, what to do about it)
_CODES: dict[int, tuple[type[StorageError], str]] = {
    RP_NOTFOUND: (NotFoundError, "the key or table does not exist"),
    RP_CORRUPT: (
        CorruptError,
        "the file is damaged; restore it from a backup, or save what is "
        "still readable with Environment.compact(), or open it with "
        "recover=True to roll back to its newest intact version",
    ),
    RP_NOT_A_DB: (
        NotADatabaseError,
        "this file is not a realmpy database; check the path",
    ),
    RP_FORMAT_VERSION: (
        FormatVersionError,
        "the file was written by an incompatible realmpy version; open it with a matching version",
    ),
    RP_FORMAT_OLD: (
        FormatTooOldError,
        "the file is in an older realmpy file format (1 or 2); convert it in place: "
        "open it once as a writable Realm while no other process has it open, or "
        "run `realmpy upgrade FILE` (the file is kept whole until its converted "
        "copy is complete)",
    ),
    RP_INCOMPATIBLE_LOCK: (
        IncompatibleLockError,
        "another process has this database open with an incompatible "
        "realmpy build; close that process first",
    ),
    RP_MAP_FULL: (
        MapFullError,
        "the database reached max_size; open it with a larger max_size",
    ),
    RP_VERSION_LIMIT: (
        VersionLimitError,
        "too many versions are pinned by open snapshots; end long-lived "
        "read transactions or raise max_active_versions",
    ),
    RP_READERS_FULL: (
        ReadersFullError,
        "every reader slot is in use; end some read transactions, or "
        "reopen with a larger max_readers when no process has the file open",
    ),
    RP_BAD_TXN: (
        TransactionError,
        "the transaction has already finished or failed; begin a new one",
    ),
    RP_WRONG_THREAD: (
        WrongThreadError,
        "a transaction belongs to the thread that began it; begin one in this thread",
    ),
    RP_FORKED: (
        ForkedError,
        "handles do not survive fork(); open a new Environment in the child",
    ),
    RP_KEY_TOO_LONG: (KeyTooLongError, "keys must be 1 to 1024 bytes long"),
    RP_VALUE_TOO_LARGE: (
        ValueTooLargeError,
        "values must be shorter than 2 GiB",
    ),
    RP_READ_ONLY: (
        ReadOnlyError,
        "write in a transaction from env.write() of an Environment opened with read_only=False",
    ),
    RP_BUSY: (BusyError, "end the environment's transactions first"),
    RP_TXN_ACTIVE: (
        TransactionActiveError,
        "this thread already has a write transaction; commit or abort it "
        "first (write transactions do not nest)",
    ),
    RP_PANIC: (
        PanicError,
        "the environment is unusable after a failed rollback; close it and open the file again",
    ),
    RP_INVALID: (InvalidArgumentError, "check the arguments"),
    RP_BAD_TABLE: (
        BadTableError,
        "table names are 1 to 255 bytes of UTF-8",
    ),
    RP_CLOSED: (ClosedError, "the environment was closed; open it again"),
    RP_EXISTS: (
        ExistsError,
        "the destination exists; choose a new path or remove it first",
    ),
    RP_TIMEOUT: (
        WriteLockTimeoutError,
        "another thread or process holds the write lock; retry, or wait longer",
    ),
    RP_LOCK_CHANGED: (
        LockFileChangedError,
        "never delete, replace or edit the .lock file while the database is open; "
        "this handle refuses to read and write so that two processes never write under "
        "different locks: close every handle on the database and open it again "
        "(the next open rebuilds the lock file from the data file)",
    ),
}

# errno of a side file -> what to do about it
_SIDE_FILE_HINTS: dict[int, str] = {
    _errno.ELOOP: "it is a symbolic link, which realmpy never follows for its side "
    "files; remove the link (and find out who planted it)",
    _errno.EMLINK: "it has other hard links, so rebuilding it would overwrite another "
    "file; remove it while no process has the database open",
    _errno.EINVAL: "it is not a regular file; remove it while no process has the database open",
    _errno.EISDIR: "it is a directory; remove it",
    _errno.EACCES: "no permission: give this user read-write access to it and its "
    "directory, or open read-only (read_only=True) when no process has the database open",
    _errno.EPERM: "no permission: give this user read-write access to it and its "
    "directory, or open read-only (read_only=True) when no process has the database open",
    _errno.EROFS: "the file system is read-only: open with read_only=True",
    _errno.ENOENT: "its directory does not exist; create the directory first",
}


def side_file_error(err: int, side_file: str, path: str, what: str) -> SideFileError:
    """The error for errno ``err`` about ``side_file`` of database ``path``."""
    hint = _SIDE_FILE_HINTS.get(err, "check the file and its directory")
    exc = SideFileError(
        err,
        f"{what}: side file {side_file}: {_os_strerror(err)} ({hint}) [{path}]",
    )
    exc.filename = side_file
    exc.code = err
    exc.path = path
    return exc


def _os_strerror(err: int) -> str:
    return _os.strerror(err)


_ERRNO_HINTS: dict[int, tuple[type[StorageIOError], str]] = {
    _errno.ENOSPC: (
        DiskFullError,
        "free some disk space; the transaction was rolled back and the file "
        "keeps its previous version",
    ),
    _errno.ENOENT: (
        StorageFileNotFoundError,
        "check the path: its directory must exist, and a read-only open needs an existing database",
    ),
    _errno.EACCES: (
        StoragePermissionError,
        "check the permissions of the file, its .lock file and directory",
    ),
    _errno.EPERM: (
        StoragePermissionError,
        "check the permissions of the file, its .lock file and directory",
    ),
    _errno.EIO: (
        StorageIOError,
        "the device reported an I/O error; the transaction was rolled back",
    ),
    _errno.ENOMEM: (
        StorageIOError,
        "out of memory or address space; lower max_size or free memory",
    ),
}


def error_for_code(
    code: int,
    engine_message: str,
    what: str,
    path: str | None = None,
) -> StorageError:
    """Build the exception for an engine return code.

    Args:
        code: an RP_* code (negative) or an errno value (positive).
        engine_message: ``rp_strerror(code)``.
        what: what was being done, e.g. ``"put into table 'cars'"``.
        path: the data file, added to the message.
    """
    where = f" [{path}]" if path else ""
    exc: StorageError
    if RP_LOCK_ERRNO - 4096 < code < RP_LOCK_ERRNO:
        side = side_file_error(RP_LOCK_ERRNO - code, f"{path or '<path>'}.lock", path or "", what)
        side.code = code
        return side
    if code > 0:
        cls, hint = _ERRNO_HINTS.get(
            code, (StorageIOError, "the operating system refused the operation")
        )
        exc = cls(code, f"{what}: {engine_message} ({hint}){where}")
    else:
        known = _CODES.get(code)
        if known is None:
            exc = StorageError(f"{what}: {engine_message} (error {code}){where}")
        else:
            cls2, hint = known
            if code == RP_LOCK_CHANGED and path:
                # The problem is the side file: name it (the data file is fine).
                hint = f"{path}.lock: {hint}"
            exc = cls2(f"{what}: {engine_message} ({hint}){where}")
    exc.code = code
    exc.path = path
    return exc


# ============================================================================
# Object layer (realmpy.schema / codec / query / realm / results / notifier).
# Owned by the object layer; storage code above does not use these.  Every
# class also inherits the builtin a caller would naturally catch (TypeError
# for a value of the wrong type, ValueError for a malformed one,
# RuntimeError for an operation in the wrong state).
# ============================================================================


class RealmError(RealmpyError):
    """Base of every object-layer error (models, values, queries, realms)."""


class SchemaError(RealmError, TypeError):
    """A model class cannot be turned into a schema (bad annotation, two
    primary keys, an index on an unindexable type, an unknown link target)."""


class MigrationRequiredError(RealmError):
    """The stored schema differs incompatibly from the configured one and
    ``schema_version`` was not raised (or no migration can bridge it)."""


class KeyFormatError(RealmError):
    """The file's objects were written with another layout of encoded keys
    (``_meta`` ``key_format``, :data:`realmpy.codec.KEY_FORMAT`) than this
    realmpy's, e.g. a file from before variable-length int keys: its keys
    would be misread, so it is refused.  Copy the objects out with the
    realmpy that wrote it and into a new file, or open it with
    ``delete_if_migration_needed=True`` to start it afresh."""


class ConfigurationError(RealmError, ValueError):
    """A configuration is invalid or conflicts with how the file is used
    (e.g. a local configuration on a file with sync history)."""


class ObjectTypeError(RealmError, TypeError):
    """A value does not fit its property: wrong type, missing required
    field, unknown field name, naive datetime, out-of-range int."""


class MixedValueError(ObjectTypeError):
    """A value a ``Mixed`` property cannot hold (Realm's ``RealmValue``): a
    set, an embedded object, an arbitrary Python object, a naive datetime,
    an int beyond 64 bits, a dictionary key that is not a str, or nesting
    deeper than :data:`realmpy.mixed.MAX_MIXED_DEPTH`.  The message names
    the property and the offending value."""


class DuplicatePrimaryKeyError(RealmError, ValueError):
    """``add`` without ``update=True`` of an object whose primary key exists."""


class TransactionStateError(RealmError, RuntimeError):
    """A write outside a write transaction, or a nested/second begin."""


class ClosedRealmError(RealmError, RuntimeError):
    """The realm was closed; open a new ``Realm``."""


class FrozenRealmError(RealmError, RuntimeError):
    """A frozen realm, object or results was asked to change."""


class InvalidObjectError(RealmError, RuntimeError):
    """The object was deleted, or its realm closed."""


class WrongRealmError(RealmError, ValueError):
    """An object managed by another realm instance was passed in."""


class RealmThreadError(RealmError, RuntimeError):
    """A live realm (or its objects and results) was used from a thread
    other than the one that opened it; open a realm per thread, or pass
    ``realm.freeze()`` results between threads of your own design."""


class CodecError(RealmError, ValueError):
    """A value cannot be encoded (e.g. a key over the engine's key limit) or
    a stored record cannot be decoded."""


class QueryError(RealmError):
    """Base of query language errors."""


class QuerySyntaxError(QueryError, ValueError):
    """The query text does not parse; ``position`` is the offending offset.

    ``str(err)`` shows the message, the query, and a caret under the spot.
    """

    def __init__(self, message: str, text: str, position: int) -> None:
        self.message = message
        self.text = text
        self.position = position
        caret = " " * position + "^"
        super().__init__(f"{message} at position {position}\n  {text}\n  {caret}")

    def __reduce__(self) -> tuple[type[QuerySyntaxError], tuple[str, str, int]]:
        return (type(self), (self.message, self.text, self.position))


class QueryTooComplexError(QuerySyntaxError):
    """The query exceeds a limit of ``realmpy.query`` (``MAX_QUERY_CHARS``,
    ``MAX_QUERY_DEPTH``, ``MAX_QUERY_TERMS``): simplify it, or pass long lists
    as a ``$`` argument."""


class QueryArgumentError(QueryError, ValueError):
    """A ``$n`` argument or ``%variable`` the query uses was not supplied, or
    the query does not fit the model (unknown property)."""


class QueryTypeError(QueryArgumentError, TypeError):
    """The query compares a property with a value of a type it can never
    hold, or applies an operator or aggregate its type does not have (``age
    > 'x'``, ``name.@sum``, ``items == NULL`` for a list), as Realm rejects
    it when the query is built: raised when the query is bound to a class,
    so that a typo never looks like "no results".  ``key_path`` is the key
    path, ``prop_type`` its type as the schema describes it, ``value`` the
    offending value (or the operator/aggregate)."""

    def __init__(
        self, message: str, key_path: str = "", prop_type: str = "", value: object = None
    ) -> None:
        super().__init__(message)
        self.key_path = key_path
        self.prop_type = prop_type
        self.value = value

    def __reduce__(self) -> tuple[type[QueryTypeError], tuple[str, str, str, object]]:
        return (type(self), (str(self), self.key_path, self.prop_type, self.value))


class QueryUnsupportedError(QuerySyntaxError):
    """The query uses Realm query syntax that realmpy parses but does not
    evaluate yet (backlinks ``@links``, full-text ``TEXT``, ``geoWithin``)."""


__all__ += [
    "ClosedRealmError",
    "CodecError",
    "ConfigurationError",
    "DuplicatePrimaryKeyError",
    "FrozenRealmError",
    "InvalidObjectError",
    "KeyFormatError",
    "MigrationRequiredError",
    "MixedValueError",
    "ObjectTypeError",
    "QueryArgumentError",
    "QueryError",
    "QuerySyntaxError",
    "QueryTooComplexError",
    "QueryTypeError",
    "QueryUnsupportedError",
    "RealmError",
    "RealmThreadError",
    "SchemaError",
    "TransactionStateError",
    "WrongRealmError",
]
