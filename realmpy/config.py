"""Realm configurations: what file, which models, and how to open it.

Why one frozen class with named constructors: a configuration is a value
(it can be passed to another process, compared, reused), and each kind of
realm differs only in a few fields.  ``kind`` and ``history`` are the slots
the sync client fills later: ``Configuration.flexible_sync(...)`` and
``Configuration.disconnected_sync(...)`` will build the same class with
``kind="flexible_sync"``/``"disconnected_sync"`` and ``history="sync"``,
plus a ``sync`` payload; the realm stores ``history`` in the file so that a
local opener of a synced file (or the reverse) gets a clear error.

Callbacks:

- ``migration(old_realm, new_realm)`` runs inside the write transaction that
  upgrades the file when ``schema_version`` grew; ``old_realm`` reads the
  previous schema's records by class name as read-only
  :class:`~realmpy.dynamic.DynamicObject` s (``old_realm.all("Person")``,
  ``old_realm.find("Person", pk)``; attributes follow links, ``obj["name"]``
  gives the stored value), ``new_realm`` is the one being written.
- ``should_compact(total_bytes, used_bytes) -> bool`` is asked on open when
  no other process has the file open; other openers wait until it returned
  and the compaction it asked for is done.
- ``initial_data(realm)`` runs in a write transaction when the file is new.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from realmpy.errors import ConfigurationError
from realmpy.schema import Schema

if TYPE_CHECKING:
    from realmpy.realm import Realm

__all__ = ["Configuration", "in_memory_path"]

Kind = Literal["local", "in_memory", "flexible_sync", "disconnected_sync"]
Durability = Literal["full", "none"]
MigrationCallback = Callable[[Any, "Realm"], None]
CompactCallback = Callable[[int, int], bool]
InitialDataCallback = Callable[["Realm"], None]


def in_memory_path(identifier: str) -> str:
    """Where an in-memory realm lives: a per-user file in shared memory.

    Processes naming the same identifier share it; the last one to close it
    deletes it, so it never outlives its users.
    """
    base = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in identifier)
    return os.path.join(base, f"realmpy-{os.getuid()}-{safe}.realm")


@dataclasses.dataclass(frozen=True)
class Configuration:
    """How to open a realm; build one with :meth:`local` or :meth:`in_memory`."""

    schema: tuple[type, ...]
    path: str
    kind: Kind = "local"
    history: str = "local"
    schema_version: int = 0
    migration: MigrationCallback | None = None
    should_compact: CompactCallback | None = None
    initial_data: InitialDataCallback | None = None
    max_active_versions: int | None = None
    read_only: bool = False
    delete_if_migration_needed: bool = False
    durability: Durability = "full"
    identifier: str | None = None
    sync: Any = None
    """Sync payload (user, handlers, …) for the sync kinds; ``None`` here."""
    recover: bool = False
    """Open a damaged file at its newest intact version (``Environment(recover=True)``)."""

    def __post_init__(self) -> None:
        if isinstance(self.schema_version, bool) or not isinstance(self.schema_version, int):
            raise ConfigurationError("schema_version must be an int")
        if self.schema_version < 0:
            raise ConfigurationError("schema_version must be >= 0")
        if self.durability not in ("full", "none"):
            raise ConfigurationError(
                f"durability must be 'full' or 'none', not {self.durability!r}"
            )
        if self.max_active_versions is not None and (
            isinstance(self.max_active_versions, bool)
            or not isinstance(self.max_active_versions, int)
            or self.max_active_versions < 1
        ):
            raise ConfigurationError("max_active_versions must be a positive int or None")
        if self.read_only and (self.migration or self.initial_data):
            raise ConfigurationError(
                "a read-only realm cannot run migration or initial_data callbacks"
            )
        if not isinstance(self.recover, bool):
            raise ConfigurationError("recover must be a bool")
        if self.read_only and self.delete_if_migration_needed:
            raise ConfigurationError("read_only and delete_if_migration_needed exclude each other")
        for cb in ("migration", "should_compact", "initial_data"):
            value = getattr(self, cb)
            if value is not None and not callable(value):
                raise ConfigurationError(f"{cb} must be callable")
        Schema.from_models(self.schema)  # type: ignore[arg-type,unused-ignore]

    @property
    def model_schema(self) -> Schema:
        """The :class:`Schema` of the configured models."""
        return Schema.from_models(self.schema)  # type: ignore[arg-type,unused-ignore]

    @classmethod
    def local(
        cls,
        schema: Sequence[type],
        *,
        path: str | os.PathLike[str],
        schema_version: int = 0,
        migration: MigrationCallback | None = None,
        should_compact: CompactCallback | None = None,
        initial_data: InitialDataCallback | None = None,
        max_active_versions: int | None = None,
        read_only: bool = False,
        delete_if_migration_needed: bool = False,
        durability: Durability = "full",
        recover: bool = False,
    ) -> Configuration:
        """A file on disk, shared by any number of processes.

        ``recover=True`` salvages a damaged file: it opens the newest intact
        version instead of raising :class:`~realmpy.errors.CorruptError`
        (see ``Environment``'s ``recover``)."""
        if not isinstance(path, (str, os.PathLike)):
            raise ConfigurationError(f"path must be a str or PathLike, not {path!r}")
        return cls(
            tuple(schema),
            os.path.abspath(os.fspath(path)),
            "local",
            "local",
            schema_version,
            migration,
            should_compact,
            initial_data,
            max_active_versions,
            read_only,
            delete_if_migration_needed,
            durability,
            recover=recover,
        )

    # -- sync kinds (issue 5): built by realmpy.sync.configuration, imported lazily ------

    @classmethod
    def flexible_sync(cls, user: Any, schema: Sequence[type], **kwargs: Any) -> Configuration:
        """The main process's configuration: syncs the file with the server for ``user``.

        Keywords: ``path=None`` (default: under the app's base directory),
        ``sync_error_handler``, ``client_reset_handler``, ``max_active_versions``,
        ``schema_version``, ``migration``, ``initial_data``, ``durability``.
        """
        from realmpy.sync.configuration import flexible_sync

        return flexible_sync(cls, user, schema, **kwargs)

    @classmethod
    def disconnected_sync(cls, schema: Sequence[type], **kwargs: Any) -> Configuration:
        """A secondary process's configuration: reads and writes the synced file at ``path``
        (required) without syncing; the main process uploads its changes."""
        from realmpy.sync.configuration import disconnected_sync

        return disconnected_sync(cls, schema, **kwargs)

    @classmethod
    def in_memory(
        cls,
        schema: Sequence[type],
        *,
        identifier: str,
        schema_version: int = 0,
        migration: MigrationCallback | None = None,
        initial_data: InitialDataCallback | None = None,
        max_active_versions: int | None = None,
    ) -> Configuration:
        """A realm that lives while some process has it open.

        Processes that name the same ``identifier`` share it (it is a file in
        shared memory with durability ``"none"``); it is deleted when the
        last one closes it.
        """
        if not isinstance(identifier, str) or not identifier:
            raise ConfigurationError("in_memory needs a non-empty identifier")
        return cls(
            tuple(schema),
            in_memory_path(identifier),
            "in_memory",
            "local",
            schema_version,
            migration,
            None,
            initial_data,
            max_active_versions,
            False,
            False,
            "none",
            identifier,
        )
