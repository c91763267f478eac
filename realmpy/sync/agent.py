"""The sync agent: exactly one per file, across processes and threads (invariant 8).

Election: every ``flexible_sync`` opener of a file creates (once per
process, shared by its realms and threads) a :class:`SyncClient`, which
asks for an exclusive lock on ``<path>.sync`` (``election``).  The holder is
the agent; the others wait *blocked in the kernel* as standbys, and the
kernel releases the lock when the agent process dies however it dies
(SIGKILL included), so one standby takes over at once; closing a standby
returns at once.  (Realm instead crashes the second opener with
``MultipleSyncAgents``.)

The agent runs two threads:

* the **uploader** blocks on the shared version counter
  (``Environment.wait_for_change``), so a commit in *any* process wakes it
  within microseconds with no polling; it then scans ``_sync.history`` from
  the persisted acknowledgement (never an in-memory queue), uploads in
  batches and records each acknowledgement in one local transaction.  It
  also obtains the file ident, pushes the schema and posts subscription sets;
* the **downloader** long-polls the server and applies each batch together
  with the cursor move in one local transaction (``integrate``).

Connection state is honest and published for every process (``status``):
``connected`` only right after the server answered a request,
``disconnected`` at the first request that could not reach it,
``connecting`` while a request is out after that.  The agent writes it to
``<path>.sync`` whenever it changes, so a standby's or a secondary's
``sync_session.connection_state`` reports the agent's connection, not its
own idle one.  The election's first, non-blocking attempt is made before the
constructor returns, so a freshly opened standby already knows it is one and
reads the agent's state.

Errors are handled by their code, from one table (``error_codes``):
transient ones back off exponentially with jitter and never lose anything
(the history and cursors are in the file); ``client_reset_required`` runs
the configured client reset; a refused schema quarantines the changesets
that need it (``quarantine``); a final error stops the session in state
``error``, is reported to the ``sync_error_handler`` once, and is stored in
the file so that every waiter in every process raises it (``status``).  A
transient error is reported once until the next successful exchange, not on
every retry.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final

from realmpy.perpath import PathRegistry
from realmpy.sharedfile import SharedFile
from realmpy.sidefiles import open_side_file
from realmpy.storage import Environment, WriteTransaction
from realmpy.sync import abortable, integrate
from realmpy.sync import localstate as L
from realmpy.sync import quarantine as Q
from realmpy.sync import status as ST
from realmpy.sync import subscriptions as S
from realmpy.sync.client_reset import ClientResetMode
from realmpy.sync.election import Election
from realmpy.sync.errors import (
    AppError,
    ClientResetError,
    CompensatingWriteError,
    ConnectionFailedError,
    ServerResponseError,
    SubscriptionError,
    SyncConfigurationError,
    SyncError,
    SyncSchemaError,
    UserLoggedOutError,
)
from realmpy.sync.history import Meta
from realmpy.wire import protocol as P
from realmpy.wire.error_codes import Handling, handling

if TYPE_CHECKING:
    from realmpy.config import Configuration
    from realmpy.sync.configuration import FlexibleSyncOptions
    from realmpy.sync.session import SyncSession

__all__ = ["RECONNECT_CAP_S", "Backoff", "SyncClient"]

log = logging.getLogger("realmpy.sync")

_IDLE_WAIT_S: Final = 1.0
"""Longest a blocked agent thread goes without checking for stop/pause (not a poll: it waits on the counter)."""


RECONNECT_CAP_S: Final = 2.0
"""Longest wait between attempts to reach a server that cannot be reached (refused, reset).

Such attempts cost the server nothing while it is down, and when it is back each device
tries again within this bound (its jitter spreads them over the second half of it): a
restarted server has its devices back within about 2 s, where the general cap (10 s, for
servers that answer with an error) kept them away for up to 10 s (issue 18, item 6)."""


class Backoff:
    """Exponential backoff with full jitter: 0.1 s doubling to ``cap`` seconds."""

    def __init__(self, first: float = 0.1, cap: float = 10.0) -> None:
        self.first = first
        self.cap = cap
        self.attempt = 0

    def reset(self) -> None:
        self.attempt = 0

    def next(self, *, unreachable: bool = False) -> float:
        """The next wait; ``unreachable``: the server could not be reached (``RECONNECT_CAP_S``)."""
        cap = min(self.cap, RECONNECT_CAP_S) if unreachable else self.cap
        delay = min(cap, self.first * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 30)
        return random.uniform(delay / 2, delay)


def _on_download(txn: WriteTransaction, resp: P.DownloadResponse) -> None:
    """Inside a download batch's transaction: advance subscription states, count its objects."""
    S.on_download(txn, resp)
    ST.count_download(txn, resp)


class _Ahead:
    """A call run in a helper thread meanwhile (reading the next upload batch, recording an
    acknowledgement); ``result()`` joins it."""

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._out: list[Any] = []
        self._err: list[BaseException] = []

        def run() -> None:
            try:
                self._out.append(fn(*args, **kwargs))
            except BaseException as exc:
                self._err.append(exc)

        self._thread = threading.Thread(target=run, name="realmpy-sync-upload-ahead", daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join()
        if self._err:
            raise self._err[0]
        return self._out[0]


class SyncClient:
    """The per-process, per-file sync machinery behind every ``flexible_sync`` realm of that file."""

    registry: ClassVar[PathRegistry[SyncClient]] = PathRegistry()
    """The sync clients of this process, by path."""

    def __init__(self, config: Configuration, options: FlexibleSyncOptions) -> None:
        self.path = config.path
        self.options = options
        self.user = options.user
        self.pid = os.getpid()
        self.refs = 0
        self.sessions: list[SyncSession] = []
        self._shared = SharedFile.acquire(config)
        self.env: Environment = self._shared.env
        self.role = "starting"
        self._conn = "disconnected"
        self.state = "active"
        self.last_error: SyncError | None = None
        self._stop = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        # Bumped to abort the requests in flight (``_interrupt``): each request is made under
        # the generation it started in.
        self._generation = 0
        self._ident_lock = threading.Lock()
        self._logged_out = False
        self._schema = Q.SchemaPush()
        self._acking: _Ahead | None = None  # an acknowledgement being recorded (uploader's)
        self._acked_sent = (0, 0)  # (file ident, client version) the server acknowledged last
        self._refusals_reported: set[Q.Refused] = set()
        # Codes of transient errors reported since the last successful request (report once).
        self._reported: set[str] = set()
        self._state_cond = threading.Condition()
        try:
            fd = open_side_file(self.path, ".sync", read_only=False, what="cannot start sync")
        except BaseException:
            self._shared.release()
            raise
        assert fd is not None  # only read_only opens return None
        self._lock_fd = fd
        self._elected = threading.Event()
        self._downloader: threading.Thread | None = None
        self._remove_logout = self.user._add_logout_callback(self._on_logout)
        self._check_owner()
        self._elect_now()
        self._thread = threading.Thread(
            target=self._run, name=f"realmpy-sync-agent[{os.path.basename(self.path)}]", daemon=True
        )
        self._thread.start()

    # ---- connection state, published for the other processes -----------------------------

    @property
    def connection_state(self) -> str:
        """This process's own connection (meaningful while it is the agent)."""
        return self._conn

    @connection_state.setter
    def connection_state(self, value: str) -> None:
        if value != self._conn:
            self._conn = value
            if self.role == "agent":
                self._publish()

    def _publish(self) -> None:
        with contextlib.suppress(OSError):
            os.pwrite(self._lock_fd, ST.format_line(os.getpid(), self._conn), 0)

    def published(self) -> tuple[int, str]:
        """``(pid, connection state)`` the agent published in ``<path>.sync`` (``status``)."""
        return ST.parse_line(self._lock_fd)

    def _call(self, method: str, path: str, body: Any, *, timeout: float | None = None) -> Any:
        """One request to the server; the connection state follows its outcome (module docstring).
        Raises ``_Interrupted`` if ``_interrupt`` aborted it (its outcome is then not one)."""
        if self._conn == "disconnected" and self._resume.is_set():
            self.connection_state = "connecting"
        gen = self._generation

        def cancelled() -> bool:
            return self._generation != gen

        try:
            result = self.user.request(method, path, body, timeout=timeout, cancelled=cancelled)
        except (SyncError, abortable.RequestCancelled) as exc:
            if cancelled():
                raise _Interrupted(method, path) from None
            if isinstance(exc, abortable.RequestCancelled):
                raise  # (cannot happen: cancelled only when the generation moved)
            self._failed(exc)
            raise
        self._set_connected()
        self._reported.clear()
        return result

    def _failed(self, exc: SyncError) -> None:
        """The connection state after a failed request."""
        if isinstance(exc, (ConnectionFailedError, ServerResponseError)):
            self.connection_state = "disconnected"  # unreachable, or not a realmpy server answering
        elif exc.status is not None and exc.status >= 500:
            self.connection_state = "disconnected"
        elif exc.status is not None:
            self._set_connected()  # the server answered, with a typed refusal

    def _interrupt(self) -> None:
        """Abort the loops' requests in flight (pause, stop, a client reset): their answers
        would be worth nothing, and a held long poll would otherwise wait out its whole time."""
        self._generation += 1
        me = threading.current_thread()
        for t in (getattr(self, "_thread", None), self._downloader):
            if t is not None and t is not me:
                abortable.abort(t)

    # ---- registry -------------------------------------------------------------------

    @classmethod
    def acquire(cls, config: Configuration, options: FlexibleSyncOptions) -> SyncClient:
        """The process's client for ``config.path`` (created on first use)."""

        def check(client: SyncClient) -> None:
            if client.user.id != options.user.id:
                raise SyncConfigurationError(
                    f"{config.path} is already being synced here for user {client.user.id}; "
                    f"open it for user {options.user.id} in another file (a synced file belongs to one user)"
                )

        return cls.registry.acquire(
            config.path,
            lambda: cls(config, options),
            check=check,
            usable=lambda client: not client._stop.is_set(),
        )

    def release(self) -> None:
        if SyncClient.registry.release(self):
            self.stop()

    def _check_owner(self) -> None:
        with self.env.read() as snap:
            ident = Meta(snap).ident()
        if ident is not None and ident[3] != self.user.id:
            self._shared.release()
            os.close(self._lock_fd)
            raise SyncConfigurationError(
                f"{self.path} is synced for user {ident[3]}, not {self.user.id}: "
                "open another path for this user (each synced file belongs to one user)"
            )

    # ---- lifecycle ---------------------------------------------------------------------

    def stop(self, *, join: float = 2.0) -> None:
        """Stop syncing in this process (another process's standby takes over)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._interrupt()
        self._resume.set()
        self._elected.set()
        self._remove_logout()
        with self._state_cond:
            self._state_cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(join)
        if self._downloader is not None and threading.current_thread() is not self._downloader:
            self._downloader.join(0.2)
        if self.role == "agent":
            self.connection_state = (
                "disconnected"  # published: standbys see it until one takes over
            )
        self._election.release()  # gives the agent lock up, or stops waiting for it
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)
        self.role = "stopped"
        self._conn = "disconnected"
        if self.state != "error":
            self.state = "inactive"
        self._shared.release()

    def pause(self) -> None:
        self._resume.clear()
        self._interrupt()  # nothing in flight finishes after the pause
        self.state = "inactive"
        self.connection_state = "disconnected"

    def resume(self) -> None:
        if not self._stop.is_set():
            self.state = "active"
            self._resume.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _on_logout(self) -> None:
        self._logged_out = True  # the loops' failing requests are not errors of their own
        self._report(
            UserLoggedOutError(
                f"user {self.user.id} logged out: syncing of {self.path} stopped", code="logged_out"
            )
        )
        threading.Thread(target=self.stop, daemon=True).start()

    # ---- election ------------------------------------------------------------------------

    def _elect_now(self) -> None:
        """The election's first, non-blocking attempt (before the constructor returns)."""

        def open_lock() -> int:
            fd = open_side_file(self.path, ".sync", read_only=False, what="cannot start sync")
            assert fd is not None  # only read_only opens return None
            return fd

        self._election = Election(self.path + ".sync", open_lock, self._elected)
        if not self._election.granted:
            self.role = "standby"
            log.info("standby: another process is the sync agent of %s", self.path)
            return
        self._become_agent()

    def _become_agent(self) -> None:
        self.role = "agent"
        with contextlib.suppress(OSError):
            os.ftruncate(self._lock_fd, 0)
        self._publish()

    def _run(self) -> None:
        try:
            if self.role == "standby":
                self._elected.wait()  # until the agent dies or stops, or we stop
                if self._stop.is_set():
                    return
                if self._election.error is not None:
                    raise self._election.error
                self._become_agent()
            if self._stop.is_set():
                return
            with self.env.write(record_history=False) as txn:
                # A new agent tries again: the last one's final error goes.  An older file's
                # merge states shrink, before any download answer can be in flight (localstate).
                cleared = ST.clear_error(txn)
                if L.upgrade(txn) is None and not cleared:
                    txn.abort()
            log.info("process %d is the sync agent of %s", os.getpid(), self.path)
            self._downloader = threading.Thread(
                target=self._download_loop,
                daemon=True,
                name=f"realmpy-sync-download[{os.path.basename(self.path)}]",
            )
            self._downloader.start()
            self._upload_loop()
        except Exception as exc:
            if not self._stop.is_set():
                log.exception("sync agent of %s failed", self.path)
                self._report(SyncError(f"sync agent failed: {exc!r}", code="internal_error"))
        finally:
            with contextlib.suppress(Exception):
                self._recorded()
            self.options.app._transport.close_thread_session()

    # ---- shared steps -----------------------------------------------------------------------

    def _wait(self, seconds: float) -> None:
        """Back off for ``seconds`` (returns early on stop)."""
        self._stop.wait(seconds)

    def _gate(self) -> bool:
        """Block while paused; False when stopping."""
        while not self._resume.is_set() and not self._stop.is_set():
            self._resume.wait(_IDLE_WAIT_S)
        return not self._stop.is_set()

    def ensure_ident(self) -> tuple[int, int, int, str]:
        """The file's ident, asking the server once (idempotently, by the nonce stored in the file)."""
        with self._ident_lock:
            with self.env.read() as snap:
                meta = Meta(snap)
                ident = meta.ident()
                nonce = meta.nonce()
            if ident is not None:
                return ident
            if nonce is None:
                with self.env.write(record_history=False) as txn:
                    nonce = Meta(txn).ensure_nonce()
            raw = self._call("POST", "/sync/ident", P.IdentRequest(nonce).to_wire())
            try:
                m = raw if isinstance(raw, dict) else {}
                ident = (int(m["file_ident"]), int(m["salt"]), int(m["server_salt"]), self.user.id)
            except (KeyError, TypeError, ValueError):
                raise ServerResponseError("bad ident response", code="bad_response") from None
            integrate.assign_ident(self.env, ident, nonce)
            self._schema = Q.SchemaPush()
            with self.env.read() as snap:
                stored = Meta(snap).ident()
            if stored is None:
                raise SyncError(
                    "file ident was not stored (reset meanwhile); retrying", code="retry"
                )
            return stored

    def _push_schema(self) -> bool:
        """Push the file's stored schema if a commit changed it since the last push, around the
        parts the server refuses (``quarantine``); True if it pushed now."""
        with self.env.read() as snap:
            changed = Q.file_schema(snap, unless=self._schema.raw)
        if changed is None:
            return False
        raw, tables = changed
        refused: Q.Refused = frozenset()
        push = tables
        first: SyncError | None = None
        while True:
            try:
                self._call("POST", "/sync/schema", P.SchemaRequest(push).to_wire())
                break
            except SyncError as exc:
                more = Q.refused_from(exc)
                if handling(exc.code, exc.status) is not Handling.SCHEMA:
                    raise
                if more is None or more <= refused:
                    raise  # nothing new to leave out: cannot push around it (``_handle``: final)
                first = first or exc
                push, refused = Q.without(tables, refused | more)
        self._schema = Q.SchemaPush(raw, refused)
        if first is not None and refused not in self._refusals_reported:
            self._refusals_reported.add(refused)
            parts = sorted(t if f is None else f"{t}.{f}" for t, f in refused)
            self._report(
                SyncSchemaError(
                    f"the server refuses part of {self.path}'s schema ({', '.join(parts)}): "
                    f"{first.message}; changesets that use it are quarantined "
                    "(sync_session.quarantined), the others sync",
                    code=first.code,
                    status=first.status,
                    detail={"refused": [[t, f] for t, f in sorted(refused, key=str)]},
                )
            )
        return True

    def _post_subscriptions(self, fi: int, salt: int) -> None:
        with self.env.read() as snap:
            todo = S.to_post(snap, Meta(snap).sub_sent())
        if todo is None:
            return
        qv, queries = todo
        req = {"file_ident": fi, "salt": salt, "query_version": qv, "queries": queries}
        try:
            raw = self._call("POST", "/sync/subscriptions", req)
        except AppError as exc:
            if handling(exc.code, exc.status) not in (Handling.SUBSCRIPTION, Handling.SCHEMA):
                raise
            with self.env.write(record_history=False) as txn:
                Meta(txn).set_sub_sent(qv)
                S.mark(txn, qv, S.SubscriptionSetState.ERROR, exc.message)
            self._report(
                SubscriptionError(
                    f"subscription set {qv} refused: {exc.message}",
                    code=exc.code,
                    status=exc.status,
                )
            )
            return
        state = raw.get("state") if isinstance(raw, dict) else None
        if state not in ("pending", "complete", "superseded"):
            raise ServerResponseError(
                f"bad subscription response state {state!r}", code="bad_response"
            )
        with self.env.write(record_history=False) as txn:
            meta = Meta(txn)
            if meta.file_ident() != fi:
                txn.abort()
                return
            meta.set_sub_sent(max(qv, meta.sub_sent()))
            S.mark(
                txn,
                qv,
                {
                    "pending": S.SubscriptionSetState.BOOTSTRAPPING,
                    "complete": S.SubscriptionSetState.COMPLETE,
                    "superseded": S.SubscriptionSetState.SUPERSEDED,
                }[state],
            )

    def _upload_pending(self) -> int:
        """Upload every recorded changeset, in batches.  Behind a full batch (a backlog) the
        next one is read from the file while this one is in flight, so the history scan
        overlaps the server's work; otherwise it is read after the acknowledgement, so it
        also carries what was committed meanwhile (a burst's latency).

        Each acknowledgement is recorded (a local write transaction, which waits for the
        file's write lock behind every writing process) in a helper thread while this one
        goes on: the next batch starts after what the server acknowledged, recorded or not.
        The server has integrated those changesets, and re-sending them after a crash before
        the record is harmless (it acknowledges them again).  Acknowledgements are recorded
        in order; every step that reads the recorded one waits for it (``_recorded``)."""
        sent = 0

        def rescan() -> integrate.UploadBatch:
            self._recorded()  # reads from the recorded acknowledgement
            return integrate.upload_changesets(self.env)

        try:
            batch = self._next_batch()
            while not self._stop.is_set() and self._resume.is_set():
                fi, _acked, css, full = batch
                if not css:
                    Q.settle(self.env)
                    return sent
                ident = self.ensure_ident()
                if ident[0] != fi:
                    batch = rescan()
                    continue  # identity changed under us (reset): rescan
                fresh = self._push_schema()  # read after ``css``: the union covers every one
                if self._quarantine(css):
                    batch = rescan()
                    continue
                req = P.UploadRequest(fi, ident[1], tuple(css))
                last = css[-1].client_version
                ahead = _Ahead(integrate.upload_changesets, self.env, after=last) if full else None
                t0 = time.monotonic()
                try:
                    raw = self._call("POST", "/sync/upload", req.to_wire())
                except SyncError as exc:
                    if fresh or handling(exc.code, exc.status) is not Handling.SCHEMA:
                        raise
                    self._schema = Q.SchemaPush()  # the server's schema changed: push, retry
                    batch = rescan()
                    continue
                try:
                    resp = P.UploadResponse.from_wire(raw)
                except P.ProtocolError as exc:
                    raise ServerResponseError(
                        f"bad upload response: {exc}", code="bad_response"
                    ) from None
                acked = resp.acked_client_version
                if acked > last:
                    raise ServerResponseError(
                        f"server acknowledged client version {acked}, beyond what was sent "
                        f"({last})",
                        code="bad_response",
                    )
                self._recorded()
                self._acking = _Ahead(
                    integrate.record_ack, self.env, fi, acked, resp.server_version
                )
                self._acked_sent = (fi, acked)
                log.debug(
                    "uploaded %d changesets in %.1f ms", len(css), (time.monotonic() - t0) * 1000
                )
                if acked < last:
                    raise ServerResponseError(
                        "server did not acknowledge the whole upload", code="bad_response"
                    )
                sent += len(css)
                batch = (
                    integrate.upload_changesets(self.env, after=last)
                    if ahead is None
                    else ahead.result()
                )
            return sent
        except BaseException:
            with contextlib.suppress(Exception):
                self._recorded()  # what the server acknowledged stays acknowledged
            raise

    def _next_batch(self) -> integrate.UploadBatch:
        """The changesets after the last acknowledgement, recorded in the file or not yet."""
        fi, upto = self._acked_sent
        batch = integrate.upload_changesets(self.env, after=upto)
        if batch.file_ident != fi:  # another identity (a reset): only the file knows
            self._recorded()
            batch = integrate.upload_changesets(self.env)
        return batch

    def _recorded(self) -> None:
        """Wait until the last acknowledgement is recorded in the file."""
        if self._acking is not None:
            acking, self._acking = self._acking, None
            acking.result()

    def _quarantine(self, css: list[P.Changeset]) -> bool:
        """Quarantine the pending changesets that use refused schema parts; True if any were."""
        refused = self._schema.refused
        if not refused or not any(Q.touches(cs.ops, refused) for cs in css):
            return False
        parts = ", ".join(sorted(t if f is None else f"{t}.{f}" for t, f in refused))
        moved = Q.quarantine(self.env, refused, f"the server's schema refuses {parts}")
        log.warning(
            "quarantined changesets %s of %s: the server refuses %s", moved, self.path, parts
        )
        return True

    def _set_connected(self) -> None:
        if self._resume.is_set():
            self.connection_state = "connected"
        with self._state_cond:
            self._state_cond.notify_all()

    # ---- loops --------------------------------------------------------------------------

    def _upload_loop(self) -> None:
        backoff = Backoff()
        while self._gate():
            seen = self.env.version
            fi = 0
            try:
                ident = self.ensure_ident()
                fi = ident[0]
                self._push_schema()
                self._post_subscriptions(ident[0], ident[1])
                self._upload_pending()
                backoff.reset()
            except _Interrupted:
                continue  # paused, stopped or reset: start over
            except Exception as exc:
                if self._handle(exc, backoff, fi):
                    return
                continue
            with contextlib.suppress(Exception):
                self.env.wait_for_change(seen, _IDLE_WAIT_S)

    def _download_loop(self) -> None:
        backoff = Backoff()
        token: bytes | None = None
        token_fi = 0
        try:
            while self._gate():
                fi = 0
                try:
                    fi, salt, server_salt, _ = self.ensure_ident()
                    if fi != token_fi:
                        token, token_fi = None, fi
                    with self.env.read() as snap:
                        meta = Meta(snap)
                        after, bootstrapped = meta.download()[0], meta.bootstrapped()
                    wait_ms = 0 if token else int(self.options.app.config.long_poll_seconds * 1000)
                    # skip_own: this file holds every operation it wrote, so the server's echo
                    # of them would change nothing here, yet apply it under the write lock that
                    # the secondaries and the recording of acknowledgements wait for.
                    req = P.DownloadRequest(
                        fi, salt, after, token, wait_ms, query_version=bootstrapped, skip_own=True
                    )
                    timeout = self.options.app.config.request_timeout + wait_ms / 1000
                    raw = self._call("POST", "/sync/download", req.to_wire(), timeout=timeout)
                    try:
                        resp = P.DownloadResponse.from_wire(raw)
                    except P.ProtocolError as exc:
                        raise ServerResponseError(
                            f"bad download response: {exc}", code="bad_response"
                        ) from None
                    if (
                        resp.server_version > resp.latest_server_version
                        or resp.server_version < after
                    ):
                        raise ServerResponseError(
                            f"download cursor {resp.server_version} outside [{after}, {resp.latest_server_version}]",
                            code="bad_response",
                        )
                    if self._stop.is_set():
                        return
                    t0 = time.monotonic()
                    res = integrate.apply_download(
                        self.env,
                        resp,
                        after,
                        fi,
                        server_salt,
                        on_subscription=_on_download,
                        is_current=lambda: not self._stop.is_set(),
                    )
                    log.debug(
                        "applied a download of %d objects in %.1f ms",
                        len(resp.entries),
                        (time.monotonic() - t0) * 1000,
                    )
                    if res.reset_needed:
                        self._client_reset(fi, res.reset_needed)
                        token = None
                        continue
                    token = resp.bootstrap_token if resp.batch == "more" else None
                    backoff.reset()
                    if res.rejected:
                        writes = [(r.table, r.pk, r.reason) for r in res.rejected]
                        self._report(
                            CompensatingWriteError(
                                f"the server refused {len(writes)} write(s) and undid them: "
                                + "; ".join(f"{t}[{pk!r}]: {why}" for t, pk, why in writes[:5]),
                                writes,
                            )
                        )
                except _Interrupted:
                    token = None  # paused, stopped or reset: start over
                except Exception as exc:
                    token = None
                    if self._handle(exc, backoff, fi):
                        return
        finally:
            self.options.app._transport.close_thread_session()

    # ---- errors and resets ----------------------------------------------------------------

    def _handle(self, exc: BaseException, backoff: Backoff, fi: int) -> bool:
        """Handle an error by its code (``error_codes``); back off; True if this loop must end."""
        if self._stop.is_set() or self._logged_out:
            return True
        if not isinstance(exc, SyncError):
            log.exception("unexpected error in the sync agent of %s", self.path, exc_info=exc)
            exc = SyncError(f"unexpected error: {exc!r}", code="internal_error")
        how = handling(exc.code, exc.status)
        if how is Handling.RESET:
            self._client_reset(
                fi, exc.message
            )  # no-op if ``fi`` is not the file's identity any more
            return False
        if how is not Handling.RETRY:
            # FATAL, and a SCHEMA or SUBSCRIPTION refusal that could not be handled where it
            # arose (nothing to push around, a refused upload right after a push): final.
            self._stop_for(exc)
            return True
        self.last_error = exc
        if isinstance(exc, ConnectionFailedError):
            # Not reported: ``connection_state`` says it, and ``last_error`` keeps the cause.
            if self.connection_state != "disconnected":
                log.info("sync of %s disconnected: %s", self.path, exc.message)
            self.connection_state = "disconnected"
        else:
            backoff.attempt = max(backoff.attempt, 5)  # the server answered: no hurry
            if exc.code not in self._reported and exc.code != "retry":
                self._reported.add(exc.code)  # once until the next successful exchange
                self._report(exc)
        self._wait(backoff.next(unreachable=isinstance(exc, ConnectionFailedError)))
        return False

    def _stop_for(self, err: SyncError) -> None:
        """Stop the session for a final error: state ``error``, report it once (both loops may
        meet it), store it in the file (every waiter in every process raises it, ``status``),
        and stop in another thread (stopping joins this one)."""
        with self._state_cond:
            if self.state == "error":
                return  # the other loop reported it already
            self.last_error = err
            self.state = "error"
        log.error("sync of %s stopped: %s", self.path, err.message)
        with contextlib.suppress(Exception), self.env.write(record_history=False) as txn:
            ST.store_error(txn, err)
        self._report(err)
        threading.Thread(target=self.stop, daemon=True).start()

    def _report(self, err: SyncError) -> None:
        handler = self.options.sync_error_handler
        session = self.sessions[0] if self.sessions else None
        if handler is None:
            log.warning("sync error on %s: %s", self.path, err)
            return
        try:
            handler(session, err)
        except Exception:
            log.exception("sync_error_handler raised")

    def _client_reset(self, fi: int, reason: str) -> None:
        """Run the configured client reset, once per lost identity."""
        with self._ident_lock:
            with self.env.read() as snap:
                current = Meta(snap).file_ident()
            if current != fi or fi == 0:
                return  # another thread already reset this identity
            handler = self.options.client_reset_handler
            session = self.sessions[0] if self.sessions else None
            err = ClientResetError(
                f"client reset required for {self.path}: {reason}", code="client_reset"
            )
            if handler.mode is ClientResetMode.MANUAL:
                self._callback(handler.on_manual_reset, session, err)
                self._stop_for(err)
                return
            log.warning("client reset of %s (%s): %s", self.path, handler.mode.value, reason)
            self._callback(handler.on_before_reset, session)
            recover = handler.mode in (
                ClientResetMode.RECOVER_UNSYNCED,
                ClientResetMode.RECOVER_OR_DISCARD,
            )
            try:
                kept = integrate.client_reset(self.env, recover=recover)
            except Exception:
                if handler.mode is not ClientResetMode.RECOVER_OR_DISCARD:
                    raise
                log.exception("recovery failed; discarding unsynced changes of %s", self.path)
                kept = integrate.client_reset(self.env, recover=False)
            self._schema = Q.SchemaPush()
            self._interrupt()  # the other loop's held long poll is the old identity's
            log.warning("client reset of %s done: %d unsynced changeset(s) kept", self.path, kept)
            self._callback(handler.on_after_reset, session)

    @staticmethod
    def _callback(cb: Callable[..., Any] | None, *args: Any) -> None:
        if cb is None:
            return
        try:
            cb(*args)
        except Exception:
            log.exception("client reset callback raised")


class _Interrupted(Exception):
    """A request ``SyncClient._interrupt`` aborted: the loop that made it starts over (no
    backoff, no error: a pause, a stop or a client reset asked for it)."""


@atexit.register
def _stop_clients_at_exit() -> None:
    """Stop this process's sync clients while the interpreter can still run threads.

    Why: a program may end without closing its synced realm (the README's
    main process does).  Its agent and download threads are daemons, and at
    interpreter shutdown a daemon thread stops dead inside whatever call it
    was in; the realm's ``__del__`` then closes the file, which waits for
    those calls to return, forever.  Stopping the clients first (atexit runs
    before that) ends their calls and hands the file to a standby at once.
    """
    for client in SyncClient.registry.live():
        client.stop()
