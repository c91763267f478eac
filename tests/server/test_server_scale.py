"""The server at scale (issue 18): auth without a transaction per request, /health apart from the
store, uploads queued without holding connections, tenants in separate PostgreSQL schemas."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from realmpy.server.asgi import ChangeWatcher
from realmpy.server.auth import SESSION_RECHECK_SECONDS
from realmpy.server.config import ConfigError, ServerConfig, load_config
from realmpy.server.group_commit import GroupCommit
from realmpy.server.permissions import Permissions, Subscriptions
from realmpy.server.store import Commit
from realmpy.server.store_postgres import PostgresStore
from realmpy.server.sync_service import ClientResetRequired, PreparedUpload
from realmpy.server.testing import drop_pg_schema, pg_schema_url, pg_url
from realmpy.server.wake_filter import ChangedRecords, WakeFilter
from realmpy.wire.merge import ObjectState
from realmpy.wire.protocol import (
    AuthError,
    DownloadRequest,
    FieldSpec,
    Op,
    OpCode,
    Stamp,
    TableSpec,
    UploadRequest,
    UploadResponse,
    pk_key,
)
from tests.server.http_api import Api, make_api, setup_file, upload_body
from tests.stores import require_postgresql


@pytest.fixture
def server_config() -> ServerConfig:
    return ServerConfig()


@pytest.fixture
def pg() -> None:
    require_postgresql()


@pytest.fixture
def pg_api(pg: None, tmp_path: Path) -> Iterator[Api]:
    yield from make_api("postgresql", tmp_path, ServerConfig())


def test_revocation_elsewhere_takes_effect_within_the_recheck_bound(api: Api) -> None:
    tok, _ = setup_file(api)
    assert api.call("GET", "/auth/profile", token=tok)[0] == 200
    sid = api.server.auth.authenticate(tok).session_id
    with api.server.store.transaction(write=True) as tx:  # as another process's log-out would
        tx.revoke_session(sid)
    # Trusted from the last check (no transaction) until the bound passes, then refused.
    assert api.call("GET", "/auth/profile", token=tok)[0] == 200
    api.clock.t += SESSION_RECHECK_SECONDS
    status, body = api.call("GET", "/auth/profile", token=tok)
    assert status == 401 and body["error"] == "invalid_token"


def test_logout_through_this_process_takes_effect_at_once(api: Api) -> None:
    tok, _ = setup_file(api)
    assert api.call("GET", "/auth/profile", token=tok)[0] == 200
    assert api.post("/auth/logout", token=tok)[0] == 200
    assert api.call("GET", "/auth/profile", token=tok)[0] == 401


def test_health_never_touches_the_store_and_ready_does(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    tok, f = setup_file(api)
    assert api.post("/sync/upload", upload_body(f, 1, [[0, "Car", 1]]), tok)[0] == 200

    def unreachable(*_: Any, **__: Any) -> Any:
        raise RuntimeError("database unreachable")

    monkeypatch.setattr(api.server.store, "_conn", unreachable)
    status, text = api.call("GET", "/health")
    assert status == 200 and json.loads(text) == {
        "status": "ok",
        "app_id": "default",
        "server_version": 1,  # the newest version this process has seen committed
        "protocol_version": 1,
        "dev_mode": True,
    }
    status, text = api.call("GET", "/ready")
    assert status == 503 and json.loads(text)["status"] == "error"
    monkeypatch.undo()
    status, text = api.call("GET", "/ready")
    assert status == 200 and json.loads(text)["server_version"] == 1


def test_pool_size_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text("[database]\npool_size = 20\n")
    assert load_config(path).pool_size == 20
    for bad in ("pool_size = 1", "pool_size = 'x'", "pools = 3"):
        path.write_text(f"[database]\n{bad}\n")
        with pytest.raises(ConfigError, match=r"\[database\]"):
            load_config(path)


def test_queued_uploads_leave_connections_for_downloads(pg_api: Api) -> None:
    """Another process holds the version lock; this process's uploads queue for it.  With a pool
    of 2, a download must still get a connection (queued uploads used to hold them all)."""
    api = pg_api
    store = api.server.store
    assert isinstance(store, PostgresStore)
    store._slots = threading.BoundedSemaphore(2)
    tok, f = setup_file(api)
    principal = api.server.auth.authenticate(tok)
    key = store.tenant()[0]
    down = DownloadRequest.from_wire(
        {"file_ident": f["file_ident"], "salt": f["salt"], "after_server_version": 0}
    )
    answered: list[int] = []
    with (
        psycopg.connect(store.url) as other,
        psycopg.connect(store.url, autocommit=True) as watch,
    ):
        other.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        uploads = [
            threading.Thread(
                target=api.server.sync.upload,
                args=(principal, UploadRequest.from_wire(upload_body(f, cv, [[0, "Car", cv]]))),
            )
            for cv in (1, 2, 3)
        ]
        try:
            for t in uploads:
                t.start()
            waiting = 0
            while waiting == 0:  # until an upload waits for the lock (no sleep)
                row = watch.execute(  # this store's lock only: the database is shared
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND (classid::bigint << 32 | objid::bigint) = %s",
                    (key,),
                ).fetchone()
                waiting = 0 if row is None else int(row[0])
            assert waiting == 1  # one upload per process waits on the database
            reader = threading.Thread(
                target=lambda: answered.append(
                    api.server.sync.download(principal, down).server_version
                )
            )
            reader.start()
            reader.join(60)  # bounds the failure: it used to wait for the lock holder
            assert answered == [0]
        finally:
            other.commit()  # release: the queued uploads go through
    for t in uploads:
        t.join()
    with store.transaction(write=False) as tx:
        assert tx.latest_server_version() == 3


@pytest.mark.usefixtures("pg")
def test_tenants_in_separate_schemas_have_their_own_lock_and_channel() -> None:
    schemas = ("tenant_a_scale", "tenant_b_scale")
    # lock_timeout: were the locks shared, b would fail instead of waiting for a forever
    stores = [PostgresStore(pg_schema_url(s) + "%20-clock_timeout%3D10000") for s in schemas]
    stores.append(PostgresStore(pg_schema_url(schemas[1])))  # another process of tenant b
    try:
        for s in stores:
            s.initialise(secret=b"x" * 32, salt=1)
        a, b, b2 = stores
        assert a.tenant() != b.tenant()
        assert PostgresStore(pg_url()).tenant() == (0x5265616C6D7079, "realmpy_sv")  # public
        heard: dict[PostgresStore, list[int]] = {b: [], b2: []}
        got = threading.Event()

        def listen(store: PostgresStore) -> None:
            def hear(commit: Commit) -> None:
                heard[store].append(commit.sv)
                got.set()

            store.add_listener(hear)
            store.start_listening()

        listen(b)
        listen(b2)
        with a.transaction(write=True, allocates=True) as tx:
            for _ in range(3):
                tx.next_server_version()  # a holds its lock (and will notify 3)...
            with b.transaction(write=True, allocates=True) as tb:
                assert tb.next_server_version() == 1  # ...and b is not blocked by it
        with b.transaction(write=True, allocates=True) as tb:
            assert tb.next_server_version() == 2
        with b2.transaction(write=True, allocates=True) as tb:
            assert tb.next_server_version() == 3
        # Notifications arrive in commit order: once b has heard b2's 3, a's (committed
        # between b's 1 and 2) and b's own echoes of 1 and 2 would have come before it.
        # b heard its own commits once (at commit, not again from its NOTIFY), b2 all of b's.
        while 3 not in heard[b] or 2 not in heard[b2]:
            assert got.wait(30)
            got.clear()
        assert heard == {b: [1, 2, 3], b2: [1, 2, 3]}
    finally:
        for s in stores:
            s.close()
        for name in schemas:
            drop_pg_schema(name)


# --------------------------------------------------------------------------- group commit


def batches_of(
    first: int,
    queued: Sequence[int],
    outcome: Callable[[int], int | BaseException],
    **options: Any,
) -> tuple[list[list[int]], dict[int, object]]:
    """Submit ``first`` to a ``GroupCommit(**options)``; while its batch runs, queue the
    ``queued`` items one after another; then let everything run.  The batches ``run`` saw,
    and each item's result or exception."""
    batches: list[list[int]] = []
    release = threading.Event()

    def run(items: list[int]) -> list[int | BaseException]:
        batches.append(items)
        if len(batches) == 1:
            release.wait(30)  # the first batch runs until the others have queued
        return [outcome(i) for i in items]

    group: GroupCommit[int, int] = GroupCommit(run, **options)
    results: dict[int, object] = {}

    def submit(i: int) -> None:
        try:
            results[i] = group.submit(i)
        except ValueError as exc:
            results[i] = exc

    threads = [threading.Thread(target=submit, args=(first,))]
    threads[0].start()
    while not batches:  # the first caller leads, alone
        threading.Event().wait(0.001)
    for n, i in enumerate(queued, 1):  # queued in this order behind the running batch
        threads.append(threading.Thread(target=submit, args=(i,)))
        threads[-1].start()
        while len(group._queue) < n:
            threading.Event().wait(0.001)
    release.set()
    for t in threads:
        t.join()
    return batches, results


def test_group_commit_batches_what_queued_while_a_batch_ran() -> None:
    batches, results = batches_of(0, [1, 2, 3, 4], lambda i: ValueError(i) if i == 3 else i * 10)
    assert batches == [[0], [1, 2, 3, 4]]
    assert results[0] == 0 and results[1] == 10 and results[4] == 40
    assert isinstance(results[3], ValueError)  # one item's exception is its own


def test_a_batch_is_bounded_by_weight_and_a_heavy_item_runs_alone() -> None:
    batches, _ = batches_of(1, [3, 2, 10, 1, 1], lambda i: i, weight=lambda i: i, max_weight=6)
    assert batches == [[1], [3, 2], [10], [1, 1]]


def test_coroutines_await_their_batch_on_the_loop() -> None:
    batches: list[list[int]] = []
    release = threading.Event()

    def run(items: list[int]) -> list[int | BaseException]:
        batches.append(items)
        if len(batches) == 1:
            release.wait(30)  # the first batch runs until the others have queued
        return [ValueError(i) if i == 3 else i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(run)

    async def main() -> list[object]:
        first = asyncio.ensure_future(group.submit_async(0))
        while not batches:
            await asyncio.sleep(0.001)
        threads = threading.active_count()
        rest = [asyncio.ensure_future(group.submit_async(i)) for i in (1, 2, 3)]
        while len(group._queue) < 3:
            await asyncio.sleep(0.001)
        assert threading.active_count() <= threads  # queued without a thread each
        release.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    results = asyncio.run(main())
    assert batches == [[0], [1, 2, 3]]
    assert results[:3] == [0, 10, 20] and isinstance(results[3], ValueError)
    assert group.submit(5) == 50  # a blocking caller shares the same committer


def test_a_group_of_uploads_integrates_each_in_turn(api: Api) -> None:
    """Three uploads in one group: two files writing the same object merge in order on one
    version sequence; a third with a wrong salt is refused alone."""
    tok, f = setup_file(api)
    g = api.file(tok, nonce="device-0002")
    p = api.server.auth.authenticate(tok)
    sync = api.server.sync
    schema = sync.schema()

    def job(file: dict[str, Any], cv: int, ops: list[Any], **kw: Any) -> PreparedUpload:
        req = UploadRequest.from_wire(upload_body(file, cv, ops, **kw))
        return PreparedUpload(p, req, schema, p.variables())

    bad = dict(f, salt=f["salt"] ^ 1)
    results = sync._integrate_group(
        [
            job(f, 1, [[0, "Car", 1], [2, "Car", 1, "make", "VW"]]),
            job(bad, 1, [[0, "Car", 2]]),
            job(g, 1, [[2, "Car", 1, "make", "Audi"]], base=1),  # sees the first's version
        ]
    )
    assert isinstance(results[1], ClientResetRequired)
    ok = [r for r in results if isinstance(r, UploadResponse)]
    assert [(r.acked_client_version, r.server_version) for r in ok] == [
        (1, 1),
        (1, 2),
    ]
    with api.server.store.transaction(write=False) as tx:
        assert tx.latest_server_version() == 2
        assert [h[:3] for h in tx.history(0, 10)] == [
            (1, f["file_ident"], 1),
            (2, g["file_ident"], 1),
        ]
        obj = tx.get_object("Car", pk_key(1))
        assert obj is not None and obj.last_sv == 2
        assert tx.get_object("Car", pk_key(2)) is None
    # a resent upload is acknowledged again, not integrated twice
    again = sync._integrate_group([job(f, 1, [[0, "Car", 1]])])
    assert again[0] == UploadResponse(1, 2, ())


# --------------------------------------------------------------------------- long-poll wake-ups


SCHEMA = {
    "Car": TableSpec("id", {"id": FieldSpec("int"), "make": FieldSpec("string")}),
    "Task": TableSpec("id", {"id": FieldSpec("int"), "owner_id": FieldSpec("string")}),
    "Pet": TableSpec(
        "id", {"id": FieldSpec("int"), "owner": FieldSpec("link", optional=True, target="Task")}
    ),
}


def wake_filter(
    fi: int,
    queries: dict[str, str],
    perms: Permissions | None = None,
    variables: dict[str, Any] | None = None,
) -> WakeFilter:
    subs = Subscriptions({t: ((q, ()),) for t, q in queries.items()}, SCHEMA)
    return WakeFilter(fi, subs, perms or Permissions(), variables or {}, SCHEMA)


def test_a_commit_wakes_only_the_polls_it_concerns() -> None:
    async def run() -> list[bool]:
        watcher = ChangeWatcher()
        watcher.bind(asyncio.get_running_loop())
        with (
            watcher.watch(1) as cars,
            watcher.watch(2) as tasks,
            watcher.watch(3) as fresh,
            watcher.watch(4) as mine,
        ):
            cars.filter = wake_filter(1, {"Car": "TRUEPREDICATE"})
            tasks.filter = wake_filter(2, {"Task": "TRUEPREDICATE"})
            mine.filter = wake_filter(4, {})
            # fresh: no download yet, so it does not know its tables: any commit wakes it
            watcher.notify_threadsafe(Commit(7, frozenset({"Car"}), frozenset({4})))
            await asyncio.sleep(0)  # the wake-up is scheduled on the loop: let it run
            woken = [p.event.is_set() for p in (cars, tasks, fresh, mine)]
            assert watcher.latest == 7
            for p in (cars, tasks, fresh, mine):
                p.event.clear()
            watcher.notify_threadsafe(Commit(0, frozenset(), frozenset({2})))  # subscriptions
            await asyncio.sleep(0)
            return woken + [p.event.is_set() for p in (cars, tasks, fresh, mine)]

    # the second: a subscription change wakes its own file (and the poll that knows no tables)
    assert asyncio.run(run()) == [True, False, True, True, False, True, True, False]


def car(make: str | None, pk: int = 1, table: str = "Car") -> ObjectState | None:
    """A Car's (or Task's) state with ``make`` set; None: no object."""
    if make is None:
        return None
    state = ObjectState()
    for i, op in enumerate([Op(OpCode.CREATE, table, pk), Op(OpCode.SET, table, pk, "make", make)]):
        state.apply(op, Stamp(1, 1, 1, i), 0, 1)
    return state


def commit_of(*changes: tuple[str | None, str | None], table: str = "Car") -> Commit:
    """A commit of Cars changing from one make to another (None: created)."""
    objects = []
    for pk, (before, after) in enumerate(changes, 1):
        state = car(after, pk, table)
        assert state is not None
        objects.append((table, pk, car(before, pk, table), state))
    return Commit(9, frozenset({table}), frozenset({99}), tuple(objects))


def concerns(f: WakeFilter, c: Commit) -> bool:
    return f.concerned(c, ChangedRecords(c.objects or ()))


def test_a_commit_carrying_its_objects_wakes_only_polls_whose_queries_see_them() -> None:
    vw = wake_filter(1, {"Car": "make == 'VW'"})
    assert not concerns(vw, commit_of((None, "Audi"), ("Audi", "BMW")))
    for change in ((None, "VW"), ("VW", "VW"), ("VW", "Audi")):  # enters, changes in, leaves
        assert concerns(vw, commit_of(("Audi", "BMW"), change)), change
    # without the objects (another process's NOTIFY, a large commit): by table
    assert vw.concerned(Commit(9, frozenset({"Car"})), None)
    assert not vw.concerned(Commit(9, frozenset({"Task"})), None)
    # the commit's own file: its refusals and views, whatever the objects
    assert wake_filter(99, {"Car": "make == 'VW'"}).concerned(commit_of((None, "Audi")), None)


def test_read_rules_and_links_in_wake_matching() -> None:
    own = Permissions({"Car": ("make == %user.make", None)})
    mine = wake_filter(1, {"Car": "TRUEPREDICATE"}, own, {"user": {"make": "VW"}})
    assert not concerns(mine, commit_of((None, "Audi")))  # not readable: sleeps on
    assert concerns(mine, commit_of((None, "VW")))
    # a table with links: a query may follow one (a store read): by table, whatever changed
    pets = wake_filter(1, {"Pet": "owner.owner_id == 'me'"})
    assert concerns(pets, commit_of((None, "x"), table="Pet"))


def test_an_upload_commit_carries_its_objects_before_and_after(api: Api) -> None:
    tok, f = setup_file(api)
    heard: list[Commit] = []
    api.server.store.add_listener(heard.append)
    body = upload_body(f, 1, [[0, "Car", 1], [2, "Car", 1, "make", "VW"]])
    assert api.post("/sync/upload", body, tok)[0] == 200
    body = upload_body(f, 2, [[2, "Car", 1, "make", "Audi"]], base=1)
    assert api.post("/sync/upload", body, tok)[0] == 200
    makes = [
        [
            (t, pk, b and b.materialize("id", pk), a.materialize("id", pk))
            for t, pk, b, a in c.objects or ()
        ]
        for c in heard
    ]
    assert makes == [
        [("Car", 1, None, {"id": 1, "make": "VW"})],
        [("Car", 1, {"id": 1, "make": "VW"}, {"id": 1, "make": "Audi"})],
    ]


def test_commit_notes_survive_notify() -> None:
    note = Commit(12, frozenset({"Car", "Task"}), frozenset({3, 4}))
    assert Commit.from_payload(note.to_payload()) == note
    assert Commit.from_payload("12") == Commit(12)  # an older server's bare version
    huge = Commit(1, frozenset(f"T{i:05}" for i in range(2_000)))
    assert Commit.from_payload(huge.to_payload()) == Commit(1)  # too long: "anything changed"


def test_a_session_found_live_is_authenticated_without_the_store(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What lets the app authenticate on the event loop, without a worker thread."""
    tok, _ = setup_file(api)
    auth = api.server.auth
    auth._live.clear()
    assert auth.authenticate_cached(tok) is None  # not checked yet: the store must be asked
    principal = auth.authenticate(tok)

    def unreachable(*_: Any, **__: Any) -> Any:
        raise RuntimeError("database unreachable")

    monkeypatch.setattr(api.server.store, "_conn", unreachable)
    assert auth.authenticate_cached(tok) == principal
    api.clock.t += SESSION_RECHECK_SECONDS
    assert auth.authenticate_cached(tok) is None  # the bound passed: ask the store again
    with pytest.raises(AuthError):
        auth.authenticate_cached(tok + "x")  # a bad token is refused, not deferred
