"""Helpers for testing against a real server: stores on SQLite or PostgreSQL, a server subprocess.

Why in the package: the server's own tests and the sync client's tests both
need "a store of either kind" and "a running realmpy-server on a free
loopback port", and both must find PostgreSQL the same way: the URL in
``REALMPY_TEST_PG_URL`` (``.ci/postgres.sh`` prints it), else the default
that script creates.  Each PostgreSQL store lives in a fresh schema so tests
never see each other's rows.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import realmpy
from realmpy.server.store import Store

__all__ = [
    "DEFAULT_PG_URL",
    "free_port",
    "make_store",
    "pg_schema_url",
    "pg_url",
    "postgres_available",
    "run_server",
]

DEFAULT_PG_URL = "postgresql://postgres:postgres@127.0.0.1:5432/realmpy_test"


def pg_url() -> str:
    """The PostgreSQL URL tests use."""
    return os.environ.get("REALMPY_TEST_PG_URL") or DEFAULT_PG_URL


def postgres_available() -> str | None:
    """None if PostgreSQL answers at ``pg_url()``, else the reason it does not."""
    try:
        import psycopg
    except ImportError as exc:
        return f"psycopg is not installed ({exc})"
    try:
        with psycopg.connect(pg_url(), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"PostgreSQL not reachable at {pg_url()}: {exc}"
    return None


def pg_schema_url(schema: str) -> str:
    """``pg_url()`` with ``search_path`` set to a (created) schema."""
    import psycopg

    with psycopg.connect(pg_url(), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    sep = "&" if "?" in pg_url() else "?"
    return f"{pg_url()}{sep}options=-csearch_path%3D{schema}"


def drop_pg_schema(schema: str) -> None:
    """Remove a test schema and everything in it."""
    import psycopg

    with psycopg.connect(pg_url(), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextlib.contextmanager
def make_store(kind: str, tmp: Path) -> Iterator[Store]:
    """An initialised, empty store of ``kind`` ("sqlite" or "postgresql")."""
    store: Store
    if kind == "sqlite":
        from realmpy.server.store_sqlite import SQLiteStore

        store = SQLiteStore(tmp)
        store.initialise(secret=secrets.token_bytes(32), salt=secrets.randbits(62))
        try:
            yield store
        finally:
            store.close()
        return
    from realmpy.server.store_postgres import PostgresStore

    schema = f"t_{secrets.token_hex(6)}"
    store = PostgresStore(pg_schema_url(schema))
    store.initialise(secret=secrets.token_bytes(32), salt=secrets.randbits(62))
    try:
        yield store
    finally:
        store.close()
        drop_pg_schema(schema)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def run_server(
    data: Path,
    *,
    database: str | None = None,
    config: Path | None = None,
    app_id: str = "default",
    port: int | None = None,
    timeout: float = 30.0,
    log_level: str = "warning",
    extra_args: Sequence[str] = (),
    tls: tuple[Path, Path, Path] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``realmpy-server`` as a subprocess; yield (base URL, process); stop it after.

    ``tls`` = (certificate, key, CA that signed it) serves HTTPS (``--tls-cert``).

    The child imports the same ``realmpy`` package as this process and runs in
    ``data``: started from a checkout's root, its working directory would
    otherwise put the uncompiled source tree first on ``sys.path``.
    """
    port = port or free_port()
    cmd = [
        sys.executable,
        "-m",
        "realmpy.server.cli",
        "--data",
        str(Path(data).resolve()),
        "--port",
        str(port),
        "--app-id",
        app_id,
        "--log-level",
        log_level,
        *extra_args,
    ]
    if database:
        cmd += ["--database", database]
    if config:
        cmd += ["--config", str(config)]
    context = None
    if tls is not None:
        cmd += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
        context = ssl.create_default_context(cafile=str(tls[2]))
    log = open(Path(data) / f"server-{port}.log", "ab")
    package_root = str(Path(realmpy.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [package_root, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    )
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=data, env=env)
    base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=1, context=context) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server did not become healthy in {timeout}s; see {log.name}")
            time.sleep(0.05)  # polling a subprocess's readiness: there is no event to wait on
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
