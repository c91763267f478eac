"""Sets, dictionaries and embedded objects sync end to end (history → upload → server merge → download).

Two devices (two files, two users) edit the same object concurrently while
their agents are paused, then converge; every wait is a condition with a
deadline (``wait_for_*``), nothing sleeps to pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "uvicorn", reason="the server extra is not installed: pip install -e '.[test,server]'"
)

from realmpy import App, AppConfiguration, Configuration, Credentials, Realm
from realmpy.objectid import ObjectId
from realmpy.schema import Counter, EmbeddedObject, Object, field
from realmpy.sync.history import HISTORY
from realmpy.wire import protocol as P

T = 60.0


class Geo(EmbeddedObject):
    lat: float = 0.0
    lon: float = 0.0


class Address(EmbeddedObject):
    city: str = ""
    street: str = ""
    visits: Counter = Counter(0)
    geo: Geo | None = None
    lines: list[str] = field(default_factory=list)
    tag: Tag | None = None


class Tag(Object):
    name: str = field(primary_key=True)
    weight: int = 0


class Shop(Object):
    id: ObjectId = field(primary_key=True, default_factory=ObjectId)
    name: str = ""
    labels: set[str] = field(default_factory=set)
    ratings: dict[str, int] = field(default_factory=dict)
    address: Address | None = None
    branches: list[Address] = field(default_factory=list)
    contacts: dict[str, Address | None] = field(default_factory=dict)
    tags: set[Tag] = field(default_factory=set)
    by_name: dict[str, Tag | None] = field(default_factory=dict)


MODELS = [Shop, Tag, Address, Geo]


def _open(tmp: Path, base: str, name: str) -> Realm:
    app = App(
        AppConfiguration("demo", base, base_file_path=str(tmp / f"app-{name}"), long_poll_seconds=2)
    )
    user = app.log_in(Credentials.anonymous())
    realm = Realm(Configuration.flexible_sync(user, MODELS, path=str(tmp / f"{name}.realm")))
    with realm.subscriptions.update() as subs:
        subs.add(realm.all(Shop), name="shops")
        subs.add(realm.all(Tag), name="tags")
    realm.subscriptions.wait_for_synchronization(timeout=T)
    return realm


def _sync(*realms: Realm) -> None:
    for r in realms:
        r.sync_session.wait_for_upload(timeout=T)
    for r in realms:
        r.sync_session.wait_for_download(timeout=T)


def _snapshot(shop: Shop) -> dict[str, Any]:
    def addr(a: Address | None) -> Any:
        if a is None:
            return None
        geo = None if a.geo is None else (a.geo.lat, a.geo.lon)
        return (
            a.city,
            a.street,
            int(a.visits),
            geo,
            list(a.lines),
            None if a.tag is None else a.tag.name,
        )

    return {
        "name": shop.name,
        "labels": sorted(shop.labels),
        "ratings": dict(shop.ratings),
        "address": addr(shop.address),
        "branches": [addr(b) for b in shop.branches],
        "contacts": {k: addr(v) for k, v in shop.contacts.items()},
        "tags": sorted(t.name for t in shop.tags),
        "by_name": {k: None if v is None else v.name for k, v in shop.by_name.items()},
    }


def test_collection_ops_are_recorded(tmp_path: Path) -> None:
    """Set and dictionary edits become SET_ADD/SET_ERASE/DICT_SET/DICT_ERASE; embedded edits dotted SETs."""
    realm = Realm(Configuration.disconnected_sync(MODELS, path=str(tmp_path / "h.realm")))
    with realm.write():
        shop = realm.add(
            Shop(
                name="s",
                labels={"a", "b"},
                ratings={"x": 1, "y": 2},
                address=Address(city="Oslo", geo=Geo(lat=1.0)),
            )
        )
    with realm.write():
        shop.labels.discard("a")
        shop.labels.add("c")
        shop.ratings["x"] = 5
        del shop.ratings["y"]
        assert shop.address is not None
        shop.address.city = "Bergen"
        shop.address.visits.increment(2)
        assert shop.address.geo is not None
        shop.address.geo.lon = 3.0
    with realm._env.read() as snap:
        hist = [P.unpack(v) for _, v in snap.scan(HISTORY)]
    created = [P.Op.from_wire(o) for o in hist[0][2]]
    assert {(o.code.name, o.field) for o in created} >= {
        ("CREATE", None),
        ("SET_ADD", "labels"),
        ("DICT_SET", "ratings"),
        ("SET", "address"),
    }
    ops = sorted(
        (o.code.name, o.field, o.key, o.value) for o in (P.Op.from_wire(w) for w in hist[1][2])
    )
    assert ops == [
        ("ADD", "address.visits", None, 2),
        ("DICT_ERASE", "ratings", "y", None),
        ("DICT_SET", "ratings", "x", 5),
        ("SET", "address.city", None, "Bergen"),
        ("SET", "address.geo.lon", None, 3.0),
        ("SET_ADD", "labels", None, "c"),
        ("SET_ERASE", "labels", None, "a"),
    ]
    realm.close()


def test_two_devices_converge_with_sets_dicts_and_embedded(tmp_path: Path, base: str) -> None:
    r1 = _open(tmp_path, base, "one")
    r2 = _open(tmp_path, base, "two")
    with r1.write():
        t1 = r1.add(Tag(name="red", weight=1))
        r1.add(Tag(name="blue", weight=2))
        shop = r1.add(
            Shop(
                name="corner",
                labels={"a", "b"},
                ratings={"x": 1, "y": 2, "z": 3},
                address=Address(
                    city="Oslo", street="Old", geo=Geo(lat=59.9, lon=10.7), lines=["l1"]
                ),
                branches=[Address(city="Bergen", tag=t1)],
                contacts={"ann": Address(city="Tromsø"), "nobody": None},
                tags={t1},
                by_name={"r": t1, "none": None},
            )
        )
    _sync(r1, r2)
    other = r2.find(Shop, shop.id)
    assert other is not None
    assert _snapshot(other) == _snapshot(shop)

    # Concurrent edits: both agents paused so neither sees the other's change first.
    r1.sync_session.pause()
    r2.sync_session.pause()
    with r1.write():
        shop.labels.discard("a")
        shop.labels.add("c")
        shop.ratings["x"] = 10
        del shop.ratings["z"]
        assert shop.address is not None
        shop.address.city = "Paris"
        shop.address.visits.increment(1)
        shop.branches.append(Address(city="Lyon"))
        shop.contacts["bob"] = Address(city="Nice")
        blue = r1.find(Tag, "blue")
        assert blue is not None
        shop.tags.add(blue)
    with r2.write():
        other.labels.add("d")
        other.labels.discard("b")
        other.ratings["y"] = 20
        other.ratings["w"] = 4
        assert other.address is not None
        other.address.street = "Main"
        other.address.visits.increment(5)
        assert other.address.geo is not None
        other.address.geo.lat = 48.8
        del other.contacts["ann"]
        other.by_name["b"] = r2.find(Tag, "blue")
    r1.sync_session.resume()
    r2.sync_session.resume()
    _sync(r1, r2)
    _sync(r1, r2)
    s1, s2 = _snapshot(shop), _snapshot(other)
    assert s1 == s2
    assert s1["labels"] == ["c", "d"]
    assert s1["ratings"] == {"x": 10, "y": 20, "w": 4}
    assert s1["address"] == ("Paris", "Main", 6, (48.8, 10.7), ["l1"], None)
    assert s1["branches"][0][5] == "red"
    assert [b[0] for b in s1["branches"]] == ["Bergen", "Lyon"]
    assert sorted(s1["contacts"]) == ["bob", "nobody"] and s1["contacts"]["bob"][0] == "Nice"
    assert s1["tags"] == ["blue", "red"]
    assert s1["by_name"] == {"r": "red", "none": None, "b": "blue"}

    # Replacing a whole embedded object and a concurrent path write: last writer wins per path.
    with r2.write():
        other.address = Address(city="Rome")
        other.labels.clear()
    _sync(r2, r1)
    assert _snapshot(shop) == _snapshot(other)
    assert shop.address is not None and shop.address.city == "Rome" and shop.address.street == ""
    assert list(shop.labels) == []
    # Deleting a linked object removes it from sets and dictionaries on both sides.
    with r1.write():
        r1.delete(t1)
    _sync(r1, r2)
    assert _snapshot(shop) == _snapshot(other)
    assert _snapshot(other)["tags"] == ["blue"] and "r" in _snapshot(other)["by_name"]
    assert _snapshot(other)["branches"][0][5] is None  # the link inside an embedded object too
    r1.close()
    r2.close()


def test_offline_writes_before_the_file_has_an_ident(tmp_path: Path, base: str) -> None:
    """Sets/dicts written before the server assigned the file ident are restamped and uploaded once."""
    path = tmp_path / "early.realm"
    with (
        Realm(Configuration.disconnected_sync(MODELS, path=str(path))) as secondary,
        secondary.write(),
    ):
        secondary.add(
            Shop(name="early", labels={"p", "q"}, ratings={"k": 1}, address=Address(city="Oslo"))
        )
    r1 = _open(tmp_path, base, "early")
    r2 = _open(tmp_path, base, "late")
    shop = r1.query(Shop, "name == 'early'").first()
    assert shop is not None
    with r1.write():
        shop.labels.discard("p")
        shop.ratings["k"] = 2
    _sync(r1, r2)
    other = r2.find(Shop, shop.id)
    assert other is not None and _snapshot(other) == _snapshot(shop)
    assert _snapshot(other)["labels"] == ["q"] and _snapshot(other)["ratings"] == {"k": 2}
    r1.close()
    r2.close()
