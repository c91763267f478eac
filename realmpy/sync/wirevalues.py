"""Translation between the object layer's stored records and the sync protocol's values and schema.

Why a module of its own: the object layer stores links as the target's
*encoded* key (``codec.Link``) and names types the Python way (``str``,
``bytes``, ``datetime``), while the protocol names them for every client
(``string``, ``binary``, ``timestamp``) and sends a link as the target's
primary key.  Both directions live here, next to each other, so they stay
inverse; everything else in the client works on one side or the other.

A mixed value travels as its value (msgpack keeps its type), nested lists
and dictionaries as arrays and maps, and a link as a wire ``MixedLink``
(target table and primary key): last writer wins per field, as for any
other value.

Every type the object layer supports syncs: top-level models need a
primary key (objects are identified across devices by it); embedded objects
(no key) travel as maps inside their parent's operations; sets and
dictionaries have their own operations (protocol changelog: ``SET_ADD`` /
``SET_ERASE`` / ``DICT_SET`` / ``DICT_ERASE``).  Values inside an embedded
object are whole values (a list or set is an array, a dictionary a map).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import realmpy.codec as codec
from realmpy.layout import zero_value
from realmpy.schema import MAX_EMBEDDED_DEPTH, ObjectSchema, Property, Schema
from realmpy.sync.errors import ServerResponseError, SyncConfigurationError
from realmpy.wire import merge as M
from realmpy.wire import protocol as P
from realmpy.wire.values import MixedLink as WireLink

__all__ = [
    "MAX_RESPONSE_NESTING",
    "check_nesting",
    "embedded_from_wire",
    "embedded_to_wire",
    "from_wire_value",
    "record_from_state_values",
    "to_wire_value",
    "wire_tables",
]

_TYPE_NAMES: Final[Mapping[str, str]] = {
    "bool": "bool",
    "int": "int",
    "float": "float",
    "str": "string",
    "bytes": "binary",
    "datetime": "timestamp",
    "decimal": "decimal",
    "objectid": "objectid",
    "uuid": "uuid",
    "counter": "counter",
    "link": "link",
    "embedded": "embedded",
    "mixed": "mixed",
}


MAX_RESPONSE_NESTING: Final = 2 * MAX_EMBEDDED_DEPTH + 16
"""Arrays and maps one server answer may nest: an embedded object at the deepest level the
server accepts is a map (or a list or dictionary of them) per level, inside a few levels of
message, entry and merge state.  Deeper is a broken or hostile server."""


def check_nesting(value: Any, what: str, limit: int = MAX_RESPONSE_NESTING) -> None:
    """``ServerResponseError`` if ``value`` nests arrays and maps deeper than ``limit``.

    Checked on every decoded answer before anything converts it: the conversions (merge
    states, embedded objects) recurse once per level, and a ~1,000-deep value from the
    server would otherwise end in ``RecursionError`` in the middle of applying a download.
    Iterative, so the check itself cannot overflow.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        items = v.values() if isinstance(v, dict) else v
        for x in items:
            if isinstance(x, (list, dict)):
                if depth >= limit:
                    raise ServerResponseError(
                        f"{what}: the server's answer nests values deeper than {limit} levels "
                        "(realmpy.sync.wirevalues.MAX_RESPONSE_NESTING); nothing of it was applied",
                        code="bad_response",
                    )
                stack.append((x, depth + 1))


def check_syncable(schema: Schema) -> None:
    """Raise :class:`SyncConfigurationError` unless every model can be synced."""
    for cls in schema.classes:
        if cls.primary_key is None and not cls.embedded:
            raise SyncConfigurationError(
                f"{cls.name} has no primary key; synced models need one "
                "(e.g. id: ObjectId = field(primary_key=True, default_factory=ObjectId))"
            )
        for p in cls.properties:
            if p.type not in _TYPE_NAMES:
                raise SyncConfigurationError(
                    f"{cls.name}.{p.name}: type {p.type!r} cannot be synced"
                )
            if "." in p.name:
                raise SyncConfigurationError(
                    f"{cls.name}.{p.name}: synced field names cannot contain '.'"
                )


def wire_tables(schema: Schema) -> dict[str, P.TableSpec]:
    """The protocol schema (table name → spec) of the object schema."""
    check_syncable(schema)
    out: dict[str, P.TableSpec] = {}
    for cls in schema.classes:
        fields = {
            p.name: P.FieldSpec(
                _TYPE_NAMES[p.type],
                p.optional or (p.type in ("link", "embedded") and p.collection is None),
                p.collection,
                p.target,
            )
            for p in cls.properties
        }
        if cls.embedded:
            out[cls.name] = P.TableSpec("", fields, True)
        else:
            assert cls.primary_key is not None
            out[cls.name] = P.TableSpec(cls.primary_key, fields)
    return out


def _link_pk(stored: Any) -> Any:
    if stored is None:
        return None
    return codec.decode_key(bytes(stored))[0]


def _target(schema: Schema | None, prop: Property) -> ObjectSchema:
    if schema is None or prop.target is None or prop.target not in schema:
        raise SyncConfigurationError(
            f"{prop.name}: embedded target {prop.target!r} is not in the schema"
        )
    return schema[prop.target]


def _elem_to_wire(prop: Property, v: Any, schema: Schema | None) -> Any:
    if v is None:
        return None
    t = prop.type
    if t == "link":
        return _link_pk(v)
    if t == "embedded":
        return embedded_to_wire(_target(schema, prop), v, schema)
    if t == "counter":
        return int(v)
    if t == "mixed":
        return _mixed_to_wire(v)
    return v


def _mixed_to_wire(v: Any) -> Any:
    """A stored mixed value as the protocol sends it: each link as the
    target's table and primary key (a wire ``MixedLink``)."""
    if type(v) is codec.MixedLink:
        return WireLink(v.cls, codec.decode_key(v.key)[0])
    if type(v) is list:
        return [_mixed_to_wire(x) for x in v]
    if type(v) is dict:
        return {k: _mixed_to_wire(x) for k, x in v.items()}
    return v


def _mixed_from_wire(v: Any) -> Any:
    """Inverse of :func:`_mixed_to_wire` (the value was checked by the server)."""
    if type(v) is WireLink:
        return codec.MixedLink(v.table, codec.encode_key(v.pk))
    if type(v) is list:
        return [_mixed_from_wire(x) for x in v]
    if type(v) is dict:
        return {str(k): _mixed_from_wire(x) for k, x in v.items()}
    return v


def embedded_to_wire(cls: ObjectSchema, stored: Any, schema: Schema | None) -> dict[str, Any]:
    """A stored embedded record as the protocol's map (every field, links as keys)."""
    rec = stored if isinstance(stored, dict) else {}
    return {
        p.name: to_wire_value(p, rec.get(p.name, zero_value(p, None)), schema)
        for p in cls.properties
    }


def to_wire_value(prop: Property, stored: Any, schema: Schema | None = None) -> Any:
    """A stored property value as the protocol sends it.

    Lists are arrays; sets are arrays in the canonical order of
    ``merge.elem_key`` (the order ``ObjectState.set_value`` gives, so equal
    sets compare equal); dictionaries are maps; an embedded object is a map
    over its fields; a link is the target's primary key.  ``schema`` is
    needed for embedded objects only.
    """
    coll = prop.collection
    if coll is None:
        return _elem_to_wire(prop, stored, schema)
    if coll == "list":
        return [_elem_to_wire(prop, v, schema) for v in (stored or [])]
    if coll == "set":
        return sorted((_elem_to_wire(prop, v, schema) for v in (stored or ())), key=M.elem_key)
    return {str(k): _elem_to_wire(prop, v, schema) for k, v in (stored or {}).items()}


def _elem_from_wire(prop: Property, v: Any, schema: Schema | None, depth: int) -> Any:
    if v is None:
        return None
    t = prop.type
    if t == "link":
        return codec.Link(codec.encode_key(v))
    if t == "embedded":
        if not isinstance(v, dict):
            return None
        return embedded_from_wire(_target(schema, prop), v, schema, depth + 1)
    if t == "float" and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if t == "mixed":
        return _mixed_from_wire(v)
    return v


def embedded_from_wire(
    cls: ObjectSchema, value: Mapping[str, Any], schema: Schema | None, depth: int = 1
) -> dict[str, Any]:
    """A protocol map as the object layer stores an embedded object (absent fields take defaults).

    ``depth``: the embedded objects ``value`` is (1: a top-level object's field).  A value
    nested deeper than ``MAX_EMBEDDED_DEPTH`` (which no client can write and the server
    refuses) is a broken or hostile server's answer: ``ServerResponseError``, never a
    ``RecursionError``.
    """
    if depth > MAX_EMBEDDED_DEPTH:
        raise ServerResponseError(
            f"the server sent {cls.name} objects nested deeper than {MAX_EMBEDDED_DEPTH} "
            "(realmpy.schema.MAX_EMBEDDED_DEPTH); nothing of that answer was applied",
            code="bad_response",
        )
    return record_from_state_values(
        cls, value, {p.name: zero_value(p, None) for p in cls.properties}, schema, depth
    )


def from_wire_value(
    prop: Property, value: Any, schema: Schema | None = None, depth: int = 0
) -> Any:
    """A protocol value (a field's merged value) as the object layer stores it (``depth``:
    the embedded objects the field is inside)."""
    coll = prop.collection
    if coll is None:
        return _elem_from_wire(prop, value, schema, depth)
    link = prop.type == "link"
    if coll == "list":
        return [
            _elem_from_wire(prop, v, schema, depth)
            for v in (value or [])
            if not (link and v is None)
        ]
    if coll == "set":
        return {
            _elem_from_wire(prop, v, schema, depth)
            for v in (value or [])
            if not (link and v is None)
        }
    if not isinstance(value, dict):
        return {}
    return {str(k): _elem_from_wire(prop, v, schema, depth) for k, v in value.items()}


def record_from_state_values(
    cls: ObjectSchema,
    values: Mapping[str, Any],
    defaults: Mapping[str, Any],
    schema: Schema | None = None,
    depth: int = 0,
) -> dict[str, Any]:
    """A full stored record for ``cls`` from merged wire values; absent fields get ``defaults``
    (``depth``: the embedded objects the record is, see ``embedded_from_wire``)."""
    rec: dict[str, Any] = {}
    for p in cls.properties:
        if p.name in values:
            v = from_wire_value(p, values[p.name], schema, depth)
            if (
                v is None
                and not p.optional
                and p.type not in ("link", "embedded")
                and p.collection is None
            ):
                v = defaults.get(p.name)
            rec[p.name] = v
        else:
            rec[p.name] = defaults.get(p.name)
    return rec
