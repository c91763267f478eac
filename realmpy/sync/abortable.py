"""HTTP requests that another thread can abort while they wait for the answer.

Why: the agent's download loop holds a long poll open for up to
``long_poll_seconds`` (25 s by default), and its uploader may be waiting for a
large upload's answer.  When the session is paused, or a client reset gives
the file a new identity, those answers are worth nothing, and waiting for
them delays the new identity's bootstrap (or keeps a paused session's
connection open) by up to the whole poll.  ``requests`` has no way to cancel
a call from another thread, so the connections are made trackable here:

- :class:`AbortableAdapter` makes a ``requests.Session`` use connections that
  register themselves, once connected, under the thread that uses them (each
  agent thread has its own session, see ``app._Transport``);
- a request runs inside :func:`cancellable`, which names the condition that
  cancels it; a connection checks it just before waiting for the answer;
- :func:`abort` (any thread) shuts down the sockets of a thread's connections,
  so a wait already under way ends at once with a connection error; the
  caller tells that apart from a real failure by its own condition.

Why both the check and the shutdown: the caller first makes its condition
true, then shuts the sockets.  A connection registers before it checks, and
checks before it waits; so either it sees the condition, or its socket was
registered in time to be shut down.  Nothing is lost by aborting: an upload
whose answer is dropped is sent again and acknowledged again, a download's
answer was not applied.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["AbortableAdapter", "RequestCancelled", "abort", "cancellable", "forget_thread"]


class RequestCancelled(Exception):
    """The request's cancel condition held before its answer came."""


_lock = threading.Lock()
_connections: dict[int, weakref.WeakSet[HTTPConnection]] = {}
"""Thread ident -> the connections that thread has connected."""
_current = threading.local()


def _register(conn: HTTPConnection) -> None:
    with _lock:
        _connections.setdefault(threading.get_ident(), weakref.WeakSet()).add(conn)


def _check() -> None:
    cancelled: Callable[[], bool] | None = getattr(_current, "cancelled", None)
    if cancelled is not None and cancelled():
        raise RequestCancelled("request cancelled")


class _Tracked(HTTPConnection):
    """Registers itself once connected; checks the cancel condition before each answer."""

    def connect(self) -> None:
        super().connect()
        _register(self)

    def getresponse(self) -> Any:
        _check()
        return super().getresponse()


class _Conn(_Tracked):
    pass


class _TLSConn(_Tracked, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Conn


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConn


class AbortableAdapter(HTTPAdapter):
    """An adapter whose connections :func:`abort` can interrupt."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}


@contextlib.contextmanager
def cancellable(cancelled: Callable[[], bool] | None) -> Iterator[None]:
    """Run this thread's request under ``cancelled`` (None: never cancelled)."""
    old = getattr(_current, "cancelled", None)
    _current.cancelled = cancelled
    try:
        yield
    finally:
        _current.cancelled = old


def forget_thread() -> None:
    """Drop this thread's registry entry (it closed its connections: ``close_thread_session``)."""
    with _lock:
        _connections.pop(threading.get_ident(), None)


def abort(thread: threading.Thread) -> None:
    """End whatever request ``thread`` waits on (call after making its cancel condition true)."""
    ident = thread.ident
    if ident is None:
        return
    with _lock:
        conns = list(_connections.get(ident, ()))
        if not thread.is_alive():
            _connections.pop(ident, None)
    for conn in conns:
        sock = getattr(conn, "sock", None)
        if sock is not None:
            # socket.socket's own shutdown: an SSLSocket's would also drop its TLS state
            # under the thread still reading from it.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
