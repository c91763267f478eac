"""Sync server scale-out (issue 18): N devices over 1-3 server processes on one PostgreSQL.

Starts ``--processes`` ``realmpy-server`` processes on one fresh PostgreSQL
schema, then measures:

- uploads/s: ``--devices`` devices (threads spread over ``--workers`` client
  processes, each device on server ``i % processes``) upload ``--batch``
  changesets of one new object each, back to back, for ``--seconds``;
- commit→other-device latency meanwhile: device A uploads one object, device
  B (subscribed to that object only, long-polling another server process)
  sees it; p50/p99 over the run;
- parked-poll fan-out: ``--polls`` devices (files of one user), each with a
  long-poll parked on server 0 and subscribed to ``Other: id > 0``; a commit
  to another table (it concerns none), one to an Other object with id -1 (its
  table, but none's query), then one to Other id 1 (it concerns all): the
  server's CPU time (``/proc/<pid>/stat``), how many polls answered (before
  their own deadline) within 2 s / 2 s / 10 s, and when the last did.

With ``--reconnect N``, instead: N realmpy sync devices (real clients, with
their backoff) connected to one server process; the process is SIGKILLed,
each device commits one object during the ``--outage`` seconds, the server
is restarted on the same port and database; reported: for each device, the
time from the server answering ``/health`` again to its object being
acknowledged (its upload loop reconnected), p50 and max.

    python bench/bench_server_scale.py --processes 1 --devices 12 --batch 1
    python bench/bench_server_scale.py --reconnect 30 --outage 2
    python bench/bench_server.py --scale ...   (the same)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import multiprocessing
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_server import CAR, Client, P, pct

from realmpy.schema import Object, field
from realmpy.server.testing import (
    drop_pg_schema,
    free_port,
    pg_schema_url,
    postgres_available,
    run_server,
)
from realmpy.wire.protocol import pack, unpack

OTHER = {"primary_key": "id", "fields": {"id": {"type": "int"}}}


def _device(base: str, index: int, batch: int, stop_at: float, out: Any) -> None:
    c = Client(base)
    f = c.setup()
    # http.client, not httpx: a load generator on the same 2 cores must cost little per request
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"content-type": "application/msgpack", "authorization": f"Bearer {c.tok}"}
    ts = int(time.time() * 1000)
    cv, done = 0, 0
    pk = (index + 1) * 10_000_000
    while time.time() < stop_at:
        changesets = [
            {
                "client_version": cv + k + 1,
                "base_server_version": 0,
                "timestamp": ts,
                "ops": [[0, "Car", pk + cv + k], [2, "Car", pk + cv + k, "make", "VW"]],
            }
            for k in range(batch)
        ]
        body = {"file_ident": f["file_ident"], "salt": f["salt"], "changesets": changesets}
        conn.request("POST", P + "/sync/upload", pack(body), headers)
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(unpack(data))
        cv += batch
        done += batch
    out.put(done)


def _worker(bases: list[str], indices: list[int], batch: int, stop_at: float, out: Any) -> None:
    threads = [
        threading.Thread(target=_device, args=(bases[i % len(bases)], i, batch, stop_at, out))
        for i in indices
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _latency(bases: list[str], stop: threading.Event, lat: list[float]) -> None:
    """Device A uploads one Car (a key nobody else writes) on server 0; device B, subscribed
    to it alone, long-polls the last server."""
    a, b = Client(bases[0]), Client(bases[-1])
    fa, fb = a.setup(), b.setup()
    key = 1
    b.post(
        "/sync/subscriptions",
        {
            "file_ident": fb["file_ident"],
            "salt": fb["salt"],
            "query_version": 1,
            "queries": {"Car": [["id < 0", []]]},
        },
    )
    after = 0
    body = {"file_ident": fb["file_ident"], "salt": fb["salt"], "max_bytes": 1 << 20}
    while True:  # bootstrap
        r = b.post("/sync/download", body | {"after_server_version": after, "wait_ms": 0})
        after = r["server_version"]
        if r["batch"] == "steady":
            break
    cv = 0
    while not stop.is_set():
        key += 1
        cv += 1
        t0 = time.perf_counter()
        a.post(
            "/sync/upload",
            {
                "file_ident": fa["file_ident"],
                "salt": fa["salt"],
                "changesets": [
                    {
                        "client_version": cv,
                        "base_server_version": 0,
                        "timestamp": int(time.time() * 1000),
                        "ops": [[0, "Car", -key]],
                    }
                ],
            },
        )
        while True:
            r = b.post("/sync/download", body | {"after_server_version": after, "wait_ms": 30_000})
            after = r["server_version"]
            if r["entries"]:  # only A's objects match B's subscription
                break
        lat.append(time.perf_counter() - t0)


def _health(base: str, stop: threading.Event, out: list[float]) -> None:
    """``GET /health`` every 20 ms meanwhile: its latency under load."""
    with httpx.Client(base_url=base, timeout=60) as c:
        while not stop.wait(0.02):
            t0 = time.perf_counter()
            c.get("/health")
            out.append(time.perf_counter() - t0)


def uploads(
    bases: list[str], pids: list[int], args: argparse.Namespace
) -> tuple[float, float, list[float], list[float]]:
    """(changesets/s, server CPU seconds while uploading, commit→other-device latencies,
    /health latencies)."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 3.0  # devices log in and ident first
    stop_at = start_at + args.seconds
    groups = [list(range(w, args.devices, args.workers)) for w in range(args.workers)]
    procs = [
        ctx.Process(target=_worker, args=(bases, g, args.batch, stop_at, out)) for g in groups if g
    ]
    for p in procs:
        p.start()
    time.sleep(max(0.0, start_at - time.time()))
    cpu0 = sum(map(_cpu, pids))
    spy = None
    if args.profile:
        spy = subprocess.Popen(
            [
                *(
                    "py-spy",
                    "record",
                    "--nonblocking",
                    "-r",
                    "250",
                    "-p",
                    str(pids[0]),
                    "-d",
                    str(int(args.seconds)),
                ),
                *("-f", "raw", "-o", args.profile, "--threads", "--gil"),
            ],
            stdout=subprocess.DEVNULL,
        )
    lat: list[float] = []
    stop = threading.Event()
    health: list[float] = []
    probers = [
        threading.Thread(target=_latency, args=(bases, stop, lat)),
        threading.Thread(target=_health, args=(bases[0], stop, health)),
    ]
    for t in probers:
        t.start()
    time.sleep(max(0.0, stop_at - time.time()))
    cpu = sum(map(_cpu, pids)) - cpu0
    total = sum(out.get() for _ in range(args.devices))
    if spy is not None:
        spy.wait()
    stop.set()
    for t in probers:
        t.join()
    for p in procs:
        p.join()
    # devices started uploading at start_at at the latest (after setup)
    return total / (stop_at - start_at), cpu / max(total, 1), lat, health


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Phase = tuple[float, int, float]


async def _settled(pid: int) -> None:
    """Until the server used under 20 ms of CPU in half a second (at most 60 s)."""
    for _ in range(120):
        before = _cpu(pid)
        await asyncio.sleep(0.5)
        if _cpu(pid) - before < 0.02:
            return


async def _raw_post(host: str, port: int, path: str, body: bytes, token: str) -> Any:
    """One HTTP/1.1 POST on its own connection, answered with a Content-Length body: the
    load generator shares the server's 2 cores, and httpx's pool spent ~5 ms of CPU per
    answer with a thousand connections open."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/msgpack\r\n"
            f"authorization: Bearer {token}\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        headers = (await reader.readuntil(b"\r\n\r\n")).decode().lower().split("\r\n")
        length = next(int(h.split(":")[1]) for h in headers if h.startswith("content-length:"))
        return unpack(await reader.readexactly(length))
    finally:
        writer.close()


async def _fan_out(base: str, polls: int, pid: int) -> list[Phase]:
    """``polls`` devices (files of one user), each subscribed to ``Other: id > 0``, each with
    a long-poll parked; for a commit to a table none subscribes to, one to an object of their
    table that no query matches, then one every poll's query matches: (server CPU s until
    the window closed (2 s; 2 s; 10 s) or all answered, polls answered, seconds until the
    last answered)."""
    c = Client(base)
    c.setup()
    c.post("/sync/schema", {"tables": {"Car": CAR, "Other": OTHER}})
    files: list[dict[str, Any]] = []
    for _ in range(polls):
        f = c.post("/sync/ident", {"nonce": secrets.token_hex(8)})
        c.post(
            "/sync/subscriptions",
            {
                "file_ident": f["file_ident"],
                "salt": f["salt"],
                "query_version": 1,
                "queries": {"Other": [["id > 0", []]]},
            },
        )
        files.append(f)
    host, port = base.removeprefix("http://").split(":")
    cv = 0

    w = Client(base)  # commits come from another device (the polls' own would concern them)
    fw = w.setup()

    def commit(table: str, key: int) -> None:
        nonlocal cv
        cv += 1
        cs = {
            "client_version": cv,
            "base_server_version": 0,
            "timestamp": int(time.time() * 1000),
            "ops": [[0, table, key]],
        }
        w.post(
            "/sync/upload",
            {"file_ident": fw["file_ident"], "salt": fw["salt"], "changesets": [cs]},
        )

    def caught_up() -> list[int]:
        """Each file's cursor at the newest version (bootstrapped, then steady)."""
        out = []
        for f in files:
            body = {"file_ident": f["file_ident"], "salt": f["salt"], "max_bytes": 1 << 20}
            after = 0
            while True:
                r = c.post("/sync/download", body | {"after_server_version": after, "wait_ms": 0})
                after = r["server_version"]
                if r["batch"] == "steady":
                    break
            out.append(after)
        return out

    async def phase(table: str, key: int, window: float) -> tuple[float, int, float]:
        cursors = await asyncio.to_thread(caught_up)
        # Polls that outlive the window answer at their deadline (not counted as answered):
        # none is left for the next phase.
        wait_ms = int((window + 5) * 1000)
        answered: list[float] = []
        errors: list[str] = []

        async def one(f: dict[str, Any], after: int) -> None:
            body = {
                "file_ident": f["file_ident"],
                "salt": f["salt"],
                "max_bytes": 1 << 20,
                "after_server_version": after,
                "wait_ms": wait_ms,
            }
            sent = time.perf_counter()
            got = await _raw_post(host, int(port), P + "/sync/download", pack(body), c.tok)
            if "error" in got:
                errors.append(got["error"])
            now = time.perf_counter()
            if now - sent < wait_ms / 1000 - 0.05:  # not an answer at its deadline
                answered.append(now)

        tasks = [asyncio.create_task(one(f, a)) for f, a in zip(files, cursors)]
        await _settled(pid)  # every poll parked: the server went idle
        cpu0, t0, own0 = _cpu(pid), time.perf_counter(), time.process_time()
        await asyncio.to_thread(commit, table, key)
        end = t0 + window
        while len(answered) < polls and time.perf_counter() < end:
            await asyncio.sleep(0.01)
        cpu = _cpu(pid) - cpu0
        print(f"  (load generator CPU meanwhile: {time.process_time() - own0:.2f} s)")
        if errors:
            print(f"  ({len(errors)} answered with an error, first: {errors[0]})")
        last = max(answered) - t0 if answered else float("nan")
        quick = len(answered)
        await asyncio.gather(*tasks, return_exceptions=True)
        return cpu, quick, last

    return [
        await phase("Car", 1, 2.0),
        await phase("Other", -1, 2.0),
        await phase("Other", 1, 10.0),
    ]


class Item(Object):
    id: int = field(primary_key=True)
    device: int = 0


def reconnect(url: str, devices: int, outage: float) -> list[float]:
    """Seconds from the restarted server's first healthy answer to each device's upload
    acknowledged (module docstring)."""
    from realmpy import App, AppConfiguration, Configuration, Credentials, Realm

    with tempfile.TemporaryDirectory() as d, contextlib.ExitStack() as stack:
        port = free_port()
        (Path(d) / "server").mkdir()
        base, proc = stack.enter_context(run_server(Path(d) / "server", database=url, port=port))
        realms: list[Any] = []
        for i in range(devices):
            app = App(AppConfiguration("default", base, base_file_path=Path(d) / f"app{i}"))
            user = app.log_in(Credentials.anonymous())
            realm = Realm(Configuration.flexible_sync(user, [Item], path=Path(d) / f"{i}.realm"))
            stack.callback(realm.close)
            with realm.subscriptions.update() as subs:
                subs.add(realm.query(Item, "device == $0", i), name="mine")
            realm.subscriptions.wait_for_synchronization(timeout=120)
            realms.append(realm)
        proc.kill()  # SIGKILL: no graceful shutdown, connections reset
        proc.wait()
        for i, realm in enumerate(realms):
            with realm.write():
                realm.add(Item(id=i, device=i))
        time.sleep(outage)  # the outage: devices retry meanwhile, backing off
        acked: list[float] = [float("nan")] * devices

        def wait(i: int) -> None:
            realms[i].sync_session.wait_for_upload(timeout=120)
            acked[i] = time.perf_counter()

        threads = [threading.Thread(target=wait, args=(i,)) for i in range(devices)]
        with run_server(Path(d) / "server", database=url, port=port):
            healthy = time.perf_counter()  # run_server returns once /health answered (50 ms polls)
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return sorted(a - healthy for a in acked)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--devices", type=int, default=12)
    ap.add_argument("--workers", type=int, default=4, help="client processes")
    ap.add_argument("--batch", type=int, default=1, help="changesets per upload")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--polls", type=int, default=1000, help="parked polls (0: skip)")
    ap.add_argument("--reconnect", type=int, default=0, help="devices (item 6; see above)")
    ap.add_argument("--outage", type=float, default=2.0, help="seconds the server stays down")
    ap.add_argument(
        "--profile",
        help="py-spy the first server process while uploading: raw stacks of the thread holding "
        "the GIL (where its CPU goes) to this file",
    )
    args = ap.parse_args(argv)
    reason = postgres_available()
    if reason:
        sys.exit(f"needs PostgreSQL: {reason}")
    schema = f"s_{secrets.token_hex(6)}"
    url = pg_schema_url(schema)
    if args.reconnect:
        try:
            t = reconnect(url, args.reconnect, args.outage)
        finally:
            drop_pg_schema(schema)
        print(
            f"{args.reconnect} devices, server SIGKILLed and restarted after {args.outage:g} s: "
            f"healthy -> device reconnected (upload acknowledged) p50 "
            f"{statistics.median(t):.2f} s, max {max(t):.2f} s; "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        return
    try:
        with tempfile.TemporaryDirectory() as d, contextlib.ExitStack() as stack:
            servers = []
            for i in range(args.processes):
                (Path(d) / str(i)).mkdir()
                servers.append(stack.enter_context(run_server(Path(d) / str(i), database=url)))
            bases = [b for b, _ in servers]
            Client(bases[0]).setup()  # the schema, once
            pids = [p.pid for _, p in servers]
            rate, cpu, lat, health = uploads(bases, pids, args)
            print(
                f"{args.processes} process(es), {args.devices} devices x {args.batch} changeset(s)"
                f"/upload: {rate:.0f} changesets/s; commit->other device p50 "
                f"{statistics.median(lat) * 1000:.1f} ms p99 {pct(lat, 99) * 1000:.1f} ms "
                f"({len(lat)} samples); /health p99 {pct(health, 99) * 1000:.1f} ms; "
                f"server CPU {cpu * 1000:.2f} ms per changeset, busy {rate * cpu:.2f} cores; "
                f"load average {os.getloadavg()[0]:.1f}"
            )
            if args.polls:
                phases = asyncio.run(_fan_out(bases[0], args.polls, servers[0][1].pid))
                whats = ("concerns none", "matches no poll's query", "concerns all")
                for what, (cpu, quick, last) in zip(whats, phases):
                    print(
                        f"{args.polls} parked polls, a commit that {what}: server CPU "
                        f"{cpu * 1000:.0f} ms, {quick} answered (last after {last:.2f} s)"
                    )
    finally:
        drop_pg_schema(schema)


if __name__ == "__main__":
    main()
