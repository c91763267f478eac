"""The sync wire format, version 1: msgpack bodies over HTTP, shared by client and server.

Why one module imported by both sides: the client and the server must agree
byte for byte on how values, operations, changesets and messages look, and on
what counts as malformed.  Keeping the codec *and* its validation here means a
message the client can build is a message the server accepts, and a
third-party client has one file (plus ``docs/protocol.md``) to read.

Everything that arrives from the network is untrusted: ``unpack`` bounds the
sizes msgpack may allocate, and every ``from_wire`` checks shapes and types
and raises a ``ProtocolError`` subclass whose ``code`` is the typed error code
the server returns with a 4xx status.  Nothing here imports the server.

Values: msgpack's own types (nil, bool, int, float, str, bin) plus three
extension types (``ObjectId`` = 1, ``UUID`` = 2, ``Decimal`` = 3, see
``ExtCode``) and msgpack's timestamp extension (-1) for aware datetimes.
"""

from __future__ import annotations

import datetime as _dt
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import IntEnum
from typing import Any, ClassVar, Final, NamedTuple, Union

import msgpack  # type: ignore[import-untyped,unused-ignore]

import realmpy.exttypes as exttypes
from realmpy.objectid import ObjectId
from realmpy.schema import MAX_EMBEDDED_DEPTH
from realmpy.wire.error_codes import status_of

__all__ = [
    "BATCH_STATES",
    "COLLECTIONS",
    "FIELD_TYPES",
    "MAX_STRING_BYTES",
    "PROTOCOL_VERSION",
    "ApiKeyRequest",
    "ApiKeyResponse",
    "AuthError",
    "Changeset",
    "ClockSkewError",
    "DownloadEntry",
    "DownloadRequest",
    "DownloadResponse",
    "ErrorResponse",
    "ExtCode",
    "FieldSpec",
    "FileIdentError",
    "IdentRequest",
    "IdentResponse",
    "InvalidOpError",
    "LoginRequest",
    "MalformedMessage",
    "MessageTooLarge",
    "Op",
    "OpCode",
    "PrimaryKey",
    "ProtocolError",
    "RegisterRequest",
    "RejectedWrite",
    "SchemaMismatch",
    "SchemaRequest",
    "Stamp",
    "SubscriptionRequest",
    "SubscriptionResponse",
    "TableSpec",
    "TokenResponse",
    "UnknownFieldError",
    "UnknownTableError",
    "UploadRequest",
    "UploadResponse",
    "Value",
    "WrongTypeError",
    "check_value",
    "check_whole",
    "pack",
    "pk_key",
    "resolve_path",
    "unpack",
]

PROTOCOL_VERSION: Final = 1
"""Bumped on any incompatible change; it is the ``vN`` in every URL."""

MAX_STRING_BYTES: Final = 16 * 1024 * 1024
"""No single string or binary value may exceed this (msgpack allocation bound)."""

Value = Any
"""A field value: None, bool, int, float, str, bytes, datetime, Decimal, ObjectId, UUID."""

PrimaryKey = Union[int, str, ObjectId, uuid.UUID, None]


# --------------------------------------------------------------------------- errors


class ProtocolError(ValueError):
    """A message is not acceptable; ``code`` is the typed code sent to the client."""

    code: ClassVar[str] = "malformed_message"
    status: ClassVar[int] = status_of("malformed_message")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The status comes from the one table of codes (error_codes.ERRORS):
        # a subclass names its code only, and a code missing there fails here.
        super().__init_subclass__(**kwargs)
        if "status" in cls.__dict__:
            raise TypeError(f"{cls.__name__}: the status of {cls.code!r} is set in ERRORS only")
        cls.status = status_of(cls.code)

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class MalformedMessage(ProtocolError):
    """Not msgpack, or not the shape the message type requires."""

    code = "malformed_message"


class MessageTooLarge(ProtocolError):
    """A body above the endpoint's byte limit, or with more values than it allows."""

    code = "request_too_large"


class UnknownTableError(ProtocolError):
    """An operation or subscription names a table the schema does not have."""

    code = "unknown_table"


class UnknownFieldError(ProtocolError):
    """An operation names a field its table does not have."""

    code = "unknown_field"


class WrongTypeError(ProtocolError):
    """A value does not have the type its field (or primary key) declares."""

    code = "wrong_type"


class InvalidOpError(ProtocolError):
    """An operation is not applicable to its field (a list op on a scalar, ...)."""

    code = "invalid_op"


class SchemaMismatch(ProtocolError):
    """A client schema changes an existing table or field incompatibly."""

    code = "schema_mismatch"


class ClockSkewError(ProtocolError):
    """A changeset's timestamp lies too far in the future (or before the last one)."""

    code = "clock_skew"


class FileIdentError(ProtocolError):
    """A file ident or its salt is unknown, forged, or belongs to another user."""

    code = "bad_file_ident"


class AuthError(ProtocolError):
    """Missing, invalid, expired or revoked credentials."""

    code = "invalid_token"


# --------------------------------------------------------------------------- values


class ExtCode(IntEnum):
    """msgpack extension type numbers used by the protocol (realmpy/exttypes.py
    tables them beside the file's, which number the same types differently)."""

    OBJECT_ID = exttypes.WIRE_OBJECT_ID
    UUID = exttypes.WIRE_UUID
    DECIMAL = exttypes.WIRE_DECIMAL


def _default(obj: object) -> object:
    if isinstance(obj, ObjectId):
        return msgpack.ExtType(ExtCode.OBJECT_ID, obj.binary)
    if isinstance(obj, uuid.UUID):
        return msgpack.ExtType(ExtCode.UUID, obj.bytes)
    if isinstance(obj, Decimal):
        return msgpack.ExtType(ExtCode.DECIMAL, str(obj).encode("ascii"))
    if isinstance(obj, (tuple, frozenset)):
        return list(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} for sync")


def _ext_hook(code: int, data: bytes) -> object:
    if code == ExtCode.OBJECT_ID:
        if len(data) != 12:
            raise MalformedMessage("an ObjectId extension carries 12 bytes")
        return ObjectId(data)
    if code == ExtCode.UUID:
        if len(data) != 16:
            raise MalformedMessage("a UUID extension carries 16 bytes")
        return uuid.UUID(bytes=data)
    if code == ExtCode.DECIMAL:
        if len(data) > 64:
            raise MalformedMessage("a Decimal extension carries at most 64 bytes")
        try:
            return Decimal(data.decode("ascii"))
        except (UnicodeDecodeError, InvalidOperation):
            raise MalformedMessage("a Decimal extension carries an ASCII number") from None
    raise MalformedMessage(f"unknown msgpack extension type {code}")


def pack(obj: object) -> bytes:
    """Encode ``obj`` deterministically (map order as given; aware datetimes only)."""
    if isinstance(obj, _dt.datetime) and obj.tzinfo is None:
        raise TypeError("sync timestamps must be timezone-aware")
    try:
        return msgpack.packb(obj, default=_default, use_bin_type=True, datetime=True)  # type: ignore[no-any-return]
    except ValueError as exc:  # msgpack refuses naive datetimes with ValueError
        raise TypeError(str(exc)) from exc


def unpack(
    data: bytes | bytearray, *, max_bytes: int = 64 * 1024 * 1024, max_items: int | None = None
) -> Any:
    """Decode untrusted ``data``; any defect raises ``MalformedMessage``.

    ``max_items`` bounds the number of values inside arrays and maps, counted
    as they are decoded: a decoded value costs 50-70 bytes of memory where its
    msgpack form may take one (an empty map), so a byte limit alone would let
    a few MiB of body grow to a GiB.  Over it: ``MessageTooLarge``.  Nesting
    is bounded by msgpack itself (1,024 levels).
    """
    if len(data) > max_bytes:
        raise MessageTooLarge(f"message of {len(data)} bytes exceeds {max_bytes}", limit=max_bytes)
    hooks: dict[str, Any] = {}
    if max_items is not None:
        budget = [max_items]

        def spend(n: int) -> None:
            budget[0] -= n
            if budget[0] < 0:
                raise MessageTooLarge(
                    f"message has more than {max_items} values", max_items=max_items
                )

        def list_hook(items: list[Any]) -> list[Any]:
            spend(len(items))
            return items

        def object_hook(m: dict[str, Any]) -> dict[str, Any]:
            spend(2 * len(m))
            return m

        hooks = {"list_hook": list_hook, "object_hook": object_hook}
    limit = min(1_000_000, max_items if max_items is not None else 1_000_000)
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            ext_hook=_ext_hook,
            timestamp=3,
            strict_map_key=True,
            max_str_len=MAX_STRING_BYTES,
            max_bin_len=MAX_STRING_BYTES,
            max_array_len=limit,
            max_map_len=limit,
            max_ext_len=64,
            **hooks,
        )
    except ProtocolError:
        raise
    except (
        ValueError,
        TypeError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
    ) as exc:
        if max_items is not None and "exceeds max_" in str(exc):
            # One array or map longer than the whole budget ("N exceeds max_array_len(M)").
            raise MessageTooLarge(
                f"message has more than {max_items} values", max_items=max_items
            ) from None
        raise MalformedMessage(f"not a valid msgpack message: {exc}") from None
    except RecursionError:
        raise MalformedMessage("message nested too deeply") from None


def pk_key(pk: PrimaryKey) -> bytes:
    """The canonical bytes of a primary key, used as a storage key."""
    return pack(pk)


# --------------------------------------------------------------------------- shape helpers


def _map(obj: object, what: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise MalformedMessage(f"{what} must be a map")
    return obj


def _get(
    m: Mapping[str, Any],
    key: str,
    typ: type | tuple[type, ...],
    what: str,
    *,
    optional: bool = False,
    default: Any = None,
) -> Any:
    if key not in m or m[key] is None:
        if optional:
            return default
        raise MalformedMessage(f"{what}: missing {key!r}")
    v = m[key]
    if isinstance(v, bool) and bool not in (typ if isinstance(typ, tuple) else (typ,)):
        raise MalformedMessage(f"{what}: {key!r} has the wrong type")
    if not isinstance(v, typ):
        raise MalformedMessage(f"{what}: {key!r} has the wrong type")
    return v


def _uint(
    m: Mapping[str, Any],
    key: str,
    what: str,
    *,
    optional: bool = False,
    default: int = 0,
    maximum: int = 2**63 - 1,
) -> int:
    v = _get(m, key, int, what, optional=optional, default=default)
    if not 0 <= v <= maximum:
        raise MalformedMessage(f"{what}: {key!r} out of range")
    return int(v)


def _str(
    m: Mapping[str, Any], key: str, what: str, *, optional: bool = False, max_len: int = 1024
) -> Any:
    v = _get(m, key, str, what, optional=optional)
    if v is not None and len(v) > max_len:
        raise MalformedMessage(f"{what}: {key!r} is longer than {max_len}")
    return v


def _name(v: object, what: str) -> str:
    if not isinstance(v, str) or not 0 < len(v) <= 128:
        raise MalformedMessage(f"{what} must be a name of 1-128 characters")
    return v


def _field_name(v: object, what: str) -> str:
    name = _name(v, what)
    if "." in name:
        raise MalformedMessage(f"{what} {name!r}: field names cannot contain '.' (path separator)")
    return name


MAX_PATH_CHARS: Final = 1024
"""An op's ``field`` may be a dotted path into embedded objects (``address.city``)."""


def _path(v: object, what: str) -> str:
    if not isinstance(v, str) or not 0 < len(v) <= MAX_PATH_CHARS:
        raise MalformedMessage(
            f"{what} must be a field name or path of 1-{MAX_PATH_CHARS} characters"
        )
    return v


# --------------------------------------------------------------------------- schema

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


# --------------------------------------------------------------------------- operations


class Stamp(NamedTuple):
    """Total order of operations: (timestamp ms, file ident, client version, op index)."""

    ts: int
    file_ident: int
    client_version: int
    op_index: int


class OpCode(IntEnum):
    """Operation codes; changing a number is a protocol-breaking change."""

    CREATE = 0  # [0, table, pk]
    ERASE = 1  # [1, table, pk]
    SET = 2  # [2, table, pk, field, value]
    ADD = 3  # [3, table, pk, field, delta]
    LIST_INSERT = 4  # [4, table, pk, field, after_elem | nil, value]
    LIST_ERASE = 5  # [5, table, pk, field, elem]
    SET_ADD = 6  # [6, table, pk, field, value]
    SET_ERASE = 7  # [7, table, pk, field, value]
    DICT_SET = 8  # [8, table, pk, field, key, value]
    DICT_ERASE = 9  # [9, table, pk, field, key]


_OP_ARITY: Final = {
    OpCode.CREATE: 3,
    OpCode.ERASE: 3,
    OpCode.SET: 5,
    OpCode.ADD: 5,
    OpCode.LIST_INSERT: 6,
    OpCode.LIST_ERASE: 5,
    OpCode.SET_ADD: 5,
    OpCode.SET_ERASE: 5,
    OpCode.DICT_SET: 6,
    OpCode.DICT_ERASE: 5,
}


def _stamp_from_wire(obj: object, what: str) -> Stamp:
    if not isinstance(obj, list) or len(obj) != 4:
        raise MalformedMessage(
            f"{what}: an element id is [ts, file_ident, client_version, op_index]"
        )
    for x in obj:
        if not isinstance(x, int) or isinstance(x, bool) or not 0 <= x < 2**63:
            raise MalformedMessage(f"{what}: element id parts are unsigned integers")
    return Stamp(*obj)


@dataclass(frozen=True)
class Op:
    """One operation on one object.  ``elem`` is the list element acted on
    (``after`` for LIST_INSERT, the erased element for LIST_ERASE); ``key`` is
    the dictionary key of DICT_SET / DICT_ERASE.  ``field`` of SET and ADD may
    be a dotted path into embedded objects (``address.city``)."""

    code: OpCode
    table: str
    pk: PrimaryKey
    field: str | None = None
    value: Value = None
    elem: Stamp | None = None
    key: str | None = None

    @classmethod
    def from_wire(cls, obj: object, what: str = "op") -> Op:
        if not isinstance(obj, list) or not obj:
            raise MalformedMessage(f"{what} must be a non-empty array")
        raw_code = obj[0]
        if (
            not isinstance(raw_code, int)
            or isinstance(raw_code, bool)
            or raw_code not in _OP_ARITY.keys()
        ):
            raise InvalidOpError(f"{what}: unknown op code {raw_code!r}")
        code = OpCode(raw_code)
        if len(obj) != _OP_ARITY[code]:
            raise MalformedMessage(f"{what}: {code.name} takes {_OP_ARITY[code]} items")
        table = _name(obj[1], f"{what} table")
        pk = obj[2]
        if code in (OpCode.CREATE, OpCode.ERASE):
            return cls(code, table, pk)
        fld = _path(obj[3], f"{what} field")
        if code in (OpCode.SET_ADD, OpCode.SET_ERASE):
            return cls(code, table, pk, fld, obj[4])
        if code == OpCode.DICT_SET:
            return cls(code, table, pk, fld, obj[5], key=_dict_key(obj[4], f"{what} key"))
        if code == OpCode.DICT_ERASE:
            return cls(code, table, pk, fld, key=_dict_key(obj[4], f"{what} key"))
        if code in (OpCode.SET, OpCode.ADD):
            if code == OpCode.ADD and (
                not isinstance(obj[4], (int, float)) or isinstance(obj[4], bool)
            ):
                raise WrongTypeError(f"{what}: ADD takes a number")
            return cls(code, table, pk, fld, obj[4])
        if code == OpCode.LIST_INSERT:
            after = None if obj[4] is None else _stamp_from_wire(obj[4], what)
            return cls(code, table, pk, fld, obj[5], after)
        return cls(code, table, pk, fld, None, _stamp_from_wire(obj[4], what))

    def to_wire(self) -> list[Any]:
        if self.code in (OpCode.CREATE, OpCode.ERASE):
            return [int(self.code), self.table, self.pk]
        if self.code == OpCode.DICT_SET:
            return [int(self.code), self.table, self.pk, self.field, self.key, self.value]
        if self.code == OpCode.DICT_ERASE:
            return [int(self.code), self.table, self.pk, self.field, self.key]
        if self.code in (OpCode.SET, OpCode.ADD, OpCode.SET_ADD, OpCode.SET_ERASE):
            return [int(self.code), self.table, self.pk, self.field, self.value]
        if self.code == OpCode.LIST_INSERT:
            return [
                int(self.code),
                self.table,
                self.pk,
                self.field,
                None if self.elem is None else list(self.elem),
                self.value,
            ]
        assert self.elem is not None
        return [int(self.code), self.table, self.pk, self.field, list(self.elem)]

    def validate(self, tables: Mapping[str, TableSpec], where: str) -> None:
        """Check the op against a schema: table, field, op kind and value types."""
        spec = tables.get(self.table)
        if spec is None or spec.embedded:
            raise UnknownTableError(
                f"{where}: unknown table {self.table!r}"
                + (" (embedded objects are written through their parent)" if spec else ""),
                table=self.table,
            )
        _check_scalar(spec.fields[spec.primary_key].type, self.pk, False, f"{where} primary key")
        if self.field is None:
            return
        fs, nested = resolve_path(tables, self.table, self.field, where)
        if self.field == spec.primary_key:
            raise InvalidOpError(f"{where}: the primary key cannot be changed")
        loc = f"{where} {self.table}.{self.field}"
        code = self.code
        inside = self.field.count(".")  # the embedded objects a path write is inside
        if inside >= MAX_EMBEDDED_DEPTH:
            raise WrongTypeError(
                f"{where}: a path through more than {MAX_EMBEDDED_DEPTH} embedded objects",
                limit=MAX_EMBEDDED_DEPTH,
            )
        if code == OpCode.SET:
            if fs.collection is not None and not nested:
                raise InvalidOpError(
                    f"{loc}: SET on a {fs.collection}; use its own ops "
                    "(LIST_INSERT/LIST_ERASE, SET_ADD/SET_ERASE, DICT_SET/DICT_ERASE)"
                )
            check_whole(tables, fs, self.value, loc, inside)
        elif code == OpCode.ADD:
            if fs.collection is not None or fs.type not in ("int", "counter", "float"):
                raise InvalidOpError(f"{loc}: ADD needs an int, float or counter field")
            if fs.type != "float" and not isinstance(self.value, int):
                raise WrongTypeError(f"{loc}: ADD to an integer field takes an integer")
            _check_scalar("float" if fs.type == "float" else "int", self.value, False, loc)
        else:
            want = {
                OpCode.LIST_INSERT: "list",
                OpCode.LIST_ERASE: "list",
                OpCode.SET_ADD: "set",
                OpCode.SET_ERASE: "set",
                OpCode.DICT_SET: "dict",
                OpCode.DICT_ERASE: "dict",
            }[code]
            if fs.collection != want:
                raise InvalidOpError(f"{loc}: {code.name} on a field that is not a {want}")
            if nested:
                raise InvalidOpError(
                    f"{loc}: a {want} inside an embedded object is replaced whole: SET its path"
                )
            if code in (OpCode.LIST_INSERT, OpCode.SET_ADD, OpCode.SET_ERASE, OpCode.DICT_SET):
                check_value(tables, fs, self.value, loc)


@dataclass(frozen=True)
class Changeset:
    """One local transaction's operations, as uploaded by a client."""

    client_version: int
    base_server_version: int
    timestamp: int
    ops: tuple[Op, ...]

    @classmethod
    def from_wire(cls, obj: object, what: str = "changeset") -> Changeset:
        m = _map(obj, what)
        cv = _uint(m, "client_version", what)
        if cv == 0:
            raise MalformedMessage(f"{what}: client_version starts at 1")
        base = _uint(m, "base_server_version", what)
        ts = _uint(m, "timestamp", what)
        raw_ops = _get(m, "ops", list, what)
        ops = tuple(Op.from_wire(o, f"{what} op {i}") for i, o in enumerate(raw_ops))
        return cls(cv, base, ts, ops)

    def to_wire(self) -> dict[str, Any]:
        return {
            "client_version": self.client_version,
            "base_server_version": self.base_server_version,
            "timestamp": self.timestamp,
            "ops": [o.to_wire() for o in self.ops],
        }


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class ErrorResponse:
    """Every 4xx/5xx body: a typed ``error`` code, a message and optional detail."""

    error: str
    message: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {"error": self.error, "message": self.message, "detail": dict(self.detail)}

    @classmethod
    def from_wire(cls, obj: object) -> ErrorResponse:
        m = _map(obj, "error")
        return cls(
            _str(m, "error", "error"),
            _str(m, "message", "error", max_len=65536),
            _map(m.get("detail", {}), "detail"),
        )


@dataclass(frozen=True)
class RegisterRequest:
    """Email/password registration."""

    email: str
    password: str

    @classmethod
    def from_wire(cls, obj: object) -> RegisterRequest:
        m = _map(obj, "register")
        email = _str(m, "email", "register", max_len=254)
        if "@" not in email or email.strip() != email:
            raise MalformedMessage("register: not an email address")
        return cls(email.lower(), _str(m, "password", "register", max_len=1024))

    def to_wire(self) -> dict[str, Any]:
        return {"email": self.email, "password": self.password}


@dataclass(frozen=True)
class LoginRequest:
    """Log in with one provider: ``anonymous``, ``email_password`` or ``api_key``."""

    provider: str
    email: str | None = None
    password: str | None = None
    key: str | None = None

    PROVIDERS: ClassVar[frozenset[str]] = frozenset({"anonymous", "email_password", "api_key"})

    @classmethod
    def from_wire(cls, obj: object) -> LoginRequest:
        m = _map(obj, "login")
        provider = _str(m, "provider", "login")
        if provider not in cls.PROVIDERS:
            raise MalformedMessage(f"login: unknown provider {provider!r}")
        if provider == "email_password":
            return cls(
                provider,
                _str(m, "email", "login", max_len=254).lower(),
                _str(m, "password", "login"),
            )
        if provider == "api_key":
            return cls(provider, key=_str(m, "key", "login"))
        return cls(provider)

    def to_wire(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "email": self.email,
            "password": self.password,
            "key": self.key,
        }


@dataclass(frozen=True)
class TokenResponse:
    """Answer to login and refresh; ``refresh_token`` is absent on refresh."""

    user_id: str
    access_token: str
    access_expires_at: int
    refresh_token: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "access_token": self.access_token,
            "access_expires_at": self.access_expires_at,
            "refresh_token": self.refresh_token,
        }

    @classmethod
    def from_wire(cls, obj: object) -> TokenResponse:
        m = _map(obj, "token")
        return cls(
            _str(m, "user_id", "token"),
            _str(m, "access_token", "token", max_len=4096),
            _uint(m, "access_expires_at", "token"),
            _str(m, "refresh_token", "token", optional=True, max_len=4096),
        )


@dataclass(frozen=True)
class ApiKeyRequest:
    """Create an API key for the calling user."""

    name: str

    @classmethod
    def from_wire(cls, obj: object) -> ApiKeyRequest:
        return cls(_name(_map(obj, "api key").get("name"), "api key name"))


@dataclass(frozen=True)
class ApiKeyResponse:
    """A created (``key`` set once) or listed API key."""

    id: str
    name: str
    key: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "key": self.key}


@dataclass(frozen=True)
class IdentRequest:
    """Ask for a file ident.  The same ``nonce`` from the same user gets the same
    answer, so a lost response can be retried without leaking idents."""

    nonce: str

    @classmethod
    def from_wire(cls, obj: object) -> IdentRequest:
        nonce = _str(_map(obj, "ident"), "nonce", "ident", max_len=128)
        if len(nonce) < 8:
            raise MalformedMessage("ident: nonce must have at least 8 characters")
        return cls(nonce)

    def to_wire(self) -> dict[str, Any]:
        return {"nonce": self.nonce}


@dataclass(frozen=True)
class IdentResponse:
    """A server-assigned file ident and its salt (the client stores both)."""

    file_ident: int
    salt: int
    server_salt: int

    def to_wire(self) -> dict[str, Any]:
        return {"file_ident": self.file_ident, "salt": self.salt, "server_salt": self.server_salt}


@dataclass(frozen=True)
class SchemaRequest:
    """The client's schema; in development mode the server adopts additions."""

    tables: Mapping[str, TableSpec]

    @classmethod
    def from_wire(cls, obj: object) -> SchemaRequest:
        return cls(_tables_from_wire(_map(obj, "schema").get("tables"), "schema.tables"))

    def to_wire(self) -> dict[str, Any]:
        return {"tables": {k: v.to_wire() for k, v in self.tables.items()}}


class _FileMsg:
    @staticmethod
    def _ident(m: Mapping[str, Any], what: str) -> tuple[int, int]:
        return _uint(m, "file_ident", what), _uint(m, "salt", what)


@dataclass(frozen=True)
class UploadRequest(_FileMsg):
    """Changesets in increasing ``client_version``; already-integrated ones are skipped."""

    file_ident: int
    salt: int
    changesets: tuple[Changeset, ...]

    @classmethod
    def from_wire(cls, obj: object) -> UploadRequest:
        m = _map(obj, "upload")
        fi, salt = cls._ident(m, "upload")
        raw = _get(m, "changesets", list, "upload")
        css = tuple(Changeset.from_wire(c, f"changeset {i}") for i, c in enumerate(raw))
        for a, b in zip(css, css[1:]):
            if b.client_version <= a.client_version:
                raise MalformedMessage("upload: client versions must increase")
        return cls(fi, salt, css)

    def to_wire(self) -> dict[str, Any]:
        return {
            "file_ident": self.file_ident,
            "salt": self.salt,
            "changesets": [c.to_wire() for c in self.changesets],
        }


@dataclass(frozen=True)
class RejectedWrite:
    """A write the permission rules refused; undone by a compensating reset."""

    client_version: int
    table: str
    pk: PrimaryKey
    reason: str
    server_version: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "client_version": self.client_version,
            "table": self.table,
            "pk": self.pk,
            "reason": self.reason,
            "server_version": self.server_version,
        }

    @classmethod
    def from_wire(cls, obj: object) -> RejectedWrite:
        m = _map(obj, "rejected write")
        return cls(
            _uint(m, "client_version", "rejected"),
            _str(m, "table", "rejected"),
            m.get("pk"),
            _str(m, "reason", "rejected", max_len=4096),
            _uint(m, "server_version", "rejected"),
        )


@dataclass(frozen=True)
class UploadResponse:
    """``acked_client_version``: every changeset up to it is durably integrated."""

    acked_client_version: int
    server_version: int
    rejected: tuple[RejectedWrite, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {
            "acked_client_version": self.acked_client_version,
            "server_version": self.server_version,
            "rejected": [r.to_wire() for r in self.rejected],
        }

    @classmethod
    def from_wire(cls, obj: object) -> UploadResponse:
        m = _map(obj, "upload response")
        return cls(
            _uint(m, "acked_client_version", "upload response"),
            _uint(m, "server_version", "upload response"),
            tuple(RejectedWrite.from_wire(r) for r in _get(m, "rejected", list, "upload response")),
        )


@dataclass(frozen=True)
class SubscriptionRequest(_FileMsg):
    """A new subscription set: ``queries`` maps a table to [query text, args] pairs."""

    file_ident: int
    salt: int
    query_version: int
    queries: Mapping[str, tuple[tuple[str, tuple[Any, ...]], ...]]

    @classmethod
    def from_wire(cls, obj: object) -> SubscriptionRequest:
        m = _map(obj, "subscriptions")
        fi, salt = cls._ident(m, "subscriptions")
        qv = _uint(m, "query_version", "subscriptions")
        raw = _map(m.get("queries"), "subscriptions.queries")
        queries: dict[str, tuple[tuple[str, tuple[Any, ...]], ...]] = {}
        total = 0
        for table, qs in raw.items():
            _name(table, "subscription table")
            if not isinstance(qs, list):
                raise MalformedMessage("subscriptions: each table maps to a list of [query, args]")
            items = []
            for q in qs:
                if not (
                    isinstance(q, list)
                    and len(q) == 2
                    and isinstance(q[0], str)
                    and isinstance(q[1], list)
                ):
                    raise MalformedMessage("subscriptions: a query is [text, [args...]]")
                if len(q[0]) > 4096:
                    raise MalformedMessage("subscriptions: query text too long")
                items.append((q[0], tuple(q[1])))
            total += len(items)
            queries[table] = tuple(items)
        if total > 1000:
            raise MalformedMessage("subscriptions: at most 1000 queries")
        return cls(fi, salt, qv, queries)

    def to_wire(self) -> dict[str, Any]:
        return {
            "file_ident": self.file_ident,
            "salt": self.salt,
            "query_version": self.query_version,
            "queries": {t: [[q, list(a)] for q, a in qs] for t, qs in self.queries.items()},
        }


@dataclass(frozen=True)
class SubscriptionResponse:
    """The accepted query version and its server-side state."""

    query_version: int
    state: str

    def to_wire(self) -> dict[str, Any]:
        return {"query_version": self.query_version, "state": self.state}


BATCH_STATES: Final = frozenset({"more", "last", "steady"})


@dataclass(frozen=True)
class DownloadRequest(_FileMsg):
    """Long-poll for changes after ``after_server_version`` (or continue a bootstrap)."""

    file_ident: int
    salt: int
    after_server_version: int
    bootstrap_token: bytes | None = None
    wait_ms: int = 0
    max_bytes: int = 1 << 20
    query_version: int | None = None
    """The query version whose bootstrap the client applied (None: not said)."""

    @classmethod
    def from_wire(cls, obj: object) -> DownloadRequest:
        m = _map(obj, "download")
        fi, salt = cls._ident(m, "download")
        after = _uint(m, "after_server_version", "download")
        token = _get(m, "bootstrap_token", bytes, "download", optional=True)
        if token is not None and len(token) > 4096:
            raise MalformedMessage("download: bootstrap token too long")
        wait = _uint(m, "wait_ms", "download", optional=True, default=0, maximum=60_000)
        mb = _uint(m, "max_bytes", "download", optional=True, default=1 << 20, maximum=64 << 20)
        qv = _get(m, "query_version", int, "download", optional=True)
        if qv is not None and not 0 <= qv < 2**63:
            raise MalformedMessage("download: 'query_version' out of range")
        return cls(fi, salt, after, token, wait, max(mb, 1024), qv)

    def to_wire(self) -> dict[str, Any]:
        return {
            "file_ident": self.file_ident,
            "salt": self.salt,
            "after_server_version": self.after_server_version,
            "bootstrap_token": self.bootstrap_token,
            "wait_ms": self.wait_ms,
            "max_bytes": self.max_bytes,
            "query_version": self.query_version,
        }


@dataclass(frozen=True)
class DownloadEntry:
    """One object in a download.

    ``kind``: ``state`` (join this merge state into the local object),
    ``forget`` (the object left the client's view: remove it locally, it is not
    deleted on the server), ``reset`` (a compensating write: replace the local
    object by ``state``, or remove it when ``state`` is nil, then re-apply
    local changesets not yet acknowledged; ``error`` says why).
    """

    kind: str
    table: str
    pk: PrimaryKey
    state: Any = None
    error: RejectedWrite | None = None

    KINDS: ClassVar[frozenset[str]] = frozenset({"state", "forget", "reset"})

    def to_wire(self) -> list[Any]:
        return [
            self.kind,
            self.table,
            self.pk,
            self.state,
            None if self.error is None else self.error.to_wire(),
        ]

    @classmethod
    def from_wire(cls, obj: object) -> DownloadEntry:
        if not isinstance(obj, list) or len(obj) != 5 or obj[0] not in cls.KINDS:
            raise MalformedMessage("download entry: [kind, table, pk, state, error]")
        return cls(
            obj[0],
            _name(obj[1], "entry table"),
            obj[2],
            obj[3],
            None if obj[4] is None else RejectedWrite.from_wire(obj[4]),
        )


@dataclass(frozen=True)
class DownloadResponse:
    """A download batch.

    After applying ``entries`` (atomically, together with the cursor), the
    client's cursor is ``server_version``.  ``batch`` is ``more`` (call again
    at once, passing ``bootstrap_token`` when set), ``last`` (end of a
    bootstrap for ``query_version``) or ``steady`` (caught up).
    """

    server_version: int
    latest_server_version: int
    server_salt: int
    acked_client_version: int
    query_version: int
    batch: str
    progress: float
    entries: tuple[DownloadEntry, ...]
    bootstrap_token: bytes | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "server_version": self.server_version,
            "latest_server_version": self.latest_server_version,
            "server_salt": self.server_salt,
            "acked_client_version": self.acked_client_version,
            "query_version": self.query_version,
            "batch": self.batch,
            "progress": self.progress,
            "entries": [e.to_wire() for e in self.entries],
            "bootstrap_token": self.bootstrap_token,
        }

    def pack(self) -> bytes:
        """``pack(self.to_wire())``, byte for byte, encoded one entry at a time.

        Why: one ``msgpack.packb`` of a whole batch (up to 64 MiB) is one C call
        that holds the GIL throughout (~55 ms for 20,000 small objects), stalling
        the server's event loop; entry by entry, other threads run in between.
        """
        wire = self.to_wire()
        header = msgpack.Packer()
        out = [header.pack_map_header(len(wire))]
        for key, value in wire.items():
            out.append(pack(key))
            if key == "entries":
                out.append(header.pack_array_header(len(value)))
                out.extend(pack(e) for e in value)
            else:
                out.append(pack(value))
        return b"".join(out)

    @classmethod
    def from_wire(cls, obj: object) -> DownloadResponse:
        m = _map(obj, "download response")
        w = "download response"
        batch = _str(m, "batch", w)
        if batch not in BATCH_STATES:
            raise MalformedMessage(f"{w}: unknown batch state {batch!r}")
        return cls(
            _uint(m, "server_version", w),
            _uint(m, "latest_server_version", w),
            _uint(m, "server_salt", w),
            _uint(m, "acked_client_version", w),
            _uint(m, "query_version", w),
            batch,
            float(_get(m, "progress", (float, int), w)),
            tuple(DownloadEntry.from_wire(e) for e in _get(m, "entries", list, w)),
            _get(m, "bootstrap_token", bytes, w, optional=True),
        )


def tables_to_wire(tables: Mapping[str, TableSpec]) -> dict[str, Any]:
    """Encode a schema (table name → spec) for the wire or for storage."""
    return {k: v.to_wire() for k, v in tables.items()}


def tables_from_wire(obj: object) -> dict[str, TableSpec]:
    """Decode a schema (table name → spec), validating it."""
    return _tables_from_wire(obj, "tables")


def ensure_sequence(obj: object, what: str) -> Sequence[Any]:
    """Return ``obj`` if it is a msgpack array, else raise ``MalformedMessage``."""
    if not isinstance(obj, list):
        raise MalformedMessage(f"{what} must be an array")
    return obj
