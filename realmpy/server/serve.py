"""Serving: open the store, build the app, run it under uvicorn with the transport limits.

Without ``--config`` the server runs in development mode and says so loudly.
SIGTERM/SIGINT stop it gracefully: waiting long-polls are answered at once,
in-flight uploads finish (each is one transaction, so a hard kill loses
nothing acknowledged either).

TLS (``--tls-cert``/``--tls-key``) is for deployments without a reverse
proxy; behind one (nginx, Caddy, a cloud load balancer), let the proxy end
TLS and keep the server on 127.0.0.1 (``docs/server.md``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from types import FrameType
from typing import Any

import uvicorn

from realmpy.server.asgi import ServerApp, create_app
from realmpy.server.config import ConfigError, ServerConfig, load_config
from realmpy.server.logs import setup_logging
from realmpy.server.options import open_store
from realmpy.server.transport import guarded_protocol

__all__ = ["DEV_WARNING", "serve", "uvicorn_config"]

log = logging.getLogger("realmpy.server")

DEV_WARNING = """
************************************************************************
*  realmpy-server is running in DEVELOPMENT MODE (no --config file):   *
*  anonymous and email/password logins are on, EVERY user may read    *
*  and write EVERY object, and clients may add tables and fields.      *
*  Do not expose this server to anyone you do not trust.               *
************************************************************************
"""


class _Server(uvicorn.Server):
    """uvicorn, plus: a stop signal also wakes our long-polls so shutdown is prompt."""

    app_ref: ServerApp | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.app_ref is not None:
            self.app_ref.watcher.stop()
        super().handle_exit(sig, frame)


def uvicorn_config(
    server_app: ServerApp, host: str, port: int, *, fast_http: bool = True, **extra: Any
) -> uvicorn.Config:
    """uvicorn's configuration for ``server_app``, with its ``[limits]`` on the transport
    (httptools' protocol when installed and ``fast_http``, else h11's)."""
    limits = server_app.config.limits
    metrics = server_app.metrics
    return uvicorn.Config(
        server_app.app,
        host=host,
        port=port,
        http=guarded_protocol(
            limits, lambda reason: metrics.refused_connections.labels(reason).inc(), fast=fast_http
        ),
        timeout_keep_alive=limits.keep_alive_timeout,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        lifespan="on",
        **extra,
    )


def run(server_app: ServerApp, host: str, port: int, **extra: Any) -> None:
    """Serve ``server_app`` until a stop signal."""
    server = _Server(uvicorn_config(server_app, host, port, **extra))
    server.app_ref = server_app
    server.run()


def serve(args: argparse.Namespace) -> int:
    """``realmpy-server [serve]``: the exit status."""
    setup_logging(args.log_level, args.log_format)
    try:
        config: ServerConfig = load_config(args.config, app_id=args.app_id)
    except ConfigError as exc:
        print(f"realmpy-server: {exc}", file=sys.stderr)
        return 2
    if config.dev_mode:
        print(DEV_WARNING, file=sys.stderr, flush=True)
        log.warning(
            "development mode: no rules, everyone reads and writes everything",
            extra={"app_id": config.app_id},
        )
    try:
        pool_size = args.pool_size if args.pool_size is not None else config.pool_size
        store = open_store(args.data, args.database, pool_size=pool_size)
    except Exception as exc:
        print(f"realmpy-server: cannot open the store: {exc}", file=sys.stderr)
        return 2
    tls = {}
    if args.tls_cert:
        tls = {"ssl_certfile": args.tls_cert, "ssl_keyfile": args.tls_key}
    try:
        run(create_app(config, store), args.host, args.port, fast_http=args.http == "auto", **tls)
    except OSError as exc:  # an unreadable certificate or key, mostly (ssl.SSLError is one)
        print(f"realmpy-server: cannot serve: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0
