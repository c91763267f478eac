"""Processes of the multi-process sync tests (run as ``python tests/sync/sync_worker.py ROLE ...``).

Each role prints one JSON object per line on stdout (``{"event": ...}``) so
the test can wait for conditions with deadlines instead of sleeping.

Roles:

``main PATH APPDIR BASE``
    logs in (reusing the app directory's current user if any), opens
    ``flexible_sync``, subscribes to every ``Car``, prints ``role`` events as
    it becomes agent or standby and ``conn`` events as its session's
    ``connection_state`` / ``agent_pid`` change, and runs until SIGTERM.
``secondary PATH NAME COUNT EXPECT``
    opens ``disconnected_sync``, writes COUNT cars (one transaction each,
    make=NAME), prints ``wrote``, waits with its session view until the agent
    uploaded them and prints ``uploaded`` with what the view says; then waits — by a listener, i.e. auto-refresh
    — until it sees EXPECT cars made by ``device``, checks ``refresh()`` and
    ``refresh_async()``, prints ``seen`` and exits.
``device PATH APPDIR BASE COUNT EXPECT``
    another device: ``flexible_sync`` on its own file, writes COUNT cars
    (make=device), waits for the upload, then waits until it has EXPECT cars
    in total and prints ``done`` with the makes it saw.
``writer PATH NAME COUNT``
    ``disconnected_sync`` writes only (used to be SIGKILLed mid-write); prints
    ``progress`` after every commit.
``chaoswriter PATH NAME``
    ``disconnected_sync``: continues NAME's sequence from what the file holds
    (so a restarted writer neither skips nor repeats a number), one car and
    one increment of the shared ``Tally`` counter per transaction, until
    killed; prints ``progress`` after every commit.
``extender PATH COUNT``
    ``disconnected_sync`` with newer models (``Car`` plus ``Extra``, a class the
    main process does not have): writes COUNT ``Extra`` objects, then one car
    (make=after-extra), each in its own transaction; prints ``wrote`` and exits.
``extra-device PATH APPDIR BASE EXPECT``
    another device with the newer models, subscribed to every ``Extra`` and
    ``Car``: waits until it has EXPECT ``Extra`` objects and prints ``done``.

The other roles open the file with ``MODELS``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
from collections import Counter as _Counter
from typing import Any

from realmpy.config import Configuration
from realmpy.objectid import ObjectId
from realmpy.realm import Realm
from realmpy.schema import Counter, Object, field
from realmpy.sync.app import App, AppConfiguration, Credentials

APP_ID = "demo"


class Car(Object):
    id: ObjectId = field(primary_key=True, default_factory=ObjectId)
    make: str = field(indexed=True)
    seq: int = 0
    miles: int = 0


class Tally(Object):
    """One counter every chaos writer increments once per commit (exactly-once check of ADDs)."""

    id: str = field(primary_key=True)
    hits: Counter = Counter(0)


CHAOS_MODELS = [Car, Tally]
MODELS = CHAOS_MODELS if os.environ.get("REALMPY_WORKER_TALLY") == "1" else [Car]
"""What ``main``, ``device`` and the secondaries open: with ``Tally`` for the chaos test only
(other tests run servers whose fixed schema has only ``Car``)."""


class Extra(Object):
    """A class only the newer models (``extender``, ``extra-device``) have."""

    id: ObjectId = field(primary_key=True, default_factory=ObjectId)
    note: str = ""


def emit(event: str, **kw: Any) -> None:
    print(json.dumps({"event": event, "pid": os.getpid(), **kw}), flush=True)


def _app(appdir: str, base: str) -> App:
    return App(
        AppConfiguration(
            APP_ID, base, base_file_path=appdir, long_poll_seconds=5, request_timeout=10
        )
    )


def _user(app: App) -> Any:
    user = app.current_user
    if user is None:
        delay = 0.1
        deadline = time.monotonic() + 60
        while True:  # the server may be down when we start (offline first): retry with backoff
            try:
                user = app.log_in(Credentials.anonymous())
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(delay)  # backoff between login attempts, not a sleep-to-pass
                delay = min(2 * delay, 2.0)
    return user


def _stop_event() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return stop


def _wait_for_count(results: Any, expect: int, timeout: float) -> bool:
    """Wait, by a listener (auto-refresh), until ``results`` has ``expect`` objects."""
    got = threading.Event()
    token = results.add_listener(lambda res, ch: got.set() if len(res) >= expect else None)
    if len(results) >= expect:
        got.set()
    ok = got.wait(timeout)
    token.remove()
    return ok


def _subscribe(realm: Realm) -> None:
    with realm.subscriptions.update() as subs:
        subs.add(realm.all(Car), name="all cars")
        if Tally in MODELS:
            subs.add(realm.all(Tally), name="tally")


def main_role(path: str, appdir: str, base: str) -> None:
    stop = _stop_event()
    app = _app(appdir, base)

    def on_error(_session: Any, err: Any) -> None:
        emit("sync_error", code=err.code, type=type(err).__name__, detail=err.detail)

    config = Configuration.flexible_sync(_user(app), MODELS, path=path, sync_error_handler=on_error)
    realm = Realm(config)
    if realm.subscriptions.find(realm.all(Car)) is None:
        _subscribe(realm)
    session = realm.sync_session
    emit(
        "open",
        role=session.role,
        state=session.connection_state.value,
        agent_pid=session.agent_pid,
    )
    last = None
    last_conn = None
    while not stop.is_set():
        if session.role != last:
            last = session.role
            emit("role", role=last)
        conn = (session.role, session.connection_state.value, session.agent_pid)
        if conn != last_conn:
            last_conn = conn
            emit("conn", role=conn[0], state=conn[1], agent_pid=conn[2])
        stop.wait(0.05)  # watching role/connection flags for the test's benefit
    realm.close()
    emit("closed")


def secondary_role(path: str, name: str, count: int, expect: int) -> None:
    realm = Realm(Configuration.disconnected_sync(MODELS, path=path))
    for i in range(count):
        with realm.write():
            realm.add(Car(make=name, seq=i, miles=i * 10))
    emit("wrote", n=count)
    view = realm.sync_session  # a read-only view of the agent (another process)
    view.wait_for_upload(timeout=120)  # until the agent uploaded this process's commits
    emit(
        "uploaded",
        role=view.role,
        agent_pid=view.agent_pid,
        state=view.connection_state.value,
        session=view.state.value,
    )
    seen = threading.Event()
    results = realm.query(Car, "make == 'device'")

    def on_change(res: Any, changes: Any) -> None:
        if len(res) >= expect:
            seen.set()

    token = results.add_listener(on_change)
    if len(results) >= expect:
        seen.set()
    ok = seen.wait(120)
    token.remove()
    realm.refresh()
    n_sync = len(realm.query(Car, "make == 'device'"))
    moved = asyncio.run(realm.refresh_async())
    emit("seen", ok=ok, device_cars=n_sync, refresh_async=moved, total=len(realm.all(Car)))
    realm.close()


def device_role(path: str, appdir: str, base: str, count: int, expect: int) -> None:
    app = _app(appdir, base)
    realm = Realm(Configuration.flexible_sync(_user(app), MODELS, path=path))
    _subscribe(realm)
    realm.subscriptions.wait_for_synchronization(timeout=120)
    for i in range(count):
        with realm.write():
            realm.add(Car(make="device", seq=i))
    realm.sync_session.wait_for_upload(timeout=120)
    emit("uploaded", n=count)
    ok = _wait_for_count(realm.all(Car), expect, 180)
    realm.refresh()
    makes = _Counter(c.make for c in realm.all(Car))
    seqs = sorted((c.make, c.seq) for c in realm.all(Car))
    tally = realm.find(Tally, "hits") if Tally in MODELS else None
    emit(
        "done",
        ok=ok,
        makes=dict(makes),
        unique=len(set(seqs)) == len(seqs),
        total=len(seqs),
        tally=None if tally is None else int(tally.hits),
    )
    realm.close()


def writer_role(path: str, name: str, count: int) -> None:
    realm = Realm(Configuration.disconnected_sync(MODELS, path=path))
    for i in range(count):
        with realm.write():
            realm.add(Car(make=name, seq=i))
        emit("progress", n=i + 1)
    realm.close()


def chaos_writer_role(path: str, name: str) -> None:
    realm = Realm(Configuration.disconnected_sync(CHAOS_MODELS, path=path))
    i = -1
    while True:
        with realm.write():
            if i < 0:
                # Counted inside the write: a predecessor SIGKILLed mid-commit may have left a
                # complete commit that only the next writer's repair publishes.
                i = len(realm.query(Car, "make == $0", name))
            realm.add(Car(make=name, seq=i))
            tally = realm.find(Tally, "hits") or realm.add(Tally(id="hits"))
            tally.hits.increment(1)
        i += 1
        emit("progress", n=i)


def extender_role(path: str, count: int) -> None:
    realm = Realm(Configuration.disconnected_sync([Car, Extra], path=path))
    for i in range(count):
        with realm.write():
            realm.add(Extra(note=f"extra {i}"))
    with realm.write():
        realm.add(Car(make="after-extra"))
    emit("wrote", n=count)
    realm.close()


def extra_device_role(path: str, appdir: str, base: str, expect: int) -> None:
    app = _app(appdir, base)
    realm = Realm(Configuration.flexible_sync(_user(app), [Car, Extra], path=path))
    with realm.subscriptions.update() as subs:
        subs.add(realm.all(Extra), name="all extras")
        subs.add(realm.all(Car), name="all cars")
    realm.subscriptions.wait_for_synchronization(timeout=120)
    ok = _wait_for_count(realm.all(Extra), expect, 120)
    realm.refresh()
    emit("done", ok=ok, extras=len(realm.all(Extra)), cars=len(realm.all(Car)))
    realm.close()


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    if role == "main":
        main_role(args[0], args[1], args[2])
    elif role == "secondary":
        secondary_role(args[0], args[1], int(args[2]), int(args[3]))
    elif role == "device":
        device_role(args[0], args[1], args[2], int(args[3]), int(args[4]))
    elif role == "writer":
        writer_role(args[0], args[1], int(args[2]))
    elif role == "chaoswriter":
        chaos_writer_role(args[0], args[1])
    elif role == "extender":
        extender_role(args[0], int(args[1]))
    elif role == "extra-device":
        extra_device_role(args[0], args[1], args[2], int(args[3]))
    else:
        raise SystemExit(f"unknown role {role}")
