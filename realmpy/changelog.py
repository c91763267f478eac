"""The per-commit change record: which objects each commit of a realm changed.

Why: a listener's results change only where a commit changed something, so
the notifier (:mod:`realmpy.notifier`) asks this record what a version
changed instead of re-running every query on every commit.  The storage
layer keeps what a write transaction changed in memory
(``WriteTransaction.changed()``); a realm's commit stores it here, in the
same transaction, so it is exactly what that commit did.

Layout (docs/format.md, "change records"): table ``_changes``, key the
8-byte big-endian version the commit creates, value a msgpack map from each
object table the commit wrote (``o:<class>``) to the array of the keys it
wrote or deleted (bin), or nil for "any key" (a dropped table, or more keys
than ``CHANGED_KEYS_MAX``).  Index tables are not listed: they change with
their class's table.  The last ``KEEP`` versions are kept.

A version without a record (written by plain storage transactions, the sync
client applying the server's changes, or a record already pruned) is
"unknown": the reader answers None and the notifier re-runs in full, as it
did before this record existed.
"""

from __future__ import annotations

import struct
from typing import Final

import msgpack  # type: ignore[import-untyped,unused-ignore]

from realmpy.layout import TABLE_PREFIX
from realmpy.storage import CHANGED_KEYS_MAX, Snapshot, WriteTransaction

__all__ = ["CHANGES", "KEEP", "read", "record"]

CHANGES: Final = "_changes"
KEEP: Final = 1000  # versions whose records are kept
_version_key = struct.Struct(">Q").pack

Changes = dict[str, set[bytes] | None]


def record(txn: WriteTransaction) -> None:
    """Store what ``txn`` changed as the record of the version it commits next."""
    out: dict[str, list[bytes] | None] = {}
    for table, keys in txn.changed().items():
        if table.startswith(TABLE_PREFIX):
            out[table] = None if keys is None or len(keys) > CHANGED_KEYS_MAX else sorted(keys)
    version = txn.version + 1
    txn.put(CHANGES, _version_key(version), msgpack.packb(out, use_bin_type=True))
    if version > KEEP:
        txn.delete(CHANGES, _version_key(version - KEEP))


def read(snap: Snapshot, since: int, version: int) -> Changes | None:
    """What the versions after ``since`` up to ``version`` changed, merged;
    None if any of them has no record (unknown: re-read everything)."""
    if version - since > KEEP:
        return None
    merged: Changes = {}
    for v in range(since + 1, version + 1):
        raw = snap.get(CHANGES, _version_key(v))
        if raw is None:
            return None
        try:
            one = msgpack.unpackb(raw, raw=False)
        except Exception:  # a damaged record is an unknown one
            return None
        if type(one) is not dict:
            return None
        for table, keys in one.items():
            if keys is not None and type(keys) is not list:
                return None
            if table not in merged:
                merged[table] = None if keys is None else set(keys)
                continue
            seen = merged[table]
            if keys is None:
                merged[table] = None
            elif seen is not None:
                seen.update(keys)
    return merged
