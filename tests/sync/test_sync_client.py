"""Sync client in one process against a real server: history, subscriptions, session, auth, errors, resets.

Waits are conditions with deadlines (``wait_for_*`` or the file's version
counter); nothing sleeps to pass.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

pytest.importorskip(
    "uvicorn", reason="the server extra is not installed: pip install -e '.[test,server]'"
)

from realmpy import App, AppConfiguration, Configuration, Credentials, Realm
from realmpy.objectid import ObjectId
from realmpy.schema import Counter, Object, field
from realmpy.server.testing import run_server
from realmpy.sync.app import User
from realmpy.sync.configuration import ManualRecoveryHandler
from realmpy.sync.errors import (
    AuthenticationError,
    CompensatingWriteError,
    ConnectionFailedError,
    ServerResponseError,
    SubscriptionError,
    SyncConfigurationError,
    SyncError,
    UserLoggedOutError,
)
from realmpy.sync.history import HISTORY, Meta
from realmpy.wire import protocol as P

T = 60.0


class Item(Object):
    id: ObjectId = field(primary_key=True, default_factory=ObjectId)
    name: str = field(indexed=True)
    miles: int = 0
    likes: Counter = Counter(0)
    tags: list[str] = field(default_factory=list)


def _app(tmp: Path, base: str, name: str = "app") -> App:
    return App(AppConfiguration("demo", base, base_file_path=str(tmp / name), long_poll_seconds=2))


def _until(realm: Realm, cond: Callable[[], bool], timeout: float = T) -> None:
    env = realm._env
    deadline = time.monotonic() + timeout
    while True:
        seen = env.version
        if cond():
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        env.wait_for_change(seen, 0.5)


def _open(app: App, path: Path, **kw: Any) -> Realm:
    user = app.current_user or app.log_in(Credentials.anonymous())
    return Realm(Configuration.flexible_sync(user, [Item], path=str(path), **kw))


def _subscribe(realm: Realm, query: str = "TRUEPREDICATE", name: str = "all") -> None:
    with realm.subscriptions.update() as subs:
        subs.add(realm.query(Item, query), name=name, update=True)
    realm.subscriptions.wait_for_synchronization(timeout=T)


def test_history_recorded_in_the_same_transaction(tmp_path: Path) -> None:
    """Every write of a synced file records one changeset; a rollback records none (invariant 7)."""
    path = tmp_path / "h.realm"
    realm = Realm(Configuration.disconnected_sync([Item], path=str(path)))
    with realm.write():
        a = realm.add(Item(name="a", tags=["x", "y"]))
    with realm.write():
        a.miles = 5
        a.likes.increment(2)
        a.tags.append("z")
    with pytest.raises(RuntimeError), realm.write():
        a.miles = 99
        raise RuntimeError("rolled back")
    with realm._env.read() as snap:
        hist = [P.unpack(v) for _, v in snap.scan(HISTORY)]
        assert Meta(snap).cv() == 2
    assert len(hist) == 2
    ops = [P.Op.from_wire(o) for o in hist[1][2]]
    kinds = sorted((o.code.name, o.field) for o in ops)
    assert kinds == [("ADD", "likes"), ("LIST_INSERT", "tags"), ("SET", "miles")]
    realm.close()


def test_local_config_refuses_synced_file(tmp_path: Path) -> None:
    path = tmp_path / "h.realm"
    Realm(Configuration.disconnected_sync([Item], path=str(path))).close()
    with pytest.raises(Exception, match="sync history"):
        Realm(Configuration.local([Item], path=str(path)))


def test_unsyncable_models_are_refused() -> None:
    class NoKey(Object):
        name: str = ""

    with pytest.raises(SyncConfigurationError, match="primary key"):
        Configuration.disconnected_sync([NoKey], path="x.realm")


def test_two_devices_converge_with_counters_and_lists(tmp_path: Path, base: str) -> None:
    app = _app(tmp_path, base)
    r1 = _open(app, tmp_path / "1.realm")
    r2 = _open(_app(tmp_path, base, "other"), tmp_path / "2.realm")
    _subscribe(r1)
    _subscribe(r2)
    with r1.write():
        item = r1.add(Item(name="shared", tags=["a"]))
    r1.sync_session.wait_for_upload(timeout=T)
    r2.sync_session.wait_for_download(timeout=T)
    other = r2.find(Item, item.id)
    assert other is not None and other.tags == ["a"]
    with r1.write():
        item.likes.increment(1)
        item.tags.append("b")
    with r2.write():
        other.likes.increment(10)
        other.tags.insert(0, "c")
    for r in (r1, r2):
        r.sync_session.wait_for_upload(timeout=T)
    for r in (r1, r2):
        r.sync_session.wait_for_download(timeout=T)
    assert item.likes == other.likes == 11
    assert list(item.tags) == list(other.tags) and sorted(item.tags) == ["a", "b", "c"]
    r1.close()
    r2.close()


def test_subscription_lifecycle_and_objects_leaving(tmp_path: Path, base: str) -> None:
    writer = _open(_app(tmp_path, base, "w"), tmp_path / "w.realm")
    _subscribe(writer)
    with writer.write():
        writer.add(Item(name="near", miles=50))
        writer.add(Item(name="far", miles=150))
    writer.sync_session.wait_for_upload(timeout=T)

    reader = _open(_app(tmp_path, base), tmp_path / "r.realm")
    subs = reader.subscriptions
    assert subs.version == 0 and len(subs) == 0
    with subs.update() as m:
        m.add(reader.query(Item, "miles > 100"), name="long")
    assert subs.version == 1 and subs.state.value in ("pending", "bootstrapping", "complete")
    subs.wait_for_synchronization(timeout=T)
    assert subs.state.value == "complete"
    assert sorted(i.name for i in reader.all(Item)) == ["far"]
    with subs.update() as m:
        m.add(reader.query(Item, "miles < 100"), name="long", update=True)
    subs.wait_for_synchronization(timeout=T)
    names = {i.name for i in reader.all(Item)}
    assert "near" in names and "far" not in names  # "far" left every subscription
    with reader._env.read() as snap:
        from realmpy.sync.subscriptions import _read

        assert _read(snap, 1)[1]["state"] == "superseded"
    assert (
        subs.find_by_name("long") is not None
        and subs.find(reader.query(Item, "miles < 100")) is not None
    )
    with pytest.raises(SubscriptionError, match="already exists"), subs.update() as m:
        m.add(reader.query(Item, "miles > 1"), name="long")

    class Bad:  # a query the server cannot parse: the set goes to state error
        _name = "Item"
        _args = ()

        class _query:
            text = "miles >>> 3"

    with subs.update() as m:
        m.add(Bad())  # type: ignore[arg-type]
    with pytest.raises(SubscriptionError, match="refused"):
        subs.wait_for_synchronization(timeout=T)
    refused = subs.state
    assert refused.value == "error" and subs.error
    writer.close()
    reader.close()


def test_subscriptions_visible_to_secondary_process_config(tmp_path: Path, base: str) -> None:
    """flexible_sync and disconnected_sync on one path in one process work together."""
    main = _open(_app(tmp_path, base), tmp_path / "m.realm")
    _subscribe(main, "miles >= 0", "mine")
    sec = Realm(Configuration.disconnected_sync([Item], path=str(tmp_path / "m.realm")))
    # The secondary's session is a read-only view of the agent (here: this very process).
    view = sec.sync_session
    assert view is not None and view.role == "secondary" and not view.is_agent
    assert view.agent_pid == os.getpid() and view.user is None
    assert view.connection_state == main.sync_session.connection_state
    with pytest.raises(SyncError, match="read-only view"):
        view.pause()
    assert [s.name for s in sec.subscriptions] == ["mine"]
    with sec.write():
        sec.add(Item(name="from-secondary"))
    view.wait_for_upload(timeout=T)  # waits for the agent to upload this realm's commit
    with main._env.read() as snap:
        assert Meta(snap).acked() == Meta(snap).cv() >= 1
    # A secondary may change the subscriptions: the agent posts the new set.
    with sec.subscriptions.update() as subs:
        subs.add(sec.query(Item, "miles >= 10"), name="far")
    assert sec.subscriptions.wait_for_synchronization(timeout=T)
    assert sorted(s.name or "" for s in main.subscriptions) == ["far", "mine"]
    assert main.sync_session.role == "agent"  # the view's descriptor did not end the election
    sec.close()
    main.close()


def test_capped_incremental_download_moves_the_cursor(
    tmp_path: Path, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An incremental batch cut short by the server's cap (``more``, here by the smallest
    ``max_bytes``) moves the cursor to the version it finished: keeping the old cursor asked for
    the same batch again forever, and the rest never arrived."""
    r1 = _open(_app(tmp_path, base), tmp_path / "1.realm")
    app2 = _app(tmp_path, base, "other")
    r2 = _open(app2, tmp_path / "2.realm")
    user = app2.current_user
    assert user is not None
    real = user.request
    batches: list[str] = []

    def capped(method: str, path: str, body: Any = None, **kw: Any) -> Any:
        if path != "/sync/download":
            return real(method, path, body, **kw)
        res = real(method, path, {**body, "max_bytes": 1024}, **kw)
        batches.append(res["batch"])
        return res

    monkeypatch.setattr(user, "request", capped)
    for r in (r1, r2):
        _subscribe(r, "name BEGINSWITH 'capped'", "capped")
    r1.sync_session.pause()
    for i in range(3):  # one upload of three server versions
        with r1.write():
            r1.add(Item(name=f"capped{i}", tags=["x" * 2000]))  # bigger than a batch
    del batches[:]
    r1.sync_session.resume()
    _until(r2, lambda: len(r2.query(Item, "name BEGINSWITH 'capped'")) == 3)
    assert "more" in batches, batches
    monkeypatch.undo()
    r1.close()
    r2.close()


def test_pause_resume_and_progress(tmp_path: Path, base: str) -> None:
    realm = _open(_app(tmp_path, base), tmp_path / "p.realm")
    _subscribe(realm)
    session = realm.sync_session
    assert session.is_agent and session.state.value == "active"
    session.pause()
    assert session.state.value == "inactive" and session.connection_state.value == "disconnected"
    with realm.write():
        for i in range(5):
            realm.add(Item(name=f"p{i}"))
    reports: list[Any] = []
    done = threading.Event()

    def on_progress(p: Any) -> None:
        reports.append(p)
        if p.progress_estimate >= 1.0:
            done.set()

    session.add_progress_listener("upload", "for_currently_outstanding_work", on_progress)
    with pytest.raises(SyncError, match="did not finish"):
        session.wait_for_upload(timeout=0.5)
    assert not done.is_set() and reports and reports[0].progress_estimate < 1.0
    session.resume()
    session.wait_for_upload(timeout=T)
    assert done.wait(T)
    last = reports[-1]
    assert last.transferred == last.transferable == 5  # objects (in one changeset)
    assert last.transferred_bytes == last.transferable_bytes > 5 * len("p0")
    realm.close()


def test_token_refresh_and_persistence(
    tmp_path: Path, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _app(tmp_path, base)
    user = app.log_in(Credentials.anonymous())
    f = Path(app._user_file(user.id))
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE(f.parent.stat().st_mode) == 0o700
    assert user._refresh_token is not None and user._refresh_token not in repr(user)
    refreshes: list[str] = []
    real = app._transport.request

    def counting(method: str, path: str, body: Any = None, **kw: Any) -> Any:
        if path == "/auth/refresh":
            refreshes.append(path)
        return real(method, path, body, **kw)

    monkeypatch.setattr(app._transport, "request", counting)
    user._access_expires_at = 0  # due (here and on disk): the next request refreshes first
    user._save()
    user.request("GET", "/auth/profile")
    assert len(refreshes) == 1 and user._access_expires_at > time.time()
    user._access_token = "rpa1.forged.token"  # the server refuses it: refresh and retry once
    assert user.request("GET", "/auth/profile")["user_id"] == user.id
    assert len(refreshes) == 2
    again = App(AppConfiguration("demo", base, base_file_path=str(tmp_path / "app")))
    assert again.current_user is not None and again.current_user.id == user.id
    user.log_out()
    assert cast("User | None", again.current_user) is None  # (mypy narrowed it above)
    with pytest.raises(UserLoggedOutError):
        user.request("GET", "/auth/profile")


def test_log_out_stops_sessions(tmp_path: Path, base: str) -> None:
    app = _app(tmp_path, base)
    errors: list[SyncError] = []
    realm = _open(app, tmp_path / "lo.realm", sync_error_handler=lambda s, e: errors.append(e))
    _subscribe(realm)
    session = realm.sync_session
    app.current_user.log_out()  # type: ignore[union-attr]
    deadline = time.monotonic() + T
    while session.role != "stopped" and time.monotonic() < deadline:
        threading.Event().wait(0.05)  # bounded wait for a thread to stop
    assert session.role == "stopped" and any(isinstance(e, UserLoggedOutError) for e in errors)
    realm.close()


def test_email_password_and_api_key_logins(tmp_path: Path, base: str) -> None:
    """The issue's three credential kinds: an API key logs in as the user that created it."""
    app = _app(tmp_path, base)
    app.email_password_auth.register_user("kim@example.com", "kim's password")
    kim = app.log_in(Credentials.email_password("kim@example.com", "kim's password"))
    assert app.current_user is not None and app.current_user.id == kim.id
    _key_id, key = kim.create_api_key("ci")
    other = _app(tmp_path, base, "server-side")
    by_key = other.log_in(Credentials.api_key(key))
    assert by_key.id == kim.id
    by_key.log_out()
    with pytest.raises(AuthenticationError):
        other.log_in(Credentials.api_key(key + "x"))


def test_bad_credentials_and_bad_servers_give_typed_errors(tmp_path: Path, base: str) -> None:
    app = _app(tmp_path, base)
    app.email_password_auth.register_user("bob@example.com", "correct horse")
    with pytest.raises(AuthenticationError):
        app.log_in(Credentials.email_password("bob@example.com", "wrong password"))
    dead = App(
        AppConfiguration("demo", "http://127.0.0.1:9", base_file_path=str(tmp_path / "dead"))
    )
    with pytest.raises(ConnectionFailedError):
        dead.log_in(Credentials.anonymous())
    wrong_app = App(AppConfiguration("nope", base, base_file_path=str(tmp_path / "nope")))
    with pytest.raises(SyncError) as info:
        wrong_app.log_in(Credentials.anonymous())
    assert info.value.code == "not_found"
    html = App(AppConfiguration("demo", base + "/health#", base_file_path=str(tmp_path / "html")))
    with pytest.raises(SyncError):
        html.log_in(Credentials.anonymous())


def test_malformed_download_is_not_applied(
    tmp_path: Path, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors: list[SyncError] = []
    app = _app(tmp_path, base)
    realm = _open(app, tmp_path / "bad.realm", sync_error_handler=lambda s, e: errors.append(e))
    _subscribe(realm)
    with realm._env.read() as snap:
        before = Meta(snap).download()
    user = app.current_user
    assert user is not None
    real = user.request

    def evil(method: str, path: str, body: Any = None, **kw: Any) -> Any:
        if path == "/sync/download":
            return {"server_version": 10**9, "entries": "garbage"}
        return real(method, path, body, **kw)

    monkeypatch.setattr(user, "request", evil)
    deadline = time.monotonic() + T
    while (
        not any(isinstance(e, ServerResponseError) for e in errors) and time.monotonic() < deadline
    ):
        threading.Event().wait(0.05)  # bounded wait for the agent's report
    assert any(isinstance(e, ServerResponseError) for e in errors)
    with realm._env.read() as snap:
        assert Meta(snap).download()[0] == before[0]
    monkeypatch.undo()
    realm.close()


@pytest.mark.parametrize("mode", ["recover_unsynced", "discard_unsynced"])
def test_client_reset(tmp_path: Path, base: str, mode: str) -> None:
    """The server no longer knows the file's identity: reset, keeping or dropping unsynced changes."""
    app = _app(tmp_path, base)
    realm = _open(app, tmp_path / f"{mode}.realm", client_reset_handler=mode)
    _subscribe(realm)
    with realm.write():
        realm.add(Item(name=f"synced-{mode}"))
    realm.sync_session.wait_for_upload(timeout=T)
    realm.sync_session.pause()
    with realm.write():
        realm.add(Item(name=f"unsynced-{mode}"))
    with realm._env.write() as txn:  # the server "forgets" us: our salt no longer matches
        meta = Meta(txn)
        fi, salt, server_salt, uid = meta.ident()  # type: ignore[misc]
        meta.set_ident((fi, salt + 1, server_salt, uid))
    realm.sync_session.resume()
    realm.sync_session.wait_for_upload(timeout=T)
    _until(realm, lambda: Meta_ident_changed(realm, fi))
    realm.subscriptions.wait_for_synchronization(timeout=T)  # re-sent to the new identity
    realm.sync_session.wait_for_upload(timeout=T)
    realm.sync_session.wait_for_download(timeout=T)
    names = sorted(i.name for i in realm.all(Item))
    if mode == "recover_unsynced":
        assert f"unsynced-{mode}" in names
    else:
        assert f"unsynced-{mode}" not in names
    assert f"synced-{mode}" in names  # the server still has it under the old identity
    realm.close()


def Meta_ident_changed(realm: Realm, old_fi: int) -> bool:
    with realm._env.read() as snap:
        ident = Meta(snap).ident()
    return ident is not None and ident[0] != old_fi


def test_manual_client_reset_calls_handler(tmp_path: Path, base: str) -> None:
    called = threading.Event()
    app = _app(tmp_path, base)
    realm = _open(
        app,
        tmp_path / "manual.realm",
        client_reset_handler=ManualRecoveryHandler(lambda session, err: called.set()),
    )
    _subscribe(realm)
    realm.sync_session.pause()
    with realm._env.write() as txn:
        meta = Meta(txn)
        fi, salt, server_salt, uid = meta.ident()  # type: ignore[misc]
        meta.set_ident((fi, salt + 1, server_salt, uid))
    realm.sync_session.resume()
    assert called.wait(T)
    realm.close()


def test_second_user_cannot_take_the_file(tmp_path: Path, base: str) -> None:
    r = _open(_app(tmp_path, base), tmp_path / "own.realm")
    _subscribe(r)
    r.close()
    other = _app(tmp_path, base, "intruder").log_in(Credentials.anonymous())
    with pytest.raises(SyncConfigurationError, match="synced for user"):
        Realm(Configuration.flexible_sync(other, [Item], path=str(tmp_path / "own.realm")))


def test_compensating_write_reaches_the_handler(tmp_path: Path) -> None:
    conf = tmp_path / "server.toml"
    conf.write_text(
        'app_id = "demo"\n[rules.Item]\nread = "TRUEPREDICATE"\nwrite = "name != \'forbidden\'"\n'
    )
    data = tmp_path / "srv"
    data.mkdir()
    with run_server(data, config=conf, app_id="demo") as (url, _p):
        errors: list[SyncError] = []
        realm = _open(
            _app(tmp_path, url),
            tmp_path / "cw.realm",
            sync_error_handler=lambda s, e: errors.append(e),
        )
        _subscribe(realm)
        with realm.write():
            realm.add(Item(name="ok"))
            realm.add(Item(name="forbidden"))
        realm.sync_session.wait_for_upload(timeout=T)
        realm.sync_session.wait_for_download(timeout=T)
        _until(realm, lambda: len(realm.query(Item, "name == 'forbidden'")) == 0)
        assert [i.name for i in realm.all(Item)] == ["ok"]
        deadline = time.monotonic() + T  # the handler runs just after the batch commits
        while (
            not any(isinstance(e, CompensatingWriteError) for e in errors)
            and time.monotonic() < deadline
        ):
            threading.Event().wait(0.05)  # bounded wait for the agent's report
        assert any(
            isinstance(e, CompensatingWriteError) and e.writes[0][0] == "Item" for e in errors
        )
        realm.close()


def test_default_path_under_base_directory(tmp_path: Path, base: str) -> None:
    app = _app(tmp_path, base)
    user = app.log_in(Credentials.anonymous())
    config = Configuration.flexible_sync(user, [Item])
    assert config.path.startswith(str(tmp_path / "app")) and os.path.basename(config.path).endswith(
        ".realm"
    )


def test_second_opener_in_another_thread_shares_the_agent(tmp_path: Path, base: str) -> None:
    """Two flexible_sync realms of one file in two threads: no MultipleSyncAgents, one agent."""
    app = _app(tmp_path, base)
    main = _open(app, tmp_path / "t.realm")
    _subscribe(main)
    out: dict[str, Any] = {}

    user = app.current_user
    assert user is not None

    def other() -> None:
        r = Realm(Configuration.flexible_sync(user, [Item], path=str(tmp_path / "t.realm")))
        with r.write():
            r.add(Item(name="from-thread"))
        out["same"] = r.sync_session._client is main.sync_session._client
        r.sync_session.wait_for_upload(timeout=T)
        r.close()

    t = threading.Thread(target=other)
    t.start()
    t.join(T)
    assert out["same"] and main.sync_session.is_agent
    main.close()


def test_uploads_go_on_while_an_acknowledgement_waits_to_be_recorded(
    tmp_path: Path, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording an acknowledgement waits for the file's write lock behind every writer; the
    next upload must not wait for it (issue 12, item 6: burst latency)."""
    from realmpy.sync import integrate

    real = integrate.record_ack
    entered, release, returned = threading.Event(), threading.Event(), threading.Event()

    def held(*args: Any) -> bool:
        if not release.is_set():
            entered.set()
            release.wait(T)  # as if every writer were ahead of it for the write lock
            returned.set()
        return real(*args)

    a = _open(_app(tmp_path, base, "app-a"), tmp_path / "a.realm")
    b = _open(_app(tmp_path, base, "app-b"), tmp_path / "b.realm")
    try:
        _subscribe(a)
        _subscribe(b)
        monkeypatch.setattr(integrate, "record_ack", held)
        first, second = Item(name="first"), Item(name="second")
        with a.write():
            a.add(first)
        assert entered.wait(T)
        with a.write():
            a.add(second)
        _until(
            b, lambda: b.find(Item, first.id) is not None and b.find(Item, second.id) is not None
        )
        assert not returned.is_set()  # the first acknowledgement's record is still waiting
        release.set()
        a.sync_session.wait_for_upload(timeout=T)
        with a._env.read() as snap:
            assert Meta(snap).acked() == Meta(snap).cv() and snap.count(HISTORY) == 0
    finally:
        release.set()
        a.close()
        b.close()


def test_the_server_does_not_send_a_device_its_own_changes_back(
    tmp_path: Path, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent downloads with ``skip_own``: an object only this device wrote never comes
    back (its echo would take the file's write lock for nothing, issue 12 item 6), while one
    another device also wrote does, and both devices converge."""
    app_a = _app(tmp_path, base, "app-a")
    a = _open(app_a, tmp_path / "a.realm")
    b = _open(_app(tmp_path, base, "app-b"), tmp_path / "b.realm")
    user = app_a.current_user
    assert user is not None
    real = user.request
    came_back: list[Any] = []

    def spy(method: str, path: str, body: Any = None, **kw: Any) -> Any:
        res = real(method, path, body, **kw)
        if path == "/sync/download":
            came_back.extend(e[2] for e in res["entries"] if e[0] == "state")
        return res

    monkeypatch.setattr(user, "request", spy)
    try:
        _subscribe(a)
        _subscribe(b)
        mine, theirs = Item(name="mine"), Item(name="theirs")
        with a.write():
            a.add(mine)
        with b.write():
            b.add(theirs)
        for r in (a, b):
            r.sync_session.wait_for_upload(timeout=T)
        _until(a, lambda: a.find(Item, theirs.id) is not None)
        _until(b, lambda: b.find(Item, mine.id) is not None)
        with a.write():
            mine.name = "mine again"
        a.sync_session.wait_for_upload(timeout=T)
        a.sync_session.wait_for_download(timeout=T)
        assert mine.id not in came_back and theirs.id in came_back
        b_mine = b.find(Item, mine.id)
        assert b_mine is not None
        with b.write():
            b_mine.miles = 7  # now both devices wrote it: it comes to A whole
        b.sync_session.wait_for_upload(timeout=T)
        _until(a, lambda: mine.miles == 7)
        assert mine.id in came_back
        _until(b, lambda: b_mine.name == "mine again")
        assert (mine.name, mine.miles) == (b_mine.name, b_mine.miles) == ("mine again", 7)
    finally:
        monkeypatch.undo()
        a.close()
        b.close()
