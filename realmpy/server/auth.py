"""Authentication: anonymous, email/password and API-key logins; access and refresh tokens.

Why these choices:

- Passwords are hashed with scrypt (``hashlib.scrypt``, memory-hard, in the
  standard library, so no new dependency) with a per-user random salt; the
  parameters are stored with each hash so they can be raised later.
- Access tokens are short-lived and self-contained (a payload signed with
  HMAC-SHA256 under a per-deployment secret kept in the store, so every server
  process sharing a database accepts them).  Each use also checks that the
  session was not revoked, but not with a database transaction per request:
  a session found live is remembered for ``SESSION_RECHECK_SECONDS`` (1 s).
  So a log-out through this process takes effect at once (it forgets the
  session), and a log-out, disabled user or deleted user through another
  process or an admin command within 1 s; access-token expiry is checked on
  every request from the token alone.
- Refresh tokens and API keys are random secrets stored only as SHA-256
  hashes, compared in constant time.

``now`` is injectable so expiry can be tested without sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from realmpy.server.store import ConflictError, SessionRow, Store, UserRow
from realmpy.wire.protocol import AuthError, LoginRequest, ProtocolError, TokenResponse

__all__ = [
    "AccountDisabled",
    "AuthConfig",
    "AuthService",
    "EmailTakenError",
    "ForbiddenError",
    "InvalidCredentials",
    "Principal",
    "ProviderDisabled",
    "TokenExpired",
    "hash_password",
    "verify_password",
]


class TokenExpired(AuthError):
    """The access (or refresh) token is past its expiry: refresh or log in again."""

    code = "token_expired"


class InvalidCredentials(AuthError):
    """Wrong email/password or API key."""

    code = "invalid_credentials"


class AccountDisabled(AuthError):
    """The account was disabled by an administrator (``realmpy-server users disable``)."""

    code = "account_disabled"


class ProviderDisabled(ProtocolError):
    """The login provider is switched off in the configuration."""

    code = "provider_disabled"


class EmailTakenError(ProtocolError):
    """Registration with an email that already has an account."""

    code = "email_taken"


class ForbiddenError(ProtocolError):
    """Authenticated, but not allowed to do this."""

    code = "forbidden"


@dataclass(frozen=True)
class AuthConfig:
    """Which providers are on and how long tokens live."""

    anonymous: bool = True
    email_password: bool = True
    api_keys: bool = True
    access_token_ttl: int = 15 * 60
    refresh_token_ttl: int = 60 * 24 * 3600
    min_password_length: int = 8
    scrypt_n: int = 2**14


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of a request."""

    user_id: str
    session_id: str
    provider: str
    email: str | None

    def variables(self) -> dict[str, Any]:
        """Values for ``%user.*`` in permission rules and subscriptions."""
        return {"user.id": self.user_id, "user.email": self.email, "user.provider": self.provider}


MAX_TOKEN_CHARS: Final = 4096
SESSION_RECHECK_SECONDS: Final = 1.0
"""How long a session found live is trusted before the store is asked again (the bound
on how late a revocation made elsewhere takes effect)."""
_MAX_CACHED_SESSIONS: Final = 100_000
"""Longer bearer tokens are refused before any work (ours are about 250 characters)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = 2**14) -> bytes:
    """``scrypt$n$r$p$salt$hash``: memory-hard (about 16 MiB at n=2**14), salted."""
    salt = secrets.token_bytes(16)
    r, p = 8, 1
    dk = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32
    )
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(dk)}".encode("ascii")


def verify_password(password: str, stored: bytes) -> bool:
    """Constant-time check of ``password`` against ``hash_password`` output."""
    try:
        kind, n, r, p, salt, dk = stored.decode("ascii").split("$")
        if kind != "scrypt":
            return False
        want = _unb64(dk)
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=256 * 1024 * 1024,
            dklen=len(want),
        )
    except (ValueError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(got, want)


def _sha(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


class AuthService:
    """Logins, tokens and API keys over a ``Store``."""

    TOKEN_PREFIX: ClassVar[str] = "rpa1"

    def __init__(
        self,
        store: Store,
        config: AuthConfig,
        *,
        app_id: str,
        secret: bytes,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self.app_id = app_id
        self._secret = secret
        self.now = now
        self._live: dict[str, tuple[float, Principal]] = {}
        """Session id → (when it was found live, its principal)."""
        # A dummy hash so unknown emails cost as much as wrong passwords (no user enumeration by timing).
        self._dummy_hash = hash_password(secrets.token_hex(8), n=config.scrypt_n)

    # ----------------------------------------------------------------- tokens

    def _sign(self, payload: dict[str, Any]) -> str:
        body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8"))
        mac = hmac.new(
            self._secret, f"{self.TOKEN_PREFIX}.{body}".encode("ascii"), hashlib.sha256
        ).digest()
        return f"{self.TOKEN_PREFIX}.{body}.{_b64(mac)}"

    def _verify(self, token: str) -> dict[str, Any]:
        """The payload of a token this deployment signed; ``AuthError`` for anything else.

        The signature is checked (in constant time) before anything in the token is
        decoded, so forged input never reaches the JSON parser; length and alphabet are
        checked first so that even the MAC is computed only over bounded ASCII.
        """
        if len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise AuthError("malformed access token")
        signed, _, mac_text = token.rpartition(".")
        prefix, _, body = signed.partition(".")
        if prefix != self.TOKEN_PREFIX or not body or "." in body:
            raise AuthError("malformed access token")
        want = hmac.new(self._secret, signed.encode("ascii"), hashlib.sha256).digest()
        try:
            given = _unb64(mac_text)
        except ValueError:
            raise AuthError("malformed access token") from None
        if not hmac.compare_digest(want, given):
            raise AuthError("access token signature is invalid")
        try:  # signed by us, so well-formed; checked anyway (a leaked secret must not crash us)
            payload = json.loads(_unb64(body))
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise AuthError("malformed access token") from None
        if not isinstance(payload, dict):
            raise AuthError("malformed access token")
        return payload

    def _issue(self, user: UserRow, sid: str, *, refresh: str | None) -> TokenResponse:
        exp = int(self.now()) + self.config.access_token_ttl
        token = self._sign(
            {"sub": user.id, "sid": sid, "exp": exp, "app": self.app_id, "typ": "access"}
        )
        return TokenResponse(user.id, token, exp, refresh)

    def _new_session(self, user: UserRow) -> TokenResponse:
        sid = secrets.token_hex(16)
        secret = secrets.token_urlsafe(32)
        refresh = f"rpr1.{sid}.{secret}"
        with self.store.transaction(write=True) as tx:
            if tx.is_disabled(user.id):
                raise AccountDisabled("this account is disabled; ask the app's administrator")
            tx.create_session(
                SessionRow(
                    sid,
                    user.id,
                    _sha(secret),
                    int(self.now()) + self.config.refresh_token_ttl,
                    False,
                )
            )
        return self._issue(user, sid, refresh=refresh)

    def authenticate(self, token: str) -> Principal:
        """Check an access token: signature, app, expiry, and that its session is live."""
        sid, uid = self._claims(token)
        cached = self._cached(sid, uid)
        if cached is not None:
            return cached
        now = self.now()
        with self.store.transaction(write=False) as tx:
            session = tx.get_session(sid)
            user = tx.get_user(uid)
        if session is None or session.revoked or session.user_id != uid or user is None:
            self._live.pop(sid, None)
            raise AuthError("session revoked; log in again")
        principal = Principal(uid, sid, user.provider, user.email)
        if len(self._live) >= _MAX_CACHED_SESSIONS:
            self._live.clear()
        self._live[sid] = (now, principal)
        return principal

    def authenticate_cached(self, token: str) -> Principal | None:
        """``authenticate`` if it needs no store read (the session was found live less than
        ``SESSION_RECHECK_SECONDS`` ago), else None; a bad token raises as there.  Cheap
        enough for the event loop, so most requests skip a worker-thread hop for auth."""
        return self._cached(*self._claims(token))

    def _claims(self, token: str) -> tuple[str, str]:
        """(session id, user id) of a valid, unexpired access token of this app."""
        payload = self._verify(token)
        if payload.get("typ") != "access" or payload.get("app") != self.app_id:
            raise AuthError("not an access token for this app")
        exp = payload.get("exp")
        if not isinstance(exp, int) or exp <= self.now():
            raise TokenExpired("access token expired; refresh it")
        sid, uid = payload.get("sid"), payload.get("sub")
        if not isinstance(sid, str) or not isinstance(uid, str):
            raise AuthError("malformed access token")
        return sid, uid

    def _cached(self, sid: str, uid: str) -> Principal | None:
        cached = self._live.get(sid)
        if (
            cached is not None
            and cached[1].user_id == uid
            and self.now() - cached[0] < SESSION_RECHECK_SECONDS
        ):
            return cached[1]
        return None

    def _session_for_refresh(self, refresh: str) -> SessionRow:
        parts = refresh.split(".")
        if len(parts) != 3 or parts[0] != "rpr1" or len(refresh) > 512 or not refresh.isascii():
            raise AuthError("malformed refresh token")
        with self.store.transaction(write=False) as tx:
            session = tx.get_session(parts[1])
        if session is None or not hmac.compare_digest(session.refresh_hash, _sha(parts[2])):
            raise AuthError("unknown refresh token")
        if session.revoked:
            raise AuthError("session revoked; log in again")
        return session

    def refresh(self, refresh: str) -> TokenResponse:
        """A new access token for a live session."""
        session = self._session_for_refresh(refresh)
        if session.expires_at <= self.now():
            raise TokenExpired("refresh token expired; log in again")
        with self.store.transaction(write=False) as tx:
            user = tx.get_user(session.user_id)
        if user is None:
            raise AuthError("user no longer exists")
        return self._issue(user, session.id, refresh=None)

    def logout(self, token: str) -> None:
        """Revoke the session of a refresh or access token (an expired access token may log out too)."""
        if token.startswith("rpr1."):
            sid = self._session_for_refresh(token).id
        else:
            raw_sid = self._verify(token).get("sid")
            if not isinstance(raw_sid, str):
                raise AuthError("malformed access token")
            sid = raw_sid
        with self.store.transaction(write=True) as tx:
            tx.revoke_session(sid)
        self._live.pop(sid, None)

    # ----------------------------------------------------------------- providers

    def register(self, email: str, password: str) -> str:
        """Create an email/password user; returns its id."""
        if not self.config.email_password:
            raise ProviderDisabled("email/password authentication is disabled")
        self.check_password_rules(password)
        user = UserRow(
            secrets.token_hex(12),
            "email_password",
            email,
            hash_password(password, n=self.config.scrypt_n),
            int(self.now()),
        )
        try:
            with self.store.transaction(write=True) as tx:
                tx.create_user(user)
        except ConflictError:
            raise EmailTakenError("an account with this email already exists") from None
        return user.id

    def login(self, req: LoginRequest) -> TokenResponse:
        """Log in with any enabled provider; returns access and refresh tokens."""
        if req.provider == "anonymous":
            if not self.config.anonymous:
                raise ProviderDisabled("anonymous authentication is disabled")
            user = UserRow(secrets.token_hex(12), "anonymous", None, None, int(self.now()))
            with self.store.transaction(write=True) as tx:
                tx.create_user(user)
            return self._new_session(user)
        if req.provider == "email_password":
            if not self.config.email_password:
                raise ProviderDisabled("email/password authentication is disabled")
            assert req.email is not None and req.password is not None
            with self.store.transaction(write=False) as tx:
                found = tx.user_by_email(req.email)
            ok = verify_password(
                req.password, found.pw_hash if found and found.pw_hash else self._dummy_hash
            )
            if found is None or not ok:
                raise InvalidCredentials("wrong email or password")
            return self._new_session(found)
        if not self.config.api_keys:
            raise ProviderDisabled("API-key authentication is disabled")
        assert req.key is not None
        parts = req.key.split(".")
        if len(parts) != 3 or parts[0] != "rpk1":
            raise InvalidCredentials("malformed API key")
        with self.store.transaction(write=False) as tx:
            row = tx.get_api_key(parts[1])
            owner = tx.get_user(row[0]) if row else None
        if row is None or owner is None or not hmac.compare_digest(row[2], _sha(parts[2])):
            raise InvalidCredentials("unknown API key")
        return self._new_session(owner)

    def create_api_key(self, principal: Principal, name: str) -> tuple[str, str]:
        """(id, key) of a new API key for the caller; the key is shown only now."""
        if not self.config.api_keys:
            raise ProviderDisabled("API-key authentication is disabled")
        return self.issue_api_key(principal.user_id, name)

    def issue_api_key(self, user_id: str, name: str) -> tuple[str, str]:
        """(id, key) of a new API key for ``user_id`` (also the admin command's)."""
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        with self.store.transaction(write=True) as tx:
            tx.create_api_key(key_id, user_id, name, _sha(secret), int(self.now()))
        return key_id, f"rpk1.{key_id}.{secret}"

    def check_password_rules(self, password: str) -> None:
        """``ProtocolError`` if ``password`` is too short for this deployment."""
        if len(password) < self.config.min_password_length:
            raise ProtocolError(
                f"password must have at least {self.config.min_password_length} characters",
                field="password",
            )

    def reset_password(self, user_id: str, password: str) -> None:
        """Set a new password and end every session of the user (the admin command's)."""
        self.check_password_rules(password)
        pw_hash = hash_password(password, n=self.config.scrypt_n)
        with self.store.transaction(write=True) as tx:
            tx.set_password(user_id, pw_hash)
            tx.revoke_user_sessions(user_id)
        for sid, (_, p) in list(self._live.items()):
            if p.user_id == user_id:
                self._live.pop(sid, None)

    def list_api_keys(self, principal: Principal) -> list[tuple[str, str]]:
        """(id, name) of the caller's API keys."""
        with self.store.transaction(write=False) as tx:
            return tx.list_api_keys(principal.user_id)

    def delete_api_key(self, principal: Principal, key_id: str) -> bool:
        """Delete one of the caller's API keys."""
        with self.store.transaction(write=True) as tx:
            return tx.delete_api_key(key_id, principal.user_id)
