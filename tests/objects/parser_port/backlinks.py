"""realm-core's parser tests on undeclared backlinks, ``@links.Class.prop``
and ``@links.@count`` (Parser_Backlinks, Parser_BacklinkCount,
Parser_BacklinksIndex), on links compared with objects (Parser_Object,
Parser_PrimaryKey) and geospatial queries (Parser_Geospatial).
Classes carry realm-core's table names (``name="Person"``) since the queries
spell them; realm-core's implicit object keys are an ``int`` primary key
``k``; its ``fav item`` column (a space in its name) is ``fav_item`` with
``map_to="fav item"``."""

from __future__ import annotations

import uuid

from realmpy.objectid import ObjectId
from realmpy.query import GeoBox, GeoCircle, GeoPoint, GeoPolygon
from realmpy.realm import Realm
from realmpy.schema import Backlinks, EmbeddedObject, Mixed, Object, backlinks, field
from tests.objects.parser_port.cases import INVALID, SYNTAX, section

# ---------------------------------------------------------------------------
# Parser_Backlinks


# realm-core also runs queries through a KeyPathMapping: aliases of
# properties (``money`` for account_balance, ``things`` for items) and of
# backlinks (``purchasers`` for @links.Person.items).  Those are what an
# SDK's mapped names and declared backlinks are: here ``field(map_to=…)``
# (the Python name is the alias, the name in the file realm-core's column;
# queries may use either) and ``backlinks(…)``.  Its aliases of class names,
# and of an alias, have no realmpy counterpart (see the exclusions).


class BlItems(Object, name="Items"):
    k: int = field(primary_key=True)
    name: str | None = None
    price: float = 0.0
    purchasers: Backlinks[BlPerson] = backlinks("things")


class BlPerson(Object, name="Person"):
    k: int = field(primary_key=True)
    customer_id: int = 0
    name: str | None = None
    money: float = field(default=0.0, map_to="account_balance")
    things: list[BlItems] = field(default_factory=list, map_to="items")
    fav_item: BlItems | None = field(default=None, map_to="fav item")


class BlThings(Object, name="class_with_policy"):
    k: int = field(primary_key=True)
    pascal_case: int = 0
    with_underscores: BlThings | None = None
    parents: Backlinks[BlThings] = backlinks("with_underscores")


def _fill_backlinks(r: Realm) -> None:
    items = r.add_all(
        [
            BlItems(k=i, name=n, price=p)
            for i, (n, p) in enumerate(
                [("milk", 5.5), ("oranges", 4.0), ("pizza", 9.5), ("cereal", 6.5), ("bread", 3.5)]
            )
        ]
    )
    lists = [[0, 1, 2, 3], [0] * 10, [2, 2, 3]]
    for i, name in enumerate(["Adam", "James", "John"]):
        r.add(
            BlPerson(
                k=i,
                customer_id=i,
                name=name,
                money=(i + 1) * 10.0,
                things=[items[j] for j in lists[i]],
                fav_item=items[i],
            )
        )
    r.add(BlThings(k=0, pascal_case=1))
    two = r.add(BlThings(k=1, pascal_case=2))
    r.add(BlThings(k=2, pascal_case=3, with_underscores=two))


s = section("Parser_Backlinks", "backlinks (@links)", [BlItems, BlPerson, BlThings], BlItems)
s.fill = _fill_backlinks
s.add("@links.Person.fav\\ item.account_balance > 20", 1)
s.add("@links.Person.items.account_balance > 20", 2)
s.add("@links.Person.items.name LIKE[c] 'j*'", 3)
s.add("@links.Person.items.name BEGINSWITH 'J'", 3)
s.add("@links.Person.items.@count > 2", 2)
s.add("@links.Person.items.@size > 2", 2)
s.add("@links.Person.items.@min.account_balance <= 10", 4)
s.add("@links.Person.items.@max.account_balance > 10", 3)
s.add("@links.Person.items.@sum.account_balance > 20", 3)
s.add("@links.Person.items.@avg.account_balance > 20", 1)
s.add("SUBQUERY(@links.Person.items, $x, $x.account_balance >= 20).@count > 2", 1)
s.add("BlPerson: fav\\ item.@links.Person.fav\\ item.@count > 1", 0)
s.add("BlPerson: fav\\ item.@links.Person.items.@count > 1 ", 2)
s.throws("@links.Person.items == NULL")
s.throws("@links.Person.fav\\ item == NULL")
s.throws("@links.attr. > 0", SYNTAX)
# With realm-core's KeyPathMapping (aliases): see the classes above.
s.add("purchasers.@count > 2", 2)
s.add("purchasers.@max.money >= 20", 3)
s.add("@links.my-custom-class-name.items.@count > 2", 2)
s.add("purchasers.@count > 2", 2)
s.add("purchasers.@max.money >= 20", 3)
s.add("SUBQUERY(purchasers, $x, $x.money >= 20).@count > 2", 1)
s.add("purchasers.@max.funds >= 20", 3)
s.add("@links.Person.items.@count > 2", 2)
s.add("@links.CustomPersonClassName.items.@count > 2", 2)
s.add("@links.Person.things.@count > 2", 2)
s.add("@links.CustomPersonClassName.things.@count > 2", 2)
s.add("BlThings: parents.pascal_case == 3", 1)
s.throws("@links.Factory.items > 0")
s.throws("@links.Person.artifacts > 0")
s.throws("@links.class_Person.items.@count > 2")
s.throws("purchasers.@max.banknotes >= 20")
s.throws("purchasers.@max.capital >= 20")


# ---------------------------------------------------------------------------
# Parser_BacklinkCount


class BcItems(Object, name="Items"):
    k: int = field(primary_key=True)
    item_id: int = 0
    self: BcItems | None = None
    double_col: float = 0.0


class BcPerson(Object, name="Person"):
    k: int = field(primary_key=True)
    customer_id: int = 0
    items: list[BcItems] = field(default_factory=list)
    fav_item: BcItems | None = None
    float_col: float = 0.0


def _fill_backlink_count(r: Realm) -> None:
    items = []
    for i, item_id in enumerate([5, 2, 12, 14, 20]):
        item = r.add(BcItems(k=item_id, item_id=item_id, double_col=i + 0.5))
        item.self = item if i < 4 else None  # the last has no backlinks at all
        items.append(item)
    lists = [[0, 1, 2], [0] * 10, [2, 2]]
    for i in range(3):
        r.add(
            BcPerson(
                k=i,
                customer_id=i,
                fav_item=items[2 - i],
                float_col=i + 0.5,
                items=[items[j] for j in lists[i]],
            )
        )


s = section("Parser_BacklinkCount", "backlinks (@links)", [BcItems, BcPerson], BcItems)
s.fill = _fill_backlink_count
for _q, _n in [
    ("@links.@count == 0", 1),
    ("@links.@count == 0 && item_id == 20", 1),
    ("@links.@count == 1", 1),
    ("@links.@count == 1 && item_id == 14", 1),
    ("@links.@count == 5", 1),
    ("@links.@count == 5 && item_id == 12", 1),
    ("@links.@count == 3", 1),
    ("@links.@count == 3 && item_id == 2", 1),
    ("@links.@count == 13", 1),
    ("@links.@count == 13 && item_id == 5", 1),
    ("@links.@size == 0", 1),
    ("@links.@size == 0 && item_id == 20", 1),
    ("BcPerson: fav_item.@links.@count == 5 && fav_item.item_id == 12", 1),
    ("BcPerson: fav_item.@links.@count == 3 && fav_item.item_id == 2", 1),
    ("BcPerson: fav_item.@links.@count == 13 && fav_item.item_id == 5", 1),
    ("BcPerson: items.@links.@count == 21 && customer_id == 0", 1),
    ("BcPerson: items.@links.@count == 130 && customer_id == 1", 1),
    ("BcPerson: items.@links.@count == 10 && customer_id == 2", 1),
    ("@links.Items.self.@links.@count == 1 && item_id == 14", 1),
    ("@links.Person.items.@links.@count == 0", 5),
    ("@links.Person.fav_item.items.@links.@count == 130 && item_id == 2", 1),
    ("@links.Person.fav_item.fav_item.@links.@count == 3 && item_id == 2", 1),
    ("@links.@count == 0", 1),
    ("@links.@count >= item_id", 2),
    ("@links.@count >= @links.Person.fav_item.customer_id", 3),
    ("@links.@count == 0.0", 1),
    ("@links.@count >= double_col", 3),
    ("@links.@count >= @links.Person.fav_item.float_col", 3),
    ("@links.@count >= self.@count", 5),
    ("BcPerson: items.@count >= fav_item.@links.@count", 1),
    ("@links.@count == @links.Person.fav_item.@count", 1),
    ("@links.@count == @links.Person.items.@count", 1),
    ("@links.@count == @links.Items.self.@count", 2),
]:
    s.add(_q, _n)
s.throws("@links.@count == 'string'")
s.throws("@links.@count == 2018-04-09@14:21:0")
for _q in [
    "@links.@count.item_id == 0",
    "@links.@count.@avg.items_id == 0",
    "@links.@avg == 1",
    "@links.@sum == 1",
    "@links.@min == 1",
    "@links.@max == 1",
    "@links.@avg.item_id == 1",
    "@links.@sum.item_id == 1",
    "@links.@min.item_id == 1",
    "@links.@max.item_id == 1",
]:
    s.throws(_q, SYNTAX)


# ---------------------------------------------------------------------------
# Parser_BacklinksIndex


class BiItems(Object, name="items"):
    k: int = field(primary_key=True)
    item_id: int = 0


class BiPerson(Object, name="person"):
    k: int = field(primary_key=True)
    age: int = field(default=0, indexed=True)
    owns: list[BiItems] = field(default_factory=list)
    wish: set[BiItems] = field(default_factory=set)
    borrowed: dict[str, BiItems | None] = field(default_factory=dict)


def _fill_backlinks_index(r: Realm) -> None:
    items = {i: r.add(BiItems(k=i, item_id=i)) for i in [5, 2, 12, 14, 20]}
    r.add(BiPerson(k=0, age=48, owns=[items[5], items[2]], wish={items[12], items[14]}))
    r.add(
        BiPerson(
            k=1,
            age=25,
            owns=[items[5], items[20]],
            borrowed={"Mary": items[14], "Paul": None},
        )
    )


s = section("Parser_BacklinksIndex", "backlinks (@links)", [BiItems, BiPerson], BiItems)
s.fill = _fill_backlinks_index
s.add("@links.person.owns.age == 48", 2)
s.add("@links.person.wish.age == 48", 2)
s.add("@links.person.borrowed.age == 25", 1)


# ---------------------------------------------------------------------------
# Parser_Object (realm-core's object keys ``O1`` have no realmpy counterpart;
# realmpy's ``obj('table', 1)`` is the same object)


class ObTable(Object, name="table"):
    k: int = field(primary_key=True)
    link: ObTable | None = None
    linkx: ObTable | None = None


def _fill_object(r: Realm) -> None:
    objs = r.add_all([ObTable(k=i) for i in range(3)])
    objs[0].link = objs[0].linkx = objs[1]
    objs[1].link = objs[1]


s = section("Parser_Object", "links", [ObTable], ObTable)
s.fill = _fill_object
s.add("link == NULL", 1)
s.add("link == O1", 2)
s.add("link == linkx", 2)


# ---------------------------------------------------------------------------
# Parser_Geospatial (realm-core built with REALM_ENABLE_GEOSPATIAL)


class GeoPosition(EmbeddedObject, name="Position"):
    type: str = "Point"
    coordinates: list[float] = field(default_factory=list)


class GeoRestaurant(Object, name="Restaurant"):
    _id: ObjectId = field(primary_key=True, default_factory=ObjectId)
    self_link: GeoRestaurant | None = None
    partners: list[GeoRestaurant] = field(default_factory=list)
    name: str | None = None
    location: GeoPosition | None = None


def _fill_geospatial(r: Realm) -> None:
    places = [
        ("one", 0, 0),
        ("two", 0.5, 0.5),
        ("three", 1, 1),
        ("four", 2, 2),
        ("Red Fish Blue Fish", -123.37039, 48.42437),
        ("Foo", -123.36253, 48.42566),
        ("Superbaba", -123.3615, 48.4267),
        ("Sen Zushi", -123.3579, 48.42398),
    ]
    added: list[GeoRestaurant] = []
    for name, lng, lat in places:
        # Each partners every restaurant added before it (realm-core's loop).
        obj = r.add(
            GeoRestaurant(
                name=name,
                location=GeoPosition(coordinates=[lng, lat]),
                partners=list(added),
            )
        )
        obj.self_link = obj
        added.append(obj)
    r.add(GeoRestaurant(name="empty"))


BOX = GeoBox(GeoPoint(0.2, 0.2), GeoPoint(0.7, 0.7))
CIRCLE = GeoCircle(GeoPoint(0.3, 0.3), 1)
SQUARE = (GeoPoint(0, 0), GeoPoint(1, 0), GeoPoint(1, 1), GeoPoint(0, 1), GeoPoint(0, 0))
POLYGON = GeoPolygon((SQUARE,))
# realm-core's arguments; $3, its invalid (empty) Geospatial, has no realmpy
# counterpart: None stands for it (refused as realm-core refuses it).
GEO_ARGS = (
    BOX,
    CIRCLE,
    POLYGON,
    None,
    None,
    1.2,
    1000,
    "string value",
    str(BOX),
    str(CIRCLE),
    str(POLYGON),
    "GeoPoint([0, 0])",
)
AREA = "geoCircle([-123.36197, 48.42626], 0.000021950110534)"  # Superbaba and Foo

s = section("Parser_Geospatial", "geospatial", [GeoPosition, GeoRestaurant], GeoRestaurant)
s.fill = _fill_geospatial
s.add("location geoWithin geoBox([0.2, 0.2], [0.7, 0.7])", 1)
s.add("location geoWithin geoBox([0.2, 0.2, 0.2], [0.7, 0.7, 0.7])", 1)
s.add("location geoWithin geoCircle([0.3, 0.3], 1)", 4)
s.add("location geoWithin geoCircle([0.3, 0.3, 0.3], 1)", 4)
s.add("location geoWithin geoPolygon({[0.0, 0.0], [1.0, 0.0], [1, 1], [0, 1], [0.0, 0.0]})", 1)
s.add(
    "location geoWithin geoPolygon({[0.0, 0.0], [1.0, 0.0], [1, 1], [0, 1], [0.0, 0.0]}, "
    "{[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75], [0.25, 0.25]})",
    0,
)
s.add("location == NULL", 1)
s.add(f"ANY partners.location GEOWITHIN {AREA}", 2)
s.add(f"ALL partners.location GEOWITHIN {AREA}", 0)
s.add(f"NONE partners.location GEOWITHIN {AREA}", 7)
for _i, _n in [(0, 1), (1, 4), (2, 1), (8, 1), (9, 4), (10, 1)]:
    s.add(f"location GEOWITHIN ${_i}", _n, *GEO_ARGS)
s.add("location GEOWITHIN geoCircle([$0, $1], $2)", 4, 0.3, 0.3, 1.0)
s.add(
    "location GEOWITHIN geoPolygon({[$0, $1], [$2, $3], [$4, $5], [$6, $7], [$8, $9]})",
    1,
    *(c for p in SQUARE for c in (p.longitude, p.latitude)),
)
s.add("location GEOWITHIN geoBox([$0, $1], [$2, $3])", 1, 0.2, 0.2, 0.7, 0.7)
s.throws("_id geoWithin geoBox([0.2, 0.2], [0.7, 0.7])")
s.throws("location geoWithin _id", SYNTAX)
s.throws("location geoWithin location", SYNTAX)
s.throws("self_link geoWithin geoBox([0.2, 0.2], [0.7, 0.7])")
s.throws("location geoWithin NULL", SYNTAX)
s.throws("location geoWithin 1.2", SYNTAX)
s.throws("location geoWithin 'test string'", SYNTAX)
for _i in (4, 5, 6, 7, 11, 3):
    s.throws(f"location GEOWITHIN ${_i}", INVALID, *GEO_ARGS)
for _q in ("geoCircle([$1, $2], $3)", "geoCircle([$4, $4], $4)", "geoCircle([$7, $7], $7)"):
    s.throws(f"location GEOWITHIN {_q}", INVALID, *GEO_ARGS)


# ---------------------------------------------------------------------------
# Parser_PrimaryKey (realm-core's descriptions name the classes by their
# table names, ``obj("class_Int", 1)``; realm-core also checks that the
# description is the query text, realmpy formats its own: the count of the
# re-parsed description is checked instead)


class PkInt(Object, name="Int"):
    _id: int = field(primary_key=True)


class PkString(Object, name="String"):
    _id: str = field(primary_key=True)


class PkOid(Object, name="Oid"):
    _id: ObjectId = field(primary_key=True)


class PkUuid(Object, name="Uuid"):
    _id: uuid.UUID = field(primary_key=True)


class PkOrigin(Object, name="origin"):
    int: PkInt | None = None
    string: PkString | None = None
    oid: PkOid | None = None
    uuid: PkUuid | None = None
    mixed: Mixed = None


class PkLinking(Object, name="linking"):
    link: PkOrigin | None = None


PK_OID = ObjectId(b"primarykey12")
PK_UUID = uuid.UUID("3b241101-e2bb-4255-8caf-4136c566a961")


def _fill_primary_key(r: Realm) -> None:
    targets = [PkInt(_id=1), PkString(_id="first"), PkOid(_id=PK_OID), PkUuid(_id=PK_UUID)]
    for prop, target in zip(("int", "string", "oid", "uuid"), r.add_all(targets), strict=True):
        origin = r.add(PkOrigin(mixed=target))
        setattr(origin, prop, target)
        r.add(PkLinking(link=origin))


s = section(
    "Parser_PrimaryKey", "links", [PkInt, PkString, PkOid, PkUuid, PkOrigin, PkLinking], PkOrigin
)
s.fill = _fill_primary_key
for q in [
    'int == obj("class_Int",1)',
    'obj("class_Int",1) == int',
    'mixed == obj("class_Int",1)',
    'string == obj("class_String","first")',
    f'oid == obj("class_Oid",oid({PK_OID}))',
    f'uuid == obj("class_Uuid",uuid({PK_UUID}))',
    'PkLinking: link.int == obj("class_Int",1)',
    'PkLinking: link.mixed == obj("class_Int",1)',
    'PkLinking: link.string == obj("class_String","first")',
    f'PkLinking: link.oid == obj("class_Oid",oid({PK_OID}))',
    f'PkLinking: link.uuid == obj("class_Uuid",uuid({PK_UUID}))',
]:
    s.add(q, 1)
