"""Realm: writes, reads, queries with and without indexes, schema changes,
lifecycle, and every bad input the issue lists."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realmpy.config import Configuration
from realmpy.errors import (
    ClosedRealmError,
    ConfigurationError,
    DuplicatePrimaryKeyError,
    FrozenRealmError,
    InvalidObjectError,
    KeyFormatError,
    MigrationRequiredError,
    ObjectTypeError,
    QueryArgumentError,
    QuerySyntaxError,
    RealmThreadError,
    SchemaError,
    TransactionStateError,
    WrongRealmError,
)
from realmpy.objectid import ObjectId
from realmpy.realm import Realm
from realmpy.schema import EmbeddedObject, Object, field
from tests.objects_models import MODELS, Address, Dog, Note, Person


def in_transaction(realm: Realm) -> bool:
    return realm.is_in_transaction


def test_add_find_update_delete(realm: Realm) -> None:
    with realm.write():
        ann = realm.add(Person(name="Ann", age=30))
        assert ann.is_managed and in_transaction(realm)
        realm.add(Person(id=ann.id, name="Ann", age=31), update=True)
    assert not in_transaction(realm)
    assert ann.age == 31
    found = realm.find(Person, ann.id)
    assert found == ann and found is not None and found.name == "Ann"
    assert realm.find(Person, ObjectId()) is None
    with realm.write():
        ann.age = 32
        ann.visits.increment(2)
        ann.visits.increment(3)
    assert ann.age == 32 and ann.visits == 5
    ann_id = ann.id
    with realm.write():
        realm.delete(ann)
    assert realm.find(Person, ann_id) is None
    with pytest.raises(InvalidObjectError):
        _ = ann.age
    assert not ann.is_valid


def test_links_collections_embedded(realm: Realm) -> None:
    with realm.write():
        ann = realm.add(
            Person(
                name="Ann",
                address=Address(street="Main"),
                tags={"a"},
                scores={"x": 1.0},
                born=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc),
                balance=Decimal("1.50"),
            )
        )
        rex = Dog(id=1, name="Rex", owner=ann)  # unmanaged: added by the link
        ann.dogs.append(rex)
        assert rex.is_managed
        ann.tags.add("b")
        ann.scores["y"] = 2
        assert ann.address is not None
        ann.address.city = "Oslo"
    assert [d.name for d in ann.dogs] == ["Rex"]
    assert rex.owner == ann
    assert ann.tags == {"a", "b"}
    assert dict(ann.scores) == {"x": 1.0, "y": 2.0}
    assert ann.address is not None and ann.address.city == "Oslo"
    assert ann.address.street == "Main"
    assert ann.born == dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
    assert ann.balance == Decimal("1.5")
    with realm.write():
        realm.delete(rex)
        ann.dogs.extend([Dog(id=2, name="Fido")])
        del ann.scores["x"]
        ann.tags.discard("a")
    assert [d.name for d in ann.dogs] == ["Fido"]  # the deleted link is gone
    assert dict(ann.scores) == {"y": 2.0} and ann.tags == {"b"}


def test_link_cycle_is_added_once(realm: Realm) -> None:
    ann = Person(name="Ann")
    rex = Dog(id=1, name="Rex", owner=ann)
    ann.dogs.append(rex)
    with realm.write():
        realm.add(ann)
    assert realm.find(Dog, 1) == rex and len(realm.all(Person)) == 1
    dog = realm.find(Dog, 1)
    assert dog is not None and dog.owner is not None and dog.owner.dogs[0] == dog


def test_results_are_live_and_lazy(realm: Realm) -> None:
    old = realm.query(Person, "age >= 18")
    everyone = realm.all(Person)
    assert len(old) == 0 and not everyone
    with realm.write():
        realm.add_all([Person(name=n, age=a) for n, a in [("a", 10), ("b", 20), ("c", 30)]])
    assert len(old) == 2 and len(everyone) == 3
    assert [p.name for p in old] == ["b", "c"] or sorted(p.name for p in old) == ["b", "c"]
    it = iter(realm.query(Person, "TRUEPREDICATE SORT(age)"))
    first = next(it)
    with realm.write():
        realm.add(Person(name="d", age=1))
    # the iteration keeps its list; a new evaluation sees the change
    assert [first.name] + [p.name for p in it] == ["a", "b", "c"]
    assert realm.query(Person, "TRUEPREDICATE SORT(age)")[0].name == "d"
    assert realm.all(Person).first() is not None
    assert realm.query(Person, "age > 100").first() is None
    s = realm.query(Person, "TRUEPREDICATE SORT(age)")[1:3]
    assert [p.name for p in s] == ["a", "b"]
    chained = realm.query(Person, "age > $0", 5).query("age < $0 SORT(age DESC)", 25)
    assert [p.name for p in chained] == ["b", "a"]


def test_indexed_and_unindexed_queries_agree(realm: Realm) -> None:
    with realm.write():
        for i in range(60):
            realm.add(Dog(id=i, name=f"d{i % 7}", age=i % 10))
    cases = [
        ("age == 3", ()),
        ("age == $0", (3,)),
        ("age IN {1, 2, 30}", ()),
        ("age > 7", ()),
        ("age >= 7 AND name == 'd1'", ()),
        ("age < 2", ()),
        ("age <= 2", ()),
        ("age BETWEEN {3, 5}", ()),
        ("id == 17", ()),
        ("id IN $0", ([1, 5, 99],)),
        ("id > 50", ()),
        ("id BETWEEN {10, 12} OR age == 9", ()),
        ("age == 3.0", ()),
    ]
    for text, args in cases:
        got = [d.id for d in realm.query(Dog, text, *args)]
        model = [
            d.id
            for d in realm.all(Dog)
            if __import__("realmpy.query")
            .query.parse(text)
            .matches({"id": d.id, "age": d.age, "name": d.name}, args)
        ]
        assert got == model, text


WIDE_INTS = st.sampled_from(
    [0, 1, -1, 255, -255, 256, -256, 1 << 24, -(1 << 24), (1 << 63) - 1, -(1 << 63)]
) | st.integers(-(1 << 63), (1 << 63) - 1)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(WIDE_INTS, min_size=1, max_size=30, unique=True),
    st.lists(WIDE_INTS, min_size=30, max_size=30),
    st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "BETWEEN", "IN", "AND", "AND3"]),
    WIDE_INTS,
    WIDE_INTS,
)
def test_int_index_ranges_match_a_full_scan(
    ids: list[int], ages: list[int], op: str, a: int, b: int
) -> None:
    """Ints of every key length and sign: a range on the primary key or on
    an index returns exactly what a scan of every object does (ints span
    several key tags, so "all ints" is more than one tag)."""
    config = Configuration.in_memory(MODELS, identifier=f"wide-{uuid.uuid4()}")
    with Realm(config) as realm:
        with realm.write():
            realm.add_all([Dog(id=i, name="d", age=g) for i, g in zip(ids, ages)])
        for prop in ("id", "age"):
            args: tuple[int, ...]
            if op == "BETWEEN":
                text, args = f"{prop} BETWEEN {{$0, $1}}", (a, b)
            elif op == "IN":
                text, args = f"{prop} IN {{$0, $1}}", (a, b)
            elif op == "AND":  # two ranges on one property narrow each other
                text, args = f"{prop} >= $0 AND {prop} < $1", (a, b)
            elif op == "AND3":
                text = f"{prop} > $0 AND name == 'd' AND {prop} <= $1 AND {prop} BETWEEN {{$1, $0}}"
                args = (a, b)
            else:
                text, args = f"{prop} {op} $0", (a,)
            got = [d.id for d in realm.query(Dog, text, *args)]
            parsed = __import__("realmpy.query").query.parse(text)
            model = [
                d.id
                for d in realm.all(Dog)
                if parsed.matches({"id": d.id, "age": d.age, "name": d.name}, args)
            ]
            assert got == model, (text, args)
            assert [d.id for d in realm.all(Dog)] == sorted(ids)


def test_old_key_format_is_refused(tmp_path: Path) -> None:
    """A file from before variable-length int keys (no ``key_format`` in
    ``_meta``) or of an unknown format is refused with KeyFormatError, not
    misread; delete_if_migration_needed starts it afresh."""
    from realmpy.layout import KEY_FORMAT_KEY, META
    from realmpy.storage import Environment

    path = tmp_path / "old.realm"
    config = Configuration.local(MODELS, path=path, durability="none")
    with Realm(config) as realm:
        with realm.write():
            realm.add(Dog(id=300, name="rex", age=3))
    for stored in (None, b"1", b"3"):
        with Environment(path, durability="none") as env:
            with env.write() as txn:
                if stored is None:
                    txn.delete(META, KEY_FORMAT_KEY)
                else:
                    txn.put(META, KEY_FORMAT_KEY, stored)
        found = "1" if stored is None else stored.decode()
        with pytest.raises(KeyFormatError, match=f"format {found}") as info:
            Realm(config)
        assert "delete_if_migration_needed" in str(info.value)
        assert "copy the objects out" in str(info.value)
    ro = Configuration.local(MODELS, path=path, read_only=True)
    with pytest.raises(KeyFormatError):
        Realm(ro)
    fresh = Configuration.local(
        MODELS, path=path, durability="none", delete_if_migration_needed=True
    )
    with Realm(fresh) as realm:
        assert len(realm.all(Dog)) == 0
        with realm.write():
            realm.add(Dog(id=300, name="rex", age=3))
    with Realm(config) as realm:
        dog = realm.find(Dog, 300)
        assert dog is not None and dog.name == "rex"


def test_query_errors(realm: Realm) -> None:
    with pytest.raises(QuerySyntaxError):
        realm.query(Person, "age >")
    with pytest.raises(QueryArgumentError, match="no property 'colour'"):
        realm.query(Person, "colour == 'red'")
    with pytest.raises(QueryArgumentError, match="no property 'x'"):
        realm.query(Dog, "owner.x == 1")
    with pytest.raises(QueryArgumentError, match=r"\$1"):
        realm.query(Person, "age > $1", 3)


def test_bad_writes_are_typed_errors(realm: Realm, tmp_path: Path) -> None:
    with pytest.raises(TransactionStateError, match="outside a write transaction"):
        realm.add(Person(name="x"))
    with realm.write():
        ann = realm.add(Person(name="Ann"))
        dog = realm.add(Dog(id=1, name="Rex"))
        with pytest.raises(DuplicatePrimaryKeyError, match="update=True"):
            realm.add(Dog(id=1, name="Other"))
        with pytest.raises(ObjectTypeError, match="expects int"):
            dog.age = "old"  # type: ignore[assignment]
        with pytest.raises(ObjectTypeError, match="primary key"):
            dog.id = 5
        with pytest.raises(ObjectTypeError, match="embedded"):
            realm.add(Address(street="x"))  # type: ignore[type-var]
        with pytest.raises(TransactionStateError, match="already open"):
            realm.begin_write()
    with pytest.raises(TransactionStateError):
        ann.age = 3
    with pytest.raises(TransactionStateError):
        ann.dogs.append(dog)
    with pytest.raises(ObjectTypeError, match="primary key is int"):
        realm.find(Dog, "1")
    with pytest.raises(SchemaError, match="no primary key"):
        realm.find(Note, 1)

    class Stranger(Object):
        id: int = field(primary_key=True)

    with pytest.raises(SchemaError, match="not in this realm's schema"):
        realm.all(Stranger)
    other = Realm(Configuration.local(MODELS, path=tmp_path / "other.realm"))
    try:
        with other.write():
            theirs = other.add(Dog(id=9, name="Theirs"))
        with realm.write():
            with pytest.raises(WrongRealmError):
                realm.add(theirs)
            with pytest.raises(WrongRealmError):
                realm.delete(theirs)
            with pytest.raises(WrongRealmError):
                ann.dogs.append(theirs)
    finally:
        other.close()


def test_rollback_on_exception(realm: Realm) -> None:
    with pytest.raises(RuntimeError), realm.write():
        p = realm.add(Person(name="gone"))
        raise RuntimeError("boom")
    assert len(realm.all(Person)) == 0
    with pytest.raises(InvalidObjectError):
        _ = p.name
    tx = realm.begin_write()
    realm.add(Person(name="kept"))
    tx.commit()
    assert not tx.is_open
    with pytest.raises(TransactionStateError):
        tx.commit()
    tx = realm.begin_write()
    realm.add(Person(name="dropped"))
    tx.rollback()
    assert [p.name for p in realm.all(Person)] == ["kept"]


def test_delete_many_and_all(realm: Realm) -> None:
    with realm.write():
        realm.add_all([Dog(id=i, name=str(i), age=i) for i in range(10)])
        realm.add_all([Note(text=str(i)) for i in range(3)])
    with realm.write():
        assert realm.delete_many(realm.query(Dog, "age < 4")) == 4
    assert len(realm.all(Dog)) == 6
    assert len(realm.query(Dog, "age == 2")) == 0  # the index entry went too
    with realm.write():
        realm.delete_all(Dog)
    assert len(realm.all(Dog)) == 0 and len(realm.all(Note)) == 3
    with realm.write():
        realm.delete_all()
    assert len(realm.all(Note)) == 0


def test_objects_without_primary_key_keep_insertion_order(realm: Realm) -> None:
    with realm.write():
        for i in (3, 1, 2):
            realm.add(Note(text=str(i), n=i))
    assert [n.text for n in realm.all(Note)] == ["3", "1", "2"]


def test_close_freeze_and_threads(realm: Realm, tmp_path: Path) -> None:
    with realm.write():
        ann = realm.add(Person(name="Ann", age=1))
    frozen = realm.freeze()
    people = frozen.all(Person)
    with realm.write():
        ann.age = 2
        realm.add(Person(name="Bo"))
    assert len(people) == 1 and people[0].age == 1
    assert frozen.is_frozen and people.is_frozen
    with pytest.raises(FrozenRealmError):
        frozen.begin_write()
    frozen.close()
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            realm.all(Person)
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert isinstance(errors[0], RealmThreadError)
    realm.close()
    assert realm.is_closed
    realm.close()  # idempotent
    with pytest.raises(ClosedRealmError):
        realm.all(Person)
    with pytest.raises(ClosedRealmError):
        _ = ann.name


def test_schema_is_stored_and_additive_changes_apply(tmp_path: Path) -> None:
    path = tmp_path / "s.realm"

    class Item(Object):
        id: int = field(primary_key=True)
        name: str = ""

    with Realm(Configuration.local([Item], path=path)) as r, r.write():
        r.add(Item(id=1, name="a"))

    class Item(Object):  # type: ignore[no-redef]
        id: int = field(primary_key=True)
        name: str = field(default="", indexed=True)
        price: float = 2.5

    class Extra(Object):
        v: int = 0

    with Realm(Configuration.local([Item, Extra], path=path)) as r:
        item = r.find(Item, 1)
        assert item is not None and item.name == "a"
        assert item.price == 2.5  # type: ignore[attr-defined]
        assert [i.id for i in r.query(Item, "name == 'a'")] == [1]  # index built
        assert r.schema.names() == ["Item", "Extra"]

    class Item(Object):  # type: ignore[no-redef]
        id: int = field(primary_key=True)
        name: int = 0

    with pytest.raises(MigrationRequiredError, match=r"Item\.name changed from str to int"):
        Realm(Configuration.local([Item], path=path))
    Realm(Configuration.local([Item], path=path, schema_version=1)).close()
    with pytest.raises(MigrationRequiredError, match="newer than"):
        Realm(Configuration.local([Item], path=path, schema_version=0))


def test_migration_and_reset(tmp_path: Path) -> None:
    path = tmp_path / "m.realm"

    class Pet(Object):
        id: int = field(primary_key=True)
        name: str = ""

    with Realm(Configuration.local([Pet], path=path)) as r, r.write():
        r.add_all([Pet(id=1, name="ann lee"), Pet(id=2, name="bo ko")])

    class Pet(Object):  # type: ignore[no-redef]
        id: int = field(primary_key=True)
        first: str = ""
        last: str = ""

    seen: list[str] = []

    def migrate(old: object, new: Realm) -> None:
        for rec in old.all("Pet"):  # type: ignore[attr-defined]
            seen.append(rec["name"])
            first, last = rec["name"].split()
            pet = new.find(Pet, rec["id"])
            assert pet is not None
            pet.first, pet.last = first, last

    config = Configuration.local([Pet], path=path, schema_version=1, migration=migrate)
    with Realm(config) as r:
        assert sorted(seen) == ["ann lee", "bo ko"]
        names = [(p.first, p.last) for p in r.all(Pet)]  # type: ignore[attr-defined]
        assert names == [("ann", "lee"), ("bo", "ko")]

    class Pet(Object):  # type: ignore[no-redef]
        id: str = field(primary_key=True)

    reset = Configuration.local([Pet], path=path, schema_version=1, delete_if_migration_needed=True)
    with Realm(reset) as r:
        assert len(r.all(Pet)) == 0


def test_initial_data_runs_once(tmp_path: Path) -> None:
    calls = []

    def seed(r: Realm) -> None:
        calls.append(1)
        r.add(Dog(id=1, name="Seed"))

    config = Configuration.local(MODELS, path=tmp_path / "i.realm", initial_data=seed)
    for _ in range(2):
        with Realm(config) as r:
            assert [d.name for d in r.all(Dog)] == ["Seed"]
    assert calls == [1]


def test_history_kind_mismatch_is_refused(tmp_path: Path) -> None:
    import dataclasses

    path = tmp_path / "h.realm"
    Realm(Configuration.local(MODELS, path=path)).close()
    synced = dataclasses.replace(
        Configuration.local(MODELS, path=path), kind="disconnected_sync", history="sync"
    )
    with pytest.raises(ConfigurationError, match="local history"):
        Realm(synced)


def test_compact_delete_and_read_only(tmp_path: Path) -> None:
    path = tmp_path / "c.realm"
    config = Configuration.local(MODELS, path=path)
    with Realm(config) as r:
        with r.write():
            r.add_all([Note(text="x" * 500) for _ in range(200)])
        with r.write():
            r.delete_all(Note)
        with r.write():
            r.add(Dog(id=1, name="Rex"))
        assert not Realm.compact(config)  # open here
        with pytest.raises(ConfigurationError):
            Realm.delete_realm(path)
    assert Realm.compact(config)
    asked: list[tuple[int, int]] = []

    def should(total: int, used: int) -> bool:
        asked.append((total, used))
        return True

    with Realm(Configuration.local(MODELS, path=path, should_compact=should)) as r:
        assert [d.name for d in r.all(Dog)] == ["Rex"]
    assert asked and asked[0][1] <= asked[0][0]
    with Realm(Configuration.local(MODELS, path=path, read_only=True)) as r:
        assert len(r.all(Dog)) == 1
        with pytest.raises(TransactionStateError, match="read-only"):
            r.begin_write()
    sync_state = tmp_path / "c.realm.sync"  # as a sync agent leaves it
    sync_state.write_bytes(b"")
    Realm.delete_realm(path)
    assert not path.exists()
    assert not any(p.name.startswith("c.realm") for p in tmp_path.iterdir())


def test_configuration_validation(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        Configuration.local(MODELS, path=tmp_path / "x", schema_version=-1)
    with pytest.raises(ConfigurationError):
        Configuration.local(MODELS, path=tmp_path / "x", durability="fast")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Configuration.in_memory(MODELS, identifier="")
    with pytest.raises(SchemaError):
        Configuration.local([Dog], path=tmp_path / "x")  # Dog links to Person
    with pytest.raises(ConfigurationError):
        Realm("path")  # type: ignore[arg-type]


def test_in_memory_is_shared_and_vanishes(tmp_path: Path) -> None:
    config = Configuration.in_memory(MODELS, identifier=f"v-{uuid.uuid4()}")
    with Realm(config) as a, Realm(config) as b:
        with a.write():
            a.add(Dog(id=1, name="Rex"))
        assert [d.name for d in b.all(Dog)] == ["Rex"]
    with Realm(config) as c:
        assert len(c.all(Dog)) == 0


class Target(Object):
    id: int = field(primary_key=True)


class Holds(EmbeddedObject):
    ref: Target | None = None
    refs: list[Target] = field(default_factory=list)


class Holder(Object):
    id: int = field(primary_key=True)
    one: Target | None = None
    many: list[Target] = field(default_factory=list)
    bag: set[Target] = field(default_factory=set)
    named: dict[str, Target | None] = field(default_factory=dict)
    inner: Holds | None = None
    inners: list[Holds] = field(default_factory=list)


LINK_MODELS = [Target, Holds, Holder]


def _holder_state(h: Holder) -> tuple[object, ...]:
    assert h.inner is not None
    return (
        None if h.one is None else h.one.id,
        [t.id for t in h.many],
        sorted(t.id for t in h.bag),
        {k: (None if v is None else v.id) for k, v in h.named.items()},
        None if h.inner.ref is None else h.inner.ref.id,
        [t.id for t in h.inner.refs],
        [(None if e.ref is None else e.ref.id) for e in h.inners],
    )


def test_deleting_a_link_target_clears_links_to_it(tmp_path: Path) -> None:
    config = Configuration.local(LINK_MODELS, path=tmp_path / "l.realm", durability="none")
    with Realm(config) as realm:
        with realm.write():
            t1, t2 = realm.add(Target(id=1)), realm.add(Target(id=2))
            h = realm.add(
                Holder(
                    id=1,
                    one=t1,
                    many=[t1, t2, t1],
                    bag={t1, t2},
                    named={"a": t1, "b": t2},
                    inner=Holds(ref=t1, refs=[t2, t1]),
                    inners=[Holds(ref=t1), Holds(ref=t2)],
                )
            )
        before = _holder_state(h)
        tx = realm.begin_write()
        realm.delete(t1)
        assert _holder_state(h)[0] is None  # in the same write transaction
        tx.rollback()
        assert _holder_state(h) == before
        with realm.write():
            realm.delete(t1)
        after = (None, [2], [2], {"a": None, "b": 2}, None, [2], [None, 2])
        assert _holder_state(h) == after
        with realm.write():
            realm.add(Target(id=1))  # same primary key: no link comes back
        assert _holder_state(h) == after
        # What is stored is cleared too, not only what reads skip.
        assert len(realm.raw_get(h, "many")) == 1
        with realm.write():
            # Deleted and added again in one write: only the old links go.
            old_two = realm.find(Target, 2)
            assert old_two is not None
            realm.delete(old_two)
            assert [t.id for t in h.many] == []  # reads see the links cleared at once
            new_two = realm.add(Target(id=2))
            h.bag.add(new_two)
        assert [t.id for t in h.many] == [] and [t.id for t in h.bag] == [2]
        assert h.named["b"] is None
        with realm.write():
            again = realm.find(Target, 1)
            assert again is not None
            h.one = again
            h.many.append(again)
            realm.delete_all(Target)
        assert _holder_state(h) == (None, [], [], {"a": None, "b": None}, None, [], [None, None])
        inner = h.inner
        with realm.write():
            realm.delete(h)
        with pytest.raises(InvalidObjectError):  # embedded objects go with their parent
            _ = inner.ref  # type: ignore[union-attr]


def test_add_all_batches_behave_like_a_loop_of_add(realm: Realm) -> None:
    with realm.write():
        dogs = realm.add_all([Dog(id=i, name=str(i), age=i % 3) for i in range(6)])
        assert all(d.is_managed for d in dogs)
        assert realm.add_all(dogs) == dogs  # already managed here: nothing to do
    assert [d.id for d in realm.query(Dog, "age == 1")] == [1, 4]
    with realm.write():
        # A repeated key updates in order; the index follows the last value.
        realm.add_all([Dog(id=1, name="a", age=2), Dog(id=1, name="b", age=0)], update=True)
    assert [d.id for d in realm.query(Dog, "age == 1")] == [4]
    assert [d.id for d in realm.query(Dog, "age == 0")] == [0, 1, 3]
    found = realm.find(Dog, 1)
    assert found is not None and found.name == "b"
    with realm.write():
        with pytest.raises(DuplicatePrimaryKeyError):
            realm.add_all([Dog(id=10, name="x"), Dog(id=11, name="y"), Dog(id=10, name="z")])
        # The objects before the failing one were added, as by a loop of add().
        assert [d.id for d in realm.query(Dog, "id >= 10")] == [10, 11]
        x = Dog(id=12, name="same")
        realm.add_all([x, x])
    with realm.write():
        realm.add_all([Note(text="n1"), Note(text="n2")])
        realm.add(Note(text="n3"))
    assert [n.text for n in realm.all(Note)] == ["n1", "n2", "n3"]


def test_objects_from_an_iteration_are_live(realm: Realm) -> None:
    with realm.write():
        realm.add_all([Dog(id=i, name=str(i), age=1) for i in range(3)])
    with realm.write():
        it = iter(realm.query(Dog, "age == 1"))
        first = next(it)
        other = realm.find(Dog, 1)
        assert other is not None
        other.name = "changed"  # after the rows were read, before the object is made
        second = next(it)
        assert first.id == 0 and second.id == 1 and second.name == "changed"


def test_storage_put_columns_is_put_many_of_two_lists(tmp_path: Path) -> None:
    # The bulk fast path add_all uses (realmpy.storage, WriteTransaction.put_columns).
    from realmpy.errors import ArgumentTypeError, InvalidArgumentError, KeyTooLongError
    from realmpy.storage import Environment

    keys = [i.to_bytes(4, "big") for i in range(5000)]
    values = [bytes(i % 300) for i in range(5000)]
    with Environment(tmp_path / "s.db", durability="none") as env:
        with env.write() as txn:
            assert txn.put_columns("a", keys, values) == 5000
            assert txn.put_columns("b", keys) == 5000
            assert txn.put_columns("c", []) == 0
            txn.put_columns("d", [b"big", b"small"], [b"x" * (3 << 20), b"y"])
            for bad_keys, bad_values, error in (
                ([b""], None, KeyTooLongError),
                ([b"k" * 2000], None, KeyTooLongError),
                (["text"], None, ArgumentTypeError),
                ([b"k"], ["text"], ArgumentTypeError),
                ([b"k"], [], InvalidArgumentError),
            ):
                with pytest.raises(error):
                    txn.put_columns("e", bad_keys, bad_values)  # type: ignore[arg-type]
        with env.read() as snap:
            assert list(snap.scan("a")) == list(zip(keys, values))
            assert [v for _, v in snap.scan("b")] == [b""] * 5000
            assert snap.get("d", b"big") == b"x" * (3 << 20) and snap.get("d", b"small") == b"y"
            assert snap.count("e") == 0


def test_positional_records_follow_the_stored_property_order(tmp_path: Path) -> None:
    """Records are arrays in the stored schema's order: reordering a model's
    fields changes nothing, an added property is appended and reads as its
    default in older (shorter) records, in reads, filters and indexes."""
    path = tmp_path / "layout.realm"

    class Row(Object):
        id: int = field(primary_key=True)
        a: str = ""
        b: int = 0

    with Realm(Configuration.local([Row], path=path)) as r, r.write():
        r.add_all([Row(id=i, a=f"a{i}", b=i * 10) for i in range(5)])

    class Row(Object):  # type: ignore[no-redef]
        b: int = 0
        c: int = field(default=7, indexed=True)
        id: int = field(primary_key=True)
        a: str = ""

    with Realm(Configuration.local([Row], path=path)) as r:
        assert [p.name for p in r.schema["Row"].properties] == ["id", "a", "b", "c"]
        got = [(o.id, o.a, o.b, o.c) for o in r.all(Row)]  # type: ignore[attr-defined]
        assert got == [(i, f"a{i}", i * 10, 7) for i in range(5)]
        # unindexed filters over short records read the default
        assert len(r.query(Row, "c == 7 AND b >= 20")) == 3
        assert len(r.query(Row, "c >= 7 AND c < 8")) == 5
        assert len(r.query(Row, "c == 7 SORT(b DESC)")) == 5
        # the index added on open covers the old records
        assert [o.id for o in r.query(Row, "c == $0", 7)] == list(range(5))
        with r.write():
            r.add(Row(id=9, a="z", b=1, c=8))  # type: ignore[call-arg]
            one = r.find(Row, 1)
            assert one is not None
            one.c = 8
        assert sorted(o.id for o in r.query(Row, "c == 8")) == [1, 9]
        assert sorted(o.id for o in r.query(Row, "c == 8 AND a != ''")) == [1, 9]


def test_migration_that_removes_a_property_rewrites_records(tmp_path: Path) -> None:
    path = tmp_path / "drop.realm"

    class Item(Object):
        id: int = field(primary_key=True)
        gone: str = ""
        keep: int = field(default=0, indexed=True)

    with Realm(Configuration.local([Item], path=path)) as r, r.write():
        r.add_all([Item(id=i, gone=f"g{i}", keep=i) for i in range(3)])

    class Item(Object):  # type: ignore[no-redef]
        id: int = field(primary_key=True)
        keep: int = field(default=0, indexed=True)
        extra: str = "x"

    seen: list[tuple[Any, ...]] = []

    def migrate(old: Any, new: Realm) -> None:
        for rec in old.all("Item"):
            seen.append((rec["id"], rec["gone"], rec["keep"]))
        one = old.find("Item", 1)
        assert one is not None and one["gone"] == "g1"
        obj = new.find(Item, 2)
        assert obj is not None
        obj.extra = "two"

    config = Configuration.local([Item], path=path, schema_version=1, migration=migrate)
    with Realm(config) as r:
        assert sorted(seen) == [(i, f"g{i}", i) for i in range(3)]
        rows = [(o.id, o.keep, o.extra) for o in r.all(Item)]  # type: ignore[attr-defined]
        assert rows == [(0, 0, "x"), (1, 1, "x"), (2, 2, "two")]
        assert [o.id for o in r.query(Item, "keep >= 1")] == [1, 2]
        with r._env.read() as snap:
            assert not any(t.startswith("_old:") for t in snap.tables())


def test_a_schema_stored_by_another_opener_in_between_is_adopted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes creating a file at once: the one whose opening write
    finds a schema stored since its read starts again from that schema (its
    records are positional in the stored order)."""
    path = tmp_path / "race.realm"

    class Pair(Object):
        id: int = field(primary_key=True)
        a: str = ""
        b: int = 0

    class Other(Object):
        __realm_name__ = "Pair"
        b: int = 0
        id: int = field(primary_key=True)
        a: str = ""

    original = Realm.write
    injected: list[bool] = []

    def write(self: Realm) -> Any:
        if not injected:
            injected.append(True)
            with Realm(Configuration.local([Other], path=path)) as other, other.write():
                other.add(Other(id=1, a="x", b=2))
        return original(self)

    monkeypatch.setattr(Realm, "write", write)
    with Realm(Configuration.local([Pair], path=path)) as r:
        monkeypatch.setattr(Realm, "write", original)
        assert [p.name for p in r.schema["Pair"].properties] == ["b", "id", "a"]
        one = r.find(Pair, 1)
        assert one is not None and (one.a, one.b) == ("x", 2)
        with r.write():
            r.add(Pair(id=2, a="y", b=3))
    with Realm(Configuration.local([Other], path=path)) as again:
        assert [(o.id, o.a, o.b) for o in again.all(Other)] == [(1, "x", 2), (2, "y", 3)]


def test_query_validation_is_remembered_only_for_valid_queries() -> None:
    """A realm checks a query's key paths against its schema once per
    (class, text): a bad query raises every time, a good one keeps working
    with any arguments."""
    config = Configuration.in_memory(MODELS, identifier=f"valid-{uuid.uuid4()}")
    with Realm(config) as realm:
        with realm.write():
            realm.add(Dog(id=1, name="a", age=3))
        for _ in range(2):
            with pytest.raises(QueryArgumentError, match="no property 'nope'"):
                realm.query(Dog, "nope == $0", 1)
        for age, n in [(3, 1), (4, 0), (3, 1)]:
            assert len(realm.query(Dog, "age == $0", age)) == n
        assert len(realm.freeze().query(Dog, "age == $0", 3)) == 1
