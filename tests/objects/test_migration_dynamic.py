"""The migration's old realm: dynamic, read-only objects by class name."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from realmpy.config import Configuration
from realmpy.dynamic import DynamicObject
from realmpy.errors import SchemaError, TransactionStateError
from realmpy.realm import Realm
from realmpy.schema import EmbeddedObject, Object, field


class Address(EmbeddedObject):
    city: str = ""


class Owner(Object):
    id: int = field(primary_key=True)
    name: str = ""
    pets: list[Pet] = field(default_factory=list)
    best: Pet | None = None
    address: Address | None = None
    homes: list[Address] = field(default_factory=list)
    by_name: dict[str, Pet | None] = field(default_factory=dict)


class Pet(Object):
    id: int = field(primary_key=True)
    name: str = ""
    owner: Owner | None = None


def test_old_realm_gives_dynamic_objects(tmp_path: Path) -> None:
    path = tmp_path / "d.realm"
    with Realm(Configuration.local([Owner, Pet, Address], path=path)) as r, r.write():
        ann = r.add(Owner(id=1, name="Ann", address=Address(city="Oslo")))
        rex = Pet(id=10, name="Rex", owner=ann)
        ann.pets.extend([rex, Pet(id=11, name="Tom", owner=ann)])
        ann.best = rex
        ann.homes.append(Address(city="Rome"))
        ann.by_name["rex"] = rex
        r.add(Owner(id=2, name="Bo"))

    class Owner2(Object):  # the new model: the name moves into "full_name"
        __realm_name__ = "Owner"
        id: int = field(primary_key=True)
        full_name: str = ""

    class Pet2(Object):
        __realm_name__ = "Pet"
        id: int = field(primary_key=True)
        name: str = ""

    seen: dict[str, Any] = {}

    def migrate(old: Any, new: Realm) -> None:
        owners = {o.id: o for o in old.all("Owner")}
        o = owners[1]
        assert isinstance(o, DynamicObject) and issubclass(DynamicObject, dict)
        seen["name"] = (o.name, o["name"])  # attribute and dict access
        seen["pets"] = [p.name for p in o.pets]
        seen["owner_of_pet"] = o.pets[0].owner.name  # links followed both ways
        seen["best"] = o.best.name
        seen["city"] = (o.address.city, [h.city for h in o.homes])
        seen["by_name"] = {k: v.name for k, v in o.by_name.items()}
        seen["bo"] = (owners[2].best, owners[2].pets)
        seen["find"] = old.dynamic.find("Pet", 11).name
        seen["missing"] = old.find("Pet", 99)
        seen["class"] = o.class_name
        with pytest.raises(AttributeError, match="no property 'nope'"):
            _ = o.nope
        with pytest.raises(TransactionStateError, match="read-only"):
            o.name = "x"
        with pytest.raises(SchemaError, match="no class 'Ghost'"):
            list(old.all("Ghost"))
        seen["plain"] = pickle.loads(pickle.dumps(owners[2]))
        for rec in old.all("Owner"):
            found = new.find(Owner2, rec.id)
            assert found is not None
            found.full_name = rec.name.upper()

    config = Configuration.local([Owner2, Pet2], path=path, schema_version=1, migration=migrate)
    with Realm(config) as r:
        assert [o.full_name for o in r.all(Owner2)] == ["ANN", "BO"]
    assert seen["name"] == ("Ann", "Ann")
    assert seen["pets"] == ["Rex", "Tom"]
    assert seen["owner_of_pet"] == "Ann"
    assert seen["best"] == "Rex"
    assert seen["city"] == ("Oslo", ["Rome"])
    assert seen["by_name"] == {"rex": "Rex"}
    assert seen["bo"] == (None, [])
    assert seen["find"] == "Tom" and seen["missing"] is None
    assert seen["class"] == "Owner"
    plain = seen["plain"]
    assert type(plain) is dict and plain["name"] == "Bo"
