"""realm-core's parser tests on arguments, collection aggregates (also compared
with other properties), bytes and lists of values."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from realmpy.errors import QueryArgumentError
from realmpy.realm import Realm
from realmpy.schema import Mixed, Object, field
from tests.objects.parser_port.cases import INVALID, section, ts

# ---------------------------------------------------------------------------
# Parser_substitution (realm-core's ``floats``/``nuldouble`` are 32-bit
# floats: realmpy stores every float in 64 bits, so they are plain floats
# here and their arguments the same Python floats)


class SubPerson(Object):
    k: int = field(primary_key=True)
    age: int = 0
    name: str = ""
    fees: float = 0.0
    paid: bool | None = None
    time: dt.datetime | None = None
    binary: bytes | None = None
    floats: float | None = None
    nuldouble: float | None = None
    links: SubPerson | None = None
    list: list[SubPerson] = field(default_factory=list)


SUB_TIME = dt.datetime(2017, 12, 2, 0, 47, 53, tzinfo=dt.timezone.utc)  # 1512130073 s


def _fill_substitution(r: Realm) -> None:
    names = ["Billy", "Bob", "Joe", "Jane", "Joel"]
    fees = [2.0, 2.23, 2.25, 2.22, 3.73]
    p = r.add_all(
        [SubPerson(k=i, age=i, name=n, fees=f) for i, (n, f) in enumerate(zip(names, fees))]
    )
    p[0].paid, p[1].paid = True, False
    p[1].time = SUB_TIME
    p[0].binary, p[1].binary = b"oe", b"eo"
    p[0].floats, p[1].floats = 2.33, 2.22
    p[0].nuldouble, p[1].nuldouble = 2.33, 2.22
    p[0].links, p[1].links = p[1], p[0]
    p[0].list.extend([p[0], p[1], p[2]])
    p[1].list.append(p[0])


class _FirstPerson:
    """Stands for ``obj_keys[0]`` among the arguments: replaced by that
    managed object when the case runs (see test_parser_port)."""

    def __repr__(self) -> str:
        return "<SubPerson k=0>"


FIRST_PERSON = _FirstPerson()
SUB_ARGS: tuple[Any, ...] = (
    2,
    2.25,
    "oe",
    None,
    True,
    SUB_TIME,
    b"oe",
    2.33,
    FIRST_PERSON,
    3,
    4,
    False,
)

s = section("Parser_substitution", "arguments", [SubPerson], SubPerson)
s.fill = _fill_substitution
for q, n in [
    ("age > $0", 2),
    ("age > $0 || fees == $1", 3),
    ("name CONTAINS[c] $2", 2),
    ("paid == $3", 3),
    ("paid != $3", 2),
    ("paid == $4", 1),
    ("paid != $4", 4),
    ("paid = $11", 1),
    ("time == $5", 1),
    ("time == $3", 4),
    ("binary == $6", 1),
    ("binary == $3", 3),
    ("floats == $7", 1),
    ("floats == $3", 3),
    ("nuldouble == $7", 1),
    ("nuldouble == $3", 3),
    ("links == $3", 3),
    ("list == $8", 2),
    ("list.@min.age < $0", 2),
    ("list.@max.age >= $0", 1),
    ("list.@sum.age >= $0", 1),
    ("list.@avg.age < $0", 2),
    ("list.@count > $0", 1),
    ("list.@size > $0", 1),
    ("name.@count > $0", 5),
    ("name.@size > $0", 5),
    ("binary.@count >= $0", 2),
    ("binary.@size >= $0", 2),
    ("(age > $0 || fees == $1) && age == $0", 1),
    ("name CONTAINS[c] $002", 2),
    ("age == $10", 1),
    ("age > $1", 2),
    ("age > $3", 0),
    ("age > $7", 2),
    ("fees > $0", 4),
    ("fees > $3", 0),
    ("fees > $7", 1),
    ("floats > $0", 2),
    ("floats > $1", 1),
    ("floats > $3", 0),
    ("name == $3", 0),
    ("time == $3", 4),
    ("binary == $3", 3),
]:
    if q == "time == $3" and any(c.query == q for c in s.cases):
        continue
    if q == "binary == $3" and any(c.query == q for c in s.cases):
        continue
    s.add(q, n, *SUB_ARGS)
for q in ["age > $-1", "age > $", "age > $age"]:
    s.throws(q, Exception, *SUB_ARGS)
s.throws("age > $0", QueryArgumentError)
s.throws("age > $1", QueryArgumentError, 1)
s.throws("age > $2", QueryArgumentError, 1, 2)
for q in [
    "age > $2",
    "age > $5",
    "age > $6",
    "fees > $2",
    "fees > $5",
    "fees > $6",
    "floats > $2",
    "floats > $5",
    "floats > $6",
    "name == $0",
    "name == $1",
    "name == $4",
    "name == $5",
    "name == $6",
    "name == $7",
    "paid == $0",
    "paid == $1",
    "paid == $2",
    "paid == $5",
    "paid == $6",
    "paid == $7",
    "time == $0",
    "time == $1",
    "time == $2",
    "time == $4",
    "time == $6",
    "time == $7",
    "binary == $0",
    "binary == $1",
    "binary == $2",
    "binary == $4",
    "binary == $5",
    "binary == $7",
]:
    s.throws(q, INVALID, *SUB_ARGS)


# ---------------------------------------------------------------------------
# Parser_collection_aggregates (``failure_percentage`` is a 32-bit float in
# realm-core, a float here: the cases' thresholds do not depend on it)


class CaCourse(Object):
    k: int = field(primary_key=True)
    title: str = ""
    credits: float = 0.0
    hours_required: int = 0
    failure_percentage: float = 0.0
    start_date: dt.datetime = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class CaPerson(Object):
    k: int = field(primary_key=True)
    age: int = 0
    name: str = ""
    courses_taken: list[CaCourse] = field(default_factory=list)
    hash: bytes = b""


def _fill_collection_aggregates(r: Realm) -> None:
    people = r.add_all(
        [
            CaPerson(k=j, name=n, age=a, hash=b"a" * j)
            for j, (n, a) in enumerate(
                [("Billy", 18), ("Bob", 17), ("Joe", 19), ("Jane", 20), ("Joel", 18)]
            )
        ]
    )
    courses = r.add_all(
        [
            CaCourse(
                k=i, title=t, credits=c, hours_required=h, failure_percentage=f, start_date=ts(s)
            )
            for i, (t, c, h, f, s) in enumerate(
                [
                    ("Math", 5.0, 42, 0.36, 10),
                    ("Comp Sci", 4.5, 45, 0.25, 11),
                    ("Chemistry", 4.0, 41, 0.40, 12),
                    ("English", 3.5, 40, 0.07, 13),
                    ("Physics", 4.5, 42, 0.42, 14),
                ]
            )
        ]
    )
    people[0].courses_taken.extend([courses[0], courses[1], courses[4]])
    people[1].courses_taken.extend([courses[0], courses[1], courses[1]])
    people[2].courses_taken.append(courses[3])
    people[3].courses_taken.extend([courses[2], courses[4]])


s = section("Parser_collection_aggregates", "aggregates", [CaCourse, CaPerson], CaPerson)
s.fill = _fill_collection_aggregates
for q, n in [
    ("courses_taken.@min.hours_required <= 41", 2),
    ("courses_taken.@max.hours_required >= 45", 2),
    ("courses_taken.@sum.hours_required <= 100", 3),
    ("courses_taken.@avg.hours_required > 41", 3),
    ("courses_taken.@min.credits == 4.5", 2),
    ("courses_taken.@max.credits == 5.0", 2),
    ("courses_taken.@sum.credits > 8.6", 2),
    ("courses_taken.@avg.credits > 4.0", 3),
    ("courses_taken.@min.failure_percentage < 0.10", 1),
    ("courses_taken.@max.failure_percentage > 0.40", 2),
    ("courses_taken.@sum.failure_percentage > 0.5", 3),
    ("courses_taken.@avg.failure_percentage > 0.40", 1),
    ("courses_taken.@min.start_date < T12:0", 2),
    ("courses_taken.@max.start_date > T12:0", 3),
    ("courses_taken.@count > 2", 2),
    ("courses_taken.@size > 2", 2),
    ("courses_taken.@count == 0", 1),
    ("courses_taken.@size == 0", 1),
    ("name.@count == 0", 0),
    ("name.@size == 0", 0),
    ("name.@count > 3", 3),
    ("name.@size > 3", 3),
    ("hash.@count == 0", 1),
    ("hash.@size == 0", 1),
    ("hash.@count > 2", 2),
    ("hash.@size > 2", 2),
]:
    s.add(q, n)
for q in [
    "courses_taken.@min.title <= 41",
    "courses_taken.@max.title <= 41",
    "courses_taken.@sum.title <= 41",
    "courses_taken.@avg.title <= 41",
    "courses_taken.@min <= 41",
    "courses_taken.@max <= 41",
    "courses_taken.@sum <= 41",
    "courses_taken.@avg <= 41",
    "name.@min.hours_required <= 41",
    "name.@max.hours_required <= 41",
    "name.@sum.hours_required <= 41",
    "name.@avg.hours_required <= 41",
    "name.@count.hours_required <= 2",
    "name.@size.hours_required <= 2",
    "age.@size <= 2",
    "CaCourse: credits.@size == 2",
    "CaCourse: failure_percentage.@size <= 2",
]:
    s.throws(q, Exception)


# ---------------------------------------------------------------------------
# Parser_NullableBinaries (realm-core's ``nullable<TAB>data`` column is
# ``nullable_data`` named so in the file; queries write ``nullable\tdata``)


class NbItem(Object):
    k: int = field(primary_key=True)
    data: bytes = b""
    nullable_data: bytes | None = field(default=None, map_to="nullable\tdata")


class NbPerson(Object):
    fav_item: NbItem | None = None


def _fill_binaries(r: Realm) -> None:
    items = r.add_all(
        [
            NbItem(k=i, data=d, nullable_data=d or None)
            for i, d in enumerate([b"knife", b"plate", b"fork", b"", b""])
        ]
    )
    r.add_all([NbPerson(fav_item=i) for i in items])


s = section("Parser_NullableBinaries", "strings", [NbItem, NbPerson], NbItem)
s.fill = _fill_binaries
TAB = "nullable\\tdata"
for q, n in [
    ("data == NULL", 0),
    ("data != NULL", 5),
    (f"{TAB} == NULL", 2),
    (f"{TAB} != NULL", 3),
    ("data == NIL", 0),
    ("data != NIL", 5),
    (f"{TAB} == NIL", 2),
    (f"{TAB} != NIL", 3),
    (f"{TAB} CONTAINS bin('f')", 2),
    (f"{TAB} BEGINSWITH bin('f')", 1),
    (f"{TAB} ENDSWITH bin('e')", 2),
    (f"{TAB} LIKE bin('f*')", 1),
    (f"{TAB} CONTAINS[c] bin('F')", 2),
    (f"{TAB} BEGINSWITH[c] bin('F')", 1),
    (f"{TAB} ENDSWITH[c] bin('E')", 2),
    (f"{TAB} LIKE[c] bin('F*')", 1),
    (f"{TAB} CONTAINS NULL", 5),
    (f"{TAB} BEGINSWITH NULL", 5),
    (f"{TAB} ENDSWITH NULL", 5),
    (f"{TAB} LIKE NULL", 2),
    (f"{TAB} CONTAINS[c] NULL", 3),
    (f"{TAB} BEGINSWITH[c] NULL", 5),
    (f"{TAB} ENDSWITH[c] NULL", 5),
    (f"{TAB} LIKE[c] NULL", 2),
    (f"NULL CONTAINS {TAB}", 0),
    (f"NULL BEGINSWITH {TAB}", 0),
    (f"NULL ENDSWITH {TAB}", 0),
    (f"NULL LIKE {TAB}", 2),
    (f"NULL CONTAINS[c] {TAB}", 0),
    (f"NULL BEGINSWITH[c] {TAB}", 0),
    (f"NULL ENDSWITH[c] {TAB}", 0),
    (f"NULL LIKE[c] {TAB}", 2),
    ("NbPerson: fav_item.data == NULL", 0),
    ("NbPerson: fav_item.data != NULL", 5),
    (f"NbPerson: fav_item.{TAB} == NULL", 2),
    (f"NbPerson: fav_item.{TAB} != NULL", 3),
    ("NbPerson: NULL == fav_item.data", 0),
    ("NbPerson: fav_item.data ==[c] NULL", 0),
    ("NbPerson: fav_item.data !=[c] NULL", 5),
    (f"NbPerson: fav_item.{TAB} ==[c] NULL", 2),
    (f"NbPerson: fav_item.{TAB} !=[c] NULL", 3),
    ("NbPerson: NULL ==[c] fav_item.data", 0),
    ("NbPerson: fav_item.data CONTAINS bin('f')", 2),
    ("NbPerson: fav_item.data BEGINSWITH bin('f')", 1),
    ("NbPerson: fav_item.data ENDSWITH bin('e')", 2),
    ("NbPerson: fav_item.data LIKE bin('f*')", 1),
    ("NbPerson: fav_item.data CONTAINS[c] bin('F')", 2),
    ("NbPerson: fav_item.data BEGINSWITH[c] bin('F')", 1),
    ("NbPerson: fav_item.data ENDSWITH[c] bin('E')", 2),
    ("NbPerson: fav_item.data LIKE[c] bin('F*')", 1),
    (f"NbPerson: fav_item.data == fav_item.{TAB}", 3),
    ("NbPerson: fav_item.data == fav_item.data", 5),
    (f"NbPerson: fav_item.{TAB} == fav_item.{TAB}", 5),
    (
        "data contains NULL && data contains bin('fo') && !(data contains bin('asdfasdfasdf')) "
        "&& data contains bin('rk')",
        1,
    ),
]:
    s.add(q, n)


# ---------------------------------------------------------------------------
# Parser_list_of_primitive_ints


class LpiT(Object):
    k: int = field(primary_key=True)
    integers: list[int] = field(default_factory=list)
    single_int: int = 0
    integers_nullable: list[int | None] = field(default_factory=list)
    single_int_nullable: int | None = None


class LpiT2(Object):
    k: int = field(primary_key=True)
    link: LpiT | None = None
    list: list[LpiT] = field(default_factory=list)


def _fill_primitive_ints(r: Realm) -> None:
    objs = r.add_all(
        [
            LpiT(k=i, integers=[i], single_int=i, integers_nullable=[i], single_int_nullable=i)
            for i in range(10)
        ]
    )
    r.add(LpiT2(k=0, link=objs[1], list=[objs[1]]))
    r.add(LpiT2(k=1, link=objs[2], list=list(objs)))
    r.add(LpiT2(k=2))
    r.add(LpiT(k=10))
    r.add(LpiT(k=11, integers_nullable=[None]))


s = section("Parser_list_of_primitive_ints", "lists of primitives", [LpiT, LpiT2], LpiT)
s.fill = _fill_primitive_ints
N = 10  # objects with one value; the fill adds two more (defaults, a null in a list)
for i in range(N):
    # in a realm with the two extra objects: NONE/!/ALL of their empty lists hold
    for q, n in [
        (f"integers == {i}", 1),
        (f"integers.@min == {i}", 1),
        (f"integers.@max == {i}", 1),
        (f"integers.@avg == {i}", 1),
        (f"integers.@sum == {i}", 1 + (2 if i == 0 else 0)),
        (f"ANY integers == {i}", 1),
        (f"SOME integers == {i}", 1),
        (f"ALL integers == {i}", 1 + 2),
        (f"NONE integers == {i}", N - 1 + 2),
        (f"!(ANY integers == {i})", N - 1 + 2),
        (f"!(SOME integers == {i})", N - 1 + 2),
        (f"!(ALL integers == {i})", N - 1),
        (f"!(NONE integers == {i})", 1),
        (f"ANY integers != {i}", N - 1),
        (f"SOME integers != {i}", N - 1),
        (f"ALL integers != {i}", N - 1 + 2),
        (f"NONE integers != {i}", 1 + 2),
        (f"{i} IN integers", 1),
    ]:
        s.add(q, n)
M = N + 2
for q, n in [
    ("integers.@count == 0", 2),
    ("integers.@size == 0", 2),
    ("integers.@count == 1", N),
    ("integers.@size == 1", N),
    ("integers == NULL", 0),
    ("ALL integers == NULL", 2),
    ("NONE integers == NULL", M),
    ("integers_nullable.@count == 0", 1),
    ("integers_nullable == NULL", 1),
    ("ALL integers_nullable == NULL", 2),
    ("NONE integers_nullable == NULL", M - 1),
    ("integers == single_int", M - 2),
    ("integers_nullable == single_int", M - 2),
    ("integers == single_int_nullable", M - 2),
    ("integers_nullable == single_int_nullable", M - 1),
    ("integers.@min == single_int", M - 2),
    ("integers.@min == single_int_nullable", M),
    ("integers_nullable.@min == single_int", M - 2),
    ("integers_nullable.@min == single_int_nullable", M),
    ("integers.@max == single_int", M - 2),
    ("integers.@max == single_int_nullable", M),
    ("integers_nullable.@max == single_int", M - 2),
    ("integers_nullable.@max == single_int_nullable", M),
    ("integers.@sum == single_int", M),
    ("integers.@sum == single_int_nullable", M - 2),
    ("integers_nullable.@sum == single_int", M),
    ("integers_nullable.@sum == single_int_nullable", M - 2),
    ("integers.@avg == single_int", M - 2),
    ("integers.@avg == single_int_nullable", M),
    ("integers_nullable.@avg == single_int", M - 2),
    ("integers_nullable.@avg == single_int_nullable", M),
    ("integers.@count == single_int", 3),
    ("integers.@count == single_int_nullable", 1),
    ("integers_nullable.@count == single_int", 2),
    ("integers_nullable.@count == single_int_nullable", 1),
    ("LpiT2: link.integers == 0 || link.integers == 3", 0),
    ("LpiT2: link.integers == 1", 1),
    ("LpiT2: link.integers == 2", 1),
    ("LpiT2: link.integers == NULL", 0),
    ("LpiT2: link.integers_nullable == NULL", 0),
    ("LpiT2: link.integers.@count == 1", 2),
    ("LpiT2: link.integers.@count == 0", 1),
    ("LpiT2: link.integers.@min == 1", 1),
    ("LpiT2: link.integers.@max == 1", 1),
    ("LpiT2: link.integers.@sum == 1", 1),
    ("LpiT2: link.integers.@avg == 1", 1),
    ("LpiT2: list.integers == 1", 2),
    ("LpiT2: list.integers == 2", 1),
    ("LpiT2: list.integers == NULL", 0),
    ("LpiT2: list.integers.@count == 1", 2),
    ("LpiT2: list.integers.@min == 1", 2),
    ("LpiT2: list.integers.@max == 1", 2),
    ("LpiT2: list.integers.@avg == 1", 2),
    ("LpiT2: list.integers.@sum == 1", 2),
    ("LpiT2: ALL list.integers == 1", 3),
    ("LpiT2: NONE list.integers == 1", 2),
]:
    s.add(q, n)
s.add("integers == $0", 1, 1)
for q in [
    "integers.@min.no_property == 0",
    "SUBQUERY(integers, $x, $x == 1).@count > 0",
    "integers == integers",
    "integers != integers",
    "integers > integers",
    "integers < integers",
    "integers contains integers",
    "integers beginswith integers",
    "integers endswith integers",
    "integers like integers",
    "integers like 0",
    "integers contains[c] 0",
    "integers beginswith 0",
    "integers ENDSWITH 0",
    "integers == 'string'",
]:
    s.throws(q, Exception)


# ---------------------------------------------------------------------------
# Parser_list_of_primitive_strings (realm-core runs it with and without a
# search index on the list; realmpy does not index lists: one section)


class LpsT(Object):
    k: int = field(primary_key=True)
    strings: list[str | None] = field(default_factory=list)


def _fill_primitive_strings(r: Realm) -> None:
    r.add_all([LpsT(k=i, strings=[f"string_{i}"]) for i in range(10)])
    r.add_all([LpsT(k=10), LpsT(k=11, strings=[None]), LpsT(k=12, strings=[""])])


s = section("Parser_list_of_primitive_strings", "lists of primitives", [LpsT], LpsT)
s.fill = _fill_primitive_strings
POP, TOTAL = 10, 13
for i in range(POP):
    si = f"string_{i}"
    for q, n in [
        (f"strings == '{si}'", 1),
        (f"ANY strings == '{si}'", 1),
        (f"SOME strings == '{si}'", 1),
        (f"ALL strings == '{si}'", 2),
        (f"NONE strings == '{si}'", TOTAL - 1),
        (f"!(ANY strings == '{si}')", TOTAL - 1),
        (f"!(SOME strings == '{si}')", TOTAL - 1),
        (f"!(ALL strings == '{si}')", TOTAL - 2),
        (f"!(NONE strings == '{si}')", 1),
        (f"ANY strings != '{si}'", TOTAL - 2),
        (f"SOME strings != '{si}'", TOTAL - 2),
        (f"ALL strings != '{si}'", TOTAL - 1),
        (f"NONE strings != '{si}'", 2),
        (f"'{si}' IN strings", 1),
        (f"strings CONTAINS[c] '{si}'", 1),
        (f"strings BEGINSWITH[c] '{si}'", 1),
        (f"strings ENDSWITH[c] '{si}'", 1),
        (f"strings LIKE[c] '{si}'", 1),
    ]:
        s.add(q, n)
for q, n in [
    ("strings CONTAINS[c] 'STR'", POP),
    ("strings BEGINSWITH[c] 'STR'", POP),
    ("strings ENDSWITH[c] 'G_1'", 1),
    ("strings LIKE[c] 'StRiNg_*'", POP),
    ("ALL strings CONTAINS[c] 'STR'", POP + 1),
    ("ALL strings BEGINSWITH[c] 'STR'", POP + 1),
    ("ALL strings ENDSWITH[c] 'G_1'", 2),
    ("ALL strings LIKE[c] 'StRiNg_*'", POP + 1),
    ("NONE strings CONTAINS[c] 'STR'", 3),
    ("NONE strings BEGINSWITH[c] 'STR'", 3),
    ("NONE strings ENDSWITH[c] 'G_1'", POP - 1 + 3),
    ("NONE strings LIKE[c] 'StRiNg_*'", 3),
    ("strings.@count == 0", 1),
    ("strings.@size == 0", 1),
    ("strings.@count == 1", TOTAL - 1),
    ("strings.@size == 1", TOTAL - 1),
    ("strings.length == 0", 2),
    ("strings.length == 8", POP),
]:
    s.add(q, n)
for q in ["strings.@min == 2", "strings.@max == 2", "strings.@sum == 2", "strings.@avg == 2"]:
    s.throws(q)


# ---------------------------------------------------------------------------
# Parser_list_of_primitive_element_lengths (TEST_TYPES str, bytes)


class LelStr(Object):
    k: int = field(primary_key=True)
    values: list[str | None] = field(default_factory=list)
    length: int = 0
    link: LelStr | None = None


class LelBytes(Object):
    k: int = field(primary_key=True)
    values: list[bytes | None] = field(default_factory=list)
    length: int = 0
    link: LelBytes | None = None


def _element_lengths(model: type, conv: Callable[[str], Any]) -> None:
    s = section(
        f"Parser_list_of_primitive_element_lengths<{model.__name__}>",
        "lists of primitives",
        [model],
        model,
    )

    def fill(r: Realm) -> None:
        v1, v2 = conv("value1"), conv("value2")
        objs = r.add_all(
            [
                model(k=0),
                model(k=1, values=[None]),
                model(k=2, values=[conv("")]),
                model(k=3, values=[v1]),
                model(k=4, values=[v2]),
                model(k=5, values=[v1, v2]),
            ]
        )
        for o in objs:
            o.link = o

    s.fill = fill
    for path in ["", "link.", "link.link."]:
        for q, n in [
            (f"{path}values.@count == 0", 1),
            (f"{path}values.@size == 0", 1),
            (f"{path}values.@count == 1", 4),
            (f"{path}values.@size == 1", 4),
            (f"{path}values.@count == 2", 1),
            (f"{path}values.@size == 2", 1),
            (f"{path}length == 0", 6),
            (f"{path}link == null", 0),
            (f"{path}values == null", 1),
        ]:
            s.add(q, n)
        for prefix in ["", "ANY", "SOME", "any", "some"]:
            for q, n in [
                (f"0 IN {prefix} {path}values.length", 2),
                (f"{prefix} {path}values.length == 0", 2),
                (f"{prefix} {path}values.length > 0", 3),
                (f"{prefix} {path}values.length == 6", 3),
                (f"{prefix} {path}values.length == length", 2),
            ]:
                s.add(q, n)
        for q, n in [
            (f"ALL {path}values.length == 0", 3),
            (f"ALL {path}values.length == length", 3),
            (f"ALL {path}values.length == 6", 4),
            (f"NONE {path}values.length == 0", 4),
            (f"NONE {path}values.length == length", 4),
            (f"NONE {path}values.length == 6", 3),
        ]:
            s.add(q, n)
    s.throws("values.len == 2")


_element_lengths(LelStr, str)
_element_lengths(LelBytes, lambda v: v.encode())


# ---------------------------------------------------------------------------
# Parser_TwoColumnAggregates.  realm-core pairs each price and balance with
# a 32-bit float twin (``price_float``); realmpy has no 32-bit floats, so the
# twins are floats (64 bits) holding the same values, which 32 bits hold
# exactly (5.5, 4.0, ... 30.0): the comparisons are the same.


class TcDiscount(Object, name="Discounts"):
    k: int = field(primary_key=True)
    promotion: str | None = None
    reduced_by: float = 0.0
    active: bool = False


class TcItem(Object, name="Items"):
    k: int = field(primary_key=True)
    name: str = ""
    price: float = 0.0
    price_float: float = 0.0
    price_decimal: Decimal = Decimal(0)
    price_mixed: Mixed = None
    discount: TcDiscount | None = None
    creation_date: dt.datetime | None = None


class TcPerson(Object, name="Person"):
    k: int = field(primary_key=True)
    customer_id: int = 0
    account_balance: float = 0.0
    items: list[TcItem] = field(default_factory=list)
    account_balance_float: float = 0.0
    account_balance_decimal: Decimal = Decimal(0)
    account_balance_mixed: Mixed = None
    account_creation_date: dt.datetime | None = None


def _fill_two_columns(r: Realm) -> None:
    promos = ["back to school", "pizza lunch special", "manager's special", None]
    discounts = r.add_all(
        [
            TcDiscount(k=i, promotion=promos[i], reduced_by=off, active=on)
            for i, (off, on) in enumerate([(3.0, False), (2.5, True), (0.5, True), (1.5, True)])
        ]
    )
    items = r.add_all(
        [
            TcItem(
                k=i,
                name=name,
                price=price,
                price_float=price,
                price_decimal=Decimal(str(price)),
                price_mixed=price,
                creation_date=ts(int(price * 10)),
            )
            for i, (name, price) in enumerate(
                [("milk", 5.5), ("oranges", 4.0), ("pizza", 9.5), ("cereal", 6.5)]
            )
        ]
    )
    items[0].discount, items[2].discount, items[3].discount = (
        discounts[2],
        discounts[1],
        discounts[0],
    )
    lists = [items, [items[0]] * 10, [items[2], items[2], items[3]]]
    for i in range(3):
        balance = (i + 1) * 10.0
        r.add(
            TcPerson(
                k=i,
                customer_id=i,
                account_balance=balance,
                items=lists[i],
                account_balance_float=balance,
                account_balance_decimal=Decimal(str(balance)),
                account_balance_mixed=balance,
                account_creation_date=ts(30 + 20 * i),
            )
        )


s = section("Parser_TwoColumnAggregates", "aggregates", [TcDiscount, TcItem, TcPerson], TcPerson)
s.fill = _fill_two_columns
for q, n in [
    ("customer_id < items.@count", 3),
    ("customer_id < items.@size", 3),
    ("items.@min.price > items.@count", 1),
    ("items.@min.price > items.@size", 1),
    ("TcItem: name.@count > price", 1),  # len("oranges") > 4.0
    ("TcItem: price < name.@size", 1),
]:
    s.add(q, n)
for suffix in ("", "_float", "_decimal", "_mixed"):
    price, balance = f"price{suffix}", f"account_balance{suffix}"
    for q, n in [
        (f"items.@sum.{price} == 25.5", 2),
        (f"items.@min.{price} == 4.0", 1),
        (f"items.@max.{price} == 9.5", 2),
        (f"items.@avg.{price} == 6.375", 1),
        (f"items.@sum.{price} > {balance}", 2),
        (f"items.@min.{price} > {balance}", 0),
        (f"items.@max.{price} > {balance}", 0),
        (f"items.@avg.{price} > {balance}", 0),
    ]:
        s.add(q, n)
for q, n in [
    ("items.@min.creation_date == T40:0", 1),
    ("items.@max.creation_date == T95:0", 2),
    ("items.@min.creation_date > account_creation_date", 2),
    ("items.@max.creation_date > account_creation_date", 3),
]:
    s.add(q, n)
for agg in ("@min", "@max", "@sum", "@avg"):
    s.throws(f"items.{agg}.name > account_balance")  # not of strings
for agg in ("@min", "@max", "@sum", "@avg"):
    s.throws(f"items.{agg}.discount > account_balance")  # nor of links
s.throws("items.@sum.creation_date > account_creation_date")  # no sum or average of dates
s.throws("items.@avg.creation_date > account_creation_date")
for q, n in [
    ("items.@count < account_balance", 3),
    ("items.@count > 3", 2),
    ("items.@count == 3.0", 1),
    ("items.@count == 3.1", 0),  # no integer promotion
    ("TcItem: discount.promotion.@count > name.@count", 3),  # string lengths
    ("TcItem: discount.@count < name.@count", 4),
    ("TcItem: discount.promotion == name", 0),
    ("TcItem: discount.promotion != name", 4),
    ("TcItem: discount.promotion CONTAINS name", 1),
    ("TcItem: discount.promotion BEGINSWITH name", 1),
    ("TcItem: discount.promotion ENDSWITH name", 0),
    ("TcItem: discount.promotion LIKE name", 0),
    ("TcItem: discount.promotion ==[c] name", 0),
    ("TcItem: discount.promotion !=[c] name", 4),
    ("TcItem: discount.promotion CONTAINS[c] name", 1),
    ("TcItem: discount.promotion BEGINSWITH[c] name", 1),
    ("TcItem: discount.promotion ENDSWITH[c] name", 0),
    ("TcItem: discount.promotion LIKE[c] name", 0),
]:
    s.add(q, n)
