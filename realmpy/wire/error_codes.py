"""Every wire error code: its HTTP status, the client's handling and exception, in one table.

Why one table: before it, the agent decided with a few sets of codes, a
status-range test (``SyncError.is_fatal``) and, for a revoked session, a
search of the message text, so a code nobody listed (``schema_mismatch``)
was retried and re-reported forever.  Every code the server sends
(``realmpy/wire/protocol.py``, ``realmpy/server/``) and every code the
client makes up for itself (``realmpy/sync/app.py``, ``agent``) is listed
here once, with the HTTP status the server answers it with (the server's
``ProtocolError`` subclasses take their status from here and cannot name a
code missing from it) and the family of exception the client raises for it
(``realmpy.sync.app`` maps a family to its class: no code is matched by
hand anywhere else).  ``handling`` falls back on the HTTP status only for a
code this client does not know (a newer server), the way an old client must.

The handlings (``docs/protocol.md``, "Errors", says the same for other clients):

``retry``
    transient: the request may succeed later (server down or restarting,
    overloaded, a proxy's garbage, a clock that will catch up).  Back off
    with jitter; the connection is ``disconnected`` meanwhile.
``reset``
    the server cannot continue this file's history: run the client reset.
``schema``
    the server refuses part of the file's schema: the changesets that use
    it are quarantined (``quarantine``); everything else goes on.
``subscription``
    the server refuses one subscription set: that set goes to ``error``;
    the session goes on with the previous set.  A ``schema`` code in answer
    to a subscription set (a query naming a table or property the server
    lacks) is handled the same way.
``fatal``
    permanent: retrying the same request cannot succeed (another user's
    file, a forbidden user, a request this server can never accept, a login
    that ended).  The session stops in state ``error``, the
    ``sync_error_handler`` is called once and every waiter raises it.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Final, NamedTuple

__all__ = ["ERRORS", "ERROR_CODES", "ErrorCode", "Family", "Handling", "handling", "status_of"]


class Handling(str, Enum):
    RETRY = "retry"
    RESET = "reset"
    SCHEMA = "schema"
    SUBSCRIPTION = "subscription"
    FATAL = "fatal"


class Family(str, Enum):
    """Which exception the client raises for an error answer with this code
    (``realmpy.sync.errors``): ``AuthenticationError``, ``RateLimitedError``,
    or the plain ``AppError``; ``LOCAL`` codes are made up by the client."""

    AUTH = "auth"
    RATE_LIMITED = "rate_limited"
    APP = "app"
    LOCAL = "local"


class ErrorCode(NamedTuple):
    status: int | None  # the HTTP status the server sends it with; None: client-side only
    handling: Handling
    family: Family


_R, _X, _S, _Q, _F = (
    Handling.RETRY,
    Handling.RESET,
    Handling.SCHEMA,
    Handling.SUBSCRIPTION,
    Handling.FATAL,
)
_AUTH, _RATE, _APP, _LOCAL = Family.AUTH, Family.RATE_LIMITED, Family.APP, Family.LOCAL

ERRORS: Final[Mapping[str, ErrorCode]] = {
    # -- client-side: the transport and the agent itself
    "connection_failed": ErrorCode(None, _R, _LOCAL),  # refused, reset, timed out, DNS
    "tls_error": ErrorCode(None, _R, _LOCAL),  # a certificate can be fixed on the server
    "server_unavailable": ErrorCode(None, _R, _LOCAL),  # 5xx / 408 / 429 without a typed body
    "bad_response": ErrorCode(None, _R, _LOCAL),  # not a realmpy answer: nothing was applied
    "retry": ErrorCode(None, _R, _LOCAL),  # the agent's own "try again" (an ident reset)
    "logged_out": ErrorCode(None, _F, _LOCAL),  # the user logged out or its session ended
    # -- server: availability
    "shutting_down": ErrorCode(503, _R, _APP),
    "internal_error": ErrorCode(500, _R, _APP),
    "clock_skew": ErrorCode(400, _R, _APP),  # the file's timestamps are ahead: they catch up
    "rate_limited": ErrorCode(429, _R, _RATE),  # with Retry-After: wait at least that long
    "request_timeout": ErrorCode(408, _R, _APP),  # the body did not arrive in time
    # -- server: history
    "client_reset_required": ErrorCode(409, _X, _APP),
    # -- server: the file's schema
    "unknown_table": ErrorCode(400, _S, _APP),
    "unknown_field": ErrorCode(400, _S, _APP),
    "schema_mismatch": ErrorCode(409, _S, _APP),
    # -- server: subscriptions (a schema code answered to a subscription set refuses that set too)
    "invalid_query": ErrorCode(400, _Q, _APP),
    "query_too_complex": ErrorCode(400, _Q, _APP),
    # -- server: permanent
    "bad_file_ident": ErrorCode(403, _F, _APP),  # the file belongs to another user
    "forbidden": ErrorCode(403, _F, _APP),
    "malformed_message": ErrorCode(400, _F, _APP),  # never accepted by this server
    "wrong_type": ErrorCode(400, _F, _APP),
    "invalid_op": ErrorCode(400, _F, _APP),
    "unsupported_protocol_version": ErrorCode(400, _F, _APP),
    "not_found": ErrorCode(404, _F, _APP),  # wrong app id or base URL
    "method_not_allowed": ErrorCode(405, _F, _APP),
    "request_too_large": ErrorCode(413, _F, _APP),  # one changeset above the server's limit
    "unsupported_media_type": ErrorCode(415, _F, _APP),  # not application/msgpack
    "email_taken": ErrorCode(409, _F, _APP),
    # -- server: authentication (the user's request() already refreshed the token once)
    "unauthorized": ErrorCode(401, _F, _AUTH),
    "invalid_token": ErrorCode(401, _F, _AUTH),
    "token_expired": ErrorCode(401, _F, _AUTH),
    "invalid_credentials": ErrorCode(401, _F, _AUTH),
    "provider_disabled": ErrorCode(403, _F, _AUTH),
    "account_disabled": ErrorCode(401, _F, _AUTH),  # an administrator disabled the user
}

# What the client does about each code (the handling column alone).
ERROR_CODES: Final[Mapping[str, Handling]] = {c: e.handling for c, e in ERRORS.items()}


def handling(code: str, status: int | None) -> Handling:
    """How to handle error ``code`` (``status`` decides only for a code missing from the table)."""
    known = ERROR_CODES.get(code)
    if known is not None:
        return known
    if status is None or status >= 500 or status in (408, 429):
        return Handling.RETRY
    return Handling.FATAL


def status_of(code: str) -> int:
    """The HTTP status the server answers ``code`` with; a code missing from
    :data:`ERRORS` (or a client-side one) is a programming error."""
    entry = ERRORS.get(code)
    if entry is None or entry.status is None:
        raise KeyError(
            f"{code!r} is not a server error code: add it to realmpy/wire/error_codes.py"
        )
    return entry.status
