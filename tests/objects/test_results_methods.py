"""``Results.sort``, ``Results.filter`` and ``Results.distinct``: new live Results."""

from __future__ import annotations

import pytest

from realmpy.errors import QueryArgumentError, QuerySyntaxError
from realmpy.realm import Realm
from tests.objects_models import Dog, Person


def _fill(realm: Realm) -> None:
    with realm.write():
        for i, (name, age) in enumerate([("c", 3), ("a", 5), ("b", 3), ("a", 1)]):
            realm.add(Dog(id=i, name=name, age=age))


def test_sort_filter_distinct_chain(realm: Realm) -> None:
    _fill(realm)
    dogs = realm.query(Dog, "age >= $0", 2)
    assert [d.id for d in dogs.sort("name")] == [1, 2, 0]
    assert [d.id for d in dogs.sort("name", descending=True)] == [0, 2, 1]
    # The newer sort takes precedence, the older breaks ties.
    assert [d.id for d in realm.all(Dog).sort("id", True).sort("name")] == [3, 1, 2, 0]
    assert [d.id for d in dogs.filter("name != $0", "c").sort("age")] == [2, 1]
    assert [d.id for d in realm.all(Dog).sort("id").distinct("name")] == [0, 1, 2]
    assert [d.id for d in realm.all(Dog).sort("id").distinct("name", "age")] == [0, 1, 2, 3]


def test_they_are_live(realm: Realm) -> None:
    _fill(realm)
    youngest = realm.query(Dog, "age < $0", 10).sort("age").filter("name == $0", "a")
    assert [d.id for d in youngest] == [3, 1]
    with realm.write():
        realm.add(Dog(id=9, name="a", age=0))
    assert [d.id for d in youngest] == [9, 3, 1]


def test_sort_by_a_link_path(realm: Realm) -> None:
    with realm.write():
        old = realm.add(Person(name="old", age=80))
        young = realm.add(Person(name="young", age=20))
        realm.add(Dog(id=1, name="x", owner=old))
        realm.add(Dog(id=2, name="y", owner=young))
    assert [d.id for d in realm.all(Dog).sort("owner.age")] == [2, 1]


@pytest.mark.parametrize("bad", ["", "name) LIMIT(1", "name, age", "name ASC", "1"])
def test_a_key_path_must_be_one_key_path(realm: Realm, bad: str) -> None:
    with pytest.raises(QuerySyntaxError, match="not a key path"):
        realm.all(Dog).sort(bad)
    with pytest.raises(QuerySyntaxError, match="not a key path"):
        realm.all(Dog).distinct("name", bad)


def test_bad_arguments(realm: Realm) -> None:
    with pytest.raises(TypeError, match="descending"):
        realm.all(Dog).sort("name", "yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="at least one"):
        realm.all(Dog).distinct()
    with pytest.raises(QueryArgumentError, match="no property 'nosuch'"):
        realm.all(Dog).sort("nosuch")
