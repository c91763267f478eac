"""uvicorn's h11 protocol with a header deadline and a connection cap.

Why a subclass: uvicorn bounds idle keep-alive connections
(``timeout_keep_alive``) and the size of a request head
(``h11_max_incomplete_event_size``) but not the *time* a client may take to
send that head: 150 connections trickling header bytes at 1 byte/s stayed
open indefinitely, each holding a socket and a buffer.  Here a connection
that has not completed a request's headers ``header_timeout`` seconds after
it opened (or after the first byte of its next request) is closed, and a
connection beyond ``max_connections`` is closed as soon as it is accepted.
uvicorn's own ``limit_concurrency`` only answers 503 once a request's
headers have arrived, so it cannot stop either.

The body's deadline is the app's (``limits.read_body``): only it knows when
it wants a body.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from realmpy.server.limits import Limits

__all__ = ["guarded_protocol"]

log = logging.getLogger("realmpy.server")


def guarded_protocol(limits: Limits, on_refused: Any = None) -> type[H11Protocol]:
    """An ``H11Protocol`` class enforcing ``limits.header_timeout`` and ``limits.max_connections``.

    ``on_refused(reason)`` is called for each connection closed by either.
    """

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                self._refuse("max_connections")
                return
            self._watch_headers()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_watching()
            super().connection_lost(exc)

        def _watch_headers(self) -> None:
            """Arm the deadline while the peer owes a request head; disarm once it is in."""
            if self.transport.is_closing():
                self._stop_watching()
            elif self.conn.their_state is h11.IDLE:
                if self._header_timer is None:
                    self._header_timer = self.loop.call_later(
                        limits.header_timeout, self._header_deadline
                    )
            else:
                self._stop_watching()

        def _stop_watching(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_deadline(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                idle_keep_alive = self.timeout_keep_alive_task is not None
                if not idle_keep_alive:  # uvicorn's keep-alive timer owns idle connections
                    self._refuse("header_timeout")

        def _refuse(self, reason: str) -> None:
            self._stop_watching()
            self.transport.close()
            if on_refused is not None:
                on_refused(reason)

    return GuardedH11Protocol
