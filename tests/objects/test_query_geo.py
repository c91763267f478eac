"""``geoWithin`` beyond realm-core's parser cases (parser_port/backlinks.py):
shapes' edges and validation, typed errors, a realm's embedded points."""

from __future__ import annotations

import pytest

from realmpy import query
from realmpy.errors import QueryArgumentError, QueryTypeError
from realmpy.query import GeoBox, GeoCircle, GeoPoint, GeoPolygon
from realmpy.query.geo import contains
from realmpy.realm import Realm
from realmpy.schema import EmbeddedObject, Object, field


class Spot(EmbeddedObject):
    type: str = "Point"
    coordinates: list[float] = field(default_factory=list)


class Place(Object):
    id: int = field(primary_key=True)
    where: Spot | None = None
    name: str = ""


@pytest.fixture
def models() -> list[type]:
    return [Spot, Place]


def test_shapes() -> None:
    # A box west of its east edge crosses the antimeridian.
    over = GeoBox(GeoPoint(170, -10), GeoPoint(-170, 10))
    assert contains(over, GeoPoint(179, 0)) and contains(over, GeoPoint(-175, 5))
    assert not contains(over, GeoPoint(0, 0))
    # One radian along the sphere: about 57.3 degrees of a meridian.
    circle = GeoCircle(GeoPoint(0, 0), 1)
    assert contains(circle, GeoPoint(0, 57)) and not contains(circle, GeoPoint(0, 58))
    ring = (GeoPoint(0, 0), GeoPoint(4, 0), GeoPoint(4, 4), GeoPoint(0, 4), GeoPoint(0, 0))
    hole = (GeoPoint(1, 1), GeoPoint(3, 1), GeoPoint(3, 3), GeoPoint(1, 3), GeoPoint(1, 1))
    poly = GeoPolygon((ring, hole))
    assert contains(poly, GeoPoint(0.5, 0.5)) and not contains(poly, GeoPoint(2, 2))
    assert not contains(poly, GeoPoint(4, 2))  # on an edge: not inside
    with pytest.raises(ValueError, match="latitude"):
        GeoPoint(0, 91)
    with pytest.raises(ValueError, match="ends where it starts"):
        GeoPolygon((ring[:-1],))
    with pytest.raises(ValueError, match="radius"):
        GeoCircle(GeoPoint(0, 0), -1)
    assert str(poly).startswith("geoPolygon({[0, 0], [4, 0]")


def test_schema_less_records_and_bad_shapes() -> None:
    q = query.parse("where geoWithin geoBox([0, 0], [1, 1])")
    assert q.matches({"where": {"type": "Point", "coordinates": [0.5, 0.5, 10]}})
    assert not q.matches({"where": {"type": "Polygon", "coordinates": [0.5, 0.5]}})
    assert not q.matches({"where": None})
    with pytest.raises(QueryArgumentError, match="latitude 100"):
        query.parse("where geoWithin geoBox([0, 0], [1, 100])").matches({"where": None})
    with pytest.raises(QueryArgumentError, match="must be a geospatial value"):
        query.parse("where geoWithin $0").matches({"where": None}, args=(5,))


def test_a_realms_points(realm: Realm) -> None:
    with realm.write():
        realm.add(Place(id=1, where=Spot(coordinates=[10.75, 59.91]), name="Oslo"))
        realm.add(Place(id=2, where=Spot(coordinates=[12.57, 55.68]), name="Copenhagen"))
        realm.add(Place(id=3, name="nowhere"))
    north = realm.query(Place, "where geoWithin geoBox([0, 57], [20, 70])")
    assert [p.name for p in north] == ["Oslo"]
    near = realm.query(Place, "where geoWithin $0", GeoCircle(GeoPoint(11, 58), 0.05))
    assert [p.name for p in near] == ["Oslo", "Copenhagen"]
    with pytest.raises(QueryTypeError, match="geoWithin needs points"):
        realm.query(Place, "name geoWithin geoBox([0, 0], [1, 1])")
