"""The sync API's async forms, seed-parity details and bounded local growth (issue 12, items 5, 7, 8).

Async waits are proven not to block the event loop without timing: the
condition they wait for is made true only by another coroutine of the same
loop (it resumes a paused session), so a blocking wait would deadlock into
its timeout and fail.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from realmpy import App, AppConfiguration, Configuration, Credentials, Realm
from realmpy.errors import ClosedRealmError
from realmpy.objectid import ObjectId
from realmpy.schema import Object, field
from realmpy.sync.history import HISTORY, STATE, Meta, state_key
from realmpy.sync.session import SyncSession
from tests.sync.processes import WORKER

T = 60.0


class Item(Object):
    id: ObjectId = field(primary_key=True, default_factory=ObjectId)
    name: str = ""
    blob: str = ""


def _app(tmp: Path, base: str) -> App:
    return App(AppConfiguration("demo", base, base_file_path=str(tmp / "app"), long_poll_seconds=2))


def _open(app: App, path: Path) -> Realm:
    user = app.current_user or app.log_in(Credentials.anonymous())
    return Realm(Configuration.flexible_sync(user, [Item], path=str(path)))


async def _resume_soon(session: SyncSession) -> None:
    """Resume ``session`` from the loop: only a loop that is not blocked gets here."""
    await asyncio.sleep(0)
    session.resume()


# ---------------------------------------------------------------- item 7: async API


def test_async_waits_do_not_block_the_loop(tmp_path: Path, base: str) -> None:
    app = _app(tmp_path, base)

    async def main() -> int:
        user = await app.log_in_async(Credentials.anonymous())
        realm = Realm(Configuration.flexible_sync(user, [Item], path=str(tmp_path / "a.realm")))
        session = realm.sync_session
        try:
            session.pause()
            with realm.subscriptions.update() as subs:
                subs.add(realm.all(Item), name="all")
            resume = asyncio.ensure_future(_resume_soon(session))
            assert await realm.subscriptions.wait_for_synchronization_async(timeout=T)
            await resume

            session.pause()
            with realm.write():
                realm.add(Item(name="async"))
            resume = asyncio.ensure_future(_resume_soon(session))
            await session.wait_for_upload_async(timeout=T)
            await resume
            with realm._env.read() as snap:
                assert Meta(snap).acked() == Meta(snap).cv()
            await session.wait_for_download_async(timeout=T)
            return len(realm.all(Item))
        finally:
            realm.close()

    assert asyncio.run(main()) == 1


def test_async_wait_raises_like_the_blocking_one(tmp_path: Path, base: str) -> None:
    from realmpy.sync.errors import SyncTimeoutError

    realm = _open(_app(tmp_path, base), tmp_path / "t.realm")
    try:
        realm.sync_session.pause()
        with realm.write():
            realm.add(Item(name="queued"))
        with pytest.raises(SyncTimeoutError, match="wait_for_upload"):
            asyncio.run(realm.sync_session.wait_for_upload_async(timeout=0.2))
        with pytest.raises(SyncTimeoutError, match="wait_for_upload"):
            realm.sync_session.wait_for_upload(timeout=0.2)
    finally:
        realm.close()


def test_log_in_async_takes_credentials(tmp_path: Path, base: str) -> None:
    with pytest.raises(TypeError, match="Credentials"):
        asyncio.run(_app(tmp_path, base).log_in_async("anonymous"))  # type: ignore[arg-type]


# ---------------------------------------------------------------- item 8: seed parity


def test_sync_configurations_refuse_unknown_keywords(tmp_path: Path, base: str) -> None:
    user = _app(tmp_path, base).log_in(Credentials.anonymous())
    with pytest.raises(TypeError, match="pth"):
        Configuration.flexible_sync(user, [Item], pth=str(tmp_path / "x.realm"))  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="pth"):
        Configuration.disconnected_sync([Item], pth=str(tmp_path / "x.realm"))  # type: ignore[call-arg]


def test_default_storage_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert os.path.isabs(Configuration.default_storage_path)
    monkeypatch.setattr(Configuration, "default_storage_path", str(tmp_path))
    config = Configuration.local([Item])
    assert config.path == str(tmp_path / "default.realm")
    with Realm(config) as realm:
        assert realm.path == str(tmp_path / "default.realm")


def test_shutdown_closes_every_realm_and_stops_the_agent(tmp_path: Path, base: str) -> None:
    synced = _open(_app(tmp_path, base), tmp_path / "s.realm")
    session = synced.sync_session
    local = Realm(Configuration.local([Item], path=str(tmp_path / "l.realm")))
    other: list[Realm] = []
    opened = threading.Event()
    done = threading.Event()

    def in_thread() -> None:
        other.append(Realm(Configuration.local([Item], path=str(tmp_path / "t.realm"))))
        opened.set()
        done.wait(T)

    t = threading.Thread(target=in_thread)
    t.start()
    assert opened.wait(T)
    try:
        Realm.shutdown()
        assert synced.is_closed and local.is_closed and other[0].is_closed
        assert session.role == "stopped"
        with pytest.raises(ClosedRealmError):
            len(local.all(Item))
    finally:
        done.set()
        t.join(T)
    with _open(_app(tmp_path, base), tmp_path / "s.realm") as again:  # opens again after
        assert again.sync_session.role == "agent"


def test_closing_a_standby_is_prompt(tmp_path: Path, base: str) -> None:
    """A standby's client thread has ended when close returns (it used to stay blocked in lockf);
    reopening standbys reuses one election waiter instead of piling threads up."""
    path = tmp_path / "sb.realm"
    from tests.sync.sync_worker import MODELS

    app = _app(tmp_path, base)
    user = app.log_in(Credentials.anonymous())
    agent = subprocess.Popen(
        [sys.executable, WORKER, "main", str(path), str(tmp_path / "app"), base],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert agent.stdout is not None
        for line in agent.stdout:
            if '"role": "agent"' in line:
                break
        for _ in range(3):
            realm = Realm(Configuration.flexible_sync(user, MODELS, path=str(path)))
            client = realm.config.sync._clients[id(realm)]
            assert not client._election.granted
            realm.close()
            assert not client._thread.is_alive()
        waiters = [t for t in threading.enumerate() if t.name.startswith("realmpy-sync-election")]
        assert len(waiters) == 1
    finally:
        agent.kill()
        agent.wait(T)


# ---------------------------------------------------------------- item 5: bounded growth


def _has_state(realm: Realm, pk: ObjectId) -> bool:
    with realm._env.read() as snap:
        return snap.get(STATE, state_key("Item", pk)) is not None


def _sync(*realms: Realm) -> None:
    for r in realms:
        r.sync_session.wait_for_upload(timeout=T)
    for r in realms:
        r.sync_session.wait_for_download(timeout=T)


def test_tombstones_are_collected_and_convergence_holds(tmp_path: Path, base: str) -> None:
    a = _open(_app(tmp_path, base), tmp_path / "a.realm")
    b = Realm(
        Configuration.flexible_sync(
            App(
                AppConfiguration(
                    "demo", base, base_file_path=str(tmp_path / "app-b"), long_poll_seconds=2
                )
            ).log_in(Credentials.anonymous()),
            [Item],
            path=str(tmp_path / "b.realm"),
        )
    )
    try:
        for r in (a, b):
            with r.subscriptions.update() as subs:
                subs.add(r.all(Item), name="all")
            r.subscriptions.wait_for_synchronization(timeout=T)
        x, y = ObjectId(), ObjectId()
        with a.write():
            a.add(Item(id=x, name="x"))
            a.add(Item(id=y, name="y"))
        _sync(a, b)
        assert b.find(Item, x) is not None and _has_state(a, x) and _has_state(b, x)

        # An acknowledged erase leaves no state here; a downloaded one none there.
        with a.write():
            a.delete(a.find(Item, x))  # type: ignore[arg-type]
        _sync(a, b)
        b.refresh()
        assert b.find(Item, x) is None
        assert not _has_state(a, x) and not _has_state(b, x)

        # A create of the same key after the collection resurrects it everywhere.
        with a.write():
            a.add(Item(id=x, name="again"))
        _sync(a, b)
        b.refresh()
        found = b.find(Item, x)
        assert found is not None and found.name == "again"

        # Erase still wins over a concurrent change made without seeing it.
        a.sync_session.pause()
        with a.write():
            a.find(Item, y).name = "late"  # type: ignore[union-attr]
        with b.write():
            b.delete(b.find(Item, y))  # type: ignore[arg-type]
        _sync(b)
        a.sync_session.resume()
        _sync(a, b)
        _sync(a, b)
        a.refresh()
        b.refresh()
        assert a.find(Item, y) is None and b.find(Item, y) is None
        assert not _has_state(a, y) and not _has_state(b, y)
        assert sorted(i.name for i in a.all(Item)) == sorted(i.name for i in b.all(Item))
    finally:
        a.close()
        b.close()


def test_a_synced_file_compacts_when_last_closed_mostly_free(tmp_path: Path, base: str) -> None:
    """The history trimmed after upload leaves free pages; the last close compacts the file
    (default_should_compact) as it would on the next open."""
    path = tmp_path / "c.realm"
    realm = _open(_app(tmp_path, base), path)
    with realm.subscriptions.update() as subs:
        subs.add(realm.all(Item), name="all")
    realm.subscriptions.wait_for_synchronization(timeout=T)
    realm.sync_session.pause()
    with realm.write():
        item = realm.add(Item(name="big"))
    pk = item.id
    for i in range(600):  # history of 600 changesets of ~2 KiB each: ~1.2 MiB
        with realm.write():
            item.blob = f"{i:06d}" * 340
    realm.sync_session.resume()
    realm.sync_session.wait_for_upload(timeout=T)
    with realm._env.read() as snap:
        assert snap.count(HISTORY) == 0
    grown = os.stat(path).st_size
    realm.close()
    assert os.stat(path).st_size < grown // 2
    with _open(_app(tmp_path, base), path) as again:
        found = again.find(Item, pk)
        assert found is not None and found.blob.startswith("000599")
