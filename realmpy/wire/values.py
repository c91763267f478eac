"""Wire values: msgpack's own types (nil, bool, int, float, str, bin) plus
four extension types (``ObjectId`` = 1, ``UUID`` = 2, ``Decimal`` = 3, the
link of a mixed value = 4, see :class:`ExtCode`) and msgpack's timestamp
extension (-1) for aware datetimes; :func:`pack` and the bounded,
untrusted-input :func:`unpack`.

A mixed field's value (``"mixed"`` in the schema) is any of these, an
array or a map of them (nested lists and dictionaries), or a
:class:`MixedLink`: a link to an object of any table, sent as extension 4
holding the msgpack array ``[table, primary key]``."""

from __future__ import annotations

import datetime as _dt
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import IntEnum
from typing import Any, Final, Union

import msgpack  # type: ignore[import-untyped,unused-ignore]

import realmpy.exttypes as exttypes
from realmpy.objectid import ObjectId
from realmpy.wire.errors import MalformedMessage, MessageTooLarge, ProtocolError

MAX_STRING_BYTES: Final = 16 * 1024 * 1024
"""No single string or binary value may exceed this (msgpack allocation bound)."""

Value = Any
"""A field value: None, bool, int, float, str, bytes, datetime, Decimal, ObjectId, UUID."""

PrimaryKey = Union[int, str, ObjectId, uuid.UUID, None]


class ExtCode(IntEnum):
    """msgpack extension type numbers used by the protocol (realmpy/exttypes.py
    tables them beside the file's, which number the same types differently)."""

    OBJECT_ID = exttypes.WIRE_OBJECT_ID
    UUID = exttypes.WIRE_UUID
    DECIMAL = exttypes.WIRE_DECIMAL
    MIXED_LINK = exttypes.WIRE_MIXED_LINK


MAX_MIXED_LINK_BYTES: Final = 4096
"""The largest mixed-link extension (a table name and a primary key, both
bounded far below this by the schema and key limits)."""


@dataclass(frozen=True, slots=True)
class MixedLink:
    """A mixed field's link on the wire: the target's table and primary key."""

    table: str
    pk: Any


def _default(obj: object) -> object:
    if isinstance(obj, ObjectId):
        return msgpack.ExtType(ExtCode.OBJECT_ID, obj.binary)
    if isinstance(obj, uuid.UUID):
        return msgpack.ExtType(ExtCode.UUID, obj.bytes)
    if isinstance(obj, Decimal):
        return msgpack.ExtType(ExtCode.DECIMAL, str(obj).encode("ascii"))
    if isinstance(obj, MixedLink):
        return msgpack.ExtType(ExtCode.MIXED_LINK, pack([obj.table, obj.pk]))
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
    if code == ExtCode.MIXED_LINK:
        return _mixed_link(data)
    raise MalformedMessage(f"unknown msgpack extension type {code}")


def _mixed_link(data: bytes) -> MixedLink:
    if len(data) > MAX_MIXED_LINK_BYTES:
        raise MalformedMessage(f"a mixed link carries at most {MAX_MIXED_LINK_BYTES} bytes")
    try:
        inner = msgpack.unpackb(data, raw=False, ext_hook=_ext_hook, max_ext_len=64)
    except ProtocolError:
        raise
    except Exception:  # msgpack raises several unrelated types
        raise MalformedMessage("a mixed link carries a msgpack [table, primary key]") from None
    if not (type(inner) is list and len(inner) == 2 and type(inner[0]) is str):
        raise MalformedMessage("a mixed link carries a msgpack [table, primary key]")
    pk = inner[1]
    if not isinstance(pk, (int, str, ObjectId, uuid.UUID)) or isinstance(pk, bool):
        raise MalformedMessage("a mixed link's primary key is an int, string, ObjectId or UUID")
    return MixedLink(inner[0], pk)


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
            max_ext_len=MAX_MIXED_LINK_BYTES,
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
