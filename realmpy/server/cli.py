"""``realmpy-server`` (also ``python -m realmpy.server``): serve, or administer users and API keys.

    realmpy-server [serve] --data DIR --port N [--host 127.0.0.1] [--app-id ID]
                   [--config FILE] [--database postgresql://...]
                   [--tls-cert PEM --tls-key PEM] [--log-level info] [--log-format json|text]
    realmpy-server users list|add|disable|enable|delete|reset-password ...  (see admin.py)
    realmpy-server api-keys list|create|revoke ...
    realmpy-server --version

Why this module only parses and dispatches: it must work, and say what to
install, when the ``server`` extra is missing.  The serving code
(``serve``) and the admin commands (``admin``) import uvicorn, starlette,
psycopg, prometheus_client; they are imported only once chosen (the one
deliberate function-level import), and a missing dependency is reported as
one line naming ``pip install 'realmpy[server]'`` instead of a traceback.
Options both share (``--data``, ``--database``, ``--config``, ``--version``)
and the store they name live in ``options``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from realmpy.server.options import add_store_arguments, open_store, version_argument

__all__ = ["main", "open_store"]

SERVER_EXTRA = "pip install 'realmpy[server]'"
_SERVER_DEPS = frozenset(
    {"uvicorn", "starlette", "h11", "anyio", "prometheus_client", "psycopg", "tomli"}
)
_ADMIN_COMMANDS = ("users", "api-keys")


def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="realmpy-server",
        description="realmpy's self-hosted sync server (admin: realmpy-server users|api-keys -h)",
    )
    version_argument(p)
    add_store_arguments(p, data_required=True)
    p.add_argument("--port", type=int, required=True, help="TCP port (0 = any free port)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument(
        "--app-id", default=None, help="app id (default: from the config, else 'default')"
    )
    p.add_argument("--tls-cert", default=None, help="PEM certificate chain: serve HTTPS")
    p.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    p.add_argument(
        "--pool-size",
        type=int,
        default=None,
        help="database connections (default: [database] pool_size in the config, else 8)",
    )
    p.add_argument(
        "--http",
        choices=("auto", "h11"),
        default="auto",
        help="HTTP parser: auto (httptools when installed, else h11) or h11; both enforce the "
        "[limits] on heads and connections",
    )
    p.add_argument("--log-level", default="info")
    p.add_argument("--log-format", choices=("json", "text"), default="json")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run it; the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] and args[0] in _ADMIN_COMMANDS:
            from realmpy.server import admin

            return admin.main(args)
        if args[:1] == ["serve"]:
            args = args[1:]
        parsed = serve_parser().parse_args(args)
        if (parsed.tls_cert is None) != (parsed.tls_key is None):
            print("realmpy-server: --tls-cert and --tls-key go together", file=sys.stderr)
            return 2
        if parsed.pool_size is not None and parsed.pool_size < 2:
            print("realmpy-server: --pool-size must be at least 2", file=sys.stderr)
            return 2
        from realmpy.server import serve

        return serve.serve(parsed)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in _SERVER_DEPS:
            raise
        print(
            f"realmpy-server: the sync server needs the 'server' extra ({missing} is missing): "
            f"{SERVER_EXTRA}",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
