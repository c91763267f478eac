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

    python bench/bench_sync.py [--quick] [--store sqlite|postgres|both]
        [--samples 200] [--writers 2] [--commits 500]
"""

from __future__ import annotations

import argparse
import contextlib
import json
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

from realmpy import App, AppConfiguration, Configuration, Credentials, Realm
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
    app = App(AppConfiguration(APP_ID, base, base_file_path=appdir))
    realm = Realm(
        Configuration.flexible_sync(app.log_in(Credentials.anonymous()), [Ping], path=path)
    )
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


def run_store(store: str, samples: int, writers: int, commits: int, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"store": store}
    file_a, file_b = str(tmp / "a.realm"), str(tmp / "b.realm")
    children: list[Child] = []
    with _server(store, tmp) as base:
        try:
            main_a = Child("main", file_a, str(tmp / "app-a"), base)
            main_b = Child("main", file_b, str(tmp / "app-b"), base)
            children += [main_a, main_b]
            for c in (main_a, main_b):
                c.wait_event("ready")
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
        finally:
            for c in children:
                c.close()
    return out


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
    ap.add_argument("--json", action="store_true", help="also print the raw results as JSON")
    args = ap.parse_args()
    if args.role:
        role, *rest = args.role
        if role == "main":
            role_main(rest[0], rest[1], rest[2])
        elif role == "writer":
            role_writer(rest[0], int(rest[1]), int(rest[2]))
        else:
            raise SystemExit(f"unknown role {role}")
        return
    samples = args.samples or (30 if args.quick else 200)
    commits = args.commits or (100 if args.quick else 500)
    stores = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    results: list[dict[str, Any]] = []
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
            sub = Path(d) / store
            sub.mkdir()
            print(
                f"\n{store}: {samples} latency rounds, {args.writers} writers x {commits} commits ...",
                flush=True,
            )
            results.append(run_store(store, samples, args.writers, commits, sub))
    load_after = os.getloadavg()
    print()
    print(_table(results))
    print(
        f"\nload average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
        f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
