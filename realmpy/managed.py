"""Collections of managed objects: live ``list``, ``set`` and ``dict`` views.

Why views rather than copies: ``person.dogs.append(rex)`` must change the
stored object, like Realm's ``RealmList``.  Each view reads the property's
stored value from its owner's store on every access (so it follows
auto-refresh) and writes a whole new value back on every change (one record
put per change, inside the open write transaction).  ``add_listener``
reports their changes through the notifier (:mod:`realmpy.notifier`).
"""

from __future__ import annotations

from collections.abc import (
    Callable,
    Iterable,
    Iterator,
    MutableMapping,
    MutableSequence,
    MutableSet,
)
from typing import Any, overload

from realmpy.hooks import add_listener
from realmpy.schema import Property, _Model, validate_scalar

__all__ = ["ManagedDict", "ManagedList", "ManagedSet", "managed_collection"]


class _View:
    __slots__ = ("_owner", "_prop", "_store")

    def __init__(self, store: Any, owner: _Model, prop: Property) -> None:
        self._store = store
        self._owner = owner
        self._prop = prop

    def _raw(self) -> Any:
        return self._store.raw_get(self._owner, self._prop.name)

    def _put(self, raw: Any) -> None:
        self._store.raw_set(self._owner, self._prop.name, raw)

    def _in(self, value: Any) -> Any:
        self._store._require_write()
        v = validate_scalar(type(self._owner), self._prop, value)
        return self._store._elem_to_stored(self._prop, v)

    def _out(self, stored: Any, slot: Any) -> Any:
        return self._store._elem_to_py(self._owner, self._prop, stored, slot)

    def add_listener(self, callback: Callable[[Any, Any], None], *, initial: bool = True) -> Any:
        """Call ``callback(collection, changes)`` once with the collection as
        it is (``changes.is_initial``; skipped with ``initial=False``), then
        after each version that changes it: a
        :class:`~realmpy.notifier.ListChange`, ``SetChange`` or
        ``DictChange``.  When the owner object is deleted, ``collection`` is
        ``None`` and ``changes.is_deleted`` is true.  Runs where the other
        listeners run (see :mod:`realmpy.notifier`); returns a token with
        ``remove()``."""
        return add_listener("collection", self._store, self._owner, self._prop, callback, initial)


def _live_links(view: _View, raw: list[Any]) -> list[Any]:
    """Links whose target was deleted read as absent."""
    if view._prop.type != "link":
        return raw
    return [x for x in raw if view._out(x, None) is not None]


class ManagedList(_View, MutableSequence[Any]):
    """A managed ``list[T]`` property."""

    __slots__ = ()

    def _items(self) -> list[Any]:
        return _live_links(self, list(self._raw()))

    def __len__(self) -> int:
        return len(self._items())

    @overload
    def __getitem__(self, i: int) -> Any: ...

    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...

    def __getitem__(self, i: int | slice) -> Any:
        items = self._items()
        if isinstance(i, slice):
            idx = range(len(items))[i]
            return [self._out(items[j], j) for j in idx]
        if i < 0:
            i += len(items)
        if not 0 <= i < len(items):
            raise IndexError("list index out of range")
        return self._out(items[i], i)

    def __setitem__(self, i: Any, value: Any) -> None:
        items = self._items()
        if isinstance(i, slice):
            items[i] = [self._in(v) for v in value]
        else:
            items[i] = self._in(value)
        self._put(items)

    def __delitem__(self, i: int | slice) -> None:
        self._store._require_write()
        items = self._items()
        del items[i]
        self._put(items)

    def insert(self, index: int, value: Any) -> None:
        stored = self._in(value)
        items = self._items()
        items.insert(index, stored)
        self._put(items)

    def extend(self, values: Iterable[Any]) -> None:
        new = [self._in(v) for v in values]
        self._put(self._items() + new)

    def clear(self) -> None:
        self._store._require_write()
        self._put([])

    def __iter__(self) -> Iterator[Any]:
        items = self._items()
        for i, x in enumerate(items):
            yield self._out(x, i)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, ManagedList)):
            return list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"ManagedList({list(self)!r})"


class ManagedSet(_View, MutableSet[Any]):
    """A managed ``set[T]`` property."""

    __slots__ = ()

    def _items(self) -> list[Any]:
        return _live_links(self, list(self._raw()))

    def __contains__(self, value: object) -> bool:
        try:
            stored = self._store._elem_to_stored(
                self._prop, validate_scalar(type(self._owner), self._prop, value)
            )
        except (TypeError, ValueError):
            return False
        return stored in set(self._items())

    def __iter__(self) -> Iterator[Any]:
        for x in self._items():
            yield self._out(x, None)

    def __len__(self) -> int:
        return len(self._items())

    def add(self, value: Any) -> None:
        stored = self._in(value)
        items = set(self._items())
        if stored not in items:
            items.add(stored)
            self._put(items)

    def discard(self, value: Any) -> None:
        stored = self._in(value)
        items = set(self._items())
        if stored in items:
            items.discard(stored)
            self._put(items)

    def clear(self) -> None:
        self._store._require_write()
        self._put(set())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (set, frozenset, ManagedSet)):
            return set(self) == set(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ManagedSet({set(self)!r})"


class ManagedDict(_View, MutableMapping[str, Any]):
    """A managed ``dict[str, T]`` property."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        raw = self._raw()
        return self._out(raw[key], key)

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"dictionary keys are str, not {type(key).__name__}")
        stored = self._in(value)
        raw = dict(self._raw())
        raw[key] = stored
        self._put(raw)

    def __delitem__(self, key: str) -> None:
        self._store._require_write()
        raw = dict(self._raw())
        del raw[key]
        self._put(raw)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._raw()))

    def __len__(self) -> int:
        return len(self._raw())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (dict, ManagedDict)):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"ManagedDict({dict(self.items())!r})"


@overload
def managed_collection(value: list[Any]) -> ManagedList: ...


@overload
def managed_collection(value: set[Any]) -> ManagedSet: ...


@overload
def managed_collection(value: dict[str, Any]) -> ManagedDict: ...


def managed_collection(value: object) -> ManagedList | ManagedSet | ManagedDict:
    """``value`` (a collection property read from a managed object) as the
    live view it is at run time, typed as one.

    Why: models annotate ``dogs: list[Dog]``, so type checkers see a plain
    ``list`` and reject ``obj.dogs.add_listener(...)``;
    ``managed_collection(obj.dogs).add_listener(...)`` type-checks."""
    if isinstance(value, (ManagedList, ManagedSet, ManagedDict)):
        return value
    raise TypeError(
        f"a {type(value).__name__} is not a managed collection: read the list, set "
        "or dict property of an object managed by a realm (e.g. realm.find(...).dogs)"
    )
