"""Order-preserving keys and msgpack records."""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped,unused-ignore]
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import realmpy
from realmpy import codec
from realmpy.descriptions import Schema
from realmpy.errors import CodecError
from realmpy.objectid import ObjectId

int64 = st.integers(-(1 << 63), (1 << 63) - 1)
floats = st.floats(allow_nan=False)
decimals = st.decimals(allow_nan=False, places=None).filter(
    lambda d: d.is_finite()
) | st.sampled_from([Decimal("Infinity"), Decimal("-Infinity")])
aware = st.datetimes(
    min_value=dt.datetime(1, 1, 2),
    max_value=dt.datetime(9999, 12, 30),
    timezones=st.just(dt.timezone.utc)
    | st.builds(lambda h: dt.timezone(dt.timedelta(hours=h)), st.integers(-12, 12)),
)
oids = st.binary(min_size=12, max_size=12).map(ObjectId)
uuids = st.uuids()
texts = st.text(max_size=20)
blobs = st.binary(max_size=20)

KINDS = {
    "int": int64,
    "float": floats,
    "decimal": decimals,
    "str": texts,
    "bytes": blobs,
    "datetime": aware,
    "objectid": oids,
    "uuid": uuids,
    "bool": st.booleans(),
}


def sort_key(v: Any) -> Any:
    if isinstance(v, ObjectId):
        return v.binary
    if isinstance(v, uuid.UUID):
        return v.bytes
    if isinstance(v, str):
        return v.encode("utf-8", "surrogatepass")
    return v


@pytest.mark.parametrize("kind", sorted(KINDS))
@given(data=st.data())
def test_byte_order_equals_value_order(kind: str, data: st.DataObject) -> None:
    a = data.draw(KINDS[kind])
    b = data.draw(KINDS[kind])
    ka, kb = codec.encode_key(a), codec.encode_key(b)
    va, vb = sort_key(a), sort_key(b)
    assert (ka < kb) == (va < vb)
    assert (ka == kb) == (va == vb)
    assert codec.decode_key(ka) == (a,)


@given(st.one_of(st.none(), int64), texts, st.one_of(st.none(), int64), texts)
def test_composite_keys_order_like_tuples(a1: int | None, a2: str, b1: int | None, b2: str) -> None:
    def rank(v: int | None) -> tuple[int, int]:
        return (0, 0) if v is None else (1, v)

    ka, kb = codec.encode_keys(a1, a2), codec.encode_keys(b1, b2)
    ta, tb = (
        (rank(a1), a2.encode("utf-8", "surrogatepass")),
        (rank(b1), b2.encode("utf-8", "surrogatepass")),
    )
    assert (ka < kb) == (ta < tb)
    assert codec.decode_key(ka) == (a1, a2)


def test_kinds_are_ordered_by_tag() -> None:
    values = [
        None,
        False,
        -(1 << 63),
        -1,
        0,
        1,
        (1 << 63) - 1,
        -math.inf,
        1.0,
        Decimal("-Infinity"),
        Decimal(1),
        "a",
        b"a",
        dt.datetime.now(dt.timezone.utc),
        ObjectId(),
        uuid.uuid4(),
    ]
    keys = [codec.encode_key(v) for v in values]
    assert keys == sorted(keys)


# The int encoding byte by byte (codec's module docstring), at every length
# boundary: Z = 0x1C, Z ± n for n significant bytes.
INT_KEYS = [
    (-(1 << 63), "147fffffffffffffff"),
    (-(1 << 63) + 1, "148000000000000000"),
    (-(1 << 56), "14feffffffffffffff"),
    (-(1 << 56) + 1, "1500000000000000"),
    (-65536, "19feffff"),
    (-65535, "1a0000"),
    (-256, "1afeff"),
    (-255, "1b00"),
    (-2, "1bfd"),
    (-1, "1bfe"),
    (0, "1c"),
    (1, "1d01"),
    (255, "1dff"),
    (256, "1e0100"),
    (65535, "1effff"),
    (65536, "1f010000"),
    ((1 << 24) - 1, "1fffffff"),
    (1 << 24, "2001000000"),
    ((1 << 56) - 1, "23ffffffffffffff"),
    (1 << 56, "240100000000000000"),
    ((1 << 63) - 1, "247fffffffffffffff"),
]


@pytest.mark.parametrize(("value", "hexkey"), INT_KEYS)
def test_int_keys_byte_by_byte(value: int, hexkey: str) -> None:
    key = bytes.fromhex(hexkey)
    assert codec.encode_key(value) == key
    assert codec.encode_keys(value) == key
    assert codec.encode_key_list([value]) == [key]
    assert codec.decode_key(key) == (value,)
    assert codec.decode_key(key + key) == (value, value)


def test_int_key_table_is_in_order() -> None:
    values = [v for v, _ in INT_KEYS]
    assert values == sorted(values)
    keys = [bytes.fromhex(h) for _, h in INT_KEYS]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


@given(int64, int64)
def test_int_keys_order_and_round_trip(a: int, b: int) -> None:
    ka, kb = codec.encode_key(a), codec.encode_key(b)
    assert (ka < kb) == (a < b)
    assert (ka == kb) == (a == b)
    assert codec.decode_key(ka) == (a,)
    # minimal: the tag is Z ± the significant bytes, the body exactly those
    n = (abs(a).bit_length() + 7) // 8
    assert len(ka) == 1 + n
    assert ka[0] == codec.T_INT_ZERO + (n if a >= 0 else -n)
    # prefix-free: a key is never the start of another int's key
    assert a == b or not kb.startswith(ka)


@given(st.integers(-(1 << 20), 1 << 20), st.integers(-(1 << 20), 1 << 20))
def test_small_int_keys_differ_in_their_first_bytes(a: int, b: int) -> None:
    """Why the encoding: the engine's page slots compare 4-byte heads, and
    ints below 2**24 now differ there (the fixed encoding did not)."""
    assert (codec.encode_key(a)[:4] == codec.encode_key(b)[:4]) == (a == b)


@pytest.mark.parametrize(
    "raw",
    [
        b"\x1d",  # positive, 1 byte, body missing
        b"\x1e\x01",  # positive, 2 bytes, one present
        b"\x24\x7f\xff\xff\xff\xff\xff\xff",  # 8 bytes, 7 present
        b"\x1b",  # negative, body missing
        b"\x14\x7f\xff",
        b"\x1d\x00",  # 0 with a body: non-minimal
        b"\x1e\x00\x01",  # 1 in two bytes
        b"\x24\x00\x00\x00\x00\x00\x00\x00\x01",
        b"\x1b\xff",  # -0 in one byte
        b"\x1a\xff\xfe",  # -1 in two bytes
        b"\x24\x80\x00\x00\x00\x00\x00\x00\x00",  # 2**63: beyond 64 bits
        b"\x24\xff\xff\xff\xff\xff\xff\xff\xff",
        b"\x14\x7f\xff\xff\xff\xff\xff\xff\xfe",  # -2**63 - 1
        b"\x14\x00\x00\x00\x00\x00\x00\x00\x00",
        b"\x1d\x01\x1e\x01",  # a good component, then a truncated one
    ],
)
def test_malformed_int_keys_raise(raw: bytes) -> None:
    with pytest.raises(CodecError):
        codec.decode_key(raw)


@given(st.binary(max_size=12))
@example(bytes([codec.T_DATETIME]) + bytes(8))  # a datetime before year 1
def test_decode_key_never_crashes_and_round_trips(raw: bytes) -> None:
    """Garbage raises CodecError; whatever decodes is the one encoding of
    what it decodes to (no second spelling of a value)."""
    try:
        values = codec.decode_key(raw)
    except CodecError:
        return
    if all(type(v) in (int, type(None)) for v in values):
        assert codec.encode_keys(*values) == raw


@pytest.mark.parametrize("value", [1 << 63, -(1 << 63) - 1, 1 << 64, -(1 << 64), 1 << 200])
def test_ints_beyond_64_bits_are_refused(value: int) -> None:
    with pytest.raises(CodecError, match="64 bits"):
        codec.encode_key(value)
    with pytest.raises(CodecError, match="64 bits"):
        codec.encode_keys("a", value)
    with pytest.raises(CodecError, match="64 bits"):
        codec.encode_key_list([1, value])


def test_kind_range_covers_every_int() -> None:
    lo, hi = codec.kind_range(codec.encode_key(5))
    assert codec.kind_range(codec.encode_key(-(1 << 63))) == (lo, hi)
    for v in (-(1 << 63), -1, 0, 1, (1 << 63) - 1):
        assert lo <= codec.encode_keys(v, "pk") < hi
    for other in (None, True, 0.5, Decimal(1), "", b""):
        k = codec.encode_key(other)
        assert not lo <= k < hi
        klo, khi = codec.kind_range(k)
        assert klo <= k < khi and (khi <= lo or klo >= hi)


def test_float_edge_cases() -> None:
    assert codec.encode_key(-0.0) == codec.encode_key(0.0)
    keys = [codec.encode_key(v) for v in (-math.inf, -1.0, 0.0, 1e-300, math.inf, math.nan)]
    assert keys == sorted(keys)


def test_decimal_equal_values_encode_equal() -> None:
    assert codec.encode_key(Decimal("1.50")) == codec.encode_key(Decimal("1.5"))
    assert codec.encode_key(Decimal("-0")) == codec.encode_key(Decimal("0"))


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (1 << 63, "64 bits"),
        (dt.datetime(2024, 1, 1), "naive"),
        ({1}, "cannot be a key"),  # (lists and dicts have index keys: mixed values)
        ((1,), "cannot be a key"),
        ("x" * 2000, "limit"),
    ],
)
def test_bad_keys(value: Any, fragment: str) -> None:
    with pytest.raises(CodecError, match=fragment):
        codec.encode_key(value)


def test_mixed_index_keys() -> None:
    """A mixed property's index holds links as (class, key) and records
    only the kind of a nested list or dictionary."""
    link = codec.MixedLink("Dog", codec.encode_key(7))
    assert codec.decode_key(codec.encode_keys(link, 1)) == (link, 1)
    assert codec.encode_key(link) < codec.encode_key([1, 2]) == codec.encode_key([])
    assert codec.decode_key(codec.encode_keys({"a": 1}, "pk")) == ({}, "pk")
    assert codec.encode_key("zzz") < codec.encode_key(link)


def test_corrupt_keys() -> None:
    with pytest.raises(CodecError):
        codec.decode_key(b"\x20\x00")
    with pytest.raises(CodecError):
        codec.decode_key(b"\x99")


values = st.recursive(
    st.none() | st.booleans() | int64 | floats | texts | blobs | aware | oids | uuids | decimals,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(texts, values, max_size=5))
def test_record_round_trip(record: dict[str, Any]) -> None:
    assert codec.unpack_record(codec.pack_record(record)) == record


def test_record_specials() -> None:
    rec = {"s": {1, 2}, "l": codec.Link(b"\x20abc"), "b": b"\x20abc"}
    out = codec.unpack_record(codec.pack_record(rec))
    assert out == rec
    assert isinstance(out["l"], codec.Link) and not isinstance(out["b"], codec.Link)


def test_bad_records() -> None:
    with pytest.raises(CodecError):
        codec.pack_record({"x": object()})
    with pytest.raises(CodecError):
        codec.pack_record({"x": 1 << 70})
    with pytest.raises(CodecError):
        codec.unpack_record(b"\xc1")
    with pytest.raises(CodecError):
        codec.unpack_record(b"\x01")


def test_positional_records_and_their_name_helpers() -> None:
    names = ("id", "name", "tags", "when")
    when = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
    rec = {"id": 1, "name": "x", "tags": {"a", "b"}, "when": when}
    raw = codec.record_from_dict(rec, names)
    assert codec.unpack_row(raw) == [1, "x", {"a", "b"}, when]
    assert codec.record_to_dict(raw, names) == rec
    assert msgpack.unpackb(raw, **codec.RECORD_OPTIONS) == [1, "x", {"a", "b"}, when]
    # trailing properties may be missing (they read as defaults) ...
    short = codec.record_from_dict({"id": 2, "name": "y"}, names)
    assert codec.record_to_dict(short, names) == {"id": 2, "name": "y"}
    # ... but not one before a present one
    with pytest.raises(CodecError):
        codec.record_from_dict({"id": 2, "tags": set()}, names)
    with pytest.raises(CodecError):
        codec.unpack_row(codec.pack_record({"id": 1}))  # a map is not a record
    with pytest.raises(CodecError):
        codec.unpack_row(b"\xc1")


def _keytags_header() -> dict[str, int]:
    """csrc/keytags.h's ``#define RP_KEY_<NAME> <value>`` lines, evaluated."""
    header = Path(codec.__file__).resolve().parents[1] / "csrc" / "keytags.h"
    if not header.exists():
        pytest.skip("needs the source tree (csrc/keytags.h)")
    found: dict[str, int] = {}
    for line in header.read_text(encoding="utf-8").splitlines():
        m = re.match(r"#define RP_KEY_(\w+)\s+(.+?)\s*(?:/\*.*)?$", line)
        if m:
            # Values are hex literals or sums of earlier names.
            expr = re.sub(r"RP_KEY_(\w+)", lambda n: str(found[n.group(1)]), m.group(2))
            assert re.fullmatch(r"[0-9a-fA-Fx()+\- ]+", expr), line
            found[m.group(1)] = int(eval(expr, {"__builtins__": {}}))
    return found


def test_key_tags_in_the_c_header_match_the_codec() -> None:
    """The native module's key encoder (csrc/keytags.h) and codec.py agree."""
    c_tags = _keytags_header()
    py_tags = {n: getattr(codec, n) for n in dir(codec) if n.startswith("T_")}
    assert {n: v for n, v in c_tags.items() if n.startswith("T_")} == py_tags
    # The end of a str/bytes body: what the codec writes after the text.
    assert codec.encode_key("") == bytes([c_tags["T_STR"], c_tags["END"]])
    assert codec.encode_key(b"") == bytes([c_tags["T_BYTES"], c_tags["END"]])


# The stored schema's subset of msgpack, and values just outside it (big
# ints, floats, bytes, long strings, big maps) that the small decoder hands
# to msgpack.
_SCHEMA_LIKE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False)
    | st.binary(max_size=4)
    | st.text(max_size=300),
    lambda inner: (
        st.lists(inner, max_size=20) | st.dictionaries(st.text(max_size=40), inner, max_size=20)
    ),
    max_leaves=60,
)


@given(st.dictionaries(st.text(max_size=40), _SCHEMA_LIKE, max_size=20))
def test_unpack_schema_reads_what_unpack_record_reads(value: dict[str, Any]) -> None:
    data = codec.pack_record(value)
    assert codec.unpack_schema(data) == codec.unpack_record(data) == value


@given(st.binary(max_size=64))
@example(b"\x81\xa1a")  # a map cut short
@example(b"\x80\x00")  # a map, then a byte more
@example(b"\x81\xa2\xff\xfe\xc0")  # a key that is not UTF-8
@example(b"\x81\x91\xc0\xc0")  # a list as a key
@example(b"\x90")  # an array, not a map
def test_unpack_schema_of_damaged_bytes_is_unpack_records_answer(data: bytes) -> None:
    """Whatever the small decoder does not read whole, msgpack decides:
    the same value or the same typed error as :func:`codec.unpack_record`."""
    try:
        want: Any = codec.unpack_record(data)
    except CodecError as exc:
        want = CodecError
        with pytest.raises(CodecError, match=re.escape(str(exc))):
            codec.unpack_schema(data)
    else:
        assert codec.unpack_schema(data) == want


def test_unpack_schema_reads_a_stored_schema_without_msgpack() -> None:
    """The schema a realm stores decodes through the small decoder alone
    (msgpack is not asked), so opening a realm need not load it."""

    class Owner(realmpy.Object):
        id: int = realmpy.field(primary_key=True)
        name: str = realmpy.field(default="", indexed=True)
        note: str | None = None
        tags: list[str] = realmpy.field(default_factory=list)

    schema = Schema.from_models([Owner])
    data = codec.pack_record(schema.to_dict())
    end = codec._plain(data, 0)[1]
    assert end == len(data)
    assert Schema.from_dict(codec.unpack_schema(data)) == schema
