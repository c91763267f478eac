"""Honest state (issue 12, item 3): connection state through a server outage, waits with the
server down, subscription states that never go back, progress that never goes down, and the
read-only session view of a ``disconnected_sync`` realm (item 4) reporting it all.

Waits are conditions with deadlines; the outage is sampled, not slept through.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "uvicorn", reason="the server extra is not installed: pip install -e '.[test,server]'"
)

from realmpy import App, AppConfiguration, Configuration, Credentials, Realm
from realmpy.objectid import ObjectId
from realmpy.schema import Object, field
from realmpy.server.testing import free_port, run_server
from realmpy.sync import history, integrate
from realmpy.sync import status as ST
from realmpy.sync import subscriptions as S
from realmpy.sync.errors import SyncTimeoutError
from realmpy.sync.history import Meta
from realmpy.sync.session import SyncProgress
from realmpy.wire import protocol as P

T = 60.0


class Item(Object):
    id: ObjectId = field(primary_key=True, default_factory=ObjectId)
    name: str = ""


def _eventually(cond: Callable[[], bool], what: str) -> None:
    """Sample ``cond`` (a state in another thread) until it holds, within ``T``."""
    deadline = time.monotonic() + T
    while not cond():
        assert time.monotonic() < deadline, f"never: {what}"
        threading.Event().wait(0.02)  # sampling another thread's state: there is no event


def test_connection_state_through_an_outage(tmp_path: Path) -> None:
    data = tmp_path / "server"
    data.mkdir()
    port = free_port()
    path = str(tmp_path / "o.realm")
    with run_server(data, app_id="demo", port=port) as (base, _):
        app = App(
            AppConfiguration(
                "demo", base, base_file_path=str(tmp_path / "app"), long_poll_seconds=1
            )
        )
        realm = Realm(
            Configuration.flexible_sync(app.log_in(Credentials.anonymous()), [Item], path=path)
        )
        with realm.subscriptions.update() as subs:
            subs.add(realm.all(Item), name="all")
        assert realm.subscriptions.wait_for_synchronization(timeout=T)
        session = realm.sync_session
        assert session.connection_state.value == "connected"
    # The server is down.  The agent finds out at its next request; from then on it never reads
    # connected, whatever its threads do: idle passes that make no request (which marked it
    # connected before), retries.
    _eventually(lambda: session.connection_state.value != "connected", "disconnected")
    samples: list[str] = []
    for _ in range(60):
        samples.append(session.connection_state.value)
        threading.Event().wait(0.05)  # the sampling interval of the measurement
    assert "connected" not in samples, samples
    with realm.write():
        realm.add(Item(name="offline"))
    # With the server down both waits behave alike: the whole timeout, then a timeout that
    # names the last error.
    for wait in (session.wait_for_upload, session.wait_for_download):
        with pytest.raises(SyncTimeoutError, match=r"last error: \[connection_failed\]"):
            wait(timeout=1)
    view_realm = Realm(Configuration.disconnected_sync([Item], path=path))
    view = view_realm.sync_session
    assert view is not None and view.connection_state.value != "connected"
    with run_server(data, app_id="demo", port=port):
        _eventually(lambda: session.connection_state.value == "connected", "connected again")
        session.wait_for_upload(timeout=T)
        view.wait_for_upload(timeout=T)
        assert view.connection_state.value == "connected"
        realm.close()
        view_realm.close()


def test_subscription_state_never_goes_back(tmp_path: Path) -> None:
    with Realm(Configuration.disconnected_sync([Item], path=str(tmp_path / "s.realm"))) as realm:
        with realm.subscriptions.update() as subs:
            subs.add(realm.all(Item), name="all")
        qv = realm.subscriptions.version
        env = realm._env
        # The download thread completes the set before the upload thread records the server's
        # earlier "pending" answer (as bootstrapping): that older answer must not win.
        for state in (S.SubscriptionSetState.COMPLETE, S.SubscriptionSetState.BOOTSTRAPPING):
            with env.write() as txn:
                S.mark(txn, qv, state)
        assert realm.subscriptions.state is S.SubscriptionSetState.COMPLETE
        assert realm.subscriptions.wait_for_synchronization(timeout=T)


def _batch(env: Any, n: int, batch: str, progress: float, cursor: int) -> None:
    """What the agent commits for one download batch, as far as progress is concerned."""
    resp = P.DownloadResponse(
        server_version=cursor,
        latest_server_version=10,
        server_salt=1,
        acked_client_version=0,
        query_version=0,
        batch=batch,
        progress=progress,
        entries=tuple(P.DownloadEntry("forget", "Item", ObjectId(), None, None) for _ in range(n)),
    )
    with env.write() as txn:
        ST.count_download(txn, resp)
        Meta(txn).set_download(cursor, 10, 1.0 if batch != "more" else min(progress, 0.99))


def _listener() -> tuple[list[SyncProgress], threading.Event, Callable[[SyncProgress], None]]:
    """A progress callback: the reports it got, and an event set at the first 1.0."""
    reports: list[SyncProgress] = []
    done = threading.Event()

    def on_progress(p: SyncProgress) -> None:
        reports.append(p)
        if p.progress_estimate >= 1.0:
            done.set()

    return reports, done, on_progress


def test_download_progress_counts_objects_and_never_goes_down(tmp_path: Path) -> None:
    # A secondary's view reports the progress the agent records in the file.
    with Realm(Configuration.disconnected_sync([Item], path=str(tmp_path / "p.realm"))) as realm:
        env = realm._env
        _batch(env, 0, "steady", 1.0, 0)
        session = realm.sync_session
        assert session is not None and session.role == "secondary"
        reports, done, on_progress = _listener()

        with env.write() as txn:
            Meta(txn).set_download(0, 10, 0.0)  # a bootstrap is outstanding
        session.add_progress_listener("download", "for_currently_outstanding_work", on_progress)
        # The server's estimate wobbles (0.5, then 0.49): the listener's never goes down.
        for n, batch, progress in ((5, "more", 0.5), (5, "more", 0.49), (3, "last", 1.0)):
            _batch(env, n, batch, progress, 0 if batch == "more" else 10)
        assert done.wait(T)
        estimates = [p.progress_estimate for p in reports]
        assert estimates == sorted(estimates) and estimates[-1] == 1.0, reports
        assert reports[-1].transferred == reports[-1].transferable == 13  # objects, not batches


def test_upload_progress_counts_objects_and_bytes_and_never_goes_down(tmp_path: Path) -> None:
    # A secondary's view reports what the agent records: acknowledged object changes and bytes.
    with Realm(Configuration.disconnected_sync([Item], path=str(tmp_path / "u.realm"))) as realm:
        env = realm._env
        with env.write(record_history=False) as txn:
            Meta(txn).set_ident((7, 1, 1, "user"))  # what the agent stores before any upload
        ids = [ObjectId() for _ in range(4)]
        with realm.write():
            realm.add(Item(id=ids[0], name="a"))
        with realm.write():
            realm.add(Item(id=ids[1], name="b" * 100))
            realm.add(Item(id=ids[2], name="c"))
        with realm.write():
            realm.find(Item, ids[0]).name = "a2"  # type: ignore[union-attr]
        with env.read() as snap:
            sizes = [history.changeset_size(raw) for _k, raw in snap.scan(history.HISTORY)]
        assert [o for o, _ in sizes] == [1, 2, 1]  # objects per changeset, not changesets
        total_bytes = sum(b for _, b in sizes)
        session = realm.sync_session
        reports, done, on_progress = _listener()

        session.add_progress_listener("upload", "for_currently_outstanding_work", on_progress)
        assert reports[0] == SyncProgress(0, 4, 0.0, 0, total_bytes)
        for cv in (1, 2, 3):  # the agent records each acknowledgement
            integrate.record_ack(env, 7, cv, 10 + cv)
        assert done.wait(T)
        assert [p.transferred for p in reports] == sorted(p.transferred for p in reports)
        estimates = [p.progress_estimate for p in reports]
        assert estimates == sorted(estimates) and estimates[-1] == 1.0, reports
        assert reports[-1] == SyncProgress(4, 4, 1.0, total_bytes, total_bytes)
        # The bytes are the changesets' operations as uploaded (the big name weighs in).
        assert sizes[1][1] > 100 > sizes[0][1]
