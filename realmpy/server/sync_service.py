"""The sync service: file idents, schema, upload integration, subscriptions and download batches.

Why the server keeps object *states* (``realmpy.wire.merge``) rather than
only an operation log: integrating an upload is then one read-merge-write per
touched object, however old the upload's base version, and a download can be
cut exactly to what a user may read and has subscribed to — an object
entering the view arrives whole, one leaving it is ``forget``-ed — which an
operation log filtered op by op cannot do.  The log (``changesets``) is still
kept, in server-version order, for auditing and dedup.

Every upload is all-or-nothing, and concurrent uploads share one store
transaction (``group_commit``; docs/protocol.md, "Uploads: group commit"):
validate everything first (any schema or type error rejects the whole upload
with a 4xx and stores nothing of it), skip
changesets at or below the client's integrated version (acknowledged again),
merge, check write rules on each object's before and after images, record
refused writes for a compensating ``reset``, advance the client's cursor.

Memory and pauses per upload are bounded by slicing, not by refusing large
uploads (one local transaction is one changeset, however many objects it
writes): a group holds at most ``UPLOAD_SLICE_OPS`` ops of small uploads,
and an upload larger than that is integrated alone, ``UPLOAD_SLICE_OPS``
objects at a time, each slice read, merged, checked and written before the
next (its one transaction still makes it all-or-nothing).  What stays in
memory is then the decoded request and one slice's states, not a merged
state per object of the upload: an 80,000-op upload kept ~480,000 objects
alive for the garbage collector to walk (160-190 ms pauses of every thread,
``/health`` included) and grew the process by ~120 MiB.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from realmpy.server.auth import Principal
from realmpy.server.config import ServerConfig
from realmpy.server.group_commit import GroupCommit
from realmpy.server.links import LinkResolver
from realmpy.server.permissions import (
    Permissions,
    Subscriptions,
    check_key_paths,
    compile_query,
)
from realmpy.server.shared_reads import SharedReads
from realmpy.server.store import ClientRow, Commit, ObjectRow, Store, Tx
from realmpy.server.wake_filter import WakeFilter
from realmpy.wire import merge
from realmpy.wire.merge import ObjectState, now_ms
from realmpy.wire.protocol import (
    Changeset,
    ClockSkewError,
    DownloadEntry,
    DownloadRequest,
    DownloadResponse,
    FileIdentError,
    IdentResponse,
    MalformedMessage,
    Op,
    PrimaryKey,
    ProtocolError,
    RejectedWrite,
    SchemaMismatch,
    SchemaRequest,
    Stamp,
    SubscriptionRequest,
    SubscriptionResponse,
    TableSpec,
    UnknownFieldError,
    UnknownTableError,
    UploadRequest,
    UploadResponse,
    pack,
    pk_key,
    tables_from_wire,
    tables_to_wire,
    unpack,
)

__all__ = ["MAX_OBJECTS_PER_BATCH", "ClientResetRequired", "PreparedUpload", "SyncService"]

log = logging.getLogger("realmpy.server.sync")


class ClientResetRequired(ProtocolError):
    """The client must reset its file: ``detail.reason`` is ``cursor_ahead`` (a restored or
    foreign server), ``history_trimmed`` (its cursor or an upload's base is below the history
    horizon), ``unknown_file_ident`` or ``salt_mismatch`` (the server lost or replaced the
    file's identity)."""

    code = "client_reset_required"


@dataclass
class _Pending:
    state: ObjectState
    sv: int


@dataclass
class PreparedUpload:
    """One upload waiting for its group (validated, clocks checked)."""

    principal: Principal
    req: UploadRequest
    schema: dict[str, TableSpec]
    variables: dict[str, Any]
    ops: int = field(init=False)
    """Its size (``GroupCommit``'s weight)."""

    def __post_init__(self) -> None:
        self.ops = sum(len(cs.ops) for cs in self.req.changesets)


@dataclass
class _Group:
    """What a group of uploads has read and integrated so far, written at its end."""

    tx: Tx
    sv: int
    """The last server version allocated (the group's uploads count on from the store's)."""
    horizon: int
    clients: dict[int, ClientRow]
    objects: dict[tuple[str, bytes], ObjectRow]
    read: set[tuple[str, bytes]] = field(default_factory=set)
    """Keys looked up already (``objects`` lacks those that do not exist)."""
    pending: dict[tuple[str, bytes], _Pending] = field(default_factory=dict)
    cursors: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    changesets: list[tuple[int, int, int, int, int, bytes]] = field(default_factory=list)
    refusals: list[tuple[int, int, str, bytes, int, str]] = field(default_factory=list)
    views: list[tuple[int, str, bytes, bool, int]] = field(default_factory=list)
    slice: int | None = None
    """Objects per slice when the group (one large upload) is written as it goes; None: at its end."""
    tables: set[str] = field(default_factory=set)
    """Tables of the objects written already (slices)."""
    befores: dict[tuple[str, bytes], tuple[PrimaryKey, ObjectState | None]] = field(
        default_factory=dict
    )
    """Each changed object's key and state before the group (for ``Commit.objects``)."""

    def prefetch(self, keys: list[tuple[str, bytes]]) -> None:
        """Read a slice's objects in one query per 256."""
        missing = [k for k in keys if k not in self.read]
        self.objects.update(self.tx.objects_many(missing))
        self.read.update(missing)

    def write_slice(self, fi: int, pending: dict[tuple[str, bytes], _Pending]) -> None:
        """Write a slice of one upload's merged objects now and forget them (and every
        object read for the slice): the transaction holds them, and later reads see them."""
        self.tx.put_objects(
            [(t, pkb, pack(p.state.to_wire()), p.sv) for (t, pkb), p in pending.items()]
        )
        self.tx.views_put([(fi, t, pkb, True, p.sv) for (t, pkb), p in pending.items()])
        self.tables.update(t for t, _ in pending)
        pending.clear()
        self.objects.clear()
        self.read.clear()

    def write(self) -> None:
        """Everything the group's kept uploads did: one batched statement per table
        (``Tx.before_commit``: in the commit's round trip)."""
        tx = self.tx
        objects = [(t, pkb, pack(p.state.to_wire()), p.sv) for (t, pkb), p in self.pending.items()]
        if self.changesets:
            tx.advance_server_version(self.sv)
            changed = None
            if self.slice is None and len(self.pending) <= WAKE_MATCH_OBJECTS:
                changed = tuple(
                    (t, *self.befores[(t, pkb)], p.state) for (t, pkb), p in self.pending.items()
                )
            tx.changed = Commit(
                self.sv,
                frozenset(self.tables.union(t for t, _ in self.pending)),
                frozenset(self.cursors),
                changed,
            )
        tx.add_changesets(self.changesets)
        tx.add_rejections(self.refusals)
        tx.put_objects(objects)
        tx.views_put(self.views)
        tx.update_upload_cursors([(fi, *c) for fi, c in self.cursors.items()])


WAKE_MATCH_OBJECTS = 256
"""A commit of at most this many objects carries them to this process's polls, which match
them against their queries (``wake_filter``); a larger one wakes by table."""

UPLOAD_SLICE_OPS = 4096
"""Ops of small uploads integrated together in memory; larger uploads go alone, in slices of
this many objects (module docstring).  A slice costs a few MiB and a young-generation pause."""

MAX_OBJECTS_PER_BATCH = 10_000
"""Objects one download request looks at, at most (beyond the rest of one server
version): a subscription that matches little, or a costly query, then answers
``more`` and the client continues, instead of one request scanning everything."""


class SyncService:
    """Stateless request handlers over a ``Store`` (safe to call from many threads)."""

    max_objects_per_batch = MAX_OBJECTS_PER_BATCH
    upload_slice_ops = UPLOAD_SLICE_OPS

    def __init__(
        self,
        store: Store,
        config: ServerConfig,
        *,
        on_change: Callable[[Commit], None] = lambda _: None,
    ) -> None:
        self.store = store
        self.config = config
        self.perms = config.permissions
        self._on_change = on_change
        self._schema_lock = threading.Lock()
        self._schema: dict[str, TableSpec] = dict(config.schema or {})
        self._subs_cache: dict[tuple[int, int], Subscriptions] = {}
        self._interest: dict[int, WakeFilter] = {}
        self._uploads: GroupCommit[PreparedUpload, UploadResponse] = GroupCommit(
            self._integrate_group, weight=lambda u: u.ops, max_weight=self.upload_slice_ops
        )
        with store.transaction(write=False) as tx:
            _, self.server_salt, _, stored = tx.server_state()
        if config.schema is None and stored is not None:
            self._schema = tables_from_wire(unpack(stored))

    # ----------------------------------------------------------------- schema

    def schema(self, *, reload: bool = False) -> dict[str, TableSpec]:
        """The current app schema (reloaded from the store on demand: another process may have grown it)."""
        if reload and self.config.schema is None:
            with self.store.transaction(write=False) as tx:
                stored = tx.server_state()[3]
            if stored is not None:
                with self._schema_lock:
                    self._schema = tables_from_wire(unpack(stored))
        return self._schema

    def push_schema(self, req: SchemaRequest) -> dict[str, TableSpec]:
        """Development mode: adopt additive changes.  Fixed schema: check the client's fits."""
        if self.config.schema is not None:
            _check_subset(req.tables, self.config.schema)
            return dict(self.config.schema)
        with self.store.transaction(write=True) as tx:
            stored = tx.server_state()[3]
            current = tables_from_wire(unpack(stored)) if stored is not None else {}
            merged = _additive_merge(current, req.tables)
            for tname, spec in merged.items():
                for fname, fs in spec.fields.items():
                    if fs.target is not None and (
                        fs.target not in merged
                        or merged[fs.target].embedded != (fs.type == "embedded")
                    ):
                        raise UnknownTableError(
                            f"{tname}.{fname}: {fs.type} target {fs.target!r} is unknown"
                            + (" or of the wrong kind" if fs.target in merged else ""),
                            table=fs.target,
                        )
            if merged != current:
                tx.set_schema(pack(tables_to_wire(merged)))
                log.info("schema extended", extra={"tables": sorted(set(merged) - set(current))})
        with self._schema_lock:
            self._schema = merged
        return merged

    # ----------------------------------------------------------------- identity

    def ident(self, principal: Principal, nonce: str) -> IdentResponse:
        """A file ident for (user, nonce); repeated calls answer the same."""
        with self.store.transaction(write=True) as tx:
            row = tx.client_by_nonce(principal.user_id, nonce)
            if row is None:
                salt = secrets.randbits(62)
                fi = tx.create_client(principal.user_id, nonce, salt)
                return IdentResponse(fi, salt, self.server_salt)
        return IdentResponse(row.file_ident, row.salt, self.server_salt)

    @classmethod
    def _client(
        cls, tx: Tx, principal: Principal, file_ident: int, salt: int, *, for_update: bool = False
    ) -> ClientRow:
        return cls._check_client(
            tx.get_client(file_ident, for_update=for_update), principal, file_ident, salt
        )

    @staticmethod
    def _check_client(
        row: ClientRow | None, principal: Principal, file_ident: int, salt: int
    ) -> ClientRow:
        """The caller's file, or the error that says why it is not theirs or not known."""
        if row is None or (row.user_id != principal.user_id and row.salt != salt):
            # Never allocated here: the server lost its history (restored from an older
            # backup, or a new database).  The client must start over with a new identity.
            # Another user's ident with the wrong salt answers the same, so idents cannot be
            # probed: only a holder of that file (who knows its salt) learns it is foreign.
            raise ClientResetRequired(
                f"the server does not know file ident {file_ident}; reset the client",
                reason="unknown_file_ident",
                file_ident=file_ident,
            )
        if row.user_id != principal.user_id:
            raise FileIdentError("the file ident belongs to another user", file_ident=file_ident)
        if row.salt != salt:
            # The same user's ident with another salt: the ident was allocated again after
            # the server lost its history.
            raise ClientResetRequired(
                f"file ident {file_ident} has another salt on this server; reset the client",
                reason="salt_mismatch",
                file_ident=file_ident,
            )
        return row

    # ----------------------------------------------------------------- upload

    def _validate(
        self, changesets: tuple[Changeset, ...], *, reload: bool = True
    ) -> dict[str, TableSpec]:
        schema = self.schema()
        try:
            for cs in changesets:
                for i, op in enumerate(cs.ops):
                    op.validate(schema, f"changeset {cs.client_version} op {i}")
        except (UnknownTableError, UnknownFieldError):
            if not reload:
                raise
            schema = self.schema(reload=True)
            for cs in changesets:
                for i, op in enumerate(cs.ops):
                    op.validate(schema, f"changeset {cs.client_version} op {i}")
        return schema

    def prepare_upload(
        self, principal: Principal, req: UploadRequest, *, reload: bool = True
    ) -> PreparedUpload:
        """An upload checked against the schema and the clock, ready for its group.
        ``reload=False``: no store read (on the event loop); an unknown table or field is
        then raised as is, and the caller prepares again off the loop, reloading the schema
        (another process may have grown it)."""
        schema = self._validate(req.changesets, reload=reload)
        now = now_ms()
        for cs in req.changesets:
            merge.check_clock(cs.timestamp, now=now, max_skew_ms=self.config.max_clock_skew_ms)
        return PreparedUpload(principal, req, schema, principal.variables())

    def upload(self, principal: Principal, req: UploadRequest) -> UploadResponse:
        """Integrate changesets atomically; see the module docstring.  Concurrent uploads in
        this process are integrated together (``group_commit``)."""
        return self._uploads.submit(self.prepare_upload(principal, req))

    async def integrate(self, upload: PreparedUpload) -> UploadResponse:
        """``upload`` for a prepared upload, awaited on the event loop (no thread of its own)."""
        return await self._uploads.submit_async(upload)

    def _integrate_group(
        self, uploads: list[PreparedUpload]
    ) -> list[UploadResponse | BaseException]:
        """One transaction for a group of uploads: the version lock, one read of their clients
        and objects, each upload merged in turn (one refused upload leaves the others alone),
        then one batched write per table and one commit.  A group over ``upload_slice_ops``
        is one large upload (``GroupCommit``'s weight bound): it is read and written a slice
        at a time, and an error rolls the whole transaction back."""
        results: list[UploadResponse | BaseException] = []
        sliced = sum(u.ops for u in uploads) > self.upload_slice_ops
        with self.store.transaction(write=True, allocates=True) as tx:
            keys: set[tuple[str, bytes]] = set()
            if not sliced:
                keys = {
                    (op.table, pk_key(op.pk))
                    for u in uploads
                    for cs in u.req.changesets
                    for op in cs.ops
                }
            latest, horizon, clients, objects = tx.begin_upload_group(
                [u.req.file_ident for u in uploads], sorted(keys)
            )
            group = _Group(
                tx,
                latest,
                horizon,
                clients,
                objects,
                read=keys,
                slice=self.upload_slice_ops if sliced else None,
            )
            for u in uploads:
                try:
                    results.append(self._integrate(group, u))
                except Exception as exc:
                    if sliced:
                        raise  # its written slices go with the transaction
                    # this upload's alone (a database error fails the group's write
                    # below, and so every upload of it)
                    results.append(exc)
            tx.before_commit(group.write)  # sent with the commit: one round trip
        return results

    def _integrate(self, group: _Group, u: PreparedUpload) -> UploadResponse:
        """Merge one upload into the group; nothing of it is kept if it raises."""
        principal, req, schema = u.principal, u.req, u.schema
        client = self._check_client(
            group.clients.get(req.file_ident), principal, req.file_ident, req.salt
        )
        fi = client.file_ident
        last_cv, last_base, last_ts = group.cursors.get(
            fi, (client.last_cv, client.last_base_sv, client.last_ts)
        )
        horizon, sv = group.horizon, group.sv
        pending: dict[tuple[str, bytes], _Pending] = {}
        befores: dict[tuple[str, bytes], tuple[PrimaryKey, ObjectState | None]] = {}
        changesets: list[tuple[int, int, int, int, int, bytes]] = []
        refusals: list[tuple[int, int, str, bytes, int, str]] = []
        rejected: list[RejectedWrite] = []

        def current(key: tuple[str, bytes]) -> ObjectState | None:
            p = pending.get(key) or group.pending.get(key)
            if p is not None:
                return p.state
            row = group.objects.get(key)
            if row is None and key not in group.read:
                row = group.tx.get_object(*key)  # a link target no op of the group touches
                group.read.add(key)
                if row is not None:
                    group.objects[key] = row
            return None if row is None else ObjectState.from_wire(unpack(row.state))

        def load(t: str, pkb: bytes) -> ObjectState | None:
            """A link target as this upload sees it (its own and the group's changes included)."""
            return current((t, pkb))

        for cs in req.changesets:
            if cs.client_version <= last_cv:
                continue  # integrated before: skip, acknowledge again
            if cs.base_server_version < horizon:
                raise ClientResetRequired(
                    f"changeset {cs.client_version} was written at server version "
                    f"{cs.base_server_version}, before the history horizon {horizon}; "
                    "the server can no longer merge it: reset the client",
                    reason="history_trimmed",
                    horizon=horizon,
                )
            if cs.timestamp < last_ts:
                raise ClockSkewError(
                    f"changeset {cs.client_version}: timestamp {cs.timestamp} is before the file's previous "
                    f"one ({last_ts}); timestamps must not go backwards within a file",
                    timestamp=cs.timestamp,
                )
            if not last_base <= cs.base_server_version <= sv:
                raise MalformedMessage(
                    f"changeset {cs.client_version}: base_server_version {cs.base_server_version} "
                    f"outside [{last_base}, {sv}]"
                )
            sv += 1
            # The history keeps each op at its index (its stamp); refused ops are nil.
            accepted: list[Any] = [None] * len(cs.ops)
            groups: dict[tuple[str, bytes], list[tuple[int, Op]]] = {}
            for i, op in enumerate(cs.ops):
                groups.setdefault((op.table, pk_key(op.pk)), []).append((i, op))
            objects = list(groups.items())
            del groups
            step = group.slice or len(objects) or 1
            for start in range(0, len(objects), step):
                chunk = objects[start : start + step]
                if group.slice is not None:
                    group.prefetch([k for k, _ in chunk])
                for key, items in chunk:
                    table, pkb = key
                    pk = items[0][1].pk
                    found = current(key)
                    state = ObjectState() if found is None else found
                    pk_field = schema[table].primary_key
                    new = state.copy()
                    for i, op in items:
                        new.apply(
                            op,
                            Stamp(cs.timestamp, fi, cs.client_version, i),
                            cs.base_server_version,
                            sv,
                        )
                    reason = None
                    if not self.perms.allows_everything:
                        links = LinkResolver(schema, load, self.perms, u.variables)
                        pre = links.wrap(table, state.materialize(pk_field, pk))
                        post = links.wrap(table, new.materialize(pk_field, pk))
                        reason = self.perms.check_write(table, pre, post, u.variables, links)
                    if reason is not None:
                        refusals.append((fi, sv, table, pkb, cs.client_version, reason))
                        rejected.append(RejectedWrite(cs.client_version, table, pk, reason, sv))
                        continue
                    pending[key] = _Pending(new, sv)
                    if key not in befores and key not in group.befores:
                        befores[key] = (pk, found)
                    for i, op in items:
                        accepted[i] = op.to_wire()
                if group.slice is not None:
                    group.write_slice(fi, pending)
            changesets.append(
                (sv, fi, cs.client_version, cs.timestamp, cs.base_server_version, pack(accepted))
            )
            last_cv, last_base, last_ts = cs.client_version, cs.base_server_version, cs.timestamp
        # Kept: the group takes this upload's versions, changes and cursor.
        group.sv = sv
        group.pending.update(pending)
        group.befores.update(befores)
        group.changesets += changesets
        group.refusals += refusals
        # The client holds what it wrote, so the object is in its view: if the
        # merge kills it or it leaves the subscriptions, the client must hear so.
        group.views += [(fi, t, pkb, True, p.sv) for (t, pkb), p in pending.items()]
        group.cursors[fi] = (last_cv, last_base, last_ts)
        return UploadResponse(last_cv, sv, tuple(rejected))

    # ----------------------------------------------------------------- subscriptions

    def set_subscriptions(
        self, principal: Principal, req: SubscriptionRequest
    ) -> SubscriptionResponse:
        """Store a newer subscription set; the next download bootstraps it."""
        schema = self.schema()
        try:
            _check_subscriptions(req, schema)
        except ProtocolError:  # another process may have grown the schema: look again
            _check_subscriptions(req, self.schema(reload=True))
        blob = pack({t: [[q, list(a)] for q, a in qs] for t, qs in req.queries.items()})
        with self.store.transaction(write=True) as tx:
            client = self._client(tx, principal, req.file_ident, req.salt, for_update=True)
            if req.query_version < client.query_version:
                return SubscriptionResponse(req.query_version, "superseded")
            if req.query_version == client.query_version:
                if client.queries != blob:
                    raise MalformedMessage(
                        "query_version reused with different queries",
                        query_version=req.query_version,
                    )
                state = "complete" if client.bootstrapped_qv == client.query_version else "pending"
                return SubscriptionResponse(req.query_version, state)
            tx.set_subscriptions(client.file_ident, req.query_version, blob)
            note = Commit(0, frozenset(), frozenset({client.file_ident}))  # wakes its own polls
            tx.on_commit(lambda: self._on_change(note))
        return SubscriptionResponse(req.query_version, "pending")

    def _subscriptions(self, client: ClientRow) -> Subscriptions:
        key = (client.file_ident, client.query_version)
        subs = self._subs_cache.get(key)
        if subs is None:
            raw = unpack(client.queries) if client.queries else {}
            queries = {t: tuple((q, tuple(a)) for q, a in qs) for t, qs in raw.items()}
            try:
                subs = Subscriptions(queries, self.schema())
            except ProtocolError:
                subs = Subscriptions(queries, self.schema(reload=True))
            if len(self._subs_cache) > 10_000:
                self._subs_cache.clear()
            self._subs_cache[key] = subs
        return subs

    # ----------------------------------------------------------------- download

    def download(self, principal: Principal, req: DownloadRequest) -> DownloadResponse:
        """One download batch (no waiting; the app's long-poll loop calls this again)."""
        # write=True: the batch records what entered or left the client's view.  It takes
        # SQLite's write lock but not the version lock, so on PostgreSQL downloads run in parallel.
        with self.store.transaction(write=True) as tx:
            client = self._client(tx, principal, req.file_ident, req.salt)
            latest, horizon = tx.versions()
            self._check_cursor(client, req.after_server_version, latest, horizon)
            tx.view_gc(client.file_ident, req.after_server_version)
            res = self._answer(tx, principal, client, req, latest)
            # PostgreSQL reads each statement at READ COMMITTED: a trim that committed while
            # this batch was being read may have dropped objects it needed.  Check again.
            now_horizon = tx.horizon()
            if now_horizon != horizon:
                self._check_horizon(client, req.after_server_version, now_horizon)
            return res

    def download_many(
        self, items: Sequence[tuple[Principal, DownloadRequest]]
    ) -> list[DownloadResponse | ProtocolError | None]:
        """The downloads of many long-polls woken together (at most one per file), in one
        transaction with shared reads (``shared_reads``): each answer, or the error, is
        what ``download`` would give it.  None: the poll needs a bootstrap (call
        ``download`` for it: a bootstrap batch is too large to hold the others up)."""
        out: list[DownloadResponse | ProtocolError | None] = [None] * len(items)
        assert len({req.file_ident for _, req in items}) == len(items), "one poll per file"
        with self.store.transaction(write=True) as tx:
            clients = tx.clients_many([req.file_ident for _, req in items])
            latest, horizon = tx.versions()
            live: list[tuple[int, ClientRow]] = []
            for i, (principal, req) in enumerate(items):
                try:
                    client = self._check_client(
                        clients.get(req.file_ident), principal, req.file_ident, req.salt
                    )
                    self._check_cursor(client, req.after_server_version, latest, horizon)
                except ProtocolError as exc:
                    out[i] = exc
                    continue
                if not self._needs_bootstrap(client, req):
                    live.append((i, client))
            if not live:
                return out
            shared = SharedReads(
                tx,
                [(c.file_ident, items[i][1].after_server_version) for i, c in live],
                latest,
                _PAGE,
            )
            for i, client in live:
                try:
                    out[i] = self._answer(shared, items[i][0], client, items[i][1], latest)
                except ProtocolError as exc:  # its view changes are not flushed: as a rollback
                    out[i] = exc
            shared.flush()
            now_horizon = tx.horizon()
            if now_horizon != horizon:
                for i, client in live:
                    try:
                        self._check_horizon(client, items[i][1].after_server_version, now_horizon)
                    except ProtocolError as exc:
                        out[i] = exc
        return out

    def _check_cursor(self, client: ClientRow, after: int, latest: int, horizon: int) -> None:
        if after > latest:
            raise ClientResetRequired(
                f"client cursor {after} is ahead of the server's history ({latest}); reset the client",
                reason="cursor_ahead",
                latest_server_version=latest,
            )
        self._check_horizon(client, after, horizon)

    def _needs_bootstrap(self, client: ClientRow, req: DownloadRequest) -> bool:
        return (
            client.bootstrapped_qv != client.query_version
            or client.bootstrapped_rules != self.perms.fingerprint
            or req.bootstrap_token is not None
            # The answer that finished the bootstrap is recorded here when it is sent; a
            # client that says it did not apply it (its answer was lost) gets it again.
            or (req.query_version is not None and req.query_version != client.bootstrapped_qv)
        )

    def _answer(
        self,
        tx: Tx,
        principal: Principal,
        client: ClientRow,
        req: DownloadRequest,
        latest: int,
    ) -> DownloadResponse:
        """The batch for a checked client whose confirmed view rows are collected."""
        fi = client.file_ident
        schema = self.schema()
        subs = self._subscriptions(client)
        if any(t not in schema for t in subs.tables):
            schema = self.schema(reload=True)
        variables = principal.variables()
        if len(self._interest) > 100_000:
            self._interest.clear()
        self._interest[fi] = WakeFilter(fi, subs, self.perms, variables, schema)
        ctx = _DownloadCtx(tx, fi, subs, self.perms, variables, schema)
        if self._needs_bootstrap(client, req):
            res = self._bootstrap(ctx, client, req, latest)
        else:
            res = self._incremental(ctx, client, req, latest)
        ctx.flush()
        return res

    def interest(self, file_ident: int) -> WakeFilter | None:
        """What a file's last download here subscribed to and could read (None: no download
        yet): which commits concern its polls."""
        return self._interest.get(file_ident)

    @staticmethod
    def _check_horizon(client: ClientRow, after: int, horizon: int) -> None:
        """A client behind the horizon may hold objects whose erasure was trimmed: reset it.
        A fresh file (nothing downloaded, nothing uploaded) just bootstraps."""
        if after < horizon and not (after == 0 and client.last_cv == 0):
            raise ClientResetRequired(
                f"client cursor {after} is older than the server's history horizon {horizon}; "
                "reset the client",
                reason="history_trimmed",
                horizon=horizon,
            )

    # ----------------------------------------------------------------- history trimming

    def trim_history(
        self, horizon: int | None = None, *, older_than_ms: int | None = None
    ) -> tuple[int, int]:
        """Move the history horizon up to ``horizon`` (or to the newest server version whose
        changeset is older than ``older_than_ms``) and drop history and tombstones below it.

        Clients whose download cursor or upload base is below the horizon then get
        ``409 client_reset_required`` (reason ``history_trimmed``).  Returns
        ``(horizon, objects dropped)``; never lowers the horizon.
        """
        with self.store.transaction(write=True, allocates=True) as tx:
            tx.lock_versions()
            current = tx.horizon()
            latest = tx.latest_server_version()
            target = horizon
            if target is None:
                assert older_than_ms is not None, "give a horizon or an age"
                target = tx.horizon_for_age(now_ms() - older_than_ms)
            target = min(target, latest)
            if target <= current:
                return current, 0

            def is_dead(blob: bytes) -> bool:
                return not ObjectState.from_wire(unpack(blob)).alive

            dropped = tx.trim_history(target, now_ms(), is_dead)
        log.info("history trimmed", extra={"horizon": target, "objects_dropped": dropped})
        return target, dropped

    def _bootstrap(
        self, ctx: _DownloadCtx, client: ClientRow, req: DownloadRequest, latest: int
    ) -> DownloadResponse:
        qv = client.query_version
        token = _decode_token(req.bootstrap_token, qv, latest) if req.bootstrap_token else None
        if token is None:
            start_sv, pos, scanned, total = latest, ("", b""), 0, ctx.tx.count_objects()
        else:
            start_sv, pos, scanned, total = token
        after = req.after_server_version
        entries: list[DownloadEntry] = []
        size = looked = 0
        done = False
        while size < req.max_bytes and looked < self.max_objects_per_batch:
            rows = ctx.tx.objects_scan(pos, _PAGE)
            if not rows:
                done = True
                break
            ctx.prefetch(rows)
            consumed = 0
            for row in rows:
                consumed += 1
                pos = (row.table, row.pk)
                scanned += 1
                looked += 1
                e = ctx.consider(row, after, forget_sv=start_sv, bootstrap=True)
                if e is not None:
                    entries.append(e)
                    size += len(pack(e.to_wire()))
                if size >= req.max_bytes or looked >= self.max_objects_per_batch:
                    break
            if consumed == len(rows) < _PAGE:  # a short page is the last: no query to say so
                done = True
                break
        if not done and not ctx.tx.objects_scan(pos, 1):
            done = True
        if done:
            entries.extend(ctx.resets(after, start_sv))
            ctx.tx.set_bootstrapped(client.file_ident, qv, self.perms.fingerprint)
            return self._response(client, start_sv, latest, qv, "last", 1.0, entries, None)
        progress = min(0.99, scanned / total) if total else 0.0
        tok = pack([qv, start_sv, pos[0], pos[1], scanned, total])
        return self._response(client, after, latest, qv, "more", progress, entries, tok)

    def _incremental(
        self, ctx: _DownloadCtx, client: ClientRow, req: DownloadRequest, latest: int
    ) -> DownloadResponse:
        after = req.after_server_version
        entries: list[DownloadEntry] = []
        size = looked = 0
        pos: tuple[int, str, bytes] = (after, "", b"")
        boundary: int | None = None
        more = False
        while True:
            rows = ctx.tx.objects_changed(after, latest, pos, _PAGE)
            if not rows:
                break
            ctx.prefetch(rows)
            stop = False
            for row in rows:
                if boundary is not None and row.last_sv != boundary:
                    more, stop = True, True
                    break
                pos = (row.last_sv, row.table, row.pk)
                looked += 1
                e = ctx.consider(
                    row, after, forget_sv=row.last_sv, bootstrap=False, skip_own=req.skip_own
                )
                if e is not None:
                    entries.append(e)
                    size += len(pack(e.to_wire()))
                if boundary is None and (
                    size >= req.max_bytes or looked >= self.max_objects_per_batch
                ):
                    boundary = row.last_sv  # finish this version: the cursor moves whole versions
            if stop or len(rows) < _PAGE:  # a short page is the last: no query to say so
                break
        cursor = boundary if more and boundary is not None else latest
        entries.extend(ctx.resets(after, cursor))
        progress = 1.0 if latest <= after else (cursor - after) / (latest - after)
        return self._response(
            client,
            cursor,
            latest,
            client.query_version,
            "more" if more else "steady",
            progress,
            entries,
            None,
            skipped_own=ctx.skipped_own,
        )

    def _response(
        self,
        client: ClientRow,
        cursor: int,
        latest: int,
        qv: int,
        batch: str,
        progress: float,
        entries: list[DownloadEntry],
        token: bytes | None,
        *,
        skipped_own: int = 0,
    ) -> DownloadResponse:
        return DownloadResponse(
            cursor,
            latest,
            self.server_salt,
            client.last_cv,
            qv,
            batch,
            progress,
            tuple(entries),
            token,
            skipped_own,
        )


_PAGE = 256
"""Objects a download reads per query."""


def _decode_token(
    raw: bytes | None, qv: int, latest: int
) -> tuple[int, tuple[str, bytes], int, int] | None:
    """A bootstrap continuation, or None if it belongs to an older query version."""
    try:
        v = unpack(raw or b"")
        tqv, start_sv, tbl, pkb, scanned, total = v
        ok = all(
            isinstance(x, int) and not isinstance(x, bool) and x >= 0
            for x in (tqv, start_sv, scanned, total)
        )
        if not ok or not isinstance(tbl, str) or not isinstance(pkb, bytes) or start_sv > latest:
            raise ValueError
    except (ValueError, TypeError, ProtocolError):
        raise MalformedMessage("invalid bootstrap token") from None
    if tqv != qv:
        return None  # the subscription changed mid-bootstrap: start again
    return start_sv, (tbl, pkb), scanned, total


class _DownloadCtx:
    """What deciding one object's fate for one client needs."""

    def __init__(
        self,
        tx: Tx,
        fi: int,
        subs: Subscriptions,
        perms: Permissions,
        variables: Mapping[str, Any],
        schema: Mapping[str, TableSpec],
    ) -> None:
        self.tx, self.fi, self.subs, self.perms, self.variables, self.schema = (
            tx,
            fi,
            subs,
            perms,
            variables,
            schema,
        )
        self.links = LinkResolver(schema, self._load, perms, variables)
        self._matchers: dict[str, Callable[[Mapping[str, Any]], bool]] = {}
        self._views: dict[tuple[str, bytes], tuple[bool, int] | None] = {}
        self._puts: dict[tuple[str, bytes], tuple[bool, int]] = {}
        self.skipped_own = 0
        """States ``consider`` left out because the client wrote all of them (``skip_own``)."""

    def prefetch(self, rows: list[ObjectRow]) -> None:
        """Load this client's view rows for a page of objects in one query."""
        keys = [(r.table, r.pk) for r in rows if (r.table, r.pk) not in self._views]
        if keys:
            found = self.tx.views_many(self.fi, keys)
            for k in keys:
                self._views[k] = found.get(k)

    def _view_get(self, table: str, pk: bytes) -> tuple[bool, int] | None:
        key = (table, pk)
        if key not in self._views:
            self._views[key] = self.tx.view_get(self.fi, table, pk)
        return self._views[key]

    def _view_put(self, table: str, pk: bytes, in_view: bool, sv: int) -> None:
        self._views[(table, pk)] = (in_view, sv)
        self._puts[(table, pk)] = (in_view, sv)

    def flush(self) -> None:
        """Write the view changes of this batch in one batched statement."""
        if self._puts:
            self.tx.view_put_many(
                self.fi, [(t, pk, iv, sv) for (t, pk), (iv, sv) in self._puts.items()]
            )
            self._puts.clear()

    def _load(self, table: str, pkb: bytes) -> ObjectState | None:
        row = self.tx.get_object(table, pkb)
        return None if row is None else ObjectState.from_wire(unpack(row.state))

    def _matcher(self, table: str) -> Callable[[Mapping[str, Any]], bool]:
        got = self._matchers.get(table)
        if got is None:
            got = self._matchers[table] = self.subs.matcher(table, self.variables, self.links)
        return got

    def _visible(self, table: str, record: Mapping[str, Any] | None) -> bool:
        return (
            record is not None
            and self._matcher(table)(record)
            and self.perms.can_read(table, record, self.variables, self.links)
        )

    def _record(self, table: str, pk: PrimaryKey, state: ObjectState) -> dict[str, Any] | None:
        spec = self.schema.get(table)
        return (
            None
            if spec is None
            else self.links.wrap(table, state.materialize(spec.primary_key, pk))
        )

    def consider(
        self,
        row: ObjectRow,
        after: int,
        *,
        forget_sv: int,
        bootstrap: bool,
        skip_own: bool = False,
    ) -> DownloadEntry | None:
        """``state``, ``forget`` or nothing for one changed (or scanned) object.

        ``skip_own`` (the client asked, ``DownloadRequest.skip_own``): a ``state`` whose every
        operation is this client's own is not sent — the client wrote all of it, so joining it
        would change nothing — but the view records it as sent.  Only incremental batches skip:
        a bootstrap sends every visible object (a lost answer's objects come again)."""
        view = self._view_get(row.table, row.pk)
        if view is None and row.table not in self.subs.tables:
            return None  # fast path: never subscribed, never seen
        state = ObjectState.from_wire(unpack(row.state))
        pk = unpack(row.pk)
        record = self._record(row.table, pk, state)
        in_view = view is not None and view[0]
        own = skip_own and all(s.file_ident == self.fi for s in state.stamps())
        if self._visible(row.table, record):
            # Sent even if the view says the client has it: the view records what was sent,
            # and the answer that sent it may have been lost (a bootstrap redone after it).
            self._view_put(row.table, row.pk, True, row.last_sv)
            if own:
                self.skipped_own += 1
                return None
            return DownloadEntry("state", row.table, pk, state.for_reader().to_wire())
        if in_view:
            self._view_put(row.table, row.pk, False, forget_sv)
            if record is None:
                if own:
                    self.skipped_own += 1
                    return None
                return DownloadEntry(
                    "state", row.table, pk, state.for_reader().to_wire()
                )  # erased: let the tombstone merge
            return DownloadEntry("forget", row.table, pk)
        if view is not None and view[1] > after:
            return DownloadEntry(
                "forget", row.table, pk
            )  # resend: the last answer may have been lost
        return None

    def resets(self, after: int, upto: int) -> list[DownloadEntry]:
        """Compensating resets for this client's refused writes in (after, upto]."""
        out: list[DownloadEntry] = []
        for sv, table, pkb, cv, reason in self.tx.rejections(self.fi, after, upto):
            pk = unpack(pkb)
            row = self.tx.get_object(table, pkb)
            state = ObjectState.from_wire(unpack(row.state)) if row else ObjectState()
            record = self._record(table, pk, state)
            err = RejectedWrite(cv, table, pk, reason, sv)
            if (
                row is not None
                and record is not None
                and self.perms.can_read(table, record, self.variables, self.links)
            ):
                out.append(DownloadEntry("reset", table, pk, state.for_reader().to_wire(), err))
            else:
                out.append(DownloadEntry("reset", table, pk, None, err))
        return out


def _check_subscriptions(req: SubscriptionRequest, schema: Mapping[str, TableSpec]) -> None:
    """Refuse queries that do not parse, sets beyond the size limits, and queries naming
    tables or properties the schema lacks."""
    Subscriptions(req.queries, schema).check_size()
    for table, items in req.queries.items():
        for text, _ in items:
            check_key_paths(compile_query(text), table, schema)


def _refusal(
    problems: list[tuple[type[ProtocolError], str, str, str | None]],
) -> ProtocolError:
    """One error for every part of a client schema the server refuses, so a client can push
    the rest (``docs/protocol.md``, "Schema"): ``detail.refused`` lists ``[table, field or nil]``
    (nil: the whole table); the code is the first problem's."""
    cls, message, table, fname = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return cls(
        message + more,
        table=table,
        **({} if fname is None else {"field": fname}),
        refused=[[t, f] for _, _, t, f in problems],
    )


def _additive_merge(
    current: Mapping[str, TableSpec], incoming: Mapping[str, TableSpec]
) -> dict[str, TableSpec]:
    out = dict(current)
    problems: list[tuple[type[ProtocolError], str, str, str | None]] = []
    for name, spec in incoming.items():
        have = out.get(name)
        if have is None:
            out[name] = spec
            continue
        if have.primary_key != spec.primary_key or have.embedded != spec.embedded:
            problems.append(
                (
                    SchemaMismatch,
                    f"{name}: primary key {spec.primary_key!r} (embedded={spec.embedded}) differs "
                    f"from the server's {have.primary_key!r} (embedded={have.embedded})",
                    name,
                    None,
                )
            )
            continue
        fields = dict(have.fields)
        for fname, fs in spec.fields.items():
            old = fields.get(fname)
            if old is None:
                fields[fname] = fs
            elif old != fs:
                problems.append(
                    (
                        SchemaMismatch,
                        f"{name}.{fname}: {fs.to_wire()} differs from the server's "
                        f"{old.to_wire()} (only additive changes)",
                        name,
                        fname,
                    )
                )
        out[name] = TableSpec(have.primary_key, fields, have.embedded)
    if problems:
        raise _refusal(problems)
    return out


def _check_subset(client: Mapping[str, TableSpec], server: Mapping[str, TableSpec]) -> None:
    problems: list[tuple[type[ProtocolError], str, str, str | None]] = []
    for name, spec in client.items():
        have = server.get(name)
        if have is None:
            problems.append(
                (UnknownTableError, f"table {name!r} is not in the server's schema", name, None)
            )
            continue
        if have.primary_key != spec.primary_key or have.embedded != spec.embedded:
            problems.append(
                (SchemaMismatch, f"{name}: primary key differs from the server's", name, None)
            )
            continue
        for fname, fs in spec.fields.items():
            old = have.fields.get(fname)
            if old is None:
                problems.append(
                    (
                        UnknownFieldError,
                        f"field {name}.{fname} is not in the server's schema",
                        name,
                        fname,
                    )
                )
            elif old != fs:
                problems.append(
                    (
                        SchemaMismatch,
                        f"{name}.{fname}: type differs from the server's",
                        name,
                        fname,
                    )
                )
    if problems:
        raise _refusal(problems)
