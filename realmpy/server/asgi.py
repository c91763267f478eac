"""The HTTP application (ASGI, Starlette): routing, limits, authentication, errors, long-polls.

Why Starlette: a small, pure-Python ASGI toolkit whose routing, request
streaming and lifespan handling we would otherwise rewrite; it runs under
uvicorn in production and under ``starlette.testclient`` in tests.

Every request is handled the same way: authentication (every endpoint but
register/login/refresh/logout/health/metrics), the body read within the
endpoint's byte and value limits and deadline (``limits``), strict decoding
of the msgpack body into a typed message, the handler in a worker thread
(stores are blocking), and a msgpack answer.  Logins and registrations pass
rate limits and a bound on concurrent password hashes first
(``ratelimit``).  Any ``ProtocolError`` becomes its 4xx with a typed
``error`` code; a client that hangs up is logged as a disconnect; anything
else is logged and answered ``500 internal_error`` — the server never
crashes on input, and since each handler is one store transaction, an error
never leaves half an upload behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Match, Route

from realmpy.server.auth import AuthService, Principal
from realmpy.server.config import ServerConfig
from realmpy.server.limits import CONTROL, MSGPACK, BodyLimit, decode, read_body, read_raw
from realmpy.server.metrics import CONTENT_TYPE_LATEST, Metrics
from realmpy.server.ratelimit import HashPool, RateLimited, RateLimiter, check
from realmpy.server.store import Commit, Store
from realmpy.server.sync_service import PreparedUpload, SyncService
from realmpy.server.wake_filter import ChangedRecords, WakeFilter
from realmpy.server.woken_polls import WokenPolls
from realmpy.wire.protocol import (
    PROTOCOL_VERSION,
    ApiKeyRequest,
    ApiKeyResponse,
    AuthError,
    DownloadRequest,
    ErrorResponse,
    IdentRequest,
    LoginRequest,
    MalformedMessage,
    ProtocolError,
    RegisterRequest,
    SchemaRequest,
    SubscriptionRequest,
    UnknownFieldError,
    UnknownTableError,
    UploadRequest,
    pack,
    tables_to_wire,
)

__all__ = ["ChangeWatcher", "ServerApp", "create_app"]

log = logging.getLogger("realmpy.server")
SEND_CHUNK_BYTES = 256 * 1024
"""Answers larger than this are written to the socket in pieces of this size."""
SWITCH_INTERVAL_S = 0.0005
"""The GIL switch interval while the server runs (see ``ServerApp._lifespan``)."""
PACK_INLINE_ENTRIES = 16
"""Download answers of at most this many entries are encoded on the event loop (tens of
microseconds); larger ones in a worker thread."""
INLINE_UPLOAD_BYTES = 16 * 1024
"""Upload bodies of at most this size are decoded and validated on the event loop."""
GC_THRESHOLDS = (50_000, 20, 20)
"""``gc.set_threshold`` while the server runs (see ``ServerApp._lifespan``)."""

ROUTES = (
    "register",
    "login",
    "refresh",
    "logout",
    "profile",
    "api_keys",
    "api_key_delete",
    "ident",
    "schema",
    "upload",
    "download",
    "subscriptions",
)
"""Route names: the ``route`` label of the request metrics."""


class NotFound(ProtocolError):
    """No such endpoint, app or resource."""

    code = "not_found"


class UnsupportedVersion(ProtocolError):
    """The URL names a protocol version this server does not speak."""

    code = "unsupported_protocol_version"


class MissingToken(AuthError):
    """No ``Authorization: Bearer`` header."""

    code = "unauthorized"


class ShuttingDown(ProtocolError):
    """The server is stopping; retry against another instance or later."""

    code = "shutting_down"


class _Poll:
    """One parked long-poll: what it is waiting for, and the event that wakes it."""

    __slots__ = ("event", "file_ident", "filter")

    def __init__(self, file_ident: int) -> None:
        self.file_ident = file_ident
        self.filter: WakeFilter | None = None
        """Its file's subscriptions and read rules (None until its first download: any
        change wakes it)."""
        self.event = asyncio.Event()

    def concerned(self, commit: Commit | None, changed: ChangedRecords | None) -> bool:
        if self.filter is None:
            return True
        return self.filter.concerned(commit, changed)


class ChangeWatcher:
    """Wakes the long-polls a commit concerns (here or, via the store, in another process).

    A poll registers before it reads the store and is woken by any commit after that
    which changed an object its queries and read rules see (before or after), or that
    names its file (its own upload's refusals and views, its new subscriptions): a
    commit in between is never missed, and one that concerns no poll wakes none.
    Where matching objects is not cheap it is by table (``wake_filter``): such a poll
    goes back to waiting after a download with nothing to send.
    """

    def __init__(self, latest: int = 0) -> None:
        self.latest = latest
        """The newest server version this process has heard of (``/health`` reports it)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._polls: set[_Poll] = set()
        self.stopping = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the event loop the app runs on."""
        self._loop = loop

    def notify_threadsafe(self, commit: Commit | None = None) -> None:
        """Callable from any thread; None wakes every poll."""
        if commit is not None and commit.sv > self.latest:
            self.latest = commit.sv  # a racy max is fine: /health's figure is informational
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake, commit)

    def _wake(self, commit: Commit | None) -> None:
        changed = None
        if commit is not None and commit.objects is not None:
            changed = ChangedRecords(commit.objects)
        for poll in self._polls:
            if not poll.event.is_set() and poll.concerned(commit, changed):
                poll.event.set()

    def stop(self) -> None:
        """Wake every long-poll for a graceful shutdown."""
        self.stopping = True
        self.notify_threadsafe()

    @contextlib.contextmanager
    def watch(self, file_ident: int) -> Iterator[_Poll]:
        """Register a long-poll (on the event loop) for as long as the block runs."""
        poll = _Poll(file_ident)
        self._polls.add(poll)
        try:
            yield poll
        finally:
            self._polls.discard(poll)

    async def wait(self, poll: _Poll, timeout: float) -> None:
        """Return when a commit concerning ``poll`` came in or after ``timeout`` seconds."""
        if self.stopping or timeout <= 0:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(poll.event.wait(), timeout)


class ServerApp:
    """Wires config, store, auth and sync into Starlette routes."""

    def __init__(
        self, config: ServerConfig, store: Store, *, now: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = Metrics(ROUTES)
        self.watcher = ChangeWatcher()
        rl = config.rate_limits
        self._login_by_account = RateLimiter(
            rl.login_per_account_burst, rl.login_per_account_per_minute, max_keys=rl.max_keys
        )
        self._login_by_address = RateLimiter(
            rl.login_per_address_burst, rl.login_per_address_per_minute, max_keys=rl.max_keys
        )
        self._register_by_address = RateLimiter(
            rl.register_per_address_burst, rl.register_per_address_per_minute, max_keys=rl.max_keys
        )
        self._hashes = HashPool(rl.max_concurrent_hashes, rl.max_queued_hashes)
        with store.transaction(write=False) as tx:
            latest, _, secret, _ = tx.server_state()
        self.watcher.latest = latest
        self.auth = AuthService(store, config.auth, app_id=config.app_id, secret=secret, now=now)
        self.sync = SyncService(store, config, on_change=self.watcher.notify_threadsafe)
        self._woken = WokenPolls(self.sync.download_many)
        store.add_listener(self.watcher.notify_threadsafe)
        prefix = f"/api/v{PROTOCOL_VERSION}/app/{{app_id}}"
        routes = [
            # Starlette tries routes in order (a regex each): the hot ones first.
            Route(f"{prefix}/sync/upload", self.upload, methods=["POST"]),
            Route(f"{prefix}/sync/download", self.download, methods=["POST"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/ready", self.ready, methods=["GET"]),
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
            Route(f"{prefix}/auth/register", self.register, methods=["POST"]),
            Route(f"{prefix}/auth/login", self.login, methods=["POST"]),
            Route(f"{prefix}/auth/refresh", self.refresh, methods=["POST"]),
            Route(f"{prefix}/auth/logout", self.logout, methods=["POST"]),
            Route(f"{prefix}/auth/profile", self.profile, methods=["GET"]),
            Route(f"{prefix}/auth/api-keys", self.api_keys, methods=["GET", "POST"]),
            Route(f"{prefix}/auth/api-keys/{{key_id}}", self.api_key_delete, methods=["DELETE"]),
            Route(f"{prefix}/sync/ident", self.ident, methods=["POST"]),
            Route(f"{prefix}/sync/schema", self.schema, methods=["GET", "POST"]),
            Route(f"{prefix}/sync/subscriptions", self.subscriptions, methods=["POST"]),
            Route(
                "/api/{version}/{rest:path}",
                self.wrong_version,
                methods=["GET", "POST", "PUT", "DELETE"],
            ),
        ]
        self.app = Starlette(
            routes=routes,
            lifespan=self._lifespan,
            exception_handlers={404: self._not_found, 405: self._not_allowed},
        )

    # ----------------------------------------------------------------- plumbing

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        # CPU-heavy handlers (bootstraps, uploads, query evaluation) run in worker threads,
        # but share the GIL with the event loop: with CPython's default 5 ms switch interval,
        # each of the dozen GIL hand-offs a small request needs (the loop, a worker's store
        # calls) could wait 5 ms behind a busy worker.  A shorter interval keeps /health and
        # long-poll wake-ups fast while a worker computes, for a small cost in throughput.
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, SWITCH_INTERVAL_S))
        # A full garbage collection stops every thread: with CPython's default thresholds a
        # bootstrap batch's temporaries reach the oldest generation and each full pass walked
        # them and every module object (75-195 ms measured).  Objects alive at start-up are
        # frozen out of collection, and young collections run less often.
        thresholds = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        self.watcher.bind(asyncio.get_running_loop())
        rl = self.config.rate_limits
        self._hashes = HashPool(rl.max_concurrent_hashes, rl.max_queued_hashes)  # closed below
        self.store.start_listening()
        log.info(
            "server started", extra={"app_id": self.config.app_id, "dev_mode": self.config.dev_mode}
        )
        trimmer = None
        if self.config.history_retention_ms is not None:
            trimmer = asyncio.create_task(self._trim_loop(self.config.history_retention_ms))
        try:
            yield
        finally:
            if trimmer is not None:
                trimmer.cancel()
            self._hashes.close()
            self.watcher.stop()
            sys.setswitchinterval(switch)
            gc.set_threshold(*thresholds)
            gc.unfreeze()
            log.info("server stopped")

    async def _trim_loop(self, retention_ms: int) -> None:
        """Trim history older than the retention period, at start and then periodically."""
        interval = max(60.0, min(3600.0, retention_ms / 1000 / 24))
        while True:
            try:
                await run_in_threadpool(self.sync.trim_history, older_than_ms=retention_ms)
            except Exception:
                log.exception("history trimming failed")
            await asyncio.sleep(interval)

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return self._error(NotFound(f"no endpoint {request.method} {request.url.path}"))

    async def _not_allowed(self, request: Request, exc: Exception) -> Response:
        err = NotFound(f"method {request.method} not allowed on {request.url.path}")
        return Response(
            pack(ErrorResponse("method_not_allowed", err.message).to_wire()),
            405,
            media_type=MSGPACK,
        )

    def _error(self, exc: ProtocolError) -> Response:
        body = ErrorResponse(exc.code, exc.message, _plain(exc.detail)).to_wire()
        headers = {"retry-after": str(exc.detail["retry_after"])} if exc.status == 429 else None
        return Response(pack(body), exc.status, media_type=MSGPACK, headers=headers)

    async def _body(self, request: Request, limit: BodyLimit) -> Any:
        """The request's msgpack body within ``limit``."""
        return await read_body(request, limit, self.config.limits.body_timeout)

    @staticmethod
    def _address(request: Request) -> str:
        """The client's address (behind a proxy: its ``X-Forwarded-For``, if uvicorn trusts the proxy)."""
        return request.client.host if request.client else "unknown"

    @staticmethod
    def _bearer(request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise MissingToken("missing 'Authorization: Bearer <token>' header")
        return token.strip()

    async def _principal(self, request: Request) -> Principal:
        token = self._bearer(request)
        cached = self.auth.authenticate_cached(token)  # on the loop: no store read needed
        if cached is not None:
            return cached
        return await run_in_threadpool(self.auth.authenticate, token)

    def _check_app(self, request: Request) -> None:
        if request.path_params.get("app_id") != self.config.app_id:
            raise NotFound(f"unknown app {request.path_params.get('app_id')!r}")

    async def _run(self, request: Request, name: str, fn: Callable[[], Awaitable[Any]]) -> Response:
        start = time.perf_counter()
        status = 500
        try:
            self._check_app(request)
            result = await fn()
            status = 200
            # bytes: a handler that packed its (large) answer off the event loop
            body = result if isinstance(result, bytes) else pack(result)
            if len(body) > SEND_CHUNK_BYTES:
                return _chunked(body)
            return Response(body, 200, media_type=MSGPACK)
        except ProtocolError as exc:
            status = exc.status
            self.metrics.errors.labels(exc.code).inc()
            if isinstance(exc, RateLimited):
                self.metrics.rate_limited.labels(str(exc.detail.get("limit", ""))).inc()
            return self._error(exc)
        except ClientDisconnect:
            # Nobody is left to answer; not a server fault (499: nginx's "client closed request").
            status = 499
            self.metrics.disconnects.labels(name).inc()
            log.info("client disconnected", extra={"endpoint": name})
            return Response(b"", 499)
        except RecursionError:
            # A message nested deeper than some validation can follow: the client's fault.
            status = 400
            err = MalformedMessage("message nested too deeply")
            self.metrics.errors.labels(err.code).inc()
            return self._error(err)
        except Exception:
            log.exception("internal error", extra={"endpoint": name})
            return Response(
                pack(ErrorResponse("internal_error", "internal server error").to_wire()),
                500,
                media_type=MSGPACK,
            )
        finally:
            elapsed = time.perf_counter() - start
            self.metrics.requests.labels(name, str(status)).inc()
            self.metrics.request_seconds.labels(name).observe(elapsed)
            log.info(
                "request",
                extra={"endpoint": name, "status": status, "ms": round(elapsed * 1000, 2)},
            )

    # ----------------------------------------------------------------- endpoints

    async def health(self, request: Request) -> Response:
        """Liveness: answered on the event loop without the store, so it never waits on the
        upload lock, the connection pool or a worker thread (``/ready`` checks the store)."""
        return JSONResponse(self._status("ok", self.watcher.latest))

    async def ready(self, request: Request) -> Response:
        """Readiness: the store answers a read (503 if it does not)."""
        try:
            latest = await run_in_threadpool(self._latest)
        except Exception as exc:
            return JSONResponse({"status": "error", "error": str(exc)}, status_code=503)
        return JSONResponse(self._status("ok", latest))

    def _status(self, status: str, latest: int) -> dict[str, Any]:
        return {
            "status": status,
            "app_id": self.config.app_id,
            "server_version": latest,
            "protocol_version": PROTOCOL_VERSION,
            "dev_mode": self.config.dev_mode,
        }

    def _latest(self) -> int:
        with self.store.transaction(write=False) as tx:
            return tx.latest_server_version()

    async def metrics_endpoint(self, request: Request) -> Response:
        """Prometheus text format."""
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def wrong_version(self, request: Request) -> Response:
        """Any other ``/api/vN/...``."""
        version = request.path_params.get("version", "")
        if version == f"v{PROTOCOL_VERSION}":
            for route in self.app.routes[:-1]:
                match, _ = route.matches(request.scope)
                if match == Match.PARTIAL:  # the path exists, the method does not
                    return await self._not_allowed(request, NotFound(""))
            return self._error(NotFound(f"no endpoint {request.method} {request.url.path}"))
        return self._error(
            UnsupportedVersion(
                f"protocol {version!r} is not supported; this server speaks v{PROTOCOL_VERSION}",
                supported=[PROTOCOL_VERSION],
            )
        )

    async def register(self, request: Request) -> Response:
        async def go() -> Any:
            msg = RegisterRequest.from_wire(await self._body(request, self.config.limits.auth))
            check(self._register_by_address, self._address(request), "register_per_address")
            uid = await self._hashes.run(self.auth.register, msg.email, msg.password)
            return {"user_id": uid}

        return await self._run(request, "register", go)

    async def login(self, request: Request) -> Response:
        async def go() -> Any:
            msg = LoginRequest.from_wire(await self._body(request, self.config.limits.auth))
            check(self._login_by_address, self._address(request), "login_per_address")
            if msg.provider != "email_password":
                return (await run_in_threadpool(self.auth.login, msg)).to_wire()
            check(self._login_by_account, str(msg.email), "login_per_account")
            return (await self._hashes.run(self.auth.login, msg)).to_wire()

        return await self._run(request, "login", go)

    async def refresh(self, request: Request) -> Response:
        async def go() -> Any:
            return (await run_in_threadpool(self.auth.refresh, self._bearer(request))).to_wire()

        return await self._run(request, "refresh", go)

    async def logout(self, request: Request) -> Response:
        async def go() -> Any:
            await run_in_threadpool(self.auth.logout, self._bearer(request))
            return {"ok": True}

        return await self._run(request, "logout", go)

    async def profile(self, request: Request) -> Response:
        async def go() -> Any:
            p = await self._principal(request)
            return {"user_id": p.user_id, "provider": p.provider, "email": p.email}

        return await self._run(request, "profile", go)

    async def api_keys(self, request: Request) -> Response:
        async def go() -> Any:
            p = await self._principal(request)
            if request.method == "GET":
                keys = await run_in_threadpool(self.auth.list_api_keys, p)
                return {"keys": [ApiKeyResponse(i, n).to_wire() for i, n in keys]}
            msg = ApiKeyRequest.from_wire(await self._body(request, CONTROL))
            key_id, key = await run_in_threadpool(self.auth.create_api_key, p, msg.name)
            return ApiKeyResponse(key_id, msg.name, key).to_wire()

        return await self._run(request, "api_keys", go)

    async def api_key_delete(self, request: Request) -> Response:
        async def go() -> Any:
            p = await self._principal(request)
            if not await run_in_threadpool(
                self.auth.delete_api_key, p, request.path_params["key_id"]
            ):
                raise NotFound("no such API key")
            return {"ok": True}

        return await self._run(request, "api_key_delete", go)

    async def ident(self, request: Request) -> Response:
        async def go() -> Any:
            p = await self._principal(request)
            msg = IdentRequest.from_wire(await self._body(request, CONTROL))
            return (await run_in_threadpool(self.sync.ident, p, msg.nonce)).to_wire()

        return await self._run(request, "ident", go)

    async def schema(self, request: Request) -> Response:
        async def go() -> Any:
            await self._principal(request)
            if request.method == "GET":
                tables = await run_in_threadpool(self.sync.schema, reload=True)  # a store read
                return {"tables": tables_to_wire(tables)}
            body = await self._body(request, self.config.limits.bulk)

            def push() -> Any:
                return tables_to_wire(self.sync.push_schema(SchemaRequest.from_wire(body)))

            return {"tables": await run_in_threadpool(push)}

        return await self._run(request, "schema", go)

    async def upload(self, request: Request) -> Response:
        async def go() -> Any:
            p = await self._principal(request)
            limit = self.config.limits.bulk
            raw = await read_raw(request, limit, self.config.limits.body_timeout)

            def prepare(reload: bool = True) -> tuple[UploadRequest, PreparedUpload]:
                # The decoded body is garbage once it is a message (see sync_service on memory).
                msg = UploadRequest.from_wire(decode(raw, limit))
                return msg, self.sync.prepare_upload(p, msg, reload=reload)

            # A small upload is decoded and checked here (tens of microseconds: less than a
            # worker-thread hop); a large one, or one naming a table this process has not
            # loaded yet (a store read), off the loop.  Either way it then waits for its group
            # without a thread of its own (group_commit).
            prepared = None
            if len(raw) <= INLINE_UPLOAD_BYTES:
                with contextlib.suppress(UnknownTableError, UnknownFieldError):
                    prepared = prepare(reload=False)
            if prepared is None:
                prepared = await run_in_threadpool(prepare)
            msg, job = prepared
            res = await self.sync.integrate(job)
            self.metrics.changesets_in.inc(len(msg.changesets))
            self.metrics.ops_in.inc(job.ops)
            self.metrics.compensating_writes.inc(len(res.rejected))
            return res.to_wire()

        return await self._run(request, "upload", go)

    async def subscriptions(self, request: Request) -> Response:
        async def go() -> Any:
            p = await self._principal(request)
            body = await self._body(request, self.config.limits.bulk)

            def subscribe() -> Any:
                return self.sync.set_subscriptions(p, SubscriptionRequest.from_wire(body)).to_wire()

            return await run_in_threadpool(subscribe)

        return await self._run(request, "subscriptions", go)

    async def download(self, request: Request) -> Response:
        async def go() -> Any:
            p = await self._principal(request)
            msg = DownloadRequest.from_wire(await self._body(request, CONTROL))
            wait = min(msg.wait_ms, self.config.max_long_poll_ms) / 1000.0
            deadline = time.monotonic() + wait
            self.metrics.long_polls.inc()
            try:
                with self.watcher.watch(msg.file_ident) as poll:
                    woken = False
                    while True:
                        poll.event.clear()  # before reading: a commit meanwhile sets it again
                        # Polls a commit woke download together (woken_polls); None: bootstrap.
                        got = await self._woken.download(p, msg) if woken else None
                        if got is None:
                            res = await run_in_threadpool(self.sync.download, p, msg)
                        else:
                            res = got
                        woken = True
                        poll.filter = self.sync.interest(msg.file_ident)
                        remaining = deadline - time.monotonic()
                        if (
                            res.entries
                            or res.skipped_own  # the cursor passed the caller's own upload
                            or res.batch != "steady"
                            or remaining <= 0
                            or self.watcher.stopping
                        ):
                            break
                        # Nothing to send (the cursor may have moved past others' changes):
                        # wait on; the answer at the deadline carries the moved cursor.
                        await self.watcher.wait(poll, remaining)
            finally:
                self.metrics.long_polls.dec()
            sent = (
                self.metrics.objects_out
                if res.batch == "steady"
                else self.metrics.bootstrap_objects
            )
            sent.inc(len(res.entries))
            if len(res.entries) <= PACK_INLINE_ENTRIES:
                return res.pack()  # a few entries: cheaper here than a worker-thread hop
            # a bootstrap batch is up to max_bytes of entries: encode it off the loop
            return await run_in_threadpool(res.pack)

        return await self._run(request, "download", go)


def _chunked(body: bytes) -> Response:
    """A large answer sent SEND_CHUNK_BYTES at a time: one socket write of a whole
    bootstrap batch (megabytes) would keep the event loop in the kernel meanwhile."""

    async def pieces() -> AsyncIterator[bytes]:
        view = memoryview(body)
        for start in range(0, len(body), SEND_CHUNK_BYTES):
            yield bytes(view[start : start + SEND_CHUNK_BYTES])

    return StreamingResponse(
        pieces(), 200, headers={"content-length": str(len(body))}, media_type=MSGPACK
    )


def _plain(detail: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in dict(detail).items():
        try:
            pack(v)
            out[k] = v
        except TypeError:
            out[k] = str(v)
    return out


def create_app(
    config: ServerConfig, store: Store, *, now: Callable[[], float] = time.time
) -> ServerApp:
    """Build the app; ``ServerApp.app`` is the ASGI callable."""
    return ServerApp(config, store, now=now)
