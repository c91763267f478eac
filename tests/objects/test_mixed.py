"""Mixed values (``realmpy.Mixed``, Realm's ``RealmValue``): every kind of
value round-trips with its Python type, links to any class (null once their
target is deleted), nested lists and dictionaries, typed errors, and
queries as Realm answers them (numbers compare across types, ``@type``,
indexed equality), agreeing with the query interpreter on random data."""

from __future__ import annotations

import copy
import datetime as dt
import os
import pickle
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import realmpy.planner as planner
from realmpy import EmbeddedObject, Mixed, Object, ObjectId, Realm, field, query
from realmpy.config import Configuration
from realmpy.errors import MixedValueError, ObjectTypeError, QueryTypeError, SchemaError
from realmpy.query.ast import NestedDict, NestedList
from realmpy.schema import object_schema
from tests.objects.conftest import make_config


class MxDog(Object):
    id: int = field(primary_key=True)
    name: str = ""


class MxCat(Object):
    id: str = field(primary_key=True)


class MxPlace(EmbeddedObject):
    city: str = ""


class MxBox(Object):
    id: int = field(primary_key=True)
    value: Mixed = None
    indexed: Mixed = field(default=None, indexed=True)
    items: list[Mixed] = field(default_factory=list)
    named: dict[str, Mixed] = field(default_factory=dict)
    bag: set[Mixed] = field(default_factory=set)
    place: MxPlace | None = None


MODELS: list[type] = [MxDog, MxCat, MxPlace, MxBox]
UTC = dt.timezone.utc

SAMPLES: list[Any] = [
    None,
    True,
    False,
    0,
    5,
    -(2**63),
    2**63 - 1,
    5.0,
    -0.5,
    float("inf"),
    "",
    "5",
    "héllo\x00",
    b"",
    b"\x00\xff5",
    dt.datetime(2024, 2, 29, 12, 30, 1, 999999, tzinfo=UTC),
    Decimal("5"),
    Decimal("-1.50"),
    Decimal("NaN"),
    ObjectId(b"abcdefghijkl"),
    uuid.UUID(int=7),
    [],
    [1, 1.0, "1", b"1", None, [True, {"x": []}]],
    {},
    {"a": 1, "": {"b": [Decimal("2.5"), None]}, "$dict": "not a tag"},
]


def _kind(v: Any) -> type:
    return list if isinstance(v, list) else dict if isinstance(v, dict) else type(v)


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (``5 == 5.0`` is not
    enough), NaN equal to NaN; a managed object's read-only nested list or
    dictionary counts as a list or dictionary."""
    if _kind(a) is not _kind(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, Decimal) and a.is_nan():
        return bool(b.is_nan())
    return bool(a == b)


def pos(v: Any) -> int:
    """The index of ``v`` in SAMPLES (``list.index`` would take 5.0 for 5)."""
    return next(i for i, s in enumerate(SAMPLES) if same(s, v))


@pytest.fixture
def models() -> list[type]:
    return MODELS


def test_every_kind_round_trips_with_its_type(config: Configuration) -> None:
    with Realm(config) as writer:  # kept open: an in-memory realm lives while it is open
        with writer.write():
            for i, v in enumerate(SAMPLES):
                writer.add(MxBox(id=i, value=v, items=[v], named={"k": v}))
        with Realm(config) as realm:  # another instance reads the stored records
            for i, v in enumerate(SAMPLES):
                box = realm.find(MxBox, i)
                assert box is not None
                assert same(box.value, v), (v, box.value)
                assert same(box.items[0], v)
                assert same(dict(box.named)["k"], v)


def test_links_to_any_class_and_deleted_targets_read_as_null(config: Configuration) -> None:
    with Realm(config) as realm:
        with realm.write():
            rex = realm.add(MxDog(id=1, name="rex"))
            box = realm.add(
                MxBox(
                    id=1,
                    value=rex,
                    items=[rex, MxCat(id="tom"), 3],  # an unmanaged object is added
                    named={"dog": rex, "n": [rex]},
                    bag={rex, 1, "a"},
                )
            )
        first: Any = box.value  # Any: the reads below see other values
        assert first == rex and isinstance(first, MxDog)
        cat = realm.find(MxCat, "tom")
        assert cat is not None and list(box.items) == [rex, cat, 3]
        assert dict(box.named) == {"dog": rex, "n": [rex]}
        assert set(box.bag) == {rex, 1, "a"}
        assert [b.id for b in realm.query(MxBox, "value == $0", rex)] == [1]
        assert [b.id for b in realm.query(MxBox, "value.name == 'rex'")] == [1]
        with realm.write():
            realm.delete(rex)
        assert box.value is None
        assert list(box.items) == [None, cat, 3]
        assert dict(box.named) == {"dog": None, "n": [None]}
        assert [b.id for b in realm.query(MxBox, "value == NULL")] == [1]
        with realm.write():
            realm.add(MxDog(id=1, name="another rex"))  # same key, a new object
        assert box.value is None  # Realm nulled the link when its target was deleted


def test_values_a_mixed_property_cannot_hold_raise_typed_errors(config: Configuration) -> None:
    naive = dt.datetime(2024, 1, 1)
    bad: list[tuple[Any, str]] = [
        ({1, 2}, "a set cannot be a mixed value"),
        (MxPlace(city="x"), "an embedded object cannot be a mixed value"),
        (object(), "got object"),
        (naive, "naive datetime"),
        (2**63, "beyond 64 bits"),
        ({1: "a"}, "is not a str"),
        ([{"x": {1, 2}}], "a set cannot be a mixed value"),
    ]
    for value, why in bad:
        with pytest.raises(MixedValueError, match=why) as err:
            MxBox(id=1, value=value)
        assert "MxBox.value is Mixed" in str(err.value)
        assert isinstance(err.value, ObjectTypeError) and isinstance(err.value, TypeError)
    with pytest.raises(MixedValueError, match="a set cannot hold lists"):
        MxBox(id=1, bag={(1, 2)})
    deep: Any = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(MixedValueError, match="nested deeper"):
        MxBox(id=1, value=deep)
    with Realm(config) as realm, realm.write():
        box = realm.add(MxBox(id=1))
        with pytest.raises(MixedValueError, match=r"MxBox\.value"):
            box.value = {1, 2}
        with pytest.raises(MixedValueError, match=r"MxBox\.items"):
            box.items.append(object())


def test_schema_stores_mixed_and_any_is_its_alias() -> None:
    schema = object_schema(MxBox)
    value = schema.property("value")
    assert (value.type, value.optional, value.describe()) == ("mixed", True, "Mixed")
    assert schema.property("items").describe() == "list[Mixed]"
    assert schema.property("indexed").indexed

    class MxAny(Object):
        id: int = field(primary_key=True)
        v: Any = None

    assert object_schema(MxAny).property("v").type == "mixed"
    with pytest.raises(SchemaError, match="primary key"):

        class MxBadKey(Object):
            v: Mixed = field(primary_key=True)

        object_schema(MxBadKey)


# -- queries -------------------------------------------------------------------------------


@pytest.fixture
def filled(config: Configuration) -> Iterator[Realm]:
    with Realm(config) as realm:
        with realm.write():
            rex = realm.add(MxDog(id=1, name="rex"))
            for i, v in enumerate(SAMPLES):
                realm.add(MxBox(id=i, value=v, indexed=v))
            realm.add(MxBox(id=100, value=rex, indexed=rex))
        yield realm


def ids(realm: Realm, text: str, *args: Any) -> list[int]:
    return sorted(b.id for b in realm.query(MxBox, text, *args))


def test_numbers_compare_across_types_and_strings_only_with_strings(filled: Realm) -> None:
    five = [pos(5), pos(5.0), pos(Decimal("5"))]
    for prop in ("value", "indexed"):
        assert ids(filled, f"{prop} == 5") == sorted(five)
        assert ids(filled, f"{prop} == 5.0") == sorted(five)
        assert ids(filled, f"{prop} == $0", Decimal(5)) == sorted(five)
        assert ids(filled, f"{prop} IN {{5, 'x'}}") == sorted(five)
        assert ids(filled, f"{prop} == '5'") == [pos("5")]
        assert ids(filled, f"{prop} == true") == [pos(True)]  # not the int 1
        assert ids(filled, f"{prop} == $0", b"\x00\xff5") == [pos(b"\x00\xff5")]
        assert ids(filled, f"{prop} == NULL") == [pos(None)]
    # ordering: numbers with numbers (ints, floats, Decimals), nothing else
    expected = [pos(v) for v in (2**63 - 1, float("inf"), 5, 5.0, Decimal("5"))]
    assert ids(filled, "value >= 5") == sorted(expected)
    assert ids(filled, "value BEGINSWITH[c] 'HÉ'") == [pos("héllo\x00")]
    assert ids(filled, "value CONTAINS '5'") == [pos("5")]  # not b"...5"


def test_type_queries_use_realms_names(filled: Realm) -> None:
    def kinds(name: str) -> list[int]:
        return ids(filled, "value.@type == $0", name)

    assert kinds("int") == [pos(v) for v in (0, 5, -(2**63), 2**63 - 1)]
    assert kinds("INTEGER") == kinds("int")
    assert kinds("bool") == [1, 2]
    assert kinds("double") == [pos(v) for v in (5.0, -0.5, float("inf"))]
    assert len(kinds("decimal")) == 3
    assert kinds("numeric") == sorted(kinds("int") + kinds("double") + kinds("decimal"))
    assert kinds("string") == [10, 11, 12]
    assert kinds("binary") == [13, 14]
    assert kinds("date") == [15] == kinds("timestamp")
    assert kinds("objectId") == [19] and kinds("uuid") == [20]
    assert kinds("null") == [0]
    assert kinds("link") == [100] == kinds("objectlink")
    assert kinds("list") == [21, 22] == kinds("array")
    assert kinds("dictionary") == [23, 24]
    assert kinds("collection") == [21, 22, 23, 24]
    assert ids(filled, "value.@type IN {'int', 'double'}") == sorted(kinds("int") + kinds("double"))
    assert ids(filled, "value.@type != 'null' AND value.@type != 'numeric'") == sorted(
        set(range(25)) - set(kinds("null")) - set(kinds("numeric")) | {100}
    )
    with pytest.raises(QueryTypeError, match="type names"):
        filled.query(MxBox, "value.@type == 'integr'")
    with pytest.raises(QueryTypeError, match="type names"):
        filled.query(MxBox, "value.@type == $0", "nope")
    with pytest.raises(QueryTypeError, match="does not order"):
        filled.query(MxBox, "value.@type > 'int'")


def test_type_of_collection_elements(config: Configuration) -> None:
    with Realm(config) as realm:
        with realm.write():
            realm.add(MxBox(id=1, items=[1, "a"], named={"x": 2.5}))
            realm.add(MxBox(id=2, items=[[1]], named={"x": None, "y": 1}))
        assert ids(realm, "items.@type == 'string'") == [1]
        assert ids(realm, "ANY items.@type == 'list'") == [2]
        assert ids(realm, "ALL named.@type == 'numeric'") == [1]
        assert ids(realm, "NONE named.@type == 'null'") == [1]
        assert ids(realm, "value.@type == 'null'") == [1, 2]


def test_indexed_equality_reads_the_index(filled: Realm) -> None:
    schema = object_schema(MxBox)
    chosen = planner.choose(schema, query.parse("indexed == 5"), ())
    assert chosen is not None and chosen[0][1].name == "indexed"
    assert chosen[0][3] == [5, 5.0, Decimal(5)]  # every stored form equal to 5
    assert planner.choose(schema, query.parse("indexed > 5"), ()) is None  # no ranges
    with filled.write():
        box = filled.find(MxBox, pos(5))
        assert box is not None
        box.indexed = "five"  # the index follows updates
    assert ids(filled, "indexed == 5") == sorted([pos(5.0), pos(Decimal(5))])
    assert ids(filled, "indexed == 'five'") == [pos(5)]
    assert ids(filled, "indexed == $0", filled.find(MxDog, 1)) == [100]


# -- random values: storage and queries ------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.datetimes(timezones=st.just(UTC))
    | st.decimals(allow_nan=False, places=3)
    | st.builds(ObjectId, st.binary(min_size=12, max_size=12))
    | st.uuids()
)
mixed_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, module_realm_kind: str) -> Iterator[Realm]:
    path = Path(tmp_path_factory.mktemp("mixed"))
    with Realm(make_config(module_realm_kind, MODELS, path)) as realm:
        yield realm


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(mixed_values, min_size=1, max_size=5))
def test_random_values_round_trip(shared: Realm, values: list[Any]) -> None:
    with shared.write():
        shared.delete_all(MxBox)
        for i, v in enumerate(values):
            shared.add(MxBox(id=i, value=v, items=[v]))
    for i, v in enumerate(values):
        box = shared.find(MxBox, i)
        assert box is not None and same(box.value, v) and same(box.items[0], v)


query_scalars = (
    st.none()
    | st.booleans()
    | st.sampled_from(
        [
            0,
            1,
            5,
            -2,
            5.0,
            0.5,
            float("inf"),
            Decimal("5"),
            Decimal("0.5"),
            "",
            "a",
            "B",
            "5",
            b"a",
            b"5",
        ]
    )
)
stored = (
    query_scalars
    | st.lists(query_scalars, max_size=2)
    | st.dictionaries(st.sampled_from(["a", "b"]), query_scalars, max_size=2)
)
TYPE_NAMES = ["int", "double", "decimal", "numeric", "string", "binary", "bool", "null", "list"]


@st.composite
def mixed_queries(draw: st.DrawFn) -> tuple[str, list[Any]]:
    args: list[Any] = []

    def leaf() -> str:
        prop = draw(st.sampled_from(["value", "indexed"]))
        kind = draw(st.integers(0, 3))
        if kind == 0:
            args.append(draw(query_scalars))
            op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
            return f"{prop} {op} ${len(args) - 1}"
        if kind == 1:
            args.append(draw(st.sampled_from(TYPE_NAMES)))
            return f"{prop}.@type == ${len(args) - 1}"
        if kind == 2:
            args.append(draw(st.sampled_from(["a", "A", "", "5"])))
            op = draw(st.sampled_from(["BEGINSWITH", "CONTAINS", "==", "LIKE"]))
            return f"{prop} {op}[c] ${len(args) - 1}"
        items = ", ".join(
            repr(x) if isinstance(x, str) else str(x)
            for x in draw(st.lists(st.sampled_from([1, 5.0, "a", "5"]), min_size=1, max_size=3))
        )
        return f"{prop} IN {{{items}}}"

    parts = [leaf() for _ in range(draw(st.integers(1, 3)))]
    return f" {draw(st.sampled_from(['AND', 'OR']))} ".join(parts), args


def nested(v: Any) -> Any:
    """``v`` as the realm's query reads give a mixed value: its lists and
    dictionaries are one value each (``NestedList``, ``NestedDict``), not
    collections to quantify over."""
    if isinstance(v, list):
        return NestedList(nested(x) for x in v)
    if isinstance(v, dict):
        return NestedDict({k: nested(x) for k, x in v.items()})
    return v


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mixed_queries(), st.lists(stored, min_size=1, max_size=6))
def test_mixed_queries_agree_with_the_interpreter(
    shared: Realm, q_args: tuple[str, list[Any]], values: list[Any]
) -> None:
    text, args = q_args
    q = query.parse(text)
    rows = [{"value": nested(v), "indexed": nested(v)} for v in values]
    expected = [i for i, row in enumerate(rows) if q.matches(row, args)]
    with shared.write():
        shared.delete_all(MxBox)
        for i, v in enumerate(values):
            shared.add(MxBox(id=i, value=v, indexed=v))
    assert sorted(b.id for b in shared.query(MxBox, text, *args)) == expected


def test_mixed_aggregates_and_nested_lists_reached_with_indexes(
    config: Configuration,
) -> None:
    with Realm(config) as realm:
        with realm.write():
            realm.add(MxBox(id=1, items=[1, "a", 2.5, None, Decimal("0.5")], value=[1, [2]]))
            realm.add(MxBox(id=2, items=["x"], value={"k": [3]}))
        assert ids(realm, "items.@sum == 4") == [1]  # 1 + 2.5 + 0.5: the string is skipped
        # @min/@max order by kind first, as Realm: numbers < strings
        assert ids(realm, "items.@max == 'a' AND items.@min == 0.5") == [1]
        assert ids(realm, "items.@avg < 2") == [1]
        assert ids(realm, "items.@sum == 0") == [2]
        assert ids(realm, "value == 1") == []  # a nested list is one value
        assert ids(realm, "value[*] == 1") == [1]
        assert ids(realm, "ANY value[*] == 1") == [1]
        assert ids(realm, "value[1][0] == 2") == [1]
        assert ids(realm, "value.k[0] == 3") == [2]
        assert ids(realm, "value.@size == 2") == [1]


def test_classes_with_mixed_values_take_the_python_add_path(config: Configuration) -> None:
    """The native ``realm.add`` encodes records of classes without links; a
    mixed value may be a link, so such a class has no add plan, and adding
    one next to a class that has one keeps both right."""
    with Realm(config) as realm:
        assert realm._info["MxBox"].add_plan is None
        assert realm._info["MxCat"].add_plan is not None
        with realm.write():
            cat = realm.add(MxCat(id="tom"))
            realm.add(MxBox(id=1, value=cat, items=[MxCat(id="kit")]))
            realm.add(MxCat(id="zed"))
        box = realm.find(MxBox, 1)
        assert box is not None and box.value == cat
        assert [c.id for c in realm.all(MxCat)] == ["kit", "tom", "zed"]


def test_nested_values_are_read_only_copies(config: Configuration) -> None:
    """A list or dictionary read from a mixed property refuses in-place
    changes (they would change a copy, silently, since realmpy's nested
    collections are values); assigning the property again changes it."""
    with Realm(config) as realm:
        with realm.write():
            box = realm.add(MxBox(id=1, value=[1, {"a": [2]}]))
        with realm.write():
            nested = box.value
            inner = nested[1]
            changes: list[Callable[[], object]] = [
                lambda: nested.append(3),
                lambda: nested.extend([3]),
                lambda: nested.__setitem__(0, 9),
                lambda: nested.__delitem__(0),
                lambda: nested.pop(),
                lambda: nested.sort(),
                lambda: inner.__setitem__("b", 1),
                lambda: inner.update(b=1),
                lambda: inner.pop("a"),
                lambda: inner["a"].append(3),
            ]
            for change in changes:
                with pytest.raises(MixedValueError, match="assign the property again"):
                    change()
            box.value = [*nested, 3]
        assert box.value == [1, {"a": [2]}, 3]
        plain = copy.deepcopy(box.value)
        assert type(plain) is list and type(plain[1]) is dict
        assert pickle.loads(pickle.dumps(box.value)) == [1, {"a": [2]}, 3]
        plain.append(4)  # copies out of it are ordinary values
        assert list(box.value) == [1, {"a": [2]}, 3]


def test_a_set_compared_whole_does_not_depend_on_the_hash_seed() -> None:
    """``set == {…}`` compares in Realm's set order (by kind, then value),
    the same in every process whatever PYTHONHASHSEED is."""
    code = (
        "import os\n"
        "from realmpy import Mixed, Object, Realm, field\n"
        "from realmpy.config import Configuration\n"
        "class SetBox(Object):\n"
        "    id: int = field(primary_key=True)\n"
        "    bag: set[Mixed] = field(default_factory=set)\n"
        "with Realm(Configuration.in_memory([SetBox], identifier=f'seed-{os.getpid()}')) as r:\n"
        "    with r.write():\n"
        "        r.add(SetBox(id=1, bag={'hello', 300, 3, 'a', 2.5}))\n"
        "    print(len(r.query(SetBox, \"bag == {2.5, 3, 300, 'a', 'hello'}\")),\n"
        "          len(r.query(SetBox, \"bag == {'hello', 300, 3, 'a', 2.5}\")))\n"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        for seed in range(6)
    }
    assert seen == {"1 0"}
