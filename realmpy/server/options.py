"""The command line's shared options and the store they name (``realmpy-server`` and its admin commands).

Why a module of its own: ``cli`` dispatches to ``serve`` and ``admin``, and
both need the same ``--data``/``--database``/``--config`` options and the
same way of opening the store; keeping those here lets neither import
``cli`` back.  Nothing here imports a server dependency at import time.
"""

from __future__ import annotations

import argparse
import os
import secrets
from typing import TYPE_CHECKING

import realmpy

if TYPE_CHECKING:
    from realmpy.server.store import Store

__all__ = ["add_store_arguments", "open_store", "version_argument"]


def open_store(
    data: str, database: str | None, *, lock: bool = True, pool_size: int | None = None
) -> Store:
    """The SQLite store in ``data`` or, with a URL, the PostgreSQL store; initialised.

    ``lock=False`` lets an admin command share a SQLite directory with the
    running server (it writes users and sessions only, never server versions).
    ``pool_size``: database connections (None: the default, 8).
    """
    from realmpy.server.store import DEFAULT_POOL_SIZE

    size = DEFAULT_POOL_SIZE if pool_size is None else pool_size
    store: Store
    if database:
        from realmpy.server.store_postgres import PostgresStore

        store = PostgresStore(database, max_connections=size)
    else:
        from realmpy.server.store_sqlite import SQLiteStore

        store = SQLiteStore(data, lock=lock, max_connections=size)
    store.initialise(secret=secrets.token_bytes(32), salt=secrets.randbits(62))
    return store


def add_store_arguments(p: argparse.ArgumentParser, *, data_required: bool) -> None:
    """``--data``, ``--database`` and ``--config``: where the server keeps its state."""
    p.add_argument(
        "--data", required=data_required, help="data directory (SQLite store, lock file)"
    )
    p.add_argument(
        "--database",
        default=os.environ.get("REALMPY_DATABASE"),
        help="postgresql://... to use PostgreSQL (default: $REALMPY_DATABASE)",
    )
    p.add_argument(
        "--config", default=None, help="TOML configuration file (omit for development mode)"
    )


def version_argument(p: argparse.ArgumentParser) -> None:
    """``--version``: prints ``realmpy-server <version>``."""
    p.add_argument("--version", action="version", version=f"realmpy-server {realmpy.__version__}")
