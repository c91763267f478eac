"""The sync state of a synced realm file, as ``realmpy info`` and Studio show it.

Read without joining the sync: the agent publishes its pid and connection
state in ``<path>.sync`` (:mod:`realmpy.sync.status`), the changesets not
yet uploaded are the rows of the file's ``_sync.history`` table, and a final
error is stored in ``_sync.meta`` (docs/format.md).  Studio adds the
subscriptions, read through the realm's public ``subscriptions``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from realmpy.sync.history import HISTORY
from realmpy.sync.status import parse_line, read_error

if TYPE_CHECKING:
    from realmpy.realm import Realm
    from realmpy.storage import Snapshot

__all__ = ["realm_sync_state", "sync_state"]


def _published(path: str) -> tuple[int, str]:
    try:
        fd = os.open(path + ".sync", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return 0, "disconnected"
    try:
        return parse_line(fd)
    finally:
        # This process is never the agent here (the tools do not sync), so
        # closing the descriptor drops no election lock.
        os.close(fd)


def sync_state(path: str, snap: Snapshot) -> dict[str, Any]:
    """Agent, connection, changesets waiting for upload and the final error, if any."""
    pid, conn = _published(path)
    err = read_error(snap)
    return {
        "agent_pid": pid or None,
        "connection_state": conn,
        "pending_changesets": snap.count(HISTORY),
        "error": None if err is None else f"[{err.code}] {err.message}",
    }


def realm_sync_state(realm: Realm) -> dict[str, Any]:
    """:func:`sync_state` plus the subscriptions, for a realm opened as a secondary."""
    session = realm.sync_session
    subs = realm.subscriptions
    with realm._env.read() as snap:
        out = sync_state(realm.path, snap)
    out["agent_pid"] = session.agent_pid
    out["connection_state"] = session.connection_state.value
    out["session_state"] = session.state.value
    out["subscription_set"] = {
        "version": subs.version,
        "state": subs.state.value,
        "error": subs.error,
    }
    out["subscriptions"] = [
        {
            "name": s.name,
            "class": s.object_class_name,
            "query": s.query_string,
            "args": [repr(a) for a in s.args],
        }
        for s in subs
    ]
    return out
