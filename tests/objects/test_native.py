"""The C fast paths of realmpy._native against their Python reference
semantics: the property descriptor's checks (owner thread, closed realm,
deleted object, another process's commit), what falls back to Python,
object construction, the model ``__init__``, the bulk-add encoders, and
garbage input to every C function (a TypeError or ValueError, never a
crash)."""

from __future__ import annotations

import datetime as dt
import gc
import inspect
import math
import subprocess
import sys
import textwrap
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realmpy import _native, codec
from realmpy.config import Configuration
from realmpy.errors import (
    ClosedRealmError,
    CodecError,
    InvalidObjectError,
    ObjectTypeError,
    RealmThreadError,
)
from realmpy.realm import Realm
from realmpy.schema import Counter, Object, _compile_init_py, _PropertyDescriptor, field
from tests.objects_models import MODELS, Address, Dog, Item, Note, Person

TESTS = Path(__file__).parent.parent


def _error_of(fn: Any) -> tuple[type[BaseException], str] | None:
    try:
        fn()
    except Exception as exc:
        return type(exc), str(exc)
    return None


# ---------------------------------------------------------------------------
# The descriptor


def test_class_access_returns_the_descriptor() -> None:
    d = Dog.__dict__["name"]
    assert Dog.name is d
    assert isinstance(d, _PropertyDescriptor)
    assert isinstance(d, _native.PropertyBase)
    assert d.name == "name"
    assert Person.__dict__["age"].__get__(None, Person) is Person.__dict__["age"]


def test_managed_reads_come_from_the_cached_record(realm: Realm) -> None:
    with realm.write():
        realm.add(Dog(id=1, name="Rex", age=3))
    dog = realm.find(Dog, 1)
    assert dog is not None
    assert (dog.name, dog.age, dog.id) == ("Rex", 3, 1)
    # A write moves the stamp: the old cache is stale, the read re-loads.
    with realm.write():
        dog.age = 4
        assert dog.age == 4
    assert dog.age == 4


def test_reading_from_another_thread_raises(realm: Realm) -> None:
    with realm.write():
        realm.add(Dog(id=1, name="Rex"))
    dog = realm.find(Dog, 1)
    assert dog is not None and dog.name == "Rex"  # cached now
    errors: list[BaseException] = []

    def read() -> None:
        try:
            _ = dog.name
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=read)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], RealmThreadError)


def test_reading_after_close_raises(tmp_path: Path) -> None:
    r = Realm(Configuration.local(MODELS, path=tmp_path / "c.realm", durability="none"))
    with r.write():
        r.add(Dog(id=1, name="Rex"))
    dog = r.find(Dog, 1)
    assert dog is not None and dog.name == "Rex"
    r.close()
    assert r._guard is None and r._vh is None
    with pytest.raises(ClosedRealmError):
        _ = dog.name


def test_reading_a_deleted_object_raises(realm: Realm) -> None:
    with realm.write():
        realm.add(Dog(id=1, name="Rex"))
    dog = realm.find(Dog, 1)
    assert dog is not None and dog.name == "Rex"
    with realm.write():
        realm.delete(dog)
    with pytest.raises(InvalidObjectError):
        _ = dog.name


COMMIT = """
import sys
sys.path.insert(0, {tests!r})
from objects_models import MODELS, Dog
from realmpy.config import Configuration
from realmpy.realm import Realm
with Realm(Configuration.local(MODELS, path={path!r}, durability="none")) as realm:
    with realm.write():
        realm.find(Dog, 1).age = {age}
"""


def test_another_process_commit_is_seen_by_the_next_read(tmp_path: Path) -> None:
    path = tmp_path / "mp.realm"
    with Realm(Configuration.local(MODELS, path=path, durability="none")) as realm:
        with realm.write():
            realm.add(Dog(id=1, name="Rex", age=1))
        dog = realm.find(Dog, 1)
        assert dog is not None and dog.age == 1  # cached, snapshot open
        assert realm._vh is not None and not realm._moved()
        before = realm._version
        code = textwrap.dedent(COMMIT).format(tests=str(TESTS), path=str(path), age=7)
        subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
        assert realm._moved()
        assert dog.age == 7  # the descriptor saw the counter move: auto-refresh
        assert realm._version > before and not realm._moved()


def test_non_plain_properties_fall_back_to_python(realm: Realm) -> None:
    with realm.write():
        ann = realm.add(Person(name="Ann", tags={"a"}, scores={"x": 1.5}))
        ann.address = Address(street="Main")
        ann.dogs.append(Dog(id=1, name="Rex", owner=ann))
        ann.visits.increment(2)
        ann.born = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    assert isinstance(ann.visits, Counter) and ann.visits == 2
    assert list(ann.tags) == ["a"] and dict(ann.scores) == {"x": 1.5}
    assert ann.address is not None and ann.address.street == "Main"
    assert [d.name for d in ann.dogs] == ["Rex"]
    dog = realm.find(Dog, 1)
    assert dog is not None and dog.owner is not None and dog.owner.name == "Ann"
    assert ann.born == dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    assert ann.balance == Decimal(0)


def test_unmanaged_objects() -> None:
    p = Person(name="Ann", age=3)
    assert (p.name, p.age) == ("Ann", 3)
    assert isinstance(p.visits, Counter) and p.visits == 0
    d = Dog(id=1, name="Rex")
    assert d.owner is None
    del d.__dict__["name"]
    with pytest.raises(AttributeError):
        _ = d.name


def test_frozen_realm_reads(realm: Realm) -> None:
    with realm.write():
        realm.add(Dog(id=1, name="Rex", age=1))
    frozen = realm.freeze()
    try:
        dog = frozen.find(Dog, 1)
        with realm.write():
            realm.find(Dog, 1).age = 2  # type: ignore[union-attr]
        assert dog is not None and dog.age == 1
        assert frozen._vh is None
    finally:
        frozen.close()


def test_reads_keep_refcounts_stable(realm: Realm) -> None:
    with realm.write():
        realm.add(Dog(id=1, name="Rex" * 20, age=123456789))
        realm.add_all([Note(text=f"n{i}", n=i) for i in range(10)])
    dog = realm.find(Dog, 1)
    assert dog is not None
    name = dog.name
    u = Dog(id=2, name="unmanaged" * 3)
    uname = u.name
    before = (sys.getrefcount(dog), sys.getrefcount(name), sys.getrefcount(u))
    before_u = sys.getrefcount(uname)
    for _ in range(10_000):
        _ = dog.name
        _ = dog.age
        _ = u.name
    del _
    assert (sys.getrefcount(dog), sys.getrefcount(name), sys.getrefcount(u)) == before
    assert sys.getrefcount(uname) == before_u
    results = realm.all(Note)
    rows = results._rows()
    rc_rows = sys.getrefcount(rows)
    for _ in range(1000):
        for o in results:
            _ = o.text
    assert sys.getrefcount(rows) == rc_rows
    stamp = realm._stamp
    for _ in range(1000):
        realm.find(Dog, 1)
        assert realm._stamp == stamp


def test_realm_state_fields_check_their_types(realm: Realm) -> None:
    for attr, bad in [
        ("_stamp", "1"),
        ("_stamp", None),
        ("_version", 1.5),
        ("_version", -1),
        ("_guard", "x"),
        ("_vh", "x"),
        ("_vh", 0),
        ("_vh", 1),  # misaligned
        ("_vh", -8),
    ]:
        with pytest.raises((TypeError, ValueError, OverflowError)):
            setattr(realm, attr, bad)
    for attr in ("_stamp", "_version", "_guard", "_vh"):
        with pytest.raises(AttributeError):
            delattr(realm, attr)
    assert realm._owned()


# ---------------------------------------------------------------------------
# Object construction


def test_results_iteration_and_make_object(realm: Realm) -> None:
    with realm.write():
        realm.add_all([Dog(id=i, name=f"d{i}", age=i % 3) for i in range(50)])
    it = iter(realm.query(Dog, "age == 1"))
    assert isinstance(it, _native.ObjectIter)
    dogs = list(it)
    assert [d.id for d in dogs] == [i for i in range(50) if i % 3 == 1]
    assert next(it, None) is None  # exhausted stays exhausted
    assert all(d.age == 1 and d.is_managed for d in dogs)
    with pytest.raises(TypeError):
        _native.ObjectIter()


def test_objects_made_during_a_write_see_later_changes(realm: Realm) -> None:
    with realm.write():
        realm.add_all([Dog(id=i, name=f"d{i}") for i in range(3)])
    with realm.write():
        for d in realm.all(Dog):
            d.name = d.name.upper()
            assert d.name == d.name.upper()
    assert [d.name for d in realm.all(Dog)] == ["D0", "D1", "D2"]


GARBAGE: list[Any] = [None, 0, -1, 1.5, "x", b"x", [], (), {}, [1], [(1, 2, 3)], object(), int]


def test_garbage_input_raises_and_never_crashes(realm: Realm) -> None:
    pos = {"id": 0}
    calls: list[tuple[Any, tuple[Any, ...]]] = []
    for g in GARBAGE:
        calls += [
            (_native.make_object, (g, realm, b"k", None, 1, pos)),
            (_native.make_object, (Dog, g, b"k", None, 1, pos)),
            (_native.make_object, (Dog, realm, g, None, 1, pos)),
            (_native.make_object, (Dog, realm, b"k", None, g, pos)),
            (_native.make_object, (Dog, realm, b"k", [1], 1, g)),
            (_native.iter_objects, (g, realm, [], 1, pos)),
            (_native.iter_objects, (Dog, realm, g, 1, pos)),
            (_native.manage, (g, realm, [], [], 1, pos)),
            (_native.manage, ([Dog(id=1, name="x")], realm, [g], [g], 1, pos)),
            (_native.pack_keys, (g,)),
            (_native.pack_keys, ([g],)),
            (_native.key_suffixes, (g, 1)),
            (_native.key_suffixes, ([g], 1)),
            (_native.key_suffixes, ([(b"ab", b"")], g)),
            (_native.all_full, (g, 1)),
            (_native.all_full, ([], g)),
            (_native.found_rows, (g, [])),
            (_native.found_rows, ([b"k"], g)),
            (_native.pack_records, (g, None, 0, 10)),
            (_native.pack_records, ([g], None, 0, 10)),
            (_native.pack_records, ([b"k"], [g], 0, 10)),
            (_native.pack_records, ([b"k"], None, g, 10)),
            (_native.encode_key_list, (g, 10)),
            (_native.pack_rows, (g, ("a",))),
            (_native.pack_rows, ([g], ("a",))),
            (_native.pack_rows, ([{}], g)),
            (_native.column_keys, (g, "a", None, 10)),
            (_native.column_keys, ([g], "a", None, 10)),
            (_native.column_keys, ([{"a": 1}], "a", [g], 10)),
            (_native.strictly_increasing, (g,)),
            (_native.unmanaged_dicts, (g,)),
            (_native.rows_full, (g, 1)),
            (_native.rows_full, ([g], 1)),
            (_native.rows_full, ([(b"k", [1])], g)),
            (_native.columns_ok, (g, None, 10)),
            (_native.columns_ok, ([g], [g], 10)),
            (_native.columns_ok, ([b"k"], g, 10)),
            (_native.unmanaged_dicts, ([g],)),
            (_native.strictly_increasing, ([b"a", g],)),
            (_native.ModelInit, (g, (), print, print, print, "x")),
            (_native.ModelInit, (Dog, (g,), print, print, print, "x")),
            (_native.ModelInit, (Dog, (("a", 0, 0, None, print, g),), g, print, print, "x")),
        ]
    for fn, args in calls:
        try:
            out = fn(*args)
        except (TypeError, ValueError, OverflowError):
            continue
        # A call that accepted the value must still give a sane answer.
        if fn is _native.iter_objects:
            try:
                assert all(isinstance(o, Dog) for o in out)
            except (TypeError, ValueError):
                pass
        else:
            assert out is None or isinstance(
                out, (bool, bytes, list, tuple, Object, _native.ModelInit)
            )
    untyped: list[Any] = [_native.make_object, _native.iter_objects, _native.pack_rows]
    for fn in untyped:
        with pytest.raises(TypeError):
            fn()
    rows: list[Any] = [(b"k", None, 1)]
    with pytest.raises(ValueError):
        list(_native.iter_objects(Dog, realm, rows, 1, pos))
    made: Any = _native.make_object(Dog, realm, b"k", None, 1, pos)
    with pytest.raises(TypeError):
        made.__class__(1)


def test_odd_caches_behave_as_the_python_reference(realm: Realm) -> None:
    with realm.write():
        realm.add(Dog(id=1, name="Rex"))
    dog = realm.find(Dog, 1)
    assert dog is not None
    stamp = realm._stamp
    bads: list[Any] = [
        None,
        (stamp,),
        ("x", [1], {}),
        (stamp - 1, ["x"], {"name": 0}),
        (stamp, "ab", {"name": 0}),
        (stamp, ["only"], {"name": 5}),
        (stamp, ["only"], {"name": -1}),
        (stamp, ["only"], {}),
        (stamp, ("a", "b"), {"name": 1}),
        (1 << 70, ["x"], {"name": 0}),
        [stamp, ["x"], {"name": 0}],
    ]
    refused = 0
    for bad in bads:
        try:
            object.__setattr__(dog, "_rp_cache", bad)
        except (TypeError, OverflowError):
            refused += 1  # a shape the C fields cannot hold is refused up front
            continue

        def outcome(read: Any, bad: Any = bad) -> Any:
            object.__setattr__(dog, "_rp_cache", bad)
            try:
                return ("value", read())
            except Exception as exc:
                return (type(exc), str(exc))

        assert outcome(lambda: dog.name) == outcome(lambda: realm.read_plain(dog, "name")), bad
    assert refused == 4  # (stamp,), a str stamp, 1 << 70, a list


# ---------------------------------------------------------------------------
# Bulk add encoders: byte for byte the Python ones


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
    st.sampled_from([0, 1, -1, 31, 32, -32, -33, 127, 128, 255, 256, 65535, 65536, 2**32 - 1]),
    st.sampled_from([2**32, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1]),
    st.floats(allow_nan=False),
    st.text(max_size=300),
    st.binary(max_size=300),
)


@settings(max_examples=200)
@given(st.lists(st.lists(SCALARS, min_size=1, max_size=20), min_size=1, max_size=5))
def test_pack_rows_is_byte_for_byte_msgpack(rows: list[list[Any]]) -> None:
    width = min(map(len, rows))
    names = tuple(f"p{i}" for i in range(width))
    dicts = [dict(zip(names, r)) for r in rows]
    out = _native.pack_rows(dicts, names)
    tuples = [tuple(r[:width]) for r in rows]
    try:
        ref = codec.pack_plain_rows(tuples)
    except codec.CodecError:
        assert out is None
        return
    if out is not None:
        assert out[0] == tuples and out[1] == ref


def test_pack_rows_leaves_other_values_to_msgpack() -> None:
    for v in [Decimal(1), [1], {"a": 1}, 2**64, dt.datetime.now(), "\udc80", 1.5j]:
        assert _native.pack_rows([{"a": v}], ("a",)) is None
    assert _native.pack_rows([{}], ("a",)) is None
    assert _native.pack_rows([{"a": math.nan}], ("a",)) is not None


@settings(max_examples=200)
@given(
    st.one_of(
        st.lists(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1), min_size=1),
        st.lists(st.text(max_size=40), min_size=1),
    )
)
def test_column_keys_match_encode_key(values: list[Any]) -> None:
    dicts = [{"v": v} for v in values]
    expect = (
        [codec.encode_key(v) for v in values] if all("\x00" not in str(v) for v in values) else None
    )
    assert _native.column_keys(dicts, "v", None, codec.MAX_KEY) == expect
    assert codec.encode_key_list(values) == [codec.encode_key(v) for v in values]
    sfx = [b"pk%d" % i for i in range(len(values))]
    got = _native.column_keys(dicts, "v", sfx, codec.MAX_KEY)
    if expect is not None:
        assert got == [e + s for e, s in zip(expect, sfx)]
    keys = [codec.encode_key(v) for v in values]
    assert _native.strictly_increasing(keys) == all(a < b for a, b in zip(keys, keys[1:]))


INT_BOUNDARIES = [
    0,
    1,
    -1,
    255,
    -255,
    256,
    -256,
    65535,
    -65535,
    65536,
    -65536,
    (1 << 24) - 1,
    1 << 24,
    (1 << 56) - 1,
    -((1 << 56) - 1),
    1 << 56,
    -(1 << 56),
    (1 << 63) - 1,
    -(1 << 63),
    -(1 << 63) + 1,
]


@settings(max_examples=300)
@given(
    st.lists(
        st.sampled_from(INT_BOUNDARIES)
        | st.integers(-(1 << 63), (1 << 63) - 1)
        | st.integers(-70000, 70000),
        min_size=1,
    )
)
def test_c_int_keys_are_the_codec_keys(values: list[int]) -> None:
    """Every C path that builds int keys (encode_key_list, column_keys with
    and without suffixes) gives codec.encode_key's bytes, in particular at
    the length boundaries of the variable-length encoding."""
    expect = [codec.encode_key(v) for v in values]
    assert [_native.int_key(v) for v in values] == expect
    assert [codec._int_key(v) for v in values] == expect  # the Python fallback
    assert _native.encode_key_list(values, codec.MAX_KEY) == expect
    assert codec.encode_key_list(values) == expect
    dicts = [{"v": v} for v in values]
    assert _native.column_keys(dicts, "v", None, codec.MAX_KEY) == expect
    sfx = [codec.encode_key(-i) for i in range(len(values))]
    got = _native.column_keys(dicts, "v", sfx, codec.MAX_KEY)
    assert got == [codec.encode_keys(v, -i) for i, v in enumerate(values)]
    assert [codec.decode_key(k) for k in got] == [(v, -i) for i, v in enumerate(values)]


def test_c_int_key_takes_exact_ints_only() -> None:
    for other in (True, 1.0, "1", None, b"\x01", [1]):
        assert _native.int_key(other) is None
    assert codec.encode_key(True) == b"\x10\x01"


def test_c_int_keys_at_the_boundaries() -> None:
    keys = _native.encode_key_list(INT_BOUNDARIES, codec.MAX_KEY)
    assert keys == [codec.encode_key(v) for v in INT_BOUNDARIES]
    assert keys is not None and sorted(keys) == [
        codec.encode_key(v) for v in sorted(INT_BOUNDARIES)
    ]


@pytest.mark.parametrize("big", [1 << 63, -(1 << 63) - 1, 1 << 64, -(1 << 100)])
def test_c_int_keys_leave_big_ints_to_the_codec_error(big: int) -> None:
    # The C paths decline (None); the Python path then names the value.
    assert _native.int_key(big) is None
    assert _native.encode_key_list([1, big], codec.MAX_KEY) is None
    assert _native.column_keys([{"v": 1}, {"v": big}], "v", None, codec.MAX_KEY) is None
    with pytest.raises(CodecError, match="64 bits"):
        codec.encode_key_list([1, big])


def test_pack_records_is_the_put_many_layout() -> None:
    keys, vals = [b"a", b"bc", b"def"], [b"", b"x", b"yz"]
    buf, stop = _native.pack_records(keys, vals, 0, 1 << 20)
    assert stop == 3
    expect = b"".join(
        len(k).to_bytes(4, "little") + len(v).to_bytes(4, "little") + k + v
        for k, v in zip(keys, vals)
    )
    assert buf == expect
    buf, stop = _native.pack_records(keys, None, 1, 2)
    assert stop == 2 and buf == b"\x02\x00\x00\x00\x00\x00\x00\x00bc"
    with pytest.raises(ValueError):
        _native.pack_records(keys, None, 3, 10)
    assert _native.pack_keys([b"ab", b""]) == b"\x02\x00\x00\x00ab\x00\x00\x00\x00"


# ---------------------------------------------------------------------------
# The model __init__: the C one against the generated Python reference


class Plain(Object):
    id: int = field(primary_key=True)
    name: str = ""
    ratio: float = 0.5
    flag: bool = False
    tags: list[str] = field(default_factory=list)
    when: dt.datetime | None = None
    hits: Counter = Counter(0)


INIT_CASES: list[dict[str, Any]] = [
    {"id": 1},
    {"id": 1, "name": "x", "ratio": 2, "flag": True, "tags": ["a"], "hits": 3},
    {},
    {"id": "1"},
    {"id": True},
    {"id": 1 << 63},
    {"id": -(1 << 63)},
    {"id": 1, "name": 5},
    {"id": 1, "ratio": "x"},
    {"id": 1, "flag": 1},
    {"id": 1, "tags": ["a", 1]},
    {"id": 1, "tags": "ab"},
    {"id": 1, "when": dt.datetime(2020, 1, 1)},
    {"id": 1, "when": dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)},
    {"id": 1, "bogus": 1, "other": 2},
    {"name": "x", "bogus": 1},
    {"id": 1, "hits": Counter(4)},
    {"id": 1, "hits": 1.5},
]


@pytest.mark.parametrize("kwargs", INIT_CASES)
def test_model_init_matches_the_python_reference(kwargs: dict[str, Any]) -> None:
    py_init = _compile_init_py(Plain)
    c_obj, py_obj = Plain.__new__(Plain), Plain.__new__(Plain)
    c_err = _error_of(lambda: Plain.__init__(c_obj, **kwargs))
    py_err = _error_of(lambda: py_init(py_obj, **kwargs))
    assert c_err == py_err
    assert c_obj.__dict__ == py_obj.__dict__
    if c_err is None:
        assert Plain(**kwargs).__dict__ == py_obj.__dict__


def test_model_init_is_a_method() -> None:
    init = Plain.__dict__["__init__"]
    assert isinstance(init, _native.ModelInit)
    assert init.__model__ is Plain and init.__qualname__.endswith("Plain.__init__")
    assert init.__name__ == "__init__"  # type: ignore[attr-defined]
    sig = inspect.signature(Plain)
    assert sig == inspect.signature(_compile_init_py(Plain)).replace(
        parameters=list(inspect.signature(_compile_init_py(Plain)).parameters.values())[1:]
    )
    assert list(sig.parameters)[:2] == ["id", "name"]
    p = Plain.__new__(Plain)
    p.__init__(id=3)  # type: ignore[misc]  # (mypy: no direct __init__ calls)
    assert p.id == 3
    with pytest.raises(TypeError, match="positional"):
        Plain(1)  # type: ignore[call-arg]
    with pytest.raises(ObjectTypeError):
        Plain.__init__(p, nope=1)  # type: ignore[call-arg]
    # Another class's instance goes through the generic _Model.__init__.
    item = Item.__new__(Item)
    init(item, id=5)
    assert item.id == 5 and item.label == ""
    gc.collect()
    rc = sys.getrefcount(Plain)
    for _ in range(1000):
        Plain(id=1, name="x")
    gc.collect()
    assert sys.getrefcount(Plain) == rc
