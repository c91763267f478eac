"""Declared backlinks (``Backlinks[...] = backlinks(...)``) and the backlink
index that serves them and the clearing of links to deleted objects."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import realmpy.backlinkindex as backlinks_index
import realmpy.deletedlinks as deletedlinks
from realmpy import Backlinks, backlinks
from realmpy.config import Configuration
from realmpy.errors import ObjectTypeError, SchemaError
from realmpy.layout import BACKLINKS_KEY, META, backlink_name
from realmpy.realm import Realm
from realmpy.schema import EmbeddedObject, Object, field, object_schema
from realmpy.sync.history import apply_record
from realmpy.sync.wirevalues import wire_tables


class Tag(EmbeddedObject):
    dog: Dog | None = None


class Person(Object):
    _id: int = field(primary_key=True)
    dogs: list[Dog] = field(default_factory=list)
    best: Dog | None = None
    seen: set[Dog] = field(default_factory=set)
    by_name: dict[str, Dog | None] = field(default_factory=dict)
    tag: Tag | None = None
    cats: list[Cat] = field(default_factory=list)


class Cat(Object):
    """Linked to only directly (Dog is also linked to from embedded Tags)."""

    _id: int = field(primary_key=True)
    owners: Backlinks[Person] = backlinks("cats")


class Dog(Object):
    _id: int = field(primary_key=True)
    owners: Backlinks[Person] = backlinks("dogs")
    fans: Backlinks[Person] = backlinks("best")
    seen_by: Backlinks[Person] = backlinks("seen")
    named_by: Backlinks[Person] = backlinks("by_name")


MODELS = [Person, Dog, Tag, Cat]


@pytest.fixture
def models() -> list[type]:
    return list(MODELS)


def ids(objs: Any) -> list[int]:
    return [o._id for o in objs]


def expected_entries(realm: Realm) -> set[tuple[str, bytes]]:
    """The backlink entries the records call for."""
    out = set()
    with realm._env.read() as snap:
        for info in realm._info.values():
            for key, raw in snap.scan(info.table):
                rec = info.decode(raw)
                for p in info.links:
                    for t in backlinks_index.targets(p, rec[info.pos[p.name]]):
                        out.add((backlink_name(info.name, p.file_name), t + bytes(key)))
    return out


def stored_entries(realm: Realm) -> set[tuple[str, bytes]]:
    with realm._env.read() as snap:
        return {(t, bytes(k)) for t in snap.tables() if t.startswith("b:") for k, _ in snap.scan(t)}


def test_backlinks_of_every_link_kind(realm: Realm) -> None:
    with realm.write():
        rex, fido = realm.add(Dog(_id=1)), realm.add(Dog(_id=2))
        ann = realm.add(Person(_id=1, dogs=[rex, fido, rex], best=rex, seen={fido}))
        bob = realm.add(Person(_id=2, dogs=[rex], by_name={"a": fido, "b": None}))
    assert ids(rex.owners) == [1, 2] and ids(fido.owners) == [1]
    assert ids(rex.fans) == [1] and ids(fido.seen_by) == [1] and ids(fido.named_by) == [2]
    assert isinstance(rex.owners, Backlinks) and len(rex.owners) == 2 and ann in rex.owners
    assert rex.owners[1] == bob and ids(rex.owners[:1]) == [1]
    owners = rex.owners  # live: follows the writes
    with realm.write():
        ann.dogs.remove(rex)
        ann.dogs.remove(rex)
        bob.best = fido
        ann.best = None
    assert ids(owners) == [2] and ids(rex.fans) == [] and ids(fido.fans) == [2]
    assert stored_entries(realm) == expected_entries(realm)


def test_unmanaged_and_read_only(realm: Realm) -> None:
    dog = Dog(_id=9)
    assert list(dog.owners) == [] and dog.owners == []
    with pytest.raises(AttributeError, match="read-only"):
        dog.owners = []  # type: ignore[assignment]
    with pytest.raises(Exception, match="unknown field"):
        Dog(_id=1, owners=[])  # type: ignore[call-arg]
    with realm.write():
        managed = realm.add(Dog(_id=1))
        with pytest.raises(AttributeError, match="read-only"):
            managed.fans = []  # type: ignore[assignment]


def test_deleting_a_target_reads_only_the_objects_linking_to_it(
    realm: Realm, monkeypatch: pytest.MonkeyPatch
) -> None:
    with realm.write():
        tom = realm.add(Cat(_id=1))
        other = realm.add(Cat(_id=2))
        for i in range(50):
            realm.add(Person(_id=i, cats=[other]))
        realm.add(Person(_id=100, cats=[tom, other, tom]))
    calls: list[int] = []
    real = deletedlinks.strip_links

    def counting(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(deletedlinks, "strip_links", counting)
    with realm.write():
        realm.delete(tom)
    # One linking object rewritten; the 50 others were never read.
    assert len(calls) == 1
    holder = realm.find(Person, 100)
    assert holder is not None and ids(holder.cats) == [2]
    assert stored_entries(realm) == expected_entries(realm)
    assert ids(other.owners) == [*range(50), 100]
    with realm.write():
        realm.delete_all(Cat)
    assert len(calls) == 52  # delete_all: each object linking to a cat, once
    assert all(len(p.cats) == 0 for p in realm.all(Person))
    assert stored_entries(realm) == expected_entries(realm) == set()


def test_links_inside_embedded_objects_are_still_cleared(realm: Realm) -> None:
    with realm.write():
        rex = realm.add(Dog(_id=1))
        realm.add(Person(_id=1, tag=Tag(dog=rex)))
        realm.delete(rex)
    person = realm.find(Person, 1)
    assert person is not None and person.tag is not None and person.tag.dog is None


def test_random_writes_keep_the_index_exact(realm: Realm) -> None:
    rng = random.Random(14)
    with realm.write():
        dogs = [realm.add(Dog(_id=i)) for i in range(6)]
        people = [realm.add(Person(_id=i)) for i in range(6)]
    for _ in range(60):
        with realm.write():
            live = [d for d in dogs if d.is_valid]
            p = rng.choice([p for p in people if p.is_valid] or [None])
            op = rng.randrange(7)
            if p is None or not live:
                break
            if op == 0:
                p.dogs.append(rng.choice(live))
            elif op == 1 and len(p.dogs):
                del p.dogs[rng.randrange(len(p.dogs))]
            elif op == 2:
                p.best = rng.choice([*live, None])
            elif op == 3:
                p.seen.add(rng.choice(live))
            elif op == 4:
                p.by_name[rng.choice("xyz")] = rng.choice([*live, None])
            elif op == 5 and len(live) > 2:
                realm.delete(rng.choice(live))
            else:
                n = rng.randrange(100, 10_000)
                people.append(realm.add(Person(_id=n, dogs=rng.sample(live, 2)), update=True))
        assert stored_entries(realm) == expected_entries(realm)
        for d in dogs:
            if d.is_valid:
                expected = [p._id for p in realm.all(Person) if d in list(p.dogs)]
                assert ids(d.owners) == sorted(expected)


def _no_index(path: Path) -> None:
    """Make the file look written by a realmpy without backlink tables."""
    from realmpy.storage import Environment

    env = Environment(str(path))
    with env.write(record_history=False) as txn:
        for t in txn.tables():
            if t.startswith("b:"):
                txn.drop(t)
        txn.delete(META, BACKLINKS_KEY)
    env.close()


def test_an_older_file_gets_its_index_when_opened(tmp_path: Path) -> None:
    config = Configuration.local(MODELS, path=tmp_path / "t.realm")
    with Realm(config) as realm:
        with realm.write():
            rex = realm.add(Dog(_id=1))
            realm.add(Person(_id=1, dogs=[rex]))
    _no_index(tmp_path / "t.realm")
    read_only = Configuration.local(MODELS, path=tmp_path / "t.realm", read_only=True)
    with Realm(read_only) as realm:  # no index to read: found by a scan
        dog = realm.find(Dog, 1)
        assert dog is not None and ids(dog.owners) == [1]
    with Realm(config) as realm:  # built in the opening write
        assert stored_entries(realm) == expected_entries(realm) != set()
        dog = realm.find(Dog, 1)
        assert dog is not None and ids(dog.owners) == [1]


def test_schema_declares_backlinks_and_sync_never_sees_them(tmp_path: Path) -> None:
    schema = object_schema(Dog)
    assert [b.to_list() for b in schema.backlinks][:2] == [
        ["owners", "Person", "dogs"],
        ["fans", "Person", "best"],
    ]
    assert [p.name for p in schema.properties] == ["_id"]  # not in the records
    config = Configuration.local(MODELS, path=tmp_path / "t.realm")
    with Realm(config) as realm:
        assert realm._schema["Dog"].backlinks == schema.backlinks
        assert "owners" not in wire_tables(realm._schema)["Dog"].fields

    class Dog2(Object, name="Dog"):  # the same file without the declarations
        _id: int = field(primary_key=True)

    class Person2(Object, name="Person"):
        _id: int = field(primary_key=True)
        dogs: list[Dog2] = field(default_factory=list)
        best: Dog2 | None = None
        seen: set[Dog2] = field(default_factory=set)
        by_name: dict[str, Dog2 | None] = field(default_factory=dict)
        tag: Tag | None = None
        cats: list[Cat2] = field(default_factory=list)

    class Cat2(Object, name="Cat"):
        _id: int = field(primary_key=True)

    models2 = [Person2, Dog2, Tag, Cat2]
    with Realm(Configuration.local(models2, path=tmp_path / "t.realm")) as realm:
        assert realm._schema["Dog"].backlinks == ()  # no migration needed either way


def test_sync_changes_keep_the_index(realm: Realm) -> None:
    with realm.write():
        realm.add(Dog(_id=1))
    stored = realm._schema["Person"]
    rex_key = realm.find(Dog, 1)._rp_key  # type: ignore[union-attr]
    rec = {"_id": 7, "dogs": [rex_key], "best": None, "seen": set(), "by_name": {}, "tag": None}
    with realm._env.write(record_history=False) as txn:
        apply_record(txn, stored, 7, rec)
    realm.refresh()
    rex = realm.find(Dog, 1)
    assert rex is not None and ids(rex.owners) == [7]
    with realm._env.write(record_history=False) as txn:
        apply_record(txn, stored, 7, None)
    realm.refresh()
    assert ids(rex.owners) == [] and stored_entries(realm) == set()


@pytest.mark.parametrize(
    ("annotation", "origin", "match"),
    [
        ("Backlinks[Person]", "nosuch", "not a link property"),
        ("Backlinks[Person]", "tag", "not a link property"),
        ("list[Person]", "dogs", "needs the annotation"),
        ("Backlinks[int]", "dogs", "takes a model class"),
    ],
)
def test_bad_declarations(annotation: str, origin: str, match: str) -> None:
    cls = type(
        "BadDog",
        (Object,),
        {
            "__annotations__": {"_id": "int", "x": annotation},
            "__module__": __name__,
            "x": backlinks(origin),
        },
    )
    with pytest.raises(SchemaError, match=match):
        object_schema(cls)


def test_backlinks_need_their_origin_in_the_schema(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="not in the schema"):
        Configuration.local([Dog], path=tmp_path / "t.realm")
    with pytest.raises(SchemaError, match="embedded object cannot have backlinks"):
        type(
            "E",
            (EmbeddedObject,),
            {
                "__annotations__": {"x": "Backlinks[Person]"},
                "__module__": __name__,
                "x": backlinks("dogs"),
            },
        )


def test_queries_on_declared_backlinks(realm: Realm) -> None:
    with realm.write():
        rex, fido, lone = realm.add(Dog(_id=1)), realm.add(Dog(_id=2)), realm.add(Dog(_id=3))
        realm.add(Person(_id=1, dogs=[rex, fido], best=rex))
        realm.add(Person(_id=2, dogs=[rex]))
    assert ids(realm.query(Dog, "owners.@count == 2")) == [1]
    assert ids(realm.query(Dog, "owners.@count == 0")) == [3]
    assert ids(realm.query(Dog, "ANY owners._id == 2")) == [1]
    assert ids(realm.query(Dog, "fans.@count > 0 OR owners.@size == 1")) == [1, 2]
    assert ids(realm.query(Dog, "owners.@count > 0").sort("_id", descending=True)) == [2, 1]
    bob = realm.find(Person, 2)
    assert bob is not None
    with realm.write():
        realm.delete(bob)
    assert ids(realm.query(Dog, "owners.@count == 1")) == [1, 2]
    from realmpy.errors import QueryArgumentError

    with pytest.raises(QueryArgumentError, match="no property 'ownerz'"):
        realm.query(Dog, "ownerz.@count > 0")
    assert lone.is_valid


def test_backlinks_as_results_and_their_listener(tmp_path: Path) -> None:
    import queue

    config = Configuration.local(MODELS, path=tmp_path / "t.realm", durability="none")
    with Realm(config) as realm:
        with realm.write():
            rex = realm.add(Dog(_id=1))
            realm.add(Person(_id=1, dogs=[rex]))
            realm.add(Person(_id=2, by_name={"x": rex}))
        assert ids(rex.owners.results()) == ids(rex.owners) == [1]
        assert ids(rex.named_by.results()) == [2] and ids(rex.fans.results()) == []
        assert ids(rex.owners.results().filter("_id > 5")) == []
        seen: queue.Queue[tuple[list[int], Any]] = queue.Queue()
        token = rex.owners.add_listener(lambda r, c: seen.put(([p._id for p in r], c)))
        got, change = seen.get(timeout=30)
        assert got == [1] and change.is_initial
        with realm.write():
            realm.add(Person(_id=3, dogs=[rex, rex]))
        got, change = seen.get(timeout=30)
        assert got == [1, 3] and change.inserted == (1,)
        token.remove()
        with pytest.raises(ObjectTypeError, match="unmanaged"):
            Dog(_id=5).owners.results()


def test_realmpy_check_verifies_the_backlink_tables(tmp_path: Path) -> None:
    from realmpy.errors import CorruptError
    from realmpy.storage import Environment
    from realmpy.tools.checkfile import check_file

    path = tmp_path / "t.realm"
    with Realm(Configuration.local(MODELS, path=path)) as realm, realm.write():
        rex = realm.add(Dog(_id=1))
        realm.add(Person(_id=1, dogs=[rex], best=rex))
        realm.add(Person(_id=2, cats=[realm.add(Cat(_id=1))]))
    assert "sound" in check_file(str(path))
    from realmpy import codec

    with Environment(str(path)) as env, env.write(record_history=False) as txn:
        txn.delete("b:Person:best", codec.encode_key(1) + codec.encode_key(1))
        txn.put("b:Person:dogs", codec.encode_key(7) + codec.encode_key(1), b"")
    with pytest.raises(CorruptError) as err:
        check_file(str(path))
    assert "backlinks b:Person:best: missing entry (1, 1)" in str(err.value)
    assert "backlinks b:Person:dogs: entry (7, 1) has no link" in str(err.value)


class Node(Object):
    """A tree: the backlinks' origin is the class itself."""

    _id: int = field(primary_key=True)
    parent: Node | None = None
    children: Backlinks[Node] = backlinks("parent")


class Husband(Object):
    _id: int = field(primary_key=True)
    wife: Wife | None = None
    husbands: Backlinks[Wife] = backlinks("husband")


class Wife(Object):
    """Declares backlinks to Husband, who declares backlinks to Wife."""

    _id: int = field(primary_key=True)
    husband: Husband | None = None
    wives: Backlinks[Husband] = backlinks("wife")


def test_backlinks_declared_on_their_origin_or_on_each_other(tmp_path: Path) -> None:
    # Building these schemas used to recurse without end.
    assert [b.name for b in object_schema(Node).backlinks] == ["children"]
    assert [b.name for b in object_schema(Wife).backlinks] == ["wives"]
    assert [b.name for b in object_schema(Husband).backlinks] == ["husbands"]
    with Realm(Configuration.local([Node], path=tmp_path / "t.realm")) as realm:
        with realm.write():
            root = realm.add(Node(_id=0))
            realm.add_all([Node(_id=1, parent=root), Node(_id=2, parent=root)])
        assert ids(root.children) == [1, 2]
        assert ids(realm.query(Node, "children.@count == 2")) == [0]
