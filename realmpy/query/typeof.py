"""``@type``: the type of a value as Realm's query language names it.

``prop.@type == 'int'``, ``prop.@type IN {'int', 'double'}``,
``prop.@type == 'numeric'``: the names are realm-core's (``TypeOfValue``),
case-insensitive, several per type (``'integer'``, ``'long'``...), and
some stand for several types (``'numeric'``: int, double and decimal;
``'collection'``: list or dictionary).  Reading ``@type`` gives a
:class:`TypeOf`, which equals every name that stands for its type.  An
``@type`` after a list, set or dictionary property types each element
(:class:`ElementTypes` marks that part once the query is bound to a
class); after any other value, the value itself (a mixed value holding a
list is a ``'list'``).
"""

from __future__ import annotations

import datetime as _dt
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from realmpy.objectid import ObjectId

__all__ = ["TYPE_NAMES", "TYPE_OF", "ElementTypes", "TypeOf", "is_type_name"]

TYPE_OF: Final = "@type"

# The kinds of values, as bits, named as Realm's ``@type`` names them
# (realm-core's TypeOfValue; names are case-insensitive).
_NULL, _INT, _BOOL, _STRING, _BINARY, _DATE, _DOUBLE, _DECIMAL = (1 << i for i in range(8))
_LINK, _OBJECTID, _UUID, _ARRAY, _OBJECT, _FLOAT = (1 << i for i in range(8, 14))
_NUMERIC: Final = _INT | _DOUBLE | _DECIMAL | _FLOAT

TYPE_NAMES: Final[Mapping[str, int]] = {
    "null": _NULL,
    **dict.fromkeys(("int", "integer", "int16", "int32", "int64", "short", "long"), _INT),
    **dict.fromkeys(("byte", "char"), _INT),
    **dict.fromkeys(("bool", "boolean"), _BOOL),
    "string": _STRING,
    **dict.fromkeys(("binary", "data", "bytearray", "byte[]", "bindata"), _BINARY),
    **dict.fromkeys(("date", "datetimeoffset", "timestamp"), _DATE),
    "float": _FLOAT,
    "double": _DOUBLE,
    **dict.fromkeys(("decimal", "decimal128"), _DECIMAL),
    **dict.fromkeys(("objectlink", "link"), _LINK),
    "objectid": _OBJECTID,
    **dict.fromkeys(("uuid", "guid"), _UUID),
    "numeric": _NUMERIC,
    **dict.fromkeys(("object", "dictionary"), _OBJECT),
    **dict.fromkeys(("array", "list"), _ARRAY),
    "collection": _ARRAY | _OBJECT,
}
"""Realm's ``@type`` names (case-insensitive) and the kinds each matches:
``'numeric'`` is int, double and decimal; ``'collection'`` a list or a
dictionary.  (``'float'`` is Realm's 32-bit float, which realmpy has not:
a Python float is a ``'double'``.)"""

# The canonical name of each kind (what ``prop.@type`` reads as).
_CANONICAL: Final = {
    _NULL: "null",
    _INT: "int",
    _BOOL: "bool",
    _STRING: "string",
    _BINARY: "binary",
    _DATE: "date",
    _DOUBLE: "double",
    _DECIMAL: "decimal",
    _LINK: "link",
    _OBJECTID: "objectid",
    _UUID: "uuid",
    _ARRAY: "list",
    _OBJECT: "dictionary",
}

_KIND_OF_TYPE: Final[Mapping[type, int]] = {
    type(None): _NULL,
    bool: _BOOL,
    int: _INT,
    float: _DOUBLE,
    Decimal: _DECIMAL,
    str: _STRING,
    bytes: _BINARY,
    _dt.datetime: _DATE,
    ObjectId: _OBJECTID,
    uuid.UUID: _UUID,
    list: _ARRAY,
    dict: _OBJECT,
}


def _kind(value: Any) -> int:
    k = _KIND_OF_TYPE.get(type(value))
    if k is not None:
        return k
    for t, kind in _KIND_OF_TYPE.items():
        if t is not type(None) and isinstance(value, t):
            return kind
    if isinstance(value, Mapping):
        return _OBJECT
    if isinstance(value, (list, tuple)):
        return _ARRAY
    return _LINK  # an object (or a query's bound record of one)


def is_type_name(name: Any) -> bool:
    """Whether ``name`` is one of Realm's ``@type`` names."""
    return isinstance(name, str) and name.lower() in TYPE_NAMES


class TypeOf:
    """The ``@type`` of one value: equal to each name (a str) that stands
    for its type, ``'int'`` and ``'numeric'`` alike; ``str()`` is its
    canonical name."""

    __slots__ = ("kind",)

    def __init__(self, value: Any) -> None:
        self.kind = _kind(value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return bool(TYPE_NAMES.get(other.lower(), 0) & self.kind)
        if isinstance(other, TypeOf):
            return self.kind == other.kind
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.kind)

    def __str__(self) -> str:
        return _CANONICAL[self.kind]

    def __repr__(self) -> str:
        return f"TypeOf({_CANONICAL[self.kind]!r})"


class ElementTypes(str):
    """The key path part ``@type`` known (from the schema) to follow a list,
    set or dictionary property: it types each element.  Binding to a class
    makes these; the parser makes plain ``"@type"`` parts."""

    __slots__ = ()
