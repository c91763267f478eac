"""A permanent sync error (``403 bad_file_ident``) stops the session instead of
being re-reported on every backoff (about every 10 s before)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip(
    "uvicorn", reason="the server extra is not installed: pip install -e '.[test,server]'"
)

from realmpy import App, AppConfiguration, Configuration, Credentials, Realm
from realmpy.objectid import ObjectId
from realmpy.schema import Object, field
from realmpy.server.testing import run_server
from realmpy.storage import Environment
from realmpy.sync.errors import SyncError
from realmpy.sync.history import Meta

T = 60.0


class Item(Object):
    id: ObjectId = field(primary_key=True, default_factory=ObjectId)
    name: str = ""


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_server(tmp_path_factory.mktemp("server"), app_id="demo") as (url, _proc):
        yield url


def test_bad_file_ident_stops_the_session(tmp_path: Path, base: str) -> None:
    path = str(tmp_path / "f.realm")
    # User A syncs the file: the server binds its file ident to A.
    app_a = App(AppConfiguration("demo", base, base_file_path=str(tmp_path / "a")))
    ann = app_a.log_in(Credentials.anonymous())
    with Realm(Configuration.flexible_sync(ann, [Item], path=path)) as realm:
        with realm.subscriptions.update() as subs:
            subs.add(realm.all(Item), name="all")
        realm.subscriptions.wait_for_synchronization(timeout=T)
    # The file then claims user B (as a file copied to B's device would be
    # after its owner check): the server refuses B with 403 bad_file_ident.
    app_b = App(AppConfiguration("demo", base, base_file_path=str(tmp_path / "b")))
    app_b.email_password_auth.register_user("bo@example.com", "bo's password")
    bo = app_b.log_in(Credentials.email_password("bo@example.com", "bo's password"))
    with Environment(path) as env, env.write() as txn:
        ident = Meta(txn).ident()
        assert ident is not None
        Meta(txn).set_ident((ident[0], ident[1], ident[2], bo.id))

    errors: list[SyncError] = []
    reported = threading.Event()

    def on_error(_session: object, err: SyncError) -> None:
        errors.append(err)
        reported.set()

    config = Configuration.flexible_sync(bo, [Item], path=path, sync_error_handler=on_error)
    with Realm(config) as realm:
        session = realm.sync_session
        assert reported.wait(T)
        deadline = time.monotonic() + T
        while session.role != "stopped" and time.monotonic() < deadline:
            threading.Event().wait(0.05)  # bounded wait for the agent's threads to stop
        assert session.role == "stopped"
        assert session.state.value == "inactive"
        assert session.last_error is not None and session.last_error.code == "bad_file_ident"
        # Reported once: both loops met it, and nothing retries after the stop
        # (its threads were joined before the role became "stopped").
        assert [(e.code, e.status) for e in errors] == [("bad_file_ident", 403)]
        with realm.write():  # local writes go on (they wait in the file)
            realm.add(Item(name="local"))
        assert len(realm.all(Item)) == 1
