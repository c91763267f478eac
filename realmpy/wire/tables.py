"""The synced schema on the wire (:class:`TableSpec`, :class:`FieldSpec`)
and the checks of a value against it (:func:`check_value`,
:func:`check_whole`, :func:`resolve_path` for key paths into embedded
objects and dictionaries)."""

from __future__ import annotations

import datetime as _dt
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from realmpy.objectid import ObjectId
from realmpy.schema import MAX_EMBEDDED_DEPTH
from realmpy.wire.errors import (
    InvalidOpError,
    MalformedMessage,
    UnknownFieldError,
    UnknownTableError,
    WrongTypeError,
)
from realmpy.wire.shapes import _field_name, _get, _map, _name, _str
from realmpy.wire.values import MixedLink

FIELD_TYPES: Final = frozenset(
    {
        "bool",
        "int",
        "float",
        "string",
        "binary",
        "timestamp",
        "decimal",
        "objectid",
        "uuid",
        "counter",
        "link",
        "embedded",
        "mixed",
    }
)
COLLECTIONS: Final = frozenset({"list", "set", "dict"})
PK_TYPES: Final = frozenset({"int", "string", "objectid", "uuid"})


@dataclass(frozen=True)
class FieldSpec:
    """One field: a base type, optional-ness, an optional collection, a link target."""

    type: str
    optional: bool = False
    collection: str | None = None
    target: str | None = None

    @classmethod
    def from_wire(cls, obj: object, what: str) -> FieldSpec:
        m = _map(obj, what)
        typ = _str(m, "type", what)
        if typ not in FIELD_TYPES:
            raise MalformedMessage(f"{what}: unknown type {typ!r}")
        optional = _get(m, "optional", bool, what, optional=True, default=False)
        coll = _str(m, "collection", what, optional=True)
        if coll is not None and coll not in COLLECTIONS:
            raise MalformedMessage(f"{what}: unsupported collection {coll!r}")
        target = _str(m, "target", what, optional=True)
        if (typ in ("link", "embedded")) != (target is not None):
            raise MalformedMessage(
                f"{what}: a link or embedded field needs a target table, other types none"
            )
        if typ == "counter" and coll is not None:
            raise MalformedMessage(f"{what}: a counter cannot be a collection")
        if typ == "embedded" and coll == "set":
            raise MalformedMessage(f"{what}: a set cannot hold embedded objects")
        return cls(typ, bool(optional), coll, target)

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "optional": self.optional,
            "collection": self.collection,
            "target": self.target,
        }


@dataclass(frozen=True)
class TableSpec:
    """One table: its primary-key field and every field (the key included).

    An ``embedded`` table (wire: ``embedded: true``, ``primary_key: nil``) has
    no primary key (``primary_key == ""``): its objects live inside a parent's
    ``embedded`` field and are merged as part of the parent.
    """

    primary_key: str
    fields: Mapping[str, FieldSpec]
    embedded: bool = False

    @classmethod
    def from_wire(cls, obj: object, what: str) -> TableSpec:
        m = _map(obj, what)
        embedded = _get(m, "embedded", bool, what, optional=True, default=False)
        fields_raw = _map(m.get("fields"), f"{what}.fields")
        if embedded:
            if m.get("primary_key") is not None:
                raise MalformedMessage(f"{what}: an embedded table has no primary key")
            if len(fields_raw) > 1024:
                raise MalformedMessage(f"{what}: too many fields")
            efields = {
                _field_name(k, f"{what} field"): FieldSpec.from_wire(v, f"{what}.{k}")
                for k, v in fields_raw.items()
            }
            return cls("", efields, True)
        pk = _name(m.get("primary_key"), f"{what}.primary_key")
        if len(fields_raw) > 1024:
            raise MalformedMessage(f"{what}: too many fields")
        fields = {
            _field_name(k, f"{what} field"): FieldSpec.from_wire(v, f"{what}.{k}")
            for k, v in fields_raw.items()
        }
        spec = fields.get(pk)
        if spec is None or spec.type not in PK_TYPES or spec.collection is not None:
            raise MalformedMessage(
                f"{what}: primary key {pk!r} must be a field of type {sorted(PK_TYPES)}"
            )
        return cls(pk, fields)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "primary_key": self.primary_key or None,
            "fields": {k: v.to_wire() for k, v in self.fields.items()},
        }
        if self.embedded:
            out["embedded"] = True
        return out


def _tables_from_wire(obj: object, what: str) -> dict[str, TableSpec]:
    m = _map(obj, what)
    if len(m) > 1024:
        raise MalformedMessage(f"{what}: too many tables")
    return {_name(k, f"{what} name"): TableSpec.from_wire(v, f"{what}.{k}") for k, v in m.items()}


_PY_TYPES: Final[Mapping[str, tuple[type, ...]]] = {
    "bool": (bool,),
    "int": (int,),
    "counter": (int,),
    "float": (float, int),
    "string": (str,),
    "binary": (bytes,),
    "timestamp": (_dt.datetime,),
    "decimal": (Decimal,),
    "objectid": (ObjectId,),
    "uuid": (uuid.UUID,),
}


def _check_scalar(typ: str, value: object, optional: bool, where: str) -> None:
    if value is None:
        if not optional:
            raise WrongTypeError(f"{where}: null is not allowed", where=where)
        return
    types = _PY_TYPES[typ]
    if isinstance(value, bool) and typ != "bool":
        raise WrongTypeError(f"{where}: expected {typ}, got bool", where=where)
    if not isinstance(value, types):
        raise WrongTypeError(f"{where}: expected {typ}, got {type(value).__name__}", where=where)
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise WrongTypeError(f"{where}: integer out of 64-bit range", where=where)
    if isinstance(value, float) and math.isnan(value) and typ != "float":
        raise WrongTypeError(f"{where}: NaN", where=where)


def check_value(
    tables: Mapping[str, TableSpec],
    spec: FieldSpec,
    value: object,
    where: str,
    depth: int = 0,
) -> None:
    """Raise ``WrongTypeError`` unless ``value`` fits one element/scalar of ``spec``.

    A link's value is the target's primary key (or null when optional).  An
    embedded object's value is a map ``{field: value}`` over its table's
    fields (absent fields take their defaults), or null when optional, nested
    at most ``MAX_EMBEDDED_DEPTH`` deep (``depth``: the embedded objects
    ``value`` is already inside).
    """
    if spec.type == "link":
        assert spec.target is not None
        target = tables.get(spec.target)
        if target is None:
            raise UnknownTableError(
                f"{where}: link target {spec.target!r} is unknown", table=spec.target
            )
        if target.embedded:
            raise InvalidOpError(f"{where}: a link cannot target embedded table {spec.target!r}")
        pk_spec = target.fields[target.primary_key]
        nullable = spec.optional or spec.collection in (None, "dict")
        _check_scalar(pk_spec.type, value, nullable, where)
        return
    if spec.type == "mixed":
        check_mixed(tables, value, where, nested=spec.collection != "set", depth=depth)
        return
    if spec.type == "embedded":
        assert spec.target is not None
        target = tables.get(spec.target)
        if target is None or not target.embedded:
            raise UnknownTableError(
                f"{where}: embedded target {spec.target!r} is unknown or not embedded",
                table=spec.target,
            )
        if value is None:
            if not (spec.optional or spec.collection is None or spec.collection == "dict"):
                raise WrongTypeError(f"{where}: null is not allowed", where=where)
            return
        if not isinstance(value, dict):
            raise WrongTypeError(
                f"{where}: an embedded object is a map, got {type(value).__name__}", where=where
            )
        if depth >= MAX_EMBEDDED_DEPTH:
            raise WrongTypeError(
                f"{where}: embedded objects nested deeper than {MAX_EMBEDDED_DEPTH}",
                where=where[:200],
                limit=MAX_EMBEDDED_DEPTH,
            )
        for k, v in value.items():
            fs = target.fields.get(k)
            if fs is None:
                raise UnknownFieldError(
                    f"{where}: unknown field {spec.target}.{k}", table=spec.target, field=k
                )
            check_whole(tables, fs, v, f"{where}.{k}", depth + 1)
        return
    _check_scalar(spec.type, value, spec.optional, where)


def check_mixed(
    tables: Mapping[str, TableSpec], value: object, where: str, *, nested: bool, depth: int = 0
) -> None:
    """Raise ``WrongTypeError`` unless ``value`` is a mixed value: null, a
    scalar of any field type, a :class:`~realmpy.wire.values.MixedLink` to an
    object of a top-level table (its primary key of that table's key type),
    or (when ``nested``: not in a set) an array or a string-keyed map of
    mixed values, nested at most ``MAX_EMBEDDED_DEPTH`` deep."""
    if value is None:
        return
    if isinstance(value, MixedLink):
        target = tables.get(value.table)
        if target is None or target.embedded:
            raise UnknownTableError(
                f"{where}: a mixed link to {value.table!r}, which is no top-level table",
                table=value.table,
            )
        _check_scalar(target.fields[target.primary_key].type, value.pk, False, where)
        return
    if isinstance(value, (list, dict)):
        if not nested:
            raise WrongTypeError(
                f"{where}: a set of mixed values holds no collections", where=where
            )
        if depth >= MAX_EMBEDDED_DEPTH:
            raise WrongTypeError(
                f"{where}: mixed values nested deeper than {MAX_EMBEDDED_DEPTH}",
                where=where[:200],
                limit=MAX_EMBEDDED_DEPTH,
            )
        if isinstance(value, list):
            for i, v in enumerate(value):
                check_mixed(tables, v, f"{where}[{i}]", nested=True, depth=depth + 1)
        else:
            for k, v in value.items():
                _dict_key(k, where)
                check_mixed(tables, v, f"{where}[{k!r}]", nested=True, depth=depth + 1)
        return
    for typ in _MIXED_SCALARS:
        if isinstance(value, _PY_TYPES[typ]) and (typ == "bool") == isinstance(value, bool):
            _check_scalar(typ, value, False, where)
            return
    raise WrongTypeError(f"{where}: a mixed value cannot be a {type(value).__name__}", where=where)


# The scalar types a mixed value may hold, in the order their Python types
# are tried (bool before int; a counter is a field type, not a value's).
_MIXED_SCALARS: Final = tuple(t for t in _PY_TYPES if t != "counter")


def check_whole(
    tables: Mapping[str, TableSpec],
    spec: FieldSpec,
    value: object,
    where: str,
    depth: int = 0,
) -> None:
    """Check a whole field value: a scalar, or a whole collection (a list for lists and
    sets, a map with string keys for dictionaries).  Used inside embedded objects."""
    if spec.collection is None:
        check_value(tables, spec, value, where, depth)
        return
    if spec.collection in ("list", "set"):
        if not isinstance(value, list):
            raise WrongTypeError(f"{where}: a {spec.collection} is an array", where=where)
        for i, v in enumerate(value):
            check_value(tables, spec, v, f"{where}[{i}]", depth)
        return
    if not isinstance(value, dict):
        raise WrongTypeError(f"{where}: a dictionary is a map", where=where)
    for k, v in value.items():
        _dict_key(k, where)
        check_value(tables, spec, v, f"{where}[{k!r}]", depth)


MAX_DICT_KEY_CHARS: Final = 1024


def _dict_key(k: object, where: str) -> str:
    if not isinstance(k, str) or len(k) > MAX_DICT_KEY_CHARS:
        raise WrongTypeError(
            f"{where}: dictionary keys are strings of at most {MAX_DICT_KEY_CHARS} characters",
            where=where,
        )
    return k


def resolve_path(
    tables: Mapping[str, TableSpec], table: str, path: str, where: str
) -> tuple[FieldSpec, bool]:
    """The spec of a field or of a dotted path through embedded objects (``address.city``),
    and whether the path goes into an embedded object (``True`` for ``address.city``)."""
    spec = tables[table]
    parts = path.split(".")
    fs: FieldSpec | None = None
    for n, part in enumerate(parts):
        fs = spec.fields.get(part)
        if fs is None:
            raise UnknownFieldError(
                f"{where}: unknown field {table}.{path}", table=table, field=path
            )
        if n + 1 < len(parts):
            if fs.type != "embedded" or fs.collection is not None:
                raise InvalidOpError(
                    f"{where}: {table}.{path}: {part!r} is not a to-one embedded object"
                )
            assert fs.target is not None
            nxt = tables.get(fs.target)
            if nxt is None:
                raise UnknownTableError(f"{where}: unknown table {fs.target!r}", table=fs.target)
            spec = nxt
    assert fs is not None
    return fs, len(parts) > 1


def tables_to_wire(tables: Mapping[str, TableSpec]) -> dict[str, Any]:
    """Encode a schema (table name → spec) for the wire or for storage."""
    return {k: v.to_wire() for k, v in tables.items()}


def tables_from_wire(obj: object) -> dict[str, TableSpec]:
    """Decode a schema (table name → spec), validating it."""
    return _tables_from_wire(obj, "tables")
