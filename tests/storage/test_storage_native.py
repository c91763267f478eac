"""The native hot paths (csrc/py/storage.c) on the cases their C code
handles itself: scan batches that outgrow the iterator's buffer, a
history-key write seen through the native put, and a snapshot that
outlives the last reference to its environment."""

from __future__ import annotations

import gc
import multiprocessing as mp
from typing import Any

import msgpack  # type: ignore[import-untyped,unused-ignore]
import pytest

from realmpy.errors import TransactionError
from realmpy.storage import HISTORY_KEY, HISTORY_TABLE, Environment

# Value sizes around the scan iterator's buffers (16 KiB first, 1 MiB at
# most, grown to fit one record when it does not).
SIZES = [0, 1, 100, 16 << 10, (16 << 10) + 1, 200_000, (1 << 20) + 7, 3 << 20, 5]


def _value(i: int, size: int) -> bytes:
    return bytes([i % 251]) * size


@pytest.fixture
def filled(db_path: str) -> Any:
    with Environment(db_path, durability="none") as env:
        expect = {}
        with env.write() as txn:
            for i, size in enumerate(SIZES * 3):
                key, val = b"k%03d" % i, _value(i, size)
                txn.put("t", key, val)
                expect[key] = val
        yield env, expect


def test_scans_outgrow_their_buffer(filled: Any) -> None:
    env, expect = filled
    items = sorted(expect.items())
    with env.read() as snap:
        assert list(snap.scan("t")) == items
        assert list(snap.scan("t", reverse=True)) == items[::-1]
        assert list(snap.scan("t", b"k005", b"k020")) == [
            kv for kv in items if b"k005" <= kv[0] < b"k020"
        ]
        assert list(snap.scan("t", b"k005", b"k020", reverse=True)) == [
            kv for kv in items[::-1] if b"k005" <= kv[0] < b"k020"
        ]


def test_msgpack_scans_outgrow_their_buffer(db_path: str) -> None:
    docs = {b"d%02d" % i: ["x" * (i * 40_000), i] for i in range(40)}
    with Environment(db_path, durability="none") as env:
        with env.write() as txn:
            for k, doc in docs.items():
                txn.put("docs", k, msgpack.packb(doc))
        with env.read() as snap:
            assert dict(snap.scan_msgpack("docs")) == docs
            assert [k for k, _ in snap.scan_msgpack("docs", reverse=True)] == sorted(docs)[::-1]


def test_history_key_written_through_the_native_put(db_path: str) -> None:
    """put() of _meta/history is noticed by the native path: a file made
    synced in this very transaction looks its history kind up again at the
    next change (the sync layer's observer then records from that write)."""
    with Environment(db_path, durability="none") as env, env.write() as txn:
        observers = []
        for step in (
            lambda: txn.put("t", b"k", b"v"),  # no history kind stored: None
            lambda: txn.put(HISTORY_TABLE, b"other", b"x"),  # another key: still None
            lambda: txn.put(HISTORY_TABLE, HISTORY_KEY, b"local"),  # look it up again
            lambda: txn.delete("t", b"k"),  # looked up: "local" keeps none
        ):
            step()
            observers.append(txn._observer is None)
        assert observers == [True, True, False, True]


def test_snapshot_outlives_the_last_reference_to_its_environment(db_path: str) -> None:
    env = Environment(db_path, durability="none")
    with env.write() as txn:
        txn.put("t", b"k", b"v")
    snap = env.read()
    del env
    gc.collect()  # the snapshot keeps its environment alive
    assert snap.get("t", b"k") == b"v"
    snap._env.close()  # this thread's snapshot ends with it
    with pytest.raises(TransactionError, match="closed with its environment"):
        snap.get("t", b"k")


def _use_inherited_transactions(snap: Any, txn: Any, conn: Any) -> None:
    """In a forked child: every native call on the parent's transactions."""
    calls = {
        "get": lambda: snap.get("t", b"k"),
        "scan": lambda: list(snap.scan("t")),
        "put": lambda: txn.put("t", b"k", b"child"),
        "delete": lambda: txn.delete("t", b"k"),
        "commit": txn.commit,
    }
    seen = {}
    for name, call in calls.items():
        try:
            call()
            seen[name] = "no error"
        except BaseException as exc:
            seen[name] = type(exc).__name__
    conn.send(seen)


def test_forked_child_cannot_use_inherited_transactions(db_path: str) -> None:
    ctx = mp.get_context("fork")
    with Environment(db_path) as env:
        with env.write() as txn:
            txn.put("t", b"k", b"v")
        snap, txn = env.read(), env.write()
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_use_inherited_transactions, args=(snap, txn, child))
        p.start()
        assert parent.poll(120)
        assert set(parent.recv().values()) == {"ForkedError"}
        p.join(120)
        assert p.exitcode == 0
        txn.put("t", b"k", b"parent")  # the parent's handles are unaffected
        txn.commit()
        assert snap.get("t", b"k") == b"v"
        snap.end()
