"""History recording is a storage-level hook: every write transaction on a
file whose history kind is registered calls its observer (invariant 7 holds
for plain ``Environment.write()`` too, not only for writes through a realm).
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from realmpy.config import Configuration
from realmpy.layout import table_name
from realmpy.objectid import ObjectId
from realmpy.realm import Realm
from realmpy.schema import Object, field
from realmpy.storage import (
    HISTORY_KEY,
    HISTORY_TABLE,
    Environment,
    Snapshot,
    WriteTransaction,
    register_history,
)
from realmpy.sync.history import HISTORY, Meta
from realmpy.wire import protocol as P


class Item(Object):
    id: ObjectId = field(primary_key=True, default_factory=ObjectId)
    name: str = ""


def _history(env: Environment) -> tuple[int, list[list[P.Op]]]:
    with env.read() as snap:
        changesets = [P.unpack(v) for _, v in snap.scan(HISTORY)]
        return Meta(snap).cv(), [[P.Op.from_wire(o) for o in c[2]] for c in changesets]


def test_plain_environment_write_on_a_synced_file_records_its_changeset(tmp_path: Path) -> None:
    path = str(tmp_path / "h.realm")
    realm = Realm(Configuration.disconnected_sync([Item], path=path))
    with realm.write():
        a = realm.add(Item(name="a"))
        b = realm.add(Item(name="b"))
    keys = (a._rp_key, b._rp_key)
    realm.close()

    with Environment(path, durability="none") as env:
        cv, _ = _history(env)
        table = table_name("Item")
        with env.write() as txn:  # no realm, no wrapper: the storage layer records
            assert txn.delete(table, keys[0])
        with env.write() as txn:
            raw = txn.get(table, keys[1])
            assert raw is not None
            txn.drop(table)
        cv_after, changesets = _history(env)
        assert cv_after == cv + 2
        assert [[op.code for op in ops] for ops in changesets[-2:]] == [
            [P.OpCode.ERASE],
            [P.OpCode.ERASE],
        ]
        # The sync client's own writes (applying the server's changes) opt out.
        with env.write(record_history=False) as txn:
            txn.put(table, keys[1], raw)
        assert _history(env)[0] == cv_after


def test_a_process_that_imports_only_storage_records_too(tmp_path: Path) -> None:
    """Invariant 7 in another process that never names the sync layer: the
    package registers the recorder whatever module is imported first."""
    path = str(tmp_path / "h.realm")
    realm = Realm(Configuration.disconnected_sync([Item], path=path))
    with realm.write():
        a = realm.add(Item(name="a"))
    key = a._rp_key
    realm.close()
    with Environment(path, durability="none") as env:
        cv = _history(env)[0]
    script = (
        "import sys\n"
        "from realmpy.storage import Environment\n"
        "with Environment(sys.argv[1], durability='none') as env, env.write() as txn:\n"
        "    txn.delete(sys.argv[2], bytes.fromhex(sys.argv[3]))\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, path, table_name("Item"), key.hex()], check=True, timeout=60
    )
    with Environment(path, durability="none") as env:
        assert _history(env)[0] == cv + 1


class _Seen:
    """A test history's observer: what it was told, in order."""

    log: ClassVar[list[tuple[str, str, tuple[bytes, ...]]]] = []

    def before_change(self, txn: WriteTransaction, table: str, keys: Sequence[bytes]) -> None:
        self.log.append(("change", table, tuple(keys)))

    def before_drop(self, txn: WriteTransaction, table: str) -> None:
        self.log.append(("drop", table, ()))

    def before_commit(self, txn: WriteTransaction) -> None:
        self.log.append(("commit", "", ()))


def test_every_write_method_calls_the_observer(tmp_path: Path) -> None:
    """The class of bug: a write method that forgets to tell the history.
    Each mutating method of WriteTransaction is exercised here, and the test
    fails when WriteTransaction grows a public method it does not know."""
    register_history("test-observer", _Seen)
    _Seen.log.clear()
    with Environment(str(tmp_path / "o.db"), durability="none") as env:
        with env.write() as txn:
            txn.put(HISTORY_TABLE, HISTORY_KEY, b"test-observer")
        with env.write() as txn:
            txn.put("t", b"k1", b"v")
            txn.put_many("t", [(b"k2", b"v"), (b"k3", b"v")])
            txn.put_columns("t", [b"k4"], [b"v"])
            txn.delete("t", b"k1")
            txn.drop("t")
            # Writes that bypass these methods are refused where a history records.
            assert not txn.allows_direct()
    assert _Seen.log == [
        ("change", "t", (b"k1",)),
        ("change", "t", (b"k2", b"k3")),
        ("change", "t", (b"k4",)),
        ("change", "t", (b"k1",)),
        ("drop", "t", ()),
        ("commit", "", ()),
    ]
    exercised = {"put", "put_many", "put_columns", "delete", "drop", "commit", "allows_direct"}
    not_writes = {n for n, _ in inspect.getmembers(Snapshot) if not n.startswith("_")}
    # an engine error; what it changed, keeping and storing that (no object change)
    not_writes |= {"raise_error", "changed", "record_changes", "track_changes"}
    public = {n for n, _ in inspect.getmembers(WriteTransaction) if not n.startswith("_")}
    assert public - not_writes == exercised
