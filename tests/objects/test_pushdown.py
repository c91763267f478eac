"""Filter pushdown (realmpy.filterprogram + the engine's filter programs).

The property that matters: wherever the engine decides a record (true or
false), the Python evaluator decides it the same way; unknown only means
"Python re-checks".  Checked on random records (short ones, nulls, int/float
mixes, big ints, unicode, bytes, nested and extension values) against random
predicates, then end to end through a realm and through the storage API.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped,unused-ignore]
import pytest
from hypothesis import given
from hypothesis import strategies as st

from realmpy import codec, query
from realmpy.config import Configuration
from realmpy.errors import CorruptError, InvalidArgumentError, QueryTypeError
from realmpy.filterprogram import compile_filter
from realmpy.realm import Realm
from realmpy.schema import Object, field
from realmpy.storage import (
    FILTER_FALSE,
    FILTER_TRUE,
    FILTER_UNKNOWN,
    Environment,
    filter_verdict,
)
from tests.objects.conftest import make_config

NAMES = ("f0", "f1", "f2", "f3")
SLOTS = {n: i for i, n in enumerate(NAMES)}

# Values where exactness is easy to get wrong: around 2**53 (where doubles
# stop being exact), the int64/uint64 edges, signed zeros, infinities.
EDGE_INTS = [0, 1, -1, 2**53, 2**53 + 1, 2**63 - 1, -(2**63), 2**63, 2**64 - 1]
EDGE_FLOATS = [0.0, -0.0, 0.5, 1.0, 2.0**53, 2.0**63, 2.0**64, -(2.0**63), math.inf, -math.inf]

ints = st.one_of(st.sampled_from(EDGE_INTS), st.integers(-(2**63), 2**64 - 1), st.integers(-3, 3))
floats = st.one_of(st.sampled_from(EDGE_FLOATS), st.floats(), st.floats(-3, 3))
texts = st.one_of(
    st.sampled_from(["", "a", "b", "ab", "é", "\U0001f600", "z"]), st.text(max_size=4)
)
plain = st.one_of(
    st.none(), st.booleans(), ints, floats, texts, st.binary(max_size=3), st.sampled_from([b"a"])
)
# Stored values the engine leaves to Python: nested arrays, extension types.
stored = st.one_of(
    plain,
    plain,
    plain,
    st.lists(plain, max_size=2),
    st.just(dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)),
)
# Query arguments: plain values, values beyond the engine's ints, lists for IN.
argument = st.one_of(
    plain, plain, st.sampled_from([2**64, -(2**63) - 1, 10**30]), st.lists(plain, max_size=3)
)


@st.composite
def predicates(draw: st.DrawFn, depth: int = 0) -> tuple[str, list[Any]]:
    """Query text over f0..f3 with ``$n`` arguments, and the arguments."""
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args) - 1}"

    def leaf() -> str:
        name = draw(st.sampled_from(NAMES))
        kind = draw(st.integers(0, 9))
        if kind <= 3:
            op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
            return f"{name} {op} {arg(draw(argument))}"
        if kind == 4:
            op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
            return f"{arg(draw(plain))} {op} {name}"
        if kind == 5:
            return f"{name} BETWEEN {{{arg(draw(plain))}, {arg(draw(plain))}}}"
        if kind == 6:
            return f"{name} IN {arg(draw(st.lists(plain, max_size=3)))}"
        if kind == 7:
            items = ", ".join(arg(draw(plain)) for _ in range(draw(st.integers(1, 3))))
            return f"{name} IN {{{items}}}"
        if kind == 8:
            return draw(st.sampled_from(["TRUEPREDICATE", "FALSEPREDICATE", f"{name} == null"]))
        # not pushable: string operators, [c], aggregates
        return draw(
            st.sampled_from([f"{name} BEGINSWITH 'a'", f"{name} ==[c] 'A'", f"{name}.@count > 0"])
        )

    def node(d: int) -> str:
        if d >= 3 or draw(st.integers(0, 2)) == 0:
            return leaf()
        kind = draw(st.sampled_from(["AND", "OR", "NOT"]))
        if kind == "NOT":
            return f"NOT ({node(d + 1)})"
        parts = [node(d + 1) for _ in range(draw(st.integers(2, 3)))]
        return "(" + f" {kind} ".join(parts) + ")"

    return node(depth), args


def python_says(q: query.Query, record: list[Any], defaults: list[Any], args: list[Any]) -> bool:
    full = record + defaults[len(record) :]
    return q.matches(dict(zip(NAMES, full)), args)


@given(
    predicates(),
    st.lists(st.lists(stored, max_size=4), min_size=1, max_size=8),
    st.lists(st.one_of(plain, st.lists(plain, max_size=1)), min_size=4, max_size=4),
)
def test_engine_verdicts_equal_the_python_evaluator(
    pred: tuple[str, list[Any]], records: list[list[Any]], defaults: list[Any]
) -> None:
    text, args = pred
    q = query.parse(text)
    program = compile_filter(q, args, SLOTS.get, defaults)
    if program is None:
        return  # nothing pushable: the Python path alone decides
    for record in records:
        verdict = filter_verdict(program, codec.pack_row(record))
        expected = python_says(q, record, defaults, args)
        if verdict == FILTER_TRUE:
            assert expected, (text, args, record)
        elif verdict == FILTER_FALSE:
            assert not expected, (text, args, record)
        else:
            assert verdict == FILTER_UNKNOWN


@given(
    st.sampled_from(NAMES),
    st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
    plain,
    st.lists(plain, max_size=4),
)
def test_plain_comparisons_are_always_decided(
    name: str, op: str, value: Any, record: list[Any]
) -> None:
    """Plain values against plain constants are never left unknown (also
    in short records, whose defaults are plain): the engine does the work."""
    if type(value) is str and any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        return  # a lone surrogate cannot be encoded: not pushed
    q = query.parse(f"{name} {op} $0")
    defaults = [0, None, "", 1.5]
    program = compile_filter(q, [value], SLOTS.get, defaults)
    assert program is not None
    verdict = filter_verdict(program, codec.pack_row(record))
    assert verdict != FILTER_UNKNOWN
    assert (verdict == FILTER_TRUE) == python_says(q, record, defaults, [value])


@pytest.mark.parametrize(
    ("text", "args", "pushed"),
    [
        ("f0 > $0", [1], True),
        ("f0 > $0 AND f1 BEGINSWITH 'a'", [1], True),  # the pushable conjunct
        ("f1 BEGINSWITH 'a'", [], False),
        ("f0 > $0 OR f1 BEGINSWITH 'a'", [1], False),  # could never reject a record
        ("f0 > $0 OR TRUEPREDICATE", [1], False),
        ("NOT (f0 > $0 OR f1 BEGINSWITH 'a')", [1], True),
        ("f0 IN {}", [], False),  # no comparison: FALSEPREDICATE alone is not pushed
        ("f0 == $0", [dt.datetime(2020, 1, 1)], False),  # ext types stay in Python
        ("f0 == $0", [2**64], False),  # beyond msgpack's ints
        ("f0 == %user", [], False),  # variables: Python reports them
        ("f0 == $1", [1], False),  # missing argument: Python reports it
        ("ANY f0 == 1", [], False),
        ("f9 == 1", [], False),  # not a plain property
    ],
)
def test_what_is_pushed(text: str, args: list[Any], pushed: bool) -> None:
    q = query.parse(text)
    assert (compile_filter(q, args, SLOTS.get, [0, 0, 0, 0]) is not None) == pushed


def test_malformed_program_and_record_are_typed_errors() -> None:
    program = compile_filter(query.parse("f1 == 1"), [], SLOTS.get, [])
    assert program is not None
    with pytest.raises(InvalidArgumentError):
        filter_verdict(program[:-1], codec.pack_row([1, 1]))
    with pytest.raises(InvalidArgumentError):
        filter_verdict(b"\x09", b"")
    with pytest.raises(CorruptError):
        filter_verdict(program, b"\x92\xc1\x01")  # not msgpack before field 1
    with pytest.raises(CorruptError):
        filter_verdict(program, codec.pack_row([1, "abc"])[:-1])  # truncated
    assert filter_verdict(program, b"") == FILTER_UNKNOWN  # not an array


def test_storage_scan_filter(tmp_path: Path) -> None:
    with Environment(str(tmp_path / "s.db"), durability="none") as env:
        with env.write() as txn:
            for i in range(3000):
                # every 5th record is short: [i]
                row = [i, f"s{i}"] if i % 5 else [i]
                txn.put("t", b"k%05d" % i, codec.pack_row(row))
        q = query.parse("f0 >= $0 AND f0 < $1 OR f1 == 's7'")
        program = compile_filter(q, [100, 2500], SLOTS.get, [0, "s7"])
        assert program is not None
        with env.read() as snap:
            got = snap.scan_filter("t", program)
            # short records take the default "s7" for f1: they all match
            want = [
                (k, v)
                for k, v in snap.scan("t")
                if python_says(q, codec.unpack_row(v), [0, "s7"], [100, 2500])
            ]
            assert len(want) == 2400 + 100 // 5 + 500 // 5 + 1
            assert got == want
            decoded = snap.scan_filter_msgpack("t", program)
            assert decoded == [(k, codec.unpack_row(v)) for k, v in want]
            # No program: every record; a paired decoder gets each buffer.
            buffers: list[bytes] = []

            def pairs(buf: bytes) -> list[tuple[bytes, Any]]:
                buffers.append(buf)
                flat = msgpack.unpackb(buf)
                return list(zip(flat[::2], flat[1::2], strict=True))

            every = snap.scan_filter_msgpack("t", None, decode=pairs)
            assert every == [(k, codec.unpack_row(v)) for k, v in snap.scan("t")]
            assert buffers and all(type(b) is bytes for b in buffers)
            assert snap.scan_filter("absent", program) == []
            with pytest.raises(InvalidArgumentError):
                snap.scan_filter("absent", b"\x02")
        with env.write() as txn:
            txn.put("t", b"k99999", b"\x92\xc1\x01")  # damaged record
            with pytest.raises(CorruptError):
                txn.scan_filter("t", program)
            txn.abort()


class Thing(Object):
    id: int = field(primary_key=True)
    i: int | None = None
    f: float | None = None
    s: str | None = None
    b: bool | None = None


THINGS = [
    Thing(id=n, i=i, f=f, s=s, b=b)
    for n, (i, f, s, b) in enumerate(
        [
            (0, 0.0, "", False),
            (1, 1.5, "a", True),
            (2**53 + 1, 2.0**53, "é", None),
            (None, None, None, None),
            (-(2**63), -math.inf, "\U0001f600", True),
            (2**63 - 1, math.nan, "ab", False),
            (3, -0.0, "b", None),
        ]
    )
]


@pytest.fixture(scope="module")
def thing_realm(
    tmp_path_factory: pytest.TempPathFactory, module_realm_kind: str
) -> Iterator[Realm]:
    config = make_config(module_realm_kind, [Thing], tmp_path_factory.mktemp("pushdown"))
    with Realm(config) as r:
        with r.write():
            r.add_all([Thing(id=t.id, i=t.i, f=t.f, s=t.s, b=t.b) for t in THINGS])
        yield r


def refused(name: str, op: str, value: Any) -> bool:
    """Does Realm refuse to compare Thing's ``name`` with ``value`` by ``op``?"""
    if name == "b" and op not in ("==", "!="):
        return True  # bools are not ordered
    if value is None:
        return False
    if name == "i" and isinstance(value, float) and not math.isfinite(value):
        return True  # Realm: "Infinity/NaN not supported for int"
    if name in ("i", "f"):
        return isinstance(value, bool) or not isinstance(value, (int, float))
    return not isinstance(value, str if name == "s" else bool)


@given(
    st.sampled_from(["i", "f", "s", "b"]),
    st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
    plain,
    st.sampled_from(["", " AND s != 'zz'", " OR i == 3", " AND s BEGINSWITH 'a'"]),
)
def test_realm_queries_match_the_python_evaluator(
    thing_realm: Realm, name: str, op: str, value: Any, tail: str
) -> None:
    r = thing_realm
    text = f"{name} {op} $0{tail}"
    q = query.parse(text)
    if refused(name, op, value):
        with pytest.raises(QueryTypeError):
            r.query(Thing, text, value)
        return
    records = [{"id": t.id, "i": t.i, "f": t.f, "s": t.s, "b": t.b} for t in THINGS]
    expected = [rec["id"] for rec in records if q.matches(rec, [value])]
    assert [t.id for t in r.query(Thing, text, value)] == expected
    # the notifier's path (raw records) agrees
    raw = r._evaluate_raw("Thing", q, (value,))
    assert [codec.decode_key(k)[0] for k, _ in raw] == expected


def test_storage_scan_join(tmp_path: Path) -> None:
    with Environment(str(tmp_path / "j.db"), durability="none") as env:
        with env.write() as txn:
            for i in range(2000):
                key = codec.encode_key(i)
                txn.put("t", key, codec.pack_row([i, i % 7]))
                txn.put("ix", codec.encode_key(f"g{i % 7}") + key, b"")
            txn.put("ix", codec.encode_key("g3") + codec.encode_key(10**6), b"")  # dangling
        prefix = codec.encode_key("g3")
        with env.read() as snap:
            got = snap.scan_join("ix", prefix, "t", options=codec.RECORD_OPTIONS)
            assert [r for _, r in got] == [[i, 3] for i in range(2000) if i % 7 == 3]
            assert [k for k, _ in got] == [codec.encode_key(r[0]) for _, r in got]
            q = query.parse("f0 < $0")
            program = compile_filter(q, [100], SLOTS.get, [0, 0])
            assert program is not None
            small = snap.scan_join("ix", prefix, "t", program)
            assert [r[0] for _, r in small] == [i for i in range(100) if i % 7 == 3]
            assert snap.scan_join("ix", prefix, "absent") == []
            assert snap.scan_join("absent", prefix, "t") == []
            with pytest.raises(InvalidArgumentError):
                snap.scan_join("ix", b"", "t")


def test_storage_scan_join_many_leaves(tmp_path: Path) -> None:
    """The join looks the leaves of the next index entries up ahead of time
    (prefetch): over a table several levels deep, with dangling index keys
    between present ones, in a write transaction's own (dirty) pages, after
    deletes and after commit, it finds exactly what a lookup per key finds."""

    def expect(txn: Any, prefix: bytes) -> list[tuple[bytes, Any]]:
        keys = [k[len(prefix) :] for k, _ in txn.scan("ix", prefix, prefix + b"\xff")]
        found = txn.get_many_msgpack("t", keys)  # one lookup per key
        return [(k, r) for k, r in zip(keys, found, strict=True) if r is not None]

    pad = "x" * 200  # big records: many leaves, several branch levels
    with Environment(str(tmp_path / "j.db"), durability="none") as env:
        with env.write() as txn:
            for i in range(0, 6000, 2):
                key = codec.encode_key(i)
                txn.put("t", key, codec.pack_row([i, pad]))
            for i in range(6000):  # odd keys dangle
                txn.put("ix", codec.encode_key(f"g{i % 5}") + codec.encode_key(i), b"")
            prefix = codec.encode_key("g2")
            got = txn.scan_join("ix", prefix, "t")
            assert got == expect(txn, prefix)
            assert [k for k, _ in got] == [
                codec.encode_key(i) for i in range(0, 6000, 2) if i % 5 == 2
            ]
        with env.write() as txn:
            for i in range(0, 6000, 6):
                txn.delete("t", codec.encode_key(i))
            for i in range(1, 600, 10):  # some dangling keys come back, dirty
                txn.put("t", codec.encode_key(i), codec.pack_row([i, "new"]))
            for g in range(5):
                prefix = codec.encode_key(f"g{g}")
                assert txn.scan_join("ix", prefix, "t") == expect(txn, prefix)
        with env.read() as snap:
            for g in range(5):
                prefix = codec.encode_key(f"g{g}")
                got = snap.scan_join("ix", prefix, "t")
                assert got == expect(snap, prefix)
                assert got


@pytest.mark.parametrize("extra", ["", " AND age >= 5", " AND age >= 5 SORT(age DESC)"])
def test_realm_indexed_equality_joins_in_the_engine(tmp_path: Path, extra: str) -> None:
    class Row(Object):
        id: int = field(primary_key=True)
        grp: str = field(default="", indexed=True)
        age: int = 0

    path = tmp_path / "j.realm"
    with Realm(Configuration.local([Row], path=path, durability="none")) as r:
        with r.write():
            r.add_all([Row(id=i, grp=f"g{i % 5}", age=i % 11) for i in range(500)])
        got = [(o.id, o.age) for o in r.query(Row, "grp == $0" + extra, "g2")]
        rows = [(i, i % 11) for i in range(500) if i % 5 == 2 and (not extra or i % 11 >= 5)]
        if "SORT" in extra:
            rows.sort(key=lambda t: t[1], reverse=True)
        assert got == rows


def test_storage_get_many_filter(tmp_path: Path) -> None:
    with Environment(str(tmp_path / "g.db"), durability="none") as env:
        with env.write() as txn:
            for i in range(100):
                txn.put("t", b"k%03d" % i, codec.pack_row([i]))
        program = compile_filter(query.parse("f0 >= $0"), [50], SLOTS.get, [0])
        assert program is not None
        keys = [b"k%03d" % i for i in (1, 60, 70, 200, 40)]
        with env.read() as snap:
            assert snap.get_many_msgpack("t", keys, program=program) == [
                None,
                [60],
                [70],
                None,
                None,
            ]
            raw = snap.get_many("t", keys, program)
            assert raw == [None, codec.pack_row([60]), codec.pack_row([70]), None, None]
            with pytest.raises(InvalidArgumentError):
                snap.get_many("t", [], b"\x02")


@pytest.mark.parametrize(
    "text",
    [
        "age >= $0 AND age < $1 AND score > 0.5",
        "age BETWEEN {$0, $1} AND NOT (grp == 'g1')",
        "grp IN {'g1', 'g2'} AND age < $1",
    ],
)
def test_realm_index_plans_filter_candidates_in_the_engine(tmp_path: Path, text: str) -> None:
    class Rec(Object):
        id: int = field(primary_key=True)
        grp: str = field(default="", indexed=True)
        age: int = field(default=0, indexed=True)
        score: float = 0.0

    path = tmp_path / "g.realm"
    rows = [(i, f"g{i % 3}", i % 50, (i * 7 % 10) / 10) for i in range(600)]
    with Realm(Configuration.local([Rec], path=path, durability="none")) as r:
        with r.write():
            r.add_all([Rec(id=i, grp=g, age=a, score=s) for i, g, a, s in rows])
        q = query.parse(text)
        want = [
            i
            for i, g, a, s in rows
            if q.matches({"id": i, "grp": g, "age": a, "score": s}, [10, 20])
        ]
        assert want
        assert [o.id for o in r.query(Rec, text, 10, 20)] == want
        raw = r._evaluate_raw("Rec", q, (10, 20))  # the notifier's path
        assert [codec.decode_key(k)[0] for k, _ in raw] == want
