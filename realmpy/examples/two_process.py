"""Two processes, one database file: a writer commits, a reader wakes up.

Run it with ``python -m realmpy.examples.two_process``.  The writer (this
process) commits small transactions; a second process blocks in
``Environment.wait_for_change`` on the shared version counter (a futex: no
CPU while waiting), wakes when a commit is durable, opens a snapshot and
reads what was written.  For every round it prints the version, the value
the reader saw, and the wake-up latency: the time from the writer's
``commit()`` returning to the reader waking up.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from multiprocessing.connection import Connection

from realmpy.storage import Durability, Environment

TABLE = "messages"


def reader(path: str, rounds: int, conn: Connection) -> None:
    """The second process: wait for each commit, then read it."""
    with Environment(path) as env:
        since = env.version
        for _ in range(rounds):
            conn.send(("waiting", since))
            version = env.wait_for_change(since)
            woke = time.perf_counter_ns()
            with env.read() as snap:
                value = snap.get(TABLE, b"latest")
                count = snap.count(TABLE)
                seen = snap.version
            conn.send(("woke", version, woke, value, count, seen))
            since = version


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20, help="commits to make (default 20)")
    ap.add_argument("--path", help="database file (default: a temporary one)")
    ap.add_argument("--durability", choices=["full", "none"], default="full")
    args = ap.parse_args(argv)
    durability: Durability = "full" if args.durability == "full" else "none"

    with tempfile.TemporaryDirectory(prefix="realmpy-example-") as tmp:
        path = args.path or os.path.join(tmp, "two_process.db")
        ctx = mp.get_context("spawn")
        with Environment(path, durability=durability) as env:
            print(f"database {path} (durability={durability}), version {env.version}", flush=True)
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=reader, args=(path, args.rounds, child), daemon=True)
            proc.start()
            latencies = []
            for i in range(1, args.rounds + 1):
                kind, _ = parent.recv()  # the reader is about to wait
                assert kind == "waiting"
                with env.write() as txn:
                    txn.put(TABLE, b"latest", b"message %d" % i)
                    txn.put(TABLE, b"msg-%06d" % i, b"hello from pid %d" % os.getpid())
                committed = time.perf_counter_ns()
                kind, version, woke, value, count, snap_version = parent.recv()
                latency_us = (woke - committed) / 1000
                latencies.append(latency_us)
                print(
                    f"writer committed v{env.version}; reader (pid {proc.pid}) woke with "
                    f"v{version} after {latency_us:8.1f} us and read {value!r} "
                    f"({count} rows in snapshot v{snap_version})"
                )
            proc.join(10)
            lat = sorted(latencies)
            print(
                f"{len(lat)} wake-ups: median {statistics.median(lat):.1f} us, "
                f"min {lat[0]:.1f} us, max {lat[-1]:.1f} us "
                "(negative: the reader saw the commit before commit() returned)"
            )
            env.check()
            print(f"integrity check passed; final version {env.version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
