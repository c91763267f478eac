"""Integrating what the server sends into the local file, and client resets.

Why each function is one local transaction: a download batch, the object
records it rewrites, their merge states and the download cursor commit
together or not at all (invariant 9), so a crash at any instruction either
keeps the old cursor — the batch is fetched again and, because joining merge
states is idempotent, applied again harmlessly — or keeps everything.  The
transaction also checks that the cursor is still the one the request was made
from, so a stale response (an agent that was replaced mid-request) is
dropped instead of applied twice.

These writes use the raw storage transaction, not the recorder: changes that
came from the server are never recorded for upload.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import realmpy.codec as codec
from realmpy.layout import table_name, zero_value
from realmpy.schema import ObjectSchema, Schema
from realmpy.storage import Environment, WriteTransaction
from realmpy.sync import localstate as L
from realmpy.sync.history import (
    HISTORY,
    STALE,
    STATE,
    Meta,
    apply_record,
    cv_key,
    key_cv,
    load_state,
    pending_changesets,
    save_state,
    split_state_key,
    state_key,
    stored_schema,
)
from realmpy.sync.tombstones import collectable
from realmpy.sync.wirevalues import record_from_state_values
from realmpy.wire import merge as M
from realmpy.wire import protocol as P

__all__ = [
    "DownloadResult",
    "UploadBatch",
    "apply_download",
    "assign_ident",
    "client_reset",
    "record_ack",
    "upload_changesets",
]


@dataclass
class DownloadResult:
    """What one applied batch did (for logs, progress and error handlers)."""

    applied: bool
    objects: int = 0
    forgotten: int = 0
    rejected: list[P.RejectedWrite] = field(default_factory=list)
    reset_needed: str | None = None


def _defaults(cls: ObjectSchema) -> dict[str, Any]:
    return {p.name: zero_value(p, None) for p in cls.properties}


def _write_object(
    txn: WriteTransaction, schema: Schema, table: str, pk: Any, state: M.ObjectState | None
) -> None:
    cls = schema[table]
    assert cls.primary_key is not None
    rec = None
    if state is not None:
        values = state.materialize(cls.primary_key, pk)
        if values is not None:
            rec = record_from_state_values(cls, values, _defaults(cls), schema)
            rec[cls.primary_key] = pk
    apply_record(txn, cls, pk, rec)


def _reapply_pending(
    txn: WriteTransaction, state: M.ObjectState, table: str, pk: Any, after_cv: int, fi: int
) -> None:
    key = P.pk_key(pk)
    for cv, base, ts, ops in pending_changesets(txn, after_cv):
        for i, op in enumerate(ops):
            if op.table == table and P.pk_key(op.pk) == key:
                state.apply(op, P.Stamp(ts, fi, cv, i), base, None)


def apply_download(
    env: Environment,
    resp: P.DownloadResponse,
    after: int,
    fi: int,
    server_salt: int,
    on_subscription: Callable[[WriteTransaction, P.DownloadResponse], None] | None = None,
    is_current: Callable[[], bool] = lambda: True,
) -> DownloadResult:
    """Apply one download batch and move the cursor, in one local transaction."""
    result = DownloadResult(applied=False)
    if resp.server_salt != server_salt:
        result.reset_needed = (
            "the server's history salt changed (the server was restored or replaced)"
        )
        return result
    with env.write(record_history=False) as txn:
        meta = Meta(txn)
        ident = meta.ident()
        if ident is None or ident[0] != fi or meta.download()[0] != after or not is_current():
            txn.abort()
            return result  # someone else applied it, or the file was reset meanwhile
        schema = stored_schema(txn)
        assert schema is not None
        acked = max(meta.acked(), resp.acked_client_version)
        # The cursor this batch moves to: the server's, always.  A bootstrap's ``more`` batches
        # answer the old cursor; an incremental ``more`` batch (the per-batch cap) answers the
        # last server version it finished, and keeping the old cursor there would ask for the
        # same batch again forever.
        new_cursor = resp.server_version
        for e in resp.entries:
            if e.table not in schema:
                continue
            try:
                if e.kind == "state":
                    incoming = M.ObjectState.from_wire(e.state)
                    loc = L.load(txn, e.table, e.pk)  # partial if covered: the join restores it
                    if loc.covered_at is not None and resp.server_version < loc.covered_at:
                        # Read before the server integrated what this file forgot: this object
                        # comes again in a later answer (it changed after this cursor), unless
                        # its state there holds only this file's operations (``skip_own``),
                        # which this file never forgets.
                        continue
                    old = loc.state
                    st = incoming if old is None else M.join(old, incoming)
                    _store_settled(
                        txn, e.table, e.pk, st, incoming, loc, fi=fi, acked=acked, cursor=new_cursor
                    )
                    _write_object(txn, schema, e.table, e.pk, st)
                    txn.delete(STALE, state_key(e.table, e.pk))
                    result.objects += 1
                elif e.kind == "forget":
                    save_state(txn, e.table, e.pk, None)
                    _write_object(txn, schema, e.table, e.pk, None)
                    result.forgotten += 1
                else:  # reset: a compensating write
                    st = M.ObjectState() if e.state is None else M.ObjectState.from_wire(e.state)
                    _reapply_pending(txn, st, e.table, e.pk, acked, fi)
                    save_state(txn, e.table, e.pk, st if st.alive or st.tombs else None)
                    _write_object(txn, schema, e.table, e.pk, st)
                    if e.error is not None:
                        result.rejected.append(e.error)
            except (P.ProtocolError, codec.CodecError, TypeError, ValueError, KeyError) as exc:
                # A state this client cannot represent (e.g. a type changed on the server): skip the
                # object rather than corrupt the file; the error reaches the session's handler.
                result.rejected.append(
                    P.RejectedWrite(
                        0, e.table, e.pk, f"cannot apply server state: {exc}", resp.server_version
                    )
                )
        progress = 1.0 if resp.batch != "more" else min(resp.progress, 0.99)
        meta.set_download(new_cursor, resp.latest_server_version, progress)
        if resp.batch == "last":
            meta.set_bootstrapped(resp.query_version)
        if acked > meta.acked():
            meta.set_acked(acked)
            _trim_history(txn, acked, new_cursor)
        if (
            resp.batch in ("last", "steady")
            and meta.stale_pending()
            and resp.query_version == _served_query_version(txn)
        ):
            # Only the bootstrap of the (re-sent) newest subscription set decides what the server
            # keeps; if the server refused that set, it serves the new identity nothing (version
            # 0), and its first answer ends the reset (uploads wait for this: never forever).
            _rebase_pending(txn, schema, fi, resp.server_version)
            _drop_stale(txn, schema)
            meta.set_stale_pending(False)
        if on_subscription is not None:
            on_subscription(txn, resp)
    result.applied = True
    return result


def _served_query_version(txn: WriteTransaction) -> int:
    """The set the server serves a reset file: the newest, or none (0) if it refused it."""
    from realmpy.sync.subscriptions import _read

    qv, rec = _read(txn)
    return 0 if rec["state"] == "error" else qv


def _store_settled(
    txn: WriteTransaction,
    table: str,
    pk: Any,
    st: M.ObjectState,
    incoming: M.ObjectState,
    old: L.Local,
    *,
    fi: int,
    acked: int,
    cursor: int,
) -> None:
    """Store a downloaded state joined into the local one as little as the server lets us:
    nothing for a collectable tombstone (``tombstones``), the covered flag alone when the
    server's answer holds every entry (``localstate``), else whole."""
    if collectable(st, file_ident=fi, acked=acked, cursor=cursor):
        L.save(txn, table, pk, None)
    elif L.covered_by_download(txn, st, incoming):
        if not (old.covered and not old.derived and old.state == M.ObjectState()):
            # (A flag already alone stays: every later answer is at or past this one.)
            L.save(txn, table, pk, None, covered_at=cursor)
    else:
        L.save(txn, table, pk, st)


def _trim_history(txn: WriteTransaction, acked: int, server_version: int) -> None:
    """Drop the acknowledged changesets (integrated by ``server_version``) and settle the
    states of the objects they touched (``localstate``): the covered flag alone once the
    server holds every entry, whole if derived from a dropped changeset; those of the
    objects they erased are dropped once nothing can need them any more (``tombstones``)."""
    meta = Meta(txn)
    fi, cursor = meta.file_ident(), meta.download()[0]
    touched: dict[bytes, tuple[str, Any]] = {}
    codes: dict[bytes, dict[int, set[int]]] = {}  # state key -> client version -> op codes
    erased: list[tuple[str, Any]] = []
    trimmed = list(txn.scan(HISTORY, None, cv_key(acked + 1)))
    decoded = [P.unpack(raw) for _k, raw in trimmed]  # [base, ts, ops]: decoded once
    meta.count_settled([raw for _k, raw in trimmed], decoded)
    for (k_cv, _raw), (_base, _ts, ops) in zip(trimmed, decoded):
        cv = key_cv(k_cv)
        prev: tuple[str, Any] | None = None
        k = b""
        for w in ops:  # [code, table, pk, ...]: our own history, decoded cheaply
            if (
                prev is None
                or prev[0] != w[1]
                or prev[1] != w[2]
                or type(prev[1]) is not type(w[2])
            ):
                prev = (w[1], w[2])  # (a changeset's ops on one object are usually adjacent)
                k = state_key(w[1], w[2])
                if k not in touched:
                    touched[k] = prev
            codes.setdefault(k, {}).setdefault(cv, set()).add(w[0])
            if w[0] == P.OpCode.ERASE:
                erased.append((w[1], w[2]))
    reset_pending = meta.stale_pending()
    for k, (table, pk) in touched.items():
        if not reset_pending and L.cover_derived(
            txn, k, codes[k], file_ident=fi, acked=acked, server_version=server_version
        ):
            continue  # (the common case, decided without replaying the changesets)
        loc = L.load(txn, table, pk)
        if L.covered_by_ack(txn, loc, file_ident=fi, acked=acked):
            at = max(server_version, loc.covered_at or 0)
            L.save(txn, table, pk, None, covered_at=at)
        elif loc.derived:
            L.save(txn, table, pk, loc.state, covered_at=loc.covered_at)
    for k, _raw in trimmed:
        txn.delete(HISTORY, k)
    for table, pk in erased:
        st = load_state(txn, table, pk)
        if st is not None and collectable(st, file_ident=fi, acked=acked, cursor=cursor):
            save_state(txn, table, pk, None)


def record_ack(env: Environment, fi: int, acked: int, server_version: int) -> bool:
    """Persist an upload acknowledgement (integrated by ``server_version``) and drop the
    acknowledged history (one transaction)."""
    with env.write(record_history=False) as txn:
        meta = Meta(txn)
        ident = meta.ident()
        if ident is None or ident[0] != fi:
            txn.abort()
            return False
        if acked <= meta.acked():
            txn.abort()
            return True
        meta.set_acked(acked)
        _trim_history(txn, acked, server_version)
    return True


def _rebase_pending(txn: WriteTransaction, schema: Schema, fi: int, base: int) -> None:
    """After a reset's bootstrap: the changesets kept (or written) meanwhile saw that bootstrap.

    The protocol's reset re-applies them with ``base_server_version`` = the new
    cursor: the server refuses an upload based below its history horizon
    (``history_trimmed``), so a recovered changeset still based on version 0
    would reset the client again, forever.  Their local merge states are
    rebuilt with the new base too (the bootstrap's tombstones purged the
    candidates that claimed to have seen nothing), and the objects rewritten.
    """
    changesets = list(pending_changesets(txn, Meta(txn).acked()))
    states: dict[bytes, tuple[str, Any, M.ObjectState]] = {}
    for cv, _old_base, ts, ops in changesets:
        txn.put(HISTORY, cv_key(cv), P.pack([base, ts, [o.to_wire() for o in ops]]))
        for i, op in enumerate(ops):
            k = state_key(op.table, op.pk)
            entry = states.get(k)
            if entry is None:
                entry = states[k] = (
                    op.table,
                    op.pk,
                    _without_origin(load_state(txn, op.table, op.pk), fi),
                )
            entry[2].apply(_restamp(op, fi), P.Stamp(ts, fi, cv, i), base, None)
    for table, pk, st in states.values():
        save_state(txn, table, pk, st)
        if table in schema:
            _write_object(txn, schema, table, pk, st)


def _without_origin(state: M.ObjectState | None, fi: int) -> M.ObjectState:
    return M.ObjectState() if state is None else state.without_origin(fi)


def _drop_stale(txn: WriteTransaction, schema: Schema) -> None:
    """After a reset's bootstrap: remove objects neither the server nor a pending change kept."""
    for k, _ in list(txn.scan(STALE)):
        table, pk = split_state_key(k)
        txn.delete(STALE, k)
        if table in schema and txn.get(STATE, k) is None:
            apply_record(txn, schema[table], pk, None)


def assign_ident(env: Environment, ident: tuple[int, int, int, str], nonce: str) -> bool:
    """Store the server-assigned ident and restamp local states of pending changesets with it.

    Pending changesets recorded before the ident existed carry file ident 0
    in their merge states; they are rebuilt here so that joining the
    server's states (stamped with the real ident) stays idempotent.
    """
    fi = ident[0]
    with env.write(record_history=False) as txn:
        meta = Meta(txn)
        if meta.ident() is not None or meta.nonce() != nonce:
            txn.abort()
            return False
        meta.set_ident(ident)
        touched: dict[bytes, tuple[str, Any]] = {}
        changesets = list(pending_changesets(txn, meta.acked()))
        for _, _, _, ops in changesets:
            for op in ops:
                touched[state_key(op.table, op.pk)] = (op.table, op.pk)
        if touched:
            states: dict[bytes, M.ObjectState] = {}
            for cv, base, ts, ops in changesets:
                for i, op in enumerate(ops):
                    k = state_key(op.table, op.pk)
                    st = states.setdefault(k, _without_local(load_state(txn, op.table, op.pk)))
                    st.apply(_restamp(op, fi), P.Stamp(ts, fi, cv, i), base, None)
            for k, st in states.items():
                table, pk = touched[k]
                save_state(txn, table, pk, st)
    return True


def _without_local(state: M.ObjectState | None) -> M.ObjectState:
    """A state minus candidates stamped with file ident 0 (not yet identified local writes)."""
    return M.ObjectState() if state is None else state.without_origin(0)


def _restamp(op: P.Op, fi: int) -> P.Op:
    """Translate an element reference made before the ident existed (file ident 0) to ``fi``."""
    if op.elem is not None and op.elem.file_ident == 0:
        return P.Op(op.code, op.table, op.pk, op.field, op.value, op.elem._replace(file_ident=fi))
    return op


class UploadBatch(NamedTuple):
    """The next changesets to upload, read from one snapshot."""

    file_ident: int
    acked: int
    changesets: list[P.Changeset]
    full: bool
    """True if a size limit cut the batch (more is waiting behind it: worth reading ahead)."""


def upload_changesets(
    env: Environment, max_changesets: int = 5000, max_bytes: int = 4 << 20, after: int = 0
) -> UploadBatch:
    """The changesets after the acknowledged client version (or after ``after`` if further: a
    batch in flight), up to ``max_changesets`` and about ``max_bytes`` (the server's
    ``max_request_bytes`` defaults to 16 MiB)."""
    out: list[P.Changeset] = []
    size = 0
    with env.read() as snap:
        meta = Meta(snap)
        fi = meta.file_ident()
        acked = max(meta.acked(), after)
        if meta.stale_pending():
            # A client reset waits for its bootstrap: the kept changesets get their new base
            # then (``_rebase_pending``); uploading them before would be based below the horizon.
            return UploadBatch(fi, acked, out, False)
        for cv, base, ts, ops in pending_changesets(snap, acked):
            cs = P.Changeset(cv, base, ts, tuple(_restamp(o, fi) for o in ops))
            out.append(cs)
            size += 64 + sum(16 + len(repr(o.value)) for o in ops)
            if len(out) >= max_changesets or size >= max_bytes:
                return UploadBatch(fi, acked, out, True)
    return UploadBatch(fi, acked, out, False)


def client_reset(env: Environment, *, recover: bool) -> int:
    """Forget the server identity; keep (``recover``) or drop the unsynced changesets.

    Every synced object is marked stale and every merge state dropped; the
    next bootstrap (from a new file ident) brings back what the server has,
    and objects neither the server nor a kept change knows are removed when
    it completes.  Kept changesets are rebased on server version 0 (they saw
    nothing of the new history), so the server's "erase wins" and
    last-writer-wins rules decide conflicts.  Returns how many changesets
    were kept.
    """
    with env.write(record_history=False) as txn:
        meta = Meta(txn)
        schema = stored_schema(txn)
        kept: list[tuple[int, int, int, list[P.Op]]] = (
            list(pending_changesets(txn, meta.acked())) if recover else []
        )
        meta.count_upload()  # progress counters from the history as it is (``upload_totals``)
        for k, _ in list(txn.scan(STATE)):
            txn.put(STALE, k, b"")
            txn.delete(STATE, k)
        if schema is not None:
            for cls in schema.classes:
                if cls.primary_key is None:
                    continue
                for key, _ in txn.scan(table_name(cls.name)):
                    txn.put(STALE, state_key(cls.name, codec.decode_key(key)[0]), b"")
        gone = list(txn.scan(HISTORY))
        for k, _ in gone:
            txn.delete(HISTORY, k)
        # Progress: what is not kept is settled; the kept changesets are uploaded again.
        keep = {cv_key(cv) for cv, *_ in kept}
        meta.count_settled([raw for k, raw in gone if k not in keep])
        for cv, _base, ts, ops in kept:
            txn.put(HISTORY, cv_key(cv), P.pack([0, ts, [o.to_wire() for o in ops]]))
            for i, op in enumerate(ops):
                st = load_state(txn, op.table, op.pk) or M.ObjectState()
                st.apply(op, P.Stamp(ts, 0, cv, i), 0, None)
                save_state(txn, op.table, op.pk, st)
        meta.set_ident(None)
        meta.set_nonce(None)
        meta.ensure_nonce()
        if not kept:
            meta.set_acked(meta.cv())
        else:
            meta.set_acked(kept[0][0] - 1)
        meta.set_download(0, 0, 0.0)
        meta.set_bootstrapped(0)  # the new identity has bootstrapped nothing
        meta.set_sub_sent(0)
        meta.set_stale_pending(True)
        from realmpy.sync.subscriptions import repend_latest

        repend_latest(txn)  # the new identity has no subscriptions yet: send the newest set again
    return len(kept)


def object_count(env: Environment, tables: Mapping[str, Any]) -> dict[str, int]:
    """Objects per synced table (for progress messages)."""
    with env.read() as snap:
        return {
            t: snap.count(table_name(t))
            for t, spec in tables.items()
            if not getattr(spec, "embedded", False)
        }
