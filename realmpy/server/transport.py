"""uvicorn's HTTP protocol with a header deadline, a head-size bound and a connection cap.

Why a subclass: uvicorn bounds idle keep-alive connections
(``timeout_keep_alive``) but not the *time* a client may take to send a
request's head: 150 connections trickling header bytes at 1 byte/s stayed
open indefinitely, each holding a socket and a buffer.  Here a connection
that has not completed a request's headers ``header_timeout`` seconds after
it opened (or after the first byte of its next request) is closed, and a
connection beyond ``max_connections`` is closed as soon as it is accepted.
uvicorn's own ``limit_concurrency`` only answers 503 once a request's
headers have arrived, so it cannot stop either.

Why httptools when it is installed (the ``server`` extra installs it, with
uvloop): uvicorn's pure-Python h11 parser and writer cost about 100 us of
the ~230 us of server CPU of a small request (``GET /health`` measured on
this machine: 215-250 us with h11 on asyncio, 122-132 us with httptools on
uvloop), a large share of an upload's.  h11 stays the fallback.  uvicorn
bounds a head's size only for h11 (``h11_max_incomplete_event_size``), so the
httptools protocol counts the head itself (``max_header_bytes``: answered
400 and closed, as h11 does).

The body's deadline is the app's (``limits.read_body``): only it knows when
it wants a body.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from realmpy.server.limits import Limits

__all__ = ["guarded_protocol"]

log = logging.getLogger("realmpy.server")


@dataclass(frozen=True)
class _Settings:
    limits: Limits
    on_refused: Callable[[str], None] | None


class _Guard(asyncio.Protocol):
    """The header deadline and the connection cap, for either protocol (``_awaiting_head``
    says whether the peer owes a request head).  Mixed in before uvicorn's protocol."""

    guard: _Settings
    _header_timer: asyncio.TimerHandle | None = None
    # from uvicorn's protocols:
    connections: set[Any]
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    timeout_keep_alive_task: asyncio.TimerHandle | None

    def _awaiting_head(self) -> bool:
        raise NotImplementedError

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.guard.limits.max_connections:
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
        elif self._awaiting_head():
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(
                    self.guard.limits.header_timeout, self._header_deadline
                )
        else:
            self._stop_watching()

    def _stop_watching(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline(self) -> None:
        self._header_timer = None
        if self._awaiting_head() and not self.transport.is_closing():
            idle_keep_alive = self.timeout_keep_alive_task is not None
            if not idle_keep_alive:  # uvicorn's keep-alive timer owns idle connections
                self._refuse("header_timeout")

    def _refuse(self, reason: str) -> None:
        self._stop_watching()
        self.transport.close()
        if self.guard.on_refused is not None:
            self.guard.on_refused(reason)


def guarded_protocol(
    limits: Limits, on_refused: Callable[[str], None] | None = None, *, fast: bool = True
) -> type[asyncio.Protocol]:
    """A uvicorn protocol class enforcing ``limits.header_timeout``, ``limits.max_header_bytes``
    and ``limits.max_connections``: httptools' when available and ``fast``, else h11's.

    ``on_refused(reason)`` is called for each connection closed by the deadline or the cap.
    """
    settings = _Settings(limits, on_refused)
    if fast:
        try:
            return _httptools_protocol(settings)
        except ImportError:  # installed without the server extra's httptools: h11
            pass

    class GuardedH11Protocol(_Guard, H11Protocol):
        guard = settings

        def _awaiting_head(self) -> bool:
            return self.conn.their_state is h11.IDLE

    return GuardedH11Protocol


def _httptools_protocol(settings: _Settings) -> type[asyncio.Protocol]:
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    parser_error = httptools.HttpParserError
    max_head = settings.limits.max_header_bytes

    class GuardedHttpToolsProtocol(_Guard, HttpToolsProtocol):
        # As h11's IDLE: the peer owes a head from the connection's opening, and from the
        # end of each answer (or a pipelined request's first byte) until the next request's
        # headers are complete; not while a request's body is read or its answer pending.
        guard = settings
        _in_head = False
        _head_bytes = 0

        def _awaiting_head(self) -> bool:
            return self._in_head or self.cycle is None or self.cycle.response_complete

        def _count_head(self, n: int) -> None:
            self._head_bytes += n
            if self._head_bytes > max_head:
                # data_received answers a parser error 400 and closes the connection
                raise parser_error("request head over max_header_bytes")

        def on_message_begin(self) -> None:
            self._in_head, self._head_bytes = True, 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._count_head(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count_head(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

    return GuardedHttpToolsProtocol
