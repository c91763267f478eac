"""Crashes, I/O failures and power cuts.

* Writers SIGKILLed at random moments during durable commits: the file stays
  consistent (``check()``), every commit the child acknowledged is there, and
  the next writer gets the (robust) writer mutex at once.
* A reader killed while holding a snapshot: its slot is reaped by the next
  writer and the pages it pinned become reusable, so the file stops growing.
* Injected write/sync/ENOSPC failures (``rp_fault_set``): a typed error, the
  previous data intact, the file consistent and still writable.
* Power cuts (``rp_powercut_record/apply``): the reopened file holds the
  last synced version or the one being committed, and passes ``check()``.

Kill rounds default to a few dozen; set ``REALMPY_KILL_ROUNDS`` for more.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
from typing import Any

import pytest

from realmpy._engine import ffi, lib
from realmpy.errors import DiskFullError, StorageIOError
from realmpy.storage import Environment

CTX = mp.get_context("fork")
KILL_ROUNDS = int(os.environ.get("REALMPY_KILL_ROUNDS", "40"))
POWERCUT_ROUNDS = int(os.environ.get("REALMPY_POWERCUT_ROUNDS", "30"))
# Guards against hangs only (a writer mutex that never recovers); never a
# pass/fail threshold.
HANG_GUARD_S = 120.0


def _value(i: int, size: int) -> bytes:
    return (b"%08d:" % i) * (size // 9 + 1)


def _reap(p: Any) -> int:
    p.join(HANG_GUARD_S)
    if p.is_alive():
        p.kill()
        p.join()
    return int(p.exitcode)


# ---- writers killed mid-commit ----------------------------------------------


def _committer(path: str, first: int, seed: int, conn: Any) -> None:
    """Commit forever; report each commit number once commit() returned."""
    rng = random.Random(seed)
    with Environment(path, durability="full") as env:
        i = first
        while True:
            with env.write() as txn:
                # Several pages per commit, of varying size, so that kills
                # land in page writes, the sync and the meta write.
                for j in range(rng.randint(1, 6)):
                    txn.put(
                        "acked",
                        b"%08d-%d" % (i, j),
                        _value(i, rng.choice((50, 900, 5000))),
                    )
                txn.put("meta", b"last", b"%d" % i)
                if rng.random() < 0.3 and i > 3:
                    txn.delete("acked", b"%08d-0" % (i - 3))
                    txn.put("acked", b"%08d-0" % (i - 3), b"rewritten")
            conn.send(i)
            i += 1


def _spin(us: int) -> None:
    end = time.perf_counter_ns() + us * 1000
    while time.perf_counter_ns() < end:
        pass


def test_killed_writers_lose_nothing_acknowledged(db_path: str) -> None:
    rng = random.Random(1234)
    acked: list[int] = []
    first = 1
    with Environment(db_path, durability="full") as watcher:
        for round_ in range(KILL_ROUNDS):
            parent, child = CTX.Pipe(duplex=False)
            p = CTX.Process(target=_committer, args=(db_path, first, round_, child))
            p.start()
            child.close()
            # The first ack proves this writer got the mutex, even when the
            # previous one died holding it.
            assert parent.poll(HANG_GUARD_S), f"round {round_}: writer never committed"
            for _ in range(rng.randint(1, 4)):
                assert parent.poll(HANG_GUARD_S)
                acked.append(parent.recv())
            _spin(rng.randint(0, 3000))  # a random moment in a later commit
            assert p.pid is not None
            os.kill(p.pid, signal.SIGKILL)
            p.join()
            assert p.exitcode == -signal.SIGKILL
            while parent.poll(0):
                try:
                    acked.append(parent.recv())
                except EOFError:
                    break
            parent.close()
            first = acked[-1] + 1
            # Another process that kept the file open sees every ack.
            with watcher.read() as snap:
                last = int(snap.get("meta", b"last") or b"0")
                assert last >= acked[-1]
                for i in acked[-5:]:
                    assert snap.get("acked", b"%08d-1" % i) is not None or (
                        snap.get("acked", b"%08d-0" % i) is not None
                    )
            watcher.check()
    # And a fresh open (recovery runs when nobody has the file open).
    with Environment(db_path) as env, env.read() as snap:
        env.check()
        keys = {k for k, _ in snap.scan("acked")}
        for i in acked:
            assert b"%08d-0" % i in keys, f"acknowledged commit {i} lost"
        assert int(snap.get("meta", b"last") or b"0") >= acked[-1]


def _hold_write_lock(path: str, conn: Any) -> None:
    env = Environment(path)
    txn = env.write()
    txn.put("t", b"uncommitted", b"x")
    conn.send("holding")
    signal.pause()


def _try_write(path: str) -> None:
    with Environment(path) as env, env.write() as txn:
        txn.put("t", b"after", b"y")


def test_writer_killed_holding_the_lock_does_not_block_the_next(db_path: str) -> None:
    with Environment(db_path) as env:
        with env.write() as txn:
            txn.put("t", b"before", b"0")
        parent, child = CTX.Pipe()
        holder = CTX.Process(target=_hold_write_lock, args=(db_path, child))
        holder.start()
        assert parent.poll(HANG_GUARD_S) and parent.recv() == "holding"
        assert holder.pid is not None
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
        # The next writer (another process) must get the lock by itself.
        nxt = CTX.Process(target=_try_write, args=(db_path,))
        nxt.start()
        assert _reap(nxt) == 0
        with env.read() as snap:
            assert snap.get("t", b"before") == b"0"
            assert snap.get("t", b"uncommitted") is None
            assert snap.get("t", b"after") == b"y"
        # And so does this process, without reopening.
        with env.write() as txn:
            txn.put("t", b"parent", b"z")
        env.check()


# ---- readers killed while holding a snapshot ----------------------------------


def _pinning_reader(path: str, conn: Any) -> None:
    env = Environment(path)
    snap = env.read()
    conn.send((os.getpid(), snap.version))
    signal.pause()


def _overwrite(env: Environment, rounds: int) -> None:
    for r in range(rounds):
        with env.write() as txn:
            for k in range(40):
                txn.put("data", b"%04d" % k, bytes([r % 256]) * 600)


def test_killed_reader_is_reaped_and_its_pages_reused(db_path: str) -> None:
    with Environment(db_path, durability="none") as env:
        _overwrite(env, 3)
        parent, child = CTX.Pipe()
        reader = CTX.Process(target=_pinning_reader, args=(db_path, child))
        reader.start()
        assert parent.poll(HANG_GUARD_S)
        pid, pinned = parent.recv()
        assert any(r.pid == pid and r.version == pinned for r in env.readers())
        # While the reader lives, overwrites cannot reuse what it sees.
        _overwrite(env, 10)
        stats = env.stats()
        assert stats.oldest_version == pinned
        assert stats.pending_pages > 0
        grown = stats.pages_used

        os.kill(pid, signal.SIGKILL)
        reader.join()
        _overwrite(env, 1)  # the next writer reaps the dead reader's slot
        assert all(r.pid != pid for r in env.readers())
        stats = env.stats()
        assert stats.oldest_version != pinned

        # From now on, overwrites reuse freed pages: the file stops growing.
        _overwrite(env, 20)
        settled = env.stats().pages_used
        _overwrite(env, 40)
        after = env.stats().pages_used
        assert after == settled, (grown, settled, after)
        env.check()


def test_reader_check_reaps_dead_readers(db_path: str) -> None:
    with Environment(db_path, durability="none") as env:
        _overwrite(env, 1)
        parent, child = CTX.Pipe()
        reader = CTX.Process(target=_pinning_reader, args=(db_path, child))
        reader.start()
        assert parent.poll(HANG_GUARD_S)
        pid, _ = parent.recv()
        os.kill(pid, signal.SIGKILL)
        reader.join()
        dead = [r for r in env.readers() if r.pid == pid]
        assert all(not r.alive for r in dead)
        assert env.reader_check() == len(dead)
        assert all(r.pid != pid for r in env.readers())


# ---- injected I/O failures ------------------------------------------------------


@pytest.fixture
def disarm_faults() -> Any:
    lib.rp_fault_set(lib.RP_FAULT_NONE, 0)
    yield
    lib.rp_fault_set(lib.RP_FAULT_NONE, 0)


FAULTS = [
    (lib.RP_FAULT_WRITE, StorageIOError),
    (lib.RP_FAULT_SYNC, StorageIOError),
    (lib.RP_FAULT_NOSPACE, DiskFullError),
]


@pytest.mark.parametrize(("kind", "error"), FAULTS, ids=["write", "sync", "nospace"])
def test_injected_io_failure_keeps_previous_data(
    db_path: str, kind: int, error: type[Exception], disarm_faults: Any
) -> None:
    model: dict[bytes, bytes] = {}
    failures = 0
    with Environment(db_path, durability="full") as env:
        with env.write() as txn:
            for k in range(200):
                model[b"%05d" % k] = b"base"
                txn.put("t", b"%05d" % k, b"base")
        for after in range(12):
            nxt = dict(model)
            try:
                with env.write() as txn:
                    # Enough new data to grow the file as well.
                    for k in range(after * 50, after * 50 + 400):
                        key, val = b"%05d" % k, _value(k, 300)
                        txn.put("t", key, val)
                        nxt[key] = val
                    lib.rp_fault_set(kind, after)
            except StorageIOError as exc:
                failures += 1
                assert isinstance(exc, error), exc
                assert exc.errno in (5, 28)
                assert str(db_path) in str(exc)
            else:
                model = nxt  # the fault struck no I/O of this commit
            finally:
                lib.rp_fault_set(lib.RP_FAULT_NONE, 0)
            with env.read() as snap:
                assert dict(snap.scan("t")) == model
            env.check()
        assert failures >= 1, "the fault never struck"
        # Still writable after all that.
        with env.write() as txn:
            txn.put("t", b"final", b"ok")
        model[b"final"] = b"ok"
    with Environment(db_path) as env, env.read() as snap:
        env.check()
        assert dict(snap.scan("t")) == model


def test_enospc_while_growing_is_disk_full(db_path: str, disarm_faults: Any) -> None:
    with Environment(db_path) as env:
        with env.write() as txn:
            txn.put("t", b"k", b"v")
        lib.rp_fault_set(lib.RP_FAULT_NOSPACE, 0)
        with pytest.raises(DiskFullError, match="disk space"), env.write() as txn:
            for k in range(3000):  # megabytes: the file must grow
                txn.put("t", b"%06d" % k, b"x" * 2000)
        lib.rp_fault_set(lib.RP_FAULT_NONE, 0)
        with env.read() as snap:
            assert list(snap.scan("t")) == [(b"k", b"v")]
        env.check()


# ---- power cuts ----------------------------------------------------------------------


def test_power_cut_recovers_last_synced_or_next(db_path: str, disarm_faults: Any) -> None:
    outcomes = {"before": 0, "after": 0}
    for seed in range(1, POWERCUT_ROUNDS + 1):
        rng = random.Random(seed)
        for suffix in ("", ".lock"):
            if os.path.exists(db_path + suffix):
                os.remove(db_path + suffix)
        before: dict[bytes, bytes] = {}
        env = Environment(db_path, durability="full")
        try:
            for _ in range(rng.randint(1, 3)):
                with env.write() as txn:
                    for _ in range(rng.randint(1, 100)):
                        k, v = (
                            b"%04d" % rng.randrange(500),
                            _value(rng.randrange(99), rng.choice((10, 700))),
                        )
                        txn.put("t", k, v)
                        before[k] = v
            after = dict(before)
            assert lib.rp_powercut_record(env._env, 1) == 0
            txn = env.write()
            for _ in range(rng.randint(1, 150)):
                k, v = (
                    b"%04d" % rng.randrange(500),
                    _value(rng.randrange(99), rng.choice((10, 700, 3000))),
                )
                txn.put("t", k, v)
                after[k] = v
            lib.rp_fault_set(lib.RP_FAULT_SYNC, 0)
            with pytest.raises(StorageIOError):
                txn.commit()
        finally:
            lib.rp_fault_set(lib.RP_FAULT_NONE, 0)
        undone = ffi.new("unsigned *")
        assert lib.rp_powercut_apply(env._env, seed, undone) == 0
        env.close()
        with Environment(db_path) as env2:
            env2.check()
            with env2.read() as snap:
                got = dict(snap.scan("t"))
            assert got in (before, after), f"seed {seed}: neither before nor after"
            outcomes["after" if got == after and got != before else "before"] += 1
            with env2.write() as w:  # and the file keeps working
                w.put("t", b"more", b"data")
            env2.check()
    print(f"power cuts: {outcomes}")
    assert outcomes["before"] > 0
