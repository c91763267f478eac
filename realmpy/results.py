"""Live query results (the index planner that feeds them is :mod:`realmpy.planner`).

Why lazy and cached by version: a ``Results`` is cheap to create and is
re-evaluated only when the realm it belongs to has moved (a commit here or in
another process, see :mod:`realmpy.realm`); between versions, ``len()``,
indexing and iteration reuse one evaluation.  An iteration takes the list
computed when it starts, so it never changes under the loop.  Results of a
frozen realm never change at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from realmpy._native import iter_objects as _iter_objects
from realmpy.hooks import add_listener
from realmpy.schema import Object

if TYPE_CHECKING:
    import realmpy.query as _query
    from realmpy.notifier import ListenerToken, ResultsChange
    from realmpy.realm import Realm

__all__ = ["Results"]

T = TypeVar("T", bound=Object)


class Results(Generic[T]):
    """Objects of one class matching a query, in the realm's current version."""

    def __init__(
        self,
        realm: Realm,
        cls: type[T],
        query: _query.Query | None,
        args: tuple[Any, ...],
    ) -> None:
        self._realm = realm
        self._cls = cls
        self._name = cls.__realm_name__
        self._query = query
        self._args = args
        # (stamp, rows): (key, full positional record, or None if not read)
        self._cache: tuple[int, list[tuple[bytes, list[Any] | None]]] | None = None

    # -- evaluation -----------------------------------------------------------

    def _rows(self) -> list[tuple[bytes, list[Any] | None]]:
        realm = self._realm
        realm._read()
        cache = self._cache
        if cache is not None and cache[0] == realm._stamp:
            return cache[1]
        rows = realm._evaluate(self._name, self._query, self._args)
        self._cache = (realm._stamp, rows)
        return rows

    def _obj(self, row: tuple[bytes, list[Any] | None]) -> T:
        # Rows were decoded at the stamp of the cache (the current one, right
        # after _rows()); an object made from them caches its record with it.
        cache = self._cache
        stamp = cache[0] if cache is not None else -1
        obj: T = self._realm._make(self._name, row[0], row[1], stamp)
        return obj

    def _count(self) -> int | None:
        """The number of results without evaluating them, where the engine
        knows it: every object of the class is the table's key count, O(1)."""
        if self._query is not None:
            return None
        cache = self._cache
        txn = self._realm._read()
        if cache is not None and cache[0] == self._realm._stamp:
            return len(cache[1])
        return txn.count(self._realm._info[self._name].table)

    def __len__(self) -> int:
        n = self._count()
        return len(self._rows()) if n is None else n

    def __bool__(self) -> bool:
        n = self._count()
        return bool(self._rows()) if n is None else n > 0

    def __iter__(self) -> Iterator[T]:
        rows = self._rows()  # fixed for the whole iteration
        cache = self._cache
        stamp = cache[0] if cache is not None else -1
        realm = self._realm
        # Each object caches its record with the stamp the rows were read
        # at: if the realm moves on during the loop (a write, an advance),
        # the object re-reads its record instead of showing a stale one.
        # Objects are made one at a time as the loop asks for them (in C:
        # cls.__new__(cls) and the entries _rp_store, _rp_key, _rp_cache).
        cls: Any = realm._models[self._name]
        it: Iterator[T] = _iter_objects(cls, realm, rows, stamp, realm._info[self._name].pos)
        return it

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        rows = self._rows()
        if isinstance(index, slice):
            return [self._obj(r) for r in rows[index]]
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"Results indices are int or slice, not {type(index).__name__}")
        return self._obj(rows[index])

    def __contains__(self, obj: object) -> bool:
        if not isinstance(obj, Object) or obj._rp_store is None:
            return False
        return any(k == obj._rp_key for k, _ in self._rows()) and (
            type(obj).__realm_name__ == self._name
        )

    def first(self, default: T | None = None) -> T | None:
        """The first object, or ``default`` if there is none."""
        rows = self._rows()
        return self._obj(rows[0]) if rows else default

    def last(self, default: T | None = None) -> T | None:
        """The last object, or ``default`` if there is none."""
        rows = self._rows()
        return self._obj(rows[-1]) if rows else default

    def query(self, text: str, *args: Any) -> Results[T]:
        """Narrow these results with another query (``AND``-ed)."""
        if self._query is None:
            return self._realm.query(self._cls, text, *args)
        import realmpy.query as _query  # loaded already: self._query is one

        inner = _query.parse(_query.with_key_path_args(text, args))
        shift = len(self._args)
        shifted = _shift_args(inner.predicate, shift)
        combined_text = f"({self._query.predicate}) AND ({shifted})"
        descriptors = " ".join(str(d) for d in self._query.descriptors + inner.descriptors)
        return self._realm.query(
            self._cls, f"{combined_text} {descriptors}".strip(), *self._args, *args
        )

    def filter(self, text: str, *args: Any) -> Results[T]:
        """Realm's ``Results.query()`` / ``filtered()``: these results narrowed
        by another query (``AND``-ed), a new live Results; same as
        :meth:`query`."""
        return self.query(text, *args)

    def sort(self, key_path: str, descending: bool = False) -> Results[T]:
        """A new live Results sorted by ``key_path`` (``"name"``,
        ``"owner.age"``).  The new sort takes precedence: sorting by ``age``
        and then by ``name`` orders by name, ages breaking ties (as
        ``SORT(age) SORT(name)`` does)."""
        if not isinstance(descending, bool):
            raise TypeError(f"descending is a bool, not {type(descending).__name__}")
        (path,) = _key_paths("sort", (key_path,))
        return self._then(f"SORT({path} {'DESC' if descending else 'ASC'})")

    def distinct(self, *key_paths: str) -> Results[T]:
        """A new live Results keeping the first object of each distinct
        value (tuple) of ``key_paths``, in the current order."""
        if not key_paths:
            raise TypeError("distinct() needs at least one key path")
        return self._then(f"DISTINCT({', '.join(_key_paths('distinct', key_paths))})")

    def _then(self, descriptor: str) -> Results[T]:
        """These results with one more descriptor, applied after theirs."""
        if self._query is None:
            return self._realm.query(self._cls, f"TRUEPREDICATE {descriptor}")
        done = " ".join(str(d) for d in self._query.descriptors)
        return self._realm.query(
            self._cls, f"({self._query.predicate}) {done} {descriptor}", *self._args
        )

    @property
    def realm(self) -> Realm:
        return self._realm

    @property
    def is_frozen(self) -> bool:
        return self._realm.is_frozen

    @property
    def is_valid(self) -> bool:
        return not self._realm.is_closed

    def freeze(self) -> Results[T]:
        """The same query over a frozen realm: never changes."""
        return Results(self._realm.freeze(), self._cls, self._query, self._args)

    def add_listener(
        self, callback: Callable[[Results[T], ResultsChange], None], *, initial: bool = True
    ) -> ListenerToken:
        """Call ``callback(results, changes)`` once with the initial results
        (``changes.is_initial``; skipped with ``initial=False``), then after
        each version that changes these results.  See
        :mod:`realmpy.notifier` for where it runs."""
        token: ListenerToken = add_listener("results", self, callback, initial)
        return token

    def __repr__(self) -> str:
        q = f" {self._query}" if self._query is not None else ""
        return f"<Results {self._name}{q}>"


def _key_paths(method: str, key_paths: tuple[str, ...]) -> list[str]:
    """Each of ``key_paths`` checked to be one key path (not a fragment of
    query text) and rendered as the parser reads it."""
    import realmpy.query as _query  # the query compiler loads at the first query

    out = []
    for text in key_paths:
        if not isinstance(text, str):
            raise TypeError(f"{method}() takes key paths as str, not {type(text).__name__}")
        try:
            (d,) = _query.parse(f"TRUEPREDICATE DISTINCT({text})").descriptors
        except (_query.QuerySyntaxError, ValueError):
            d = None
        if not isinstance(d, _query.Distinct) or len(d.paths) != 1:
            raise _query.QuerySyntaxError(
                f"{method}(): {text!r} is not a key path (write a property name or "
                "a dotted path such as 'owner.name')",
                text,
                0,
            )
        out.append(str(d.paths[0]))
    return out


def _shift_args(node: _query.Node, shift: int) -> _query.Node:
    """Renumber ``$n`` so two queries' arguments can be concatenated."""
    import dataclasses

    import realmpy.query as _query

    if isinstance(node, _query.Arg):
        return _query.Arg(node.index + shift)
    if isinstance(node, _query.KeyPath):  # ``dict[$0]``
        return _query.KeyPath(
            tuple(
                _query.ArgKey(f"${p.arg_index + shift}") if isinstance(p, _query.ArgKey) else p
                for p in node.parts
            )
        )
    data: Any = node  # every Node subclass is a frozen dataclass
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(data):
        v = getattr(data, f.name)
        if isinstance(v, _query.Node):
            changes[f.name] = _shift_args(v, shift)
        elif isinstance(v, tuple) and v and isinstance(v[0], _query.Node):
            changes[f.name] = tuple(_shift_args(x, shift) for x in v)
    result: _query.Node = dataclasses.replace(data, **changes)
    return result
