"""Mapped names over sync: the sync schema and subscriptions use the file names
(``field(map_to=...)``, ``class X(Object, name=...)``), so a device whose
models map names and one whose models use the file names share objects."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip(
    "uvicorn", reason="the server extra is not installed: pip install -e '.[test,server]'"
)

from realmpy import App, AppConfiguration, Configuration, Credentials, Realm
from realmpy.schema import Object, field

T = 60.0


class Mapped(Object, name="people"):
    _id: int = field(primary_key=True)
    full_name: str = field(default="", map_to="name")
    age: int = field(default=0, map_to="years", indexed=True)


class Plain(Object, name="people"):
    _id: int = field(primary_key=True)
    name: str = ""
    years: int = field(default=0, indexed=True)


def _realm(tmp: Path, base: str, name: str, model: type) -> Realm:
    app = App(AppConfiguration("demo", base, base_file_path=str(tmp / name), long_poll_seconds=2))
    user = app.log_in(Credentials.anonymous())
    return Realm(Configuration.flexible_sync(user, [model], path=str(tmp / f"{name}.realm")))


def test_mapped_and_plain_devices_share_objects(tmp_path: Path, base: str) -> None:
    mapped = _realm(tmp_path, base, "mapped", Mapped)
    plain = _realm(tmp_path, base, "plain", Plain)
    try:
        with mapped.subscriptions.update() as subs:
            subs.add(mapped.query(Mapped, "age >= $0", 18), name="adults")
        assert mapped.subscriptions.find_by_name("adults").query_string == "years >= $0"  # type: ignore[union-attr]
        mapped.subscriptions.wait_for_synchronization(timeout=T)
        with plain.subscriptions.update() as subs:
            subs.add(plain.query(Plain, "years >= 0"), name="all")
        plain.subscriptions.wait_for_synchronization(timeout=T)
        with mapped.write():
            mapped.add(Mapped(_id=1, full_name="Ann", age=30))
        mapped.sync_session.wait_for_upload(timeout=T)
        plain.sync_session.wait_for_download(timeout=T)
        got = plain.find(Plain, 1)
        assert got is not None and (got.name, got.years) == ("Ann", 30)
        with plain.write():
            plain.add(Plain(_id=2, name="Bob", years=40))
            plain.add(Plain(_id=3, name="Kid", years=5))
        plain.sync_session.wait_for_upload(timeout=T)
        mapped.sync_session.wait_for_download(timeout=T)
        # The subscription "age >= 18" reached the server as "years >= 18".
        assert sorted((m.full_name, m.age) for m in mapped.all(Mapped)) == [
            ("Ann", 30),
            ("Bob", 40),
        ]
    finally:
        mapped.close()
        plain.close()
