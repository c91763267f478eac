"""An app with its own models, run as a separate process by the tools' tests.

The tools must read the files it makes without these classes (the command
and Studio never import this module): ``python -m tests.tools.appmodels
make PATH`` writes a file with every property type, links that form a
cycle, a class without a primary key (with a gap from a deleted object) and
embedded objects holding links; ``add-car PATH MAKE`` commits one more
object, as another process of the app would; ``sync-main PATH URL`` is a
synced file's main process (its sync agent) until its stdin closes; ``show PATH`` prints what the
app reads, as JSON, so a test can compare it after ``dump`` and ``load``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import uuid
from decimal import Decimal

from realmpy import Configuration, Counter, EmbeddedObject, Mixed, Object, ObjectId, Realm, field


class Stop(EmbeddedObject):
    place: str
    near: Place | None = None  # a link inside an embedded object
    when: dt.datetime | None = None


class Place(Object):
    name: str = field(primary_key=True)
    visitors: list[Person] = field(default_factory=list)


class Person(Object):
    id: ObjectId = field(primary_key=True, default_factory=ObjectId)
    name: str = field(indexed=True)
    age: int = 0
    height: float = 0.0
    photo: bytes = b""
    born: dt.datetime | None = None
    balance: Decimal = Decimal("0")
    token: uuid.UUID | None = None
    visits: Counter = Counter(0)
    active: bool = True
    friend: Person | None = None
    cars: list[Car] = field(default_factory=list)
    tags: set[str] = field(default_factory=set)
    scores: dict[str, float] = field(default_factory=dict)
    trips: list[Stop] = field(default_factory=list)
    home: Stop | None = None
    lucky: set[int] = field(default_factory=set)
    keyring: dict[str, Car | None] = field(default_factory=dict)


class Car(Object):
    make: str = field(indexed=True)
    miles: int = 0
    owner: Person | None = None
    extra: Mixed = None  # a mixed value: a float, a nested dict, a link...


MODELS = [Person, Car, Place, Stop]


class Trip(Object):
    """The synced file's model (synced models need a primary key)."""

    id: ObjectId = field(primary_key=True, default_factory=ObjectId)
    to: str
    km: int = 0


def config(path: str) -> Configuration:
    return Configuration.local(MODELS, path=path)


def make(path: str, people: int = 3) -> None:
    utc = dt.timezone.utc
    with Realm(config(path)) as realm:
        with realm.write():
            oslo = realm.add(Place(name="Oslo"))
            prev = None
            for i in range(people):
                p = realm.add(
                    Person(
                        id=ObjectId(f"{i + 1:024x}"),
                        name=["Ann", "Bob", "Cé", "Dag"][i % 4] + ("" if i < 4 else str(i)),
                        age=20 + 15 * i,
                        height=[1.5, float("inf"), -0.0, 1e-300][i % 4],
                        photo=bytes([i % 256, 0, 255]),
                        born=dt.datetime(1990 + i, 1, 2, 3, 4, 5, 6789, tzinfo=utc),
                        balance=Decimal(f"{i}.10"),
                        token=uuid.UUID(int=i + 1) if i % 2 else None,
                        active=i % 2 == 0,
                        friend=prev,
                        tags={"x", f"t{i}"},
                        scores={"a": 0.5, "nan": float("nan")} if i == 0 else {},
                        trips=[
                            Stop(
                                place="Bergen", near=oslo, when=dt.datetime(2020, 5, 1, tzinfo=utc)
                            )
                        ],
                        home=Stop(place="home"),
                        lucky={7, -3, 2**62},
                    )
                )
                p.visits.increment(i)
                oslo.visitors.append(p)
                prev = p
            first = realm.find(Person, ObjectId(f"{1:024x}"))
            assert first is not None
            first.friend = prev  # a cycle
            for n, make_ in enumerate(["Saab", "Volvo", "Tesla", "Fiat"]):
                extra = [{"d": [b"x", Decimal("1.5"), None], "f": 5.0}, None, first, "5"][n]
                car = realm.add(Car(make=make_, miles=100 * n, owner=first, extra=extra))
                first.cars.append(car)
                first.keyring[make_.lower()] = car
            first.keyring["lost"] = None
        with realm.write():
            realm.delete(realm.query(Car, "make == 'Volvo'")[0])  # a gap in Car's keys


def add_car(path: str, make_: str) -> None:
    with Realm(config(path)) as realm, realm.write():
        realm.add(Car(make=make_, miles=1))


def sync_main(path: str, base_url: str) -> None:
    """A synced file's main process: subscribe, upload one car, then stay the
    file's agent until stdin closes (prints "ready" when synced)."""
    from realmpy import App, AppConfiguration, Credentials

    # the app's own files next to the realm, not in the working directory
    app = App(AppConfiguration("default", base_url, base_file_path=os.path.dirname(path)))
    user = app.log_in(Credentials.anonymous())
    with Realm(Configuration.flexible_sync(user, [Trip], path=path)) as realm:
        with realm.subscriptions.update() as subs:
            subs.add(realm.query(Trip, "km >= 0"), name="all-trips")
        realm.subscriptions.wait_for_synchronization(timeout=60)
        with realm.write():
            realm.add(Trip(to="Oslo", km=5))
        realm.sync_session.wait_for_upload(timeout=60)
        print("ready", flush=True)
        sys.stdin.read()


def show(path: str) -> None:
    """What the app reads, property by property, as JSON-able text."""
    out = []
    with Realm(config(path)) as realm:
        for cls in (Person, Car, Place):
            for obj in realm.all(cls):
                row: dict[str, object] = {"$class": cls.__name__}
                for name in obj._rp_fields:
                    row[name] = _plain(getattr(obj, name))
                out.append(row)
    print(json.dumps(out, sort_keys=True, default=repr))


def _plain(value: object) -> object:
    if isinstance(value, (Person, Car, Place)):
        return f"<{type(value).__name__} {getattr(value, 'name', None) or getattr(value, 'make', None)}>"
    if isinstance(value, EmbeddedObject):
        return {k: _plain(getattr(value, k)) for k in value._rp_fields}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "items"):  # a managed dict
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)) or type(value).__name__ == "ManagedSet":
        return sorted(repr(_plain(v)) for v in value)  # type: ignore[attr-defined]
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ManagedList":
        return [_plain(v) for v in value]  # type: ignore[attr-defined]
    if isinstance(value, float) and value != value:
        return "nan"
    return repr(value)


if __name__ == "__main__":
    command, file = sys.argv[1], sys.argv[2]
    if command == "make":
        make(file, int(sys.argv[3]) if len(sys.argv) > 3 else 3)
    elif command == "add-car":
        add_car(file, sys.argv[3])
    elif command == "sync-main":
        sync_main(file, sys.argv[3])
    elif command == "show":
        show(file)
    else:
        raise SystemExit(f"unknown command {command!r}")
