"""Pausing a session, and a client reset, end the agent's requests in flight (issue 12, item 4).

The held long poll is the request that matters: the server keeps it up to
``long_poll_seconds`` (60 s here, the most it allows) when nothing changes.
Without aborting it, a paused session kept its connection and took the poll's
answer afterwards, and a client reset's new identity waited for the old
identity's poll before its bootstrap.  Each test watches the poll through the
user's request function and checks how it ended: aborted (an exception), not
answered by the server.  Waits are conditions with deadlines.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "uvicorn", reason="the server extra is not installed: pip install -e '.[test,server]'"
)

from realmpy import App, AppConfiguration, Configuration, Credentials, Realm
from realmpy.objectid import ObjectId
from realmpy.schema import Object, field
from realmpy.sync.app import User
from realmpy.sync.errors import SyncError
from realmpy.sync.history import Meta

T = 90.0  # longer than a held poll: without the abort, the poll's answer comes first


class Note(Object):
    id: ObjectId = field(primary_key=True, default_factory=ObjectId)
    text: str = ""


class PollWatch:
    """Wraps ``user.request``: how each held download (``wait_ms`` > 0) ended."""

    def __init__(self, user: User) -> None:
        self.real = user.request
        self.cond = threading.Condition()
        self.inflight = 0
        self.outcomes: list[tuple[int, str]] = []  # (file ident, "answered" | "aborted")

    def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        if not (path == "/sync/download" and body.get("wait_ms", 0) > 0):
            return self.real(method, path, body, **kw)
        with self.cond:
            self.inflight += 1
            self.cond.notify_all()
        how = "aborted"
        try:
            res = self.real(method, path, body, **kw)
            how = "answered"
            return res
        finally:
            with self.cond:
                self.inflight -= 1
                self.outcomes.append((body["file_ident"], how))
                self.cond.notify_all()

    def held(self) -> int:
        """Wait until a poll is held; how many polls had ended by then."""
        with self.cond:
            assert self.cond.wait_for(lambda: self.inflight > 0, T), "no long poll was made"
            return len(self.outcomes)

    def next_end(self, n: int) -> tuple[int, str]:
        """How the first poll to end after ``n`` others ended."""
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.outcomes) > n, T), "the poll never ended"
            return self.outcomes[n]


def _open(
    tmp: Path, base: str, errors: list[SyncError], monkeypatch: pytest.MonkeyPatch
) -> tuple[Realm, PollWatch]:
    app = App(AppConfiguration("demo", base, base_file_path=str(tmp / "app"), long_poll_seconds=60))
    user = app.log_in(Credentials.anonymous())
    watch = PollWatch(user)
    monkeypatch.setattr(user, "request", watch.request)
    realm = Realm(
        Configuration.flexible_sync(
            user,
            [Note],
            path=str(tmp / "n.realm"),
            sync_error_handler=lambda s, e: errors.append(e),
        )
    )
    with realm.subscriptions.update() as subs:
        subs.add(realm.all(Note), name="all")
    realm.subscriptions.wait_for_synchronization(timeout=T)
    realm.sync_session.wait_for_download(timeout=T)
    return realm, watch


def test_pause_aborts_the_held_long_poll(
    tmp_path: Path, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors: list[SyncError] = []
    realm, watch = _open(tmp_path, base, errors, monkeypatch)
    try:
        n = watch.held()
        realm.sync_session.pause()
        assert watch.next_end(n)[1] == "aborted"
        assert realm.sync_session.connection_state.value == "disconnected"
        realm.sync_session.resume()
        with realm.write():
            realm.add(Note(text="after the pause"))
        realm.sync_session.wait_for_upload(timeout=T)
        assert errors == []  # an abort the session asked for is not an error
    finally:
        monkeypatch.undo()
        realm.close()


def test_a_client_reset_aborts_the_old_identitys_long_poll(
    tmp_path: Path, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upload loop resets the file (the server no longer knows its salt); the download
    loop's poll, held for the old identity, ends at once and the new identity bootstraps."""
    errors: list[SyncError] = []
    realm, watch = _open(tmp_path, base, errors, monkeypatch)
    with realm.write():
        kept = realm.add(Note(text="synced"))
    realm.sync_session.wait_for_upload(timeout=T)
    realm.sync_session.wait_for_download(timeout=T)
    try:
        n = watch.held()
        with realm._env.write() as txn:  # the server "forgets" us: our salt no longer matches
            meta = Meta(txn)
            ident = meta.ident()
            assert ident is not None
            old_fi, salt, server_salt, uid = ident
            meta.set_ident((old_fi, salt + 1, server_salt, uid))
        with realm.write():
            realm.add(Note(text="unsynced"))  # its upload meets the reset
        assert watch.next_end(n) == (old_fi, "aborted")
        realm.subscriptions.wait_for_synchronization(timeout=T)  # the new identity's bootstrap
        realm.sync_session.wait_for_upload(timeout=T)
        with realm._env.read() as snap:
            assert Meta(snap).file_ident() != old_fi
        assert {"synced", "unsynced"} <= {n.text for n in realm.all(Note)}
        assert realm.find(Note, kept.id) is not None
    finally:
        monkeypatch.undo()
        realm.close()
