"""Change notifications: one notifier thread per file and process.

Why a thread blocked on the shared version counter: a commit in *any*
process bumps the counter in shared memory and wakes the futex, so one
``env.wait_for_change`` call per file and process hears every commit, local
or remote, at no CPU cost while idle; nothing polls.

For each new version the notifier opens one read snapshot, brings each
listener's query (or object) up to it, diffs it against what that listener
saw last, and delivers a change set.  A results listener costs what the
commits changed, not what its table holds, where the commits' change records
say what that was (:mod:`realmpy.changelog`, "Results listeners that cost
what a commit changed" below); otherwise its query is re-run.  Delivery:

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
has ``is_deleted`` and the names of changed ``properties``.  Listeners on a
managed list, set or dictionary property get a :class:`ListChange`,
:class:`SetChange` or :class:`DictChange` (see their docstrings), computed
by the same pass.

The initial call: as in Realm's SDKs, the first call after ``add_listener``
reports the state as it is when the call is made, with an empty change set
whose ``is_initial`` is true; every later call reports the changes since the
previous one.  It is delivered like every other call (on the loop once it
runs, or on the notifier thread with frozen results at the version the
notifier reads), so a callback can build its view from its calls alone.  An
object deleted before its initial call gets the deletion as its first call.  ``add_listener(callback, initial=False)`` skips
it: the first call then reports the first change after registration.

Why two threads: the *watcher* sleeps on the shared version counter (a
futex only a commit can wake); the *processor* sleeps on a local condition
that both the watcher and a registration wanting an initial call can
signal, so an initial call needs no commit and no polling.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import realmpy.changelog as _changelog
import realmpy.codec as codec
from realmpy.errors import ClosedError, StorageError
from realmpy.hooks import Listenable, register_listeners
from realmpy.layout import TABLE_PREFIX, table_name
from realmpy.results import Results
from realmpy.storage import Environment

if TYPE_CHECKING:
    import asyncio

    from realmpy.realm import Realm
    from realmpy.schema import Object

__all__ = [
    "DictChange",
    "ListChange",
    "ListenerToken",
    "Notifier",
    "ObjectChange",
    "ResultsChange",
    "SetChange",
    "add_collection_listener",
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
    #: True for the first call after ``add_listener`` (the initial state; the
    #: change fields are then empty).
    is_initial: bool = False

    @property
    def is_empty(self) -> bool:
        """True if nothing changed (the initial call is empty too)."""
        return not (self.inserted or self.deleted or self.modified or self.moved or self.is_cleared)


_UNCHANGED: ResultsChange = ResultsChange()


@dataclass(frozen=True)
class ObjectChange:
    """What changed in one object between two versions."""

    object: Any
    is_deleted: bool = False
    properties: tuple[str, ...] = ()
    #: True for the first call after ``add_listener`` (no property changed).
    is_initial: bool = False


@dataclass(frozen=True)
class ListChange(ResultsChange):
    """What changed in a managed ``list`` property between two versions.

    The index fields mean what they mean for :class:`ResultsChange`, in the
    list as it reads (links to deleted objects are skipped, as iteration
    does).  An element of a list of links is *modified* when the object it
    links to changed; an element of any other list is a value, so replacing
    it is a deletion and an insertion.  ``is_deleted``: the object owning
    the list was deleted (the callback then gets ``None`` for the list).
    """

    is_deleted: bool = False

    @property
    def is_empty(self) -> bool:
        return super().is_empty and not self.is_deleted


class _CollectionChange:
    """``is_empty`` of SetChange and DictChange (whose fields are counts
    and key tuples: both false when nothing changed)."""

    inserted: Any
    deleted: Any
    modified: Any
    is_cleared: bool
    is_deleted: bool

    @property
    def is_empty(self) -> bool:
        return not (
            self.inserted or self.deleted or self.modified or self.is_cleared or self.is_deleted
        )


@dataclass(frozen=True)
class SetChange(_CollectionChange):
    """What changed in a managed ``set`` property between two versions.

    Sets have no order, so, as Realm's ``SetChangeSet``, this counts:
    ``inserted`` and ``deleted`` elements, and ``modified`` elements of a
    set of links whose object changed.  ``is_deleted``: the owner object
    was deleted (the callback then gets ``None`` for the set).
    """

    inserted: int = 0
    deleted: int = 0
    modified: int = 0
    is_cleared: bool = False
    is_deleted: bool = False
    is_initial: bool = False


@dataclass(frozen=True)
class DictChange(_CollectionChange):
    """What changed in a managed ``dict`` property between two versions:
    the keys ``inserted``, ``deleted`` and ``modified`` (a new value, or a
    linked object that changed), each sorted.  ``is_deleted``: the owner
    object was deleted (the callback then gets ``None`` for the dict)."""

    inserted: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    is_cleared: bool = False
    is_deleted: bool = False
    is_initial: bool = False


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
    kind: str  # "results", "object" or "collection"
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
    prop: str = ""  # a collection listener's property
    collection: str = ""  # its kind: "list", "set" or "dict"
    # The notifier thread still owes this listener its initial call.
    initial: bool = False
    # A results listener whose query reads only its objects' own plain
    # properties (see _local); None until computed.
    local: bool | None = None


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
    """The notifier of one file in this process: a watcher thread and a
    processor thread (see the module docstring)."""

    def __init__(self, env: Environment) -> None:
        self._env = env
        self._lock = threading.Lock()
        # Signalled by the watcher (a new version), by a registration owing
        # an initial call, and by stop().
        self._wake = threading.Condition(self._lock)
        self._listeners: list[_Listener] = []
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._processed = env.version
        self._seen = self._processed  # newest version the watcher reported
        self._kicked = False  # an initial call is owed
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def processed_version(self) -> int:
        return self._processed

    def add(self, listener: _Listener) -> None:
        with self._wake:
            self._listeners.append(listener)
            if listener.initial:
                self._kicked = True
                self._wake.notify()
            if self._thread is None:
                self._processed = max(self._processed, listener.version)
                self._seen = self._processed
                name = f"realmpy-notifier:{self._env.path}"
                self._thread = threading.Thread(target=self._run, name=name, daemon=True)
                self._thread.start()
                watcher = threading.Thread(target=self._watch, name=name + ":watch", daemon=True)
                watcher.start()

    def remove(self, listener: _Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def stop(self) -> None:
        """Stop the processor now; the watcher stops when the environment
        closes."""
        with self._wake:
            self._stopping = True
            self._wake.notify()

    async def wait_processed(self, version: int, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until the notifier has handled ``version`` (or stopped)."""
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._processed >= version or self._thread is None:
                return
            self._waiters.append((version, loop, fut))
        await fut

    def _watch(self) -> None:
        """Sleep on the shared version counter; report each new version."""
        last = self._seen
        while not self._stopping:
            try:
                current = self._env.wait_for_change(last, timeout=None)
            except ClosedError:
                break
            except StorageError as e:
                # The lock file was deleted, replaced or truncated, or a dead
                # writer's commit cannot be settled: no notification can be
                # trusted any more (reads and writes raise the same error).
                import logging  # here: importing it costs every process ~3 ms

                logging.getLogger("realmpy.notifier").warning(
                    "change notifications stopped for %s: %s", self._env.path, e
                )
                break
            if current == last:
                continue
            last = current
            with self._wake:
                self._seen = current
                self._wake.notify()
        with self._wake:
            self._stopping = True
            self._wake.notify()

    def _run(self) -> None:
        """Compute and deliver change sets whenever there is something new."""
        while True:
            with self._wake:
                while not self._stopping and not self._kicked and self._seen <= self._processed:
                    self._wake.wait()
                if self._stopping:
                    break
                self._kicked = False
            try:
                self._process()
            except ClosedError:
                break
            except Exception:  # a bad listener must not kill notifications
                import traceback

                traceback.print_exc()
                with self._lock:  # do not retry the failing version in a loop
                    self._processed = max(self._processed, self._seen)
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
        with self._lock:
            listeners = [lis for lis in self._listeners if lis.active]
        if not any(lis.realm_ref() is not None for lis in listeners):
            self._processed = self._env.version
            self._release_waiters()
            return
        snap = self._env.read()
        version = snap.version
        # One frozen realm per schema the listeners were registered with
        # (realms of one file may open it with different model lists), all
        # on the one snapshot of this version.
        frozens: dict[int, Realm] = {}
        # What the versions after each listener's changed (realmpy.changelog),
        # by the version the listener is at; None: unknown.
        changes: dict[int, _changelog.Changes | None] = {}
        try:
            for lis in listeners:
                realm = lis.realm_ref()
                if realm is None or not lis.active:
                    continue
                if not lis.initial and version <= lis.version:
                    continue
                changed = None
                if lis.kind == "results" and not lis.initial:
                    if lis.version not in changes:
                        changes[lis.version] = _changelog.read(snap, lis.version, version)
                    changed = changes[lis.version]
                    if changed is not None and _untouched(realm, lis, changed):
                        lis.version = version  # the commits changed nothing it reads
                        continue
                frozen = frozens.get(id(realm._info))
                if frozen is None:
                    frozen = frozens[id(realm._info)] = type(realm)._frozen_at(realm, snap)
                initial, lis.initial = lis.initial, False
                self._deliver(frozen, lis, version, initial, changed)
        finally:
            for frozen in frozens.values():
                frozen.close()  # frozen results are valid during the callback
            snap.end()
        self._processed = version
        self._release_waiters()

    def _deliver(
        self,
        frozen: Realm,
        lis: _Listener,
        version: int,
        initial: bool,
        changed: _changelog.Changes | None = None,
    ) -> None:
        """Compute ``lis``'s change at ``version`` (or its initial state)
        and call it, or post the call to its loop.  ``changed``: what the
        versions since the listener's changed, if known."""
        if lis.kind == "results":
            patched = None
            if changed is not None and not initial and lis.local:
                patched = _patch(frozen, lis, changed.get(frozen._info[lis.cls_name].table))
            if patched is not None:
                state, change = patched
            else:
                state = frozen._evaluate_raw(lis.cls_name, lis.query, lis.args)
                change = ResultsChange(is_initial=True) if initial else diff_rows(lis.state, state)
            lis.state = state
            lis.version = version
            if change.is_empty and not initial:
                return
            if lis.loop is None:
                _call(lis.callback, _frozen_results(frozen, lis, state), change)
            else:
                self._post(lis, lambda: _live_results(lis, change))
        elif lis.kind == "object":
            raw = frozen._reader().get(table_name(lis.cls_name), lis.key)
            old = lis.state
            lis.state = raw
            lis.version = version
            if raw == old and not initial:
                return
            deleted = raw is None
            props: tuple[str, ...] = ()
            if raw is not None and not initial:
                names = frozen._info[lis.cls_name].names
                a = codec.record_to_dict(old, names) if old is not None else {}
                b = codec.record_to_dict(raw, names)
                props = tuple(n for n in b if a.get(n) != b.get(n) or n not in a)
            first = initial and not deleted  # a deletion is reported as one
            if lis.loop is None:
                obj = None if deleted else frozen._make(lis.cls_name, lis.key)
                _call(lis.callback, ObjectChange(obj, deleted, props, first))
            else:
                self._post(lis, lambda: _live_object(lis, deleted, props, first))
        else:
            new = collection_state(frozen, lis.cls_name, lis.key, lis.prop)
            coll_change = collection_change(lis.collection, lis.state, new, initial)
            lis.state = new
            lis.version = version
            if coll_change is None:
                return
            if lis.loop is None:
                view = (
                    None if new is None else getattr(frozen._make(lis.cls_name, lis.key), lis.prop)
                )
                _call(lis.callback, view, coll_change)
            else:
                self._post(lis, lambda: _live_collection(lis, coll_change))

    def _post(self, lis: _Listener, deliver: Callable[[], None]) -> None:
        realm = lis.realm_ref()
        if realm is None or realm.is_closed or lis.loop is None:
            return

        def guarded() -> None:
            if lis.active:
                deliver()

        realm._post(guarded, lis.loop)


# ----------------------------------------------------------------------------
# Results listeners that cost what a commit changed
#
# A results listener's state is its matching objects' (key, raw record) in
# table order (unsorted results are in primary-key order, with or without
# an index: realmpy.planner).  When its query reads only its objects' own
# plain properties ("local"), an object's match depends on its own record
# alone, so after commits that changed the keys K of its class the new
# state is the old one with the objects of K re-read and re-matched, and
# the change set follows from where they were and are; a commit that did
# not change its class changes nothing.  Anything else (links, collections,
# sorting, a change record that is missing or says "any key") re-runs the
# query, as every commit used to.

_LOCAL_NODES = frozenset(
    {"Const", "Arg", "KeyPath", "ListExpr", "Comparison", "Between", "And", "Or", "Not"}
    | {"TruePredicate"}
)


def _local(realm: Realm, lis: _Listener) -> bool:
    """Whether ``lis``'s query reads only its objects' own plain properties,
    unsorted (only node kinds known to do so; anything else is not)."""
    import dataclasses

    from realmpy.classinfo import K_COUNTER, K_PLAIN

    q = lis.query
    if q is None:
        return True
    if q.descriptors:
        return False
    kinds = realm._info[lis.cls_name].kinds
    todo = [q.predicate]
    while todo:
        node = todo.pop()
        name = type(node).__name__
        if name not in _LOCAL_NODES or not dataclasses.is_dataclass(node):
            return False
        if name == "KeyPath":
            parts: tuple[str, ...] = getattr(node, "parts", ())
            if len(parts) != 1 or kinds.get(parts[0]) not in (K_PLAIN, K_COUNTER):
                return False
            continue
        for f in dataclasses.fields(node):
            v = getattr(node, f.name)
            items = v if isinstance(v, tuple) else (v,)
            todo.extend(x for x in items if dataclasses.is_dataclass(x))
    return True


def _untouched(realm: Realm, lis: _Listener, changed: _changelog.Changes) -> bool:
    """Whether commits that changed ``changed`` leave ``lis``'s results as
    they were: nothing of its class changed (local queries) or no object
    at all (the others: they may read other classes)."""
    if lis.local is None:
        lis.local = _local(realm, lis)
    if lis.local:
        return realm._info[lis.cls_name].table not in changed
    return not any(t.startswith(TABLE_PREFIX) for t in changed)


def _patch(
    frozen: Realm, lis: _Listener, keys: set[bytes] | None
) -> tuple[list[tuple[bytes, bytes]], ResultsChange] | None:
    """``lis``'s new state and change after commits that changed ``keys`` of
    its (local) query's class; None where a full re-run must decide."""
    import bisect

    from realmpy import execute

    if keys is None:
        return None
    old: list[tuple[bytes, bytes]] = lis.state
    try:
        info = frozen._info[lis.cls_name]
        ks = sorted(keys)
        raws = frozen._reader().get_many(info.table, ks)
        match = None if lis.query is None else execute.matcher(frozen, info, lis.query, lis.args)
        inserted: list[int] = []
        deleted: list[int] = []
        modified: list[int] = []
        new_modified: list[int] = []
        ops: list[tuple[int, bytes, bytes | None, bool]] = []  # (old index, key, raw, was)
        shift = 0  # objects inserted minus deleted before the current key
        for k, raw in zip(ks, raws, strict=True):
            i = bisect.bisect_left(old, k, key=_first)
            was = i < len(old) and old[i][0] == k
            now = raw is not None and (match is None or match(info.decode(raw)))
            if was and now:
                if old[i][1] != raw:
                    modified.append(i)
                    new_modified.append(i + shift)
                ops.append((i, k, raw, was))
            elif was:
                deleted.append(i)
                shift -= 1
                ops.append((i, k, None, was))
            elif now:
                inserted.append(i + shift)
                shift += 1
                ops.append((i, k, raw, was))
    except Exception:  # a damaged record: the full re-run reports it
        return None
    new = list(old)
    for i, k, raw, was in reversed(ops):  # from the end: indices before stay valid
        if raw is None:
            del new[i]
        elif was:
            new[i] = (k, raw)
        else:
            new.insert(i, (k, raw))
    if not (inserted or deleted or modified):
        return new, _UNCHANGED
    change = ResultsChange(
        tuple(inserted),
        tuple(deleted),
        tuple(modified),
        tuple(new_modified),
        (),
        bool(old) and not new,
    )
    return new, change


def _first(row: tuple[bytes, bytes]) -> bytes:
    return row[0]


# ----------------------------------------------------------------------------
# Collections: what a list, set or dict property holds at one version


def collection_state(realm: Realm, cls_name: str, key: bytes, prop_name: str) -> Any:
    """What the notifier diffs for a collection property, read in ``realm``'s
    current version; ``None`` if the owner object does not exist.

    Each element is (identity, value): identity is the element's encoding
    (a list numbers repeats, so that ``diff_rows`` sees unique keys); value
    is the linked object's record for links (so a change to it shows as a
    modification) and empty otherwise.  Links to deleted objects are left
    out of lists and sets and read as ``None`` in dicts, as the views do."""
    txn = realm._reader()
    info = realm._info[cls_name]
    raw = txn.get(info.table, key)
    if raw is None:
        return None
    prop = info.props[prop_name]
    stored = info.decode(raw)[info.pos[prop_name]]
    target = realm._info[prop.target].table if prop.type == "link" and prop.target else None
    pack = codec.pack_row

    def value(x: Any) -> bytes | None:
        if target is None or x is None:
            return b""
        return txn.get(target, bytes(x))  # None: a deleted object

    if prop.collection == "dict":
        out: dict[str, tuple[bytes, bytes]] = {}
        for k, x in stored.items():
            v = value(x)
            out[k] = (pack([x]), v) if v is not None else (pack([None]), b"")
        return out
    if prop.collection == "set":
        members: dict[bytes, bytes] = {}
        for x in stored:
            v = value(x)
            if v is not None:
                members[pack([x])] = v
        return members
    rows: list[tuple[bytes, bytes]] = []
    repeats: dict[bytes, int] = {}
    for x in stored:
        v = value(x)
        if v is None:
            continue
        ident = pack([x])
        n = repeats.get(ident, 0)
        repeats[ident] = n + 1
        # msgpack is self-delimiting: ident + count is unique
        rows.append((ident + str(n).encode(), v))
    return rows


_CHANGE_CLASSES: dict[str, type[ListChange | SetChange | DictChange]] = {
    "list": ListChange,
    "set": SetChange,
    "dict": DictChange,
}


def collection_change(
    kind: str, old: Any, new: Any, initial: bool = False
) -> ListChange | SetChange | DictChange | None:
    """The change set of a ``kind`` collection from state ``old`` to ``new``
    (see :func:`collection_state`); None if nothing changed (an initial
    call always has one)."""
    if new is None:
        if old is None and not initial:
            return None
        return _CHANGE_CLASSES[kind](is_deleted=True)
    if initial:
        return _CHANGE_CLASSES[kind](is_initial=True)
    change: ListChange | SetChange | DictChange
    if kind == "list":
        d = diff_rows(old or [], new)
        change = ListChange(
            d.inserted, d.deleted, d.modified, d.new_modified, d.moved, d.is_cleared
        )
    elif kind == "set":
        a, b = old or {}, new
        change = SetChange(
            inserted=sum(1 for k in b if k not in a),
            deleted=sum(1 for k in a if k not in b),
            modified=sum(1 for k, v in b.items() if k in a and a[k] != v),
            is_cleared=bool(a) and not b,
        )
    else:
        a, b = old or {}, new
        change = DictChange(
            inserted=tuple(sorted(k for k in b if k not in a)),
            deleted=tuple(sorted(k for k in a if k not in b)),
            modified=tuple(sorted(k for k, v in b.items() if k in a and a[k] != v)),
            is_cleared=bool(a) and not b,
        )
    return None if change.is_empty else change


# ----------------------------------------------------------------------------
# Delivery


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _call(callback: Callable[..., None], *args: Any) -> None:
    try:
        callback(*args)
    except Exception:
        import traceback

        traceback.print_exc()


def _frozen_results(frozen: Realm, lis: _Listener, state: list[tuple[bytes, bytes]]) -> Any:
    return _StateResults(frozen, lis, state)


class _StateResults(Results[Any]):
    """The frozen results a results listener's callback receives: the
    listener's state, its rows listed (objects decode their record on first
    read) only when the callback reads them, and its length without them;
    so a callback that looks only at the change set costs nothing per
    result (listing 50,000 rows took ~5 ms of every commit at 5M objects)."""

    def __init__(self, frozen: Realm, lis: _Listener, state: list[tuple[bytes, bytes]]) -> None:
        super().__init__(frozen, lis.cls, lis.query, lis.args)
        self._state = state

    def _rows(self) -> list[tuple[bytes, list[Any] | None]]:
        if self._cache is None:
            self._cache = (self._realm._stamp, [(k, None) for k, _ in self._state])
        return super()._rows()

    def _count(self) -> int | None:
        self._realm._read()  # the checks (closed, thread)
        return len(self._state)


def _live_results(lis: _Listener, change: ResultsChange) -> None:
    realm = lis.realm_ref()
    if realm is None or realm.is_closed:
        return
    _call(lis.callback, Results(realm, lis.cls, lis.query, lis.args), change)


def _live_object(lis: _Listener, deleted: bool, props: tuple[str, ...], initial: bool) -> None:
    realm = lis.realm_ref()
    if realm is None or realm.is_closed:
        return
    obj = None if deleted else realm._make(lis.cls_name, lis.key)
    _call(lis.callback, ObjectChange(obj, deleted, props, initial))


def _live_collection(lis: _Listener, change: ListChange | SetChange | DictChange) -> None:
    from realmpy.errors import InvalidObjectError

    realm = lis.realm_ref()
    if realm is None or realm.is_closed:
        return
    view = None
    if not change.is_deleted:
        try:
            view = getattr(realm._make(lis.cls_name, lis.key), lis.prop)
        except InvalidObjectError:
            return  # deleted since: the call reporting it follows
    _call(lis.callback, view, change)


# ----------------------------------------------------------------------------
# Registration


def _loop() -> asyncio.AbstractEventLoop | None:
    # No loop runs in a process that never imported asyncio (and importing
    # it here would cost every process that registers a listener ~20 ms).
    aio = sys.modules.get("asyncio")
    if aio is None:
        return None
    try:
        loop: asyncio.AbstractEventLoop = aio.get_running_loop()
        return loop
    except RuntimeError:
        return None


def add_results_listener(
    results: Results[Any], callback: Callable[..., None], initial: bool = True
) -> ListenerToken:
    realm = results._realm
    realm._check()
    if realm.is_frozen:
        from realmpy.errors import FrozenRealmError

        raise FrozenRealmError("frozen results never change: nothing to listen to")
    realm._read()  # auto-refresh, then the state the listener starts from
    loop = _loop()
    # An initial call made by the notifier evaluates the query itself (and
    # diffs from there): no need to evaluate it here too.
    state: list[tuple[bytes, bytes]] = (
        []
        if initial and loop is None
        else realm._evaluate_raw(results._name, results._query, results._args)
    )
    lis = _Listener(
        "results",
        weakref.ref(realm),
        results._name,
        results._cls,
        results._query,
        results._args,
        b"",
        callback,
        loop,
        realm._version,
        state,
    )
    return _register(
        realm, lis, initial, lambda: _live_results(lis, ResultsChange(is_initial=True))
    )


def add_object_listener(
    obj: Object, callback: Callable[[ObjectChange], None], initial: bool = True
) -> ListenerToken:
    from realmpy.errors import InvalidObjectError

    store: Any = obj._rp_store
    if not isinstance(store, Listenable):
        raise InvalidObjectError("only objects managed by a realm can have listeners")
    realm = cast("Realm", store)
    _check_live(realm, "a frozen object never changes: nothing to listen to")
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
    return _register(realm, lis, initial, lambda: _live_object(lis, False, (), True))


def add_collection_listener(
    store: Any, owner: Any, prop: Any, callback: Callable[..., None], initial: bool = True
) -> ListenerToken:
    """A listener on the ``prop`` collection (a list, set or dict property)
    of the managed object ``owner`` whose store is ``store``."""
    from realmpy.errors import InvalidObjectError

    if not isinstance(store, Listenable):
        raise InvalidObjectError(
            f"{prop.name} belongs to an embedded object: listen to the object that "
            "owns it (add_listener on the top-level object reports every change)"
        )
    store = cast("Realm", store)
    _check_live(store, f"a frozen {prop.collection} never changes: nothing to listen to")
    store._read()
    cls_name = type(owner).__realm_name__
    state = collection_state(store, cls_name, owner._rp_key, prop.name)
    if state is None:
        raise InvalidObjectError(f"the {cls_name} owning {prop.name} was deleted")
    lis = _Listener(
        "collection",
        weakref.ref(store),
        cls_name,
        type(owner),
        None,
        (),
        owner._rp_key,
        callback,
        _loop(),
        store._version,
        state,
        prop=prop.name,
        collection=prop.collection,
    )
    first = collection_change(lis.collection, None, state, initial=True)
    assert first is not None
    return _register(store, lis, initial, lambda: _live_collection(lis, first))


def _check_live(realm: Realm, frozen_message: str) -> None:
    realm._check()
    if realm.is_frozen:
        from realmpy.errors import FrozenRealmError

        raise FrozenRealmError(frozen_message)


def _register(
    realm: Realm, lis: _Listener, initial: bool, live_initial: Callable[[], None]
) -> ListenerToken:
    """Register ``lis``; with ``initial``, owe it its initial call: posted to
    its loop now (before any change can be), or made by the notifier
    thread."""
    notifier = realm._shared.get_notifier()
    token = ListenerToken(notifier, lis, weakref.ref(realm))
    realm._tokens.append(token)
    if initial:
        if lis.loop is None:
            lis.initial = True
        else:
            notifier._post(lis, live_initial)
    notifier.add(lis)
    return token


register_listeners(
    object=add_object_listener, collection=add_collection_listener, results=add_results_listener
)
