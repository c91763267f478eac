"""``realm.sync_session``: the state of a synced realm's session, waits, pause/resume and progress.

Why waits and progress read the *file* rather than the agent's memory: the
upload acknowledgement, the download cursor, the server's progress estimate,
the subscription states and a final error are all persisted in
``_sync.meta`` by the agent, so ``wait_for_upload``/``wait_for_download`` and
progress listeners work the same in the agent process, in a standby process
and in a ``disconnected_sync`` secondary (whose session is a read-only view,
``status.AgentView``), and they block on the shared version counter instead
of polling.

Connection state is honest in every process: ``connected`` only after the
agent's last request reached the server, and a standby or a secondary
reports the connection the agent process published (see ``agent``), not its
own idle one.

Errors are final where they must be: when the session stops for a final
error (state ``error``) every waiter, in every process, raises that error;
a wait that times out says what the last error was.  With the server down,
``wait_for_upload`` and ``wait_for_download`` behave alike: both wait their
whole timeout (the server may come back meanwhile, and nothing is lost
either way), then raise :class:`SyncTimeoutError` naming the last error.

Progress is honest: the download estimate comes from the server's batches and
reaches 1.0 only in the transaction that applies the last batch, so a
listener never sees 100% before the data is in the file (realm-swift #8595);
a listener's estimate never goes down within one unit of work; downloads
count objects, uploads count changesets (one per local transaction).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

import realmpy.waiting as waiting
from realmpy.sync import quarantine as Q
from realmpy.sync.errors import SyncError, SyncSchemaError, SyncTimeoutError
from realmpy.sync.history import Meta
from realmpy.sync.quarantine import QuarantinedChangeset
from realmpy.sync.status import AgentView, download_objects, read_error

if TYPE_CHECKING:
    from realmpy.storage import Environment
    from realmpy.sync.agent import SyncClient
    from realmpy.sync.app import User

__all__ = [
    "ConnectionState",
    "ProgressDirection",
    "ProgressMode",
    "SessionState",
    "SyncProgress",
    "SyncSession",
]


class SessionState(str, Enum):
    """``active`` while syncing (or standing by, or watching the agent); ``inactive`` when paused
    or closed; ``error`` when the session stopped for a final error (``last_error``)."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    ERROR = "error"


class ConnectionState(str, Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"


class ProgressDirection(str, Enum):
    UPLOAD = "upload"
    DOWNLOAD = "download"


class ProgressMode(str, Enum):
    REPORT_INDEFINITELY = "report_indefinitely"
    FOR_CURRENTLY_OUTSTANDING_WORK = "for_currently_outstanding_work"


@dataclass(frozen=True)
class SyncProgress:
    """One progress report.

    ``transferred``/``transferable`` count objects.  Upload: object changes
    acknowledged / recorded (an object counts once per changeset that changes
    it; a quarantined changeset counts as done, it is never sent), with the
    bytes of those changesets' operations in ``transferred_bytes`` /
    ``transferable_bytes``, and ``progress_estimate`` their ratio.  Download:
    objects received / expected (the expected number of a bootstrap estimated
    from the server's progress; bytes are None).  ``progress_estimate`` is in
    [0, 1] and never goes down for one listener within one unit of work.
    """

    transferred: int
    transferable: int
    progress_estimate: float
    transferred_bytes: int | None = None
    transferable_bytes: int | None = None


class _Listener:
    def __init__(
        self,
        direction: ProgressDirection,
        mode: ProgressMode,
        callback: Callable[[SyncProgress], None],
        start: tuple[int, int],
    ) -> None:
        self.direction = direction
        self.mode = mode
        self.callback = callback
        self.start = start  # downloads: (cursor, latest server version) when added
        self.objects_base = 0  # downloads: objects received before this listener was added
        self.upload_start = (0, 0, 0, 0)  # uploads: totals when added (``Meta.upload_totals``)
        self.last: SyncProgress | None = None
        self.done = False


class ProgressToken:
    """Returned by :meth:`SyncSession.add_progress_listener`; :meth:`remove` stops the reports."""

    def __init__(self, session: SyncSession, listener: _Listener) -> None:
        self._session = session
        self._listener = listener

    def remove(self) -> None:
        self._session._remove_listener(self._listener)

    cancel = remove


class SyncSession:
    """The sync session of one ``flexible_sync`` realm (shared per process and file)."""

    def __init__(self, client: SyncClient | AgentView) -> None:
        self._client = client
        self._listeners: list[_Listener] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._quarantine_raised = 0  # newest quarantined client version a wait_for_upload raised

    @property
    def _env(self) -> Environment:
        return self._client.env

    # ---- state ---------------------------------------------------------------------

    @property
    def user(self) -> User | None:
        """The synced user (None in a ``disconnected_sync`` secondary: the agent's process has it)."""
        return self._client.user

    @property
    def path(self) -> str:
        return self._client.path

    @property
    def state(self) -> SessionState:
        """``active`` while syncing (or standing by, or watching the agent: a secondary);
        ``inactive`` when paused or stopped; ``error`` after a final error (``last_error``)."""
        return SessionState(self._client.state)

    @property
    def connection_state(self) -> ConnectionState:
        """The connection of the file's sync agent, whichever process it is.

        In the agent process it is the agent's own state (``connected`` only
        right after the server answered a request); in a standby or a
        secondary process it is what the agent published in ``<path>.sync``
        (so every opener of a file reports the same thing), and
        ``disconnected`` if no agent is alive.  After :meth:`pause` in the
        agent process, or once this session stopped, it is ``disconnected``.
        """
        role = self._client.role
        if role == "agent":
            return ConnectionState(self._client.connection_state)
        if role in ("standby", "secondary"):
            return ConnectionState(self._client.published()[1])
        return ConnectionState.DISCONNECTED

    @property
    def agent_pid(self) -> int | None:
        """The pid of the process syncing this file (this one when :attr:`is_agent`), None if none is alive."""
        role = self._client.role
        if role == "agent":
            return os.getpid()
        if role in ("standby", "secondary"):
            return self._client.published()[0] or None
        return None

    @property
    def role(self) -> str:
        """``agent`` (this process syncs the file), ``standby`` (another process does, this one
        takes over if it stops), ``secondary`` (a ``disconnected_sync`` realm: a read-only view
        of the agent) or ``stopped``."""
        return self._client.role

    @property
    def is_agent(self) -> bool:
        return self._client.role == "agent"

    @property
    def last_error(self) -> SyncError | None:
        return self._client.last_error

    @property
    def quarantined(self) -> list[QuarantinedChangeset]:
        """Local changesets the server's schema refused, which will never upload (``quarantine``)."""
        with self._env.read() as snap:
            return Q.listing(snap)

    def discard_quarantined(self) -> int:
        """Forget the quarantined changesets (the objects keep their local values); how many."""
        return Q.discard(self._env)

    def pause(self) -> None:
        """Stop network activity for this file in this process (local writes go on and queue in the file)."""
        self._client.pause()

    def resume(self) -> None:
        self._client.resume()

    # ---- waits ------------------------------------------------------------------------

    def _meta(self) -> tuple[int, int, int, int, float]:
        with self._env.read() as snap:
            m = Meta(snap)
            cursor, latest, progress = m.download()
            return m.cv(), m.acked(), cursor, latest, progress

    def _final_error(self) -> SyncError | None:
        """The error the session stopped for, read from the file (so every process sees it)."""
        with self._env.read() as snap:
            return read_error(snap)

    def _timeout(self, what: str, timeout: float | None) -> SyncTimeoutError:
        last = self.last_error
        because = f"; last error: [{last.code}] {last.message}" if last is not None else ""
        return SyncTimeoutError(
            f"{what} did not finish within {timeout}s "
            f"(connection {self.connection_state.value}, role {self.role}{because})",
            code="timeout",
        )

    def _wait_args(
        self, cond: Callable[[], bool], timeout: float | None, what: str
    ) -> dict[str, Any]:
        """How both forms of a wait check and end (``realmpy.waiting``)."""

        def ready() -> bool:
            final = self._final_error()
            if final is not None:
                raise final  # before ``cond``: a stopped session does not claim to be in sync
            return cond()

        def give_up() -> SyncError | None:
            if self._client.stopped:
                return SyncError(
                    f"cannot {what}: the sync session of {self.path} stopped",
                    code="session_stopped",
                )
            return None

        return {
            "ready": ready,
            "timeout": timeout,
            "give_up": give_up,
            "timed_out": lambda: self._timeout(what, timeout),
        }

    def _wait_until(self, cond: Callable[[], bool], timeout: float | None, what: str) -> None:
        waiting.wait_until(self._env, **self._wait_args(cond, timeout, what))

    async def _wait_until_async(
        self, cond: Callable[[], bool], timeout: float | None, what: str
    ) -> None:
        await waiting.wait_until_async(self._env, **self._wait_args(cond, timeout, what))

    def wait_for_upload(self, timeout: float | None = None) -> None:
        """Block until every change committed to the file before the call is acknowledged by the server.

        In a secondary it waits for the agent (another process) to upload them.  Raises
        :class:`SyncSchemaError` if some of them were quarantined (``quarantined``): the first
        wait of this session that covers a quarantined changeset raises, later ones do not.
        """
        self._wait_until(self._uploaded(), timeout, "wait_for_upload")

    async def wait_for_upload_async(self, timeout: float | None = None) -> None:
        """:meth:`wait_for_upload` for asyncio: the event loop runs on while it waits."""
        await self._wait_until_async(self._uploaded(), timeout, "wait_for_upload")

    def _uploaded(self) -> Callable[[], bool]:
        """The condition of :meth:`wait_for_upload`, for the commits made before this call."""
        target = self._meta()[0]

        def uploaded() -> bool:
            if self._meta()[1] < target:
                return False
            with self._env.read() as snap:
                lost = Q.in_range(snap, self._quarantine_raised, target)
            if lost:
                self._quarantine_raised = max(self._quarantine_raised, lost[-1])
                raise SyncSchemaError(
                    f"wait_for_upload: changesets {lost} were quarantined, the server's schema "
                    "refuses them (sync_session.quarantined)",
                    code="quarantined",
                )
            return True

        return uploaded

    def wait_for_download(self, timeout: float | None = None) -> None:
        """Block until everything the server had when called is in the file.

        In a secondary (no network of its own) "what the server had" is the newest server
        version the agent had heard of at the call.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        target = self._server_version(deadline, timeout)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        self._wait_until(self._downloaded(target), remaining, "wait_for_download")

    async def wait_for_download_async(self, timeout: float | None = None) -> None:
        """:meth:`wait_for_download` for asyncio: the event loop runs on while it waits.  The
        one question to the server (its newest version, retried with backoff while it cannot
        be reached) runs in a worker thread; the wait for the file to catch up is awaited."""
        deadline = None if timeout is None else time.monotonic() + timeout
        target = await asyncio.to_thread(self._server_version, deadline, timeout)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        await self._wait_until_async(self._downloaded(target), remaining, "wait_for_download")

    def _downloaded(self, target: int) -> Callable[[], bool]:
        def ready() -> bool:
            _, _, cursor, _, progress = self._meta()
            return cursor >= target and progress >= 1.0

        return ready

    def _server_version(self, deadline: float | None, timeout: float | None) -> int:
        if isinstance(self._client, AgentView):  # a secondary: what the agent learned
            return self._meta()[3]
        app = self._client.options.app
        url = urllib.parse.urljoin(app.config.base_url.rstrip("/") + "/", "health")
        delay = 0.1
        while True:
            try:
                resp = app._transport._session().get(
                    url, timeout=app.config.request_timeout, verify=app.config.verify
                )
                if resp.status_code == 200:
                    v = resp.json().get("server_version")
                    if isinstance(v, int):
                        return v
            except Exception:
                pass
            final = self._final_error()
            if final is not None:
                raise final
            if self._client.stopped:
                raise SyncError("the sync session stopped", code="session_stopped")
            if deadline is not None and time.monotonic() >= deadline:
                raise self._timeout("wait_for_download", timeout)
            wait = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
            self._client._stop.wait(wait)
            delay = min(delay * 2, 5.0)

    # ---- progress ------------------------------------------------------------------------

    def add_progress_listener(
        self,
        direction: ProgressDirection | str,
        mode: ProgressMode | str,
        callback: Callable[[SyncProgress], None],
    ) -> ProgressToken:
        """Call ``callback(SyncProgress)`` as uploads or downloads advance.

        ``for_currently_outstanding_work`` reports until the work outstanding
        at registration is done (ending with ``progress_estimate == 1.0``);
        ``report_indefinitely`` reports every change until removed.
        Callbacks run on a per-session progress thread.
        """
        d = ProgressDirection(direction)
        m = ProgressMode(mode)
        _cv, _acked, cursor, latest, _ = self._meta()
        listener = _Listener(d, m, callback, (cursor, latest))
        listener.objects_base = self._objects()[0]
        listener.upload_start = self._upload_totals()
        with self._lock:
            self._listeners.append(listener)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._progress_loop, daemon=True, name="realmpy-sync-progress"
                )
                self._thread.start()
        self._deliver(listener, self._meta())
        return ProgressToken(self, listener)

    def _remove_listener(self, listener: _Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _objects(self) -> tuple[int, int]:
        with self._env.read() as snap:
            return download_objects(snap)

    def _upload_totals(self) -> tuple[int, int, int, int]:
        with self._env.read() as snap:
            return Meta(snap).upload_totals()

    def _measure(self, ls: _Listener, meta: tuple[int, int, int, int, float]) -> SyncProgress:
        """The listener's progress now, before the never-goes-down rule."""
        _cv, _acked, cursor, latest, dl_progress = meta
        target = ls.start[1]
        if ls.direction is ProgressDirection.UPLOAD:
            rec_o, rec_b, ack_o, ack_b = self._upload_totals()
            start_rec_o, start_rec_b, start_ack_o, start_ack_b = ls.upload_start
            if ls.mode is ProgressMode.FOR_CURRENTLY_OUTSTANDING_WORK:
                rec_o, rec_b = start_rec_o, start_rec_b  # what was outstanding when added
            total_o, total_b = max(0, rec_o - start_ack_o), max(0, rec_b - start_ack_b)
            done_o = min(max(0, ack_o - start_ack_o), total_o)
            done_b = min(max(0, ack_b - start_ack_b), total_b)
            est = 1.0 if done_b >= total_b else done_b / total_b
            return SyncProgress(done_o, total_o, est, done_b, total_b)
        if ls.mode is ProgressMode.REPORT_INDEFINITELY:
            target = latest
        received, expected = self._objects()
        moved = max(0, received - ls.objects_base)
        total = max(expected - ls.objects_base, moved)
        if cursor >= target and dl_progress >= 1.0:
            return SyncProgress(moved, moved, 1.0)
        est = moved / total if total > moved else dl_progress
        return SyncProgress(moved, total, min(est, 0.99))

    def _deliver(self, ls: _Listener, meta: tuple[int, int, int, int, float]) -> None:
        p = self._measure(ls, meta)
        last = ls.last
        if (
            last is not None
            and last.progress_estimate < 1.0  # after 1.0, new work starts a new unit (indefinitely)
            and p.progress_estimate < last.progress_estimate
        ):
            p = SyncProgress(p.transferred, p.transferable, last.progress_estimate)
        if p != last:
            ls.last = p
            try:
                ls.callback(p)
            except Exception:
                import logging

                logging.getLogger("realmpy.sync").exception("progress listener raised")
        if ls.mode is ProgressMode.FOR_CURRENTLY_OUTSTANDING_WORK and p.progress_estimate >= 1.0:
            ls.done = True
            self._remove_listener(ls)

    def _progress_loop(self) -> None:
        while not self._closed and not self._client.stopped:
            seen = self._env.version
            with self._lock:
                listeners = list(self._listeners)
            if not listeners:
                with self._lock:
                    if not self._listeners:
                        self._thread = None
                        return
            meta = self._meta()
            for ls in listeners:
                self._deliver(ls, meta)
            try:
                self._env.wait_for_change(seen, 1.0)
            except Exception:
                return

    def _close(self) -> None:
        self._closed = True

    def __repr__(self) -> str:
        return f"<SyncSession {self.path} {self.role} {self.state.value} {self.connection_state.value}>"
