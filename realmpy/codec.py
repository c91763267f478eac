"""Byte encodings of the object layer: order-preserving keys and records.

Why order-preserving keys: the engine's B+trees order keys by raw bytes, so
a primary key or index value encoded here sorts exactly as the values do.
That turns ``age > 30`` on an indexed property into one ordered scan, and
makes iteration by primary key come out in key order.

Key format: each component is a type tag byte followed by a self-delimiting
body, so components concatenate (an index key is ``value + primary key``)
and :func:`decode_key` can split them again.  Tags order values of different
kinds (``None`` < bool < int < float < Decimal < str < bytes < datetime <
ObjectId < UUID; ints, floats and Decimals are separate kinds: ``1`` and
``1.0`` do not interleave); within a kind:

====================  =========================================================
None                  tag 0x01 only
bool                  tag 0x10, one byte 0/1
int (64-bit)          variable length, tags 0x14..0x24 (see below)
float                 tag 0x28, 8 bytes IEEE-754 big-endian; negatives
                      inverted, others sign-flipped (``-0.0`` is stored as
                      ``0.0``, NaN last)
Decimal               tag 0x29, class byte (-inf, negative, zero, positive,
                      +inf, NaN), then for finite non-zero: 4-byte biased
                      adjusted exponent and digits+1 bytes ending in 0;
                      negatives inverted
str / bytes           tag 0x30 / 0x40, bytes with 0x00 escaped as 0x00 0xFF,
                      ending 0x00 (str as UTF-8)
datetime (aware)      tag 0x50, microseconds since the epoch as 8 bytes
                      big-endian with the sign bit flipped (fixed length:
                      datetimes are rarely near the epoch, so a short form
                      would save nothing, and records reuse the body)
ObjectId / UUID       tag 0x60 / 0x70, the 12 / 16 raw bytes
mixed link            tag 0x80, the target class name and the target's
                      encoded primary key, each escaped as str bodies
                      (index keys of ``Mixed`` properties only)
mixed list / dict     tag 0x90 / 0x91 alone: an index of a ``Mixed``
                      property records only that the value is a nested
                      list or dictionary (equality never looks them up)
====================  =========================================================

Ints (the FoundationDB tuple layer's scheme).  Let ``Z = 0x1C``; for an int
``v`` let ``n`` be the number of bytes of ``|v|`` without leading zero bytes
(0 for ``v == 0``, 1..8 otherwise):

- ``v == 0``: the tag ``Z`` alone;
- ``v > 0``:  tag ``Z + n``, then ``v`` as ``n`` big-endian bytes (so the
  first body byte is never 0x00);
- ``v < 0``:  tag ``Z - n``, then ``v - 1 + 256**n`` as ``n`` big-endian
  bytes, i.e. the one's complement of ``|v|`` in ``n`` bytes (so the first
  body byte is never 0xFF).

Why it preserves order: the negatives with ``n`` bytes are exactly
``-(256**n - 1) .. -256**(n-1)``, so a longer negative is a smaller number
and gets a smaller tag, and the positives with ``n`` bytes are
``256**(n-1) .. 256**n - 1``, a longer one larger with a larger tag; so
values of different tags order as their tags (negatives ``Z-8..Z-1`` <
zero ``Z`` < positives ``Z+1..Z+8``).  Under one tag every body has
the same length ``n`` and ``v -> v`` (positive) or ``v -> v - 1 + 256**n``
(negative, mapping ``-(256**n - 1) .. -256**(n-1)`` onto ``0 ..
256**n - 256**(n-1) - 1``) is increasing, so byte order is value order.  The
tag fixes the length, so the encoding is prefix-free and keys of several
components still compare component by component.  ``-2**63`` is
``0x14 7F FF FF FF FF FF FF FF`` and ``2**63 - 1`` is ``0x24 7F FF FF FF
FF FF FF FF``.  Why not 8 fixed bytes: the engine's page slots keep a key's
first 4 bytes to compare without reading the entry, and a fixed body makes
those bytes equal for every int below 2**24; here the tag and the first
body bytes tell apart most keys of a table keyed by ints.

:func:`decode_key` accepts only the one minimal encoding of each int in 64
bits: a body that is truncated, starts with a redundant 0x00 (positive) or
0xFF (negative), or is beyond 64 bits raises :class:`CodecError`.  The
layout of keys is version ``KEY_FORMAT`` of the file's object layer (the
realm stores it in its ``_meta`` table and refuses files of another).

Records are msgpack *arrays* of property values in the class's stored
property order (the order of the schema kept in the file; properties added
later are appended, so a record shorter than the schema lacks only the
newest properties, which read as their defaults).  Values use extension
types for datetime (int64 microseconds, UTC), Decimal (its string),
ObjectId, UUID, sets (a packed array), links (the target's encoded
primary key) and the links of ``Mixed`` properties (:class:`MixedLink`:
class name, 0x00, encoded key); embedded objects are nested maps
``{property name: value}``.  A ``Mixed`` value is stored as the value of
its own type would be (msgpack keeps int, float, bool, str and bytes
apart), a nested list as an array and a nested dictionary as a map.
Arrays decode about three times faster than maps and skip the names.

Helpers: :func:`pack_row` / :func:`unpack_row` (positional lists),
:data:`RECORD_OPTIONS` (``msgpack.unpackb`` options for the storage layer's
``scan_msgpack`` / ``get_many_msgpack``), and, for code that works by
property name (sync, migrations), :func:`record_to_dict` /
:func:`record_from_dict` given the class schema.  :func:`pack_record` /
:func:`unpack_record` remain for msgpack maps (the stored schema, which an
open reads with :func:`unpack_schema` so that it need not load msgpack).
"""

from __future__ import annotations

import functools
import math
import struct
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import realmpy.exttypes as exttypes
from realmpy._native import encode_key_list as _fast_key_list
from realmpy._native import int_key as _fast_int_key
from realmpy.errors import CodecError
from realmpy.objectid import ObjectId
from realmpy.ondemand import on_first_use
from realmpy.stdtypes import is_datetime, is_decimal, is_uuid
from realmpy.valueclass import ValueClass

if TYPE_CHECKING:
    # datetime, decimal and uuid load with the first value of their type
    # (realmpy.stdtypes), not with the codec.
    import datetime as _dt
    from decimal import Decimal

    import msgpack  # type: ignore[import-untyped,unused-ignore]
else:
    # msgpack (and the datetime it imports) loads with the first record
    # packed or decoded, not with ``import realmpy``: opening a realm and
    # counting its objects needs neither (the stored schema is read by
    # :func:`unpack_schema`) -- issue 15's cold start.
    msgpack = on_first_use("msgpack", "msgpack", globals())

__all__ = [
    "MAX_KEY",
    "RECORD_OPTIONS",
    "CodecError",
    "Link",
    "MixedLink",
    "decode_key",
    "encode_key",
    "encode_key_list",
    "encode_keys",
    "kind_range",
    "pack_plain_rows",
    "pack_record",
    "pack_row",
    "record_from_dict",
    "record_names",
    "record_to_dict",
    "unpack_record",
    "unpack_row",
    "unpack_schema",
]

MAX_KEY: Final = 1024
"""The engine's key limit (RP_MAX_KEY); encoded keys longer than this fail."""

KEY_FORMAT: Final = 2
"""Version of the key layout above, stored in a realm's ``_meta`` table.
1: ints as tag 0x20 + 8 fixed bytes; 2: variable-length ints."""

T_NONE: Final = 0x01
T_BOOL: Final = 0x10
T_INT_ZERO: Final = 0x1C
"""The int 0; an int of ``n`` significant bytes has tag ``T_INT_ZERO ± n``."""
T_INT_MIN: Final = T_INT_ZERO - 8
T_INT_MAX: Final = T_INT_ZERO + 8
T_FLOAT: Final = 0x28
T_DECIMAL: Final = 0x29
T_STR: Final = 0x30
T_BYTES: Final = 0x40
T_DATETIME: Final = 0x50
T_OBJECTID: Final = 0x60
T_UUID: Final = 0x70
T_MIXED_LINK: Final = 0x80
T_MIXED_LIST: Final = 0x90
T_MIXED_DICT: Final = 0x91

_I64: Final = struct.Struct(">Q")
_F64: Final = struct.Struct(">d")
_U32: Final = struct.Struct(">I")
_SIGN: Final = 1 << 63
_INT_MIN: Final = -(1 << 63)
_INT_MAX: Final = (1 << 63) - 1


@functools.cache
def _epoch() -> _dt.datetime:
    """1970-01-01 UTC, the origin of stored datetimes (made at the first one)."""
    import datetime

    return datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def _from_micros(micros: int) -> _dt.datetime:
    import datetime

    return _epoch() + datetime.timedelta(microseconds=micros)


def _escape(raw: bytes) -> bytes:
    return raw.replace(b"\x00", b"\x00\xff") + b"\x00"


def _int_key(v: int) -> bytes:
    """The variable-length key of an int (see the module docstring)."""
    if v > 0:
        n = (v.bit_length() + 7) >> 3
        if n <= 8 and v <= _INT_MAX:
            # tag and body as one big-endian number: one to_bytes call
            return ((T_INT_ZERO + n) << (n << 3) | v).to_bytes(n + 1, "big")
    elif v < 0:
        n = ((-v).bit_length() + 7) >> 3
        if v >= _INT_MIN:
            # (Z - n) << 8n  +  (v - 1 + 256**n)  ==  (Z - n + 1) << 8n  +  v - 1
            return (((T_INT_ZERO - n + 1) << (n << 3)) + v - 1).to_bytes(n + 1, "big")
    else:
        return _INT_ZERO_KEY
    raise CodecError(f"integer {v} does not fit in 64 bits")


_INT_ZERO_KEY: Final = bytes((T_INT_ZERO,))


def _int64_body(v: int) -> bytes:
    """8 bytes big-endian, sign bit flipped: datetime keys and records."""
    if not _INT_MIN <= v <= _INT_MAX:
        raise CodecError(f"integer {v} does not fit in 64 bits")
    return _I64.pack((v + (1 << 64)) % (1 << 64) ^ _SIGN)


def _float_body(v: float) -> bytes:
    if v == 0.0:
        v = 0.0
    elif math.isnan(v):
        v = math.nan
    (bits,) = _I64.unpack(_F64.pack(v))
    if bits & _SIGN:
        bits ^= 0xFFFFFFFFFFFFFFFF
    else:
        bits ^= _SIGN
    return _I64.pack(bits)


def _decimal_body(v: Decimal) -> bytes:
    if v.is_nan():
        return b"\x05"
    if v.is_infinite():
        return b"\x04" if v > 0 else b"\x00"
    if v.is_zero():
        return b"\x02"
    sign, digit_tuple, _exp = v.as_tuple()
    digits = list(digit_tuple)
    while digits[0] == 0:  # as_tuple keeps leading zeros of e.g. 0.0012
        del digits[0]
    while digits[-1] == 0:  # 1.50 == 1.5: trailing zeros carry no value
        del digits[-1]
    adjusted = v.adjusted()
    body = _U32.pack(adjusted + (1 << 31)) + bytes(d + 1 for d in digits) + b"\x00"
    if sign:
        return b"\x01" + bytes(0xFF - b for b in body)
    return b"\x03" + body


def _datetime_body(v: _dt.datetime) -> bytes:
    if v.tzinfo is None or v.utcoffset() is None:
        raise CodecError(f"datetime {v!r} is naive: use an aware one, e.g. tzinfo=timezone.utc")
    delta = v - _epoch()
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return _int64_body(micros)


def _encode_one(v: Any, out: list[bytes]) -> None:
    if v is None:
        out.append(b"\x01")
    elif isinstance(v, bool):
        out.append(b"\x10\x01" if v else b"\x10\x00")
    elif isinstance(v, int):
        out.append(_int_key(v))
    elif isinstance(v, float):
        out.append(b"\x28" + _float_body(v))
    elif isinstance(v, str):
        out.append(b"\x30" + _escape(v.encode("utf-8", "surrogatepass")))
    elif isinstance(v, (bytes, bytearray, memoryview)):
        out.append(b"\x40" + _escape(bytes(v)))
    elif isinstance(v, ObjectId):
        out.append(b"\x60" + v.binary)
    elif type(v) is MixedLink:
        out.append(b"\x80" + _escape(v.cls.encode("utf-8")) + _escape(v.key))
    elif type(v) is list:
        out.append(b"\x90")
    elif type(v) is dict:
        out.append(b"\x91")
    # Types of modules loaded on demand, last (no other type is their subclass).
    elif is_decimal(v):
        out.append(b"\x29" + _decimal_body(v))
    elif is_datetime(v):
        out.append(b"\x50" + _datetime_body(v))
    elif is_uuid(v):
        out.append(b"\x70" + v.bytes)
    else:
        raise CodecError(f"a {type(v).__name__} cannot be a key or index value")


def encode_key(value: Any) -> bytes:
    """Encode one value so that byte order equals value order.

    Raises :class:`~realmpy.errors.CodecError` for an unsupported type,
    an int beyond 64 bits, a naive datetime, or a result over ``MAX_KEY``.
    """
    t = type(value)
    if t is int:  # fast paths: the common primary-key and index types
        # C builds the bytes (never empty); None: beyond 64 bits, raise here
        return _fast_int_key(value) or _int_key(value)
    if t is str:
        raw: bytes = value.encode("utf-8", "surrogatepass")
        if b"\x00" not in raw and len(raw) < MAX_KEY - 1:
            return b"\x30" + raw + b"\x00"
    elif t is ObjectId:
        binary: bytes = value.binary
        return b"\x60" + binary
    out: list[bytes] = []
    _encode_one(value, out)
    key = out[0]
    if len(key) > MAX_KEY:
        raise CodecError(
            f"encoded key is {len(key)} bytes, over the {MAX_KEY}-byte limit: "
            "use a shorter primary key or do not index this value"
        )
    return key


def kind_range(key: bytes) -> tuple[bytes, bytes]:
    """``[start, stop)`` holding every key (and every key with further
    components) of the same kind as the encoded ``key``: a range query's
    open end.  One tag per kind, except ints, which span
    ``T_INT_MIN..T_INT_MAX``."""
    tag = key[0]
    if T_INT_MIN <= tag <= T_INT_MAX:
        return _INT_RANGE
    return key[:1], bytes((tag + 1,))


_INT_RANGE: Final = (bytes((T_INT_MIN,)), bytes((T_INT_MAX + 1,)))


def encode_key_list(values: list[Any]) -> list[bytes]:
    """``[encode_key(v) for v in values]``, with C-level loops when every
    value is an int or every value is a str (bulk inserts)."""
    fast = _fast_key_list(values, MAX_KEY) if type(values) is list else None
    if fast is not None:  # all 64-bit ints, or all short strs without NUL
        return fast
    kinds = set(map(type, values))
    if kinds == {str}:
        if "\x00" in "".join(values):
            keys = [
                b"\x30" + v.encode("utf-8", "surrogatepass").replace(b"\x00", b"\x00\xff") + b"\x00"
                for v in values
            ]
        else:  # nothing to escape: tag, text and terminator encode in one go
            keys = [("\x30" + v + "\x00").encode("utf-8", "surrogatepass") for v in values]
        if not keys or max(map(len, keys)) <= MAX_KEY:
            return keys
    return [encode_key(v) for v in values]


def encode_keys(*values: Any) -> bytes:
    """Concatenate the encodings of several values (e.g. index value + pk)."""
    out: list[bytes] = []
    for v in values:
        _encode_one(v, out)
    key = b"".join(out)
    if len(key) > MAX_KEY:
        raise CodecError(f"encoded key is {len(key)} bytes, over the {MAX_KEY}-byte limit")
    return key


def _unescape(raw: bytes, pos: int) -> tuple[bytes, int]:
    parts = []
    while True:
        z = raw.index(b"\x00", pos)
        parts.append(raw[pos:z])
        if z + 1 < len(raw) and raw[z + 1] == 0xFF:
            parts.append(b"\x00")
            pos = z + 2
        else:
            return b"".join(parts), z + 1


def _decode_int(raw: bytes, pos: int, tag: int) -> tuple[int, int]:
    """The int whose key tag is ``tag`` and body starts at ``pos``, and the
    position after it; CodecError unless it is the minimal 64-bit form."""
    n = tag - T_INT_ZERO
    if n == 0:
        return 0, pos
    size = n if n > 0 else -n
    end = pos + size
    if end > len(raw):
        raise CodecError(f"truncated int in key {raw!r} at byte {pos - 1}")
    v = int.from_bytes(raw[pos:end], "big")
    if n > 0:
        if raw[pos] == 0x00:
            raise CodecError(f"non-minimal int in key {raw!r} at byte {pos - 1}")
    else:
        if raw[pos] == 0xFF:
            raise CodecError(f"non-minimal int in key {raw!r} at byte {pos - 1}")
        v -= (1 << (size << 3)) - 1
    if not _INT_MIN <= v <= _INT_MAX:
        raise CodecError(f"int beyond 64 bits in key {raw!r} at byte {pos - 1}")
    return v, end


def _decode_int64(raw: bytes, pos: int) -> int:
    bits: int = _I64.unpack_from(raw, pos)[0]
    bits ^= _SIGN
    return bits - (1 << 64) if bits & _SIGN else bits


def _decode_decimal(raw: bytes, pos: int) -> tuple[Decimal, int]:
    from decimal import Decimal

    cls = raw[pos]
    pos += 1
    if cls == 0x00:
        return Decimal("-Infinity"), pos
    if cls == 0x02:
        return Decimal(0), pos
    if cls == 0x04:
        return Decimal("Infinity"), pos
    if cls == 0x05:
        return Decimal("NaN"), pos
    neg = cls == 0x01
    flip = 0xFF if neg else 0x00
    (adj,) = _U32.unpack(bytes(b ^ flip for b in raw[pos : pos + 4]))
    adjusted = adj - (1 << 31)
    pos += 4
    digits = []
    while (raw[pos] ^ flip) != 0:
        digits.append((raw[pos] ^ flip) - 1)
        pos += 1
    pos += 1
    exponent = adjusted - len(digits) + 1
    return Decimal((1 if neg else 0, tuple(digits), exponent)), pos


def decode_key(raw: bytes) -> tuple[Any, ...]:
    """Split and decode a key made by :func:`encode_key`/:func:`encode_keys`."""
    out: list[Any] = []
    pos = 0
    n = len(raw)
    try:
        while pos < n:
            tag = raw[pos]
            pos += 1
            if tag == T_NONE:
                out.append(None)
            elif tag == T_BOOL:
                out.append(raw[pos] == 1)
                pos += 1
            elif T_INT_MIN <= tag <= T_INT_MAX:
                i, pos = _decode_int(raw, pos, tag)
                out.append(i)
            elif tag == T_FLOAT:
                (bits,) = _I64.unpack_from(raw, pos)
                bits = bits ^ _SIGN if bits & _SIGN else bits ^ 0xFFFFFFFFFFFFFFFF
                out.append(_F64.unpack(_I64.pack(bits))[0])
                pos += 8
            elif tag == T_DECIMAL:
                d, pos = _decode_decimal(raw, pos)
                out.append(d)
            elif tag == T_STR:
                b, pos = _unescape(raw, pos)
                out.append(b.decode("utf-8", "surrogatepass"))
            elif tag == T_BYTES:
                b, pos = _unescape(raw, pos)
                out.append(b)
            elif tag == T_DATETIME:
                micros = _decode_int64(raw, pos)
                out.append(_from_micros(micros))
                pos += 8
            elif tag == T_OBJECTID:
                out.append(ObjectId(raw[pos : pos + 12]))
                pos += 12
            elif tag == T_UUID:
                out.append(_uuid(raw[pos : pos + 16]))
                pos += 16
            elif tag == T_MIXED_LINK:
                cls, pos = _unescape(raw, pos)
                target, pos = _unescape(raw, pos)
                out.append(MixedLink(cls.decode("utf-8"), target))
            elif tag == T_MIXED_LIST:
                out.append([])
            elif tag == T_MIXED_DICT:
                out.append({})
            else:
                raise CodecError(f"unknown key tag 0x{tag:02x} at byte {pos - 1}")
    except (IndexError, struct.error, ValueError, OverflowError) as exc:
        # OverflowError: a datetime outside datetime's range (a damaged key).
        if isinstance(exc, CodecError):
            raise
        raise CodecError(f"truncated or corrupt key {raw!r}: {exc}") from None
    return tuple(out)


# ----------------------------------------------------------------------------
# Records

# The extension type numbers of record values: realmpy/exttypes.py (the table
# of both msgpack number spaces, the file's and the wire's).
EXT_DATETIME: Final = exttypes.RECORD_DATETIME
EXT_DECIMAL: Final = exttypes.RECORD_DECIMAL
EXT_OBJECTID: Final = exttypes.RECORD_OBJECTID
EXT_UUID: Final = exttypes.RECORD_UUID
EXT_SET: Final = exttypes.RECORD_SET
EXT_LINK: Final = exttypes.RECORD_LINK
EXT_MIXED_LINK: Final = exttypes.RECORD_MIXED_LINK


class Link(bytes):
    """A stored reference: the target object's encoded primary key.

    A distinct type so a record can tell a link from a ``bytes`` value.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Link({bytes(self)!r})"


class MixedLink(ValueClass):
    """A stored link of a ``Mixed`` property: the target's class name (as
    stored: its file name) and encoded primary key.  A ``Mixed`` value may
    link to an object of any class, so the class travels with the key.
    (Not a tuple: msgpack would pack a tuple as an array.)"""

    cls: str
    key: bytes


def _uuid(raw: bytes) -> Any:
    import uuid

    return uuid.UUID(bytes=raw)


def _default(v: Any) -> Any:
    if isinstance(v, Link):
        return msgpack.ExtType(EXT_LINK, bytes(v))
    if type(v) is MixedLink:
        return msgpack.ExtType(EXT_MIXED_LINK, v.cls.encode("utf-8") + b"\x00" + v.key)
    if isinstance(v, ObjectId):
        return msgpack.ExtType(EXT_OBJECTID, v.binary)
    if isinstance(v, (set, frozenset)):
        return msgpack.ExtType(EXT_SET, _packer_bytes(list(v)))
    # Types of modules loaded on demand, last (no other type is their subclass).
    if is_datetime(v):
        return msgpack.ExtType(EXT_DATETIME, _datetime_body(v))
    if is_decimal(v):
        return msgpack.ExtType(EXT_DECIMAL, str(v).encode("ascii"))
    if is_uuid(v):
        return msgpack.ExtType(EXT_UUID, v.bytes)
    raise CodecError(f"cannot store a {type(v).__name__} in a record")


def _packer_bytes(v: Any) -> bytes:
    try:
        return msgpack.packb(v, default=_default, use_bin_type=True, strict_types=True)  # type: ignore[no-any-return]
    except (OverflowError, ValueError) as exc:
        if isinstance(exc, CodecError):
            raise
        raise CodecError(f"cannot encode record: {exc}") from None


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_LINK:
        return Link(data)
    if code == EXT_DATETIME:
        return _from_micros(_decode_int64(data, 0))
    if code == EXT_DECIMAL:
        from decimal import Decimal

        return Decimal(data.decode("ascii"))
    if code == EXT_OBJECTID:
        return ObjectId(data)
    if code == EXT_UUID:
        return _uuid(data)
    if code == EXT_SET:
        return set(_unpack(data))
    if code == EXT_MIXED_LINK:
        cls, sep, key = data.partition(b"\x00")
        if not sep:
            raise CodecError("corrupt mixed link: no class name terminator")
        return MixedLink(cls.decode("utf-8"), key)
    raise CodecError(f"unknown record extension type {code}")


def _first_unpackb(data: bytes, **options: Any) -> Any:
    """``msgpack.unpackb`` at the first decode, which rebinds ``_unpackb``
    to it (msgpack loads on first use)."""
    global _unpackb
    _unpackb = msgpack.unpackb
    return _unpackb(data, **options)


_unpackb: Callable[..., Any] = _first_unpackb


def _unpack(data: bytes) -> Any:
    return _unpackb(data, ext_hook=_ext_hook, strict_map_key=False)


class _Packers(threading.local):
    """One reusable msgpack Packer per thread (``packb`` builds one per call,
    which costs more than packing a small record).  Never used re-entrantly:
    ``_default`` packs nested values with ``packb``.  A thread's packers
    are built at its first pack (``__getattr__`` runs only while they are
    missing), so msgpack loads with the first record packed."""

    pack: Callable[[Any], bytes]
    pack_plain: Callable[[Any], bytes]

    def __getattr__(self, name: str) -> Any:
        if name not in ("pack", "pack_plain"):
            raise AttributeError(name)
        self.pack = msgpack.Packer(default=_default, use_bin_type=True, strict_types=True).pack
        # Tuples as arrays (no Link can occur): records of classes without links.
        self.pack_plain = msgpack.Packer(default=_default, use_bin_type=True).pack
        return getattr(self, name)


_packers = _Packers()


def pack_record(record: dict[str, Any]) -> bytes:
    """Serialise an object's property values (already validated) to bytes."""
    try:
        return _packers.pack(record)
    except (OverflowError, ValueError) as exc:
        if isinstance(exc, CodecError):
            raise
        raise CodecError(f"cannot encode record: {exc}") from None


def unpack_record(data: bytes) -> dict[str, Any]:
    """Inverse of :func:`pack_record`; a damaged record raises CodecError."""
    try:
        rec = _unpackb(data, ext_hook=_ext_hook, strict_map_key=False)
    except CodecError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types
        raise CodecError(f"corrupt object record: {exc}") from None
    if type(rec) is not dict:
        raise CodecError("corrupt object record: not a map")
    return rec


class _NotPlain(Exception):
    """A value :func:`unpack_schema`'s small decoder does not read."""


def _plain(data: bytes, pos: int) -> tuple[Any, int]:
    """The msgpack value at ``data[pos]`` and the position after it, for
    the subset a stored schema uses: maps, arrays, str, bool, nil and
    small non-negative ints.  Anything else raises :class:`_NotPlain`."""
    b = data[pos]
    pos += 1
    if b <= 0x7F:
        return b, pos
    if 0xA0 <= b <= 0xBF or b == 0xD9:
        if b == 0xD9:
            n = data[pos]
            pos += 1
        else:
            n = b & 0x1F
        if pos + n > len(data):
            raise _NotPlain
        return data[pos : pos + n].decode("utf-8"), pos + n
    if 0x80 <= b <= 0x8F or 0x90 <= b <= 0x9F:
        if b <= 0x8F:
            out: dict[Any, Any] = {}
            for _ in range(b & 0x0F):
                key, pos = _plain(data, pos)
                out[key], pos = _plain(data, pos)
            return out, pos
        items = []
        for _ in range(b & 0x0F):
            item, pos = _plain(data, pos)
            items.append(item)
        return items, pos
    if b == 0xC0:
        return None, pos
    if b == 0xC2 or b == 0xC3:
        return b == 0xC3, pos
    raise _NotPlain


def unpack_schema(data: bytes) -> dict[str, Any]:
    """:func:`unpack_record` for the stored schema (a map of names, flags and
    lists of them).  A small decoder reads it without loading msgpack, which
    opening a realm needs for nothing else (issue 15's cold start); a schema
    it does not read (a big map, a damaged one) goes to msgpack."""
    try:
        rec, end = _plain(data, 0)
    except (_NotPlain, IndexError, UnicodeDecodeError, TypeError):
        return unpack_record(data)
    if end != len(data) or type(rec) is not dict:
        return unpack_record(data)
    return rec


# ----------------------------------------------------------------------------
# Positional records (the ``o:<Class>`` tables)

RECORD_OPTIONS: Final[Mapping[str, Any]] = {"ext_hook": _ext_hook, "strict_map_key": False}
"""``msgpack.unpackb`` options that decode records (and their extension
types): pass as ``options`` to ``scan_msgpack`` / ``get_many_msgpack``."""


def pack_row(values: Sequence[Any]) -> bytes:
    """Serialise a record given as its property values in stored order
    (a list; already validated)."""
    try:
        return _packers.pack(values)
    except (OverflowError, ValueError) as exc:
        if isinstance(exc, CodecError):
            raise
        raise CodecError(f"cannot encode record: {exc}") from None


def pack_plain_rows(rows: Iterable[Sequence[Any]]) -> list[bytes]:
    """``[pack_row(r) for r in rows]`` for records that hold no links
    (tuples welcome, e.g. from ``operator.itemgetter``): one C-level loop."""
    try:
        return list(map(_packers.pack_plain, rows))
    except (OverflowError, ValueError) as exc:
        if isinstance(exc, CodecError):
            raise
        raise CodecError(f"cannot encode record: {exc}") from None


def decode_value(data: bytes) -> Any:
    """One msgpack-encoded stored value (a field of a record), decoded as
    :func:`unpack_row` decodes it inside the record; damage raises
    CodecError.  The lazy records of ``realmpy._native`` call it for the
    fields they do not decode themselves."""
    try:
        return _unpackb(data, ext_hook=_ext_hook, strict_map_key=False)
    except CodecError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types
        raise CodecError(f"corrupt object record: {exc}") from None


def unpack_row(data: bytes) -> list[Any]:
    """Inverse of :func:`pack_row`: the stored values (possibly fewer than
    the schema has properties); a damaged record raises CodecError."""
    try:
        rec = _unpackb(data, ext_hook=_ext_hook, strict_map_key=False)
    except CodecError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types
        raise CodecError(f"corrupt object record: {exc}") from None
    if type(rec) is not list:
        raise CodecError("corrupt object record: not an array")
    return rec


# id(class schema) -> (that schema, its names): keyed by identity, since
# hashing a schema (a frozen value) costs more than listing its names.
_NAMES: dict[int, tuple[Any, tuple[str, ...]]] = {}


def record_names(cls: Any) -> tuple[str, ...]:
    """The stored property order of a class schema (an
    :class:`~realmpy.schema.ObjectSchema`, or a sequence of names)."""
    if isinstance(cls, (tuple, list)):
        return tuple(cls)
    hit = _NAMES.get(id(cls))
    if hit is not None and hit[0] is cls:
        return hit[1]
    names = tuple(p.name for p in cls.properties)
    if len(_NAMES) > 256:
        _NAMES.clear()
    _NAMES[id(cls)] = (cls, names)
    return names


def record_to_dict(data: bytes, cls: Any) -> dict[str, Any]:
    """A stored record as ``{property: value}`` for the class schema ``cls``
    (the stored schema's class, or its property names in stored order).

    Only the stored properties appear: one added after the record was
    written is absent (read it as its default)."""
    names = record_names(cls)
    return dict(zip(names, unpack_row(data)))


def record_from_dict(rec: Mapping[str, Any], cls: Any) -> bytes:
    """Serialise ``{property: stored value}`` in the stored order of ``cls``.

    Trailing properties missing from ``rec`` are left out (they read as
    their defaults); a missing property before a present one is an error."""
    names = record_names(cls)
    values = []
    missing = None
    for n in names:
        if n in rec:
            if missing is not None:
                raise CodecError(f"record lacks property {missing!r}")
            values.append(rec[n])
        elif missing is None:
            missing = n
    return pack_row(values)
