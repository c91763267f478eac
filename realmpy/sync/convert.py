"""Translation between the object layer's stored records and the sync protocol's values and schema.

Why a module of its own: the object layer stores links as the target's
*encoded* key (``codec.Link``) and names types the Python way (``str``,
``bytes``, ``datetime``), while the protocol names them for every client
(``string``, ``binary``, ``timestamp``) and sends a link as the target's
primary key.  Both directions live here, next to each other, so they stay
inverse; everything else in the client works on one side or the other.

Synced models need a primary key (objects are identified across devices by
it) and may use the scalar types, counters, to-one links and lists; sets,
dictionaries and embedded objects are not in protocol v1 and are refused
when the configuration is built, with a message saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from realmpy import codec
from realmpy.schema import ObjectSchema, Property, Schema
from realmpy.sync import protocol as P
from realmpy.sync.errors import SyncConfigurationError

__all__ = ["from_wire_value", "record_from_state_values", "to_wire_value", "wire_tables"]

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
}


def check_syncable(schema: Schema) -> None:
    """Raise :class:`SyncConfigurationError` unless every model can be synced."""
    for cls in schema.classes:
        if cls.embedded:
            raise SyncConfigurationError(
                f"{cls.name} is an embedded object; protocol v1 cannot sync embedded objects yet: "
                "make it a top-level model with a primary key and link to it"
            )
        if cls.primary_key is None:
            raise SyncConfigurationError(
                f"{cls.name} has no primary key; synced models need one "
                "(e.g. id: ObjectId = field(primary_key=True, default_factory=ObjectId))"
            )
        for p in cls.properties:
            if p.collection in ("set", "dict"):
                raise SyncConfigurationError(
                    f"{cls.name}.{p.name} is a {p.collection}; protocol v1 syncs scalars, counters, links and lists only"
                )
            if p.type == "embedded":
                raise SyncConfigurationError(
                    f"{cls.name}.{p.name} holds embedded objects, which protocol v1 cannot sync"
                )
            if p.type not in _TYPE_NAMES:
                raise SyncConfigurationError(
                    f"{cls.name}.{p.name}: type {p.type!r} cannot be synced"
                )


def wire_tables(schema: Schema) -> dict[str, P.TableSpec]:
    """The protocol schema (table name → spec) of the object schema."""
    check_syncable(schema)
    out: dict[str, P.TableSpec] = {}
    for cls in schema.classes:
        fields = {
            p.name: P.FieldSpec(
                _TYPE_NAMES[p.type],
                p.optional or (p.type == "link" and p.collection is None),
                p.collection,
                p.target,
            )
            for p in cls.properties
        }
        assert cls.primary_key is not None
        out[cls.name] = P.TableSpec(cls.primary_key, fields)
    return out


def _link_pk(stored: Any) -> Any:
    if stored is None:
        return None
    return codec.decode_key(bytes(stored))[0]


def to_wire_value(prop: Property, stored: Any) -> Any:
    """A stored property value (or list element list) as the protocol sends it."""
    if prop.type == "link":
        if prop.collection == "list":
            return [_link_pk(v) for v in (stored or [])]
        return _link_pk(stored)
    if prop.collection == "list":
        return list(stored or [])
    if prop.type == "counter" and stored is not None:
        return int(stored)
    return stored


def from_wire_value(prop: Property, value: Any) -> Any:
    """A protocol value (a field's merged value) as the object layer stores it."""
    if prop.type == "link":
        if prop.collection == "list":
            return [codec.Link(codec.encode_key(v)) for v in (value or []) if v is not None]
        return None if value is None else codec.Link(codec.encode_key(value))
    if prop.collection == "list":
        return list(value or [])
    if prop.type == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def record_from_state_values(
    cls: ObjectSchema, values: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """A full stored record for ``cls`` from merged wire values; absent fields get ``defaults``."""
    rec: dict[str, Any] = {}
    for p in cls.properties:
        if p.name in values:
            v = from_wire_value(p, values[p.name])
            if v is None and not p.optional and p.type != "link" and p.collection is None:
                v = defaults.get(p.name)
            rec[p.name] = v
        else:
            rec[p.name] = defaults.get(p.name)
    return rec
