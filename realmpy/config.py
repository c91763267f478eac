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

import importlib
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from realmpy.errors import ConfigurationError
from realmpy.schema import Schema
from realmpy.valueclass import ValueClass

if TYPE_CHECKING:
    # Types only (the object layer never imports the sync client at run time).
    from realmpy.realm import Realm
    from realmpy.sync.app import User
    from realmpy.sync.configuration import ClientResetHandler, SyncErrorHandler

__all__ = [
    "Configuration",
    "default_should_compact",
    "in_memory_path",
    "model_tuple",
    "register_kind",
]

Kind = Literal["local", "in_memory", "flexible_sync", "disconnected_sync"]
Durability = Literal["full", "none"]
MigrationCallback = Callable[[Any, "Realm"], None]
CompactCallback = Callable[[int, int], bool]
InitialDataCallback = Callable[["Realm"], None]


def model_tuple(schema: object, kind: str = "local") -> tuple[type, ...]:
    """The model classes of a configuration, as a tuple.

    Why a check of its own: ``Configuration.local(Person)`` (a class where a
    list of classes belongs) would otherwise fail deep inside with "'type'
    object is not iterable", which does not say what to write instead."""
    wanted = f"Configuration.{kind}() takes a list of model classes"
    if isinstance(schema, type):
        name = schema.__name__
        raise ConfigurationError(f"{wanted}, not the class {name}: write {kind}([{name}])")
    if isinstance(schema, (str, bytes)) or schema is None:
        raise ConfigurationError(f"{wanted}, not {schema!r}")
    try:
        return tuple(schema)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigurationError(f"{wanted}, not {type(schema).__name__}") from None


def default_should_compact(total_bytes: int, used_bytes: int) -> bool:
    """The ``should_compact`` of synced configurations: compact a file over 1 MiB that is mostly free.

    A synced file's history and merge state grow while offline and are
    trimmed once the server acknowledges them, leaving free pages behind;
    the engine reuses them for later writes, but the file only shrinks by
    compaction, which needs every other process to have closed the file.
    So it is asked when a process opens the file alone and when the last
    process closes it (Realm's ``shouldCompactOnLaunch`` asks only on open).
    """
    return total_bytes > 1 << 20 and used_bytes * 2 < total_bytes


def in_memory_path(identifier: str) -> str:
    """Where an in-memory realm lives: a per-user file in shared memory.

    Processes naming the same identifier share it; the last one to close it
    deletes it, so it never outlives its users.
    """
    base = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in identifier)
    return os.path.join(base, f"realmpy-{os.getuid()}-{safe}.realm")


class Configuration(ValueClass, slots=False):
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

    default_storage_path: ClassVar[str] = os.path.abspath(
        os.environ.get("REALMPY_STORAGE_PATH") or os.getcwd()
    )
    """Where :meth:`local` puts ``default.realm`` when given no path (Realm's
    ``Configuration.defaultStoragePath``): ``$REALMPY_STORAGE_PATH`` or the current
    directory when realmpy was imported; assign it to move new default files."""

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
        path: str | os.PathLike[str] | None = None,
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
        """A file on disk, shared by any number of processes
        (``<default_storage_path>/default.realm`` when ``path`` is None).

        ``recover=True`` salvages a damaged file: it opens the newest intact
        version instead of raising :class:`~realmpy.errors.CorruptError`
        (see ``Environment``'s ``recover``)."""
        if path is None:
            path = os.path.join(cls.default_storage_path, "default.realm")
        if not isinstance(path, (str, os.PathLike)):
            raise ConfigurationError(f"path must be a str or PathLike, not {path!r}")
        models = model_tuple(schema, "local")
        return cls(
            models,
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

    # -- sync kinds: built by the sync layer, which registers its builders ------------

    @classmethod
    def flexible_sync(
        cls,
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
        """The main process's configuration: syncs the file with the server for ``user``.

        ``path=None`` puts the file under the app's base directory;
        ``should_compact`` defaults to :func:`default_should_compact` (pass
        None to never compact on open/close).
        """
        return _kind_builder("flexible_sync")(
            cls,
            user,
            schema,
            path=path,
            sync_error_handler=sync_error_handler,
            client_reset_handler=client_reset_handler,
            max_active_versions=max_active_versions,
            schema_version=schema_version,
            migration=migration,
            initial_data=initial_data,
            should_compact=should_compact,
            durability=durability,
        )

    @classmethod
    def disconnected_sync(
        cls,
        schema: Sequence[type],
        *,
        path: str | os.PathLike[str],
        max_active_versions: int | None = None,
        schema_version: int = 0,
        migration: MigrationCallback | None = None,
        should_compact: CompactCallback | Literal["default"] | None = "default",
        durability: Durability = "full",
    ) -> Configuration:
        """A secondary process's configuration: reads and writes the synced file at ``path``
        (required) without syncing; the main process uploads its changes."""
        return _kind_builder("disconnected_sync")(
            cls,
            schema,
            path=path,
            max_active_versions=max_active_versions,
            schema_version=schema_version,
            migration=migration,
            should_compact=should_compact,
            durability=durability,
        )

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
            model_tuple(schema, "in_memory"),
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


# ----------------------------------------------------------------------------
# Configuration kinds registered by the layers above
#
# The object layer must not import the sync client (layers import downwards
# only, docs/architecture.md), yet ``Configuration.flexible_sync`` is where a
# user looks for it.  So the sync layer registers its builders here when it is
# imported, and ``import realmpy`` must not load the sync client (a local realm
# does not need it): a kind nobody registered yet names the module that does,
# imported at its first use.

KindBuilder = Callable[..., "Configuration"]
_KIND_BUILDERS: dict[str, KindBuilder] = {}
_KIND_MODULES: dict[str, str] = {
    "flexible_sync": "realmpy.sync.configuration",
    "disconnected_sync": "realmpy.sync.configuration",
}


def register_kind(kind: str, builder: KindBuilder) -> None:
    """Make ``Configuration.<kind>(...)`` call ``builder(cls, ...)``."""
    _KIND_BUILDERS[kind] = builder


def _kind_builder(kind: str) -> KindBuilder:
    builder = _KIND_BUILDERS.get(kind)
    if builder is None and kind in _KIND_MODULES:
        importlib.import_module(_KIND_MODULES[kind])  # registers its builders
        builder = _KIND_BUILDERS.get(kind)
    if builder is None:
        raise ConfigurationError(
            f"no {kind} configurations: import realmpy.sync.configuration to register them"
        )
    return builder
