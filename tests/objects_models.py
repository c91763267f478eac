"""Models shared by the object-layer tests and their child processes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from realmpy.objectid import ObjectId
from realmpy.schema import Counter, EmbeddedObject, Object, field


class Address(EmbeddedObject):
    street: str
    city: str = ""


class Person(Object):
    id: ObjectId = field(primary_key=True, default_factory=ObjectId)
    name: str = field(indexed=True)
    age: int = 0
    dogs: list[Dog] = field(default_factory=list)
    address: Address | None = None
    visits: Counter = Counter(0)
    tags: set[str] = field(default_factory=set)
    scores: dict[str, float] = field(default_factory=dict)
    born: dt.datetime | None = None
    balance: Decimal = Decimal(0)


class Dog(Object):
    id: int = field(primary_key=True)
    name: str
    age: int = field(default=0, indexed=True)
    owner: Person | None = None


class Note(Object):
    text: str
    n: int = 0


MODELS = [Person, Dog, Address, Note]


class Item(Object):
    id: int = field(primary_key=True)
    label: str = field(default="", indexed=True)
    n: int = 0
    parent: Item | None = None
