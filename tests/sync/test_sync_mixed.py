"""Mixed values over sync: every kind of value a ``Mixed`` property holds
(scalars of every type, nested lists and dictionaries, links to objects of
any class) reaches another device through a real server with its Python
type, and a later write replaces it (last writer wins per property)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "uvicorn", reason="the server extra is not installed: pip install -e '.[test,server]'"
)

from realmpy import App, AppConfiguration, Configuration, Credentials, ObjectId, Realm
from realmpy.schema import Mixed, Object, field

T = 60.0


class MxTag(Object):
    _id: int = field(primary_key=True)
    label: str = ""


class MxBox(Object):
    _id: int = field(primary_key=True)
    value: Mixed = None
    items: list[Mixed] = field(default_factory=list)
    named: dict[str, Mixed] = field(default_factory=dict)


VALUES: list[Any] = [
    None,
    True,
    5,
    5.0,
    "five",
    b"\x00five",
    dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc),
    Decimal("5.10"),
    ObjectId(b"0123456789ab"),
    uuid.UUID(int=5),
    [1, "a", [2.5, None], {"k": False}],
    {"n": 1, "deep": {"list": [b"x"]}},
]


def _realm(tmp: Path, base: str, name: str) -> Realm:
    app = App(AppConfiguration("demo", base, base_file_path=str(tmp / name), long_poll_seconds=2))
    user = app.log_in(Credentials.anonymous())
    realm = Realm(
        Configuration.flexible_sync(user, [MxBox, MxTag], path=str(tmp / f"{name}.realm"))
    )
    with realm.subscriptions.update() as subs:
        subs.add(realm.query(MxBox, "_id >= 0"), name="boxes")
        subs.add(realm.query(MxTag, "_id >= 0"), name="tags")
    realm.subscriptions.wait_for_synchronization(timeout=T)
    return realm


def _same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (5 is not 5.0 here); a
    managed object's read-only nested list or dictionary is a list or dict."""
    kind = [
        list if isinstance(v, list) else dict if isinstance(v, dict) else type(v) for v in (a, b)
    ]
    if kind[0] is not kind[1]:
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def test_mixed_values_sync_between_two_devices(tmp_path: Path, base: str) -> None:
    one = _realm(tmp_path, base, "one")
    two = _realm(tmp_path, base, "two")
    try:
        with one.write():
            tag = one.add(MxTag(_id=1, label="t"))
            for i, v in enumerate(VALUES):
                one.add(MxBox(_id=i, value=v))
            one.add(MxBox(_id=100, value=tag, items=[1, tag, "x"], named={"tag": tag, "n": 2.5}))
        one.sync_session.wait_for_upload(timeout=T)
        two.sync_session.wait_for_download(timeout=T)
        for i, v in enumerate(VALUES):
            got = two.find(MxBox, i)
            assert got is not None and _same(got.value, v), (v, got and got.value)
        box = two.find(MxBox, 100)
        assert box is not None
        assert isinstance(box.value, MxTag) and box.value.label == "t"
        assert box.items[0] == 1 and box.items[1] == box.value
        assert dict(box.named)["n"] == 2.5
        assert [b._id for b in two.query(MxBox, "value.@type == 'link'")] == [100]
        assert sorted(b._id for b in two.query(MxBox, "value == 5")) == [2, 3]
        # The second device's later write wins.
        with two.write():
            box.value = "from two"
        two.sync_session.wait_for_upload(timeout=T)
        one.sync_session.wait_for_download(timeout=T)
        got = one.find(MxBox, 100)
        assert got is not None and got.value == "from two"
    finally:
        one.close()
        two.close()


def test_wire_checks_and_decodes_mixed_values_strictly() -> None:
    """The server's check of a mixed field and the decoding of a mixed link
    refuse what no client writes, with the protocol's typed errors."""
    from realmpy.wire.errors import MalformedMessage, UnknownTableError, WrongTypeError
    from realmpy.wire.tables import FieldSpec, TableSpec, check_value
    from realmpy.wire.values import MixedLink, pack, unpack

    tables = {
        "Tag": TableSpec("_id", {"_id": FieldSpec("int")}),
        "Box": TableSpec("_id", {"_id": FieldSpec("int"), "v": FieldSpec("mixed", True)}),
    }
    spec = tables["Box"].fields["v"]
    good: list[Any] = [None, True, 5, 5.0, "s", b"b", [1, {"k": MixedLink("Tag", 1)}], {}]
    for v in good:
        check_value(tables, spec, v, "Box.v")
        assert _same(unpack(pack(v)), v)
    for bad, error in [
        (MixedLink("Nope", 1), UnknownTableError),
        (MixedLink("Tag", "not an int key"), WrongTypeError),
        ({1: "non-str key"}, WrongTypeError),
        (2**64, WrongTypeError),
        (object(), WrongTypeError),
    ]:
        with pytest.raises(error):
            check_value(tables, spec, bad, "Box.v")
    deep: Any = 1
    for _ in range(150):
        deep = [deep]
    with pytest.raises(WrongTypeError, match="nested deeper"):
        check_value(tables, spec, deep, "Box.v")
    with pytest.raises(WrongTypeError, match="set of mixed values"):
        check_value(tables, FieldSpec("mixed", True, "set"), [1, [2]], "Box.s")
    import msgpack  # type: ignore[import-untyped,unused-ignore]

    for payload in (b"\xc1", msgpack.packb([1, 2]), msgpack.packb(["Tag", 1.5])):
        with pytest.raises(MalformedMessage):
            unpack(msgpack.packb(msgpack.ExtType(4, payload)))
