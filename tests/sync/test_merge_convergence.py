"""Three simulated clients, random concurrent operations, random delivery → everyone converges.

Each hypothesis example runs a fresh server store (SQLite and PostgreSQL) behind
the real ``SyncService``.  Clients write locally (applying their own ops at
once), upload all or part of their unacknowledged changesets (responses may be
"lost", so changesets are re-sent: retries and duplicates), and download
(sometimes from an old cursor again, in small batches).  At the end every
client's objects equal the server's, and both equal an independent,
brute-force evaluation of the merge rule over the server's history.
"""

from __future__ import annotations

import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realmpy.server.auth import Principal
from realmpy.server.config import ServerConfig
from realmpy.server.sync_service import SyncService
from realmpy.server.testing import make_store
from realmpy.wire.merge import ObjectState, list_element_ids, now_ms
from realmpy.wire.protocol import (
    Changeset,
    DownloadRequest,
    FieldSpec,
    Op,
    OpCode,
    Stamp,
    SubscriptionRequest,
    TableSpec,
    UploadRequest,
    pack,
    pk_key,
    unpack,
)

SCHEMA = {
    "Car": TableSpec(
        "id",
        {
            "id": FieldSpec("int"),
            "make": FieldSpec("string", optional=True),
            "miles": FieldSpec("counter"),
            "tags": FieldSpec("string", collection="list"),
            "labels": FieldSpec("string", collection="set"),
            "prefs": FieldSpec("int", optional=True, collection="dict"),
            "addr": FieldSpec("embedded", optional=True, target="Address"),
        },
    ),
    "Address": TableSpec(
        "",
        {"city": FieldSpec("string", optional=True), "n": FieldSpec("counter")},
        embedded=True,
    ),
}
PKS = (1, 2, 3)
EXAMPLES = int(
    os.environ.get("REALMPY_CONVERGENCE_EXAMPLES", "40" if os.environ.get("CI") else "15")
)


@dataclass
class SimClient:
    """A client's local file: object states, history of unacknowledged changesets, cursors."""

    principal: Principal
    file_ident: int
    salt: int
    clock: int
    cv: int = 0
    acked: int = 0
    cursor: int = 0
    token: bytes | None = None
    states: dict[tuple[str, Any], ObjectState] = field(default_factory=dict)
    pending: list[Changeset] = field(default_factory=list)

    def write(self, ops: list[Op], tick: int) -> None:
        self.cv += 1
        self.clock = max(self.clock + 1, tick)
        cs = Changeset(self.cv, self.cursor, self.clock, tuple(ops))
        self.pending.append(cs)
        self._apply_local(cs)

    def _apply_local(self, cs: Changeset) -> None:
        for i, op in enumerate(cs.ops):
            st_ = self.states.setdefault((op.table, op.pk), ObjectState())
            st_.apply(
                op,
                Stamp(cs.timestamp, self.file_ident, cs.client_version, i),
                cs.base_server_version,
                None,
            )

    def record(self, pk: int) -> dict[str, Any] | None:
        st_ = self.states.get(("Car", pk))
        return None if st_ is None else st_.materialize("id", pk)


def random_ops(c: SimClient, rnd: random.Random) -> list[Op]:
    ops: list[Op] = []
    for _ in range(rnd.randint(1, 3)):
        pk = rnd.choice(PKS)
        rec = c.record(pk)
        kind = rnd.choice(
            [
                "create",
                "set",
                "add",
                "ins",
                "lerase",
                "erase",
                "sadd",
                "serase",
                "dset",
                "derase",
                "eset",
                "epath",
                "eadd",
            ]
            if rec
            else ["create", "create", "erase"]
        )
        if kind == "create":
            ops.append(Op(OpCode.CREATE, "Car", pk))
        elif kind == "erase":
            ops.append(Op(OpCode.ERASE, "Car", pk))
        elif kind == "set":
            ops.append(Op(OpCode.SET, "Car", pk, "make", rnd.choice(["VW", "Audi", None])))
        elif kind == "add":
            ops.append(Op(OpCode.ADD, "Car", pk, "miles", rnd.randint(-5, 5)))
        elif kind in ("sadd", "serase"):
            code = OpCode.SET_ADD if kind == "sadd" else OpCode.SET_ERASE
            ops.append(Op(code, "Car", pk, "labels", rnd.choice("xyz")))
        elif kind == "dset":
            val = rnd.choice([None, 1, 2, 3])
            ops.append(Op(OpCode.DICT_SET, "Car", pk, "prefs", val, key=rnd.choice("kl")))
        elif kind == "derase":
            ops.append(Op(OpCode.DICT_ERASE, "Car", pk, "prefs", key=rnd.choice("kl")))
        elif kind == "eset":
            emb: Any = rnd.choice([None, {"city": "Oslo", "n": 1}, {"city": None}, {"n": 4}])
            ops.append(Op(OpCode.SET, "Car", pk, "addr", emb))
        elif kind == "epath":
            ops.append(Op(OpCode.SET, "Car", pk, "addr.city", rnd.choice(["Rome", "Bonn"])))
        elif kind == "eadd":
            ops.append(Op(OpCode.ADD, "Car", pk, "addr.n", rnd.randint(-3, 3)))
        else:
            ids = list_element_ids(c.states[("Car", pk)], "tags")
            if kind == "ins":
                after = rnd.choice([None, *ids])
                ops.append(Op(OpCode.LIST_INSERT, "Car", pk, "tags", rnd.choice("abc"), after))
            elif ids:
                ops.append(Op(OpCode.LIST_ERASE, "Car", pk, "tags", None, rnd.choice(ids)))
    return ops


def upload(svc: SyncService, c: SimClient, rnd: random.Random, *, everything: bool = False) -> None:
    todo = [cs for cs in c.pending if cs.client_version > c.acked]
    if not everything and todo:
        todo = todo[: rnd.randint(1, len(todo))]
    # retries: sometimes re-send already acknowledged changesets too
    resend = [cs for cs in c.pending if cs.client_version <= c.acked]
    if resend and not everything and rnd.random() < 0.3:
        todo = resend[-rnd.randint(1, len(resend)) :] + todo
    if not todo:
        return
    res = svc.upload(c.principal, UploadRequest(c.file_ident, c.salt, tuple(todo)))
    if everything or rnd.random() < 0.75:  # else: the response was "lost"
        c.acked = res.acked_client_version


def download(
    svc: SyncService, c: SimClient, rnd: random.Random, *, until_steady: bool = False
) -> None:
    for _ in range(10_000):
        after = c.cursor
        if not until_steady and rnd.random() < 0.2:
            after = rnd.randint(0, c.cursor)  # re-download from an older cursor (duplicates)
        req = DownloadRequest(
            c.file_ident,
            c.salt,
            after,
            c.token,
            0,
            rnd.choice([150, 400, 1 << 20]),
            # the client holds its own operations: it may ask not to get them back
            skip_own=rnd.random() < 0.5,
        )
        res = svc.download(c.principal, req)
        if not until_steady and rnd.random() < 0.15:
            return  # the response was "lost"
        for e in res.entries:
            key = (e.table, e.pk)
            if e.kind == "state":
                local = c.states.setdefault(key, ObjectState())
                from realmpy.wire.merge import join

                c.states[key] = join(local, ObjectState.from_wire(e.state))
            elif e.kind == "forget":
                c.states.pop(key, None)
            else:  # reset: replace, then re-apply unacknowledged local changesets
                c.states[key] = ObjectState() if e.state is None else ObjectState.from_wire(e.state)
                for cs in c.pending:
                    if cs.client_version > c.acked:
                        c._apply_local(cs)
        c.cursor, c.token = res.server_version, res.bootstrap_token
        c.acked = max(c.acked, res.acked_client_version)
        if res.batch == "steady" or (res.batch == "last" and not until_steady):
            return
    raise AssertionError("download never reached steady state")


# --------------------------------------------------------------------------- the oracle


def rga_order(inserts: dict[Stamp, Op]) -> list[Stamp]:
    """Depth-first from the head; siblings newest first."""
    order: list[Stamp] = []

    def walk(parent: Stamp | None) -> None:
        kids = sorted((s for s, op in inserts.items() if op.elem == parent), reverse=True)
        for child in kids:
            order.append(child)
            walk(child)

    walk(None)
    return order


def predict(
    history: list[tuple[int, int, int, int, int, bytes]],
) -> dict[int, dict[str, Any] | None]:
    """Brute-force merge rule over the whole history (no compaction, no incremental state)."""
    per_obj: dict[int, list[tuple[Op, Stamp, int, int]]] = {}
    for sv, fi, cv, ts, base, blob in history:
        for i, raw in enumerate(unpack(blob)):
            if raw is None:
                continue  # refused by a permission rule
            op = Op.from_wire(raw)
            assert isinstance(op.pk, int)
            per_obj.setdefault(op.pk, []).append((op, Stamp(ts, fi, cv, i), base, sv))
    out: dict[int, dict[str, Any] | None] = {}
    for pk, ops in per_obj.items():
        tombs = [(s, sv) for op, s, _, sv in ops if op.code == OpCode.ERASE]

        def saw(s: Stamp, base: int, t: Stamp, tsv: int) -> bool:
            same = s.file_ident == t.file_ident and (s.client_version, s.op_index) > (
                t.client_version,
                t.op_index,
            )
            return same or tsv <= base

        live = [
            (op, s)
            for op, s, base, _ in ops
            if op.code != OpCode.ERASE and all(saw(s, base, t, tsv) for t, tsv in tombs)
        ]
        if not any(op.code == OpCode.CREATE for op, _ in live):
            out[pk] = None
            continue
        rec: dict[str, Any] = {"id": pk}
        sets = sorted(
            (s, op.value) for op, s in live if op.code == OpCode.SET and op.field == "make"
        )
        if sets:
            rec["make"] = sets[-1][1]
        msets = sorted(
            (s, op.value) for op, s in live if op.code == OpCode.SET and op.field == "miles"
        )
        adds = sorted(
            (s, op.value) for op, s in live if op.code == OpCode.ADD and op.field == "miles"
        )
        if msets or adds:
            base_s, base_v = msets[-1] if msets else (None, 0)
            rec["miles"] = (base_v or 0) + sum(d for s, d in adds if base_s is None or s > base_s)
        inserts = {s: op for op, s in live if op.code == OpCode.LIST_INSERT}
        erased = {op.elem for op, _, _, _ in ops if op.code == OpCode.LIST_ERASE}
        if inserts:
            order = rga_order(inserts)
            rec["tags"] = [inserts[s].value for s in order if s not in erased]
        # sets: observed-remove (an add survives every erase that had not observed it)
        live_full = [
            (op, s, base, sv)
            for op, s, base, sv in ops
            if op.code != OpCode.ERASE and all(saw(s, base, t, tsv) for t, tsv in tombs)
        ]
        set_adds = [(op, s, sv) for op, s, _, sv in live_full if op.code == OpCode.SET_ADD]
        set_erases = [(op, s, b) for op, s, b, _ in live_full if op.code == OpCode.SET_ERASE]
        if set_adds:

            def observed(a_s: Stamp, a_sv: int, r_s: Stamp, r_base: int) -> bool:
                same = a_s.file_ident == r_s.file_ident and (r_s.client_version, r_s.op_index) > (
                    a_s.client_version,
                    a_s.op_index,
                )
                return same or a_sv <= r_base

            present = {
                op.value
                for op, a_s, a_sv in set_adds
                if not any(
                    r.value == op.value and observed(a_s, a_sv, r_s, r_b)
                    for r, r_s, r_b in set_erases
                )
            }
            rec["labels"] = sorted(present, key=pack)
        # dictionaries: per key, the highest-stamped set or erase
        dict_ops = sorted(
            (s, op) for op, s in live if op.code in (OpCode.DICT_SET, OpCode.DICT_ERASE)
        )
        if dict_ops:
            d: dict[str, Any] = {}
            for _, op in dict_ops:
                assert op.key is not None
                if op.code == OpCode.DICT_SET:
                    d[op.key] = op.value
                else:
                    d.pop(op.key, None)
            rec["prefs"] = dict(sorted(d.items()))
        # embedded object: every write to addr or a path below it, replayed in stamp order
        emb = sorted(
            (s, op)
            for op, s in live
            if op.code in (OpCode.SET, OpCode.ADD)
            and op.field is not None
            and (op.field == "addr" or op.field.startswith("addr."))
        )
        if emb:
            root: dict[str, Any] = {}
            for _, op in emb:
                assert op.field is not None
                parts = op.field.split(".")
                parent: Any = root
                for part in parts[:-1]:
                    parent = parent.get(part) if isinstance(parent, dict) else None
                if not isinstance(parent, dict):
                    continue
                if op.code == OpCode.SET:
                    parent[parts[-1]] = dict(op.value) if isinstance(op.value, dict) else op.value
                else:
                    parent[parts[-1]] = (parent.get(parts[-1]) or 0) + op.value
            rec["addr"] = root.get("addr")
        out[pk] = rec
    return out


# --------------------------------------------------------------------------- the test


def test_three_clients_converge_to_the_merge_rule(kind: str) -> None:  # kind: tests/conftest.py
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.integers(0, 2**32), st.integers(5, 40))
    def run(seed: int, steps: int) -> None:
        rnd = random.Random(seed)
        with tempfile.TemporaryDirectory() as d, make_store(kind, Path(d)) as store:
            svc = SyncService(store, ServerConfig(schema=SCHEMA))
            clients = []
            t0 = now_ms() - 100_000
            for n in range(3):
                p = Principal(f"user{n}", f"s{n}", "anonymous", None)
                ident = svc.ident(p, f"nonce-{n}-xxxxxxxx")
                c = SimClient(p, ident.file_ident, ident.salt, t0)
                svc.set_subscriptions(
                    p,
                    SubscriptionRequest(c.file_ident, c.salt, 1, {"Car": (("TRUEPREDICATE", ()),)}),
                )
                clients.append(c)
            for step in range(steps):
                c = rnd.choice(clients)
                action = rnd.random()
                if action < 0.5:
                    c.write(random_ops(c, rnd), t0 + step * rnd.randint(0, 3))
                elif action < 0.75:
                    upload(svc, c, rnd)
                else:
                    download(svc, c, rnd)
            for c in clients:
                upload(svc, c, rnd, everything=True)
            for c in clients:
                download(svc, c, rnd, until_steady=True)
            with store.transaction(write=False) as tx:
                history = tx.history(0, 1_000_000)
                server = {
                    pk: (
                        ObjectState.from_wire(unpack(r.state)).materialize("id", pk)
                        if (r := tx.get_object("Car", pk_key(pk)))
                        else None
                    )
                    for pk in PKS
                }
            expected = predict(history)
            for pk in PKS:
                assert server[pk] == expected.get(pk), (
                    f"server disagrees with the merge rule on {pk}"
                )
                for c in clients:
                    assert c.record(pk) == server[pk], f"client {c.file_ident} diverged on {pk}"
            # nothing applied twice: one history entry per (file, client version)
            seen = [(fi, cv) for _, fi, cv, _, _, _ in history]
            assert len(seen) == len(set(seen))
            assert sum(len(c.pending) for c in clients) == len(seen)

    run()
