"""realm-core's parser tests on plain values: numerics, strings, links, IN,
lists of values compared with lists, arithmetic, BETWEEN, Decimal, ObjectId."""

from __future__ import annotations

import datetime as dt
import struct
from decimal import Decimal
from typing import Any

from realmpy.objectid import ObjectId
from realmpy.realm import Realm
from realmpy.schema import Mixed, Object, field
from tests.objects.parser_port.cases import SYNTAX, Case, fill_grocery, section, ts

# ---------------------------------------------------------------------------
# Parser_empty_input


class EmptyT(Object):
    int_col: int = 0


s = section("Parser_empty_input", "basics", [EmptyT], EmptyT)
s.fill = lambda r: r.add_all([EmptyT() for _ in range(5)])
s.throws("", SYNTAX)
s.add("TRUEPREDICATE", 5)
s.add("!TRUEPREDICATE", 0)
s.add("FALSEPREDICATE", 0)
s.add("!FALSEPREDICATE", 5)


# ---------------------------------------------------------------------------
# Parser_Numerics (TEST_TYPES: int, int | None, indexed, indexed | None,
# Decimal, Decimal | None)

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
NUMERIC_VALUES = [
    -1,
    0,
    1,
    4294967295,
    -4294967295,
    4294967296,
    -4294967296,
    INT64_MAX,
    INT64_MIN,
]


class NumInt(Object):
    values: int = 0


class NumIntNull(Object):
    values: int | None = None


class NumIntIdx(Object):
    values: int = field(default=0, indexed=True)


class NumIntIdxNull(Object):
    values: int | None = field(default=None, indexed=True)


class NumDec(Object):
    values: Decimal = Decimal(0)


class NumDecNull(Object):
    values: Decimal | None = None


def _numerics(model: type, nullable: bool, decimal: bool) -> None:
    s = section(f"Parser_Numerics<{model.__name__}>", "numerics", [model], model)
    values: list[Any] = [Decimal(v) if decimal else v for v in NUMERIC_VALUES]

    def fill(r: Realm) -> None:
        r.add_all([model(values=v) for v in values])
        if nullable:
            r.add(model(values=None))

    s.fill = fill
    sz = len(values) + (1 if nullable else 0)
    for i, v in enumerate(values):
        s.add(f"values == {v}", 1)
        s.cases.append(Case(f"values == ${i}", 1, tuple(values)))
    s.add("values == null", 1 if nullable else 0)
    s.add("values == ANY {-1, 0, 1}", 3)
    s.add("values == ANY {0, 1}", 2)
    s.add("values == ANY {1}", 1)
    s.add("values == ANY {}", 0)
    s.add("values == NONE {-1, 0, 1}", sz - 3)
    s.add("values == NONE {-1, 0}", sz - 2)
    s.add("values == NONE {-1}", sz - 1)
    s.add("values == NONE {}", sz)
    s.add("values == ALL {-1, 0, 1}", 0)
    s.add("values == ALL {-1, 0}", 0)
    s.add("values == ALL {-1}", 1)
    s.add("values == ALL {}", sz)
    s.add("values != NONE {-1, 0, 1}", 0)
    s.add("values != NONE {-1, 0}", 0)
    s.add("values != NONE {-1}", 1)
    s.add("values != NONE {}", sz)
    s.add("values != ANY {-1, 0, 1}", sz)
    s.add("values != ANY {0, 1}", sz)
    s.add("values != ANY {1}", sz - 1)
    s.add("values != ANY {}", 0)
    s.add("values != ALL {-1, 0, 1}", sz - 3)
    s.add("values != ALL {-1, 0}", sz - 2)
    s.add("values != ALL {-1}", sz - 1)
    s.add("values != ALL {}", sz)


_numerics(NumInt, False, False)
_numerics(NumIntNull, True, False)
_numerics(NumIntIdx, False, False)
_numerics(NumIntIdxNull, True, False)
_numerics(NumDec, False, True)
_numerics(NumDecNull, True, True)


# ---------------------------------------------------------------------------
# Parser_LinksToSameTable


class LstPerson(Object):
    k: int = field(primary_key=True)
    age: int = 0
    name: str = ""
    buddy: LstPerson | None = None


def _fill_links_same(r: Realm) -> None:
    names = ["Billy", "Bob", "Joe", "Jane", "Joel"]
    people = [LstPerson(k=i, age=i, name=n) for i, n in enumerate(names)]
    r.add_all(people)
    for i, p in enumerate(people[:4]):
        p.buddy = people[i + 1]


s = section("Parser_LinksToSameTable", "links", [LstPerson], LstPerson)
s.fill = _fill_links_same
s.add("age > 0", 4)
s.add("buddy.age > 0", 4)
s.add("buddy.buddy.age > 0", 3)
s.add("buddy.buddy.buddy.age > 0", 2)
s.add("buddy.buddy.buddy.buddy.age > 0", 1)
s.add("buddy.buddy.buddy.buddy.buddy.age > 0", 0)
s.throws("buddy.buddy.missing_property > 2")


# ---------------------------------------------------------------------------
# Parser_LinksToDifferentTable


class LdtDiscount(Object):
    k: int = field(primary_key=True)
    reduced_by: float = 0.0
    active: bool = False


class LdtItem(Object, name="Items"):
    name: str = field(primary_key=True)
    price: float = 0.0
    discount: LdtDiscount | None = None


class LdtPerson(Object):
    customer_id: int = 0
    items: list[LdtItem] = field(default_factory=list)


def _fill_links_different(r: Realm) -> None:
    discounts = [
        LdtDiscount(k=i, reduced_by=a, active=b)
        for i, (a, b) in enumerate([(3.0, False), (2.5, True), (0.5, True), (1.5, True)])
    ]
    r.add_all(discounts)
    items = [
        LdtItem(name=n, price=p)
        for n, p in [
            ("milk", 5.5),
            ("oranges", 4.0),
            ("pizza", 9.5),
            ("cereal", 6.5),
            ("coffee", 17.5),
        ]
    ]
    r.add_all(items)
    items[0].discount = discounts[2]
    items[2].discount = discounts[1]
    items[3].discount = discounts[0]
    r.add(LdtPerson(customer_id=0, items=[items[0], items[1], items[2], items[3]]))
    r.add(LdtPerson(customer_id=1, items=[items[0]] * 10))
    r.add(LdtPerson(customer_id=2, items=[items[2], items[2], items[3]]))


s = section("Parser_LinksToDifferentTable", "links", [LdtDiscount, LdtItem, LdtPerson], LdtPerson)
s.fill = _fill_links_different
s.add("items = obj('Items', 'coffee')", 0)
s.add("items = obj('Items', 'milk')", 2)
s.add("items = O0", 2)
s.add("items.@count > 2", 3)
s.add("items.price > 3.0", 3)
s.add("items.name ==[c] 'milk'", 2)
s.add("items.discount.active == true", 3)
s.add("items.discount.reduced_by > 2.0", 2)
s.add("items.@sum.price > 50", 1)
s.add("items.@avg.price > 7", 1)
s.throws("missing_property > 2")
s.throws("items.absent_property > 2")
s.throws("items.discount.nonexistent_property > 2")
s.throws("customer_id.property > 2")
s.throws("items.price.property > 2")
s.throws("items == NULL")
s.throws("items != NULL")
s.throws("items.discount == NULL")


# ---------------------------------------------------------------------------
# Parser_StringOperations


class StrPerson(Object):
    k: int = field(primary_key=True)
    name: str | None = None
    father: StrPerson | None = None


def _fill_strings(r: Realm) -> None:
    names = ["Billy", "Bob", "Joe", "Jake", "Joel", "Unicorn🦄"]
    people = [StrPerson(k=i, name=n) for i, n in enumerate(names)]
    r.add_all(people)
    for i, p in enumerate(people):
        p.father = people[(i + 1) % len(people)]
    r.add(StrPerson(k=len(names)))  # null name
    people[4].father = None


s = section("Parser_StringOperations", "strings", [StrPerson], StrPerson)
s.fill = _fill_strings
NB_NAMES = 6
SIZE = 7
for q, n in [
    ("name == 'Bob'", 1),
    ("father.name == 'Bob'", 1),
    ("name ==[c] 'Bob'", 1),
    ("father.name ==[c] 'Bob'", 1),
    ("name != 'Bob'", NB_NAMES),
    ("father.name != 'Bob'", NB_NAMES),
    ("name !=[c] 'bOB'", NB_NAMES),
    ("father.name !=[c] 'bOB'", NB_NAMES),
    ('name contains "oe"', 2),
    ('father.name contains "oe"', 2),
    ('name contains[c] "OE"', 2),
    ('father.name contains[c] "OE"', 2),
    ('name beginswith "J"', 3),
    ('father.name beginswith "J"', 3),
    ('name beginswith[c] "j"', 3),
    ('father.name beginswith[c] "j"', 3),
    ('name endswith "e"', 2),
    ('father.name endswith "e"', 2),
    ('name endswith[c] "E"', 2),
    ('father.name endswith[c] "E"', 2),
    ('name like "?o?"', 2),
    ('father.name like "?o?"', 2),
    ('name like[c] "?O?"', 2),
    ('father.name like[c] "?O?"', 2),
    ("name ==[c] 'unicorn🦄'", 1),
    ("name == NULL", 1),
    ("name == nil", 1),
    ("NULL == name", 1),
    ("name != NULL", NB_NAMES),
    ("NULL != name", NB_NAMES),
    ("name ==[c] NULL", 1),
    ("NULL ==[c] name", 1),
    ("name !=[c] NULL", NB_NAMES),
    ("NULL !=[c] name", NB_NAMES),
    ("name CONTAINS NULL", SIZE),
    ("name CONTAINS[c] NULL", SIZE),
    ("name BEGINSWITH NULL", SIZE),
    ("name BEGINSWITH[c] NULL", SIZE),
    ("name ENDSWITH NULL", SIZE),
    ("name ENDSWITH[c] NULL", SIZE),
    ("name LIKE NULL", 1),
    ("name LIKE[c] NULL", 1),
    ("NULL CONTAINS name", 0),
    ("NULL CONTAINS[c] name", 0),
    ("NULL BEGINSWITH name", 0),
    ("NULL BEGINSWITH[c] name", 0),
    ("NULL ENDSWITH name", 0),
    ("NULL ENDSWITH[c] name", 0),
    ("NULL LIKE name", 1),
    ("NULL LIKE[c] name", 1),
]:
    s.add(q, n)


# ---------------------------------------------------------------------------
# Parser_TwoColumnExpressionBasics


class TwoCol(Object):
    k: int = field(primary_key=True)
    ints: int | None = None
    doubles: float = 0.0
    strings: str = ""
    decimals: Decimal = Decimal(0)
    objectids: ObjectId = field(default_factory=ObjectId)
    link: TwoCol | None = None


def _fill_two_columns(r: Realm) -> None:
    objs = [
        TwoCol(k=i, ints=i, doubles=float(i), strings="a" * i, decimals=Decimal(i))
        for i in range(3)
    ]
    r.add_all(objs)
    objs[1].link = objs[0]


s = section("Parser_TwoColumnExpressionBasics", "two columns", [TwoCol], TwoCol)
s.fill = _fill_two_columns
s.add("ints == 0", 1)
s.add("ints == ints", 3)
s.add("ints == strings.@count", 3)
s.add("strings.@count == ints", 3)
s.add("ints == NULL", 0)
s.add("doubles == doubles", 3)
s.add("strings == strings", 3)
s.add("ints == link.@count", 2)
s.add("decimals == decimals", 3)
s.add("objectids == objectids", 3)
s.add("doubles == ints", 3)
s.add("ints == doubles", 3)
s.add("ints == decimals", 3)
s.throws("doubles == strings")
s.throws("strings == doubles")
s.throws("objectids == ints")


# ---------------------------------------------------------------------------
# Parser_OperatorIN


class InAllergen(Object):
    k: int = field(primary_key=True)
    name: str = ""
    population_affected: float = 0.0


class InItem(Object):
    k: int = field(primary_key=True)
    name: str = ""
    price: float = 0.0
    allergens: list[InAllergen] = field(default_factory=list)


class InPerson(Object):
    k: int = field(primary_key=True)
    customer_id: int = 0
    account_balance: float = 0.0
    items: list[InItem] = field(default_factory=list)
    fav_item: InItem | None = None


def _fill_in(r: Realm) -> None:
    fill_grocery(r, InAllergen, InItem, InPerson)


s = section("Parser_OperatorIN", "IN and lists", [InAllergen, InItem, InPerson], InPerson)
s.fill = _fill_in
for q, n in [
    ("customer_id IN {}", 0),
    ("customer_id IN {0, 1, 2}", 3),
    ("NOT customer_id IN {0}", 2),
    ("customer_id != {0}", 2),
    ("customer_id != {0, 1}", 3),
    ("NOT customer_id IN {0, 1}", 1),
    ("customer_id != {0, 1, 2}", 3),
    ("customer_id > {0, 1}", 2),
    ("customer_id > {4, 5, 6}", 0),
    ("customer_id < {0, 1}", 1),
    ("customer_id < {0}", 0),
    ("customer_id >= {0, 1}", 3),
    ("customer_id >= {2, 3, 4}", 1),
    ("customer_id <= {0, 1}", 2),
    ("customer_id <= {-1}", 0),
    ("fav_item.name IN {'milk', 'oranges', 'cereal'}", 2),
    ("fav_item.price IN {6.5, 9.5}", 1),
    ("fav_item.name IN {0, null, -1, 'not found', 3.14, oid(000000000000000000000000)}", 0),
    ("fav_item.name != {'milk', 'oranges'}", 3),
    ("NOT fav_item.name IN {'milk', 'oranges'}", 1),
    ("fav_item.name contains[c] {'ILK', 'Range'}", 2),
    ("fav_item.name beginswith[c] {'MIL', 'CERe'}", 1),
    ("fav_item.name endswith {'lk', 'EAL', 'GeS'}", 1),
    ("fav_item.name endswith[c] {'lk', 'EAL', 'GeS'}", 2),
    ("fav_item.name like {'*lk', '*zz*'}", 2),
]:
    s.add(q, n)
for q, arg, n in [
    ("customer_id IN $0", [], 0),
    ("customer_id IN $0", [0, 1, 2], 3),
    ("NOT customer_id IN $0", [0], 2),
    ("customer_id != $0", [0], 2),
    ("customer_id != $0", [0, 1], 3),
    ("NOT customer_id IN $0", [0, 1], 1),
    ("customer_id != $0", [0, 1, 2], 3),
    ("customer_id > $0", [0, 1], 2),
    ("customer_id > $0", [4, 5, 6], 0),
    ("customer_id < $0", [0, 1], 1),
    ("customer_id < $0", [0], 0),
    ("customer_id >= $0", [0, 1], 3),
    ("customer_id >= $0", [2, 3, 4], 1),
    ("customer_id <= $0", [0, 1], 2),
    ("customer_id <= $0", [-1], 0),
    ("fav_item.name IN $0", ["milk", "oranges", "cereal"], 2),
    ("fav_item.price IN $0", [6.5, 9.5], 1),
    ("fav_item.name IN $0", [0, None, -1, "not found", 3.14, ObjectId("0" * 24)], 0),
    ("fav_item.name != $0", ["milk", "oranges"], 3),
    ("NOT fav_item.name IN $0", ["milk", "oranges"], 1),
    ("fav_item.name contains[c] $0", ["ILK", "Range"], 2),
    ("fav_item.name beginswith[c] $0", ["MIL", "CERe"], 1),
    ("fav_item.name endswith $0", ["lk", "EAL", "GeS"], 1),
    ("fav_item.name endswith[c] $0", ["lk", "EAL", "GeS"], 2),
    ("fav_item.name like $0", ["*lk", "*zz*"], 2),
]:
    s.add(q, n, arg)
IN_ARGS: tuple[Any, ...] = (
    None,
    [0, 1, 2],
    ["milk", "oranges", "cereal"],
    ["no match", -1, 3.14, ObjectId("0" * 24), None, False, Decimal("8.888")],
    [],
    "customer_id",
    "fav_item.name",
)
for q, n in [
    ("customer_id IN $1", 3),
    ("fav_item.name IN $2", 2),
    ("fav_item.name IN $3", 0),
    ("fav_item.name IN $4", 0),
    ("customer_id IN ANY $1", 3),
    ("customer_id IN ALL $1", 0),
    ("customer_id IN NONE $1", 0),
]:
    s.add(q, n, *IN_ARGS)
for q, n in [
    ("'dairy' in items.allergens.name", 3),
    ("5.5 IN items.price", 2),
    ("!(5.5 IN items.price)", 1),
    ("'milk' IN items.name", 2),
    ("'MiLk' IN[c] items.name", 2),
    ("NULL IN items.price", 0),
    ("'dairy' IN fav_item.allergens.name", 2),
    ("InItem: 20 IN @links.InPerson.items.account_balance", 1),
    ("fav_item.price IN items.price", 2),
    ("ANY {5.5, 4.0} IN ANY items.price", 2),
    ("ALL {5.5, 4.0} IN items.price", 1),
    ("ALL {5.5} IN items.price", 2),
    ("NONE {5.5, 4.0} IN items.price", 1),
    ("NONE {5.5, 4.0} IN ALL items.price", 2),
    ("ANY {5.5, 4.0} IN ALL items.price", 1),
    ("ANY {5.5, 4.0} IN NONE items.price", 2),
    ("!(ANY {5.5, 4.0} IN ANY items.price)", 1),
    ("ALL {5.5, 4.0} IN NONE items.price", 1),
    ("ALL {5.5, 4.0, 9.5, 6.5} IN ALL items.price", 0),
    ("ALL {5.5, 5.5} IN ALL items.price", 1),
]:
    s.add(q, n)


# ---------------------------------------------------------------------------
# Parser_ListVsList


class LvlTable(Object):
    id: int = field(primary_key=True)
    integers: list[int] = field(default_factory=list)


s = section("Parser_ListVsList", "IN and lists", [LvlTable], LvlTable)
s.fill = lambda r: r.add_all(
    [LvlTable(id=1, integers=[1, 2]), LvlTable(id=2, integers=[11, 5, 9, 5])]
)
for q, n in [
    ("ANY {1, 2, 3} == ALL integers", 0),
    ("ALL integers == ANY {2, 1, 3}", 1),
    ("{7, 3, 8, 0} < integers", 1),
    ("ANY {1, 2, 3} > ALL integers", 1),
    ("ANY {4, 8} == ANY integers", 0),
    ("ANY {1, 2, 3} == ANY integers", 1),
    ("ANY {1, 2, 3} == NONE integers", 2),
    ("ANY {1, 2, 7} <= NONE integers", 1),
    ("ANY {-1, 0} < NONE integers", 0),
    ("ALL {1, 2, 3} > ALL integers", 0),
    ("ALL {4, 8} > ALL integers", 1),
    ("ALL {1, 2, 12} < ANY integers", 0),
    ("ALL {4, 8} > ANY integers", 1),
    ("ALL {2, 5} == NONE integers", 0),
    ("ALL {3, 1, 4, 3} == NONE integers", 1),
    ("NONE {1, 2, 3, 12} > ALL integers", 0),
    ("NONE {4, 8} > ALL integers", 1),
    ("NONE {1, 12} > ANY integers", 0),
    ("NONE {4, 8} < ANY integers", 1),
    ("NONE {-1, 12} < NONE integers", 0),
    ("NONE {-1, 5} < NONE integers", 1),
    ("NONE {0, 1} < NONE integers", 2),
]:
    s.add(q, n)


# ---------------------------------------------------------------------------
# Parser_OddColumnNames


class OddNames(Object):
    age: int | None = None
    between: int | None = None
    # ``in`` is a Python keyword: the property is ``in_``, named ``in`` in
    # the file (queries may use either name).
    in_: int | None = field(default=None, map_to="in")
    desc: str | None = None


s = section("Parser_OddColumnNames", "basics", [OddNames], OddNames)
s.fill = lambda r: r.add_all(
    [OddNames(age=i + 24, between=i, in_=100 + i, desc="Empty") for i in range(3)]
)
for q, n in [
    ("between == 0", 1),
    ("between > 0", 2),
    ("between <= 3", 3),
    ("in == 100", 1),
    ("in > 100", 2),
    ("in <= 103", 3),
    ("desc CONTAINS[c] 'empty'", 3),
    ("age between {24, 26}", 3),
    ("age between {20, 23}", 0),
    ("age between {20, 24}", 1),
    ("age between {20, 25}", 2),
    ("age between {20, 26}", 3),
    ("age between {20, 27}", 3),
    ("age between {23, 30}", 3),
    ("age between {24, 30}", 3),
    ("age between {25, 30}", 2),
    ("age between {26, 30}", 1),
    ("age between {27, 30}", 0),
]:
    s.add(q, n)
s.throws("age between {20}", SYNTAX)
s.throws("age between {20, 25, 34}", SYNTAX)


# ---------------------------------------------------------------------------
# Parser_UTF8, Parser_Logical


class Utf8Person(Object):
    løbenummer: int = 0
    姓名: str = ""


s = section("Parser_UTF8", "basics", [Utf8Person], Utf8Person)
s.fill = lambda r: r.add_all(
    [
        Utf8Person(løbenummer=i, 姓名=n)
        for i, n in enumerate(["Billy", "Bob", "Joe", "Jake", "Joel"])
    ]
)
s.add("løbenummer > 2", 2)
s.add("姓名 == 'Bob'", 1)


class LogicT(Object):
    id1: int = 0
    id2: int = 0
    id3: int = 0


s = section("Parser_Logical", "basics", [LogicT], LogicT)
s.fill = lambda r: r.add_all([LogicT(id1=i, id2=2 * i, id3=3 * i) for i in range(10)])
s.add("id1 == 5 || id1 == 9 || id2 == 10 || id2 == 16", 3)
s.add("id1 == 5 && id2 == 10 || id1 == 7 && id2 == 14", 2)
s.add("id1 == 5 && id2 == 10 && id3 == 15", 1)
s.add("id1 == 5 && (id2 == 10 || id1 == 7) && id3 == 15", 1)
s.add("!id1 == 5 && !(id2 == 12) && !id3 == 12", 7)


# ---------------------------------------------------------------------------
# Parser_Arithmetic (TEST_TYPES int, double, Decimal; realmpy has no 32-bit
# float: that variant is excluded as a whole).  ``tag`` is a Mixed column.


class ArInt(Object):
    name: str = field(primary_key=True)
    age: int = 0
    number: int = 0
    tag: Mixed = None
    spouse: ArInt | None = None


class ArDouble(Object):
    name: str = field(primary_key=True)
    age: int = 0
    number: float = 0.0
    tag: Mixed = None
    spouse: ArDouble | None = None


class ArDecimal(Object):
    name: str = field(primary_key=True)
    age: int = 0
    number: Decimal = Decimal(0)
    tag: Mixed = None
    spouse: ArDecimal | None = None


def _arithmetic(model: type, one: Any, two: Any) -> None:
    s = section(f"Parser_Arithmetic<{model.__name__}>", "arithmetic", [model], model)

    def fill(r: Realm) -> None:
        per = r.add(model(name="Per", age=42, number=one))
        poul = r.add(model(name="Poul", age=25, tag=2))
        anne = r.add(model(name="Anne", age=40, number=two, tag="Cool"))
        andrea = r.add(model(name="Andrea", age=27, tag=2))
        per.spouse, poul.spouse, anne.spouse, andrea.spouse = anne, andrea, per, poul

    s.fill = fill
    s.add("2 * age > 60", 2)
    s.add("2 * age + 5 == 55", 1)
    s.add("2 * (age - 5) == 70", 1)
    s.add("age / 3 == 14", 1)
    s.add("age / 0 == 14", 0)
    s.add("age / number == 20", 1)
    s.add("age / number > 20", 3)
    s.add("age == (10 + 11)*2", 1)
    s.add("age + tag > 28", 1)
    s.throws("age + spouse.name == 50")
    s.add("age * $0 == $1", 1, 2, 50)


_arithmetic(ArInt, 1, 2)
_arithmetic(ArDouble, 1.0, 2.0)
_arithmetic(ArDecimal, Decimal(1), Decimal(2))


# ---------------------------------------------------------------------------
# Parser_Between, Test_Between_OverLinks


class BtwT(Object):
    age: int = 0
    scores: list[int] = field(default_factory=list)


s = section("Parser_Between", "between", [BtwT], BtwT)
s.fill = lambda r: r.add_all(
    [
        BtwT(
            age=5 * i + 30,
            scores=[j + i * 5 for j in range(5)] + [j + i * 5 + 10 for j in range(5)],
        )
        for i in range(3)
    ]
)
s.add("age between {30, 37}", 2)
s.throws("NONE age between {30, 37}")
s.add("ALL scores between {5, 19}", 1)
s.throws("scores between {5, 9}")
s.throws("ANY scores between {5, 9}")
s.throws("NONE scores between {10, 12}")


class BolChild(Object):
    k: int = field(primary_key=True)
    int: int = 0
    timestamp: dt.datetime = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class BolParent(Object):
    child: BolChild | None = None


def _fill_between_links(r: Realm) -> None:
    for i in range(100):
        c = r.add(BolChild(k=i, int=i, timestamp=ts(i)))
        r.add(BolParent(child=c))
        r.add(BolParent(child=c))
    r.add(BolParent())


s = section("Test_Between_OverLinks", "between", [BolChild, BolParent], BolChild)
s.fill = _fill_between_links
s.add("int BETWEEN {0, 100}", 100)
s.add("timestamp BETWEEN {$0, $1}", 100, ts(0), ts(100))
s.add("int BETWEEN {1, 2}", 2)
s.add("timestamp BETWEEN {$0, $1}", 2, ts(1), ts(2))
s.add("int BETWEEN {-1, -2}", 0)
s.add("timestamp BETWEEN {$0, $1}", 0, ts(-1), ts(-2))
s.add("BolParent: child.int BETWEEN {0, 100}", 200)
s.add("BolParent: child.timestamp BETWEEN {$0, $1}", 200, ts(0), ts(100))
s.add("BolParent: child.int BETWEEN {1, 2}", 4)
s.add("BolParent: child.timestamp BETWEEN {$0, $1}", 4, ts(1), ts(2))
s.add("BolParent: child.int BETWEEN {-1, -2}", 0)
s.add("BolParent: child.timestamp BETWEEN {$0, $1}", 0, ts(-1), ts(-2))


# ---------------------------------------------------------------------------
# Parser_Decimal128

DECIMAL_VALUES = [
    "123",
    "0.1",
    "3.141592653589793238",
    "1E1",
    "+2E2",
    "+3E+3",
    "4E+4",
    "-5E5",
    "-6E-6",
    "7E-7",
    "+8E-8",
    "-9E+9",
    "1.1E1",
    "+2.1E2",
    "+3.1E+3",
    "4.1E+4",
    "-5.1E5",
    "-6.1E-6",
    "7.1E-7",
    "+8.1E-8",
    "-9.1E+9",
    "inf",
    "-infinity",
]
DECIMAL_INVALID = [
    ".",
    "e10",
    "E-12",
    "infin",
    "-+2",
    "+-2",
    "2e+-12",
    "2e-+12",
    "2e1.3",
    "/2.0",
    "*2.0",
]


class DecT(Object):
    dec: Decimal = Decimal(0)
    nullable_dec: Decimal | None = None


def _fill_decimals(r: Realm) -> None:
    r.add_all([DecT(dec=Decimal(v), nullable_dec=Decimal(v)) for v in DECIMAL_VALUES])
    r.add(DecT())


s = section("Parser_Decimal128", "decimal", [DecT], DecT)
s.fill = _fill_decimals
DSIZE = len(DECIMAL_VALUES) + 1
s.add("dec == 0", 1)
s.add("nullable_dec == null", 1)
s.add("dec == 0.", 1)
for v in DECIMAL_VALUES:
    s.add(f"dec == {v}", 1)
    s.add(f"nullable_dec == {v}", 1)
for v in DECIMAL_INVALID:
    s.throws(f"dec == {v}", Exception)
    s.throws(f"nullable_dec == {v}", Exception)
s.add("dec == NULL", 0)
s.add("nullable_dec == NULL", 1)
s.add("dec <= infinity", DSIZE)
s.add("dec >= -infinity", DSIZE)
DEC_ARGS = (Decimal("0"), Decimal("123"), None, 123.0)
s.add("dec == $0", 1, *DEC_ARGS)
s.add("dec == $1", 1, *DEC_ARGS)
s.add("dec == $3", 1, *DEC_ARGS)
s.add("dec == $2", 0, *DEC_ARGS)
s.add("nullable_dec == $2", 1, *DEC_ARGS)
s.add("dec == nullable_dec", DSIZE - 1)
s.add("dec >= nullable_dec", DSIZE - 1)
s.add("dec <= nullable_dec", DSIZE - 1)
s.add("dec > nullable_dec", 0)
s.add("dec < nullable_dec", 0)
s.add("dec != nullable_dec", 1)


# ---------------------------------------------------------------------------
# Parser_ObjectId


def _oid_at(seconds: int) -> ObjectId:
    """An ObjectId of that creation time, machine and process 0 (as the test makes them)."""
    return ObjectId(seconds.to_bytes(4, "big").hex() + "0" * 16)


class OidT(Object):
    id: ObjectId = field(primary_key=True)
    nid: ObjectId | None = None


NOW = 1_700_000_000
OIDS = [_oid_at(1), _oid_at(NOW - 1), _oid_at(NOW + 25), _oid_at(0)]
GENERATED = ObjectId(NOW.to_bytes(4, "big").hex() + "ab" * 8)


def _fill_oids(r: Realm) -> None:
    r.add_all([OidT(id=o, nid=o) for o in OIDS])
    r.add(OidT(id=GENERATED))


s = section("Parser_ObjectId", "objectid", [OidT], OidT)
s.fill = _fill_oids
s.add(f"id == oid({GENERATED})", 1)
s.add("nid == NULL", 1)
for o in OIDS:
    s.add(f"id == oid({o})", 1)
    s.add(f"id != oid({o})", 4)
    s.add(f"nid == oid({o})", 1)
    s.add(f"nid != oid({o})", 4)
s.add("id >= oid(000000000000000000000000)", 5)
s.add("nid >= oid(000000000000000000000000)", 4)
s.add("id <= oid(ffffffffffffffffffffffff)", 5)
s.add("nid <= oid(ffffffffffffffffffffffff)", 4)
s.add("id == NULL", 0)
OID_ARGS = (*OIDS, None)
for q, n in [
    ("id == $0", 1),
    ("id == $1", 1),
    ("id == $2", 1),
    ("id == $3", 1),
    ("id == $4", 0),
    ("nid == $0", 1),
    ("nid == $1", 1),
    ("nid == $2", 1),
    ("nid == $3", 1),
    ("nid == $4", 1),
    ("id > $0", 3),
    ("id > $1", 2),
    ("id > $2", 0),
    ("id > $3", 4),
    ("nid > $0", 2),
    ("nid > $1", 1),
    ("nid > $2", 0),
    ("nid > $3", 3),
    ("id >= $0", 4),
    ("id >= $1", 3),
    ("id >= $2", 1),
    ("id >= $3", 5),
    ("nid >= $0", 3),
    ("nid >= $1", 2),
    ("nid >= $2", 1),
    ("nid >= $3", 4),
    ("id < $0", 1),
    ("id < $1", 2),
    ("id < $2", 4),
    ("id < $3", 0),
    ("nid < $0", 1),
    ("nid < $1", 2),
    ("nid < $2", 3),
    ("nid < $3", 0),
    ("id <= $0", 2),
    ("id <= $1", 3),
    ("id <= $2", 5),
    ("id <= $3", 1),
    ("nid <= $0", 2),
    ("nid <= $1", 3),
    ("nid <= $2", 4),
    ("nid <= $3", 1),
]:
    s.add(q, n, *OID_ARGS)


# ---------------------------------------------------------------------------
# Parser_basic_serialisation (realm-core re-runs each query's description,
# as every verify_query; its ``float fees`` column is a 32-bit float: here a
# float holding the same 32-bit values, ``float_fees`` named ``float fees``
# in the file)


class BsPerson(Object, name="person"):
    k: int = field(primary_key=True)
    age: int = field(default=0, indexed=True)
    name: str = ""
    fees: float | None = None
    float_fees: float | None = field(default=None, map_to="float fees")
    licensed: bool | None = None
    buddy: BsPerson | None = None
    time: dt.datetime | None = None


def _float32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def _fill_basic_serialisation(r: Realm) -> None:
    fees = [2.0, 2.23, 2.22, 2.25, 3.73]
    people = r.add_all(
        [
            BsPerson(k=i, age=i, name=n, fees=f, float_fees=_float32(f), licensed=i % 2 == 0)
            for i, (n, f) in enumerate(zip(["Billy", "Bob", "Joe", "Jane", "Joel"], fees))
        ]
    )
    # realm-core's (1512130073 s, 505 ns) is 1512130073 s here (microseconds)
    for p, t in zip(people[1:], [ts(1512130073), ts(1512130073), ts(1), ts(0)]):
        p.time = t
    people[0].buddy = people[1]


s = section("Parser_basic_serialisation", "basics", [BsPerson], BsPerson)
s.fill = _fill_basic_serialisation
for q, n in [
    ("time == NULL", 1),
    ("time == NIL", 1),
    ("time != NULL", 4),
    ("time > T0:0", 3),
    ("time == T1:2", 1),
    ("time > 2017-12-1@12:07:53", 1),
    ("time == 2017-12-01@12:07:53:505", 1),
    ("buddy == NULL", 4),
    ("buddy == nil", 4),
    ("buddy != NULL", 1),
    ("buddy <> NULL", 1),
    ("buddy.name == NULL", 4),  # null links
    ("buddy.age == NULL", 4),
    ("age > 2", 2),
    ("!(age >= 2)", 2),
    ("!(age => 2)", 2),
    ("3 <= age", 2),
    ("3 =< age", 2),
    ("age > 2 and age < 4", 1),
    ("age = 1 || age == 3", 2),
    ("fees = 1.2 || fees = 2.23", 1),
    ("fees = 2 || fees = 3", 1),
    ("fees BETWEEN {2, 3}", 4),
    ("fees BETWEEN {2.20, 2.25}", 3),
    ("fees = 2 || fees = 3 || fees = 4", 1),
    ("fees = 0 || fees = 1", 0),
]:
    s.add(q, n)
for q, n, args in [
    ("time == $0", 1, (None,)),
    ("time != $0", 4, (None,)),
    ("age > $0", 2, (2,)),
    ("!(age >= $0)", 2, (2,)),
    ("!(age => $0)", 2, (2,)),
    ("$0 <= age", 2, (3,)),
    ("$0 =< age", 2, (3,)),
    ("age > $0 and age < $1", 1, (2, 4)),
    ("age = $0 || age == $1", 2, (1, 3)),
    ("fees = $0 || fees = $1", 1, (1.2, 2.23)),
    ("fees = $0 || fees = $1", 1, (2, 3)),
    ("fees BETWEEN {$0, $1}", 4, (2, 3)),
    ("fees BETWEEN {$0, $1}", 3, (2.2, 2.25)),
    ("fees = $0 || fees = $1 || fees = $2", 1, (2, 3, 4)),
    ("fees = $0 || fees = $1", 0, (0, 1)),
]:
    s.add(q, n, *args)
for q, n in [
    ("fees != 2.22 && fees > 2.2", 3),
    ("fees > 2.0E0", 4),
    ("fees > 200e-2", 4),
    ("fees > 0.002e3", 4),
    ("fees < inf", 5),
    ("fees < +inf", 5),
    ("fees > -iNf", 5),
    ("fees < Infinity", 5),
    ("fees < +inFINITY", 5),
    ("fees > -INFinity", 5),
    ("fees == NaN", 0),
    ("fees != Nan", 5),
    ("fees == -naN", 0),
    ("fees != -nAn", 5),
    ("float\\ fees > 2.0E0", 4),
    ("float\\ fees > 200e-2", 4),
    ("float\\ fees > 0.002E3", 4),
    ("float\\ fees < INF", 5),
    ("float\\ fees < +InF", 5),
    ("float\\ fees > -inf", 5),
    ("float\\ fees < InFiNiTy", 5),
    ("float\\ fees < +iNfInItY", 5),
    ("float\\ fees > -infinity", 5),
    ("float\\ fees == NAN", 0),
    ("float\\ fees != nan", 5),
    ("float\\ fees == -NaN", 0),
    ("float\\ fees != -NAn", 5),
    ("(age > 1 || fees >= 2.25) && age == 4", 1),
    ("licensed == true", 3),
    ("licensed == false", 2),
    ("licensed = true || licensed = true", 3),
    ("licensed = true || licensed = false", 5),
    ("licensed == true || licensed == false", 5),
    ("licensed == true || buddy.licensed == true", 3),
    ("buddy.licensed == true", 0),
    ("buddy.licensed == false", 1),
    ("licensed == false || buddy.licensed == false", 3),
    ("licensed == true or licensed = true || licensed = TRUE", 3),
    ('name = "Joe"', 1),
    ("buddy.age > 0", 1),
    ('name BEGINSWITH "J"', 3),
    ('name ENDSWITH "E"', 0),
    ('name ENDSWITH[c] "E"', 2),
    ('name CONTAINS "OE"', 0),
    ('name CONTAINS[c] "OE"', 2),
    ('name LIKE "b*"', 0),
    ('name LIKE[c] "b*"', 2),
    ("TRUEPREDICATE", 5),
    ("FALSEPREDICATE", 0),
    ("age > 2 and TRUEPREDICATE", 2),
    ("age > 2 && FALSEPREDICATE", 0),
    ("age > 2 or TRUEPREDICATE", 5),
    ("age > 2 || FALSEPREDICATE", 2),
    ("age > 2 AND !FALSEPREDICATE", 2),
    ("age > 2 AND !TRUEPREDICATE", 0),
]:
    s.add(q, n)
for q in ["buddy.age > $0", "age == infinity", "name == infinity", "missing_property > 2"]:
    s.throws(q)
