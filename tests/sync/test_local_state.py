"""How a client stores merge states (``realmpy/sync/localstate.py``; issue 12, item 5).

Only what the server does not hold is stored: a state made of small local
changesets is replayed from the history, a state the server holds (after an
acknowledgement, or a download that showed all of it) is one flag.  These
tests drive the client's own integration steps on a file without a server
(the agent calls the same functions), so every step is deterministic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from realmpy import Configuration, Realm
from realmpy.objectid import ObjectId
from realmpy.schema import Object, field
from realmpy.sync import integrate
from realmpy.sync import localstate as L
from realmpy.sync.history import HISTORY, Meta, pending_changesets
from realmpy.wire import merge as M
from realmpy.wire import protocol as P

FI = 7  # the file ident "the server" assigned


class Item(Object):
    id: ObjectId = field(primary_key=True, default_factory=ObjectId)
    name: str = ""
    blob: str = ""


class Tagged(Object):
    id: ObjectId = field(primary_key=True, default_factory=ObjectId)
    tags: list[str] = field(default_factory=list)


def _open(tmp: Path, *, ident: bool = True) -> Realm:
    realm = Realm(Configuration.disconnected_sync([Item, Tagged], path=str(tmp / "s.realm")))
    if ident:
        with realm._env.write(record_history=False) as txn:
            Meta(txn).set_ident((FI, 1, 1, "user"))  # what the agent stores first
    return realm


def _raw(realm: Realm, table: str, pk: Any) -> bytes | None:
    with realm._env.read() as snap:
        return snap.get(L.STATE, L.state_key(table, pk))


def _load(realm: Realm, table: str, pk: Any) -> L.Local:
    with realm._env.read() as snap:
        return L.load(snap, table, pk)


def _replayed(realm: Realm, table: str, pk: Any, fi: int) -> M.ObjectState:
    """The state every pending local op of one object makes, applied one by one (the reference)."""
    st = M.ObjectState()
    key = P.pk_key(pk)
    with realm._env.read() as snap:
        for cv, base, ts, ops in pending_changesets(snap, 0):
            for i, op in enumerate(ops):
                if op.table == table and P.pk_key(op.pk) == key:
                    st.apply(op, P.Stamp(ts, fi, cv, i), base, None)
    return st


def _last_ops(realm: Realm) -> list[P.Op]:
    with realm._env.read() as snap:
        return list(pending_changesets(snap, 0))[-1][3]


def _download(realm: Realm, server_version: int, entries: list[P.DownloadEntry]) -> None:
    with realm._env.read() as snap:
        after = Meta(snap).download()[0]
    resp = P.DownloadResponse(
        server_version, server_version, 1, 0, 0, "steady", 1.0, tuple(entries)
    )
    assert integrate.apply_download(realm._env, resp, after, FI, 1).applied


def test_offline_states_are_replayed_from_small_changesets(tmp_path: Path) -> None:
    with _open(tmp_path, ident=False) as realm:
        a, b = Item(name="a", blob="x" * 64), Item(name="b")
        with realm.write():
            realm.add(a)
        with realm.write():
            realm.add(b)
        with realm.write():
            a.name = "a2"
        for pk in (a.id, b.id):
            raw = _raw(realm, "Item", pk)
            assert raw is not None and raw[0] == 0xC1 and len(raw) < 16  # the values live once
            assert _load(realm, "Item", pk).state == _replayed(realm, "Item", pk, 0)
        # A bulk write (more than DERIVE_MAX_OPS operations) stores its states whole.
        with realm.write():
            many = [realm.add(Item(name=str(i))) for i in range(L.DERIVE_MAX_OPS)]
        raw = _raw(realm, "Item", many[0].id)
        assert raw is not None and raw[0] != 0xC1
        # An object written more than DERIVE_MAX_VERSIONS times is stored whole too.
        for i in range(L.DERIVE_MAX_VERSIONS):
            with realm.write():
                b.name = f"b{i}"
        raw = _raw(realm, "Item", b.id)
        assert raw is not None and raw[0] != 0xC1
        assert _load(realm, "Item", b.id).state == _replayed(realm, "Item", b.id, 0)


def test_an_acknowledged_state_is_one_flag_and_the_next_download_restores_it(
    tmp_path: Path,
) -> None:
    with _open(tmp_path) as realm:
        x = Item(name="a", blob="b")
        with realm.write():
            realm.add(x)
        with realm._env.read() as snap:
            cv, base, ts, ops = next(pending_changesets(snap, 0))
        server = M.ObjectState()  # the server's state of x after integrating the upload at 20
        for i, op in enumerate(ops):
            server.apply(op, P.Stamp(ts, FI, cv, i), base, 20)
        assert integrate.record_ack(realm._env, FI, cv, 20)
        loc = _load(realm, "Item", x.id)
        assert loc.covered_at == 20 and loc.state == M.ObjectState()
        raw = _raw(realm, "Item", x.id)
        assert raw is not None and len(raw) < 8

        # A later local change is an update of the covered object: the changed field only.
        with realm.write():
            x.name = "a2"
        assert [(o.code, o.field) for o in _last_ops(realm)] == [(P.OpCode.SET, "name")]

        # An answer read before the server integrated the upload (at 15) cannot show it: the
        # object is left alone (it comes again: it changed after that answer's cursor).
        stale = M.ObjectState()
        stale.apply(P.Op(P.OpCode.CREATE, "Item", x.id), P.Stamp(1, 9, 1, 0), 0, 3)
        stale.apply(P.Op(P.OpCode.SET, "Item", x.id, "name", "old"), P.Stamp(1, 9, 1, 1), 0, 3)
        _download(realm, 15, [P.DownloadEntry("state", "Item", x.id, stale.to_wire())])
        realm.refresh()
        assert (x.name, x.blob) == ("a2", "b")

        # The next answer carries the server's whole state (another device's newer blob): joined
        # with the pending local change, nothing is lost.
        server.apply(
            P.Op(P.OpCode.SET, "Item", x.id, "blob", "remote"), P.Stamp(ts + 1, 9, 2, 0), 20, 21
        )
        _download(realm, 21, [P.DownloadEntry("state", "Item", x.id, server.to_wire())])
        realm.refresh()
        assert (x.name, x.blob) == ("a2", "remote")
        loc = _load(realm, "Item", x.id)
        assert not loc.covered and loc.state is not None and loc.state.alive  # a2 is pending


def test_a_download_that_shows_everything_leaves_one_flag(tmp_path: Path) -> None:
    with _open(tmp_path) as realm:
        pk = ObjectId()
        server = M.ObjectState()
        server.apply(P.Op(P.OpCode.CREATE, "Item", pk), P.Stamp(5, 9, 1, 0), 0, 4)
        server.apply(P.Op(P.OpCode.SET, "Item", pk, "name", "n"), P.Stamp(5, 9, 1, 1), 0, 4)
        _download(realm, 4, [P.DownloadEntry("state", "Item", pk, server.to_wire())])
        assert _load(realm, "Item", pk).covered_at == 4
        # The same state again (a device's own changes coming back): the flag is not rewritten.
        _download(realm, 6, [P.DownloadEntry("state", "Item", pk, server.to_wire())])
        assert _load(realm, "Item", pk).covered_at == 4
        found = realm.find(Item, pk)
        assert found is not None and found.name == "n"
        with realm.write():
            found.blob = "local"
        assert [(o.code, o.field) for o in _last_ops(realm)] == [(P.OpCode.SET, "blob")]


def test_list_states_and_pending_changes_stay_whole(tmp_path: Path) -> None:
    with _open(tmp_path) as realm:
        t = Tagged(tags=["a", "b"])
        y = Item(name="y")
        with realm.write():
            realm.add(t)
            realm.add(y)
        with realm._env.read() as snap:
            acked = next(pending_changesets(snap, 0))[0]
        with realm.write():
            y.name = "pending"
        assert integrate.record_ack(realm._env, FI, acked, 20)
        # A list's element ids live only in its state; y has a change not acknowledged yet.
        for table, pk in (("Tagged", t.id), ("Item", y.id)):
            loc = _load(realm, table, pk)
            assert not loc.covered and loc.state is not None and loc.state.alive
        with realm.write():
            t.tags.append("c")
        ops = _last_ops(realm)
        assert [o.code for o in ops] == [P.OpCode.LIST_INSERT]
        assert ops[0].elem is not None  # after "b", by its id


def test_a_state_in_the_older_encoding_is_read(tmp_path: Path) -> None:
    """Files written before this encoding hold every state whole (a msgpack array)."""
    with _open(tmp_path) as realm:
        z = Item(name="z")
        with realm.write():
            realm.add(z)
        whole = _load(realm, "Item", z.id).state
        assert whole is not None
        with realm._env.write(record_history=False) as txn:
            txn.put(L.STATE, L.state_key("Item", z.id), P.pack(whole.to_wire()))
        assert _load(realm, "Item", z.id) == L.Local(whole)
        with realm.write():
            z.name = "z2"
        assert [(o.code, o.field) for o in _last_ops(realm)] == [(P.OpCode.SET, "name")]
        with realm._env.read() as snap:
            assert snap.count(HISTORY) == 2


def test_an_older_file_s_states_shrink_once_when_the_agent_starts(tmp_path: Path) -> None:
    with _open(tmp_path) as realm:
        x, y = Item(name="x"), Item(name="y")
        with realm.write():
            realm.add(x)
            realm.add(y)
        with realm.write():
            y.name = "pending"
        with realm._env.write(record_history=False) as txn:  # as an older realmpy left it
            Meta(txn).set_acked(1)
            for item in (x, y):
                whole = _replayed(realm, "Item", item.id, FI)
                txn.put(L.STATE, L.state_key("Item", item.id), P.pack(whole.to_wire()))
        with realm._env.write(record_history=False) as txn:
            assert L.upgrade(txn) == 1
            assert Meta(txn).states_format() == L.STATES_FORMAT
        assert _load(realm, "Item", x.id) == L.Local(M.ObjectState(), covered_at=0)
        y_state = _load(realm, "Item", y.id)  # its pending change keeps it whole
        assert not y_state.covered and y_state.state == _replayed(realm, "Item", y.id, FI)
        with realm._env.write(record_history=False) as txn:
            assert L.upgrade(txn) is None


def test_settling_an_acknowledgement_without_replaying_stores_what_the_replay_would(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """``localstate.cover_derived`` (the fast path of ``_trim_history``) decides from the
    operations' codes; every state must come out byte for byte as the full check stores it:
    created, updated, erased, list-written, written again after the acknowledged version."""
    import shutil

    realm = _open(tmp_path)
    a, b, c = Item(name="a"), Item(name="b"), Item(name="c")
    t = Tagged(tags=["x"])
    with realm.write():
        realm.add(a)
    with realm.write():
        realm.add(b)
        realm.add(t)
    with realm.write():
        a.name = "a2"
        realm.add(c)
    with realm.write():
        realm.delete(c)
    with realm.write():
        b.name = "b-later"  # past the acknowledged version: stays derived (stored whole)
    realm.close()
    acked = 4
    results = []
    real = L.cover_derived
    decided: list[bool] = []

    def counted(*args: Any, **kw: Any) -> bool:
        decided.append(real(*args, **kw))
        return decided[-1]

    for fast in (True, False):
        copy = tmp_path / f"copy-{fast}"
        copy.mkdir()
        for f in tmp_path.glob("s.realm*"):
            shutil.copy(f, copy / f.name)
        with monkeypatch.context() as m:
            m.setattr(L, "cover_derived", counted if fast else lambda *a, **k: False)
            r = Realm(Configuration.disconnected_sync([Item, Tagged], path=str(copy / "s.realm")))
            assert integrate.record_ack(r._env, FI, acked, 40)
            with r._env.read() as snap:
                results.append(list(snap.scan(L.STATE)))
            r.close()
    assert results[0] == results[1]
    assert True in decided and False in decided  # both paths were taken
    assert any(raw.startswith(b"\xc1") and P.unpack(raw[1:])[0] == 40 for _k, raw in results[0])
