"""Errors of the sync client: app/auth failures, sync session errors, client resets, timeouts.

Why a separate module: the client raises about users, sessions and the
network, not about objects or pages, and callers want to catch exactly
"the server refused my login" or "this wait timed out".  Every class also
inherits the builtin a caller would naturally catch (``TimeoutError``,
``ValueError``, ``RuntimeError``, ``ConnectionError``), so generic handlers
keep working.  Server-side typed error codes (``docs/protocol.md``) are kept
in ``code`` so a handler can branch on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "AppError",
    "AuthenticationError",
    "ClientResetError",
    "CompensatingWriteError",
    "ConnectionFailedError",
    "RateLimitedError",
    "ServerResponseError",
    "SubscriptionError",
    "SyncConfigurationError",
    "SyncError",
    "SyncSchemaError",
    "SyncTimeoutError",
    "UserLoggedOutError",
]


class SyncError(Exception):
    """Base of every sync-client error; ``code`` is the server's typed code when there is one."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "sync_error",
        status: int | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.detail: dict[str, Any] = dict(detail or {})

    @property
    def is_fatal(self) -> bool:
        """True when retrying cannot succeed: the session stops (``error_codes.ERROR_CODES``)."""
        from realmpy.sync.error_codes import Handling, handling

        return handling(self.code, self.status) is Handling.FATAL

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.code, self.status, self.detail))


def _rebuild(
    cls: type[SyncError], message: str, code: str, status: int | None, detail: dict[str, Any]
) -> SyncError:
    err = cls.__new__(cls)
    SyncError.__init__(err, message, code=code, status=status, detail=detail)
    return err


class AppError(SyncError, RuntimeError):
    """The app server answered a request with an error (registration refused, unknown app, ...)."""


class AuthenticationError(AppError):
    """Wrong credentials, a disabled provider, or a refresh token that is revoked or expired: log in again."""


class RateLimitedError(AppError):
    """The server refused this for now (``429 rate_limited``: too many logins, registrations, ...).

    Retry after ``retry_after`` seconds (the server's ``Retry-After``).
    """

    @property
    def retry_after(self) -> float:
        """Seconds to wait before trying again."""
        value = self.detail.get("retry_after")
        return float(value) if isinstance(value, (int, float)) else 1.0


class UserLoggedOutError(AuthenticationError):
    """The user logged out (here or in another process); its sessions stopped."""


class ConnectionFailedError(SyncError, ConnectionError):
    """The server could not be reached (refused, reset, DNS, TLS): the client retries with backoff."""


class ServerResponseError(SyncError, ValueError):
    """The server's answer is not a valid protocol message (wrong content, shape or status).

    Nothing from such an answer is applied to the local file.
    """


class SyncConfigurationError(SyncError, ValueError):
    """A sync configuration cannot work: unsupported property types, another user's file, a bad path."""


class SyncSchemaError(SyncError, ValueError):
    """The server refuses part of the file's schema (``detail["refused"]`` lists ``[table, field
    or None]``); the changesets that use it are quarantined (``sync_session.quarantined``)."""


class SubscriptionError(SyncError, ValueError):
    """The server refused a subscription set (e.g. an invalid query); the set is in state ``error``."""


class CompensatingWriteError(SyncError):
    """The server's permission rules refused a local write; it was undone locally.

    ``writes`` lists ``(table, primary key, reason)`` of each refused write.
    """

    def __init__(self, message: str, writes: list[tuple[str, Any, str]], **kw: Any) -> None:
        super().__init__(message, code="compensating_write", **kw)
        self.writes = writes


class ClientResetError(SyncError):
    """The server can no longer continue this file's history (restored server, lost ident, ...).

    Raised to a ``manual`` client reset handler; the other modes handle it themselves.
    """


class SyncTimeoutError(SyncError, TimeoutError):
    """A ``wait_for_*`` call reached its timeout before the condition held."""
