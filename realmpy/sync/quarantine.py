"""The file's schema on the server, and quarantine for changesets the server's schema refuses.

Why the agent syncs the *file's* schema rather than its own models: any
process may open a synced file with newer models (a ``disconnected_sync``
secondary that adds a class or a property); opening stores the union of the
stored schema and its models (additive changes only, ``realmpy.migration.open_schema``),
and that secondary's changesets use the new parts at once.  The agent
process may still run the old models, so it pushes the stored schema, and
pushes it again whenever a commit changed it (it looks before every upload
pass: the check is one read).  A development-mode server adopts the
additions.

A server with a fixed schema (or a development-mode server whose schema
another client made incompatible) refuses parts of it; it lists them in the
error's ``detail.refused`` (``[table, field or nil]``).  The agent then
pushes the rest, and every changeset with an operation on a refused part —
the table, the field, or a field whose link or embedded target is refused —
is *quarantined*, whole (a changeset is one local transaction: the server
gets all of it or none):

* it moves from ``_sync.history`` to ``_sync.quarantine`` (same key, the
  record plus the reason), in one local transaction, and is never uploaded;
  the acknowledged cursor moves past it when nothing older is pending, so
  later changesets upload as if it never existed;
* the local objects keep what it wrote (nothing is deleted): those values
  stay local-only until a later write, here or from the server, replaces
  them;
* the refusal is reported to the ``sync_error_handler`` once per refused set
  of parts (``SyncSchemaError``), not once per changeset; a ``wait_for_upload``
  whose changesets were quarantined while it waited raises it;
* ``sync_session.quarantined`` lists them (client version, tables, reason);
  they stay in the file for inspection until ``discard_quarantined``.

Quarantine is final: a quarantined changeset is not re-sent if the server's
schema later grows (its client version is behind the server's cursor for the
file).  Write the data again, with the grown schema, to sync it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from realmpy.sync import localstate as L
from realmpy.sync.errors import SyncError
from realmpy.sync.history import (
    HISTORY,
    Meta,
    cv_key,
    key_cv,
    stored_schema,
)
from realmpy.sync.wirevalues import wire_tables
from realmpy.wire import protocol as P

if TYPE_CHECKING:
    from realmpy.storage import Environment, Snapshot, WriteTransaction

__all__ = [
    "QUARANTINE",
    "QuarantinedChangeset",
    "Refused",
    "SchemaPush",
    "discard",
    "file_schema",
    "listing",
    "quarantine",
    "refused_from",
    "settle",
    "touches",
    "without",
]

QUARANTINE: Final = L.QUARANTINE

Refused = frozenset[tuple[str, str | None]]
"""Parts of a schema the server refuses: ``(table, None)`` for a whole table, else ``(table, field)``."""


@dataclass(frozen=True)
class SchemaPush:
    """What the agent last pushed: the stored schema's bytes (``b""``: nothing yet) and the
    parts the server refused."""

    raw: bytes = b""
    refused: Refused = frozenset()


@dataclass(frozen=True)
class QuarantinedChangeset:
    """A local changeset the server's schema refused (see the module docstring)."""

    client_version: int
    tables: tuple[str, ...]
    reason: str


def file_schema(
    snap: Snapshot | WriteTransaction, unless: bytes
) -> tuple[bytes, dict[str, P.TableSpec]] | None:
    """The file's stored schema (the union every process wrote): its raw bytes and wire form;
    None if its bytes are ``unless`` (unchanged since the last push: one read per call)."""
    from realmpy.layout import META, SCHEMA_KEY

    raw = snap.get(META, SCHEMA_KEY)
    if raw is None or bytes(raw) == unless:
        return None
    schema = stored_schema(snap)
    assert schema is not None
    return bytes(raw), wire_tables(schema)


def refused_from(err: SyncError) -> Refused | None:
    """The parts a schema refusal names (``detail.refused``, else its ``table``/``field``);
    None if it names none (then nothing can be pushed around it)."""
    raw = err.detail.get("refused")
    out: set[tuple[str, str | None]] = set()
    if isinstance(raw, list):
        for item in raw:
            if (
                isinstance(item, list)
                and len(item) == 2
                and isinstance(item[0], str)
                and (item[1] is None or isinstance(item[1], str))
            ):
                out.add((item[0], item[1]))
    table, fname = err.detail.get("table"), err.detail.get("field")
    if not out and isinstance(table, str):
        out.add((table, fname if isinstance(fname, str) else None))
    return frozenset(out) or None


def without(
    tables: Mapping[str, P.TableSpec], refused: Refused
) -> tuple[dict[str, P.TableSpec], Refused]:
    """``tables`` minus the refused parts, and the refused parts closed over link/embedded
    targets (a field whose target table is refused is refused too; so is a table whose
    primary key field is, and an embedded table with a refused field: its parent's operations
    write it by dotted paths, which count by their first field)."""
    gone = {t for t, f in refused if f is None}
    parts = set(refused)
    for t, f in refused:
        spec = tables.get(t)
        if f is not None and spec is not None and (f == spec.primary_key or spec.embedded):
            gone.add(t)
            parts.add((t, None))
    changed = True
    out: dict[str, P.TableSpec] = {}
    while changed:
        changed = False
        out = {}
        for name, spec in tables.items():
            if name in gone:
                continue
            fields = {}
            for fname, fs in spec.fields.items():
                if (name, fname) in parts:
                    continue
                if fs.target is not None and fs.target in gone:
                    parts.add((name, fname))
                    changed = True
                    continue
                fields[fname] = fs
            out[name] = P.TableSpec(spec.primary_key, fields, spec.embedded)
    return out, frozenset(parts | {(t, None) for t in gone})


def touches(ops: Iterable[P.Op], refused: Refused) -> set[str]:
    """Tables of the ops that touch a refused part (a dotted path counts by its first field)."""
    hit: set[str] = set()
    for op in ops:
        if (op.table, None) in refused:
            hit.add(op.table)
        elif op.field is not None and (op.table, op.field.split(".", 1)[0]) in refused:
            hit.add(op.table)
    return hit


def quarantine(env: Environment, refused: Refused, reason: str) -> list[int]:
    """Move every pending changeset that touches ``refused`` to ``_sync.quarantine`` (one
    local transaction); returns their client versions."""
    from realmpy.sync.history import pending_changesets

    moved: list[int] = []
    records: list[bytes] = []
    with env.write(record_history=False) as txn:
        meta = Meta(txn)
        meta.count_upload()  # progress counters from the history as it is (``upload_totals``)
        for cv, _base, _ts, ops in list(pending_changesets(txn, meta.acked())):
            hit = touches(ops, refused)
            if not hit:
                continue
            raw = txn.get(HISTORY, cv_key(cv))
            assert raw is not None
            for op in ops:  # states replayed from it are stored whole before it leaves
                L.save_whole(txn, op.table, op.pk)
            records.append(raw)
            txn.put(QUARANTINE, cv_key(cv), P.pack([P.unpack(raw), sorted(hit), reason]))
            txn.delete(HISTORY, cv_key(cv))
            moved.append(cv)
        if not moved:
            txn.abort()
            return moved
        meta.count_settled(records)
        _settle(txn)
    return moved


def _settled(txn: Snapshot | WriteTransaction) -> int:
    """How far the acknowledged cursor may go: up to the oldest pending changeset.  Every client
    version after the cursor that is not in the history was quarantined (the history holds
    every other unacknowledged changeset), so passing it waits for nothing."""
    first_pending = next(iter(txn.scan(HISTORY)), None)
    return Meta(txn).cv() if first_pending is None else key_cv(first_pending[0]) - 1


def _settle(txn: WriteTransaction) -> None:
    settled = _settled(txn)
    if settled > Meta(txn).acked():
        Meta(txn).set_acked(settled)


def settle(env: Environment) -> None:
    """Move the acknowledged cursor past quarantined changesets the server's acknowledgements
    stopped short of (one read when there are none)."""
    with env.read() as snap:
        if next(iter(snap.scan(QUARANTINE)), None) is None or _settled(snap) <= Meta(snap).acked():
            return
    with env.write(record_history=False) as txn:
        _settle(txn)


def listing(snap: Snapshot | WriteTransaction) -> list[QuarantinedChangeset]:
    out = []
    for k, v in snap.scan(QUARANTINE):
        _rec, tables, reason = P.unpack(v)
        out.append(QuarantinedChangeset(key_cv(k), tuple(tables), str(reason)))
    return out


def discard(env: Environment) -> int:
    """Forget every quarantined changeset (the local objects keep their values); returns how many."""
    with env.write(record_history=False) as txn:
        keys = [k for k, _ in txn.scan(QUARANTINE)]
        for k in keys:
            txn.delete(QUARANTINE, k)
    return len(keys)


def in_range(snap: Snapshot | WriteTransaction, after: int, upto: int) -> list[int]:
    """Client versions quarantined in ``(after, upto]``."""
    return [key_cv(k) for k, _ in snap.scan(QUARANTINE, cv_key(after + 1), cv_key(upto + 1))]
