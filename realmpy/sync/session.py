"""``realm.sync_session``: the state of a synced realm's session, waits, pause/resume and progress.

Why waits and progress read the *file* rather than the agent's memory: the
upload acknowledgement, the download cursor, the server's progress estimate
and the subscription states are all persisted in ``_sync.meta`` by the agent,
so ``wait_for_upload``/``wait_for_download`` and progress listeners work the
same in the agent process and in a standby process, and they block on the
shared version counter instead of polling.

Connection state is honest in every process: a standby reports the
connection the agent process published (see ``agent``), not its own idle one.

Progress is honest: the download estimate comes from the server's batches and
reaches 1.0 only in the transaction that applies the last batch, so a
listener never sees 100% before the data is in the file (realm-swift #8595).
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

from realmpy import waiting
from realmpy.sync.errors import ConnectionFailedError, SyncError, SyncTimeoutError
from realmpy.sync.history import Meta

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
    ACTIVE = "active"
    INACTIVE = "inactive"


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

    Upload: ``transferred``/``transferable`` count changesets (acknowledged /
    recorded).  Download: they are the download cursor and the newest
    server version known; ``progress_estimate`` is in [0, 1].
    """

    transferred: int
    transferable: int
    progress_estimate: float


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
        self.start = start
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

    def __init__(self, client: SyncClient) -> None:
        self._client = client
        self._listeners: list[_Listener] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def _env(self) -> Environment:
        return self._client.env

    # ---- state ---------------------------------------------------------------------

    @property
    def user(self) -> User:
        return self._client.user

    @property
    def path(self) -> str:
        return self._client.path

    @property
    def state(self) -> SessionState:
        """``active`` while syncing (or standing by to take over); ``inactive`` when paused or stopped."""
        return SessionState(self._client.state)

    @property
    def connection_state(self) -> ConnectionState:
        """The connection of the file's sync agent, whichever process it is.

        In the agent process it is the agent's own state; in a standby
        process it is what the agent published in ``<path>.sync`` (so every
        ``flexible_sync`` opener of a file reports the same thing), and
        ``disconnected`` if no agent is alive.  After :meth:`pause` in the
        agent process, or once this session stopped, it is ``disconnected``.
        """
        role = self._client.role
        if role == "agent":
            return ConnectionState(self._client.connection_state)
        if role == "standby":
            return ConnectionState(self._client.published()[1])
        return ConnectionState.DISCONNECTED

    @property
    def agent_pid(self) -> int | None:
        """The pid of the process syncing this file (this one when :attr:`is_agent`), None if none is alive."""
        role = self._client.role
        if role == "agent":
            return os.getpid()
        if role == "standby":
            return self._client.published()[0] or None
        return None

    @property
    def role(self) -> str:
        """``agent`` (this process syncs the file), ``standby`` (another process does) or ``stopped``."""
        return self._client.role

    @property
    def is_agent(self) -> bool:
        return self._client.role == "agent"

    @property
    def last_error(self) -> SyncError | None:
        return self._client.last_error

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

    def _wait_args(self, what: str, timeout: float | None) -> dict[str, Any]:
        """How both forms of every wait end: stopped session, or timeout (``waiting``)."""

        def give_up() -> SyncError | None:
            if self._client.stopped:
                return SyncError(
                    f"cannot {what}: the sync session of {self.path} stopped",
                    code="session_stopped",
                )
            return None

        def timed_out() -> SyncTimeoutError:
            return SyncTimeoutError(
                f"{what} did not finish within {timeout}s "
                f"(connection {self.connection_state.value}, role {self.role})",
                code="timeout",
            )

        return {"give_up": give_up, "timed_out": timed_out}

    def _uploaded(self) -> Callable[[], bool]:
        target = self._meta()[0]
        return lambda: self._meta()[1] >= target

    def _downloaded(self, target: int) -> Callable[[], bool]:
        def ready() -> bool:
            _, _, cursor, _, progress = self._meta()
            return cursor >= target and progress >= 1.0

        return ready

    def wait_for_upload(self, timeout: float | None = None) -> None:
        """Block until every change committed to the file before the call is acknowledged by the server."""
        what = "wait_for_upload"
        waiting.wait_until(self._env, self._uploaded(), timeout, **self._wait_args(what, timeout))

    async def wait_for_upload_async(self, timeout: float | None = None) -> None:
        """:meth:`wait_for_upload` for asyncio: the event loop runs on while it waits."""
        what = "wait_for_upload"
        await waiting.wait_until_async(
            self._env, self._uploaded(), timeout, **self._wait_args(what, timeout)
        )

    def wait_for_download(self, timeout: float | None = None) -> None:
        """Block until everything the server had when called is in the file."""
        deadline = None if timeout is None else time.monotonic() + timeout
        target: int | None = None
        delay = 0.1
        while target is None:
            target = self._server_version_once(deadline, delay)
            if target is None:
                self._client._stop.wait(delay)
                delay = min(delay * 2, 5.0)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        what = "wait_for_download"
        waiting.wait_until(
            self._env, self._downloaded(target), remaining, **self._wait_args(what, timeout)
        )

    async def wait_for_download_async(self, timeout: float | None = None) -> None:
        """:meth:`wait_for_download` for asyncio: the event loop runs on while it waits (the
        one request that asks the server for its version runs in a worker thread)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        target: int | None = None
        delay = 0.1
        while target is None:
            target = await asyncio.to_thread(self._server_version_once, deadline, delay)
            if target is None:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        what = "wait_for_download"
        await waiting.wait_until_async(
            self._env, self._downloaded(target), remaining, **self._wait_args(what, timeout)
        )

    def _server_version_once(self, deadline: float | None, delay: float) -> int | None:
        """Ask the server for its newest version once: the version, or None to retry after
        ``delay`` (raises if the deadline would pass first or the session stopped)."""
        app = self._client.options.app
        url = urllib.parse.urljoin(app.config.base_url.rstrip("/") + "/", "health")
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
        if deadline is not None and time.monotonic() + delay > deadline:
            raise ConnectionFailedError(
                f"wait_for_download: cannot reach {app.config.base_url}",
                code="connection_failed",
            )
        if self._client.stopped:
            raise SyncError("the sync session stopped", code="session_stopped")
        return None

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
        cv, acked, cursor, latest, _ = self._meta()
        start = (acked, cv) if d is ProgressDirection.UPLOAD else (cursor, latest)
        listener = _Listener(d, m, callback, start)
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

    def _deliver(self, ls: _Listener, meta: tuple[int, int, int, int, float]) -> None:
        cv, acked, cursor, latest, dl_progress = meta
        if ls.direction is ProgressDirection.UPLOAD:
            base, target = ls.start
            if ls.mode is ProgressMode.REPORT_INDEFINITELY:
                target = cv
            total = max(0, target - base)
            done = min(max(0, acked - base), total)
            est = 1.0 if total == 0 else done / total
            p = SyncProgress(done, total, est)
        else:
            base, target = ls.start
            if ls.mode is ProgressMode.REPORT_INDEFINITELY:
                target = latest
            est = dl_progress if cursor < target or dl_progress < 1.0 else 1.0
            if cursor >= target and dl_progress >= 1.0:
                est = 1.0
            elif est >= 1.0:
                est = 0.99
            p = SyncProgress(cursor, max(target, cursor), est)
        if p != ls.last:
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
