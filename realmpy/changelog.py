"""Reading the per-commit change records: which objects each commit changed.

Why: a listener's results change only where a commit changed something, so
the notifier (:mod:`realmpy.notifier`) asks what the versions since a
listener's last call changed instead of re-running every query on every
commit.  The storage layer keeps what a write transaction changed
(``WriteTransaction.changed()``) and stores it with the commit, in the same
transaction, as that version's change record: every commit to a file that
has the table does (whoever makes it: a realm, the sync client applying the
server's changes, a plain storage transaction), and a realm's commit
creates the table (``WriteTransaction.record_changes``).  So a record under
version V is always what commit V did, also after a compaction restarted
the version numbers.

Layout (docs/format.md, "change records"): table ``_changes``
(``storage.CHANGES_TABLE``), key the 8-byte big-endian version the commit
created, value a msgpack map from each table the commit wrote to the array
of the keys it wrote or deleted (bin, ascending), or nil for "any key" (a
dropped table, or more than ``storage.CHANGED_KEYS_MAX`` keys).  The last
``storage.CHANGES_KEEP`` versions are kept.

A version without a record (before the file had the table, a pruned or a
damaged record) is "unknown": :func:`read` answers None and the notifier
re-runs in full, as it did before change records existed.
"""

from __future__ import annotations

import struct

import msgpack  # type: ignore[import-untyped,unused-ignore]

from realmpy.storage import CHANGES_KEEP, CHANGES_TABLE, Snapshot

__all__ = ["Changes", "read"]

_version_key = struct.Struct(">Q").pack

Changes = dict[str, set[bytes] | None]


def read(snap: Snapshot, since: int, version: int) -> Changes | None:
    """What the versions after ``since`` up to ``version`` changed, merged;
    None if any of them has no record (unknown: re-read everything)."""
    if version - since > CHANGES_KEEP:
        return None
    merged: Changes = {}
    for v in range(since + 1, version + 1):
        raw = snap.get(CHANGES_TABLE, _version_key(v))
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
