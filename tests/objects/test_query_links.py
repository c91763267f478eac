"""Queries over links: undeclared backlinks (``@links.Class.prop``,
``@links.@count``) and object literals (``obj('Class', pk)``), beyond the
cases of realm-core's parser tests (tests/objects/parser_port/backlinks.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from realmpy.config import Configuration
from realmpy.errors import QueryArgumentError, QueryTypeError, QueryUnsupportedError
from realmpy.layout import BACKLINKS_KEY, META
from realmpy.realm import Realm
from realmpy.schema import EmbeddedObject, Mixed, Object, field


class Dog(Object):
    name: str = field(primary_key=True)


class Tag(EmbeddedObject):
    dog: Dog | None = None


class Person(Object):
    id: int = field(primary_key=True)
    name: str = ""
    dogs: list[Dog] = field(default_factory=list)
    best: Dog | None = None
    by_name: dict[str, Dog | None] = field(default_factory=dict)


MODELS = [Dog, Person]


@pytest.fixture
def models() -> list[type]:
    return list(MODELS)


def names(results: object) -> list[str]:
    return sorted(d.name for d in results)  # type: ignore[attr-defined]


def fill(realm: Realm) -> None:
    with realm.write():
        a, b, c, _ = (realm.add(Dog(name=n)) for n in "abcd")
        realm.add(Person(id=1, name="x", dogs=[a, a, b], best=c, by_name={"k": a}))
        realm.add(Person(id=2, name="y", dogs=[a], best=a))


def test_links_through_one_property_count_each_link(realm: Realm) -> None:
    fill(realm)
    assert names(realm.query(Dog, "@links.Person.dogs.@count > 1")) == ["a"]  # 3 links
    assert names(realm.query(Dog, "@links.Person.dogs.@count == 1")) == ["b"]
    assert names(realm.query(Dog, "ANY @links.Person.dogs.name == 'x'")) == ["a", "b"]
    assert names(realm.query(Dog, "ALL @links.Person.dogs.name == 'x'")) == ["b", "c", "d"]
    assert names(realm.query(Dog, "@links.Person.dogs.@sum.id == 4")) == ["a"]  # 1 + 1 + 2
    assert names(realm.query(Dog, "@links.Person.by_name.name == 'x'")) == ["a"]
    # A property may be named as in the file or in Python.
    assert names(realm.query(Dog, "@links.Person.best.@count == 1")) == ["a", "c"]


def test_links_from_every_class(realm: Realm) -> None:
    fill(realm)
    assert names(realm.query(Dog, "@links.@count == 0")) == ["d"]
    assert names(realm.query(Dog, "@links.@count == 5")) == ["a"]  # 3 + 1 + 1
    assert names(realm.query(Person, "dogs.@links.@count == 11")) == ["x"]  # 5 + 5 + 1


def test_links_errors_are_typed(realm: Realm) -> None:
    with pytest.raises(QueryArgumentError, match="no class 'Cat'"):
        realm.query(Dog, "@links.Cat.dogs.@count > 0")
    with pytest.raises(QueryArgumentError, match="no link property 'name'"):
        realm.query(Dog, "@links.Person.name.@count > 0")
    with pytest.raises(QueryTypeError, match="@links needs an object"):
        realm.query(Person, "name.@links.@count > 0")


def test_links_count_refuses_links_it_cannot_see() -> None:
    """Links held in embedded objects have no backlink index: counting every
    incoming link would miss them, so the query is refused, not wrong."""

    class Holder(Object):
        id: int = field(primary_key=True)
        tag: Tag | None = None

    config = Configuration.in_memory([Dog, Person, Tag, Holder], identifier="links-embedded")
    with Realm(config) as realm:
        with pytest.raises(QueryUnsupportedError, match=r"Tag\.dog"):
            realm.query(Dog, "@links.@count > 0")
        with pytest.raises(QueryUnsupportedError, match="embedded"):
            realm.query(Dog, "@links.Tag.dog.@count > 0")
        with pytest.raises(QueryArgumentError, match="needs Tag to have a primary key"):
            realm.query(Holder, "tag.@links.@count > 0")
        assert len(realm.query(Dog, "@links.Person.dogs.@count > 0")) == 0


def test_a_file_without_the_backlink_index_is_scanned(tmp_path: Path) -> None:
    from realmpy.storage import Environment

    path = tmp_path / "t.realm"
    with Realm(Configuration.local(MODELS, path=path)) as realm:
        fill(realm)
    with Environment(str(path)) as env, env.write(record_history=False) as txn:
        for t in txn.tables():
            if t.startswith("b:"):
                txn.drop(t)
        txn.delete(META, BACKLINKS_KEY)
    with Realm(Configuration.local(MODELS, path=path, read_only=True)) as realm:
        assert not realm._backlinks_indexed
        assert names(realm.query(Dog, "@links.Person.dogs.@count > 1")) == ["a"]
        assert names(realm.query(Dog, "@links.@count == 5")) == ["a"]


def test_object_literals_name_an_object(realm: Realm) -> None:
    fill(realm)
    assert [p.id for p in realm.query(Person, "best == obj('Dog', 'a')")] == [2]
    assert [p.id for p in realm.query(Person, "best == obj('Dog', $0)", "c")] == [1]
    assert [p.id for p in realm.query(Person, "ANY dogs == obj('Dog', 'b')")] == [1]
    assert [p.id for p in realm.query(Person, "by_name.@values == obj('Dog', 'a')")] == [1]
    ids = [p.id for p in realm.query(Person, "best IN {obj('Dog', 'c'), obj('Dog', 'z')}")]
    assert ids == [1]
    assert [p.id for p in realm.query(Person, "best != obj('Dog', 'a')")] == [1]
    # A managed object as an argument means the same.
    c = realm.find(Dog, "c")
    assert [p.id for p in realm.query(Person, "best == $0", c)] == [1]
    with pytest.raises(QueryTypeError, match="links to Dog"):
        realm.query(Person, "best == obj('Person', 1)")
    with pytest.raises(QueryTypeError, match="no link"):
        realm.query(Person, "name == obj('Dog', 'a')")


class Pet(Object, name="Pet"):
    name: str = field(primary_key=True)


class Keeper(Object):
    id: int = field(primary_key=True)
    pet: Pet | None = None
    anything: Mixed = None


def test_object_literals_match_mixed_links_and_table_names() -> None:
    # As realm-core: a mixed value holding a link equals obj() of its object,
    # and obj() may name the class by its table name (realm-core's
    # descriptions write obj("class_Pet", …)).
    config = Configuration.in_memory([Pet, Keeper], identifier=f"objlit-{os.getpid()}")
    with Realm(config) as realm:
        with realm.write():
            rex, tom = realm.add(Pet(name="rex")), realm.add(Pet(name="tom"))
            realm.add_all([Keeper(id=1, pet=rex, anything=rex), Keeper(id=2, anything="rex")])
            realm.add(Keeper(id=3, pet=tom, anything=tom))
        for text in ("anything == obj('Pet', 'rex')", "anything == obj('class_Pet', 'rex')"):
            assert [k.id for k in realm.query(Keeper, text)] == [1]
        assert [k.id for k in realm.query(Keeper, "pet == obj(\"class_Pet\", 'tom')")] == [3]
        assert [k.id for k in realm.query(Keeper, "anything != obj('Pet', 'rex')")] == [2, 3]
        with pytest.raises(QueryArgumentError, match="no class 'Cat'"):
            realm.query(Keeper, "anything == obj('Cat', 'rex')")
        with pytest.raises(QueryTypeError, match="links to Pet"):
            realm.query(Keeper, "pet == obj('class_Keeper', 1)")
