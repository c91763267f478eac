"""Change notifications: one notifier thread per file and process.

Why a thread blocked on the shared version counter: a commit in *any*
process bumps the counter in shared memory and wakes the futex, so one
``env.wait_for_change`` call per file and process hears every commit, local
or remote, at no CPU cost while idle; nothing polls.

For each new version the notifier opens one read snapshot, re-evaluates each
listener's query (or object) once, diffs it against what that listener saw
last, and delivers a change set:

- a listener registered while an asyncio loop was running in the calling
  thread is called *on that loop*, with the live ``Results`` (or object) of
  the realm it was registered from, after that realm advanced;
- otherwise it is called *on the notifier thread*, with frozen results (or a
  frozen object) at the new version, owned by the notifier thread, so the
  callback never races with the thread that owns the live realm.  They are
  valid during the callback (the snapshot is released when it returns):
  copy out what you need to keep.

Change sets (``ResultsChange``) follow Realm: ``deleted`` and ``modified``
are indexes in the old results, ``inserted`` and ``new_modified`` in the new,
``moved`` lists ``(old, new)`` index pairs of objects whose relative order
changed, ``is_cleared`` is true when non-empty results became empty.  An
object is *modified* when its own stored record changed.  ``ObjectChange``
has ``is_deleted`` and the names of changed ``properties``.

There is no initial call on registration: the first call reports the first
change after it.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from realmpy import codec
from realmpy.errors import ClosedError
from realmpy.storage import Environment

if TYPE_CHECKING:
    from realmpy.realm import Realm
    from realmpy.results import Results
    from realmpy.schema import Object

__all__ = [
    "ListenerToken",
    "Notifier",
    "ObjectChange",
    "ResultsChange",
    "add_object_listener",
    "add_results_listener",
    "diff_rows",
]


@dataclass(frozen=True)
class ResultsChange:
    """What changed in a ``Results`` between two versions."""

    inserted: tuple[int, ...] = ()
    deleted: tuple[int, ...] = ()
    modified: tuple[int, ...] = ()
    new_modified: tuple[int, ...] = ()
    moved: tuple[tuple[int, int], ...] = ()
    is_cleared: bool = False

    @property
    def is_empty(self) -> bool:
        return not (self.inserted or self.deleted or self.modified or self.moved or self.is_cleared)


_UNCHANGED: ResultsChange = ResultsChange()


@dataclass(frozen=True)
class ObjectChange:
    """What changed in one object between two versions."""

    object: Any
    is_deleted: bool = False
    properties: tuple[str, ...] = ()


def _stationary(seq: list[int]) -> set[int]:
    """Values of a longest increasing subsequence (objects that did not move)."""
    import bisect

    tails: list[int] = []
    tails_idx: list[int] = []
    prev = [-1] * len(seq)
    for i, v in enumerate(seq):
        j = bisect.bisect_left(tails, v)
        if j == len(tails):
            tails.append(v)
            tails_idx.append(i)
        else:
            tails[j] = v
            tails_idx[j] = i
        prev[i] = tails_idx[j - 1] if j > 0 else -1
    out: set[int] = set()
    i = tails_idx[-1] if tails_idx else -1
    while i >= 0:
        out.add(seq[i])
        i = prev[i]
    return out


def diff_rows(old: list[tuple[bytes, bytes]], new: list[tuple[bytes, bytes]]) -> ResultsChange:
    """Change set between two ordered lists of (key, record bytes)."""
    if old == new:
        return _UNCHANGED
    if len(old) == len(new) and [k for k, _ in old] == [k for k, _ in new]:
        # Same objects in the same order (the common case): only modifications.
        changed = tuple(i for i, (a, b) in enumerate(zip(old, new)) if a[1] != b[1])
        return ResultsChange(modified=changed, new_modified=changed)
    old_pos = {k: i for i, (k, _) in enumerate(old)}
    new_pos = {k: i for i, (k, _) in enumerate(new)}
    deleted = tuple(i for i, (k, _) in enumerate(old) if k not in new_pos)
    inserted = tuple(i for i, (k, _) in enumerate(new) if k not in old_pos)
    modified = []
    new_modified = []
    common_old_order = []
    for i, (k, raw) in enumerate(old):
        j = new_pos.get(k)
        if j is None:
            continue
        common_old_order.append(j)
        if new[j][1] != raw:
            modified.append(i)
            new_modified.append(j)
    if all(a < b for a, b in zip(common_old_order, common_old_order[1:])):
        moved: tuple[tuple[int, int], ...] = ()  # the common objects kept their order
    else:
        keep = _stationary(common_old_order)
        moved = tuple((old_pos[new[j][0]], j) for j in sorted(common_old_order) if j not in keep)
    return ResultsChange(
        inserted,
        deleted,
        tuple(modified),
        tuple(sorted(new_modified)),
        moved,
        bool(old) and not new,
    )


@dataclass(eq=False)
class _Listener:
    kind: str  # "results" or "object"
    realm_ref: weakref.ref[Realm]
    cls_name: str
    cls: type
    query: Any
    args: tuple[Any, ...]
    key: bytes
    callback: Callable[..., None]
    loop: asyncio.AbstractEventLoop | None
    version: int
    state: Any
    active: bool = True


@dataclass(eq=False)
class ListenerToken:
    """Returned by ``add_listener``; ``remove()`` stops the notifications."""

    _notifier: Notifier
    _listener: _Listener
    _realm_ref: weakref.ref[Realm] = field(repr=False)

    def remove(self) -> None:
        """Stop calling the callback (idempotent)."""
        self._listener.active = False
        self._notifier.remove(self._listener)
        realm = self._realm_ref()
        if realm is not None and self in realm._tokens:
            realm._tokens.remove(self)


class Notifier:
    """The notifier thread of one file in this process."""

    def __init__(self, env: Environment) -> None:
        self._env = env
        self._lock = threading.Lock()
        self._listeners: list[_Listener] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._processed = env.version
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def processed_version(self) -> int:
        return self._processed

    def add(self, listener: _Listener) -> None:
        with self._lock:
            self._listeners.append(listener)
            if self._thread is None:
                self._processed = max(self._processed, listener.version)
                self._thread = threading.Thread(
                    target=self._run, name=f"realmpy-notifier:{self._env.path}", daemon=True
                )
                self._thread.start()

    def remove(self, listener: _Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def stop(self) -> None:
        """Stop the thread (it wakes when the environment closes)."""
        self._stopping = True

    async def wait_processed(self, version: int, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until the notifier has handled ``version`` (or stopped)."""
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._processed >= version or self._thread is None:
                return
            self._waiters.append((version, loop, fut))
        await fut

    def _run(self) -> None:
        last = self._processed
        while not self._stopping:
            try:
                current = self._env.wait_for_change(last, timeout=None)
            except ClosedError:
                break
            if current == last:
                continue
            try:
                self._process()
            except ClosedError:
                break
            except Exception:  # a bad listener must not kill notifications
                import traceback

                traceback.print_exc()
            last = self._processed
        self._release_waiters(all_=True)

    def _release_waiters(self, all_: bool = False) -> None:
        with self._lock:
            ready = [w for w in self._waiters if all_ or w[0] <= self._processed]
            self._waiters = [w for w in self._waiters if w not in ready]
        for _v, loop, fut in ready:
            try:
                loop.call_soon_threadsafe(_resolve, fut)
            except RuntimeError:
                pass

    def _process(self) -> None:
        from realmpy.realm import Realm

        with self._lock:
            listeners = [lis for lis in self._listeners if lis.active]
        if not listeners:
            self._processed = self._env.version
            self._release_waiters()
            return
        source = None
        for lis in listeners:
            source = lis.realm_ref()
            if source is not None:
                break
        if source is None:
            self._processed = self._env.version
            self._release_waiters()
            return
        snap = self._env.read()
        frozen = Realm._frozen_at(source, snap)
        version = snap.version
        try:
            for lis in listeners:
                if not lis.active or version <= lis.version:
                    continue
                self._deliver(frozen, lis, version)
        finally:
            frozen.close()  # frozen results are valid during the callback
        self._processed = version
        self._release_waiters()

    def _deliver(self, frozen: Realm, lis: _Listener, version: int) -> None:
        from realmpy.results import Results

        if lis.kind == "results":
            state = frozen._evaluate_raw(lis.cls_name, lis.query, lis.args)
            change = diff_rows(lis.state, state)
            lis.state = state
            lis.version = version
            if change.is_empty:
                return
            if lis.loop is None:
                results: Results[Any] = Results(frozen, lis.cls, lis.query, lis.args)
                # objects decode their record on first read
                results._cache = (frozen._stamp, [(k, None) for k, _ in state])
                _call(lis.callback, results, change)
            else:
                self._post(lis, lambda: _live_results(lis, change))
        else:
            raw = frozen._reader().get("o:" + lis.cls_name, lis.key)
            old = lis.state
            lis.state = raw
            lis.version = version
            if raw == old:
                return
            if raw is None:
                props: tuple[str, ...] = ()
            else:
                names = frozen._info[lis.cls_name].names
                a = codec.record_to_dict(old, names) if old is not None else {}
                b = codec.record_to_dict(raw, names)
                props = tuple(n for n in b if a.get(n) != b.get(n) or n not in a)
            deleted = raw is None
            if lis.loop is None:
                obj = None if deleted else frozen._make(lis.cls_name, lis.key)
                _call(lis.callback, ObjectChange(obj, deleted, props))
            else:
                self._post(lis, lambda: _live_object(lis, deleted, props))

    def _post(self, lis: _Listener, deliver: Callable[[], None]) -> None:
        realm = lis.realm_ref()
        if realm is None or realm.is_closed or lis.loop is None:
            return

        def guarded() -> None:
            if lis.active:
                deliver()

        realm._post(guarded, lis.loop)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _call(callback: Callable[..., None], *args: Any) -> None:
    try:
        callback(*args)
    except Exception:
        import traceback

        traceback.print_exc()


def _live_results(lis: _Listener, change: ResultsChange) -> None:
    from realmpy.results import Results

    realm = lis.realm_ref()
    if realm is None or realm.is_closed:
        return
    _call(lis.callback, Results(realm, lis.cls, lis.query, lis.args), change)


def _live_object(lis: _Listener, deleted: bool, props: tuple[str, ...]) -> None:
    realm = lis.realm_ref()
    if realm is None or realm.is_closed:
        return
    obj = None if deleted else realm._make(lis.cls_name, lis.key)
    _call(lis.callback, ObjectChange(obj, deleted, props))


def _loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def add_results_listener(results: Results[Any], callback: Callable[..., None]) -> ListenerToken:
    realm = results._realm
    realm._check()
    if realm.is_frozen:
        from realmpy.errors import FrozenRealmError

        raise FrozenRealmError("frozen results never change: nothing to listen to")
    realm._read()  # auto-refresh, then the state the listener starts from
    state = realm._evaluate_raw(results._name, results._query, results._args)
    lis = _Listener(
        "results",
        weakref.ref(realm),
        results._name,
        results._cls,
        results._query,
        results._args,
        b"",
        callback,
        _loop(),
        realm._version,
        state,
    )
    return _register(realm, lis)


def add_object_listener(obj: Object, callback: Callable[[ObjectChange], None]) -> ListenerToken:
    from realmpy.errors import InvalidObjectError
    from realmpy.realm import Realm, table_name

    realm = obj._rp_store
    if not isinstance(realm, Realm):
        raise InvalidObjectError("only objects managed by a realm can have listeners")
    txn = realm._read()
    raw = txn.get(table_name(type(obj).__realm_name__), obj._rp_key)
    if raw is None:
        raise InvalidObjectError("this object was deleted")
    lis = _Listener(
        "object",
        weakref.ref(realm),
        type(obj).__realm_name__,
        type(obj),
        None,
        (),
        obj._rp_key,
        callback,
        _loop(),
        realm._version,
        raw,
    )
    return _register(realm, lis)


def _register(realm: Realm, lis: _Listener) -> ListenerToken:
    notifier = realm._shared.get_notifier()
    token = ListenerToken(notifier, lis, weakref.ref(realm))
    realm._tokens.append(token)
    notifier.add(lis)
    return token
