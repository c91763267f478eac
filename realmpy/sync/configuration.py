"""``Configuration.flexible_sync`` / ``Configuration.disconnected_sync`` and the hooks a synced realm calls.

Why the object layer talks to sync through a payload object: ``realmpy.config``
and ``realmpy.realm`` must not import ``realmpy.sync`` (layers import
downwards only).  A synced configuration therefore carries, in its ``sync``
field, an options object with duck-typed hooks that ``Realm`` calls:

``on_open(realm)`` / ``on_close(realm)``
    a ``flexible_sync`` realm joins (and leaves) the process's sync client
    for its file — the agent, or a standby waiting to take over;
``sync_session(realm)`` / ``subscriptions(realm)``
    what ``realm.sync_session`` and ``realm.subscriptions`` return.

Recording is not a hook of the realm: both kinds store ``history = "sync"``
in the file, and every storage write transaction on such a file calls the
history recorder that :mod:`realmpy.sync.history` registers with
:func:`realmpy.storage.register_history` (invariant 7 covers secondary
processes and plain ``Environment.write()`` too; importing this module
registers it).  The stored kind also means that a ``local`` opener of
a synced file (or the reverse) gets the object layer's clear error, while
``flexible_sync`` and ``disconnected_sync`` may open the same file in one
process or many (Realm refuses the mix in one process).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from realmpy.config import register_kind
from realmpy.sync import history as _history  # noqa: F401  (registers the "sync" recorder)
from realmpy.sync.client_reset import ClientResetMode
from realmpy.sync.errors import SyncConfigurationError, SyncError

if TYPE_CHECKING:
    from realmpy.config import (
        CompactCallback,
        Configuration,
        Durability,
        InitialDataCallback,
        MigrationCallback,
    )
    from realmpy.realm import Realm
    from realmpy.sync.agent import SyncClient
    from realmpy.sync.app import App, User
    from realmpy.sync.session import SyncSession
    from realmpy.sync.subscriptions import SubscriptionSet

__all__ = [
    "ClientResetHandler",
    "ClientResetMode",
    "DiscardUnsyncedChangesHandler",
    "DisconnectedSyncOptions",
    "FlexibleSyncOptions",
    "ManualRecoveryHandler",
    "RecoverOrDiscardUnsyncedChangesHandler",
    "RecoverUnsyncedChangesHandler",
    "disconnected_sync",
    "flexible_sync",
]

SyncErrorHandler = Callable[["SyncSession | None", SyncError], None]


@dataclass(frozen=True)
class ClientResetHandler:
    """A client reset mode and its callbacks (``on_before_reset(session)``, ``on_after_reset(session)``,
    ``on_manual_reset(session, ClientResetError)`` for ``manual``)."""

    mode: ClientResetMode = ClientResetMode.RECOVER_OR_DISCARD
    on_before_reset: Callable[..., None] | None = None
    on_after_reset: Callable[..., None] | None = None
    on_manual_reset: Callable[..., None] | None = None


def DiscardUnsyncedChangesHandler(
    on_before_reset: Callable[..., None] | None = None,
    on_after_reset: Callable[..., None] | None = None,
) -> ClientResetHandler:
    """Drop local changes the server never acknowledged; take the server's state."""
    return ClientResetHandler(ClientResetMode.DISCARD_UNSYNCED, on_before_reset, on_after_reset)


def RecoverUnsyncedChangesHandler(
    on_before_reset: Callable[..., None] | None = None,
    on_after_reset: Callable[..., None] | None = None,
) -> ClientResetHandler:
    """Re-apply unacknowledged local changes on top of the server's state."""
    return ClientResetHandler(ClientResetMode.RECOVER_UNSYNCED, on_before_reset, on_after_reset)


def RecoverOrDiscardUnsyncedChangesHandler(
    on_before_reset: Callable[..., None] | None = None,
    on_after_reset: Callable[..., None] | None = None,
) -> ClientResetHandler:
    """Recover if possible, else discard (the default)."""
    return ClientResetHandler(ClientResetMode.RECOVER_OR_DISCARD, on_before_reset, on_after_reset)


def ManualRecoveryHandler(on_manual_reset: Callable[..., None]) -> ClientResetHandler:
    """Stop syncing and call ``on_manual_reset(session, error)``; the app decides."""
    return ClientResetHandler(ClientResetMode.MANUAL, on_manual_reset=on_manual_reset)


def _reset_handler(value: ClientResetHandler | str | None) -> ClientResetHandler:
    if value is None:
        return ClientResetHandler()
    if isinstance(value, ClientResetHandler):
        return value
    try:
        mode = ClientResetMode(value)
    except ValueError:
        raise SyncConfigurationError(
            f"client_reset_handler must be a ClientResetHandler or one of {[m.value for m in ClientResetMode]}, "
            f"not {value!r}"
        ) from None
    if mode is ClientResetMode.MANUAL:
        raise SyncConfigurationError(
            "the manual mode needs a callback: use ManualRecoveryHandler(on_manual_reset)"
        )
    return ClientResetHandler(mode)


class _SyncHistory:
    """Hooks shared by both synced kinds: record every write's changeset."""

    kind = "disconnected_sync"

    def on_open(self, realm: Realm) -> None:
        pass

    def on_close(self, realm: Realm) -> None:
        pass

    def sync_session(self, realm: Realm) -> SyncSession | None:
        return None

    def subscriptions(self, realm: Realm) -> SubscriptionSet:
        from realmpy.sync.subscriptions import SubscriptionSet

        return SubscriptionSet(realm)


@dataclass(eq=False)
class DisconnectedSyncOptions(_SyncHistory):
    """The ``sync`` payload of a ``disconnected_sync`` configuration: history, no user, and a
    read-only session view of the file's agent (``status.AgentView``)."""

    _views: dict[int, SyncSession] = field(default_factory=dict)

    def on_close(self, realm: Realm) -> None:
        view = self._views.pop(id(realm), None)
        if view is not None:
            view._close()

    def sync_session(self, realm: Realm) -> SyncSession | None:
        from realmpy.sync.session import SyncSession
        from realmpy.sync.status import AgentView

        view = self._views.get(id(realm))
        if view is None:
            view = self._views[id(realm)] = SyncSession(AgentView(realm._env, realm.config.path))
        return view


@dataclass(eq=False)
class FlexibleSyncOptions(_SyncHistory):
    """The ``sync`` payload of a ``flexible_sync`` configuration."""

    user: User
    sync_error_handler: SyncErrorHandler | None = None
    client_reset_handler: ClientResetHandler = field(default_factory=ClientResetHandler)
    _clients: dict[int, SyncClient] = field(default_factory=dict)
    kind = "flexible_sync"

    @property
    def app(self) -> App:
        return self.user.app

    def on_open(self, realm: Realm) -> None:
        from realmpy.sync.agent import SyncClient
        from realmpy.sync.session import SyncSession

        if not self.user.is_logged_in:
            raise SyncConfigurationError(
                f"user {self.user.id} is logged out: log in before opening a synced realm",
                code="logged_out",
            )
        client = SyncClient.acquire(realm.config, self)
        if not client.sessions:
            client.sessions.append(SyncSession(client))
        self._clients[id(realm)] = client

    def on_close(self, realm: Realm) -> None:
        client = self._clients.pop(id(realm), None)
        if client is not None:
            client.release()

    def sync_session(self, realm: Realm) -> SyncSession | None:
        client = self._clients.get(id(realm))
        return client.sessions[0] if client is not None and client.sessions else None


def _compact_rule(
    value: CompactCallback | Literal["default"] | None,
) -> CompactCallback | None:
    from realmpy.config import default_should_compact

    return default_should_compact if value == "default" else value


def flexible_sync(
    cls: type[Configuration],
    user: User,
    schema: Sequence[type],
    *,
    path: str | os.PathLike[str] | None = None,
    sync_error_handler: SyncErrorHandler | None = None,
    client_reset_handler: ClientResetHandler | str | None = None,
    max_active_versions: int | None = None,
    schema_version: int = 0,
    migration: MigrationCallback | None = None,
    initial_data: InitialDataCallback | None = None,
    should_compact: CompactCallback | Literal["default"] | None = "default",
    durability: Durability = "full",
) -> Configuration:
    """The configuration of the main process: syncs the file (or stands by to) for ``user``."""
    from realmpy.config import Configuration as _C
    from realmpy.config import model_tuple
    from realmpy.sync.app import User as _User
    from realmpy.sync.wirevalues import check_syncable

    if not isinstance(user, _User):
        raise SyncConfigurationError(
            f"flexible_sync needs a logged-in User (app.log_in(...)), not {type(user).__name__}"
        )
    if sync_error_handler is not None and not callable(sync_error_handler):
        raise SyncConfigurationError("sync_error_handler must be callable(session, error)")
    full = (
        os.path.abspath(os.fspath(path)) if path is not None else user.app.default_realm_path(user)
    )
    config = _C(
        model_tuple(schema, "flexible_sync"),
        full,
        kind="flexible_sync",
        history="sync",
        schema_version=schema_version,
        migration=migration,
        initial_data=initial_data,
        should_compact=_compact_rule(should_compact),
        max_active_versions=max_active_versions,
        durability=durability,
        sync=FlexibleSyncOptions(user, sync_error_handler, _reset_handler(client_reset_handler)),
    )
    check_syncable(config.model_schema)
    assert isinstance(config, cls)
    return config


def disconnected_sync(
    cls: type[Configuration],
    schema: Sequence[type],
    *,
    path: str | os.PathLike[str],
    max_active_versions: int | None = None,
    schema_version: int = 0,
    migration: MigrationCallback | None = None,
    should_compact: CompactCallback | Literal["default"] | None = "default",
    durability: Durability = "full",
) -> Configuration:
    """The configuration of a secondary process: reads and writes the synced file; the main process syncs it."""
    from realmpy.config import Configuration as _C
    from realmpy.config import model_tuple
    from realmpy.sync.wirevalues import check_syncable

    if path is None or not isinstance(path, (str, os.PathLike)):
        raise SyncConfigurationError(
            "disconnected_sync needs the path of the main process's synced file"
        )
    config = _C(
        model_tuple(schema, "disconnected_sync"),
        os.path.abspath(os.fspath(path)),
        kind="disconnected_sync",
        history="sync",
        schema_version=schema_version,
        migration=migration,
        should_compact=_compact_rule(should_compact),
        max_active_versions=max_active_versions,
        durability=durability,
        sync=DisconnectedSyncOptions(),
    )
    check_syncable(config.model_schema)
    assert isinstance(config, cls)
    return config


register_kind("flexible_sync", flexible_sync)
register_kind("disconnected_sync", disconnected_sync)
