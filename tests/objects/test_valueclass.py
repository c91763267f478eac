"""ValueClass: the behaviour of ``@dataclass(frozen=True, slots=True)`` without
importing dataclasses (realmpy.valueclass)."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import ClassVar

import pytest

from realmpy.config import Configuration
from realmpy.descriptions import ObjectSchema, Property, Schema
from realmpy.errors import SchemaError
from realmpy.valueclass import ValueClass


class Point(ValueClass):
    x: int
    y: int = 0
    label: str | None = None
    origin: ClassVar[str] = "class attribute, not a field"


class Checked(ValueClass, slots=False):
    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("n must be >= 0")


@dataclasses.dataclass(frozen=True, slots=True)
class DataPoint:
    x: int
    y: int = 0
    label: str | None = None


def test_init_positional_keyword_and_defaults() -> None:
    assert Point(1) == Point(x=1) == Point(1, 0, None)
    p = Point(1, label="a")
    assert (p.x, p.y, p.label) == (1, 0, "a")
    assert Point.origin == "class attribute, not a field"
    with pytest.raises(TypeError, match="missing required argument: 'x'"):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values for argument 'x'"):
        Point(1, x=2)  # type: ignore[misc]
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        Point(1, z=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="positional arguments"):
        Point(1, 2, "a", 4)  # type: ignore[call-arg]


def test_same_repr_equality_and_hash_as_a_dataclass() -> None:
    pairs = [(Point(1), DataPoint(1)), (Point(1, 2), DataPoint(1, 2))]
    for ours, theirs in [*pairs, (Point(1, 2, "a"), DataPoint(1, 2, "a"))]:
        assert repr(ours) == repr(theirs).replace("DataPoint", "Point")
        assert hash(ours) == hash(theirs)
    assert Point(1, 2) == Point(1, 2) and Point(1, 2) != Point(2, 1)
    assert Point(1) != DataPoint(1)  # only an instance of the same class compares
    assert Point(1).__eq__((1, 0, None)) is NotImplemented
    assert {Point(1), Point(1), Point(2)} == {Point(1), Point(2)}
    assert Point.__match_args__ == ("x", "y", "label")


def test_immutable_like_a_frozen_dataclass() -> None:
    p = Point(1)
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'x'"):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del p.y
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.other = 3
    assert not hasattr(p, "__dict__")  # slots
    assert hasattr(Checked(1), "__dict__")  # slots=False keeps the instance dict


def test_post_init_runs_on_every_construction() -> None:
    with pytest.raises(ValueError, match="n must be"):
        Checked(-1)
    with pytest.raises(ValueError, match="n must be"):
        dataclasses.replace(Checked(1), n=-1)


def test_copy_and_pickle() -> None:
    for value in (Point(1, 2, "a"), Checked(3)):
        assert copy.copy(value) == value
        assert copy.deepcopy(value) == value
        assert pickle.loads(pickle.dumps(value)) == value


def test_dataclasses_functions_see_a_dataclass() -> None:
    p = Point(1, label="a")
    assert [f.name for f in dataclasses.fields(p)] == ["x", "y", "label"]
    assert dataclasses.asdict(p) == {"x": 1, "y": 0, "label": "a"}
    assert dataclasses.replace(p, y=5) == Point(1, 5, "a")
    assert p._replace(y=5) == Point(1, 5, "a")
    assert p.__replace__(y=6) == Point(1, 6, "a")  # copy.replace on Python 3.13
    assert dataclasses.is_dataclass(p)  # (last: it narrows the names' types)
    assert dataclasses.is_dataclass(Point) and not dataclasses.is_dataclass(ValueClass)


def test_realmpy_values_keep_their_dataclass_behaviour() -> None:
    prop = Property("a", "int")
    schema = Schema((ObjectSchema("A", (prop,)),))
    assert dataclasses.replace(prop, name="b").name == "b"
    assert pickle.loads(pickle.dumps(schema)) == schema
    with pytest.raises(SchemaError, match="share the name"):
        Schema((ObjectSchema("A", (prop,)), ObjectSchema("A", (prop,))))
    with pytest.raises(dataclasses.FrozenInstanceError):
        prop.name = "c"  # type: ignore[misc]
    assert "schema" in [f.name for f in dataclasses.fields(Configuration)]
