"""What the sync client does about each error code: the one table, keyed by code.

Why one table: before it, the agent decided with a few sets of codes, a
status-range test (``SyncError.is_fatal``) and, for a revoked session, a
search of the message text, so a code nobody listed (``schema_mismatch``)
was retried and re-reported forever.  Every code the server sends
(``realmpy/sync/protocol.py``, ``realmpy/server/``) and every code the
client makes up for itself (``realmpy/sync/app.py``, ``agent``) is listed
here once; ``handling`` falls back on the HTTP status only for a code this
client does not know (a newer server), the way an old client must.

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
from typing import Final

__all__ = ["ERROR_CODES", "Handling", "handling"]


class Handling(str, Enum):
    RETRY = "retry"
    RESET = "reset"
    SCHEMA = "schema"
    SUBSCRIPTION = "subscription"
    FATAL = "fatal"


_R, _X, _S, _Q, _F = (
    Handling.RETRY,
    Handling.RESET,
    Handling.SCHEMA,
    Handling.SUBSCRIPTION,
    Handling.FATAL,
)

ERROR_CODES: Final[Mapping[str, Handling]] = {
    # -- client-side: the transport and the agent itself
    "connection_failed": _R,  # refused, reset, timed out, DNS
    "tls_error": _R,  # a certificate can be fixed on the server; the client waits for it
    "server_unavailable": _R,  # 5xx / 408 / 429 without a typed body (a proxy)
    "bad_response": _R,  # not a realmpy answer (a captive portal, a proxy): nothing was applied
    "retry": _R,  # the agent's own "try again" (an ident reset meanwhile)
    "logged_out": _F,  # the user logged out or its session ended
    # -- server: availability
    "shutting_down": _R,
    "internal_error": _R,
    "clock_skew": _R,  # the file's timestamps are ahead of the server: they catch up
    # -- server: history
    "client_reset_required": _X,
    # -- server: the file's schema
    "unknown_table": _S,
    "unknown_field": _S,
    "schema_mismatch": _S,
    # -- server: subscriptions (a schema code answered to a subscription set refuses that set too)
    "invalid_query": _Q,
    "query_too_complex": _Q,
    # -- server: permanent
    "bad_file_ident": _F,  # the file belongs to another user
    "forbidden": _F,
    "malformed_message": _F,  # this client speaks something this server never accepts
    "wrong_type": _F,
    "invalid_op": _F,
    "unsupported_protocol_version": _F,
    "not_found": _F,  # wrong app id or base URL
    "method_not_allowed": _F,
    "request_too_large": _F,  # one changeset above the server's limit
    "email_taken": _F,
    # -- server: authentication (the user's request() already refreshed the token once)
    "unauthorized": _F,
    "invalid_token": _F,
    "token_expired": _F,
    "invalid_credentials": _F,
    "provider_disabled": _F,
}


def handling(code: str, status: int | None) -> Handling:
    """How to handle error ``code`` (``status`` decides only for a code missing from the table)."""
    known = ERROR_CODES.get(code)
    if known is not None:
        return known
    if status is None or status >= 500 or status in (408, 429):
        return Handling.RETRY
    return Handling.FATAL
