"""File sizes and write/sync system calls per commit: realmpy vs py-lmdb vs sqlite3.

    python bench/storage_layout.py [--quick] [--json FILE]

(also run by ``bench/bench_storage.py --only size,syscalls``)

Method:
- size, objects: N small objects of bench_objects' ``Item`` (an indexed
  100-value field ``grp``, ascending primary keys) added through the object
  layer in one write, and again in writes of 10 objects; sqlite3 gets the
  same table and index (bench_objects' schema), in the same transactions.
  py-lmdb has no object layer: n/a.  Reported: the file's size, and for
  realmpy also the pages in use (the file is grown in zero-filled chunks
  ahead of them).  sqlite3's WAL is checkpointed and truncated first.
- size, values: 20,000 random values of 1,000 bytes under random 16-byte
  keys, in random order, one transaction, raw storage API
  (``Environment``, py-lmdb's unnamed database, sqlite3
  ``kv(k BLOB PRIMARY KEY, v BLOB)``: a rowid table, whose rows keep 1 KB
  inline, and the key's index; WITHOUT ROWID would move each value to an
  overflow page); reported as the file size over the payload (20 MB).
- syscalls: at 10k and 100k keys (``--syscall-keys`` for others, e.g.
  1000000), a child process under ``strace -f`` loads N keys, makes 200
  single-put commits (so the free list holds freed pages), then K more
  between two marker writes to stderr; the write and sync calls between
  the markers (``pwrite64``, ``pwritev``, ``pwritev2``, ``write``,
  ``fdatasync``, ``fsync``), divided by K, are the counts per commit.
  Skipped when strace is not installed (or ptrace is not allowed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # sibling modules; bench/ is not a package

try:
    import lmdb
except ImportError:  # the bench extra installs it
    lmdb = None  # type: ignore[assignment]

MAP_SIZE = 1 << 30
SYSCALLS = ("pwrite64", "pwritev", "pwritev2", "write", "fdatasync", "fsync")
MARK_START, MARK_END = b"@@layout-start\n", b"@@layout-end\n"
PAGE = 4096


def _sqlite(path: Path, durable: bool = True) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
    return con


def _sqlite_size(con: sqlite3.Connection, path: Path) -> int:
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return path.stat().st_size


# --------------------------------------------------------------------------
# sizes


def size_objects(work: Path, n: int, per_txn: int) -> dict[str, Any]:
    from bench_objects import SQL_CREATE, SQL_INSERT, Item, make_rows, realm_config

    from realmpy import Realm

    rows = make_rows(n, 20240601)
    realm = Realm(realm_config(work / f"objects-{per_txn}.realm", durability="none"))
    try:
        for i in range(0, n, per_txn):
            with realm.write():
                realm.add_all(
                    [
                        Item(id=a, name=b, grp=c, age=d, score=e)
                        for a, b, c, d, e in rows[i : i + per_txn]
                    ]
                )
        in_use = realm._env.stats().pages_used * PAGE  # the engine underneath
    finally:
        realm.close()
    rp = (work / f"objects-{per_txn}.realm").stat().st_size
    path = work / f"objects-{per_txn}.sqlite"
    con = _sqlite(path, durable=False)
    for stmt in SQL_CREATE:
        con.execute(stmt)
    for i in range(0, n, per_txn):
        con.execute("BEGIN")
        con.executemany(SQL_INSERT, rows[i : i + per_txn])
        con.execute("COMMIT")
    sq = _sqlite_size(con, path)
    return {"realmpy": rp, "realmpy_in_use": in_use, "lmdb": None, "sqlite": sq, "payload": None}


def size_values(work: Path, n: int, vlen: int) -> dict[str, Any]:
    from realmpy.storage import Environment

    rng = random.Random(20240601)
    pairs = [(rng.randbytes(16), rng.randbytes(vlen)) for _ in range(n)]  # random order
    env = Environment(str(work / "values.realm"), durability="none", max_size=MAP_SIZE)
    with env.write() as txn:
        txn.put_many("kv", pairs)
    in_use = env.stats().pages_used * PAGE
    env.close()
    out: dict[str, Any] = {
        "realmpy": (work / "values.realm").stat().st_size,
        "realmpy_in_use": in_use,
        "payload": n * vlen,
        "lmdb": None,
    }
    if lmdb is not None:
        lenv = lmdb.open(str(work / "values.lmdb"), map_size=MAP_SIZE, sync=False)
        with lenv.begin(write=True) as ltxn:
            for k, v in pairs:
                ltxn.put(k, v)
        lenv.close()
        out["lmdb"] = (work / "values.lmdb" / "data.mdb").stat().st_size
    path = work / "values.sqlite"
    con = _sqlite(path, durable=False)
    con.execute("CREATE TABLE kv(k BLOB PRIMARY KEY, v BLOB)")  # rows inline, key index
    con.execute("BEGIN")
    con.executemany("INSERT INTO kv VALUES (?, ?)", pairs)
    con.execute("COMMIT")
    out["sqlite"] = _sqlite_size(con, path)
    return out


# --------------------------------------------------------------------------
# system calls per commit (a child process under strace)


def _child(engine: str, durable: bool, path: str, n: int, k: int) -> None:
    """Load n keys, churn, then k single-put commits between the markers."""
    rng = random.Random(1)
    pairs = [(rng.randbytes(16), rng.randbytes(100)) for _ in range(n)]

    def key() -> bytes:
        return pairs[rng.randrange(n)][0]

    if engine == "realmpy":
        from realmpy.storage import Environment

        env = Environment(path, durability="full" if durable else "none", max_size=MAP_SIZE)
        with env.write() as txn:
            txn.put_many("kv", sorted(pairs))

        def commit() -> None:
            with env.write() as txn:
                txn.put("kv", key(), rng.randbytes(100))

    elif engine == "lmdb":
        lenv = lmdb.open(path, map_size=MAP_SIZE, sync=durable)
        with lenv.begin(write=True) as ltxn:
            for kk, v in sorted(pairs):
                ltxn.put(kk, v, append=True)

        def commit() -> None:
            with lenv.begin(write=True) as ltxn:
                ltxn.put(key(), rng.randbytes(100))

    else:
        con = _sqlite(Path(path), durable)
        con.execute("CREATE TABLE kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
        con.execute("BEGIN")
        con.executemany("INSERT INTO kv VALUES (?, ?)", pairs)
        con.execute("COMMIT")

        def commit() -> None:
            con.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key(), rng.randbytes(100)))

    for _ in range(200):
        commit()
    os.write(2, MARK_START)
    for _ in range(k):
        commit()
    os.write(2, MARK_END)


def strace_available() -> bool:
    if shutil.which("strace") is None:
        return False
    try:
        r = subprocess.run(["strace", "-o", "/dev/null", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def syscalls_per_commit(work: Path, engine: str, durable: bool, n: int, k: int) -> dict[str, float]:
    """Write/sync calls per commit, by system call name."""
    trace = work / f"trace-{engine}-{durable}-{n}"
    target = work / f"db-{engine}-{durable}-{n}"
    if engine == "lmdb":
        target.mkdir()
    cmd = [
        "strace", "-f", "-e", "trace=" + ",".join(SYSCALLS), "-o", str(trace),
        sys.executable, __file__, "--child", engine, "1" if durable else "0", str(target), str(n), str(k),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    counts: Counter[str] = Counter()
    inside = False
    for line in trace.read_text(errors="replace").splitlines():
        if "@@layout-" in line:
            inside = "@@layout-start" in line
            continue
        if not inside:
            continue
        call = line.split(None, 1)[-1].split("(", 1)[0].strip()
        if call in SYSCALLS:
            counts[call] += 1
    return {c: counts[c] / k for c in SYSCALLS if counts[c]}


# --------------------------------------------------------------------------
# the report


def _mb(x: int | None) -> str:
    return "n/a" if x is None else f"{x / 1e6:.2f} MB"


def _calls(c: dict[str, float] | None) -> str:
    if c is None:
        return "n/a"
    writes = sum(v for k, v in c.items() if k not in ("fdatasync", "fsync"))
    syncs = c.get("fdatasync", 0) + c.get("fsync", 0)
    detail = ", ".join(f"{k} {v:.2f}" for k, v in sorted(c.items()))
    return f"{writes:.2f} writes, {syncs:.2f} syncs ({detail})"


def run(
    work: Path, quick: bool, which: set[str], syscall_keys: tuple[int, ...] | None = None
) -> dict[str, Any]:
    n_obj, k = (10_000, 50) if quick else (100_000, 500)
    if syscall_keys is None:
        syscall_keys = (10_000,) if quick else (10_000, 100_000)
    out: dict[str, Any] = {}
    if "size" in which:
        print(f"{'file size':<44} {'realmpy':>22} {'py-lmdb':>10} {'sqlite3':>10} {'rp/sqlite':>9}")
        for per_txn in (n_obj, 10):
            r = size_objects(work, n_obj, per_txn)
            out[f"size_objects_{per_txn}"] = r
            title = f"{n_obj // 1000}k small objects, {'one write' if per_txn == n_obj else f'writes of {per_txn}'}"
            rp = f"{_mb(r['realmpy'])} ({r['realmpy_in_use'] / 1e6:.2f} used)"
            print(
                f"{title:<44} {rp:>22} {'n/a':>10} {_mb(r['sqlite']):>10} {r['realmpy'] / r['sqlite']:>8.2f}x"
            )
        r = size_values(work, 20_000, 1000)
        out["size_values"] = r
        rel = {
            e: (None if r[e] is None else r[e] / r["payload"])
            for e in ("realmpy", "lmdb", "sqlite")
        }
        cells = {e: "n/a" if v is None else f"{v:.2f}x" for e, v in rel.items()}
        rp = f"{cells['realmpy']} ({r['realmpy_in_use'] / r['payload']:.2f}x used)"
        print(
            f"{'20k values of 1000 B, size / payload':<44} {rp:>22} {cells['lmdb']:>10} {cells['sqlite']:>10}"
        )
    if "syscalls" in which:
        print()
        if not strace_available():
            print("write/sync calls per commit: strace not available, skipped")
            return out
        engines = ["realmpy", "sqlite"]
        if lmdb is not None:
            engines.insert(1, "lmdb")
        for n_keys in syscall_keys:
            print(f"write/sync calls per single-put commit ({n_keys // 1000}k keys loaded, strace)")
            for durable in (True, False):
                mode = "durable" if durable else "nosync"
                for engine in engines:
                    c = syscalls_per_commit(work, engine, durable, n_keys, k)
                    out[f"syscalls_{n_keys // 1000}k_{engine}_{mode}"] = c
                    print(
                        f"  {'durable' if durable else 'not durable':<12} {engine:<8} {_calls(c)}"
                    )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10k objects/keys, 50 commits")
    ap.add_argument("--only", default="size,syscalls", help="size, syscalls or both")
    ap.add_argument("--json", help="write the numbers to this file")
    ap.add_argument(
        "--syscall-keys",
        help="comma-separated key counts to count system calls at (default 10000,100000; quick 10000)",
    )
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        engine, durable, path, n, k = args.child
        _child(engine, durable == "1", path, int(n), int(k))
        return 0
    base = Path(tempfile.mkdtemp(prefix="realmpy-layout-"))
    try:
        print(machine.format_description(machine.describe(base)))
        print()
        keys = tuple(int(x) for x in args.syscall_keys.split(",")) if args.syscall_keys else None
        out = run(base, args.quick, set(args.only.split(",")), keys)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"\nload average after: {machine.load_average()}.")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
