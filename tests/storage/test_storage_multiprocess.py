"""Several processes on one database file.

* Read-modify-write increments from 4 processes add up exactly (one writer
  at a time, and each writer sees the previous writer's commit).
* Readers holding snapshots always see a conserved sum while writers move
  value between keys (snapshots see whole commits only).
* ``wait_for_change`` wakes a process blocked on the shared version counter.

Children are forked and open their own ``Environment`` (handles do not
survive ``fork()``).  Every child reports through its exit code or a queue;
nothing here depends on timing.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from realmpy.errors import ClosedError, ForkedError
from realmpy.storage import Environment

CTX = mp.get_context("fork")
PROCS = 4
INCREMENTS = int(os.environ.get("REALMPY_INCREMENTS", "2000"))
# Offset of the waiter count in the lock file (csrc/format.h).
LOCK_WAITERS_OFFSET = 140
# Guard against a hang (a lost wake-up) only; never reached when things work.
HANG_GUARD_S = 120.0


def _join_all(procs: list[Any]) -> list[int]:
    codes = []
    for p in procs:
        p.join(HANG_GUARD_S)
        if p.is_alive():
            p.kill()
            p.join()
        codes.append(p.exitcode)
    return codes


def _incrementer(path: str, me: int, n: int, start: Any) -> None:
    start.wait()
    with Environment(path, durability="none") as env:
        for _ in range(n):
            with env.write() as txn:
                total = int(txn.get("t", b"total") or b"0")
                txn.put("t", b"total", b"%d" % (total + 1))
                mine = int(txn.get("t", b"p%d" % me) or b"0")
                txn.put("t", b"p%d" % me, b"%d" % (mine + 1))


def test_concurrent_increments_are_exact(db_path: str) -> None:
    Environment(db_path).close()  # create the file before the race
    start = CTX.Event()
    procs = [
        CTX.Process(target=_incrementer, args=(db_path, i, INCREMENTS, start)) for i in range(PROCS)
    ]
    for p in procs:
        p.start()
    start.set()
    assert _join_all(procs) == [0] * PROCS
    with Environment(db_path) as env, env.read() as snap:
        assert snap.get("t", b"total") == b"%d" % (PROCS * INCREMENTS)
        for i in range(PROCS):
            assert snap.get("t", b"p%d" % i) == b"%d" % INCREMENTS
        env.check()


ACCOUNTS = 16
INITIAL = 1000
MOVES = int(os.environ.get("REALMPY_MOVES", "1500"))


def _mover(path: str, seed: int, n: int, start: Any) -> None:
    rng = random.Random(seed)
    start.wait()
    with Environment(path, durability="none") as env:
        for _ in range(n):
            a, b = rng.sample(range(ACCOUNTS), 2)
            with env.write() as txn:
                va = int(txn.get("acct", b"%02d" % a) or b"0")
                vb = int(txn.get("acct", b"%02d" % b) or b"0")
                amount = rng.randint(0, va)
                txn.put("acct", b"%02d" % a, b"%d" % (va - amount))
                txn.put("acct", b"%02d" % b, b"%d" % (vb + amount))


def _auditor(path: str, start: Any, done: Any, out: Any) -> None:
    start.wait()
    checks = 0
    last_version = 0
    problems: list[str] = []
    with Environment(path, durability="none") as env:
        # Keep auditing until the movers are done, and at least 50 times.
        while not done.is_set() or checks < 50:
            with env.read() as snap:
                if snap.version < last_version:
                    problems.append(f"version went back {last_version}->{snap.version}")
                last_version = snap.version
                rows = list(snap.scan("acct"))
                total = sum(int(v) for _, v in rows)
                by_get = sum(int(snap.get("acct", b"%02d" % i) or b"0") for i in range(ACCOUNTS))
                if total != ACCOUNTS * INITIAL or by_get != total or len(rows) != ACCOUNTS:
                    problems.append(f"v{snap.version}: sum {total}/{by_get}, {len(rows)} rows")
            checks += 1
    out.put((checks, problems))


def test_readers_see_a_conserved_sum(db_path: str) -> None:
    with Environment(db_path, durability="none") as env, env.write() as txn:
        for i in range(ACCOUNTS):
            txn.put("acct", b"%02d" % i, b"%d" % INITIAL)
    start, done = CTX.Event(), CTX.Event()
    out = CTX.Queue()
    movers = [CTX.Process(target=_mover, args=(db_path, seed, MOVES, start)) for seed in (1, 2)]
    auditors = [CTX.Process(target=_auditor, args=(db_path, start, done, out)) for _ in range(2)]
    for p in movers + auditors:
        p.start()
    start.set()
    assert _join_all(movers) == [0, 0]
    done.set()
    results = [out.get(timeout=HANG_GUARD_S) for _ in auditors]
    assert _join_all(auditors) == [0, 0]
    for checks, problems in results:
        assert checks >= 50
        assert problems == []
    with Environment(db_path) as env:
        env.check()
        assert env.version >= 1 + 2 * MOVES


def _wait_for_waiter(lock_path: str, expected: int) -> None:
    """Wait until ``expected`` threads are blocked on the version futex.

    Reads the waiter count from the lock file (csrc/format.h); it only makes
    the test stricter (the commit happens while the waiter really sleeps).
    The file is read with pread, never mapped: the first opener may rebuild
    it (truncate) meanwhile, and a mapped read past the end is a SIGBUS.
    """
    deadline = time.monotonic() + HANG_GUARD_S
    while time.monotonic() < deadline:
        try:
            fd = os.open(lock_path, os.O_RDONLY)
        except FileNotFoundError:
            raw = b""
        else:
            try:
                raw = os.pread(fd, 4, LOCK_WAITERS_OFFSET)
            finally:
                os.close(fd)
        if len(raw) == 4 and struct.unpack("<I", raw)[0] >= expected:
            return
        time.sleep(0.0005)
    pytest.fail("the waiter never blocked on the version counter")


def _waiter(path: str, since: int, conn: Any) -> None:
    with Environment(path, durability="none") as env:
        got = env.wait_for_change(since, timeout=HANG_GUARD_S)
        woke = time.perf_counter_ns()
        conn.send((got, woke))


def test_wait_for_change_wakes_another_process(db_path: str) -> None:
    with Environment(db_path, durability="full") as env:
        with env.write() as txn:
            txn.put("t", b"k", b"0")
        latencies = []
        for round_ in range(5):
            since = env.version
            parent, child = CTX.Pipe()
            p = CTX.Process(target=_waiter, args=(db_path, since, child))
            p.start()
            _wait_for_waiter(db_path + ".lock", 1)
            with env.write() as txn:
                txn.put("t", b"k", b"%d" % round_)
            committed = time.perf_counter_ns()
            assert parent.poll(HANG_GUARD_S), "waiter did not wake up"
            got, woke = parent.recv()
            assert _join_all([p]) == [0]
            assert got == since + 1 == env.version
            latencies.append((woke - committed) / 1000)
        print(f"wake-up latency after commit returned (us): {sorted(latencies)}")


def test_wait_for_change_timeout_returns_since(db_path: str) -> None:
    with Environment(db_path) as env:
        v = env.version
        assert env.wait_for_change(v, timeout=0) == v
        assert env.wait_for_change(v, timeout=0.01) == v
        # A version that is already different returns at once.
        assert env.wait_for_change(v + 5, timeout=None) == v
        assert env.wait_for_change(v + 5, timeout=float("inf")) == v


def test_close_wakes_a_waiting_thread(db_path: str) -> None:
    env = Environment(db_path)
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            env.wait_for_change(env.version, timeout=HANG_GUARD_S)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    _wait_for_waiter(db_path + ".lock", 1)
    env.close()
    t.join(HANG_GUARD_S)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], ClosedError)


def _use_inherited(env: Environment, conn: Any) -> None:
    try:
        with env.read() as snap:
            snap.get("t", b"k")
        conn.send("no error")
    except ForkedError:
        conn.send("ForkedError")
    except BaseException as exc:
        conn.send(f"{type(exc).__name__}: {exc}")


def test_forked_child_cannot_use_parent_handle(db_path: str) -> None:
    with Environment(db_path) as env:
        with env.write() as txn:
            txn.put("t", b"k", b"v")
        parent, child = CTX.Pipe()
        p = CTX.Process(target=_use_inherited, args=(env, child))
        p.start()
        assert parent.poll(HANG_GUARD_S)
        assert parent.recv() == "ForkedError"
        assert _join_all([p]) == [0]
        # The parent's handle is unaffected.
        with env.read() as snap:
            assert snap.get("t", b"k") == b"v"


def test_threads_share_one_environment(db_path: str) -> None:
    """Write transactions of several threads serialise; snapshots don't block."""
    threads_n, per_thread = 4, 300
    errors_seen: list[BaseException] = []
    with Environment(db_path, durability="none") as env:
        with env.write() as txn:
            txn.put("t", b"total", b"0")
        pinned = env.read()  # held by this thread throughout: blocks nobody
        start = threading.Barrier(threads_n)

        def work(me: int) -> None:
            try:
                start.wait()
                for _ in range(per_thread):
                    with env.write() as txn:
                        total = int(txn.get("t", b"total") or b"0")
                        txn.put("t", b"total", b"%d" % (total + 1))
                    with env.read() as snap:
                        assert int(snap.get("t", b"total") or b"0") >= 1
            except BaseException as exc:
                errors_seen.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG_GUARD_S)
        assert not any(t.is_alive() for t in threads)
        assert errors_seen == []
        assert pinned.get("t", b"total") == b"0"
        pinned.end()
        with env.read() as snap:
            assert snap.get("t", b"total") == b"%d" % (threads_n * per_thread)
        env.check()


INTERRUPTIBLE = r"""
import sys
from realmpy.storage import Environment
env = Environment(sys.argv[1])
try:
    env.wait_for_change(env.version)  # no timeout: only a signal ends this
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_ctrl_c_interrupts_wait_for_change(db_path: str) -> None:
    Environment(db_path).close()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTIBLE, db_path],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        _wait_for_waiter(db_path + ".lock", 1)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=HANG_GUARD_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.strip() == "interrupted"
    assert proc.returncode == 0


def _hold_writer(path: str, holding: Any, release: Any) -> None:
    """Hold the write transaction (uncommitted) until told to commit."""
    with Environment(path, durability="none") as env, env.write() as txn:
        txn.put("t", b"k", b"new")
        holding.set()
        release.wait(HANG_GUARD_S)


def _write_once(path: str, done: Any) -> None:
    with Environment(path, durability="none") as env, env.write() as txn:
        txn.put("t", b"k", b"from-writer")
    done.set()


def test_writers_never_block_readers(db_path: str) -> None:
    """Invariant 1: while another process holds the write lock, this process
    begins snapshots and reads the last committed data (never the
    uncommitted change), without waiting for the writer."""
    with Environment(db_path, durability="none") as env:
        with env.write() as txn:
            txn.put("t", b"k", b"old")
        holding, release = CTX.Event(), CTX.Event()
        writer = CTX.Process(target=_hold_writer, args=(db_path, holding, release))
        writer.start()
        seen: list[bytes | None] = []

        def reads() -> None:  # in a thread, so a blocked read cannot hang the test
            for _ in range(100):
                with env.read() as snap:
                    seen.append(snap.get("t", b"k"))

        try:
            assert holding.wait(HANG_GUARD_S), "writer never got the lock"
            reader = threading.Thread(target=reads)
            reader.start()
            reader.join(HANG_GUARD_S)
            assert not reader.is_alive(), "a reader waited for the writer"
            assert writer.is_alive()  # the lock was held throughout
            assert seen == [b"old"] * 100
        finally:
            release.set()
        assert _join_all([writer]) == [0]
        with env.read() as snap:
            assert snap.get("t", b"k") == b"new"


def test_readers_never_block_writers(db_path: str) -> None:
    """Invariant 1: a snapshot held here does not stop another process's
    writer from committing; the snapshot keeps its version, a new one sees
    the commit."""
    with Environment(db_path, durability="none") as env:
        with env.write() as txn:
            txn.put("t", b"k", b"old")
        with env.read() as held:
            done = CTX.Event()
            writer = CTX.Process(target=_write_once, args=(db_path, done))
            writer.start()
            assert done.wait(HANG_GUARD_S), "the writer waited for a reader"
            assert _join_all([writer]) == [0]
            assert held.get("t", b"k") == b"old"
            with env.read() as fresh:
                assert fresh.get("t", b"k") == b"from-writer"
