"""realmpy._native.ModelBase: a managed object's state in C fields.

Every model derives from it.  These tests pin down what moved out of the
instance dict: the three fields as Python sees them, their checks, that the
garbage collector sees through them, that objects made from query results
own no instance dict, and what copying and pickling a model means now that
its managed state is not dict state."""

from __future__ import annotations

import copy
import gc
import pickle
import sys
import weakref
from pathlib import Path
from typing import Any, ClassVar

import pytest

from realmpy import _native
from realmpy.config import Configuration
from realmpy.realm import Realm
from realmpy.schema import Object, field
from tests.objects_models import MODELS, Dog, Person


class Pickled(Object):  # module level: pickle finds classes by name
    id: int = field(primary_key=True)
    label: str = ""


@pytest.fixture
def models() -> list[type]:
    return [*MODELS, Pickled]


def test_every_model_is_a_model_base() -> None:
    assert issubclass(Dog, _native.ModelBase)
    assert issubclass(Person, _native.ModelBase)


def test_unmanaged_fields() -> None:
    dog = Dog(id=1, name="Rex")
    assert dog._rp_store is None
    assert dog._rp_cache is None
    with pytest.raises(AttributeError):
        _ = dog._rp_key
    assert dog.__dict__["name"] == "Rex"  # unmanaged values stay in the dict


def test_managed_fields_and_no_instance_dict(realm: Realm) -> None:
    with realm.write():
        realm.add(Dog(id=1, name="Rex"))
    dog = realm.find(Dog, 1)
    assert dog is not None
    assert dog._rp_store is realm
    assert isinstance(dog._rp_key, bytes)
    cache = dog._rp_cache
    assert cache is not None and cache[0] == realm._stamp
    assert cache[1][cache[2]["name"]] == "Rex"
    assert dog.name == "Rex"
    # Objects made from query results carry no instance dict entries.
    for d in realm.query(Dog, "name == $0", "Rex"):
        assert d.__dict__ == {}
        assert d.name == "Rex"


def test_setters_check_their_values() -> None:
    dog = Dog(id=1, name="Rex")
    with pytest.raises(TypeError, match="bytes"):
        object.__setattr__(dog, "_rp_key", "not bytes")
    for bad in [(1,), ("x", [], {}), (1, [], []), [1, [], {}]]:
        with pytest.raises(TypeError):
            object.__setattr__(dog, "_rp_cache", bad)
    for name in ["_rp_store", "_rp_key", "_rp_cache"]:
        with pytest.raises(AttributeError):
            object.__delattr__(dog, name)
    object.__setattr__(dog, "_rp_cache", (3, ["a"], {"name": 0}))
    assert dog._rp_cache == (3, ["a"], {"name": 0})
    object.__setattr__(dog, "_rp_cache", None)
    assert dog._rp_cache is None


def test_the_collector_sees_through_the_fields() -> None:
    class Holder:
        obj: Any = None

    dog = Dog(id=1, name="Rex")
    holder = Holder()
    holder.obj = dog
    object.__setattr__(dog, "_rp_store", holder)  # a cycle through a C field
    object.__setattr__(dog, "_rp_cache", (0, [holder], {"name": 0}))
    ref = weakref.ref(dog)
    del dog, holder
    gc.collect()
    assert ref() is None


def test_no_reference_leaks_in_reads_and_construction(realm: Realm) -> None:
    with realm.write():
        realm.add_all(Dog(id=i, name=f"d{i}") for i in range(50))
    for _ in range(3):  # warm up caches (plans, positions)
        [(d.name, d.id) for d in realm.all(Dog)]
    gc.collect()
    before = sys.getrefcount(realm)
    for _ in range(200):
        out = [(d.name, d.id) for d in realm.query(Dog, "name BEGINSWITH $0", "d")]
        assert len(out) == 50
        del out
    gc.collect()
    assert sys.getrefcount(realm) == before


def test_copy_and_pickle_of_unmanaged_objects() -> None:
    p = Pickled(id=3, label="x")
    for clone in (copy.copy(p), copy.deepcopy(p), pickle.loads(pickle.dumps(p))):
        assert type(clone) is Pickled and clone is not p
        assert (clone.id, clone.label) == (3, "x")
        assert not clone.is_managed


def test_copy_of_a_managed_object_is_another_handle(realm: Realm) -> None:
    with realm.write():
        p = realm.add(Pickled(id=3, label="x"))
    clone = copy.copy(p)
    assert clone == p and clone is not p and clone.is_managed
    with realm.write():
        p.label = "y"
    assert clone.label == "y"
    with pytest.raises(TypeError, match="cannot be pickled or deep-copied"):
        pickle.dumps(p)
    with pytest.raises(TypeError, match="cannot be pickled or deep-copied"):
        copy.deepcopy(p)


class Counted(Object):
    """A model with its own __new__: the realm must still call it."""

    made: ClassVar[int] = 0
    id: int = field(primary_key=True)

    def __new__(cls, *args: Any, **kwargs: Any) -> Counted:
        Counted.made += 1
        return super().__new__(cls)


def test_constructors_of_models(tmp_path: Path) -> None:
    assert type(object.__new__(Dog)) is Dog  # as for any Python class
    config = Configuration.local([Counted], path=tmp_path / "c.realm", durability="none")
    with Realm(config) as realm:
        with realm.write():
            realm.add_all(Counted(id=i) for i in range(3))
        before = Counted.made
        assert [c.id for c in realm.all(Counted)] == [0, 1, 2]
        assert realm.find(Counted, 1) is not None
        assert Counted.made == before + 4


def test_queries_leave_no_reference_cycles(realm: Realm) -> None:
    """Running a query makes no garbage that only the cycle collector can
    free (the generated row filters once closed over themselves)."""
    with realm.write():
        owner = realm.add(Person(name="x", age=3))
        realm.add_all(Dog(id=i, name=f"d{i}", age=i, owner=owner) for i in range(20))
        owner.dogs.extend(realm.query(Dog, "age > 10"))
    queries: list[tuple[Any, ...]] = [
        (Dog, "name BEGINSWITH $0", "d"),
        (Dog, "age == $0", 5),
        (Dog, "id >= $0 AND id < $1", 3, 9),
        (Dog, "NOT (name CONTAINS[c] $0) OR age > 3", "D"),
        (Dog, "owner.name == $0 SORT(age DESC)", "x"),
        (Person, "ANY dogs.age > $0", 3),
    ]
    for cls, text, *args in queries:
        list(realm.query(cls, text, *args))  # warm the caches
    gc.collect()
    gc.disable()
    try:
        for cls, text, *args in queries:
            out = [o.id for o in realm.query(cls, text, *args)]
            assert out
            del out
        assert gc.collect() == 0
    finally:
        gc.enable()
