"""Storage engine benchmarks: realmpy vs py-lmdb vs sqlite3 (WAL), one run.

    python bench/bench_storage.py [--quick] [--only NAME[,NAME...]] [--json FILE]

Runs the operations of DESIGN.md section 6 on all three engines in the same
process run, so the ratios compare like with like on the same machine state.

Method (as in research/storage.md section 1):
- Data: N unique random 16-byte keys with 100-byte random values from a fixed
  seed, inserted in random order; point gets use another random order.
- Every timed region runs with the garbage collector disabled and measures
  only the operation named (setup, opening and loading happen outside it).
  Read loops (get, get_many, scan) make one untimed pass first: "warm" means
  the data is in the CPU caches, whichever engine ran before.
- Each measurement is repeated (5 reps by default, engines interleaved within
  a rep so that load drift on a shared machine hits all of them alike); the
  table shows the median of the reps, in microseconds per operation,
  including the Python loop.
- LMDB: map_size 1 GiB, the unnamed main database, default flags (two syncs
  per durable commit), ``sync=False`` (MDB_NOSYNC) where not durable.
- SQLite: journal_mode=WAL, ``kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID``,
  cache_size 64 MiB, synchronous=FULL for durable commits and NORMAL
  otherwise (WAL + NORMAL syncs only at checkpoints).
- realmpy: durability="full" for durable commits, "none" otherwise.
- Databases live in a temporary directory on the project's disk, never on
  tmpfs (where fdatasync is free); the output names the file system.
- Cross-process wake-up: a writer process commits durably with random
  0.5-2 ms gaps; a reader process waits by the method under test, then reads
  the committed counter in a fresh read transaction and takes
  t(noticed) = perf_counter_ns() (CLOCK_MONOTONIC, system-wide); latency is
  t(noticed) - t(writer's commit returned).
- "raw-cffi" rows make realmpy's get / put / snapshot engine calls through
  cffi with no wrapper, interleaved with the wrapper in the same reps: the
  difference is realmpy/storage.py's own overhead.
- "size" and "syscalls" (bench/storage_layout.py): file sizes against the
  payload and sqlite3, and write/sync system calls per commit under strace.
- "other load" = cores kept busy by other processes during a row (from
  /proc/stat minus this process tree's CPU time).
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import random
import select
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # sibling modules; bench/ is not a package
import storage_layout
from harness import Timer, Workdir, percentile

try:
    import lmdb
except ImportError:  # the bench extra installs it; run the other engines anyway
    lmdb = None  # type: ignore[assignment]

_REALMPY_MISSING = ""
try:
    from realmpy.storage import Environment
except Exception as exc:  # engine still being built: bench lmdb/sqlite alone
    Environment = None  # type: ignore[assignment,misc]
    _REALMPY_MISSING = f"{type(exc).__name__}: {exc}"

perf_counter_ns = time.perf_counter_ns
TABLE = "kv"
COUNTER = b"counter"
MAP_SIZE = 1 << 30
SQL_CREATE = "CREATE TABLE IF NOT EXISTS kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID"
SQL_PUT = "INSERT OR REPLACE INTO kv(k, v) VALUES (?, ?)"
SQL_GET = "SELECT v FROM kv WHERE k = ?"
SQL_SCAN = "SELECT k, v FROM kv ORDER BY k"
GET_MANY_BATCH = 1000
ENGINES = ("realmpy", "lmdb", "sqlite")


# --------------------------------------------------------------------------
# configuration and data


@dataclass(frozen=True)
class Config:
    n_keys: int = 100_000
    n_txns: int = 200_000  # read-txn begin+end pairs per rep
    n_commits: int = 10_000  # single-put commits per rep (fresh DB per rep)
    n_wakeups: int = 500  # cross-process commits per rep
    reps: int = 5
    seed: int = 20240601

    @classmethod
    def quick(cls) -> Config:
        return cls(n_keys=10_000, n_txns=20_000, n_commits=300, n_wakeups=100, reps=3)


@dataclass(frozen=True)
class Dataset:
    pairs: list[tuple[bytes, bytes]]  # insertion order (random)
    get_keys: list[bytes]  # the same keys, in another random order
    max_key: bytes

    @classmethod
    def make(cls, n: int, seed: int) -> Dataset:
        rng = random.Random(seed)
        keys: dict[bytes, None] = {}
        while len(keys) < n:
            keys[rng.randbytes(16)] = None
        pairs = [(k, rng.randbytes(100)) for k in keys]
        get_keys = list(keys)
        rng.shuffle(get_keys)
        return cls(pairs=pairs, get_keys=get_keys, max_key=max(keys))


# --------------------------------------------------------------------------
# timing


@dataclass
class Measurement:
    """One timed rep: total ns for n operations, and optional per-op ns."""

    ns: int
    n: int
    per_op_ns: list[int] = field(default_factory=list)

    @property
    def us_per_op(self) -> float:
        return self.ns / self.n / 1000


class CpuMeter:
    """How busy the rest of the machine was while a benchmark ran.

    Box-wide busy CPU (from /proc/stat) minus this process tree's CPU, over
    wall time: ~0 means the box was otherwise idle; 1.0 means one whole other
    core was busy, which on a 2-core VM distorts everything.
    """

    def __init__(self) -> None:
        self._tick = os.sysconf("SC_CLK_TCK")

    def _box_busy_s(self) -> float:
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except OSError:
            return float("nan")
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / self._tick

    @staticmethod
    def _own_s() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def __enter__(self) -> CpuMeter:
        self._b0, self._o0, self._w0 = self._box_busy_s(), self._own_s(), time.time()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(time.time() - self._w0, 1e-9)
        other = (self._box_busy_s() - self._b0) - (self._own_s() - self._o0)
        self.other_cores = max(other, 0.0) / wall


# --------------------------------------------------------------------------
# engine adapters: open a fresh or a loaded database; one method per bench


class LmdbBench:
    name = "lmdb"

    def __init__(self, work: Workdir, ds: Dataset) -> None:
        self.work, self.ds = work, ds
        self._loaded: Any = None

    def _open(self, durable: bool) -> Any:
        return lmdb.open(str(self.work.new("lmdb")), map_size=MAP_SIZE, sync=durable)

    def loaded(self) -> Any:
        if self._loaded is None:
            env = self._open(durable=False)
            with env.begin(write=True) as txn:
                txn.cursor().putmulti(self.ds.pairs)
            self._loaded = env
        return self._loaded

    def get(self) -> Measurement:
        keys = self.ds.get_keys
        with self.loaded().begin() as txn:
            get = txn.get
            # untimed pass first: 'warm' = data already in the CPU caches
            for k in keys:
                get(k)
            with Timer() as t:
                for k in keys:
                    get(k)
        return Measurement(t.ns, len(keys))

    def get_many(self) -> Measurement:
        keys = self.ds.get_keys
        chunks = [keys[i : i + GET_MANY_BATCH] for i in range(0, len(keys), GET_MANY_BATCH)]
        with self.loaded().begin() as txn:
            getmulti = txn.cursor().getmulti
            # untimed pass first: 'warm' = data already in the CPU caches
            for chunk in chunks:
                getmulti(chunk)
            with Timer() as t:
                for chunk in chunks:
                    getmulti(chunk)
        return Measurement(t.ns, len(keys))

    def put(self) -> Measurement:
        env, pairs = self._open(durable=False), self.ds.pairs
        with Timer() as t:
            with env.begin(write=True) as txn:
                put = txn.put
                for k, v in pairs:
                    put(k, v)
        env.close()
        return Measurement(t.ns, len(pairs))

    def put_many(self) -> Measurement:
        env, pairs = self._open(durable=False), self.ds.pairs
        with Timer() as t:
            with env.begin(write=True) as txn:
                txn.cursor().putmulti(pairs)
        env.close()
        return Measurement(t.ns, len(pairs))

    def scan(self) -> Measurement:
        with self.loaded().begin() as txn:
            # untimed pass first: 'warm' = data already in the CPU caches
            for _ in txn.cursor():
                pass
            with Timer() as t:
                for item in txn.cursor():  # noqa: B007 (last item checked below)
                    pass
        assert item[0] == self.ds.max_key
        return Measurement(t.ns, len(self.ds.pairs))

    def read_txn(self, n: int) -> Measurement:
        begin = self.loaded().begin
        with Timer() as t:
            for _ in range(n):
                with begin():
                    pass
        return Measurement(t.ns, n)

    def read_txn_explicit(self, n: int) -> Measurement:
        begin = self.loaded().begin
        with Timer() as t:
            for _ in range(n):
                begin().abort()
        return Measurement(t.ns, n)

    def commit(self, n: int, durable: bool) -> Measurement:
        env, pairs, lat = self._open(durable), self.ds.pairs[:n], []
        begin = env.begin
        with Timer() as t:
            for k, v in pairs:
                t0 = perf_counter_ns()
                with begin(write=True) as txn:
                    txn.put(k, v)
                lat.append(perf_counter_ns() - t0)
        env.close()
        return Measurement(t.ns, n, lat)


class SqliteBench:
    name = "sqlite"

    def __init__(self, work: Workdir, ds: Dataset) -> None:
        self.work, self.ds = work, ds
        self._loaded: sqlite3.Connection | None = None

    def _open(self, durable: bool) -> sqlite3.Connection:
        return sqlite_open(self.work.new("sqlite") / "db.sqlite", durable)

    def loaded(self) -> sqlite3.Connection:
        if self._loaded is None:
            con = self._open(durable=False)
            con.execute("BEGIN")
            con.executemany(SQL_PUT, self.ds.pairs)
            con.execute("COMMIT")
            self._loaded = con
        return self._loaded

    def get(self) -> Measurement:
        con, keys = self.loaded(), self.ds.get_keys
        cur = con.cursor()
        ex = cur.execute
        con.execute("BEGIN")
        # untimed pass first: 'warm' = data already in the CPU caches
        for k in keys:
            ex(SQL_GET, (k,)).fetchone()
        with Timer() as t:
            for k in keys:
                ex(SQL_GET, (k,)).fetchone()
        con.execute("COMMIT")
        return Measurement(t.ns, len(keys))

    def put(self) -> Measurement:
        con, pairs = self._open(durable=False), self.ds.pairs
        ex = con.execute
        with Timer() as t:
            ex("BEGIN")
            for kv in pairs:
                ex(SQL_PUT, kv)
            ex("COMMIT")
        con.close()
        return Measurement(t.ns, len(pairs))

    def put_many(self) -> Measurement:
        con, pairs = self._open(durable=False), self.ds.pairs
        with Timer() as t:
            con.execute("BEGIN")
            con.executemany(SQL_PUT, pairs)
            con.execute("COMMIT")
        con.close()
        return Measurement(t.ns, len(pairs))

    def scan(self) -> Measurement:
        con = self.loaded()
        # untimed pass first: 'warm' = data already in the CPU caches
        for _ in con.execute(SQL_SCAN):
            pass
        with Timer() as t:
            for item in con.execute(SQL_SCAN):  # noqa: B007 (last item checked below)
                pass
        assert item[0] == self.ds.max_key
        return Measurement(t.ns, len(self.ds.pairs))

    def read_txn(self, n: int) -> Measurement:
        # A deferred BEGIN takes no snapshot until the first read: this is
        # the cheapest SQLite read-transaction bracket (research 4.1 e).
        ex = self.loaded().execute
        with Timer() as t:
            for _ in range(n):
                ex("BEGIN")
                ex("COMMIT")
        return Measurement(t.ns, n)

    def commit(self, n: int, durable: bool) -> Measurement:
        con, pairs, lat = self._open(durable), self.ds.pairs[:n], []
        ex = con.execute
        with Timer() as t:
            for kv in pairs:
                t0 = perf_counter_ns()
                ex("BEGIN")
                ex(SQL_PUT, kv)
                ex("COMMIT")
                lat.append(perf_counter_ns() - t0)
        con.close()
        return Measurement(t.ns, n, lat)


def sqlite_open(path: Path, durable: bool) -> sqlite3.Connection:
    # isolation_level=None: the module issues no hidden BEGINs; we bracket
    # transactions ourselves so every engine runs the same transactions.
    con = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    con.execute("PRAGMA cache_size=-65536")
    con.execute(SQL_CREATE)
    return con


class RealmpyBench:
    name = "realmpy"

    def __init__(self, work: Workdir, ds: Dataset) -> None:
        self.work, self.ds = work, ds
        self._loaded: Any = None

    def _open(self, durable: bool) -> Any:
        path = self.work.new("realmpy") / "db.realm"
        return Environment(str(path), durability="full" if durable else "none", max_size=MAP_SIZE)

    def loaded(self) -> Any:
        if self._loaded is None:
            env = self._open(durable=False)
            with env.write() as txn:
                txn.put_many(TABLE, self.ds.pairs)
            self._loaded = env
        return self._loaded

    def get(self) -> Measurement:
        keys = self.ds.get_keys
        with self.loaded().read() as snap:
            get = snap.get
            # untimed pass first: 'warm' = data already in the CPU caches
            for k in keys:
                get(TABLE, k)
            with Timer() as t:
                for k in keys:
                    get(TABLE, k)
        return Measurement(t.ns, len(keys))

    def get_many(self) -> Measurement:
        keys = self.ds.get_keys
        chunks = [keys[i : i + GET_MANY_BATCH] for i in range(0, len(keys), GET_MANY_BATCH)]
        with self.loaded().read() as snap:
            get_many = snap.get_many
            # untimed pass first: 'warm' = data already in the CPU caches
            for chunk in chunks:
                get_many(TABLE, chunk)
            with Timer() as t:
                for chunk in chunks:
                    get_many(TABLE, chunk)
        return Measurement(t.ns, len(keys))

    def put(self) -> Measurement:
        env, pairs = self._open(durable=False), self.ds.pairs
        with Timer() as t:
            with env.write() as txn:
                put = txn.put
                for k, v in pairs:
                    put(TABLE, k, v)
        env.close()
        return Measurement(t.ns, len(pairs))

    def put_many(self) -> Measurement:
        env, pairs = self._open(durable=False), self.ds.pairs
        with Timer() as t:
            with env.write() as txn:
                txn.put_many(TABLE, pairs)
        env.close()
        return Measurement(t.ns, len(pairs))

    def scan(self) -> Measurement:
        with self.loaded().read() as snap:
            # untimed pass first: 'warm' = data already in the CPU caches
            for _ in snap.scan(TABLE):
                pass
            with Timer() as t:
                for item in snap.scan(TABLE):  # noqa: B007 (last item checked below)
                    pass
        assert item[0] == self.ds.max_key
        return Measurement(t.ns, len(self.ds.pairs))

    def read_txn(self, n: int) -> Measurement:
        read = self.loaded().read
        with Timer() as t:
            for _ in range(n):
                with read():
                    pass
        return Measurement(t.ns, n)

    def read_txn_explicit(self, n: int) -> Measurement:
        read = self.loaded().read
        with Timer() as t:
            for _ in range(n):
                read().end()
        return Measurement(t.ns, n)

    def commit(self, n: int, durable: bool) -> Measurement:
        env, pairs, lat = self._open(durable), self.ds.pairs[:n], []
        write = env.write
        with Timer() as t:
            for k, v in pairs:
                t0 = perf_counter_ns()
                with write() as txn:
                    txn.put(TABLE, k, v)
                lat.append(perf_counter_ns() - t0)
        env.close()
        return Measurement(t.ns, n, lat)


class RawCffiBench:
    """realmpy's engine called through cffi with no wrapper: the floor.

    The same work as RealmpyBench.get/put/read_txn on the same database, with
    no argument checks, thread checks or bookkeeping: what realmpy/storage.py
    could reach.  Uses only the public C API and the Environment's C handle
    (env._env).  Wrapper time minus this time = the wrapper's overhead.
    """

    name = "raw-cffi"

    def __init__(self, rp: RealmpyBench) -> None:
        self.rp, self.ds = rp, rp.ds

    def get(self) -> Measurement:
        from realmpy._engine import ffi, lib

        keys, name = self.ds.get_keys, TABLE.encode()
        txnp, vl = ffi.new("rp_txn **"), ffi.new("size_t *")
        vp = ffi.new("const void **")
        vpc = ffi.cast("const char **", vp)
        _check(lib.rp_txn_begin(self.rp.loaded()._env, 0, txnp))
        txn, tlen, rp_get, unpack = txnp[0], len(name), lib.rp_get, ffi.unpack
        try:
            # untimed pass first: 'warm' = data already in the CPU caches
            for k in keys:
                rp_get(txn, name, tlen, k, len(k), vp, vl)
                unpack(vpc[0], vl[0])
            with Timer() as t:
                for k in keys:
                    rp_get(txn, name, tlen, k, len(k), vp, vl)
                    unpack(vpc[0], vl[0])
        finally:
            lib.rp_txn_abort(txn)
        return Measurement(t.ns, len(keys))

    def put(self) -> Measurement:
        from realmpy._engine import ffi, lib

        env, pairs, name = self.rp._open(durable=False), self.ds.pairs, TABLE.encode()
        txnp = ffi.new("rp_txn **")
        tlen, rp_put = len(name), lib.rp_put
        with Timer() as t:
            _check(lib.rp_txn_begin(env._env, lib.RP_TXN_WRITE, txnp))
            txn = txnp[0]
            for k, v in pairs:
                rp_put(txn, name, tlen, k, len(k), v, len(v))
            _check(lib.rp_txn_commit(txn))
        env.close()
        return Measurement(t.ns, len(pairs))

    def read_txn_explicit(self, n: int) -> Measurement:
        from realmpy._engine import ffi, lib

        cenv, txnp = self.rp.loaded()._env, ffi.new("rp_txn **")
        if not hasattr(lib, "rp_txn_renew"):
            begin, abort = lib.rp_txn_begin, lib.rp_txn_abort
            with Timer() as t:
                for _ in range(n):
                    begin(cenv, 0, txnp)
                    abort(txnp[0])
            return Measurement(t.ns, n)
        # A parked handle renewed and reset: the cheapest engine path, and
        # the one the wrapper uses when it has a parked handle.
        _check(lib.rp_txn_begin(cenv, 0, txnp))
        txn = txnp[0]
        _check(lib.rp_txn_reset(txn))
        renew, reset = lib.rp_txn_renew, lib.rp_txn_reset
        try:
            with Timer() as t:
                for _ in range(n):
                    renew(txn)
                    reset(txn)
        finally:
            lib.rp_txn_abort(txn)
        return Measurement(t.ns, n)


def _check(rc: int) -> None:
    if rc != 0:
        raise RuntimeError(f"engine call failed: {rc}")


# --------------------------------------------------------------------------

# cross-process wake-up (runs in spawned child processes)

WAKE_METHODS = {
    # method: (engine, description)
    "realmpy-wait": ("realmpy", "realmpy env.wait_for_change (futex), then read"),
    "realmpy-poll": ("realmpy", "realmpy spin on env.version, then read"),
    "lmdb-fifo": ("lmdb", "lmdb + FIFO byte after commit, then read"),
    "sqlite-poll": ("sqlite", "sqlite spin on PRAGMA data_version, then read"),
}
WAKE_IDLE_TIMEOUT_S = 3.0


def _seq(b: bytes | None) -> int:
    return int.from_bytes(b, "big") if b else 0


def _wake_create(method: str, path: Path) -> None:
    """Create the database with counter = 0 before either child opens it."""
    engine = WAKE_METHODS[method][0]
    zero = (0).to_bytes(8, "big")
    if engine == "realmpy":
        env = Environment(str(path / "db.realm"), durability="full", max_size=MAP_SIZE)
        with env.write() as txn:
            txn.put(TABLE, COUNTER, zero)
        env.close()
    elif engine == "lmdb":
        lenv = lmdb.open(str(path), map_size=MAP_SIZE)
        with lenv.begin(write=True) as ltxn:
            ltxn.put(COUNTER, zero)
        lenv.close()
        os.mkfifo(path / "wake.fifo")
    else:
        con = sqlite_open(path / "db.sqlite", durable=True)
        con.execute(SQL_PUT, (COUNTER, zero))
        con.close()


def _wake_writer(method: str, path: Path, n: int, seed: int, go: Any, out: Connection) -> None:
    """Commit seq = 1..n durably with random 0.5-2 ms gaps; send stamps."""
    engine = WAKE_METHODS[method][0]
    commit: Callable[[int], None]
    notify: Callable[[], None] = lambda: None  # noqa: E731
    if engine == "realmpy":
        renv = Environment(str(path / "db.realm"), durability="full", max_size=MAP_SIZE)

        def commit(seq: int) -> None:
            with renv.write() as txn:
                txn.put(TABLE, COUNTER, seq.to_bytes(8, "big"))

    elif engine == "lmdb":
        lenv = lmdb.open(str(path), map_size=MAP_SIZE)
        fifo = os.open(path / "wake.fifo", os.O_WRONLY)

        def commit(seq: int) -> None:
            with lenv.begin(write=True) as txn:
                txn.put(COUNTER, seq.to_bytes(8, "big"))

        def notify() -> None:
            os.write(fifo, b"w")

    else:
        con = sqlite_open(path / "db.sqlite", durable=True)

        def commit(seq: int) -> None:
            con.execute("BEGIN")
            con.execute(SQL_PUT, (COUNTER, seq.to_bytes(8, "big")))
            con.execute("COMMIT")

    rng = random.Random(seed)
    gaps = [rng.uniform(0.0005, 0.002) for _ in range(n)]
    stamps: list[tuple[int, int, int]] = []  # (seq, t_commit_start, t_returned)
    go.wait()
    gc.disable()
    for seq in range(1, n + 1):
        time.sleep(gaps[seq - 1])
        t0 = perf_counter_ns()
        commit(seq)
        t1 = perf_counter_ns()
        notify()  # after t1: a FIFO wake is part of the measured latency
        stamps.append((seq, t0, t1))
    gc.enable()
    if engine == "lmdb":
        os.write(fifo, b"q")
    out.send(stamps)


def _wake_reader(method: str, path: Path, n: int, ready: Any, out: Connection) -> None:
    """Wait for each commit by `method`; send (seq seen, t_noticed) pairs."""
    engine = WAKE_METHODS[method][0]
    seen: list[tuple[int, int]] = []
    idle_ns = int(WAKE_IDLE_TIMEOUT_S * 1e9)
    gc.disable()
    if engine == "realmpy":
        env = Environment(str(path / "db.realm"), durability="full", max_size=MAP_SIZE)
        v = env.version
        ready.set()
        while not seen or seen[-1][0] < n:
            if method == "realmpy-wait":
                new = env.wait_for_change(v, timeout=WAKE_IDLE_TIMEOUT_S)
            else:
                deadline = perf_counter_ns() + idle_ns
                new = env.version
                while new == v and perf_counter_ns() < deadline:
                    new = env.version
            if new == v:
                break  # idle timeout: the writer is gone
            v = new
            with env.read() as snap:
                s = _seq(snap.get(TABLE, COUNTER))
            seen.append((s, perf_counter_ns()))
    elif engine == "lmdb":
        lenv = lmdb.open(str(path), map_size=MAP_SIZE, readonly=False)
        # O_RDWR: opening never blocks and reads never see EOF before the
        # writer opens its end; the writer's final "q" ends the loop.
        fd = os.open(path / "wake.fifo", os.O_RDWR)
        ready.set()
        done = False
        while not done:
            if not select.select([fd], [], [], WAKE_IDLE_TIMEOUT_S)[0]:
                break
            data = os.read(fd, 4096)  # drains every pending wake at once
            done = b"q" in data
            if b"w" in data:
                with lenv.begin() as txn:
                    s = _seq(txn.get(COUNTER))
                seen.append((s, perf_counter_ns()))
    else:
        con = sqlite_open(path / "db.sqlite", durable=True)
        ex = con.execute
        dv = ex("PRAGMA data_version").fetchone()[0]
        ready.set()
        while not seen or seen[-1][0] < n:
            deadline = perf_counter_ns() + idle_ns
            new = dv
            while new == dv and perf_counter_ns() < deadline:
                new = ex("PRAGMA data_version").fetchone()[0]
            if new == dv:
                break
            dv = new
            s = _seq(ex(SQL_GET, (COUNTER,)).fetchone()[0])
            seen.append((s, perf_counter_ns()))
    gc.enable()
    out.send(seen)


@dataclass
class WakeRep:
    latencies_us: list[float]  # t(noticed) - t(commit returned)
    from_start_us: list[float]  # t(noticed) - t(commit started)
    commit_us: list[float]  # writer's commit duration
    missed: int  # commits never seen individually (coalesced or lost)


def wake_rep(method: str, work: Workdir, n: int, seed: int) -> WakeRep:
    """One rep of one method: fresh DB, a reader child, a writer child.

    The select() before the FIFO read is the same blocking wait an event loop
    does; it is the only way to bound the wait with a timeout.
    """
    ctx = mp.get_context("spawn")  # no inherited engine handles across fork
    path = work.new("wake")
    _wake_create(method, path)
    ready, go = ctx.Event(), ctx.Event()
    r_recv, r_send = ctx.Pipe(duplex=False)
    w_recv, w_send = ctx.Pipe(duplex=False)
    reader = ctx.Process(target=_wake_reader, args=(method, path, n, ready, r_send))
    writer = ctx.Process(target=_wake_writer, args=(method, path, n, seed, go, w_send))
    reader.start()
    writer.start()
    try:
        if not ready.wait(60):
            raise RuntimeError(f"{method}: reader did not start")
        time.sleep(0.05)  # let the reader reach its wait
        go.set()
        limit = 60 + n * 0.01
        if not (w_recv.poll(limit) and r_recv.poll(limit)):
            raise RuntimeError(f"{method}: no result within {limit:.0f} s")
        stamps: list[tuple[int, int, int]] = w_recv.recv()
        seen: list[tuple[int, int]] = r_recv.recv()
    finally:
        for p in (reader, writer):
            p.join(10)
            if p.is_alive():
                p.terminate()
                p.join()
    first: dict[int, int] = {}
    for s, t in seen:
        first.setdefault(s, t)
    lat, from_start, commit = [], [], []
    for s, t0, t1 in stamps:
        commit.append((t1 - t0) / 1000)
        if s in first:
            lat.append((first[s] - t1) / 1000)
            from_start.append((first[s] - t0) / 1000)
    return WakeRep(lat, from_start, commit, missed=len(stamps) - len(lat))


# --------------------------------------------------------------------------
# the benchmark table


@dataclass(frozen=True)
class Target:
    against: str  # "lmdb", "sqlite", or "abs" (absolute µs on p50)
    limit: float

    def text(self) -> str:
        if self.against == "abs":
            return f"p50 <= {self.limit:g} us"
        return f"<= {self.limit:g}x {self.against}"


@dataclass(frozen=True)
class Bench:
    name: str
    title: str
    method: str  # adapter method that runs one rep
    target: Target | None
    latency: bool = False  # per-op latencies recorded: report p50/p99

    def run(self, adapter: Any, cfg: Config) -> Measurement:
        fn = getattr(adapter, self.method)
        if "read_txn" in self.method:
            return fn(cfg.n_txns)  # type: ignore[no-any-return]
        if self.method == "commit":
            return fn(cfg.n_commits, durable=self.name == "commit_durable")  # type: ignore[no-any-return]
        return fn()  # type: ignore[no-any-return]


BENCHES = [
    Bench("get", "point get, warm, 1 read txn", "get", Target("lmdb", 1.0)),
    Bench("get_many", f"point get, batch API ({GET_MANY_BATCH}/call)", "get_many", None),
    Bench("put", "put, per-call loop, 1 txn", "put", Target("lmdb", 1.0)),
    Bench("put_many", "put, bulk API, 1 txn", "put_many", Target("lmdb", 1.0)),
    Bench("scan", "ordered scan, per item", "scan", Target("lmdb", 1.0)),
    Bench("read_txn", "read txn begin+end (with-block)", "read_txn", Target("lmdb", 1.5)),
    Bench(
        "read_txn_explicit",
        "read txn begin+end (explicit)",
        "read_txn_explicit",
        Target("lmdb", 1.5),
    ),
    Bench(
        "commit_durable",
        "durable single-put commit",
        "commit",
        Target("sqlite", 1.0),
        latency=True,
    ),
    Bench(
        "commit_nondurable",
        "non-durable single-put commit",
        "commit",
        None,
        latency=True,
    ),
]
LAYOUT_NAMES = ["size", "syscalls"]  # storage_layout.py: file sizes, strace counts
BENCH_NAMES = [b.name for b in BENCHES] + ["wakeup", *LAYOUT_NAMES]


@dataclass
class Row:
    bench: str
    title: str
    engine: str
    samples_us: list[float] = field(default_factory=list)  # µs/op per rep
    latencies_us: list[float] = field(default_factory=list)  # all reps pooled
    error: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples_us) if self.samples_us else None


def run_bench(bench: Bench, adapters: dict[str, Any], cfg: Config) -> list[Row]:
    """Run every adapter that has the operation, interleaved within each rep."""
    rows = {name: Row(bench.name, bench.title, name) for name in ENGINES}
    for name in ENGINES:
        if name not in adapters:
            rows[name].error = "not available"
        elif not hasattr(adapters[name], bench.method):
            rows[name].error = "no such API"
    for name, adapter in adapters.items():
        if name not in ENGINES and hasattr(adapter, bench.method):
            rows[name] = Row(bench.name, bench.title, name)  # an extra, e.g. raw-cffi
    for _ in range(cfg.reps):
        for name, adapter in adapters.items():
            row = rows.get(name)
            if row is None or row.error:
                continue
            try:
                m = bench.run(adapter, cfg)
            except Exception as exc:  # one engine failing must not hide the others
                row.error = f"{type(exc).__name__}: {exc}"
                continue
            row.samples_us.append(m.us_per_op)
            row.latencies_us.extend(ns / 1000 for ns in m.per_op_ns)
    return list(rows.values())


def run_wakeups(work: Workdir, cfg: Config, available: set[str]) -> list[dict[str, Any]]:
    out = []
    for method, (engine, desc) in WAKE_METHODS.items():
        entry: dict[str, Any] = {
            "method": method,
            "engine": engine,
            "description": desc,
        }
        if engine not in available:
            entry["error"] = "not available"
            out.append(entry)
            continue
        reps: list[WakeRep] = []
        try:
            for rep in range(cfg.reps):
                progress(f"  wakeup {method} rep {rep + 1}")
                reps.append(wake_rep(method, work, cfg.n_wakeups, cfg.seed + rep))
        except Exception as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
        good = [r for r in reps if r.latencies_us]
        if good:
            entry.update(
                # p50 and p99 of each rep, then the median across reps
                p50=statistics.median(percentile(r.latencies_us, 50) for r in good),
                p90=statistics.median(percentile(r.latencies_us, 90) for r in good),
                p99=statistics.median(percentile(r.latencies_us, 99) for r in good),
                from_start_p50=statistics.median(percentile(r.from_start_us, 50) for r in good),
                commit_p50=statistics.median(percentile(r.commit_us, 50) for r in good),
                samples=sum(len(r.latencies_us) for r in good),
                missed=sum(r.missed for r in reps),
                latencies_us=[[round(x, 2) for x in r.latencies_us] for r in reps],
            )
        out.append(entry)
    return out


# --------------------------------------------------------------------------
# output


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}f}"


def verdict(bench: Bench, rows: dict[str, Row]) -> tuple[str, str, str]:
    """(realmpy/lmdb, realmpy/sqlite, met?) for one benchmark."""
    rp = rows["realmpy"].median
    ratio = {}
    for other in ("lmdb", "sqlite"):
        o = rows[other].median
        ratio[other] = rp / o if rp is not None and o else None
    met = "-"
    if bench.target is not None:
        r = ratio.get(bench.target.against)
        met = "n/a" if r is None else ("yes" if r <= bench.target.limit else "NO")
    as_text = {k: f"{v:.2f}x" if v is not None else "n/a" for k, v in ratio.items()}
    return as_text["lmdb"], as_text["sqlite"], met


def print_floor_table(results: list[tuple[Bench, list[Row]]]) -> None:
    """realmpy's Python wrapper against the same engine calls made raw."""
    pairs = []
    for bench, rows in results:
        by = {r.engine: r for r in rows}
        if "raw-cffi" in by and by["raw-cffi"].samples_us:
            pairs.append((bench, by["realmpy"].median, by["raw-cffi"].median))
    if not pairs:
        return
    print()
    print(
        f"{'realmpy wrapper vs raw cffi (median µs/op)':<44} {'wrapper':>8}"
        f" {'raw cffi':>8} {'overhead':>8} {'share':>6}"
    )
    for bench, wrapper, raw in pairs:
        over = share = "n/a"
        if wrapper is not None and raw is not None:
            over = fmt(wrapper - raw)
            share = f"{(wrapper - raw) / wrapper:.0%}"
        print(f"{bench.title:<44} {fmt(wrapper):>8} {fmt(raw):>8} {over:>8} {share:>6}")


def print_tables(
    results: list[tuple[Bench, list[Row]]],
    wakeups: list[dict[str, Any]],
    loads: dict[str, float],
) -> None:
    head = (
        f"{'operation (median µs/op)':<40} {'realmpy':>9} {'py-lmdb':>9} "
        f"{'sqlite3':>9} {'rp/lmdb':>8} {'rp/sqlite':>9}  {'target':<15} {'met':<4}"
        f" {'other load':>10}"
    )
    main = results
    if main:
        print(head)
        print("-" * len(head))
    for bench, rows in main:
        by = {r.engine: r for r in rows}
        vs_lmdb, vs_sqlite, met = verdict(bench, by)
        target = bench.target.text() if bench.target else "-"
        rp, lm, sq = (fmt(by[e].median) for e in ENGINES)
        load = loads.get(bench.name, float("nan"))
        print(
            f"{bench.title:<40} {rp:>9} {lm:>9} {sq:>9} {vs_lmdb:>8} {vs_sqlite:>9}"
            f"  {target:<15} {met:<4} {load:>9.2f}c"
        )
    print_floor_table(results)
    lat = [(b, rows) for b, rows in main if b.latency]
    if lat:
        print()
        print(f"{'per-commit latency, all reps (µs)':<40} {'engine':<8} {'p50':>8} {'p99':>8}")
        for bench, rows in lat:
            for r in rows:
                if r.latencies_us:
                    p50, p99 = (
                        percentile(r.latencies_us, 50),
                        percentile(r.latencies_us, 99),
                    )
                    print(f"{bench.title:<40} {r.engine:<8} {fmt(p50):>8} {fmt(p99):>8}")
    if wakeups:
        print()
        print(
            f"{'cross-process wake-up (µs, median of reps)':<48} {'p50':>7} {'p90':>7} "
            f"{'p99':>7} {'from start p50':>14} {'commit p50':>10}"
            f" {'seen':>6} {'missed':>6}"
        )
        for w in wakeups:
            if "p50" not in w:
                print(f"{w['description']:<48} {w.get('error', 'n/a')}")
                continue
            print(
                f"{w['description']:<48} {fmt(w['p50']):>7} {fmt(w['p90']):>7} "
                f"{fmt(w['p99']):>7} {fmt(w['from_start_p50']):>14} "
                f"{fmt(w['commit_p50']):>10} {w['samples']:>6} {w['missed']:>6}"
            )
        rpw = next((w for w in wakeups if w["method"] == "realmpy-wait"), None)
        if rpw and "p50" in rpw:
            ok = "yes" if rpw["p50"] <= 50 else "NO"
            print(
                f"target: realmpy wait_for_change p50 <= 50 µs: {ok}"
                f" (other load {loads.get('wakeup', float('nan')):.2f} cores)"
            )
    errors = [r for b, rows in results for r in rows if r.error]
    errors_w = [w for w in wakeups if "error" in w]
    if errors or errors_w:
        print()
        for r in errors:
            print(f"note: {r.bench} / {r.engine}: {r.error}")
        for w in errors_w:
            print(f"note: wakeup / {w['method']}: {w['error']}")


# --------------------------------------------------------------------------
# main


def choose_base_dir(requested: str | None) -> Path:
    """A directory on the project's own disk (not tmpfs) for the databases."""
    if requested:
        return Path(requested)
    repo = Path(__file__).resolve().parent.parent
    tmp = Path(tempfile.gettempdir())
    same_disk = tmp.stat().st_dev == repo.stat().st_dev
    if same_disk and not machine.filesystem_of(tmp).startswith("tmpfs"):
        return tmp
    return repo / "bench"


@contextmanager
def workdir(base: Path) -> Iterator[Workdir]:
    d = Path(tempfile.mkdtemp(prefix="realmpy-bench-", dir=base))
    try:
        yield Workdir(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def parse_only(text: str | None) -> list[str]:
    if not text:
        return BENCH_NAMES
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCH_NAMES]
    if unknown:
        raise SystemExit(f"unknown benchmark {unknown}; choose from {BENCH_NAMES}")
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small N, 3 reps (smoke run)")
    ap.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCH_NAMES))
    ap.add_argument("--json", help="write raw numbers to this file")
    ap.add_argument("--dir", help="where to create databases (default: project disk)")
    ap.add_argument("--reps", type=int, help="override the number of repetitions")
    args = ap.parse_args(argv)

    cfg = Config.quick() if args.quick else Config()
    if args.reps:
        cfg = Config(**{**cfg.__dict__, "reps": args.reps})
    only = parse_only(args.only)
    base = choose_base_dir(args.dir)
    info = machine.describe(base)
    print(machine.format_description(info))
    print(f"config        {cfg}")
    if _REALMPY_MISSING:
        print(f"realmpy       NOT BENCHED ({_REALMPY_MISSING})")
    print()

    ds = Dataset.make(cfg.n_keys, cfg.seed)
    results: list[tuple[Bench, list[Row]]] = []
    wakeups: list[dict[str, Any]] = []
    loads: dict[str, float] = {}
    started = time.time()
    with workdir(base) as work:
        adapters: dict[str, Any] = {"sqlite": SqliteBench(work, ds)}
        if lmdb is not None:
            adapters["lmdb"] = LmdbBench(work, ds)
        if Environment is not None:
            adapters["realmpy"] = RealmpyBench(work, ds)
        adapters = {k: adapters[k] for k in ENGINES if k in adapters}  # fixed order
        if "realmpy" in adapters:
            adapters["raw-cffi"] = RawCffiBench(adapters["realmpy"])
        for bench in BENCHES:
            if bench.name not in only:
                continue
            progress(f"{bench.name} ...")
            with CpuMeter() as cpu:
                results.append((bench, run_bench(bench, adapters, cfg)))
            loads[bench.name] = cpu.other_cores
        if "wakeup" in only:
            progress("wakeup ...")
            with CpuMeter() as cpu:
                wakeups = run_wakeups(work, cfg, set(adapters))
            loads["wakeup"] = cpu.other_cores
    print_tables(results, wakeups, loads)
    layout: dict[str, Any] = {}
    if set(LAYOUT_NAMES) & set(only):
        print()
        with workdir(base) as work:
            layout = storage_layout.run(work.new("layout"), args.quick, set(only))
    print()
    print(
        "'other load' = average number of cores busy with other processes during"
        f" that row (0 = quiet box). Total {time.time() - started:.0f} s;"
        f" load average after: {machine.load_average()}."
    )

    if args.json:
        doc = {
            "machine": info,
            "config": cfg.__dict__,
            "realmpy_missing": _REALMPY_MISSING,
            "results": [
                {
                    "bench": r.bench,
                    "title": r.title,
                    "engine": r.engine,
                    "median_us": r.median,
                    "samples_us": r.samples_us,
                    "latencies_us": [round(x, 2) for x in r.latencies_us],
                    "error": r.error,
                    "target": b.target.text() if b.target else None,
                }
                for b, rows in results
                for r in rows
            ],
            "wakeup": wakeups,
            "layout": layout,
            "other_load_cores": loads,
        }
        Path(args.json).write_text(json.dumps(doc, indent=1))
        progress(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
