"""``realmpy-server``: run the sync server under uvicorn.

    realmpy-server --data DIR --port N [--host 127.0.0.1] [--app-id ID]
                   [--config FILE] [--database postgresql://...]

Without ``--config`` the server runs in development mode and says so loudly.
SIGTERM/SIGINT stop it gracefully: waiting long-polls are answered at once,
in-flight uploads finish (each is one transaction, so a hard kill loses
nothing acknowledged either).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from types import FrameType

import uvicorn

from realmpy.server.app import ServerApp, create_app
from realmpy.server.config import ConfigError, load_config
from realmpy.server.logs import setup_logging
from realmpy.server.store import Store

__all__ = ["main", "open_store"]

log = logging.getLogger("realmpy.server")

DEV_WARNING = """
************************************************************************
*  realmpy-server is running in DEVELOPMENT MODE (no --config file):   *
*  anonymous and email/password logins are on, EVERY user may read    *
*  and write EVERY object, and clients may add tables and fields.      *
*  Do not expose this server to anyone you do not trust.               *
************************************************************************
"""


def open_store(data: str, database: str | None) -> Store:
    """The SQLite store in ``data`` or, with a URL, the PostgreSQL store; initialised."""
    store: Store
    if database:
        from realmpy.server.store_postgres import PostgresStore

        store = PostgresStore(database)
    else:
        from realmpy.server.store_sqlite import SQLiteStore

        store = SQLiteStore(data)
    store.initialise(secret=secrets.token_bytes(32), salt=secrets.randbits(62))
    return store


class _Server(uvicorn.Server):
    """uvicorn, plus: a stop signal also wakes our long-polls so shutdown is prompt."""

    app_ref: ServerApp | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.app_ref is not None:
            self.app_ref.watcher.stop()
        super().handle_exit(sig, frame)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, open the store, serve until stopped."""
    p = argparse.ArgumentParser(
        prog="realmpy-server", description="realmpy's self-hosted sync server"
    )
    p.add_argument("--data", required=True, help="data directory (SQLite store, lock file)")
    p.add_argument("--port", type=int, required=True, help="TCP port (0 = any free port)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument(
        "--app-id", default=None, help="app id (default: from the config, else 'default')"
    )
    p.add_argument(
        "--config", default=None, help="TOML configuration file (omit for development mode)"
    )
    p.add_argument(
        "--database",
        default=os.environ.get("REALMPY_DATABASE"),
        help="postgresql://... to use PostgreSQL",
    )
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = load_config(args.config, app_id=args.app_id)
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
        store = open_store(args.data, args.database)
    except Exception as exc:
        print(f"realmpy-server: cannot open the store: {exc}", file=sys.stderr)
        return 2
    server_app = create_app(config, store)
    uv_config = uvicorn.Config(
        server_app.app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
    server = _Server(uv_config)
    server.app_ref = server_app
    try:
        server.run()
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
