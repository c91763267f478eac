"""Bounded request bodies: per-endpoint byte and value limits, a read deadline, the content type.

Why limits per endpoint class rather than one: a login needs a few hundred
bytes, an upload megabytes.  One limit sized for uploads let an
unauthenticated 15 MiB login body of empty maps grow the server by 1.1 GiB
(a decoded value costs 50-70 bytes, its msgpack form can take one), so each
endpoint reads at most its own number of bytes, and decodes at most its own
number of values (``realmpy.wire.protocol.unpack(max_items=...)``).  Reading
and decoding one body then costs at most about ``bytes + 72 * values``: with
the defaults under 64 MiB (what handling a valid message costs beyond that
is the handler's; ``docs/server.md`` has the numbers).

The body is read into one buffer that stops growing at the limit (a
``Content-Length`` above it is refused before reading anything), within
``body_timeout`` seconds (a client trickling its body cannot hold a
connection and its buffer forever), and only if its ``Content-Type`` is the
protocol's.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from realmpy.wire.protocol import MalformedMessage, MessageTooLarge, ProtocolError, unpack

__all__ = [
    "CONTROL",
    "BodyLimit",
    "Limits",
    "RequestTimeout",
    "UnsupportedMediaType",
    "decode",
    "read_body",
    "read_raw",
    "require_positive",
]

MSGPACK = "application/msgpack"


class UnsupportedMediaType(ProtocolError):
    """A request body that is not declared ``application/msgpack``."""

    code = "unsupported_media_type"


class RequestTimeout(ProtocolError):
    """The body did not arrive within ``body_timeout`` seconds."""

    code = "request_timeout"


def require_positive(section: str, settings: object) -> None:
    """``ValueError`` naming the first setting of ``[section]`` that is not a positive number."""
    for name, value in vars(settings).items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"[{section}] {name} must be a positive number, not {value!r}")


@dataclass(frozen=True)
class BodyLimit:
    """What one endpoint may receive: bytes on the wire and values once decoded."""

    max_bytes: int
    max_values: int
    setting: str
    """The configuration key to raise, named in the 413's message ("" = fixed by the protocol)."""


@dataclass(frozen=True)
class Limits:
    """Transport limits (``[limits]`` in the configuration file)."""

    max_request_bytes: int = 8 * 1024 * 1024
    """Uploads, schemas and subscriptions."""
    max_request_values: int = 512 * 1024
    """Values (array items, map keys and values) an upload, schema or subscription may decode to."""
    max_auth_request_bytes: int = 4096
    """Endpoints used before authentication: register and login (also their value budget)."""
    body_timeout: float = 60.0
    """Seconds to receive a whole request body."""
    header_timeout: float = 10.0
    """Seconds to receive a request's headers once a connection opened or a new request began."""
    keep_alive_timeout: int = 5
    """Seconds an idle keep-alive connection stays open."""
    max_connections: int = 2048
    """Open connections (long-polls included); more are closed at once."""
    max_header_bytes: int = 16 * 1024
    """Request line plus headers."""

    def __post_init__(self) -> None:
        require_positive("limits", self)

    @property
    def bulk(self) -> BodyLimit:
        """Uploads, schemas, subscriptions."""
        return BodyLimit(self.max_request_bytes, self.max_request_values, "max_request_bytes")

    @property
    def auth(self) -> BodyLimit:
        """Register and login: anyone may send them, and they need a few hundred bytes."""
        return BodyLimit(
            self.max_auth_request_bytes, self.max_auth_request_bytes, "max_auth_request_bytes"
        )


CONTROL = BodyLimit(64 * 1024, 8192, "")
"""Ident, download, API keys: a few fields, the longest a 4 KiB bootstrap token."""


async def read_body(request: Request, limit: BodyLimit, timeout: float) -> Any:
    """The decoded msgpack body, or the ``ProtocolError`` that says why not."""
    raw = await read_raw(request, limit, timeout)
    if len(raw) <= _DECODE_INLINE_BYTES:
        return decode(raw, limit)
    # Large bodies decode in a worker thread: the value budget's hooks run Python code
    # between containers, so the event loop gets the GIL back while megabytes decode.
    return await run_in_threadpool(decode, raw, limit)


def decode(raw: bytes | bytearray, limit: BodyLimit) -> Any:
    """A body read by ``read_raw``, decoded within ``limit``'s value budget."""
    return unpack(raw, max_bytes=limit.max_bytes, max_items=limit.max_values)


async def read_raw(request: Request, limit: BodyLimit, timeout: float) -> bytearray:
    """The body's bytes (for a handler that decodes it where it uses it, so the decoded
    form lives no longer than needed), with ``read_body``'s checks."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != MSGPACK:
        raise UnsupportedMediaType(
            f"request bodies must be {MSGPACK}, not {ctype or 'undeclared'}", expected=MSGPACK
        )
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise MalformedMessage("bad Content-Length")
        if int(declared) > limit.max_bytes:
            raise _too_large(limit)
    try:
        return await _read_within(request, limit, timeout)
    except asyncio.TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {timeout:g} s", timeout=timeout
        ) from None


_DECODE_INLINE_BYTES = 64 * 1024
"""Bodies up to this size decode on the event loop (well under a millisecond)."""


if sys.version_info >= (3, 11):

    async def _read_within(request: Request, limit: BodyLimit, timeout: float) -> bytearray:
        """``_read`` with a deadline (``asyncio.timeout`` costs a timer; ``wait_for`` a task)."""
        async with asyncio.timeout(timeout):
            return await _read(request, limit)

else:  # pragma: no cover - Python 3.10

    async def _read_within(request: Request, limit: BodyLimit, timeout: float) -> bytearray:
        return await asyncio.wait_for(_read(request, limit), timeout)


async def _read(request: Request, limit: BodyLimit) -> bytearray:
    buf = bytearray()  # grown in place: no list of chunks joined into a second copy
    async for chunk in request.stream():
        if len(buf) + len(chunk) > limit.max_bytes:
            raise _too_large(limit)
        buf += chunk
    return buf


def _too_large(limit: BodyLimit) -> MessageTooLarge:
    where = f"server setting [limits] {limit.setting}" if limit.setting else "protocol limit"
    return MessageTooLarge(
        f"request body exceeds {limit.max_bytes} bytes ({where})", limit=limit.max_bytes
    )
