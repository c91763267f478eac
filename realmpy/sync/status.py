"""What the sync agent publishes for every process of its file, and the read-only view of it.

Why two places: the *connection* changes often and means nothing after the
agent dies, so it is an ephemeral line at the start of ``<path>.sync`` (the
file whose POSIX lock elects the agent): ``"<pid> <state>"`` in 64 bytes,
written with ``pwrite`` and no sync; a pid that is no longer alive reads as
"no agent".  A *final* error (``error_codes.Handling.FATAL``) must reach
waiters in every process at once and outlive the agent (a secondary opened
later still learns why nothing uploads), so it is stored in the realm file
itself (``_sync.meta`` key ``error``): committing it bumps the shared
version counter, which wakes every ``wait_for_*`` in every process.  An
agent clears it when it starts (it tries again).  Upload and download
progress are the cursors already in ``_sync.meta``.

``AgentView`` is what a ``disconnected_sync`` realm's ``sync_session`` is
backed by: it offers the attributes ``SyncSession`` reads from a
``SyncClient`` (role ``secondary``), and it never talks to the network.

The ``<path>.sync`` descriptor a view reads through is opened once per
process and file and never closed: closing *any* descriptor of a file drops
the process's POSIX locks on it, which would silently end the agent's
election if this process is also the agent.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Final

from realmpy.sync import errors as E
from realmpy.sync import protocol as P
from realmpy.sync.history import META_TABLE

if TYPE_CHECKING:
    from realmpy.storage import Environment, Snapshot, WriteTransaction

__all__ = [
    "PUBLISHED_BYTES",
    "AgentView",
    "clear_error",
    "count_download",
    "download_objects",
    "format_line",
    "parse_line",
    "read_error",
    "store_error",
]

PUBLISHED_BYTES: Final = 64
"""Bytes at the start of ``<path>.sync`` holding the agent's ``"<pid> <state>"`` line."""

_STATES: Final = ("connecting", "connected", "disconnected")
_ERROR_KEY: Final = b"error"


def format_line(pid: int, conn: str) -> bytes:
    return (f"{pid} {conn}".ljust(PUBLISHED_BYTES - 1) + "\n").encode()


def parse_line(fd: int) -> tuple[int, str]:
    """``(pid, connection state)`` published in the ``.sync`` file open at ``fd``;
    ``(0, "disconnected")`` if none is published or its process is gone (a kill -9 leaves
    the last line behind)."""
    try:
        raw = os.pread(fd, PUBLISHED_BYTES, 0).decode("ascii", "replace")
    except OSError:
        return 0, "disconnected"
    parts = raw.split()
    if len(parts) != 2 or not parts[0].isdigit() or parts[1] not in _STATES:
        return 0, "disconnected"
    pid = int(parts[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return 0, "disconnected"
    except PermissionError:
        pass  # alive, owned by another user
    return pid, parts[1]


# ----------------------------------------------------------------------------- the final error


def store_error(txn: WriteTransaction, err: E.SyncError) -> None:
    """Record the session's final error in the file (the commit wakes every waiter)."""
    rec = [type(err).__name__, err.code, err.status, err.message]
    txn.put(META_TABLE, _ERROR_KEY, P.pack(rec))


def clear_error(txn: WriteTransaction) -> bool:
    return txn.get(META_TABLE, _ERROR_KEY) is not None and txn.delete(META_TABLE, _ERROR_KEY)


def read_error(snap: Snapshot | WriteTransaction) -> E.SyncError | None:
    """The final error the last agent stopped for (a new exception each call), else None."""
    raw = snap.get(META_TABLE, _ERROR_KEY)
    if raw is None:
        return None
    try:
        name, code, status, message = P.unpack(raw)
    except (P.ProtocolError, ValueError, TypeError):
        return E.SyncError("the sync session stopped for an unreadable error", code="sync_error")
    cls = getattr(E, str(name), None) if str(name) in E.__all__ else None
    if not (isinstance(cls, type) and issubclass(cls, E.SyncError)) or cls in _SPECIAL_INIT:
        cls = E.SyncError
    return cls(str(message), code=str(code), status=status if isinstance(status, int) else None)


_SPECIAL_INIT: Final = (E.CompensatingWriteError,)
"""Error classes whose constructor takes more than the message (rebuilt as plain ``SyncError``)."""


# ----------------------------------------------------------------------------- download progress

_DL_OBJECTS_KEY: Final = b"dl_objects"


def download_objects(snap: Snapshot | WriteTransaction) -> tuple[int, int]:
    """``(objects received, objects expected)`` over the file's life (progress counts these)."""
    raw = snap.get(META_TABLE, _DL_OBJECTS_KEY)
    if raw is None:
        return 0, 0
    received, expected, _ = P.unpack(raw)
    return int(received), int(expected)


def count_download(txn: WriteTransaction, resp: P.DownloadResponse) -> None:
    """Count a download batch's objects, in the transaction that applies it.

    During a bootstrap the server's cursor does not move until its last batch, so progress
    in server versions would sit still; objects do move.  The total of a bootstrap is
    estimated from the server's ``progress`` (objects so far / progress) and only ever
    raised; it becomes exact with the last batch.
    """
    raw = txn.get(META_TABLE, _DL_OBJECTS_KEY)
    received, expected, in_bootstrap = (0, 0, 0) if raw is None else P.unpack(raw)
    n = len(resp.entries)
    received += n
    if resp.batch == "more":
        in_bootstrap += n
        p = min(max(resp.progress, 0.0), 1.0)
        estimate = received + (round(in_bootstrap * (1 - p) / p) if p > 0 else 1)
        expected = max(expected, estimate)
    else:
        in_bootstrap = 0
        expected = received
    txn.put(META_TABLE, _DL_OBJECTS_KEY, P.pack([received, max(expected, received), in_bootstrap]))


# ----------------------------------------------------------------------------- the view


_fds: dict[str, int] = {}
_fds_lock = threading.Lock()


def _sync_fd(path: str) -> int | None:
    """This process's read descriptor of ``<path>.sync`` (kept open: see the module docstring;
    if the file was replaced, the old descriptor is left open, never closed, for the same reason)."""
    with _fds_lock:
        fd = _fds.get(path)
        try:
            current = os.stat(path + ".sync").st_ino
        except OSError:
            return None  # no flexible_sync opener has run here (or its files were deleted)
        if fd is None or os.fstat(fd).st_ino != current:
            try:
                fd = os.open(path + ".sync", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                return None
            _fds[path] = fd
        return fd


class AgentView:
    """The sync agent of a file as a ``disconnected_sync`` process sees it (read-only)."""

    role: Final = "secondary"
    options: Any = None
    user: Any = None

    def __init__(self, env: Environment, path: str) -> None:
        self.env = env
        self.path = path
        self.sessions: list[Any] = []
        self._stop = threading.Event()  # never set: a view has nothing to stop

    def published(self) -> tuple[int, str]:
        fd = _sync_fd(self.path)
        return (0, "disconnected") if fd is None else parse_line(fd)

    @property
    def connection_state(self) -> str:
        return self.published()[1]

    @property
    def last_error(self) -> E.SyncError | None:
        with self.env.read() as snap:
            return read_error(snap)

    @property
    def state(self) -> str:
        return "error" if self.last_error is not None else "active"

    @property
    def stopped(self) -> bool:
        return False

    def pause(self) -> None:
        raise E.SyncError(
            f"{self.path} is synced by another process (the flexible_sync one): pause or resume "
            "its session there; a disconnected_sync realm's session is a read-only view",
            code="wrong_state",
        )

    resume = pause
