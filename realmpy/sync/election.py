"""Agent election: which process holds the exclusive lock on ``<path>.sync`` (invariant 8).

Why a waiter thread that nobody joins: a standby waits for the agent's lock
*blocked in the kernel* — no polling, and the kernel hands the lock over the
moment the agent dies, however it dies — but no portable call interrupts
that wait, so closing a standby used to wait out a 2 s join.  The blocking
request now runs in a per-process, per-file waiter thread with its own open
file description; the sync client waits on an event that either the waiter
(lock granted) or ``stop`` sets, so closing returns at once.  A closed
standby just detaches from the waiter; a later opener of the same file in
this process attaches to the same waiter instead of starting another, so
abandoned waits never pile up; and a waiter that is granted the lock with
nobody attached gives it up at once (closes its descriptor), so a standby
of another process takes over.

Open-file-description locks (Linux ``F_OFD_SETLKW``) are used where they
exist: unlike classic POSIX record locks they belong to the descriptor, not
to the process, so closing another descriptor of ``<path>.sync`` in this
process never drops the agent's lock by accident.  They are still released
by the kernel when the process dies.  Elsewhere ``lockf`` is the fallback.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import ClassVar

from realmpy.sidefiles import lock_side_file

__all__ = ["Election"]


def _lock(fd: int, *, block: bool) -> bool:
    """Take the exclusive lock on ``fd``; False if ``block`` is off and another holder has it."""
    return lock_side_file(fd, exclusive=True, block=block)


class _Waiter:
    """One descriptor of ``<path>.sync`` that holds, or waits in the kernel for, the agent lock."""

    def __init__(self, path: str, open_fd: Callable[[], int]) -> None:
        self.path = path
        self.pid = os.getpid()
        self.fd = open_fd()
        self.holder: Election | None = None
        self.granted = _lock(self.fd, block=False)
        self.error: OSError | None = None
        self.closed = False
        if not self.granted:
            threading.Thread(
                target=self._wait, name=f"realmpy-sync-election[{path}]", daemon=True
            ).start()

    def _wait(self) -> None:
        try:
            _lock(self.fd, block=True)
        except OSError as exc:  # EDEADLK, EINTR storms, a closed descriptor: report, never hang
            with Election._registry_lock:
                self.error = exc
                self._forget()
                if self.holder is not None:
                    self.holder._wake.set()
            return
        with Election._registry_lock:
            self.granted = True
            if self.holder is None:
                self._close()  # nobody wants it any more: let another process's standby in
            else:
                self.holder._wake.set()

    def _forget(self) -> None:
        if Election._waiters.get(self.path) is self:
            del Election._waiters[self.path]

    def _close(self) -> None:
        """Give the lock up (closing the descriptor releases it). Under the registry lock."""
        self._forget()
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                os.close(self.fd)


class Election:
    """This sync client's claim to be the agent of one file.

    ``path`` names the lock file (``<path>.sync``), ``open_fd`` opens a new
    descriptor of it (``sidefiles.open_side_file``: no symlinks); ``wake`` is
    set when the lock is granted; the client sets it too when it stops, so
    one ``wake.wait()`` covers both.
    """

    _waiters: ClassVar[dict[str, _Waiter]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: str, open_fd: Callable[[], int], wake: threading.Event) -> None:
        self._wake = wake
        with Election._registry_lock:
            waiter = Election._waiters.get(path)
            if waiter is None or waiter.pid != os.getpid() or waiter.holder is not None:
                # (a holder already attached means two clients of one file in one process,
                # which the client registry prevents; a fresh waiter keeps them apart anyway)
                waiter = _Waiter(path, open_fd)
                if not waiter.granted:
                    Election._waiters[path] = waiter
            waiter.holder = self
            self._waiter = waiter
            if waiter.granted:
                wake.set()

    @property
    def granted(self) -> bool:
        """True once this process holds the agent lock for this client."""
        return self._waiter.granted and self._waiter.holder is self

    @property
    def error(self) -> OSError | None:
        """Why waiting for the lock failed (then it is not granted and never will be)."""
        return self._waiter.error

    def release(self) -> None:
        """Give the lock up if held, or stop waiting for it (returns at once either way)."""
        with Election._registry_lock:
            waiter = self._waiter
            if waiter.holder is not self:
                return
            waiter.holder = None
            if waiter.granted:
                waiter._close()
