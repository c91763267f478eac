"""One-put commits on a loaded table: does the cost stay flat as the file grows?

    python bench/commit_scale.py [--keys 1000000,5000000] [--commits 5000]

Method: per engine and key count, a fresh database is loaded with N random
16-byte keys and 100-byte values (batches of 200,000, sorted, not durable),
reopened, then 200 one-put commits of random existing keys warm it up and K
more are timed; reported: the p50 commit latency and the CPU time (user +
system) per commit, for durable commits (realmpy durability "full", sqlite3
WAL synchronous=FULL, py-lmdb sync=True) and non-durable ones ("none", OFF,
sync=False).  sqlite3's table is ``kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT
ROWID`` (bench_storage.py's).  All engines run in this one process, one
after the other, on the same keys.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # sibling modules; bench/ is not a package

try:
    import lmdb
except ImportError:  # the bench extra installs it
    lmdb = None  # type: ignore[assignment]

BATCH = 200_000
WARMUP = 200
MAP_SIZE = 16 << 30
Pairs = list[tuple[bytes, bytes]]


def _time(
    commit: Callable[[bytes, bytes], None], pairs: Pairs, k: int, seed: int
) -> tuple[float, float]:
    """p50 latency and CPU per commit (µs) of k one-put commits after a warm-up."""
    rng = random.Random(seed)
    lat: list[int] = []
    cpu0 = 0.0
    for i in range(WARMUP + k):
        if i == WARMUP:
            cpu0 = time.process_time()
        key, value = pairs[rng.randrange(len(pairs))][0], rng.randbytes(100)
        t0 = time.perf_counter_ns()
        commit(key, value)
        if i >= WARMUP:
            lat.append(time.perf_counter_ns() - t0)
    return statistics.median(lat) / 1000, (time.process_time() - cpu0) / k * 1e6


def realmpy_rows(path: Path, pairs: Pairs, k: int) -> dict[str, tuple[float, float]]:
    from realmpy.storage import Environment

    env = Environment(str(path), durability="none", max_size=MAP_SIZE)
    for i in range(0, len(pairs), BATCH):
        with env.write() as txn:
            txn.put_many("kv", sorted(pairs[i : i + BATCH]))
    env.close()
    out = {}
    for durable in (True, False):
        env = Environment(str(path), durability="full" if durable else "none", max_size=MAP_SIZE)

        def commit(key: bytes, value: bytes, env: Environment = env) -> None:
            with env.write() as txn:
                txn.put("kv", key, value)

        out["durable" if durable else "nosync"] = _time(commit, pairs, k, 1)
        env.close()
    return out


def sqlite_rows(path: Path, pairs: Pairs, k: int) -> dict[str, tuple[float, float]]:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("CREATE TABLE kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
    for i in range(0, len(pairs), BATCH):
        con.execute("BEGIN")
        con.executemany("INSERT INTO kv VALUES (?, ?)", sorted(pairs[i : i + BATCH]))
        con.execute("COMMIT")
    out = {}
    for durable in (True, False):
        con.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")

        def commit(key: bytes, value: bytes) -> None:
            con.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))

        out["durable" if durable else "nosync"] = _time(commit, pairs, k, 1)
    con.close()
    return out


def lmdb_rows(path: Path, pairs: Pairs, k: int) -> dict[str, tuple[float, float]]:
    path.mkdir()
    out = {}
    lenv = lmdb.open(str(path), map_size=MAP_SIZE, sync=False)
    for i in range(0, len(pairs), BATCH):
        with lenv.begin(write=True) as txn:
            for key, value in sorted(pairs[i : i + BATCH]):
                txn.put(key, value)
    lenv.close()
    for durable in (True, False):
        lenv = lmdb.open(str(path), map_size=MAP_SIZE, sync=durable)

        def commit(key: bytes, value: bytes, lenv: lmdb.Environment = lenv) -> None:
            with lenv.begin(write=True) as txn:
                txn.put(key, value)

        out["durable" if durable else "nosync"] = _time(commit, pairs, k, 1)
        lenv.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", default="1000000", help="comma-separated key counts")
    ap.add_argument("--commits", type=int, default=5000, help="timed commits per row")
    ap.add_argument("--dir", help="where to create databases (default: a temporary directory)")
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="realmpy-commit-scale-", dir=args.dir))
    print(machine.format_description(machine.describe(base)))
    engines: dict[str, Callable[[Path, Pairs, int], dict[str, tuple[float, float]]]] = {
        "realmpy": realmpy_rows,
        "sqlite3": sqlite_rows,
    }
    if lmdb is not None:
        engines["py-lmdb"] = lmdb_rows
    try:
        for n in (int(x) for x in args.keys.split(",")):
            rng = random.Random(n)
            pairs = [(rng.randbytes(16), rng.randbytes(100)) for _ in range(n)]
            rows = {}
            for name, fn in engines.items():
                rows[name] = fn(base / f"{name}-{n}", pairs, args.commits)
                shutil.rmtree(base / f"{name}-{n}", ignore_errors=True)
                for side in ("", "-wal", "-shm", ".lock"):
                    Path(f"{base / f'{name}-{n}'}{side}").unlink(missing_ok=True)
            print(f"\none-put commit on {n:,} keys: p50 µs (CPU µs per commit)")
            for mode in ("durable", "nosync"):
                cells = "  ".join(
                    f"{e} {r[mode][0]:7.1f} ({r[mode][1]:6.1f})" for e, r in rows.items()
                )
                ratio = rows["realmpy"][mode][0] / rows["sqlite3"][mode][0]
                print(f"  {mode:<8} {cells}  realmpy/sqlite3 {ratio:.2f}x")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"\nload average after: {machine.load_average()}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
