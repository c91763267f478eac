"""Client reset after the server trimmed its history (``409 client_reset_required``, ``history_trimmed``).

A device that was offline while the server raised its history horizon past
the device's download cursor must reset (default ``recover_or_discard``):
take a new identity, bootstrap, drop objects the server no longer has
(erased and trimmed meanwhile), and re-apply its unsynced local changes.
The server is stopped, trimmed through its own ``SyncService.trim_history``
and restarted on the same port and data directory; waits are conditions
with deadlines.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip(
    "uvicorn", reason="the server extra is not installed: pip install -e '.[test,server]'"
)

from realmpy import App, AppConfiguration, Configuration, Credentials, Realm
from realmpy.objectid import ObjectId
from realmpy.schema import Object, field
from realmpy.server.cli import open_store
from realmpy.server.config import load_config
from realmpy.server.sync_service import SyncService
from realmpy.server.testing import free_port, run_server
from realmpy.sync.errors import ClientResetError, SyncError
from realmpy.sync.history import Meta

T = 60.0


class Doc(Object):
    id: ObjectId = field(primary_key=True, default_factory=ObjectId)
    name: str = ""


def _open(tmp: Path, base: str, name: str, errors: list[SyncError]) -> Realm:
    app = App(
        AppConfiguration(
            "demo",
            base,
            base_file_path=str(tmp / f"app-{name}"),
            long_poll_seconds=1,
            request_timeout=5,
        )
    )
    user = app.log_in(Credentials.anonymous())
    realm = Realm(
        Configuration.flexible_sync(
            user,
            [Doc],
            path=str(tmp / f"{name}.realm"),
            sync_error_handler=lambda s, e: errors.append(e),
        )
    )
    with realm.subscriptions.update() as subs:
        subs.add(realm.all(Doc), name="all")
    realm.subscriptions.wait_for_synchronization(timeout=T)
    return realm


def _until(realm: Realm, cond: object, timeout: float = T) -> None:
    assert callable(cond)
    env = realm._env
    deadline = time.monotonic() + timeout
    while True:
        seen = env.version
        if cond():
            return
        assert time.monotonic() < deadline, "condition not reached"
        env.wait_for_change(seen, 0.5)


def test_history_trimmed_resets_and_recovers(tmp_path: Path) -> None:
    data = tmp_path / "server"
    data.mkdir()
    port = free_port()
    errors: list[SyncError] = []
    with run_server(data, app_id="demo", port=port) as (base, _):
        a = _open(tmp_path, base, "a", errors)
        b = _open(tmp_path, base, "b", [])
        with a.write():
            gone = a.add(Doc(name="erased-while-a-was-away"))
            a.add(Doc(name="kept"))
        a.sync_session.wait_for_upload(timeout=T)
        b.sync_session.wait_for_download(timeout=T)
        a.sync_session.pause()
        with a.write():
            a.add(Doc(name="unsynced-on-a"))
        doomed = b.find(Doc, gone.id)
        assert doomed is not None
        with b.write():
            b.delete(doomed)
            b.add(Doc(name="from-b"))
        b.sync_session.wait_for_upload(timeout=T)
        with a._env.read() as snap:
            old_fi = Meta(snap).file_ident()
        b.sync_session.pause()
    # Server down: trim everything it has (the erased object's tombstone goes too).
    store = open_store(str(data), None)
    try:
        horizon, dropped = SyncService(store, load_config(None, app_id="demo")).trim_history(10**9)
    finally:
        store.close()
    assert horizon > 0 and dropped >= 1
    with run_server(data, app_id="demo", port=port):
        a.sync_session.resume()
        b.sync_session.resume()

        def reset_done() -> bool:
            with a._env.read() as snap:
                fi = Meta(snap).file_ident()
            return fi not in (0, old_fi)

        _until(a, reset_done)
        a.subscriptions.wait_for_synchronization(timeout=T)
        a.sync_session.wait_for_upload(timeout=T)
        a.sync_session.wait_for_download(timeout=T)
        names = sorted(d.name for d in a.all(Doc))
        assert names == ["from-b", "kept", "unsynced-on-a"], names
        b.sync_session.wait_for_download(timeout=T)
        assert sorted(d.name for d in b.all(Doc)) == names
    assert not any(
        isinstance(e, ClientResetError) for e in errors
    )  # recovered automatically, not manual
    a.close()
    b.close()
