"""Multi-process sync benchmark: secondary-process commit → visible on another device, and throughput.

The seed's setup, with real processes and a real ``realmpy-server`` per store
(SQLite, and PostgreSQL from ``REALMPY_TEST_PG_URL`` or the default of
``.ci/postgres.sh``), all on 127.0.0.1:

- device A: a **main process** (``flexible_sync`` on ``a.realm``, the sync
  agent) and **secondary** writers (``disconnected_sync`` on the same file);
- device B: a main process (``flexible_sync`` on ``b.realm``) and an
  observer (``disconnected_sync`` on ``b.realm``, i.e. any process of B).

Measured:

latency
    a secondary of A commits one object (one durable write transaction); the
    time from the commit's return until B's observer can read it
    (``realm.find`` after a wake-up on B's shared version counter): the
    history scan, upload, server merge, long-poll wake-up, download and the
    apply transaction on B.  ``--samples`` sequential rounds (after 5
    warm-ups), p50/p90/p99.  The secondary and the observer are this process;
    both main processes and the server are separate processes.
throughput
    ``--writers`` secondary processes commit ``--commits`` transactions each
    (one new object per transaction, durable) as fast as they can; reported:
    the local commit rate, the rate acknowledged by the server through A's
    main process (until A's file records the acknowledgement of the last
    commit), and the rate at which they all arrive on device B.

catchup (``--scenario catchup``)
    device A's main process syncs once and exits; a secondary then commits
    ``--backlog`` (10,000) objects offline, one per transaction; reported:
    the file's size then (and the size of a plain local realm holding the
    same objects), the time from starting A's main process (and from its
    agent starting, i.e. ``Realm()`` returning) until the server acknowledged
    the whole backlog, the file's size after the upload and after A's main
    process closed it.
burst (``--scenario burst``)
    ``--burst-writers`` (6) secondary processes of A each commit
    ``--burst`` (500) objects one per transaction as fast as they can; for
    every object, the time from its commit's return (in the writer) until
    B's observer first sees it; p50/p99 over all of them.
standby (``--scenario standby``)
    device A's main process is the agent; this process opens the file with
    ``flexible_sync`` five times (a standby each time) and closes it: the
    time ``close()`` takes.

    python bench/bench_sync.py [--quick] [--store sqlite|postgres|both]
        [--scenario latency|catchup|burst|all] [--samples 200] [--writers 2] [--commits 500]
        [--backlog 10000] [--burst-writers 6] [--burst 500]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe, format_description

from realmpy import App, AppConfiguration, Configuration, Credentials, Realm, codec
from realmpy.layout import table_name
from realmpy.schema import Object, field
from realmpy.server.testing import (
    drop_pg_schema,
    pg_schema_url,
    postgres_available,
    run_server,
)
from realmpy.sync.history import Meta

APP_ID = "bench"
DEADLINE = 300.0


class Ping(Object):
    id: int = field(primary_key=True)
    src: str = ""
    payload: str = ""


def emit(event: str, **kw: Any) -> None:
    print(json.dumps({"event": event, **kw}), flush=True)


# ----------------------------------------------------------------------------- child roles


def role_main(path: str, appdir: str, base: str) -> None:
    """Device main process: flexible_sync, subscribe to every Ping; runs until stdin closes."""
    if os.environ.get("BENCH_SYNC_LOG"):
        logging.basicConfig(
            level=logging.DEBUG, format="%(relativeCreated)d %(threadName)s %(message)s"
        )
    app = App(AppConfiguration(APP_ID, base, base_file_path=appdir))
    user = app.current_user or app.log_in(Credentials.anonymous())  # the same user on a restart
    realm = Realm(Configuration.flexible_sync(user, [Ping], path=path))
    emit("opened", t=time.monotonic())
    with realm.subscriptions.update() as subs:
        subs.add(realm.all(Ping), name="all")
    realm.subscriptions.wait_for_synchronization(timeout=DEADLINE)
    emit("ready", role=realm.sync_session.role)
    sys.stdin.read()  # until the bench closes our stdin
    realm.close()


def role_writer(path: str, start: int, count: int) -> None:
    """Secondary process: disconnected_sync; on "go", commit ``count`` objects one per transaction."""
    realm = Realm(Configuration.disconnected_sync([Ping], path=path))
    emit("ready")
    sys.stdin.readline()
    t0 = time.monotonic()
    payload = "x" * 64
    for i in range(start, start + count):
        with realm.write():
            realm.add(Ping(id=i, src="tp", payload=payload))
    emit("done", t0=t0, t1=time.monotonic())
    realm.close()


def role_burst(path: str, start: int, count: int) -> None:
    """Secondary process: on "go", commit ``count`` objects one per transaction; report each commit's return time."""
    realm = Realm(Configuration.disconnected_sync([Ping], path=path))
    emit("ready")
    sys.stdin.readline()
    times: list[float] = []
    for i in range(start, start + count):
        with realm.write():
            realm.add(Ping(id=i, src="burst"))
        times.append(time.monotonic())
    emit("done", first=start, times=times)
    realm.close()


# ----------------------------------------------------------------------------- driver


class Child:
    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen(
            [sys.executable, __file__, "--role", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def wait_event(self, name: str, timeout: float = DEADLINE) -> dict[str, Any]:
        assert self.p.stdout is not None
        result: list[dict[str, Any]] = []

        def read() -> None:
            assert self.p.stdout is not None
            for line in self.p.stdout:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if e.get("event") == name:
                    result.append(e)
                    return

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout)
        if not result:
            raise RuntimeError(
                f"child {self.p.args!r}: no {name!r} event (exit code {self.p.poll()})"
            )
        return result[0]

    def send(self, line: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.p.stdin is not None
            self.p.stdin.close()
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def _wait_until(realm: Realm, cond: Any, deadline: float) -> None:
    env = realm._env
    while True:
        seen = env.version
        if cond():
            return
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        env.wait_for_change(seen, 1.0)


@contextlib.contextmanager
def _server(store: str, tmp: Path) -> Iterator[str]:
    data = tmp / "server"
    data.mkdir()
    if store == "sqlite":
        with run_server(data, app_id=APP_ID) as (base, _):
            yield base
        return
    schema = f"bench_{secrets.token_hex(4)}"
    try:
        with run_server(data, app_id=APP_ID, database=pg_schema_url(schema)) as (base, _):
            yield base
    finally:
        drop_pg_schema(schema)


@contextlib.contextmanager
def _two_devices(store: str, tmp: Path) -> Iterator[tuple[str, list[Child]]]:
    """A server and the ready main processes of device A (``a.realm``) and B (``b.realm``);
    yields the server's URL and the list of children (add more: all are closed after)."""
    children: list[Child] = []
    with _server(store, tmp) as base:
        try:
            for dev in ("a", "b"):
                path = str(tmp / f"{dev}.realm")
                children.append(Child("main", path, str(tmp / f"app-{dev}"), base))
            for c in children:
                c.wait_event("ready")
            yield base, children
        finally:
            for c in children:
                c.close()


def run_store(store: str, samples: int, writers: int, commits: int, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"store": store}
    file_a, file_b = str(tmp / "a.realm"), str(tmp / "b.realm")
    with _two_devices(store, tmp) as (_base, children):
        sec_a = Realm(Configuration.disconnected_sync([Ping], path=file_a))
        obs_b = Realm(Configuration.disconnected_sync([Ping], path=file_b))

        # ---- latency: commit in a secondary of A → readable by a process of B
        lat: list[float] = []
        commit: list[float] = []
        for i in range(samples + 5):
            t0 = time.monotonic()
            with sec_a.write():
                sec_a.add(Ping(id=-1 - i, src="lat"))
            t1 = time.monotonic()
            _wait_until(obs_b, lambda i=i: obs_b.find(Ping, -1 - i) is not None, t1 + DEADLINE)
            t2 = time.monotonic()
            if i >= 5:
                commit.append(t1 - t0)
                lat.append(t2 - t1)
        out["latency_ms"] = {
            q: 1000 * _pct(lat, v) for q, v in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
        }
        out["latency_mean_ms"] = 1000 * statistics.fmean(lat)
        out["commit_ms_p50"] = 1000 * _pct(commit, 0.5)
        out["samples"] = samples

        # ---- throughput: W secondary processes commit as fast as they can
        ws = [Child("writer", file_a, str(w * commits), str(commits)) for w in range(writers)]
        children += ws
        for w in ws:
            w.wait_event("ready")
        t0 = time.monotonic()
        for w in ws:
            w.send("go")
        dones = [w.wait_event("done") for w in ws]
        t_written = max(d["t1"] for d in dones)
        with sec_a._env.read() as snap:
            target_cv = Meta(snap).cv()

        def acked() -> bool:
            with sec_a._env.read() as snap:
                return Meta(snap).acked() >= target_cv

        _wait_until(sec_a, acked, time.monotonic() + DEADLINE)
        t_acked = time.monotonic()
        total = writers * commits
        tname = table_name("Ping")

        def all_on_b() -> bool:
            with obs_b._env.read() as snap:
                return snap.count(tname) >= total + samples + 5

        _wait_until(obs_b, all_on_b, time.monotonic() + DEADLINE)
        t_b = time.monotonic()
        out["throughput"] = {
            "commits": total,
            "writers": writers,
            "local_per_s": total / (t_written - t0),
            "acked_per_s": total / (t_acked - t0),
            "on_b_per_s": total / (t_b - t0),
            "upload_lag_s": t_acked - t_written,
        }
        sec_a.close()
        obs_b.close()
    return out


def _size(path: str) -> int:
    return os.stat(path).st_size


def run_catchup(store: str, backlog: int, tmp: Path) -> dict[str, Any]:
    """10k offline commits in a secondary, then the main process starts: time to full acknowledgement."""
    file_a = str(tmp / "a.realm")
    out: dict[str, Any] = {"store": store, "backlog": backlog}
    with _server(store, tmp) as base:
        first = Child("main", file_a, str(tmp / "app-a"), base)
        try:
            first.wait_event("ready")
        finally:
            first.close()
        local = Realm(Configuration(schema=(Ping,), path=str(tmp / "local.realm")))
        sec = Realm(Configuration.disconnected_sync([Ping], path=file_a))
        payload = "x" * 64
        for i in range(backlog):
            with sec.write():
                sec.add(Ping(id=i, src="offline", payload=payload))
            with local.write():
                local.add(Ping(id=i, src="offline", payload=payload))
        local.close()
        out["size_local_mb"] = _size(str(tmp / "local.realm")) / 1e6
        out["size_offline_mb"] = _size(file_a) / 1e6
        with sec._env.read() as snap:
            target = Meta(snap).cv()
        t0 = time.monotonic()
        main = Child("main", file_a, str(tmp / "app-a"), base)
        try:
            opened = main.wait_event("opened")["t"]

            def acked() -> bool:
                with sec._env.read() as snap:
                    return Meta(snap).acked() >= target

            _wait_until(sec, acked, time.monotonic() + DEADLINE)
            t1 = time.monotonic()
            out["acked_after_start_s"] = t1 - t0
            out["acked_after_agent_s"] = t1 - opened
            out["size_uploaded_mb"] = _size(file_a) / 1e6
        finally:
            main.close()
        sec.close()
        out["size_closed_mb"] = _size(file_a) / 1e6
    return out


def run_burst(store: str, writers: int, burst: int, tmp: Path) -> dict[str, Any]:
    """``writers`` secondaries commit ``burst`` objects each at once: commit → seen on device B."""
    file_a, file_b = str(tmp / "a.realm"), str(tmp / "b.realm")
    out: dict[str, Any] = {"store": store, "writers": writers, "burst": burst}
    first_id = 1_000_000
    with _two_devices(store, tmp) as (_base, children):
        obs_b = Realm(Configuration.disconnected_sync([Ping], path=file_b))
        ws = [Child("burst", file_a, str(first_id + w * burst), str(burst)) for w in range(writers)]
        children += ws
        for w in ws:
            w.wait_event("ready")
        results: list[dict[str, Any]] = []
        threads = [
            threading.Thread(target=lambda w=w: results.append(w.wait_event("done"))) for w in ws
        ]
        for t in threads:
            t.start()
        for w in ws:
            w.send("go")
        seen: dict[int, float] = {}
        total = writers * burst
        tname = table_name("Ping")
        start_key = codec.encode_key(first_id)
        deadline = time.monotonic() + DEADLINE
        env = obs_b._env
        while len(seen) < total:
            v = env.version
            with env.read() as snap:
                if snap.count(tname) > len(seen):
                    now = time.monotonic()
                    for k, _ in snap.scan(tname, start_key):
                        pk = codec.decode_key(k)[0]
                        if pk not in seen:
                            seen[pk] = now
            if time.monotonic() > deadline:
                raise TimeoutError(f"burst: {len(seen)}/{total} arrived on B")
            if len(seen) < total:
                env.wait_for_change(v, 1.0)
        for t in threads:
            t.join()
        lat: list[float] = []
        for r in results:
            for i, tc in enumerate(r["times"]):
                lat.append(seen[int(r["first"]) + i] - tc)
        out["latency_ms"] = {
            q: 1000 * _pct(lat, v) for q, v in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
        }
        out["latency_max_ms"] = 1000 * max(lat)
        obs_b.close()
    return out


def run_standby(store: str, tmp: Path) -> dict[str, Any]:
    """How long closing a standby takes (it waits for the agent's lock meanwhile)."""
    file_a = str(tmp / "a.realm")
    out: dict[str, Any] = {"store": store}
    with _server(store, tmp) as base:
        main = Child("main", file_a, str(tmp / "app-a"), base)
        try:
            main.wait_event("ready")
            app = App(AppConfiguration(APP_ID, base, base_file_path=str(tmp / "app-a")))
            user = app.current_user
            assert user is not None
            times: list[float] = []
            for _ in range(5):
                realm = Realm(Configuration.flexible_sync(user, [Ping], path=file_a))
                assert realm.sync_session.role != "agent"
                t0 = time.monotonic()
                realm.close()
                times.append(time.monotonic() - t0)
            out["close_s"] = times
        finally:
            main.close()
    return out


def _standby_line(r: dict[str, Any]) -> str:
    return f"{r['store']} standby close: " + ", ".join(f"{t * 1000:.1f} ms" for t in r["close_s"])


def _catchup_line(r: dict[str, Any]) -> str:
    return (
        f"{r['store']} catch-up of {r['backlog']} offline commits: acknowledged "
        f"{r['acked_after_start_s']:.2f} s after the main process started "
        f"({r['acked_after_agent_s']:.2f} s after its Realm() returned); file "
        f"{r['size_offline_mb']:.1f} MB offline (plain local realm {r['size_local_mb']:.1f} MB), "
        f"{r['size_uploaded_mb']:.1f} MB after upload, {r['size_closed_mb']:.1f} MB after close"
    )


def _burst_line(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    return (
        f"{r['store']} burst of {r['writers']} writers x {r['burst']} commits, commit -> seen on B: "
        f"p50 {lat['p50']:.0f} ms, p90 {lat['p90']:.0f} ms, p99 {lat['p99']:.0f} ms, "
        f"max {r['latency_max_ms']:.0f} ms"
    )


def _table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| store | commit→visible on B p50 | p90 | p99 | mean | secondary commit p50 | writers x commits "
        "| local commits/s | acked by server /s | arrived on B /s | upload lag after last commit |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lat, tp = r["latency_ms"], r["throughput"]
        rows.append(
            f"| {r['store']} | {lat['p50']:.1f} ms | {lat['p90']:.1f} ms | {lat['p99']:.1f} ms "
            f"| {r['latency_mean_ms']:.1f} ms | {r['commit_ms_p50']:.2f} ms | {tp['writers']} x "
            f"{tp['commits'] // tp['writers']} | {tp['local_per_s']:.0f} | {tp['acked_per_s']:.0f} "
            f"| {tp['on_b_per_s']:.0f} | {tp['upload_lag_s'] * 1000:.0f} ms |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--role", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="few samples and commits (a smoke run)")
    ap.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument(
        "--samples", type=int, default=None, help="latency rounds (default 200, quick 30)"
    )
    ap.add_argument("--writers", type=int, default=2, help="secondary writer processes")
    ap.add_argument(
        "--commits", type=int, default=None, help="commits per writer (default 500, quick 100)"
    )
    ap.add_argument(
        "--scenario",
        choices=("latency", "catchup", "burst", "standby", "all"),
        default="latency",
    )
    ap.add_argument("--backlog", type=int, default=None, help="catchup: offline commits (10000)")
    ap.add_argument("--burst-writers", type=int, default=6, help="burst: secondary processes")
    ap.add_argument("--burst", type=int, default=None, help="burst: commits per writer (500)")
    ap.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    args = ap.parse_args()
    if args.role:
        role, *rest = args.role
        if role == "main":
            role_main(rest[0], rest[1], rest[2])
        elif role == "writer":
            role_writer(rest[0], int(rest[1]), int(rest[2]))
        elif role == "burst":
            role_burst(rest[0], int(rest[1]), int(rest[2]))
        else:
            raise SystemExit(f"unknown role {role}")
        return
    samples = args.samples or (30 if args.quick else 200)
    commits = args.commits or (100 if args.quick else 500)
    backlog = args.backlog or (2000 if args.quick else 10_000)
    burst = args.burst or (100 if args.quick else 500)
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    scenarios = (
        ["latency", "catchup", "burst", "standby"] if args.scenario == "all" else [args.scenario]
    )
    results: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_sync_") as d:
        print(format_description(describe(d)), flush=True)
        for store in stores:
            if store == "postgres":
                why = postgres_available()
                if why is not None:
                    print(
                        f"\npostgres: skipped ({why}); run `bash .ci/postgres.sh` or set REALMPY_TEST_PG_URL"
                    )
                    continue
            for scenario in scenarios:
                sub = Path(d) / f"{store}-{scenario}"
                sub.mkdir()
                if scenario == "latency":
                    print(
                        f"\n{store}: {samples} latency rounds, {args.writers} writers x {commits} commits ...",
                        flush=True,
                    )
                    results.append(run_store(store, samples, args.writers, commits, sub))
                elif scenario == "standby":
                    others.append(run_standby(store, sub))
                    print(_standby_line(others[-1]), flush=True)
                elif scenario == "catchup":
                    print(f"\n{store}: catch-up of {backlog} offline commits ...", flush=True)
                    others.append(run_catchup(store, backlog, sub))
                    print(_catchup_line(others[-1]), flush=True)
                else:
                    print(
                        f"\n{store}: burst of {args.burst_writers} writers x {burst} commits ...",
                        flush=True,
                    )
                    others.append(run_burst(store, args.burst_writers, burst, sub))
                    print(_burst_line(others[-1]), flush=True)
    load_after = os.getloadavg()
    print()
    if results:
        print(_table(results))
    for r in others:
        if "close_s" in r:
            print(_standby_line(r))
        else:
            print(_catchup_line(r) if "backlog" in r else _burst_line(r))
    print(
        f"\nload average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
        f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    if args.json:
        print(json.dumps(results + others, indent=2))


if __name__ == "__main__":
    main()
