"""The tools' JSON encoding of realm values: lossless for every property type.

JSON has numbers, strings, arrays, objects, booleans and null; a realm has
more.  Each value JSON cannot say by itself is a one-key object whose key
starts with ``$`` (no property name can: properties are Python identifiers),
so the encoding is self-describing and a plain JSON object is always an
embedded object.  docs/tools.md tables it:

=========================  ==============================================
bool, int, str, Counter    themselves
float                      itself; ``{"$float": "nan" | "inf" | "-inf"}``
bytes                      ``{"$bytes": "<base64>"}``
datetime                   ``{"$date": "2024-05-01T12:00:00.000001+00:00"}``
Decimal                    ``{"$decimal": "12.50"}`` (its ``str``: digits kept)
ObjectId / UUID            ``{"$oid": "<24 hex>"}`` / ``{"$uuid": "<uuid>"}``
link                       ``{"$link": <target id>}``: its primary key, encoded
                           like a value, or for a class without one its ``$id``
embedded object            ``{"prop": value, ...}``
list / set / dict          ``[...]`` / ``{"$set": [...]}`` / ``{"$dict": {...}}``
None                       ``null``
Mixed                      the encoding of its value's own type, except:
                           a float is always ``{"$float": 5.0}`` (so JSON
                           readers that make ``5.0`` an int keep it a
                           float), a link is ``{"$link": ["Class", <id>]}``
                           (a mixed value may link to any class), a nested
                           list ``[...]`` and a nested dictionary
                           ``{"$dict": {...}}``
=========================  ==============================================

Decoding is directed by the property's stored type, so it checks each value
against the schema and says which property and what was expected.  Typing a
value by hand (Studio's editor, ``realmpy query`` arguments) may leave out
the tag where the type is known: a datetime, Decimal, ObjectId or UUID may be
given as its string, a set as a list, a dict as a plain object.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import json
import math
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from realmpy.errors import CodecError
from realmpy.objectid import ObjectId
from realmpy.schema import ObjectSchema, Property, Schema

__all__ = [
    "decode_arg",
    "decode_property",
    "decode_scalar",
    "encode_property",
    "encode_scalar",
    "parse_arg",
]

# (target class name, target object) -> the JSON id a link to it is written as
LinkWriter = Callable[[str, Any], Any]
# (target class name, JSON id) -> the target object (raise if there is none)
LinkReader = Callable[[str, Any], Any]
# (embedded class name, decoded values) -> an unmanaged embedded object
EmbeddedMaker = Callable[[str, dict[str, Any]], Any]

_FLOAT_NAMES = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def encode_scalar(kind: str, value: Any) -> Any:
    """A scalar of type ``kind`` (Property.type) as JSON."""
    if value is None:
        return None
    if kind in ("bool", "str"):
        return value
    if kind in ("int", "counter"):
        return int(value)
    if kind == "float":
        if math.isfinite(value):
            return value
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if kind == "bytes":
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if kind == "datetime":
        return {"$date": value.isoformat(timespec="microseconds")}
    if kind == "decimal":
        return {"$decimal": str(value)}
    if kind == "objectid":
        return {"$oid": str(value)}
    if kind == "uuid":
        return {"$uuid": str(value)}
    raise CodecError(f"no JSON encoding for the stored type {kind!r}")


def encode_property(schema: Schema, prop: Property, value: Any, link: LinkWriter) -> Any:
    """The value of ``prop`` read from an object, as JSON."""
    if value is None:
        return None
    if prop.collection == "list":
        return [_element(schema, prop, v, link) for v in value]
    if prop.collection == "set":
        # Sorted: a set's stored order is its writer's (hash) order, and a
        # dump must not depend on it.
        items = [_element(schema, prop, v, link) for v in value]
        return {"$set": sorted(items, key=_set_order)}
    if prop.collection == "dict":
        return {"$dict": {k: _element(schema, prop, v, link) for k, v in value.items()}}
    return _element(schema, prop, value, link)


def _set_order(item: Any) -> tuple[int, Any]:
    if item is None:
        return (0, 0)
    if isinstance(item, (int, float, str)):  # one type per set (bool is an int)
        return (1, item)
    return (2, json.dumps(item, sort_keys=True))


def _element(schema: Schema, prop: Property, value: Any, link: LinkWriter) -> Any:
    if value is None:
        return None
    if prop.type == "link":
        assert prop.target is not None
        return {"$link": link(prop.target, value)}
    if prop.type == "embedded":
        assert prop.target is not None
        return encode_embedded(schema, schema[prop.target], value, link)
    if prop.type == "mixed":
        return encode_mixed(value, link)
    return encode_scalar(prop.type, value)


# A mixed value's Python type -> its scalar encoding (bool before int: a bool is an int).
_MIXED_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "bool"),
    (int, "int"),
    (str, "str"),
    (bytes, "bytes"),
    (_dt.datetime, "datetime"),
    (Decimal, "decimal"),
    (ObjectId, "objectid"),
    (uuid.UUID, "uuid"),
)


def encode_mixed(value: Any, link: LinkWriter) -> Any:
    """A mixed value (as read from an object) as JSON (the table above)."""
    if value is None:
        return None
    if isinstance(value, float):
        return {
            "$float": value if math.isfinite(value) else encode_scalar("float", value)["$float"]
        }
    if isinstance(value, list):
        return [encode_mixed(v, link) for v in value]
    if isinstance(value, dict):
        return {"$dict": {k: encode_mixed(v, link) for k, v in value.items()}}
    for t, kind in _MIXED_KINDS:
        if isinstance(value, t):
            return encode_scalar(kind, value)
    name = type(value).__realm_name__  # an object: its class is part of the link
    return {"$link": [name, link(name, value)]}


def encode_embedded(schema: Schema, oschema: ObjectSchema, obj: Any, link: LinkWriter) -> Any:
    return {
        p.name: encode_property(schema, p, getattr(obj, p.name), link) for p in oschema.properties
    }


# ----------------------------------------------------------------------------- decoding


def _bad(where: str, expected: str, got: Any) -> CodecError:
    text = repr(got)
    if len(text) > 60:
        text = text[:57] + "..."
    return CodecError(f"{where}: expected {expected}, got {text}")


def _tagged(value: Any, tag: str) -> Any:
    """The payload of ``{tag: payload}``, or ``value`` itself if it is not tagged."""
    if isinstance(value, dict) and len(value) == 1 and tag in value:
        return value[tag]
    return value


def decode_scalar(kind: str, value: Any, where: str) -> Any:
    """JSON -> a Python value of type ``kind`` (raises CodecError naming ``where``)."""
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise _bad(where, "true or false", value)
    if kind in ("int", "counter"):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _bad(where, "an integer", value)
    if kind == "float":
        value = _tagged(value, "$float")
        if isinstance(value, str) and value in _FLOAT_NAMES:
            return _FLOAT_NAMES[value]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _bad(where, 'a number or {"$float": "nan"|"inf"|"-inf"}', value)
    if kind == "str":
        if isinstance(value, str):
            return value
        raise _bad(where, "a string", value)
    if kind == "bytes":
        raw = _tagged(value, "$bytes")
        if isinstance(raw, str) and raw is not value:
            try:
                return base64.b64decode(raw.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                pass
        raise _bad(where, '{"$bytes": "<base64>"}', value)
    text = _tagged(value, _TAGS.get(kind, ""))
    parse = _PARSERS.get(kind)
    if parse is None:
        raise CodecError(f"{where}: no JSON decoding for the stored type {kind!r}")
    if isinstance(text, str) or (kind == "decimal" and isinstance(text, int)):
        try:
            return parse(text)
        except (ValueError, TypeError, InvalidOperation):
            pass
    raise _bad(where, f'{{"{_TAGS[kind]}": "..."}} ({_EXPECTED[kind]})', value)


def _datetime(text: str) -> _dt.datetime:
    out = _dt.datetime.fromisoformat(text)
    if out.tzinfo is None:
        raise ValueError("naive")
    return out


def _decimal(text: Any) -> Decimal:
    return Decimal(str(text))


_TAGS = {"datetime": "$date", "decimal": "$decimal", "objectid": "$oid", "uuid": "$uuid"}
_EXPECTED = {
    "datetime": "an ISO 8601 time with its UTC offset",
    "decimal": "a decimal number as a string",
    "objectid": "24 hex digits",
    "uuid": "a UUID",
}
_PARSERS: dict[str, Callable[[Any], Any]] = {
    "datetime": _datetime,
    "decimal": _decimal,
    "objectid": ObjectId,
    "uuid": uuid.UUID,
}


def decode_property(
    schema: Schema,
    owner: str,
    prop: Property,
    value: Any,
    link: LinkReader,
    embedded: EmbeddedMaker,
) -> Any:
    """JSON -> the Python value to assign to ``prop`` (links resolved by ``link``)."""
    where = f"{owner}.{prop.name}"
    if value is None:
        if prop.collection is None and not prop.optional:
            raise _bad(where, f"a value ({prop.describe()})", value)
        return None
    if prop.collection == "list":
        if not isinstance(value, list):
            raise _bad(where, "a JSON array", value)
        return [_decode_element(schema, where, prop, v, link, embedded) for v in value]
    if prop.collection == "set":
        items = _tagged(value, "$set")
        if not isinstance(items, list):
            raise _bad(where, '{"$set": [...]}', value)
        return {_decode_element(schema, where, prop, v, link, embedded) for v in items}
    if prop.collection == "dict":
        items = _tagged(value, "$dict")
        if not isinstance(items, dict):
            raise _bad(where, '{"$dict": {...}}', value)
        return {
            str(k): _decode_element(schema, f"{where}[{k!r}]", prop, v, link, embedded)
            for k, v in items.items()
        }
    return _decode_element(schema, where, prop, value, link, embedded)


def _decode_element(
    schema: Schema,
    where: str,
    prop: Property,
    value: Any,
    link: LinkReader,
    embedded: EmbeddedMaker,
) -> Any:
    if value is None:
        if not prop.optional:
            raise _bad(where, prop.describe(), value)
        return None
    if prop.type == "link":
        assert prop.target is not None
        if not (isinstance(value, dict) and len(value) == 1 and "$link" in value):
            raise _bad(where, '{"$link": <id>}', value)
        return link(prop.target, value["$link"])
    if prop.type == "embedded":
        assert prop.target is not None
        return decode_embedded(schema, prop.target, value, link, embedded, where)
    if prop.type == "mixed":
        return decode_mixed(value, link, where)
    return decode_scalar(prop.type, value, where)


# The tags of a mixed value's scalars -> their types.
_MIXED_TAGS = {"$float": "float", "$bytes": "bytes", **{t: k for k, t in _TAGS.items()}}


def decode_mixed(value: Any, link: LinkReader, where: str) -> Any:
    """JSON -> a mixed value (inverse of :func:`encode_mixed`); a link is
    resolved by ``link(class name, id)``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value  # written by hand: a JSON number with a fraction
    if isinstance(value, list):
        return [decode_mixed(v, link, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict) and len(value) == 1:
        ((tag, payload),) = value.items()
        if tag == "$dict" and isinstance(payload, dict):
            return {str(k): decode_mixed(v, link, f"{where}[{k!r}]") for k, v in payload.items()}
        if tag == "$link" and isinstance(payload, list) and len(payload) == 2:
            if isinstance(payload[0], str):
                return link(payload[0], payload[1])
        if tag in _MIXED_TAGS:
            return decode_scalar(_MIXED_TAGS[tag], value, where)
    raise _bad(
        where,
        'a mixed value: null, true/false, a number, a string, [...], {"$dict": {...}}, '
        '{"$link": ["Class", <id>]} or a tagged scalar ({"$float": ...}, {"$bytes": ...}...)',
        value,
    )


def decode_embedded(
    schema: Schema,
    class_name: str,
    value: Any,
    link: LinkReader,
    embedded: EmbeddedMaker,
    where: str,
) -> Any:
    if not isinstance(value, dict) or any(k.startswith("$") for k in value):
        raise _bad(where, f"an embedded {class_name} as a JSON object", value)
    oschema = schema[class_name]
    unknown = set(value) - {p.name for p in oschema.properties}
    if unknown:
        raise CodecError(f"{where}: {class_name} has no property {sorted(unknown)[0]!r}")
    fields = {
        p.name: decode_property(schema, class_name, p, value[p.name], link, embedded)
        for p in oschema.properties
        if p.name in value
    }
    return embedded(class_name, fields)


def parse_arg(text: str) -> Any:
    """A query argument typed on the command line: a JSON value in this
    encoding (tagged values decoded), or else the text itself as a string."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return decode_arg(value)


def decode_arg(value: Any) -> Any:
    """A query argument given as decoded JSON: its tagged values decoded
    (without a schema: the tag says the type)."""
    return _untag(value)


def _untag(value: Any) -> Any:
    if isinstance(value, list):
        return [_untag(v) for v in value]
    if not isinstance(value, Mapping):
        return value
    if len(value) == 1:
        ((tag, payload),) = value.items()
        kinds = {"$float": "float", "$bytes": "bytes", **{t: k for k, t in _TAGS.items()}}
        if tag in kinds:
            return decode_scalar(kinds[tag], value, "argument")
        if tag == "$set":
            return {_untag(v) for v in payload}
    return {k: _untag(v) for k, v in value.items()}
