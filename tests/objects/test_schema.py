"""Model classes → schema descriptions; validation of values; schema diffs."""

from __future__ import annotations

import datetime as dt
import sys
import types
import uuid
from decimal import Decimal
from typing import ClassVar

import pytest

from realmpy.errors import ObjectTypeError, SchemaError
from realmpy.objectid import ObjectId
from realmpy.schema import (
    Counter,
    EmbeddedObject,
    Object,
    ObjectSchema,
    Property,
    Schema,
    field,
    object_schema,
)


class Tag(EmbeddedObject):
    label: str
    weight: float = 1.0


class Owner(Object):
    id: ObjectId = field(primary_key=True, default_factory=ObjectId)
    name: str = field(indexed=True)
    age: int = 0
    pets: list[Pet] = field(default_factory=list)
    tag: Tag | None = None
    visits: Counter = Counter(0)
    nicknames: set[str] = field(default_factory=set)
    scores: dict[str, float | None] = field(default_factory=dict)
    born: dt.datetime | None = None
    balance: Decimal = Decimal(0)
    token: uuid.UUID | None = None
    avatar: bytes = b""
    active: bool = True
    KIND: ClassVar[str] = "owner"


class Pet(Object):
    id: int = field(primary_key=True)
    name: str
    owner: Owner | None = None


def test_schema_description() -> None:
    s = object_schema(Owner)
    assert s.name == "Owner" and s.primary_key == "id" and not s.embedded
    assert [p.name for p in s.properties][:3] == ["id", "name", "age"]
    assert s.property("pets") == Property("pets", "link", "list", False, "Pet")
    assert s.property("tag") == Property("tag", "embedded", None, True, "Tag")
    assert s.property("visits").type == "counter"
    assert s.property("scores") == Property("scores", "float", "dict", True)
    assert s.property("name").indexed and s.property("name").has_index
    assert s.property("id").indexed and not s.property("id").has_index
    assert s.get("KIND") is None
    assert object_schema(Tag).embedded


def test_schema_round_trips_through_dicts() -> None:
    schema = Schema.from_models([Owner, Pet, Tag])
    assert Schema.from_dict(schema.to_dict()) == schema
    assert ObjectSchema.from_dict(schema["Pet"].to_dict()) == schema["Pet"]


def test_init_defaults_and_validation() -> None:
    o = Owner(name="Ann")
    assert o.age == 0 and o.pets == [] and o.active is True and not o.is_managed
    other = Owner(name="Bo")
    assert o.pets is not other.pets
    o.age = 5
    assert o.age == 5
    o.visits.increment(3)
    o.visits.decrement()
    assert o.visits == 2 and isinstance(o.visits, Counter)
    assert Owner(name="x", scores={"a": 1}).scores == {"a": 1.0}
    assert Owner(name="x", nicknames=["a", "a"]).nicknames == {"a"}  # type: ignore[arg-type]
    assert Owner(name="x", balance=3).balance == Decimal(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({}, "missing required field 'name'"),
        ({"name": 3}, "Owner.name expects str, got int"),
        ({"name": "a", "age": "3"}, "expects int"),
        ({"name": "a", "age": True}, "expects int"),
        ({"name": "a", "age": 1 << 64}, "64-bit"),
        ({"name": "a", "born": dt.datetime(2024, 1, 1)}, "naive"),
        ({"name": "a", "pets": [Owner(name="b")]}, "expects list[Pet]"),
        ({"name": "a", "pets": "ab"}, "expects list[Pet]"),
        ({"name": "a", "scores": {1: 1.0}}, "is not a str"),
        ({"name": "a", "tag": "x"}, "expects Tag | None"),
        ({"name": "a", "colour": "red"}, "unknown field(s) colour"),
        ({"name": "a", "active": None}, "not optional"),
        ({"name": "a", "avatar": "x"}, "expects bytes"),
        ({"name": "a", "token": "x"}, "expects uuid"),
    ],
)
def test_bad_values_are_typed_errors(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ObjectTypeError) as info:
        Owner(**kwargs)  # type: ignore[arg-type]
    assert fragment in str(info.value)
    assert isinstance(info.value, TypeError)


def test_unknown_attribute_and_delete() -> None:
    o = Owner(name="a")
    with pytest.raises(AttributeError):
        o.colour = "red"
    with pytest.raises(AttributeError):
        del o.name
    with pytest.raises(ObjectTypeError):
        o.age = "x"  # type: ignore[assignment]


def test_unmanaged_equality_is_identity_embedded_by_value() -> None:
    assert Owner(name="a") != Owner(name="a")
    assert Tag(label="x") == Tag(label="x") != Tag(label="y")


def make(body: str) -> type:
    module = types.ModuleType("fake_models")
    sys.modules["fake_models"] = module
    ns = module.__dict__
    exec(
        "from __future__ import annotations\n"
        "from realmpy.schema import Object, EmbeddedObject, field, Counter\n"
        "import datetime\n" + body,
        ns,
    )
    cls = ns["M"]
    assert isinstance(cls, type)
    object_schema(cls)
    return cls


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            "class M(Object):\n  a: int = field(primary_key=True)\n"
            "  b: str = field(primary_key=True)\n",
            "several primary keys",
        ),
        (
            "class M(Object):\n  a: float = field(primary_key=True)\n",
            "primary key must be",
        ),
        ("class M(Object):\n  a: list[int] = field(indexed=True)\n", "cannot index"),
        ("class M(Object):\n  a: complex\n", "unsupported type"),
        ("class M(Object):\n  a: int | str\n", "only 'T | None'"),
        ("class M(Object):\n  a: Nowhere\n", "cannot resolve"),
        (
            "class O(Object):\n  x: int = 0\nclass M(Object):\n  a: O\n",
            "must be optional",
        ),
        (
            "class O(Object):\n  x: int = 0\nclass M(Object):\n  a: list[O | None]\n",
            "cannot be None",
        ),
        ("class M(Object):\n  a: dict[int, int]\n", "str keys"),
        ("class M(Object):\n  a: list[Counter]\n", "counters"),
        (
            "class M(EmbeddedObject):\n  a: int = field(primary_key=True)\n",
            "cannot have a primary key",
        ),
        ("class M(Object):\n  a: list[int] = []\n", "mutable default"),
    ],
)
def test_bad_models(body: str, fragment: str) -> None:
    with pytest.raises(SchemaError, match=fragment.replace("|", r"\|").replace("(", r"\(")):
        make(body)


def test_field_misuse() -> None:
    with pytest.raises(SchemaError, match="not both"):
        field(default=1, default_factory=int)
    with pytest.raises(SchemaError, match="default_factory"):
        field(default=[])


def test_schema_from_models_checks_targets() -> None:
    with pytest.raises(SchemaError, match="Pet, which is not in the schema"):
        Schema.from_models([Owner, Tag])
    with pytest.raises(SchemaError, match="not a model"):
        Schema.from_models([int])  # type: ignore[list-item]
    with pytest.raises(SchemaError, match="at least one"):
        Schema.from_models([])


def test_diff_classifies_changes() -> None:
    old = Schema(
        (
            ObjectSchema(
                "A",
                (
                    Property("id", "int", primary_key=True, indexed=True),
                    Property("x", "int"),
                    Property("gone", "str"),
                    Property("idx", "str"),
                ),
            ),
            ObjectSchema("Old", (Property("v", "int"),)),
        )
    )
    new = Schema(
        (
            ObjectSchema(
                "A",
                (
                    Property("id", "int", primary_key=True, indexed=True),
                    Property("x", "int", optional=True),
                    Property("idx", "str", indexed=True),
                    Property("added", "str"),
                ),
            ),
            ObjectSchema("B", (Property("v", "int"),)),
        )
    )
    d = new.diff(old)
    assert set(d.additive) == {"class B added", "A.added added", "A.idx index added"}
    assert set(d.breaking) == {"A.x changed from int to int | None", "A.gone removed"}
    assert new.diff(new).is_empty
    assert new.merged_with(old).names() == ["A", "B", "Old"]
    with pytest.raises(SchemaError, match="share the name"):
        Schema((old["Old"], old["Old"]))


def test_string_forward_references_without_future_import() -> None:
    cls = make_plain(
        "class M(Object):\n"
        "    id: int = field(primary_key=True)\n"
        "    kids: list['N'] = field(default_factory=list)\n"
        "    best: Optional['N'] = None\n"
        "class N(Object):\n"
        "    v: int = 0\n"
    )
    s = object_schema(cls)
    assert s.property("kids") == Property("kids", "link", "list", False, "N")
    assert s.property("best") == Property("best", "link", None, True, "N")


def make_plain(body: str) -> type:
    module = types.ModuleType("fake_plain_models")
    sys.modules["fake_plain_models"] = module
    exec(
        "from typing import Optional\nfrom realmpy.schema import Object, field\n" + body,
        module.__dict__,
    )
    cls = module.__dict__["M"]
    assert isinstance(cls, type)
    return cls


def test_priming_the_shared_instance_keys_leaves_no_trace() -> None:
    """Model classes enter their instance dict names in CPython's shared key
    table at creation (a throwaway instance); instances see nothing of it."""

    class Primed(Object):
        id: int = field(primary_key=True)
        label: str = ""

    assert object.__new__(Primed).__dict__ == {}
    p = Primed(id=3)
    assert p.__dict__ == {"id": 3, "label": ""}
    assert p._rp_store is None and p._rp_cache is None and not p.is_managed


def test_priming_skips_models_with_a_finaliser() -> None:
    finalised: list[object] = []

    class Finalised(Object):
        id: int = field(primary_key=True)

        def __del__(self) -> None:
            finalised.append(self)

    assert finalised == []
    Finalised(id=1)
    assert len(finalised) == 1
