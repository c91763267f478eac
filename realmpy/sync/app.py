"""The app: where the server is, who is logged in, and the authenticated HTTP transport.

Why users live in files under ``base_file_path``: the main process of a
multi-process app is not always the one that logged in, and a restarted main
process must resume syncing without asking for credentials again.  So each
user's tokens are kept in ``<base>/<app_id>/users/<user_id>.json``, written
atomically (temporary file + rename) with mode 0600 in a 0700 directory;
nothing ever logs a token.  Secondary processes (``disconnected_sync``) need
no user at all.

Why a transport object per app with one ``requests.Session`` per thread:
keep-alive connections make the agent's upload and long-poll download cheap,
and ``requests.Session`` is not documented as thread-safe, while the agent
runs its uploader and downloader in two threads.  ``https`` URLs are
verified against the system's certificates by default (``verify=True``);
pass a CA bundle path for a private CA.

Tokens refresh transparently: a request made with an access token that is
about to expire (or that the server calls expired) refreshes it with the
refresh token once and retries; a revoked session turns into
:class:`UserLoggedOutError` and stops the user's sync sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

import requests

from realmpy.sync import abortable
from realmpy.sync.abortable import AbortableAdapter, cancellable
from realmpy.sync.errors import (
    AppError,
    AuthenticationError,
    ConnectionFailedError,
    RateLimitedError,
    ServerResponseError,
    SyncError,
    UserLoggedOutError,
)
from realmpy.sync.wirevalues import check_nesting
from realmpy.wire import protocol as P
from realmpy.wire.error_codes import ERRORS, Family

__all__ = ["App", "AppConfiguration", "Credentials", "EmailPasswordAuth", "User", "UserState"]

UserState = Literal["logged_in", "logged_out", "removed"]

_REFRESH_MARGIN_S: Final = 30
"""Refresh an access token this many seconds before the server would reject it."""


@dataclass(frozen=True)
class AppConfiguration:
    """Where the app's server is and where its local files go.

    Args:
        app_id: the server's app id (``realmpy-server --app-id``).
        base_url: ``http://host:port`` or ``https://...`` of the server.
        base_file_path: directory for users, tokens and default realm paths;
            ``None`` means ``./realmpy-sync`` in the current directory.
        request_timeout: seconds for an ordinary request (long-polls add
            their own wait to it).
        verify: ``True`` (system CAs), ``False`` (no verification; only for
            tests) or a CA bundle path, as in ``requests``.
        long_poll_seconds: how long a download waits on the server for news.
    """

    app_id: str
    base_url: str
    base_file_path: str | os.PathLike[str] | None = None
    request_timeout: float = 30.0
    verify: bool | str = True
    long_poll_seconds: float = 25.0

    def __post_init__(self) -> None:
        if not isinstance(self.app_id, str) or not self.app_id:
            raise ValueError("AppConfiguration.app_id must be a non-empty string")
        if not isinstance(self.base_url, str) or not self.base_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError(
                f"AppConfiguration.base_url must start with http:// or https://, not {self.base_url!r}"
            )
        if not self.request_timeout > 0:
            raise ValueError("AppConfiguration.request_timeout must be > 0")
        if not 0 < self.long_poll_seconds <= 60:
            raise ValueError("AppConfiguration.long_poll_seconds must be in (0, 60]")


@dataclass(frozen=True)
class Credentials:
    """How to log in: :meth:`anonymous`, :meth:`email_password` or :meth:`api_key`."""

    provider: str
    email: str | None = None
    password: str | None = None
    key: str | None = None

    @classmethod
    def anonymous(cls) -> Credentials:
        """A new anonymous user on each log-in (the user persists locally until removed)."""
        return cls("anonymous")

    @classmethod
    def email_password(cls, email: str, password: str) -> Credentials:
        """A user registered with :meth:`EmailPasswordAuth.register_user`."""
        return cls("email_password", email=email, password=password)

    @classmethod
    def api_key(cls, key: str) -> Credentials:
        """An API key created for a user (``rpk1....``)."""
        return cls("api_key", key=key)

    def __repr__(self) -> str:  # never show secrets
        who = f", email={self.email!r}" if self.email else ""
        return f"Credentials({self.provider!r}{who})"


class _Transport:
    """msgpack-over-HTTP to one app: per-thread keep-alive sessions, typed errors."""

    def __init__(self, config: AppConfiguration) -> None:
        self.config = config
        self.prefix = f"{config.base_url.rstrip('/')}/api/v{P.PROTOCOL_VERSION}/app/{config.app_id}"
        self._local = threading.local()

    def _session(self) -> requests.Session:
        s: requests.Session | None = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.verify = self.config.verify
            s.headers["Content-Type"] = "application/msgpack"
            s.headers["Accept"] = "application/msgpack"
            for prefix in ("http://", "https://"):
                s.mount(prefix, AbortableAdapter())  # an agent's requests can be aborted
            self._local.session = s
        return s

    def close_thread_session(self) -> None:
        """Close this thread's keep-alive connection (a thread that stops calls it)."""
        s = getattr(self._local, "session", None)
        if s is not None:
            s.close()
            self._local.session = None
            abortable.forget_thread()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        timeout: float | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Any:
        """Send one request; return the decoded msgpack answer or raise a typed error.
        ``cancelled``: the condition under which ``abortable.abort`` may end it early (it then
        raises ``RequestCancelled`` or a ``ConnectionFailedError``; the caller asks ``cancelled``)."""
        url = self.prefix + path if path.startswith("/") else path
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = None if body is None else P.pack(body)
        try:
            with cancellable(cancelled):
                resp = self._session().request(
                    method,
                    url,
                    data=data,
                    headers=headers,
                    timeout=timeout or self.config.request_timeout,
                    # Per request, not only on the session: requests lets REQUESTS_CA_BUNDLE /
                    # CURL_CA_BUNDLE override ``Session.verify`` (psf/requests#3829), which would
                    # silently ignore ``AppConfiguration(verify=<CA bundle>)`` and ``verify=False``.
                    verify=self.config.verify,
                )
        except requests.exceptions.SSLError as exc:
            raise ConnectionFailedError(
                f"TLS verification with {self.config.base_url} failed: {exc}", code="tls_error"
            ) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ConnectionFailedError(
                f"cannot reach {self.config.base_url}: {type(exc).__name__}",
                code="connection_failed",
            ) from None
        except requests.RequestException as exc:
            raise ConnectionFailedError(
                f"request to {self.config.base_url} failed: {exc}", code="connection_failed"
            ) from None
        return self._decode(resp, method, path)

    @staticmethod
    def _decode(resp: requests.Response, method: str, path: str) -> Any:
        ctype = resp.headers.get("content-type", "")
        payload: Any = None
        if "msgpack" in ctype:
            try:
                payload = P.unpack(resp.content)
                if isinstance(payload, (list, dict)):
                    check_nesting(payload, f"{method} {path}")
            except P.ProtocolError:
                raise ServerResponseError(
                    f"{method} {path}: the server sent an undecodable msgpack body",
                    code="bad_response",
                    status=resp.status_code,
                ) from None
        if resp.status_code == 200:
            if payload is None and "msgpack" not in ctype:
                raise ServerResponseError(
                    f"{method} {path}: expected application/msgpack, got {ctype or 'no content type'} "
                    f"(is base_url a realmpy server?)",
                    code="bad_response",
                    status=200,
                )
            return payload
        if isinstance(payload, dict) and isinstance(payload.get("error"), str):
            code = payload["error"]
            message = str(payload.get("message", code))
            raw_detail = payload.get("detail")
            detail: dict[str, Any] = raw_detail if isinstance(raw_detail, dict) else {}
            cls = error_class(code, resp.status_code)
            if cls is RateLimitedError:
                retry = resp.headers.get("retry-after", "")
                if "retry_after" not in detail and retry.isdigit():
                    detail = {**detail, "retry_after": int(retry)}
            raise cls(
                f"{method} {path}: {message}", code=code, status=resp.status_code, detail=detail
            )
        if resp.status_code >= 500 or resp.status_code in (408, 429):
            raise ConnectionFailedError(
                f"{method} {path}: server answered HTTP {resp.status_code}",
                code="server_unavailable",
                status=resp.status_code,
            )
        raise ServerResponseError(
            f"{method} {path}: unexpected HTTP {resp.status_code} without a typed error",
            code="bad_response",
            status=resp.status_code,
        )


def error_class(code: str, status: int) -> type[AppError]:
    """The exception for a typed error answer: the code's family in the one
    table (``realmpy.wire.error_codes``); the status only for a code this
    client does not know."""
    entry = ERRORS.get(code)
    family = entry.family if entry is not None else None
    if family is Family.AUTH or (family is None and status == 401):
        return AuthenticationError
    if family is Family.RATE_LIMITED or (family is None and status == 429):
        return RateLimitedError
    return AppError


def _write_private(path: str, data: bytes) -> None:
    """Write ``data`` atomically to ``path`` with mode 0600 (tokens are secrets)."""
    tmp = f"{path}.tmp{os.getpid()}.{threading.get_ident()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class User:
    """A logged-in user of an :class:`App`; its tokens persist under the app's base directory."""

    def __init__(
        self,
        app: App,
        user_id: str,
        provider: str,
        refresh_token: str | None,
        access_token: str | None,
        access_expires_at: int,
        state: UserState = "logged_in",
    ) -> None:
        self._app = app
        self._id = user_id
        self._provider = provider
        self._refresh_token = refresh_token
        self._access_token = access_token
        self._access_expires_at = access_expires_at
        self._state: UserState = state
        self._lock = threading.Lock()
        self._on_logout: list[Callable[[], None]] = []

    # ---- identity ------------------------------------------------------------

    @property
    def id(self) -> str:
        """The server's user id."""
        return self._id

    @property
    def app(self) -> App:
        return self._app

    @property
    def provider(self) -> str:
        return self._provider

    @property
    def state(self) -> UserState:
        """``logged_in``, ``logged_out`` or ``removed`` (re-read from disk: another process may have logged out)."""
        if self._state == "logged_in":
            self._reload()
        return self._state

    @property
    def is_logged_in(self) -> bool:
        return self.state == "logged_in"

    def __repr__(self) -> str:
        return f"<User {self._id} {self._provider} {self._state}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, User) and other._id == self._id and other._app is self._app

    def __hash__(self) -> int:
        return hash(self._id)

    # ---- persistence ----------------------------------------------------------

    def _to_json(self) -> dict[str, Any]:
        return {
            "user_id": self._id,
            "provider": self._provider,
            "refresh_token": self._refresh_token,
            "access_token": self._access_token,
            "access_expires_at": self._access_expires_at,
            "state": self._state,
        }

    def _save(self) -> None:
        _write_private(self._app._user_file(self._id), json.dumps(self._to_json()).encode("utf-8"))

    def _reload(self) -> None:
        """Pick up tokens refreshed, or a log-out done, by another process."""
        try:
            with open(self._app._user_file(self._id), "rb") as f:
                data = json.loads(f.read())
        except FileNotFoundError:
            self._state = "removed"
            return
        except (OSError, ValueError):
            return
        if data.get("state") != "logged_in":
            self._state = "logged_out"
            self._refresh_token = None
            self._access_token = None
            return
        if int(data.get("access_expires_at") or 0) > self._access_expires_at:
            self._access_token = data.get("access_token")
            self._access_expires_at = int(data["access_expires_at"])
        self._refresh_token = data.get("refresh_token") or self._refresh_token

    # ---- tokens ----------------------------------------------------------------

    def _ensure_logged_in(self) -> None:
        if self._state != "logged_in":
            raise UserLoggedOutError(
                f"user {self._id} is {self._state}: log in again", code="logged_out"
            )

    def access_token(self, *, force_refresh: bool = False) -> str:
        """A valid access token, refreshed with the refresh token when due."""
        with self._lock:
            self._ensure_logged_in()
            now = time.time()
            if (
                not force_refresh
                and self._access_token
                and self._access_expires_at - now > _REFRESH_MARGIN_S
            ):
                return self._access_token
            self._reload()
            self._ensure_logged_in()
            if (
                not force_refresh
                and self._access_token
                and self._access_expires_at - now > _REFRESH_MARGIN_S
            ):
                return self._access_token
            if not self._refresh_token:
                raise UserLoggedOutError(
                    f"user {self._id} has no refresh token: log in again", code="logged_out"
                )
            try:
                raw = self._app._transport.request(
                    "POST", "/auth/refresh", {}, token=self._refresh_token
                )
                tok = P.TokenResponse.from_wire(raw)
            except AuthenticationError as exc:
                self._mark_logged_out()
                raise UserLoggedOutError(
                    f"user {self._id}'s session ended ({exc.message}): log in again",
                    code=exc.code,
                    status=exc.status,
                ) from None
            except P.ProtocolError as exc:
                raise ServerResponseError(
                    f"bad refresh response: {exc}", code="bad_response"
                ) from None
            self._access_token = tok.access_token
            self._access_expires_at = tok.access_expires_at
            self._save()
            return tok.access_token

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout: float | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Any:
        """An authenticated request; refreshes the access token once if the server says it expired.
        ``cancelled``: see ``_Transport.request``."""
        transport = self._app._transport
        token = self.access_token()
        try:
            return transport.request(
                method, path, body, token=token, timeout=timeout, cancelled=cancelled
            )
        except AuthenticationError as exc:
            if exc.code not in ("token_expired", "invalid_token"):
                raise
            # A revoked session is found out by the refresh below: the server refuses its
            # refresh token too, and ``access_token`` turns that into ``UserLoggedOutError``.
        token = self.access_token(force_refresh=True)
        return transport.request(
            method, path, body, token=token, timeout=timeout, cancelled=cancelled
        )

    # ---- lifecycle ----------------------------------------------------------------

    def _mark_logged_out(self) -> None:
        self._state = "logged_out"
        self._access_token = None
        self._refresh_token = None
        with contextlib.suppress(OSError):
            self._save()
        for cb in list(self._on_logout):
            with contextlib.suppress(Exception):
                cb()

    def _add_logout_callback(self, cb: Callable[[], None]) -> Callable[[], None]:
        self._on_logout.append(cb)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._on_logout.remove(cb)

        return remove

    def log_out(self) -> None:
        """Revoke the session on the server (best effort when offline) and stop this user's sync sessions."""
        token = self._refresh_token
        if self._state == "logged_in" and token:
            with contextlib.suppress(SyncError):
                self._app._transport.request("POST", "/auth/logout", {}, token=token)
        self._mark_logged_out()
        self._app._forget_current(self)

    def create_api_key(self, name: str) -> tuple[str, str]:
        """Create an API key for this user; returns ``(key id, key)`` (the key is shown only once)."""
        raw = self.request("POST", "/auth/api-keys", {"name": name})
        if not isinstance(raw, dict) or not isinstance(raw.get("key"), str):
            raise ServerResponseError("bad API key response", code="bad_response")
        return str(raw["id"]), str(raw["key"])


class EmailPasswordAuth:
    """Registration of email/password users (``app.email_password_auth``)."""

    def __init__(self, app: App) -> None:
        self._app = app

    def register_user(self, email: str, password: str) -> None:
        """Register a user; raises :class:`AppError` (``email_taken``, short password, ...) if refused."""
        self._app._transport.request(
            "POST", "/auth/register", {"email": email, "password": password}
        )


class App:
    """A connection to one app on a realmpy sync server.

    ``App(config)`` is cheap; users and their tokens persist under
    ``<base_file_path>/<app_id>/`` and are found again by later processes
    (``app.current_user``, ``app.all_users``).
    """

    _instances: ClassVar[weakref.WeakSet[App]] = weakref.WeakSet()

    def __init__(self, config: AppConfiguration) -> None:
        if not isinstance(config, AppConfiguration):
            raise TypeError(f"App() takes an AppConfiguration, not {type(config).__name__}")
        self._config = config
        base = (
            os.fspath(config.base_file_path)
            if config.base_file_path is not None
            else os.path.join(os.getcwd(), "realmpy-sync")
        )
        self._base = os.path.abspath(base)
        self._dir = os.path.join(self._base, _safe(config.app_id))
        os.makedirs(os.path.join(self._dir, "users"), mode=0o700, exist_ok=True)
        os.chmod(os.path.join(self._dir, "users"), 0o700)
        self._transport = _Transport(config)
        self._users: dict[str, User] = {}
        self._lock = threading.Lock()
        self.email_password_auth = EmailPasswordAuth(self)
        App._instances.add(self)

    @property
    def config(self) -> AppConfiguration:
        return self._config

    @property
    def id(self) -> str:
        return self._config.app_id

    @property
    def base_file_path(self) -> str:
        """The app's directory: ``<base_file_path>/<app_id>``."""
        return self._dir

    def _user_file(self, user_id: str) -> str:
        return os.path.join(self._dir, "users", f"{_safe(user_id)}.json")

    def default_realm_path(self, user: User) -> str:
        """Where ``Configuration.flexible_sync(user, ...)`` puts its file when given no path."""
        d = os.path.join(self._dir, _safe(user.id))
        os.makedirs(d, mode=0o700, exist_ok=True)
        return os.path.join(d, "flx_sync_default.realm")

    # ---- users ------------------------------------------------------------------

    async def log_in_async(self, credentials: Credentials) -> User:
        """:meth:`log_in` for asyncio: the request runs in a worker thread (one blocking HTTP
        exchange, nothing polled), so the event loop runs on meanwhile."""
        if not isinstance(credentials, Credentials):
            raise TypeError(f"log_in_async() takes Credentials, not {type(credentials).__name__}")
        return await asyncio.to_thread(self.log_in, credentials)

    def log_in(self, credentials: Credentials) -> User:
        """Log in with ``credentials``; the user becomes :attr:`current_user`."""
        if not isinstance(credentials, Credentials):
            raise TypeError(f"log_in() takes Credentials, not {type(credentials).__name__}")
        body = P.LoginRequest(
            credentials.provider, credentials.email, credentials.password, credentials.key
        ).to_wire()
        raw = self._transport.request("POST", "/auth/login", body)
        try:
            tok = P.TokenResponse.from_wire(raw)
        except P.ProtocolError as exc:
            raise ServerResponseError(f"bad login response: {exc}", code="bad_response") from None
        if not tok.refresh_token:
            raise ServerResponseError("login response without a refresh token", code="bad_response")
        with self._lock:
            user = self._users.get(tok.user_id)
            if user is None:
                user = User(
                    self,
                    tok.user_id,
                    credentials.provider,
                    tok.refresh_token,
                    tok.access_token,
                    tok.access_expires_at,
                )
                self._users[tok.user_id] = user
            else:
                user._provider = credentials.provider
                user._refresh_token = tok.refresh_token
                user._access_token = tok.access_token
                user._access_expires_at = tok.access_expires_at
                user._state = "logged_in"
            user._save()
            _write_private(os.path.join(self._dir, "current_user"), tok.user_id.encode("utf-8"))
        return user

    def _load_user(self, user_id: str) -> User | None:
        user = self._users.get(user_id)
        if user is not None:
            return user
        try:
            with open(self._user_file(user_id), "rb") as f:
                data = json.loads(f.read())
        except (OSError, ValueError):
            return None
        if not isinstance(data, Mapping) or data.get("user_id") != user_id:
            return None
        user = User(
            self,
            user_id,
            str(data.get("provider", "")),
            data.get("refresh_token"),
            data.get("access_token"),
            int(data.get("access_expires_at") or 0),
            "logged_in" if data.get("state") == "logged_in" else "logged_out",
        )
        self._users[user_id] = user
        return user

    @property
    def current_user(self) -> User | None:
        """The most recently logged-in user that is still logged in (also from an earlier process)."""
        with self._lock:
            try:
                with open(os.path.join(self._dir, "current_user"), "rb") as f:
                    uid = f.read().decode("utf-8").strip()
            except (OSError, UnicodeDecodeError):
                return None
            user = self._load_user(uid) if uid else None
        return user if user is not None and user.state == "logged_in" else None

    @property
    def all_users(self) -> list[User]:
        """Every user known locally (logged in or out)."""
        out = []
        with self._lock:
            for name in sorted(os.listdir(os.path.join(self._dir, "users"))):
                if name.endswith(".json"):
                    u = self._load_user(name[:-5])
                    if u is not None:
                        out.append(u)
        return out

    def _forget_current(self, user: User) -> None:
        path = os.path.join(self._dir, "current_user")
        with self._lock, contextlib.suppress(OSError):
            with open(path, "rb") as f:
                if f.read().decode("utf-8", "replace").strip() == user.id:
                    os.unlink(path)

    def remove_user(self, user: User) -> None:
        """Log the user out and delete its local record (its realm files stay)."""
        user.log_out()
        with self._lock:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._user_file(user.id))
            self._users.pop(user.id, None)
            user._state = "removed"

    def __repr__(self) -> str:
        return f"<App {self._config.app_id} at {self._config.base_url}>"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"
