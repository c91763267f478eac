"""``realmpy-server users ...`` and ``realmpy-server api-keys ...``: administer the configured store.

    realmpy-server users list            --data DIR | --database URL  [--json]
    realmpy-server users add EMAIL       ...   (password: one line on stdin, or prompted)
    realmpy-server users disable USER    ...   (USER: an id or an email; logs them out everywhere)
    realmpy-server users enable USER     ...
    realmpy-server users delete USER     ...   (their sessions and API keys; their objects stay)
    realmpy-server users reset-password USER ...  (new password as for add; logs them out)
    realmpy-server api-keys list [--user USER] ... [--json]
    realmpy-server api-keys create USER NAME ...  (prints the key once)
    realmpy-server api-keys revoke KEY_ID ...

Why commands on the store rather than on the HTTP API: an operator who can
run the server can run these, on the same ``--data``/``--database`` (and
``--config``, for the password rules), and nothing new is exposed to the
network.  They work while the server runs: SQLite in WAL mode and
PostgreSQL both allow it, and every change takes effect on the server's
next request (sessions are checked on each).  Passwords are never taken
from the command line, where other users and shell histories see them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from realmpy.server.auth import AuthService
from realmpy.server.config import ConfigError, load_config
from realmpy.server.options import add_store_arguments, open_store, version_argument
from realmpy.server.store import Store, UserRow
from realmpy.sync.protocol import ProtocolError, RegisterRequest

__all__ = ["main"]


class AdminError(Exception):
    """A command that cannot be carried out; the message says why."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="realmpy-server", description=__doc__.split("\n")[0])
    version_argument(p)
    groups = p.add_subparsers(dest="group", required=True)

    def command(
        group: argparse._SubParsersAction[Any], name: str, help: str
    ) -> argparse.ArgumentParser:
        c: argparse.ArgumentParser = group.add_parser(name, help=help)
        add_store_arguments(c, data_required=False)
        return c

    users = groups.add_parser("users", help="list, add, disable, delete users; reset passwords")
    u = users.add_subparsers(dest="command", required=True)
    command(u, "list", "every user").add_argument("--json", action="store_true")
    command(u, "add", "add an email/password user").add_argument("email")
    for name, help in [
        ("disable", "refuse the user's logins and end their sessions"),
        ("enable", "allow a disabled user to log in again"),
        ("delete", "remove the user, their sessions and API keys"),
        ("reset-password", "set a new password and end their sessions"),
    ]:
        command(u, name, help).add_argument("user", help="user id or email")
    keys = groups.add_parser("api-keys", help="list, create, revoke API keys")
    k = keys.add_subparsers(dest="command", required=True)
    ls = command(k, "list", "API keys (of every user, or of --user)")
    ls.add_argument("--user", default=None)
    ls.add_argument("--json", action="store_true")
    create = command(k, "create", "a new API key for a user (shown once)")
    create.add_argument("user", help="user id or email")
    create.add_argument("name")
    command(k, "revoke", "delete an API key").add_argument("key_id")
    return p


def main(argv: Sequence[str]) -> int:
    """Run one admin command; the exit status."""
    args = _parser().parse_args(argv)
    if not args.data and not args.database:
        print("realmpy-server: give --data DIR or --database URL", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
        store = open_store(args.data, args.database, lock=False)
    except (ConfigError, OSError) as exc:
        print(f"realmpy-server: {exc}", file=sys.stderr)
        return 2
    try:
        with store.transaction(write=False) as tx:
            secret = tx.server_state()[2]
        auth = AuthService(store, config.auth, app_id=config.app_id, secret=secret)
        handler = _COMMANDS[(args.group, args.command)]
        handler(store, auth, args)
    except (AdminError, ProtocolError) as exc:
        print(f"realmpy-server: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


# --------------------------------------------------------------------------- helpers


def _find_user(store: Store, ref: str) -> UserRow:
    with store.transaction(write=False) as tx:
        user = tx.user_by_email(ref.lower()) if "@" in ref else tx.get_user(ref)
    if user is None:
        raise AdminError(f"no user {ref!r}")
    return user


def _read_password() -> str:
    """One line from stdin when it is not a terminal, else prompted twice."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("new password: ")
    if getpass.getpass("again: ") != first:
        raise AdminError("the passwords differ")
    return first


def _when(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _table(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    if not rows:
        print("(none)")
        return
    cols = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip())
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths)).rstrip())


# --------------------------------------------------------------------------- users


def _users_list(store: Store, auth: AuthService, args: argparse.Namespace) -> None:
    with store.transaction(write=False) as tx:
        users, disabled = tx.list_users(), tx.disabled_users()
    _table(
        [
            {
                "id": u.id,
                "provider": u.provider,
                "email": u.email or "",
                "created": _when(u.created_at),
                "status": "disabled" if u.id in disabled else "active",
            }
            for u in users
        ],
        args.json,
    )


def _users_add(store: Store, auth: AuthService, args: argparse.Namespace) -> None:
    msg = RegisterRequest.from_wire({"email": args.email, "password": _read_password()})
    print(auth.register(msg.email, msg.password))


def _set_disabled(disabled: bool) -> Callable[[Store, AuthService, argparse.Namespace], None]:
    def run(store: Store, auth: AuthService, args: argparse.Namespace) -> None:
        user = _find_user(store, args.user)
        with store.transaction(write=True) as tx:
            tx.set_disabled(user.id, disabled, int(auth.now()))
        print(f"{user.id} {'disabled' if disabled else 'enabled'}")

    return run


def _users_delete(store: Store, auth: AuthService, args: argparse.Namespace) -> None:
    user = _find_user(store, args.user)
    with store.transaction(write=True) as tx:
        tx.delete_user(user.id)
    print(f"{user.id} deleted")


def _users_reset_password(store: Store, auth: AuthService, args: argparse.Namespace) -> None:
    user = _find_user(store, args.user)
    if user.provider != "email_password":
        raise AdminError(f"{user.id} is a {user.provider} user: it has no password")
    auth.reset_password(user.id, _read_password())
    print(f"{user.id} has a new password; their sessions ended")


# --------------------------------------------------------------------------- API keys


def _keys_list(store: Store, auth: AuthService, args: argparse.Namespace) -> None:
    only = _find_user(store, args.user).id if args.user else None
    with store.transaction(write=False) as tx:
        keys = tx.all_api_keys()
    _table(
        [
            {"id": kid, "user": uid, "name": name, "created": _when(at)}
            for kid, uid, name, at in keys
            if only is None or uid == only
        ],
        args.json,
    )


def _keys_create(store: Store, auth: AuthService, args: argparse.Namespace) -> None:
    user = _find_user(store, args.user)
    key_id, key = auth.issue_api_key(user.id, args.name)
    print(f"id {key_id}\nkey {key}\n(the key is shown only now)")


def _keys_revoke(store: Store, auth: AuthService, args: argparse.Namespace) -> None:
    with store.transaction(write=True) as tx:
        if not tx.revoke_api_key(args.key_id):
            raise AdminError(f"no API key {args.key_id!r}")
    print(f"{args.key_id} revoked")


_COMMANDS: dict[tuple[str, str], Callable[[Store, AuthService, argparse.Namespace], None]] = {
    ("users", "list"): _users_list,
    ("users", "add"): _users_add,
    ("users", "disable"): _set_disabled(True),
    ("users", "enable"): _set_disabled(False),
    ("users", "delete"): _users_delete,
    ("users", "reset-password"): _users_reset_password,
    ("api-keys", "list"): _keys_list,
    ("api-keys", "create"): _keys_create,
    ("api-keys", "revoke"): _keys_revoke,
}
