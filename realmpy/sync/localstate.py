"""How a client stores merge states in ``_sync.state``: only what the server does not hold.

An object's client-side merge state is the server's state of it joined with
the local operations not yet acknowledged.  Stored whole, it costs more than
the object itself (~150 B for a small object: a stamp per field, the values
again), for every object, forever.  Two observations make most of it
unnecessary (the convergence argument is in docs/protocol.md, "Client merge
states"):

*Covered*: every download of an object carries the server's **full** state of
it, to be joined into the local one (``integrate.apply_download``).  Once every
entry of the local state is known to the server — this file's own operations
acknowledged (and not quarantined), the others' downloaded — the next download
brings all of it back, so the client may forget the state and keep one flag:
the object exists in the server's state (``covered``).  Local operations
written later are kept on their own (a *partial* state); joining the next
download into the partial state gives what joining it into the whole would
(join is a least upper bound, and the server's state contains the forgotten
part).  The flag stands in for the forgotten ``create``: a local write to a
covered object is an update, not a re-creation (``history.diff_ops``).
Not covered: list states (a local list write names elements by their ids,
which only the state knows), dead objects (``tombstones``), and anything while
a client reset waits for its bootstrap.

*Derived*: a state made only of local operations recorded in small changesets
still in ``_sync.history`` is a function of those changesets: it is stored as
their client versions (and the file ident they were stamped with) and replayed
from the history when loaded.  Offline, an object written a few times costs a
few bytes here instead of a second copy of its values.  Whatever removes
changesets from the history first stores the states they derive whole
(``integrate._trim_history``, ``quarantine.quarantine``); a client reset
drops every state anyway, and rewriting a changeset's base in place
(``integrate._rebase_pending``) rebases a derived state with it, which is
what that step does to whole states.

Encoding of a ``_sync.state`` value (``table NUL pk`` key):

- a msgpack array: the whole state, ``merge.ObjectState.to_wire`` (the only
  form before; such values are read as they are, so older files keep
  syncing, and the agent shrinks them once, ``upgrade``);
- ``0xC1`` (a byte msgpack never uses) then msgpack ``[covered, file ident,
  [client versions], whole state or nil]``: a covered and/or derived state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Union

from realmpy.wire import merge as M
from realmpy.wire import protocol as P

if TYPE_CHECKING:
    from realmpy.storage import Snapshot, WriteTransaction

    Txn = Union[Snapshot, WriteTransaction]

__all__ = [
    "DERIVE_MAX_OPS",
    "DERIVE_MAX_VERSIONS",
    "QUARANTINE",
    "STATE",
    "STATES_FORMAT",
    "Local",
    "cover_derived",
    "covered_by_ack",
    "covered_by_download",
    "is_derived",
    "load",
    "save",
    "save_whole",
    "state_key",
    "upgrade",
]

STATE: Final = "_sync.state"
QUARANTINE: Final = "_sync.quarantine"

_TAG: Final = b"\xc1"
"""First byte of the tagged form: never the first byte of a msgpack value."""

DERIVE_MAX_OPS: Final = 64
"""A state is derived only from changesets of at most this many operations (replaying one
reads and decodes the whole changeset: a bulk write's states are stored whole)."""

DERIVE_MAX_VERSIONS: Final = 4
"""...and from at most this many changesets (an object written often offline is stored whole)."""


def state_key(table: str, pk: Any) -> bytes:
    """The key of an object's merge state (and of its stale mark)."""
    return table.encode("utf-8") + b"\0" + P.pk_key(pk)


@dataclass(frozen=True)
class Local:
    """One object's stored merge state, decoded."""

    state: M.ObjectState | None
    """The state (replayed when derived); None when nothing is stored, empty when only covered."""
    covered_at: int | None = None
    """Covered (module docstring) by the server's state at this server version (None: not
    covered): a download older than it may not show everything this client forgot."""
    derived: tuple[int, ...] = ()
    """Client versions ``state`` is replayed from (empty: stored whole)."""
    file_ident: int = 0
    """The file ident the derived changesets were stamped with."""

    @property
    def covered(self) -> bool:
        return self.covered_at is not None


def load(txn: Txn, table: str, pk: Any) -> Local:
    raw = txn.get(STATE, state_key(table, pk))
    if raw is None:
        return Local(None)
    if not raw.startswith(_TAG):
        return Local(M.ObjectState.from_wire(P.unpack(raw)))
    covered_at, fi, cvs, whole = P.unpack(raw[1:])
    if whole is not None:
        return Local(M.ObjectState.from_wire(whole), covered_at)
    st = M.ObjectState()
    if cvs:
        _replay(txn, st, table, pk, fi, cvs)
    return Local(st, covered_at, tuple(cvs), int(fi))


def _replay(txn: Txn, st: M.ObjectState, table: str, pk: Any, fi: int, cvs: list[int]) -> None:
    from realmpy.sync.history import HISTORY, cv_key

    key = P.pk_key(pk)
    for cv in cvs:
        raw = txn.get(HISTORY, cv_key(cv))
        if raw is None:  # only if a changeset left the history without storing its states
            raise P.MalformedMessage(
                f"merge state of {table}[{pk!r}] derives from changeset {cv}, which is gone"
            )
        base, ts, ops = P.unpack(raw)
        for i, w in enumerate(ops):
            if w[1] == table and P.pk_key(w[2]) == key:
                st.apply(P.Op.from_wire(w), P.Stamp(ts, fi, cv, i), base, None)


def save(
    txn: WriteTransaction,
    table: str,
    pk: Any,
    state: M.ObjectState | None,
    *,
    covered_at: int | None = None,
    derived: Sequence[int] = (),
    file_ident: int = 0,
) -> None:
    """Store ``state`` (None: nothing); ``derived``: it is the replay of those changesets."""
    k = state_key(table, pk)
    if derived:
        txn.put(STATE, k, _TAG + P.pack([covered_at, file_ident, list(derived), None]))
    elif covered_at is not None:
        whole = None if state is None or state == _EMPTY else state.to_wire()
        txn.put(STATE, k, _TAG + P.pack([covered_at, 0, [], whole]))
    elif state is None:
        txn.delete(STATE, k)
    else:
        txn.put(STATE, k, P.pack(state.to_wire()))


_EMPTY: Final = M.ObjectState()


def is_derived(txn: Txn, table: str, pk: Any) -> bool:
    """True if the stored state is replayed from changesets (cheap: no replay)."""
    raw = txn.get(STATE, state_key(table, pk))
    return raw is not None and raw.startswith(_TAG) and bool(P.unpack(raw[1:])[2])


def save_whole(txn: WriteTransaction, table: str, pk: Any) -> None:
    """Store a derived state whole (its changesets are about to leave the history)."""
    if is_derived(txn, table, pk):
        loc = load(txn, table, pk)
        save(txn, table, pk, loc.state, covered_at=loc.covered_at)


def _coverable(state: M.ObjectState, covered: bool) -> bool:
    """What every covered state is: an alive object (or a covered one no local erase
    touched) without list state (a local list write needs the element ids)."""
    if state.lists or state.erased:
        return False
    return state.alive or (covered and not state.tombs)


def covered_by_download(
    txn: WriteTransaction, joined: M.ObjectState, incoming: M.ObjectState
) -> bool:
    """True if ``joined`` (a download's ``incoming`` state joined into the local one) may be
    stored as the covered flag alone: the local state added nothing to what the server sent
    (every stamp of ``joined`` is one of ``incoming``'s)."""
    if not _coverable(joined, False):
        return False
    known = set(incoming.stamps())
    if any(s not in known for s in joined.stamps()):
        return False  # a local change the server's answer does not show yet
    return _no_reset_pending(txn)


def covered_by_ack(txn: WriteTransaction, loc: Local, *, file_ident: int, acked: int) -> bool:
    """True if the server holds every entry of ``loc`` once it acknowledged client version
    ``acked``: this file's own operations up to it (and not quarantined: the server never got
    those), and what came from the server (every other origin's)."""
    st = loc.state
    if st is None or file_ident == 0 or not _coverable(st, loc.covered):
        return False
    own: set[int] = set()
    for s in st.stamps():
        if s.file_ident == file_ident:
            if s.client_version > acked:
                return False
            own.add(s.client_version)
        elif s.file_ident == 0:
            return False  # written before the file had an ident: not uploaded yet
    from realmpy.sync.history import cv_key

    if any(txn.get(QUARANTINE, cv_key(cv)) is not None for cv in own):
        return False
    return _no_reset_pending(txn)


_UNCOVERABLE_OPS: Final = frozenset({P.OpCode.ERASE, P.OpCode.LIST_INSERT, P.OpCode.LIST_ERASE})
"""Operations after which a state may not be coverable (a tombstone, list state)."""


def cover_derived(
    txn: WriteTransaction,
    key: bytes,
    codes: dict[int, set[int]],
    *,
    file_ident: int,
    acked: int,
    server_version: int,
) -> bool:
    """``covered_by_ack`` for a derived state, decided from the codes of its changesets'
    operations on the object (``codes``: client version -> codes, for every acknowledged
    changeset that touched it) instead of a replay; stores the covered flag and returns True,
    or returns False (undecided: the caller loads the state).  A state derived from this file's
    acknowledged changesets holds only their operations, none quarantined (a quarantined
    changeset left the history, and its derived states were stored whole first); it is
    coverable if none of them erases or writes a list, and it is alive (a create) or was
    covered.  The caller checks that no client reset is pending."""
    raw = txn.get(STATE, key)
    if raw is None or not raw.startswith(_TAG):
        return False
    covered_at, fi, cvs, whole = P.unpack(raw[1:])
    if whole is not None or not cvs or fi != file_ident or file_ident == 0:
        return False
    if max(cvs) > acked or any(cv not in codes for cv in cvs):
        return False
    ops: set[int] = set().union(*(codes[cv] for cv in cvs))
    if not ops.isdisjoint(_UNCOVERABLE_OPS):
        return False
    if P.OpCode.CREATE not in ops and covered_at is None:
        return False
    txn.put(STATE, key, _TAG + P.pack([max(server_version, covered_at or 0), 0, [], None]))
    return True


def _no_reset_pending(txn: WriteTransaction) -> bool:
    """A client reset waiting for its bootstrap rebuilds states from the whole ones."""
    from realmpy.sync.history import Meta

    return not Meta(txn).stale_pending()


STATES_FORMAT: Final = 2
"""``_sync.meta`` ``states``: the encoding of ``_sync.state`` this file was upgraded to."""


def upgrade(txn: WriteTransaction) -> int | None:
    """Store an older file's whole states as little as the rules allow (once per file).

    Run by the agent before its download loop starts, so no download answer read before
    now can arrive after: a state the server holds (``covered_by_ack``) becomes the covered
    flag at server version 0.  Returns how many states shrank (None: upgraded before)."""
    from realmpy.sync.history import Meta, split_state_key

    meta = Meta(txn)
    if meta.states_format() >= STATES_FORMAT:
        return None
    fi, acked = meta.file_ident(), meta.acked()
    shrunk = 0
    for k, raw in list(txn.scan(STATE)):
        if raw.startswith(_TAG):
            continue
        loc = Local(M.ObjectState.from_wire(P.unpack(raw)))
        if covered_by_ack(txn, loc, file_ident=fi, acked=acked):
            table, pk = split_state_key(k)
            save(txn, table, pk, None, covered_at=0)
            shrunk += 1
    meta.set_states_format(STATES_FORMAT)
    return shrunk
