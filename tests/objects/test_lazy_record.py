"""realmpy._native.Record: a stored record decoded field by field as it
is read must read exactly as the padded list codec.unpack_row + fill gives."""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped,unused-ignore]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realmpy import Configuration, Object, Realm, codec, field
from realmpy._native import Record, record, record_pairs
from realmpy.objectid import ObjectId

DEC = codec.decode_value
ERR = codec.CodecError

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
    st.datetimes(
        min_value=dt.datetime(1900, 1, 1),
        max_value=dt.datetime(2200, 1, 1),
        timezones=st.just(dt.timezone.utc),
    ),
    st.decimals(allow_nan=False, allow_infinity=False, places=4),
    st.binary(min_size=12, max_size=12).map(ObjectId),
    st.uuids(),
    st.binary(max_size=8).map(codec.Link),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.sets(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=4),
        st.dictionaries(st.text(max_size=5), inner, max_size=4),
    ),
    max_leaves=8,
)


def make(rec: list[Any], n: int, fill: list[Any]) -> Record:
    return record(codec.pack_row(rec), n, fill, DEC, ERR)


def expected(raw: bytes, n: int, fill: list[Any]) -> list[Any]:
    rec = codec.unpack_row(raw)
    if len(rec) < n:
        rec.extend(fill[len(rec) :])
    return rec


@settings(max_examples=300, deadline=None)
@given(st.lists(values, max_size=8), st.integers(min_value=0, max_value=10), st.data())
def test_reads_as_the_padded_list(rec: list[Any], n: int, data: st.DataObject) -> None:
    fill = [("default", i) for i in range(n)]
    raw = codec.pack_row(rec)
    want = expected(raw, n, fill)
    r = record(raw, n, fill, DEC, ERR)
    assert len(r) == len(want) == max(n, len(rec))
    # Read in a random order (each field decoded on its first read), twice.
    order = data.draw(st.permutations(range(len(want))))
    for i in order:
        assert r[i] == want[i]
        assert type(r[i]) is type(want[i])
    assert list(r) == want
    assert r.tolist() == want
    assert r == want and not (r != want)
    assert r == record(raw, n, fill, DEC, ERR)
    if want:
        assert r[-1] == want[-1]
        assert r[1:] == want[1:]
    with pytest.raises(IndexError):
        r[len(want)]
    with pytest.raises(IndexError):
        r[-len(want) - 1]


def test_scalar_encodings() -> None:
    fill: list[Any] = []
    # float32, every int width, str8/16, bin8/16, nan
    raw = (
        b"\x9c"
        + b"\xca\x3f\xc0\x00\x00"
        + b"\xcc\xff"
        + b"\xcd\xff\xff"
        + b"\xce\xff\xff\xff\xff"
        + b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff"
        + b"\xd0\x80"
        + b"\xd1\x80\x00"
        + b"\xd2\x80\x00\x00\x00"
        + b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00"
        + b"\xd9\x02ab"
        + b"\xc5\x00\x01z"
        + b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"
    )
    r = record(raw, 0, fill, DEC, ERR)
    want = msgpack.unpackb(raw)
    assert list(r)[:11] == want[:11]
    assert r[11] != r[11]  # nan
    assert [type(x) for x in r] == [type(x) for x in want]


def test_invalid_utf8_raises_codec_error_on_read() -> None:
    raw = b"\x92\x01\xa2\xff\xfe"
    r = record(raw, 2, [0, 0], DEC, ERR)
    assert r[0] == 1
    with pytest.raises(ERR):
        r[1]
    with pytest.raises(ERR):
        list(r)


def test_damaged_ext_raises_codec_error_on_read() -> None:
    raw = b"\x92\x01\xd4\x63\x00"  # fixext 1 of an unknown type
    r = record(raw, 2, [0, 0], DEC, ERR)
    assert r[0] == 1
    with pytest.raises(ERR):
        r[1]


@settings(max_examples=300, deadline=None)
@given(st.lists(values, max_size=5), st.data())
def test_damaged_bytes_raise_codec_error(rec: list[Any], data: st.DataObject) -> None:
    raw = bytearray(codec.pack_row(rec))
    how = data.draw(st.sampled_from(["truncate", "flip", "append"]))
    if how == "truncate":
        raw = raw[: data.draw(st.integers(min_value=0, max_value=max(0, len(raw) - 1)))]
    elif how == "flip":
        i = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[i] = data.draw(st.integers(min_value=0, max_value=255))
    else:
        raw += data.draw(st.binary(min_size=1, max_size=4))
    try:
        r = record(bytes(raw), 3, [None, None, None], DEC, ERR)
    except ERR:
        return
    try:
        got = list(r)
    except ERR:
        return
    # Whatever survived structurally reads as msgpack reads it (compared by
    # repr: a flipped byte can make a NaN, which equals nothing).
    assert repr(got) == repr(expected(bytes(raw), 3, [None, None, None]))


def test_refcounts_stable_over_many_reads() -> None:
    fill = [object() for _ in range(5)]
    raw = codec.pack_row([1, "name", [1, 2]])
    before = [sys.getrefcount(f) for f in fill]
    r = record(raw, 5, fill, DEC, ERR)
    first = [r[i] for i in range(5)]
    counts = [sys.getrefcount(x) for x in first]
    for _ in range(10_000):
        for i in range(5):
            r[i]
        list(r)
    assert [sys.getrefcount(x) for x in first] == counts
    del r, first
    assert [sys.getrefcount(f) for f in fill] == before


def test_record_pairs() -> None:
    recs: list[list[Any]] = [[1, "a"], [2], [3, "c", 4.5]]
    keys = [b"k1", b"k2", b"k3"]
    # Build the raw batch by hand: the engine inlines each raw record.
    buf = b"\x96" + b"".join(
        msgpack.packb(k, use_bin_type=True) + codec.pack_row(rec)
        for k, rec in zip(keys, recs, strict=True)
    )
    out = record_pairs(buf, 2, ["x", "y"], DEC, ERR)
    assert [k for k, _ in out] == keys
    assert [list(r) for _, r in out] == [[1, "a"], [2, "y"], [3, "c", 4.5]]
    for bad in (buf[:-1], buf + b"\x00", b"\x95" + buf[1:], b"\x92\x01\x90", b"\x81\x01\x02"):
        with pytest.raises(ERR):
            record_pairs(bad, 2, ["x", "y"], DEC, ERR)


@pytest.mark.parametrize(
    "args",
    [
        ("not bytes", 1, [0], DEC, ERR),
        (b"\x90", "1", [0], DEC, ERR),
        (b"\x90", -1, [], DEC, ERR),
        (b"\x90", 1, (0,), DEC, ERR),
        (b"\x90", 1, [0, 0], DEC, ERR),
        (b"\x90", 1, [0], None, ERR),
        (b"\x90", 1, [0], DEC, 42),
        (b"\x90", 1, [0], DEC, int),
    ],
)
def test_garbage_arguments(args: tuple[Any, ...]) -> None:
    with pytest.raises((TypeError, ValueError)):
        record(*args)
    with pytest.raises((TypeError, ValueError)):
        record_pairs(*args)


def test_wrong_arity_and_index_types() -> None:
    with pytest.raises(TypeError):
        record(b"\x90")  # type: ignore[call-arg]
    r = record(b"\x91\x01", 1, [0], DEC, ERR)
    with pytest.raises(TypeError):
        r["a"]  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        hash(r)
    with pytest.raises(TypeError):
        Record()
    assert r != (1,)
    assert repr(r) == "Record([1])"


def test_uuid_datetime_decimal_values() -> None:
    vals = [
        dt.datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc),
        Decimal("1.25"),
        uuid.uuid4(),
        {1, 2},
    ]
    r = make(vals, 4, [None] * 4)
    assert list(r) == vals


def test_index_query_reads_short_and_damaged_records(tmp_path: Path) -> None:
    class Tagged(Object):
        id: int = field(primary_key=True)
        grp: str = field(default="", indexed=True)
        name: str = ""
        tags: list[str] = field(default_factory=list)
        when: dt.datetime | None = None

    stamp = dt.datetime(2021, 5, 6, tzinfo=dt.timezone.utc)
    with Realm(Configuration.local([Tagged], path=tmp_path / "t.realm")) as realm:
        with realm.write():
            realm.add_all(
                [
                    Tagged(id=i, grp=f"g{i % 2}", name=f"n{i}", tags=["a"], when=stamp)
                    for i in range(6)
                ]
            )
        got = [(o.id, o.name, list(o.tags), o.when) for o in realm.query(Tagged, "grp == $0", "g0")]
        assert got == [(i, f"n{i}", ["a"], stamp) for i in (0, 2, 4)]
        info = realm._info["Tagged"]
        with realm.write():
            txn = realm._require_write()
            # Written before name, tags and when were added: reads as defaults.
            txn.put(info.table, codec.encode_key(2), codec.pack_row([2, "g0"]))
        got = [(o.id, o.name, list(o.tags), o.when) for o in realm.query(Tagged, "grp == $0", "g0")]
        assert got[1] == (2, "", [], None)
        with realm.write():
            txn = realm._require_write()
            txn.put(info.table, codec.encode_key(4), b"\x95\x04\xa2g0\xc1")  # damaged
        with pytest.raises(ERR):
            [o.name for o in realm.query(Tagged, "grp == $0", "g0")]
        with realm.write():
            txn = realm._require_write()
            # Well formed but not UTF-8: the damage shows where it is read.
            txn.put(info.table, codec.encode_key(4), b"\x95\x04\xa2g0\xa2\xff\xfe\x90\xc0")
        objs = list(realm.query(Tagged, "grp == $0", "g0"))
        assert objs[2].id == 4
        cache = objs[2]._rp_cache
        assert cache is not None and type(cache[1]) is Record  # the lazy path
        with pytest.raises(ERR):
            _ = objs[2].name
