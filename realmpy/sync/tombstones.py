"""When a client may forget the merge state of a deleted object (its tombstones).

Without this, ``_sync.state`` keeps a ``[tombstones]`` record for every object
ever deleted, forever.  The rule (argued in full in docs/protocol.md,
"Collecting tombstones"): a dead object's state may be dropped from the
client's file once it is *only* tombstones and each tombstone ``t`` is

- this file's own erase that the server acknowledged
  (``t.stamp.file_ident == file ident`` and ``t.stamp.client_version <= acked``), or
- an erase the server integrated at a version this file has downloaded
  (``t.sv is not None and t.sv <= download cursor``).

Why that keeps convergence: a tombstone only ever acts by dropping a
candidate whose author had not seen it (``merge.Causal.saw``).  Every
*future local* operation sees it — a later client version of the same file,
or a ``base_server_version`` (the download cursor when written) at or past
``t.sv`` — so locally it would drop nothing.  Every *future download* of the
object is a full server state, and the server holds the tombstone (it
integrated it: acknowledged, or sent it at ``t.sv``) and never drops one, so
it has already dropped every candidate that had not seen it and sends the
tombstone along; joining that state into "nothing" gives what joining it
into the tombstones would.  A later create of the same primary key here is
then stamped after the erase (same file, or based at or past ``t.sv``), so it
resurrects the object on the server exactly as it does locally.
"""

from __future__ import annotations

from realmpy.sync import merge as M

__all__ = ["collectable"]


def collectable(state: M.ObjectState, *, file_ident: int, acked: int, cursor: int) -> bool:
    """True if ``state`` (an object's client-side merge state) may be deleted from the file."""
    if not state.tombs or state.alive:
        return False
    if (
        state.regs
        or state.adds
        or state.lists
        or state.erased
        or state.sadds
        or state.srems
        or state.dicts
    ):
        return False  # a candidate that saw the erase (e.g. a later SET without a create)
    for t in state.tombs.values():
        own = file_ident != 0 and t.stamp.file_ident == file_ident
        if own and t.stamp.client_version <= acked:
            continue
        if t.sv is not None and t.sv <= cursor:
            continue
        return False
    return True
