"""Model-based test of the storage layer against a dict of dicts.

A hypothesis ``RuleBasedStateMachine`` drives puts, batch puts, deletes,
drops, gets, ordered scans (both directions, with and without bounds),
commits, aborts, reopens and several concurrently held snapshots.  Every
snapshot is checked against the model *as of its version*, so a snapshot
that saw a later commit (or lost an earlier one) fails the test.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import msgpack  # type: ignore[import-untyped,unused-ignore]
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from realmpy.errors import TransactionError
from realmpy.storage import Environment, Snapshot, WriteTransaction

Model = dict[str, dict[bytes, bytes]]

TABLES = st.sampled_from(["a", "b", "cars", "\u00e9t\u00e9"])
# Small alphabet so keys collide and bounds fall between keys.
SMALL_KEYS = st.lists(st.sampled_from(b"ab\x00\xff"), min_size=1, max_size=4).map(bytes)
LONG_KEYS = st.binary(min_size=1000, max_size=1024)
KEYS = st.one_of(SMALL_KEYS, SMALL_KEYS, SMALL_KEYS, LONG_KEYS)
# Bounds may be empty or longer than any key (MAX_KEY = 1024).
BOUNDS = st.one_of(
    st.none(),
    SMALL_KEYS,
    SMALL_KEYS,
    st.just(b""),
    st.binary(min_size=1025, max_size=1030),
)
VALUES = st.one_of(
    st.binary(max_size=40),
    st.binary(max_size=40),
    st.binary(min_size=900, max_size=3000),  # around the overflow threshold
    st.binary(min_size=9000, max_size=20000),  # multi-page overflow runs
)


def model_scan(
    table: dict[bytes, bytes] | None,
    start: bytes | None,
    stop: bytes | None,
    reverse: bool,
) -> list[tuple[bytes, bytes]]:
    if not table:
        return []
    items = sorted(
        (k, v)
        for k, v in table.items()
        if (start is None or k >= start) and (stop is None or k < stop)
    )
    return items[::-1] if reverse else items


class StorageMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="realmpy-model-")
        self.path = f"{self.dir}/model.db"
        self.env = Environment(self.path, durability="none")
        self.committed: Model = {}
        self.version = self.env.version
        self.history: dict[int, Model] = {self.version: {}}
        self.txn: WriteTransaction | None = None
        self.pending: Model = {}
        self.snaps: list[tuple[Snapshot, int]] = []
        self.compactions = 0

    def teardown(self) -> None:
        self.env.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- write transaction ------------------------------------------------

    @precondition(lambda self: self.txn is None)
    @rule()
    def begin_write(self) -> None:
        self.txn = self.env.write()
        assert self.txn.version == self.version
        self.pending = copy.deepcopy(self.committed)

    @precondition(lambda self: self.txn is not None)
    @rule(table=TABLES, key=KEYS, value=VALUES)
    def put(self, table: str, key: bytes, value: bytes) -> None:
        assert self.txn is not None
        self.txn.put(table, key, value)
        self.pending.setdefault(table, {})[key] = value

    @precondition(lambda self: self.txn is not None)
    @rule(
        table=TABLES,
        pairs=st.lists(st.tuples(SMALL_KEYS, st.binary(max_size=100)), min_size=1),
    )
    def put_many(self, table: str, pairs: list[tuple[bytes, bytes]]) -> None:
        assert self.txn is not None
        assert self.txn.put_many(table, pairs) == len(pairs)
        self.pending.setdefault(table, {}).update(pairs)

    @precondition(lambda self: self.txn is not None)
    @rule(table=TABLES, key=KEYS)
    def delete(self, table: str, key: bytes) -> None:
        assert self.txn is not None
        existed = key in self.pending.get(table, {})
        assert self.txn.delete(table, key) is existed
        if existed:
            del self.pending[table][key]

    @precondition(lambda self: self.txn is not None)
    @rule(table=TABLES)
    def drop(self, table: str) -> None:
        assert self.txn is not None
        assert self.txn.drop(table) is (table in self.pending)
        self.pending.pop(table, None)

    @precondition(lambda self: self.txn is not None)
    @rule(table=TABLES, key=KEYS)
    def get_in_txn(self, table: str, key: bytes) -> None:
        assert self.txn is not None
        assert self.txn.get(table, key) == self.pending.get(table, {}).get(key)

    @precondition(lambda self: self.txn is not None)
    @rule(table=TABLES, start=BOUNDS, stop=BOUNDS, reverse=st.booleans())
    def scan_in_txn(
        self, table: str, start: bytes | None, stop: bytes | None, reverse: bool
    ) -> None:
        assert self.txn is not None
        got = list(self.txn.scan(table, start=start, stop=stop, reverse=reverse))
        assert got == model_scan(self.pending.get(table), start, stop, reverse)
        assert self.txn.count(table) == len(self.pending.get(table, {}))

    @precondition(lambda self: self.txn is not None)
    @rule()
    def commit(self) -> None:
        assert self.txn is not None
        self.txn.commit()
        assert not self.txn.active
        self.txn = None
        new = self.env.version
        # An empty commit may or may not make a new version.
        assert new in (self.version, self.version + 1)
        if new == self.version:
            assert self.pending == self.committed
        self.version = new
        self.committed = self.pending
        self.history[new] = copy.deepcopy(self.committed)

    @precondition(lambda self: self.txn is not None)
    @rule()
    def abort(self) -> None:
        assert self.txn is not None
        self.txn.abort()
        self.txn = None
        assert self.env.version == self.version

    @precondition(lambda self: self.txn is not None)
    @rule()
    def exception_in_with_block_aborts(self) -> None:
        assert self.txn is not None
        with pytest.raises(KeyError), self.txn:
            self.txn.put("a", b"doomed", b"x")
            raise KeyError("boom")
        assert not self.txn.active
        self.txn = None
        assert self.env.version == self.version

    # ---- snapshots ------------------------------------------------------------

    @precondition(lambda self: len(self.snaps) < 3)
    @rule()
    def open_snapshot(self) -> None:
        snap = self.env.read()
        assert snap.version == self.version
        self.snaps.append((snap, self.version))

    @precondition(lambda self: bool(self.snaps))
    @rule(
        i=st.integers(0, 2),
        table=TABLES,
        key=KEYS,
        start=BOUNDS,
        stop=BOUNDS,
        reverse=st.booleans(),
    )
    def check_snapshot(
        self,
        i: int,
        table: str,
        key: bytes,
        start: bytes | None,
        stop: bytes | None,
        reverse: bool,
    ) -> None:
        snap, version = self.snaps[i % len(self.snaps)]
        model = self.history[version]
        assert snap.version == version
        assert snap.get(table, key) == model.get(table, {}).get(key)
        got = list(snap.scan(table, start=start, stop=stop, reverse=reverse))
        assert got == model_scan(model.get(table), start, stop, reverse)
        assert snap.tables() == sorted(model)
        keys = [key, b"a", b"b"]
        assert snap.get_many(table, keys) == [model.get(table, {}).get(k) for k in keys]

    @precondition(lambda self: bool(self.snaps))
    @rule(i=st.integers(0, 2))
    def end_snapshot(self, i: int) -> None:
        snap, _ = self.snaps.pop(i % len(self.snaps))
        with snap:
            pass
        assert not snap.active
        with pytest.raises(TransactionError):
            snap.get("a", b"a")

    # ---- whole environment ----------------------------------------------------

    @precondition(lambda self: self.txn is None)
    @rule()
    def integrity_check(self) -> None:
        self.env.check()
        stats = self.env.stats()
        assert stats.version == self.version
        assert stats.tables == len(self.committed)
        assert stats.entries == sum(len(t) for t in self.committed.values())

    @precondition(lambda self: self.txn is None)
    @rule()
    def compact_copy_matches(self) -> None:
        self.compactions += 1
        dest = f"{self.dir}/compact-{self.compactions}.db"
        self.env.compact(dest)
        with Environment(dest, durability="none") as copy, copy.read() as snap:
            copy.check()
            assert snap.tables() == sorted(self.committed)
            for table, rows in self.committed.items():
                assert list(snap.scan(table)) == sorted(rows.items())

    @rule()
    def reopen(self) -> None:
        """Close with open transactions (they end), then open again."""
        open_txns: list[Snapshot | WriteTransaction] = [s for s, _ in self.snaps]
        if self.txn is not None:
            open_txns.append(self.txn)
        self.env.close()
        for t in open_txns:
            assert not t.active
            with pytest.raises(TransactionError):
                t.get("a", b"a")
        self.snaps = []
        self.txn = None
        self.env = Environment(self.path, durability="none")
        assert self.env.version == self.version
        self.env.check()
        with self.env.read() as snap:
            for table, rows in self.committed.items():
                assert list(snap.scan(table)) == sorted(rows.items())

    @invariant()
    def version_is_stable(self) -> None:
        # No other writer exists: only our commits move the version.
        assert self.env.version == self.version


TestStorageModel = StorageMachine.TestCase


def test_tables_in_a_write_transaction_see_its_own_changes(db_path: str) -> None:
    with Environment(db_path, durability="none") as env:
        with env.write() as txn:
            txn.put("a", b"k", b"v")
            assert txn.tables() == ["a"]
        with env.write() as txn:
            txn.drop("a")
            txn.put("b", b"k", b"v")
            assert txn.tables() == ["b"]


def test_snapshot_refresh_moves_to_the_latest_version(db_path: str) -> None:
    with Environment(db_path, durability="none") as env:
        with env.write() as txn:
            txn.put("t", b"k", b"1")
        with env.read() as snap:
            first = snap.version
            assert snap.get("t", b"k") == b"1"
            with env.write() as txn:
                txn.put("t", b"k", b"2")
            assert snap.get("t", b"k") == b"1"  # a snapshot never moves by itself
            snap.refresh()
            assert snap.version == first + 1 == env.version
            assert snap.get("t", b"k") == b"2"
            assert [r.version for r in env.readers() if r.version] == [first + 1]
        assert [r.version for r in env.readers() if r.version] == []


def test_commit_returns_the_new_version(db_path: str) -> None:
    with Environment(db_path, durability="none") as env:
        txn = env.write()
        txn.put("t", b"k", b"v")
        assert txn.commit() == env.version


@given(
    docs=st.dictionaries(
        st.binary(min_size=1, max_size=20),
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text() | st.binary(),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=5), inner, max_size=4)
            ),
            max_leaves=8,
        ),
        max_size=40,
    ),
    absent=st.lists(st.binary(min_size=1, max_size=20), max_size=5),
)
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_msgpack_scans_and_gets_decode_like_plain_ones(
    db_path: str, docs: dict[bytes, object], absent: list[bytes]
) -> None:
    """scan_msgpack / get_many_msgpack == plain scan / get_many + unpackb."""
    with Environment(db_path, durability="none") as env:
        with env.write() as txn:
            txn.drop("docs")
            txn.put_many("docs", ((k, msgpack.packb(v)) for k, v in docs.items()))
        with env.read() as snap:
            for reverse in (False, True):
                plain = [
                    (k, msgpack.unpackb(v, raw=False))
                    for k, v in snap.scan("docs", reverse=reverse)
                ]
                assert list(snap.scan_msgpack("docs", reverse=reverse)) == plain
            keys = list(docs) + [k for k in absent if k not in docs]
            want = [None if v is None else msgpack.unpackb(v) for v in snap.get_many("docs", keys)]
            assert snap.get_many_msgpack("docs", keys) == want
            assert snap.get_many_msgpack("no such table", keys[:1]) == [None] * len(keys[:1])


def test_ascending_puts_append_through_deletes_drops_and_cursors(tmp_path: Path) -> None:
    """Puts in ascending key order skip the descent while they land at the
    end of the rightmost leaf the previous put left; anything that changes
    the table in between (deletes, overwrites, a drop and re-creation,
    splits, other tables) must send the next put down the tree again."""
    model: dict[bytes, bytes] = {}

    def key(i: int) -> bytes:
        return i.to_bytes(4, "big")

    def check(txn: Any) -> None:
        assert list(txn.scan("t")) == sorted(model.items())

    with Environment(str(tmp_path / "a.db"), durability="none") as env:
        with env.write() as txn:
            for i in range(0, 4000, 2):  # ascending, many splits
                v = bytes([i % 251]) * (i % 97)
                txn.put("t", key(i), v)
                model[key(i)] = v
                if i % 500 == 0:
                    txn.put("u", key(i), b"other table")
                if i and i % 700 == 0:  # delete near the right edge, then go on
                    assert txn.delete("t", key(i - 2)) == (key(i - 2) in model)
                    model.pop(key(i - 2), None)
                if i % 900 == 0:  # an overwrite of the last key
                    txn.put("t", key(i), b"again")
                    model[key(i)] = b"again"
            check(txn)
            for i in range(1, 300, 2):  # keys between existing ones
                txn.put("t", key(i), b"mid")
                model[key(i)] = b"mid"
            txn.put("t", key(5000), b"end")
            model[key(5000)] = b"end"
            check(txn)
            assert txn.drop("t")
            model.clear()
            for i in range(6000, 6600):  # the same table again, ascending
                txn.put("t", key(i), b"x" * (i % 50))
                model[key(i)] = b"x" * (i % 50)
            check(txn)
        with env.read() as snap:
            check(snap)
        with env.write() as txn:  # a new txn: the old tail is not its own
            for i in range(6600, 7000):
                txn.put("t", key(i), b"y")
                model[key(i)] = b"y"
            check(txn)
        with env.read() as snap:
            check(snap)
