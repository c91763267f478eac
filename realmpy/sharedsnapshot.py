"""A read snapshot any thread can use: what a frozen realm reads through.

The engine ties a read transaction to the thread that began it
(``csrc/realmpy.h``, "THREADS AND PROCESSES": a call from another thread
returns ``RP_WRONG_THREAD``, and :class:`~realmpy.storage.Snapshot` checks
the owner before every call), and another thread cannot open a snapshot of
its own at a frozen realm's version (``rp_txn_begin`` and ``rp_txn_renew``
only begin at the *newest* one).  So a frozen realm shares one snapshot
between threads: ``rp_txn_share`` marks the engine read transaction usable
from any thread (:meth:`~realmpy.storage.Snapshot.share` also lifts the
Python owner check, for that snapshot only).

The engine does not lock a shared transaction: it carries per-call state
(its table-descriptor cache, its cursor count, the storage layer's pooled
out-parameters), so the contract is that the caller serialises every call.
A :class:`SharedSnapshot` does it with one :class:`threading.Lock` held
around each storage call, ending included, so a reader never races with the
end and a freed handle is never used.  A plain lock suffices: nothing that
runs under it calls back into the snapshot (iterator arguments are read
before it is taken, and the only outside code storage calls run is the
msgpack decode hook, which builds values and never reads the realm).

Scans: a storage scan is lazy and reads a batch per ``next()`` that needs
one; the iterator a SharedSnapshot returns takes the lock only to pull the
next :data:`SCAN_BATCH` records out of it and yields them with the lock
released, so a consumer that stops, or is slow, never blocks other threads.
A storage scan holds no cursor between batches, so an abandoned one pins
nothing.

Every public read method of a Snapshot is forwarded by name (and, on first
use, defined on the class, so later calls cost a plain method call), so one
added to the storage layer works on frozen realms without a change here.
:meth:`SharedSnapshot.get` (the frozen ``find`` path) is written out to skip
the forwarder's generic argument handling.  Cost: a lock around a direct
call, no thread hop.  Measured here (``bench/bench_frozen.py``, noisy shared
machine): a frozen ``find`` plus a property read ~3 µs (~3.5 µs from a
worker thread) against ~2.2 µs live, and ~24 µs with the per-snapshot owner
thread this replaced; a 20,000-object scan costs about as much as live.  A
frozen realm's objects and results still cache what they read (its version
never moves).

The snapshot ends (unpinning its version) on :meth:`SharedSnapshot.end`, or
when the object is garbage-collected, from whichever thread.  Its reader
slot (``Environment.readers()``) names the thread that froze the realm,
whichever thread reads it now.  Closing the environment does not end it (it
has no owner thread): the engine handle is freed once it ends.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from realmpy.errors import TransactionError
from realmpy.storage import BytesLike, Environment, Snapshot

__all__ = ["SCAN_BATCH", "SharedSnapshot"]

SCAN_BATCH = 1024

# Snapshot methods a frozen snapshot must not forward: moving it to a newer
# version would unfreeze it, ending goes through SharedSnapshot.end, and it
# is shared already.
_NOT_FORWARDED = frozenset({"refresh", "end", "abort", "share"})

_islice = itertools.islice
# Types that are never iterators: skips an ABC isinstance on the hot path.
_PLAIN = frozenset({bytes, str, int, bool, list, tuple, dict, type(None)})


def _end(snap: Snapshot, lock: threading.Lock) -> None:
    """End ``snap`` under ``lock`` (waits for a read in progress).  The
    finalizer: holds no reference to the SharedSnapshot."""
    with lock:
        snap.end()


def _forwarder(name: str) -> Callable[..., Any]:
    """A SharedSnapshot method running Snapshot method ``name`` under the
    lock; a returned iterator (a scan) is read a batch at a time."""
    method = getattr(Snapshot, name)

    def call(self: SharedSnapshot, *args: Any, **kwargs: Any) -> Any:
        for a in args:
            if type(a) not in _PLAIN and isinstance(a, Iterator):
                # Caller code (a generator may even read this snapshot): run
                # it before taking the lock.
                args = tuple(list(a) if isinstance(a, Iterator) else a for a in args)
                break
        snap = self._snap
        with self._lock:
            if not snap.active:
                self._ended()
            result = method(snap, *args, **kwargs)
        if type(result) in _PLAIN or not isinstance(result, Iterator):
            return result
        return self._batches(result)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = method.__doc__
    return call


class SharedSnapshot:
    """One committed version of ``env``, readable from any thread until
    :meth:`end`; the read methods of :class:`~realmpy.storage.Snapshot`."""

    def __init__(self, env: Environment) -> None:
        snap = env.read()
        try:
            snap.share()
        except BaseException:
            snap.end()
            raise
        self._snap = snap
        self._path = env.path
        self._version = snap.version
        self._lock = threading.Lock()  # serialises every call on snap
        self._finalizer = weakref.finalize(self, _end, snap, self._lock)

    @property
    def version(self) -> int:
        return self._version

    @property
    def active(self) -> bool:
        return self._snap.active

    def _ended(self) -> None:
        raise TransactionError(
            f"the frozen snapshot of version {self._version} was ended: "
            f"freeze the realm again [{self._path}]"
        )

    def get(self, table: str, key: BytesLike) -> bytes | None:
        """:meth:`Snapshot.get <realmpy.storage.Snapshot.get>`, written out:
        the frozen ``find`` path, spared the generic forwarder's work."""
        snap = self._snap
        with self._lock:
            if not snap.active:
                self._ended()
            return snap.get(table, key)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """Every public read method of :class:`~realmpy.storage.Snapshot`
        (``get``, ``get_many``, ``scan``, ``scan_msgpack``, ``count``,
        ``tables``... and any added later), run under the lock.

        Why forward by name rather than wrap each method: the storage layer
        grows read methods (filtered scans, joins); a frozen realm must
        offer whatever a live one calls.  The forwarder is defined on the
        class at first use, so this runs once per name and process."""
        if name.startswith("_") or name in _NOT_FORWARDED:
            raise AttributeError(name)
        if not callable(getattr(Snapshot, name, None)):
            raise AttributeError(f"a snapshot has no method {name!r}")
        fn = _forwarder(name)
        setattr(SharedSnapshot, name, fn)
        return fn.__get__(self)  # type: ignore[no-any-return]

    def _batches(self, it: Iterator[Any]) -> Iterator[Any]:
        """Read ``it`` (a storage scan) :data:`SCAN_BATCH` records per lock
        hold; the lock is never held while yielding."""
        snap, lock = self._snap, self._lock
        while True:
            with lock:
                if not snap.active:
                    self._ended()
                batch = list(_islice(it, SCAN_BATCH))
            yield from batch
            if len(batch) < SCAN_BATCH:
                return

    def end(self, *_exc_info: object) -> None:
        """End the snapshot (idempotent, any thread); reads after it raise
        :class:`~realmpy.errors.TransactionError`.  A read in progress in
        another thread finishes first.  Returns once the version is
        unpinned, so that a write right after it is not limited by
        ``max_active_versions``."""
        self._finalizer()

    abort = end

    def __repr__(self) -> str:
        state = "open" if self._snap.active else "ended"
        return f"<SharedSnapshot v{self._version} {state} [{self._path}]>"
