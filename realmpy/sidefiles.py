"""Side files of a database: ``<path>.session`` (the object layer's
per-process presence lock) and ``<path>.sync`` (the sync client's agent
election and published state).  The engine's ``<path>.lock`` follows the
same rules in C (csrc/lock.c).

Every side file is opened with ``O_NOFOLLOW`` (a symlink planted at its name
is refused, its target never opened) and ``O_CLOEXEC``, used only if it is a
regular file with one link (writing into a hard link would change another
file), and created with the data file's read/write mode bits (0600 for a new
database; the umask applies).  Every failure is a
:class:`~realmpy.errors.SideFileError` naming the side file and saying what
to do.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct

from realmpy.errors import StorageError, error_for_code, side_file_error

__all__ = ["check_directory", "lock_side_file", "open_side_file"]


def check_directory(path: str, what: str) -> None:
    """Raise a clear error naming the data file when its directory is missing
    (instead of a bare FileNotFoundError about whichever side file comes
    first)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise error_for_code(
            errno.ENOENT,
            os.strerror(errno.ENOENT),
            f"{what}: the directory {directory} does not exist",
            path,
        )


def _mode(path: str) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode) & 0o666
    except OSError:
        return 0o600


# What a read-only opener takes for "this directory or medium is not ours to write".
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def open_side_file(path: str, suffix: str, *, read_only: bool, what: str) -> int | None:
    """Open ``path + suffix`` read-write, created if needed, and return its
    descriptor.

    ``read_only``: where it cannot be opened for writing (a read-only
    directory or medium), open it for reading without creating it, and
    return ``None`` if that fails too: the caller goes without it.
    """
    side = path + suffix
    flags = os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(side, flags | os.O_RDWR | os.O_CREAT, _mode(path))
    except OSError as e:
        if not (read_only and e.errno in _NOT_WRITABLE):
            raise side_file_error(e.errno or errno.EIO, side, path, what) from None
        try:
            fd = os.open(side, flags | os.O_RDONLY)
        except OSError as e2:
            if e2.errno in (errno.ENOENT, *_NOT_WRITABLE):
                return None
            raise side_file_error(e2.errno or errno.EIO, side, path, what) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise side_file_error(errno.EINVAL, side, path, what)
        if st.st_nlink > 1:
            raise side_file_error(errno.EMLINK, side, path, what)
    except (OSError, StorageError):
        os.close(fd)
        raise
    return fd


_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", None)
_OFD_SETLKW = getattr(fcntl, "F_OFD_SETLKW", None)


def lock_side_file(fd: int, *, exclusive: bool, block: bool) -> bool:
    """Lock the whole side file on ``fd``'s open file description; False when
    ``block`` is off and another holder's lock conflicts.

    An OFD lock (``F_OFD_SETLK``): like ``flock(2)`` it belongs to the open
    file description, so the kernel drops it when the last descriptor closes
    or the process dies (also by SIGKILL), and a second ``open`` of the file
    in the same process conflicts with it.  Unlike ``flock(2)`` a conversion
    is atomic: a refused non-blocking upgrade from shared to exclusive keeps
    the shared lock.  ``flock`` removes the old lock first, so a process that
    merely asked "am I alone?" while others had the file open was left holding
    no lock at all, and a later "alone" process compacted the file under it.
    """
    kind = fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK
    arg = struct.pack("hhqqixxxx", kind, os.SEEK_SET, 0, 0, 0)  # struct flock, l_pid 0
    try:
        if _OFD_SETLK is not None and _OFD_SETLKW is not None:
            fcntl.fcntl(fd, _OFD_SETLKW if block else _OFD_SETLK, arg)
        else:  # pragma: no cover - non-Linux: process-owned locks, conversions atomic too
            op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            fcntl.lockf(fd, op if block else op | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        if block:
            raise
        return False
    except OSError as exc:
        # A descriptor opened read-only (a read-only realm) cannot hold a write
        # lock: such a process never takes the file exclusively.
        if exc.errno == errno.EBADF and exclusive and not block:
            return False
        raise
    return True
