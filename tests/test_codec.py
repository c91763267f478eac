"""Order-preserving keys and msgpack records."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal
from typing import Any

import msgpack  # type: ignore[import-untyped,unused-ignore]
import pytest
from hypothesis import given
from hypothesis import strategies as st

from realmpy import codec
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
        1,
        "a",
        b"a",
        dt.datetime.now(dt.timezone.utc),
        ObjectId(),
        uuid.uuid4(),
    ]
    keys = [codec.encode_key(v) for v in values]
    assert keys == sorted(keys)


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
        ([1], "cannot be a key"),
        ("x" * 2000, "limit"),
    ],
)
def test_bad_keys(value: Any, fragment: str) -> None:
    with pytest.raises(CodecError, match=fragment):
        codec.encode_key(value)


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
