"""One refcounted object per file path in this process.

Two things exist once per realm file and process and live while anything
uses them: the open file (:class:`realmpy.sharedfile.SharedFile`: the
Environment, the session lock, the notifier) and the sync client
(``realmpy.sync.agent.SyncClient``).  Both are found by path, counted by
their users, and closed by the last one; a :class:`PathRegistry` is that
mechanism, written once.

An object left over from the parent process after ``fork()`` (its ``pid``
is not ours) is never handed out: the child opens its own.  The count lives
on the object, so releasing such a left-over one never touches the child's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["PathRegistry", "PerPath"]


class PerPath(Protocol):
    """What a registered object carries: its path, the process that made it,
    and how many users it has (maintained by the registry only)."""

    path: str
    pid: int
    refs: int


T = TypeVar("T", bound=PerPath)


class PathRegistry(Generic[T]):
    """Path -> the one live object of this process, with a reference count."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._objects: dict[str, T] = {}

    def acquire(
        self,
        path: str,
        create: Callable[[], T],
        *,
        check: Callable[[T], None] | None = None,
        usable: Callable[[T], bool] | None = None,
    ) -> T:
        """The object for ``path``, made by ``create()`` if there is none (or
        the one there is came from another process or is not ``usable``), with
        one more reference.  ``check`` may refuse an existing object by
        raising (the count is then unchanged).  ``create`` runs under the
        registry's lock, so two threads never make two objects for one path."""
        with self.lock:
            obj = self._objects.get(path)
            if obj is not None and (
                obj.pid != os.getpid() or (usable is not None and not usable(obj))
            ):
                obj = None  # inherited across fork(), or finished: make our own
            if obj is None:
                obj = create()
                self._objects[path] = obj
            elif check is not None:
                check(obj)
            obj.refs += 1
            return obj

    def release(self, obj: T) -> bool:
        """Drop one reference to ``obj``; True if it was the last, and then
        the registry has forgotten it and the caller closes it."""
        with self.lock:
            obj.refs -= 1
            if obj.refs > 0:
                return False
            if self._objects.get(obj.path) is obj:
                del self._objects[obj.path]
            return True

    def live(self) -> list[T]:
        """This process's registered objects, as a list taken under the lock."""
        with self.lock:
            return [obj for obj in self._objects.values() if obj.pid == os.getpid()]

    def __contains__(self, path: object) -> bool:
        """Whether this process has an object registered for ``path``."""
        with self.lock:
            return path in self._objects
