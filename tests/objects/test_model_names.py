"""Property and class names of models: ``_id``, reserved names, mapped names."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from realmpy.config import Configuration
from realmpy.errors import SchemaError
from realmpy.objectid import ObjectId
from realmpy.realm import Realm
from realmpy.schema import EmbeddedObject, Object, _compile_init_py, field, object_schema


class OnlyId(Object):
    _id: ObjectId = field(primary_key=True, default_factory=ObjectId)


class Atlas(Object):
    _id: int = field(primary_key=True)
    _partition: str = ""
    name: str = ""
    cache: ClassVar[dict[str, int]] = {}


class Awkward(Object):
    """Names that the generated ``__init__`` itself once used."""

    _id: int = field(primary_key=True)
    self: str = "s"
    type: int = 1
    kwargs: int = 0
    _M: str = "m"
    _cls: str = "c"
    _extra: int = 0


def _open(tmp_path: Path, *models: type, name: str = "t.realm") -> Realm:
    return Realm(Configuration.local(list(models), path=tmp_path / name, durability="none"))


def test_id_is_a_primary_key_and_a_property(tmp_path: Path) -> None:
    assert [p.name for p in object_schema(Atlas).properties] == ["_id", "_partition", "name"]
    assert object_schema(Atlas).primary_key == "_id"
    with _open(tmp_path, OnlyId, Atlas) as realm:
        with realm.write():
            only = realm.add(OnlyId())
            realm.add(Atlas(_id=3, _partition="p", name="x"))
            realm.add(Atlas(_id=4, name="y"))
        assert isinstance(only._id, ObjectId)
        assert realm.find(OnlyId, only._id) == only
        found = realm.find(Atlas, 3)
        assert found is not None and found._partition == "p"
        assert [a.name for a in realm.query(Atlas, "_id > 3")] == ["y"]
        assert len(realm.query(Atlas, "_partition == 'p'")) == 1
        with realm.write():
            found._partition = "q"
        assert realm.query(Atlas, "_partition == 'q'").first() == found


def test_names_the_generated_init_used_are_ordinary_properties(tmp_path: Path) -> None:
    obj = Awkward(_id=1, self="a", type=5, kwargs=3, _M="q", _extra=4)
    assert (obj.self, obj.type, obj.kwargs, obj._M, obj._cls, obj._extra) == (
        "a",
        5,
        3,
        "q",
        "c",
        4,
    )
    # The Python reference __init__ agrees with the C one.
    reference = _compile_init_py(Awkward)
    other = Awkward.__new__(Awkward)
    reference(other, _id=1, self="a", type=5, kwargs=3, _M="q", _extra=4)
    assert other.__dict__ == obj.__dict__
    with _open(tmp_path, Awkward) as realm:
        with realm.write():
            realm.add(obj)
        assert realm.query(Awkward, "type == 5 AND self == 'a' AND _M == 'q'").first() == obj


@pytest.mark.parametrize(
    ("name", "why", "bases"),
    [
        ("__secret", "two underscores", (Object, EmbeddedObject)),
        ("_rp_state", "_rp_", (Object, EmbeddedObject)),
        ("is_managed", "every model has", (Object, EmbeddedObject)),
        ("is_valid", "every model has", (Object,)),
        ("add_listener", "every model has", (Object,)),
    ],
)
def test_reserved_names_are_refused(name: str, why: str, bases: tuple[type, ...]) -> None:
    for base in bases:
        with pytest.raises(SchemaError, match=why):
            type("Bad", (base,), {"__annotations__": {name: "int"}, "__module__": __name__})


def test_a_model_without_properties_is_refused(tmp_path: Path) -> None:
    class Empty(Object):
        note: ClassVar[str] = "not stored"

    with pytest.raises(SchemaError, match="no properties"):
        _open(tmp_path, Empty)


class Mapped(Object, name="people"):
    _id: int = field(primary_key=True)
    full_name: str = field(default="", map_to="name", indexed=True)
    age: int = field(default=0, map_to="years")


class Plain(Object, name="people"):
    """What another SDK's file (no mapping) looks like to realmpy."""

    _id: int = field(primary_key=True)
    name: str = field(default="", indexed=True)
    years: int = 0


def test_mapped_names_in_the_file_python_names_in_code(tmp_path: Path) -> None:
    schema = object_schema(Mapped)
    assert schema.name == "people"
    assert [(p.name, p.file_name) for p in schema.properties] == [
        ("_id", "_id"),
        ("full_name", "name"),
        ("age", "years"),
    ]
    assert [p["name"] for p in schema.to_dict()["properties"]] == ["_id", "name", "years"]
    with _open(tmp_path, Mapped) as realm:
        with realm.write():
            realm.add(Mapped(_id=1, full_name="Ann", age=30))
            realm.add(Mapped(_id=2, full_name="Bob", age=20))
            bob = realm.find(Mapped, 2)
            assert bob is not None
            bob.full_name = "Rob"
        assert [m._id for m in realm.query(Mapped, "full_name == 'Rob' AND age < 25")] == [2]
        assert [m.full_name for m in realm.all(Mapped).sort("age")] == ["Rob", "Ann"]
        # Queries written for other SDKs name the properties as the file
        # does, in SORT and DISTINCT too.
        assert [m._id for m in realm.query(Mapped, "years > 0 SORT(years DESC)")] == [1, 2]
        assert [m._id for m in realm.all(Mapped).sort("years")] == [2, 1]
        assert len(realm.query(Mapped, "TRUEPREDICATE DISTINCT(years)")) == 2
    # A file another SDK wrote with the file names reads the same data,
    # with no migration (and the same index).
    with _open(tmp_path, Plain) as realm:
        assert [(p.name, p.years) for p in realm.query(Plain, "name == 'Rob'")] == [("Rob", 20)]
        with realm.write():
            realm.add(Plain(_id=3, name="Cy", years=5))
    with _open(tmp_path, Mapped) as realm:
        assert [m._id for m in realm.query(Mapped, "full_name == 'Cy'")] == [3]


def test_changing_a_file_name_needs_a_migration(tmp_path: Path) -> None:
    from realmpy.errors import MigrationRequiredError

    with _open(tmp_path, Mapped) as realm:
        with realm.write():
            realm.add(Mapped(_id=1, full_name="Ann", age=30))

    class Renamed(Object, name="people"):
        _id: int = field(primary_key=True)
        full_name: str = field(default="", map_to="label", indexed=True)
        age: int = field(default=0, map_to="years")

    with pytest.raises(MigrationRequiredError, match=r"people\.name removed"):
        _open(tmp_path, Renamed)

    def migrate(old: Any, new: Realm) -> None:
        for person in old.all("people"):
            obj = new.find(Renamed, person._id)
            assert obj is not None
            obj.full_name = person.name

    config = Configuration.local(
        [Renamed], path=tmp_path / "t.realm", schema_version=1, migration=migrate
    )
    with Realm(config) as realm:
        assert [(r.full_name, r.age) for r in realm.query(Renamed, "full_name == 'Ann'")] == [
            ("Ann", 30)
        ]


@pytest.mark.parametrize(
    ("annotations", "defaults", "match"),
    [
        ({"a": "int", "b": "int"}, {"a": field(map_to="b")}, "both stored as 'b'"),
        (
            {"a": "int", "b": "int"},
            {"a": field(map_to="x"), "b": field(map_to="a")},
            "C.a has the file name of C.b",
        ),
        ({"a": "int", "b": "int"}, {"a": field(map_to="c"), "b": field(map_to="c")}, "both"),
        ({"a": "int"}, {"a": field(map_to="a")}, None),
    ],
)
def test_mapped_names_must_not_collide(
    annotations: dict[str, str], defaults: dict[str, object], match: str | None
) -> None:
    cls = type("C", (Object,), {"__annotations__": annotations, "__module__": __name__, **defaults})
    if match is None:
        assert object_schema(cls).properties[0].map_to is None
        return
    with pytest.raises(SchemaError, match=match):
        object_schema(cls)


def test_bad_mapped_names() -> None:
    with pytest.raises(SchemaError, match="map_to"):
        field(map_to="")
    embedded = type(
        "E",
        (EmbeddedObject,),
        {"__annotations__": {"a": "int"}, "__module__": __name__, "a": field(map_to="b")},
    )
    with pytest.raises(SchemaError, match="not supported on embedded objects"):
        object_schema(embedded)
    with pytest.raises(SchemaError, match="name="):
        type("C", (Object,), {"__annotations__": {"a": "int"}, "__module__": __name__}, name="")


def test_models_generated_from_a_file_keep_id(tmp_path: Path) -> None:
    from realmpy.tools.filemodels import model_classes, model_source
    from realmpy.tools.storedfile import read_stored

    with _open(tmp_path, Mapped) as realm, realm.write():
        realm.add(Mapped(_id=1, full_name="Ann", age=30))
    stored = read_stored(str(tmp_path / "t.realm"))
    assert "    _id: int = field(primary_key=True)\n" in model_source(stored.schema)
    generated = model_classes(stored.schema)["people"]
    assert object_schema(generated).primary_key == "_id"
