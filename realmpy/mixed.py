"""Mixed values (Realm's ``RealmValue``): what a ``Mixed`` property holds.

A property annotated :data:`Mixed` (or ``typing.Any``) holds ``None``, a
bool, an int (64-bit), a float, a str, bytes, an aware datetime, a Decimal,
an ObjectId, a UUID, a link to an object of *any* top-level class, or a
nested list / dictionary (str keys) of such values (Realm's nested
collections).  ``list[Mixed]``, ``dict[str, Mixed]`` and ``set[Mixed]``
(no nested collections: they are unhashable) hold them as elements.

Why a module of its own: validation and the stored form of mixed values
live here; their encoding is :mod:`realmpy.codec`'s (:class:`MixedLink`)
and the names of their types in ``@type`` queries are
:mod:`realmpy.query.typeof`'s.

Stored form: the value itself, msgpack keeping int, float, bool, str and
bytes apart and the extension types keeping datetime, Decimal, ObjectId
and UUID apart, so a value reads back with its Python type; a link is a
:class:`~realmpy.codec.MixedLink` (class name and encoded key).  A link
whose target was deleted reads as ``None`` (as Realm nulls it): reads
resolve links when they happen, so no write has to find mixed links.
Nested lists and dictionaries read from a managed object are copies
(:class:`NestedValueList` / :class:`NestedValueDict`) that refuse to be
changed in place: Realm's nested collections are live, realmpy's are
values, so ``note.value.append(1)`` raising is what keeps it from silently
changing nothing.  Change one by assigning the property again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, TypeAlias

from realmpy._native import ModelBase
from realmpy.codec import MixedLink
from realmpy.errors import MixedValueError
from realmpy.objectid import ObjectId
from realmpy.stdtypes import is_datetime, is_decimal, is_uuid

__all__ = [
    "MAX_MIXED_DEPTH",
    "Mixed",
    "NestedValueDict",
    "NestedValueList",
    "from_stored",
    "has_links",
    "to_stored",
    "validate",
]

Mixed: TypeAlias = Any
"""The annotation of a mixed property: ``tag: Mixed = None``.  An alias of
``typing.Any`` (type checkers accept any value; realmpy checks it when it
is assigned), so ``tag: Any`` declares the same property."""

MAX_MIXED_DEPTH: Final = 100
"""Deepest nesting of lists and dictionaries in one mixed value (the
walks over a value recurse once per level)."""

_INT_MIN: Final = -(1 << 63)
_INT_MAX: Final = (1 << 63) - 1


_IN_PLACE_HINT: Final = (
    "a list or dictionary held in a mixed property is a copy of the stored value "
    "and cannot be changed in place: build the new value and assign the property "
    "again (obj.prop = new_value) inside a write"
)


def _refuse(*_: Any, **__: Any) -> Any:
    raise MixedValueError(_IN_PLACE_HINT)


class NestedValueList(list[Any]):
    """A list read from a mixed property: a read-only copy (see the module).
    Copy it (``list(v)``) to build a changed value."""

    __slots__ = ()
    append = extend = insert = remove = pop = clear = sort = reverse = _refuse
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse

    def __reduce__(self) -> tuple[Any, ...]:  # copy, deepcopy, pickle: a plain list
        return (list, (list(self),))


class NestedValueDict(dict[str, Any]):
    """A dictionary read from a mixed property: a read-only copy (see the
    module).  Copy it (``dict(v)``) to build a changed value."""

    __slots__ = ()
    pop = popitem = clear = update = setdefault = _refuse
    __setitem__ = __delitem__ = __ior__ = _refuse

    def __reduce__(self) -> tuple[Any, ...]:  # copy, deepcopy, pickle: a plain dict
        return (dict, (dict(self),))


def validate(owner: str, value: Any, *, nested: bool = True, depth: int = 0) -> Any:
    """``value`` as a mixed property of ``owner`` (``"Class.prop"``, for
    messages) stores it: bytes-like as bytes, Counters as ints, tuples as
    lists, mappings as dicts.  ``nested=False`` (a set's elements): no
    lists or dictionaries.  Raises :class:`MixedValueError`."""
    t = type(value)
    if t in (str, float, bool, ObjectId) or value is None:
        return value
    if t is int or (isinstance(value, int) and not isinstance(value, bool)):
        if not _INT_MIN <= value <= _INT_MAX:
            raise _bad(owner, value, "an int beyond 64 bits")
        return int(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if is_datetime(value):
        if value.tzinfo is None or value.utcoffset() is None:
            raise _bad(owner, value, "a naive datetime: give it a tzinfo")
        return value
    if isinstance(value, (str, float, ObjectId)) or is_decimal(value) or is_uuid(value):
        return value
    if isinstance(value, ModelBase):
        described = type(value)._rp_describe()  # type: ignore[attr-defined]
        if described is None or described.embedded:
            raise _bad(owner, value, "an embedded object cannot be a mixed value: link an object")
        return value
    if isinstance(value, (list, tuple, Mapping)):
        if not nested:
            raise _bad(owner, value, "a set cannot hold lists or dictionaries")
        if depth >= MAX_MIXED_DEPTH:
            raise _bad(owner, value, f"nested deeper than {MAX_MIXED_DEPTH} levels")
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    raise _bad(owner, value, f"dictionary key {k!r:.40} is not a str")
                out[k] = validate(owner, v, depth=depth + 1)
            return out
        return [validate(owner, v, depth=depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        raise _bad(
            owner, value, "a set cannot be a mixed value: use a list, or a set[Mixed] property"
        )
    raise _bad(owner, value)


def _bad(owner: str, value: Any, why: str = "") -> MixedValueError:
    extra = f" ({why})" if why else ""
    return MixedValueError(
        f"{owner} is Mixed: it holds None, bool, int, float, str, bytes, an aware "
        "datetime, Decimal, ObjectId, UUID, an object, or a list/dict of those; got "
        f"{type(value).__name__} {value!r:.60}{extra}"
    )


def to_stored(value: Any, link: Callable[[Any], MixedLink]) -> Any:
    """A validated mixed value as a record stores it: each object becomes
    ``link(obj)`` (the realm adds an unmanaged one and returns its
    :class:`MixedLink`)."""
    if isinstance(value, ModelBase):
        return link(value)
    t = type(value)
    if t is list:
        return [to_stored(v, link) for v in value]
    if t is dict:
        return {k: to_stored(v, link) for k, v in value.items()}
    return value


def has_links(stored: Any) -> bool:
    """Whether a stored mixed value holds a link (reads must resolve it)."""
    t = type(stored)
    if t is MixedLink:
        return True
    if t is list:
        return any(map(has_links, stored))
    if t is dict:
        return any(map(has_links, stored.values()))
    return False


def from_stored(
    stored: Any,
    follow: Callable[[MixedLink], Any],
    as_list: Callable[[list[Any]], Any] = list,
    as_dict: Callable[[dict[str, Any]], Any] = dict,
) -> Any:
    """A stored mixed value as a read returns it: each link is
    ``follow(link)`` (the object, or None if it was deleted); lists and
    dictionaries are fresh copies, made by ``as_list`` / ``as_dict``."""
    t = type(stored)
    if t is MixedLink:
        return follow(stored)
    if t is list:
        return as_list([from_stored(v, follow, as_list, as_dict) for v in stored])
    if t is dict:
        return as_dict({k: from_stored(v, follow, as_list, as_dict) for k, v in stored.items()})
    return stored
