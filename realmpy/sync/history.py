"""Sync state inside the realm file, and the recorder that writes every local change into it.

Why the history lives in the file and is written in the *same* storage
transaction as the data (invariant 7): any process may write — the main
process, a ``disconnected_sync`` secondary, a process that crashes a
microsecond after its commit — and the sync agent must upload exactly what
was committed, no more (a rolled-back write leaves no history) and no less
(a committed write always has its changeset).  So the agent never depends
on memory, a queue or a notification arriving: it scans this history from
its persisted cursor.

Tables (all in the realm's own storage environment, next to ``o:<Class>``):

``_sync.meta``
    ``nonce`` (asks the server for this file's ident, idempotently),
    ``ident`` ``[file_ident, salt, server_salt, user_id]``, ``cv`` (last
    client version written), ``ts`` (last changeset timestamp, kept
    monotone), ``acked`` (last client version the server acknowledged),
    ``dl`` ``[download cursor, latest server version, progress]``,
    ``sub_sent`` (query version the server accepted), ``bootstrapped``
    (query version whose bootstrap's ``last`` batch this file applied; sent
    with every download so the server redoes a bootstrap whose answer was
    lost; absent in files from before it: the server then trusts its own
    record), ``stale`` (a client
    reset is waiting for its bootstrap to finish), ``error`` ``[class name,
    code, status, message]`` (the final error the last agent stopped for;
    ``status``), ``dl_objects`` ``[objects received, objects expected,
    objects of the bootstrap in progress]`` (download progress; ``status``),
    ``up`` ``[objects recorded, bytes recorded, objects acknowledged, bytes
    acknowledged]`` (upload progress; ``Meta.upload_totals``), ``states``
    (the encoding of ``_sync.state`` the file was upgraded to; absent: 1).
``_sync.history``
    8-byte big-endian client version → ``[base_server_version, timestamp,
    [ops]]``: changesets not yet acknowledged (acknowledged ones are removed
    in the transaction that records the acknowledgement).
``_sync.state``
    ``table NUL pk`` → the object's merge state (``merge.ObjectState``): the
    server's state joined with every local operation, stored as little as
    the server allows (``localstate``: covered by the server's state,
    replayed from small changesets, or whole).  Local operations are
    stamped exactly as the server will stamp them (timestamp, file ident,
    client version, op index), so joining a downloaded state is idempotent.
``_sync.subs``
    8-byte query version → the subscription set (see ``subscriptions``).
``_sync.stale``
    keys of objects that must disappear when the bootstrap after a client
    reset completes, unless the server or a pending local change keeps them.
``_sync.quarantine``
    8-byte big-endian client version → ``[history record, [tables], reason]``:
    changesets the server's schema refuses, moved out of the history and never
    uploaded (see ``quarantine``).

Every storage write transaction on a synced file calls the recorder
(:class:`HistoryRecorder`, registered for the ``sync`` history kind with
:func:`realmpy.storage.register_history`), whoever writes.  The sync agent's
own writes (applying downloads, resets, its bookkeeping) opt out with
``env.write(record_history=False)``, so server-originated changes are never
uploaded back.

A write made before the server has assigned the file ident is stamped with
file ident 0; when the ident arrives (one transaction) the states touched by
pending changesets are rebuilt with the real ident, and element references
to ident 0 in queued list operations are translated when uploaded.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Iterator, Sequence
from typing import Any, Final, Union

import realmpy.backlinkindex as backlinkindex
import realmpy.codec as codec
import realmpy.fulltextindex as fulltextindex
from realmpy.layout import (
    META,
    SCHEMA_KEY,
    TABLE_PREFIX,
    index_name,
    table_name,
    zero_value,
)
from realmpy.schema import ObjectSchema, Property, Schema
from realmpy.storage import Snapshot, WriteTransaction, register_history
from realmpy.sync import localstate as L
from realmpy.sync.localstate import STATE, state_key
from realmpy.sync.wirevalues import to_wire_value
from realmpy.wire import merge as M
from realmpy.wire import protocol as P

__all__ = [
    "HISTORY",
    "META_TABLE",
    "STALE",
    "STATE",
    "SUBS",
    "HistoryRecorder",
    "Meta",
    "apply_record",
    "cv_key",
    "state_key",
]

META_TABLE: Final = "_sync.meta"
HISTORY: Final = "_sync.history"
SUBS: Final = "_sync.subs"
STALE: Final = "_sync.stale"

_BE64: Final = struct.Struct(">Q")

Txn = Union[Snapshot, WriteTransaction]


def cv_key(cv: int) -> bytes:
    """The history key of client version ``cv`` (big-endian: scans go in version order)."""
    return _BE64.pack(cv)


def key_cv(key: bytes) -> int:
    return int(_BE64.unpack(key)[0])


def split_state_key(key: bytes) -> tuple[str, Any]:
    table, _, pkb = key.partition(b"\0")
    return table.decode("utf-8"), P.unpack(pkb)


class Meta:
    """Typed access to ``_sync.meta`` inside any transaction."""

    def __init__(self, txn: Txn) -> None:
        self.txn = txn

    def _get(self, key: str) -> Any:
        raw = self.txn.get(META_TABLE, key.encode())
        return None if raw is None else P.unpack(raw)

    def _put(self, key: str, value: Any) -> None:
        txn = self.txn
        assert not isinstance(txn, Snapshot), "meta writes need a write transaction"
        txn.put(META_TABLE, key.encode(), P.pack(value))

    # identity
    def nonce(self) -> str | None:
        v = self._get("nonce")
        return v if isinstance(v, str) else None

    def ensure_nonce(self) -> str:
        n = self.nonce()
        if n is None:
            n = secrets.token_hex(16)
            self._put("nonce", n)
        return n

    def set_nonce(self, nonce: str | None) -> None:
        if nonce is None:
            self.txn.delete(META_TABLE, b"nonce")  # type: ignore[union-attr]
        else:
            self._put("nonce", nonce)

    def ident(self) -> tuple[int, int, int, str] | None:
        v = self._get("ident")
        if not v:
            return None
        return int(v[0]), int(v[1]), int(v[2]), str(v[3])

    def set_ident(self, value: tuple[int, int, int, str] | None) -> None:
        if value is None:
            self.txn.delete(META_TABLE, b"ident")  # type: ignore[union-attr]
        else:
            self._put("ident", list(value))

    def file_ident(self) -> int:
        ident = self.ident()
        return 0 if ident is None else ident[0]

    # versions
    def cv(self) -> int:
        return int(self._get("cv") or 0)

    def set_cv(self, cv: int) -> None:
        self._put("cv", cv)

    def ts(self) -> int:
        return int(self._get("ts") or 0)

    def set_ts(self, ts: int) -> None:
        self._put("ts", ts)

    def acked(self) -> int:
        return int(self._get("acked") or 0)

    def set_acked(self, cv: int) -> None:
        self._put("acked", cv)

    def download(self) -> tuple[int, int, float]:
        v = self._get("dl")
        if not v:
            return 0, 0, 0.0
        return int(v[0]), int(v[1]), float(v[2])

    def set_download(self, cursor: int, latest: int, progress: float) -> None:
        self._put("dl", [cursor, latest, float(progress)])

    def sub_sent(self) -> int:
        return int(self._get("sub_sent") or 0)

    def set_sub_sent(self, qv: int) -> None:
        self._put("sub_sent", qv)

    def bootstrapped(self) -> int | None:
        v = self._get("bootstrapped")
        return None if v is None else int(v)

    def set_bootstrapped(self, qv: int | None) -> None:
        if qv is None:
            self.txn.delete(META_TABLE, b"bootstrapped")  # type: ignore[union-attr]
        else:
            self._put("bootstrapped", qv)

    # upload progress: objects and bytes of changesets recorded / acknowledged (or settled)
    def upload_totals(self) -> tuple[int, int, int, int]:
        """``(objects recorded, bytes recorded, objects acknowledged, bytes acknowledged)`` over
        the file's life.  An object counts once per changeset that changes it; bytes are the
        changeset's encoded operations.  A quarantined or discarded changeset counts as
        acknowledged (settled: it will never be uploaded).  Callers count before they change
        the history: a file from before these counters starts from its pending changesets."""
        v = self._get("up")
        if v is None:  # a file from before these counters: count what is pending once
            objs = nbytes = 0
            for _k, raw in self.txn.scan(HISTORY):
                o, b = changeset_size(raw)
                objs, nbytes = objs + o, nbytes + b
            return objs, nbytes, 0, 0
        return int(v[0]), int(v[1]), int(v[2]), int(v[3])

    def count_upload(
        self, *, recorded: tuple[int, int] = (0, 0), acked: tuple[int, int] = (0, 0)
    ) -> None:
        ro, rb, ao, ab = self.upload_totals()
        ro, rb, ao, ab = ro + recorded[0], rb + recorded[1], ao + acked[0], ab + acked[1]
        self._put("up", [ro, rb, min(ao, ro), min(ab, rb)])

    def count_settled(
        self, records: Sequence[bytes], decoded: Sequence[list[Any]] | None = None
    ) -> None:
        """Count history records that leave the history (acknowledged, quarantined, or
        discarded by a client reset) as uploaded (``decoded``: the records unpacked, if the
        caller has them)."""
        objects = nbytes = 0
        for i, raw in enumerate(records):
            o, b = changeset_size(raw, None if decoded is None else decoded[i])
            objects, nbytes = objects + o, nbytes + b
        if objects or nbytes:
            self.count_upload(acked=(objects, nbytes))

    def states_format(self) -> int:
        """The encoding of ``_sync.state`` the file was upgraded to (``localstate.upgrade``)."""
        return int(self._get("states") or 1)

    def set_states_format(self, version: int) -> None:
        self._put("states", version)

    def stale_pending(self) -> bool:
        return bool(self._get("stale"))

    def set_stale_pending(self, flag: bool) -> None:
        self._put("stale", flag)


def load_state(txn: Txn, table: str, pk: Any) -> M.ObjectState | None:
    """An object's merge state, whole (for steps that never meet a covered one: ``localstate``)."""
    return L.load(txn, table, pk).state


def save_state(txn: WriteTransaction, table: str, pk: Any, state: M.ObjectState | None) -> None:
    L.save(txn, table, pk, state)


def changeset_size(raw: bytes, decoded: list[Any] | None = None) -> tuple[int, int]:
    """``(objects changed, bytes of its operations)`` of a ``_sync.history`` record (the
    operations' bytes do not change when a reset rewrites the record's base); ``decoded``:
    ``raw`` unpacked, if the caller has it."""
    base, ts, ops = P.unpack(raw) if decoded is None else decoded
    objects = len({(w[1], P.pk_key(w[2])) for w in ops})
    return objects, len(raw) - 1 - len(P.pack(base)) - len(P.pack(ts))


def pending_changesets(txn: Txn, after_cv: int) -> Iterator[tuple[int, int, int, list[P.Op]]]:
    """``(cv, base_sv, ts, ops)`` of every recorded changeset with cv > ``after_cv``, in order."""
    for k, v in txn.scan(HISTORY, cv_key(after_cv + 1)):
        base, ts, ops = P.unpack(v)
        yield key_cv(k), int(base), int(ts), [P.Op.from_wire(o) for o in ops]


_schema_cache: dict[bytes, Schema] = {}


def stored_schema(txn: Txn) -> Schema | None:
    """The file's schema (decoded once per distinct stored schema: every recorded commit asks)."""
    raw = txn.get(META, SCHEMA_KEY)
    if raw is None:
        return None
    schema = _schema_cache.get(raw)
    if schema is None:
        if len(_schema_cache) > 64:
            _schema_cache.clear()
        schema = _schema_cache[raw] = Schema.from_dict(codec.unpack_record(raw))
    return schema


def apply_record(
    txn: WriteTransaction, cls: ObjectSchema, pk: Any, rec: dict[str, Any] | None
) -> None:
    """Write (or delete, ``rec=None``) one object as the object layer stores it, indexes included.

    Used for server-originated changes only (the raw transaction bypasses the
    recorder).  Mirrors ``Realm._add``/``Realm.delete``: ``o:<Class>`` keyed
    by the encoded primary key, one ``i:<Class>:<prop>`` entry per index,
    ``b:<Class>:<prop>`` entries per link (:mod:`realmpy.backlinkindex`),
    ``f:<Class>:<prop>`` entries per word (:mod:`realmpy.fulltextindex`).
    """
    key = codec.encode_key(pk)
    table = table_name(cls.name)
    old_raw = txn.get(table, key)
    new_raw = None if rec is None else codec.record_from_dict(rec, cls)
    if new_raw == old_raw:
        return  # unchanged (a device's own changes coming back): no page rewritten
    old = codec.record_to_dict(old_raw, cls) if old_raw is not None else None
    for p in cls.properties:
        if not p.has_index:
            continue
        iname = index_name(cls.name, p.file_name)
        if old is not None:
            txn.delete(iname, codec.encode_keys(old.get(p.name, zero_value(p, None)), pk))
        if rec is not None:
            txn.put(iname, codec.encode_keys(rec[p.name], pk), b"")
    backlinkindex.update(txn, cls, backlinkindex.link_properties(cls), key, old, rec)
    fulltextindex.update(txn, cls, fulltextindex.fulltext_properties(cls), key, old, rec)
    if new_raw is None:
        txn.delete(table, key)
    else:
        txn.put(table, key, new_raw)


# ----------------------------------------------------------------------------- diffs → ops


def _list_ops(
    table: str,
    pk: Any,
    prop: Property,
    before: list[Any],
    after: list[Any],
    ids: list[P.Stamp],
    first_index: int,
    stamp_of: Any,
) -> list[P.Op]:
    """LIST_ERASE/LIST_INSERT ops turning ``before`` into ``after`` (common prefix and suffix kept)."""
    if len(ids) != len(before):  # no usable element ids: replace the whole list
        ids_ok = False
    else:
        ids_ok = True
    ops: list[P.Op] = []
    if ids_ok:
        lo = 0
        while lo < len(before) and lo < len(after) and before[lo] == after[lo]:
            lo += 1
        hi_b, hi_a = len(before), len(after)
        while hi_b > lo and hi_a > lo and before[hi_b - 1] == after[hi_a - 1]:
            hi_b -= 1
            hi_a -= 1
        erase = ids[lo:hi_b]
        insert = after[lo:hi_a]
        anchor: P.Stamp | None = ids[lo - 1] if lo > 0 else None
    else:
        erase = list(ids)
        insert = list(after)
        anchor = None
    for e in erase:
        ops.append(P.Op(P.OpCode.LIST_ERASE, table, pk, prop.name, None, e))
    for v in insert:
        op = P.Op(P.OpCode.LIST_INSERT, table, pk, prop.name, v, anchor)
        anchor = stamp_of(first_index + len(ops))
        ops.append(op)
    return ops


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (``1``, ``1.0`` and ``True`` differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def _embedded_ops(
    table: str,
    pk: Any,
    path: str,
    cls: ObjectSchema,
    schema: Schema,
    before: dict[str, Any],
    after: dict[str, Any],
) -> list[P.Op]:
    """Path-level SET/ADD ops turning embedded map ``before`` into ``after`` (both present).

    Writing only what changed (``address.city``) lets concurrent edits of
    different fields of one embedded object both survive the merge; a nested
    embedded object replaced by or with null, and a collection inside an
    embedded object, are written whole at their path (the protocol's rule).
    """
    ops: list[P.Op] = []
    for p in cls.properties:
        old, new = before.get(p.name), after.get(p.name)
        if _same(old, new):
            continue
        sub = f"{path}.{p.name}"
        if (
            p.collection is None
            and p.type == "embedded"
            and isinstance(old, dict)
            and isinstance(new, dict)
        ):
            assert p.target is not None
            ops.extend(_embedded_ops(table, pk, sub, schema[p.target], schema, old, new))
        elif (
            p.collection is None
            and p.type == "counter"
            and isinstance(old, int)
            and isinstance(new, int)
        ):
            ops.append(P.Op(P.OpCode.ADD, table, pk, sub, new - old))
        else:
            ops.append(P.Op(P.OpCode.SET, table, pk, sub, new))
    return ops


def _set_ops(
    table: str, pk: Any, name: str, old: list[Any], new: list[Any], created: bool
) -> list[P.Op]:
    before = {M.elem_key(v): v for v in old}
    after = {M.elem_key(v): v for v in new}
    ops = [
        P.Op(P.OpCode.SET_ERASE, table, pk, name, before[k])
        for k in sorted(before.keys() - after.keys())
    ]
    ops += [
        P.Op(P.OpCode.SET_ADD, table, pk, name, after[k])
        for k in sorted(after if created else after.keys() - before.keys())
    ]
    return ops


def _dict_ops(
    table: str, pk: Any, name: str, old: dict[str, Any], new: dict[str, Any], created: bool
) -> list[P.Op]:
    ops = [
        P.Op(P.OpCode.DICT_ERASE, table, pk, name, key=k) for k in sorted(old.keys() - new.keys())
    ]
    ops += [
        P.Op(P.OpCode.DICT_SET, table, pk, name, new[k], key=k)
        for k in sorted(new)
        if created or k not in old or not _same(old[k], new[k])
    ]
    return ops


def diff_ops(
    cls: ObjectSchema,
    pk: Any,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    state: M.ObjectState | None,
    first_index: int,
    stamp_of: Any,
    schema: Schema | None = None,
    covered: bool = False,
) -> list[P.Op]:
    """The operations that turn stored record ``before`` into ``after`` (None = absent).

    ``schema`` (the file's) is needed when ``cls`` holds embedded objects.
    ``covered``: ``state`` is partial, the object exists in the server's state
    (``localstate``): a change to it is an update.
    """
    table = cls.name
    if after is None:
        return [] if before is None else [P.Op(P.OpCode.ERASE, table, pk)]
    ops: list[P.Op] = []
    created = before is None or (not covered and (state is None or not state.alive))
    if created:
        ops.append(P.Op(P.OpCode.CREATE, table, pk))
    for prop in cls.properties:
        if prop.primary_key:
            continue
        new = to_wire_value(prop, after.get(prop.name, zero_value(prop, None)), schema)
        old = (
            None
            if before is None
            else to_wire_value(prop, before.get(prop.name, zero_value(prop, None)), schema)
        )
        coll = prop.collection
        if coll == "list":
            if created and before is None:
                old_list: list[Any] = []
                ids: list[P.Stamp] = []
            else:
                old_list = list(old or [])
                ids = M.list_element_ids(state, prop.name) if state is not None else []
            if not _same(new, old_list) or (created and before is not None):
                ops.extend(
                    _list_ops(
                        table, pk, prop, old_list, list(new), ids, first_index + len(ops), stamp_of
                    )
                )
            continue
        if coll == "set":
            ops.extend(_set_ops(table, pk, prop.name, list(old or []), list(new), created))
            continue
        if coll == "dict":
            ops.extend(_dict_ops(table, pk, prop.name, dict(old or {}), dict(new), created))
            continue
        if not created and _same(new, old):
            continue
        if prop.type == "counter" and not created and isinstance(old, int) and isinstance(new, int):
            ops.append(P.Op(P.OpCode.ADD, table, pk, prop.name, new - old))
        elif (
            prop.type == "embedded"
            and not created
            and isinstance(old, dict)
            and isinstance(new, dict)
            and schema is not None
            and prop.target is not None
        ):
            ops.extend(_embedded_ops(table, pk, prop.name, schema[prop.target], schema, old, new))
        else:
            ops.append(P.Op(P.OpCode.SET, table, pk, prop.name, new))
    return ops


# ----------------------------------------------------------------------------- the recorder


class HistoryRecorder:
    """The ``sync`` history's write observer: records the changeset of a
    write transaction's object changes at commit, in that transaction.

    Every storage write transaction on a file whose history kind is
    ``sync`` calls one (:func:`realmpy.storage.register_history`, at the end
    of this module): changes to object tables (``o:<Class>``) remember each
    object's image before its first change; before commit the before and
    after images are diffed into protocol operations, appended to
    ``_sync.history`` under the next client version, and the objects'
    merge states updated.  Because the storage layer calls it on every
    mutation, no write method can skip recording.
    """

    __slots__ = ("_before",)

    def __init__(self) -> None:
        self._before: dict[tuple[str, bytes], bytes | None] = {}

    def before_change(self, txn: WriteTransaction, table: str, keys: Sequence[bytes]) -> None:
        if not table.startswith(TABLE_PREFIX):
            return
        before = self._before
        for key in keys:
            if (table, key) not in before:
                before[(table, key)] = txn.get(table, key)

    def before_drop(self, txn: WriteTransaction, table: str) -> None:
        if table.startswith(TABLE_PREFIX):
            self.before_change(txn, table, [k for k, _ in txn.scan(table)])

    def before_commit(self, txn: WriteTransaction) -> None:
        if self._before:
            record_changeset(txn, self._before)
            self._before = {}


def record_changeset(txn: WriteTransaction, before: dict[tuple[str, bytes], bytes | None]) -> int:
    """Diff the touched objects and append their changeset; returns its client version (0 if empty)."""
    schema = stored_schema(txn)
    if schema is None:
        return 0
    meta = Meta(txn)
    cv = meta.cv() + 1
    ts = max(M.now_ms(), meta.ts())
    base = meta.download()[0]
    fi = meta.file_ident()

    def stamp_of(i: int) -> P.Stamp:
        return P.Stamp(ts, fi, cv, i)

    ops: list[P.Op] = []
    touched: list[tuple[str, Any, L.Local, int]] = []
    for (table, key), old_raw in sorted(before.items()):
        name = table[2:]
        if name not in schema:
            continue
        cls = schema[name]
        new_raw = txn.get(table, key)
        if new_raw == old_raw:
            continue
        pk = codec.decode_key(key)[0]
        old = codec.record_to_dict(old_raw, cls) if old_raw is not None else None
        new = codec.record_to_dict(new_raw, cls) if new_raw is not None else None
        loc = L.load(txn, name, pk)
        start = len(ops)
        ops.extend(
            diff_ops(cls, pk, old, new, loc.state, start, stamp_of, schema, covered=loc.covered)
        )
        if len(ops) > start:
            touched.append((name, pk, loc, start))
    if not ops:
        return 0
    # Update merge states (local ops are stamped as the server will stamp them).  A state that
    # is nothing yet or already a replay of small changesets stays a replay (``localstate``).
    small = len(ops) <= L.DERIVE_MAX_OPS
    ends = [t[3] for t in touched[1:]] + [len(ops)]
    for (name, pk, loc, start), end in zip(touched, ends):
        st = loc.state if loc.state is not None else M.ObjectState()
        for i in range(start, end):
            st.apply(ops[i], stamp_of(i), base, None)
        derivable = (
            loc.state is None
            or (loc.covered and not loc.derived and _only_version(st, fi, cv))
            or (loc.derived and loc.file_ident == fi)
        )
        if small and derivable and len(loc.derived) < L.DERIVE_MAX_VERSIONS:
            L.save(
                txn,
                name,
                pk,
                st,
                covered_at=loc.covered_at,
                derived=(*loc.derived, cv),
                file_ident=fi,
            )
        else:
            L.save(txn, name, pk, st, covered_at=loc.covered_at)
    ops_raw = P.pack([o.to_wire() for o in ops])
    meta.count_upload(recorded=(len(touched), len(ops_raw)))  # before the put: see upload_totals
    # ``[base, ts, ops]``: a msgpack array of 3 (0x93) written piecewise to reuse ``ops_raw``.
    txn.put(HISTORY, cv_key(cv), b"\x93" + P.pack(base) + P.pack(ts) + ops_raw)
    meta.set_cv(cv)
    meta.set_ts(ts)
    return cv


def _only_version(state: M.ObjectState, fi: int, cv: int) -> bool:
    """True if every entry of ``state`` is an operation of changeset ``cv`` of this file."""
    return all(s.file_ident == fi and s.client_version == cv for s in state.stamps())


register_history("sync", HistoryRecorder)
