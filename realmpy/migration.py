"""Opening a realm's file: compaction on open, then bringing the stored schema
to the configured models' (creating the file, refusing an old key format or
an incompatible change, or migrating: re-laying out records, rebuilding
indexes, running the migration callback on an :class:`OldRealm`).

Records are positional in the stored schema's order, so the schema a realm
uses must be the one the file stores; :func:`open_file` retries when another
process stores one between this process's read and write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import realmpy.codec as codec
from realmpy.config import Configuration
from realmpy.errors import (
    ConfigurationError,
    KeyFormatError,
    MigrationRequiredError,
    SchemaError,
)
from realmpy.layout import (
    BACKLINKS_KEY,
    HISTORY_KEY,
    KEY_FORMAT_KEY,
    KEY_FORMAT_VALUE,
    META,
    OLD_PREFIX,
    SCHEMA_KEY,
    VERSION_KEY,
    index_name,
    table_name,
)
from realmpy.ondemand import on_first_use
from realmpy.schema import Schema, _Model
from realmpy.sharedfile import SharedFile, compact_file, wants_compaction
from realmpy.storage import Environment

if TYPE_CHECKING:
    import realmpy.backlinkindex as backlinkindex
    import realmpy.fulltextindex as fulltextindex
else:  # only a schema change needs them (realmpy.ondemand)
    backlinkindex = on_first_use("realmpy.backlinkindex", "backlinkindex", globals())
    fulltextindex = on_first_use("realmpy.fulltextindex", "fulltextindex", globals())

if TYPE_CHECKING:
    from collections.abc import Iterator

    from realmpy.dynamic import DynamicObject
    from realmpy.realm import Realm

__all__ = ["OldRealm", "compact_in_place", "open_file"]

_pack = codec.pack_row


class SchemaRaced(Exception):
    """Another process stored a schema while this realm was opening."""


def open_file(realm: Realm) -> None:
    """What ``Realm()`` does after acquiring the file: compact it if asked to
    and no other process has it open, then settle the schema."""
    config = realm._config
    if config.should_compact is not None and config.kind != "in_memory":
        with realm._shared.alone() as alone:
            if alone and wants_compaction(realm._env, config.should_compact):
                realm._env = compact_in_place(realm._shared, realm._config)
    # Records are positional in the stored schema's order, so the schema
    # this realm uses must be the one it stores: if another process
    # stored one between our read and our write, start again from it.
    for _attempt in range(100):
        try:
            open_schema(realm)
            return
        except SchemaRaced:
            continue
    raise ConfigurationError(f"{config.path}: the stored schema kept changing while opening")


def check_schema_unchanged(realm: Realm, raw_schema: bytes | None) -> None:
    """Inside the opening write: raise SchemaRaced if the stored schema
    is no longer the one read before it (the write then rolls back)."""
    if realm._require_write().get(META, SCHEMA_KEY) != raw_schema:
        raise SchemaRaced


def open_schema(realm: Realm) -> None:
    """One attempt at settling the schema: create the file, refuse it, or
    migrate it (raises SchemaRaced when another process stored one first)."""
    config = realm._config
    wanted = config.model_schema
    with realm._env.read() as snap:
        raw_schema = snap.get(META, SCHEMA_KEY)
        raw_version = snap.get(META, VERSION_KEY)
        raw_history = snap.get(META, HISTORY_KEY)
        raw_key_format = snap.get(META, KEY_FORMAT_KEY)
        raw_backlinks = snap.get(META, BACKLINKS_KEY)
    if raw_history is not None and raw_history.decode() != config.history:
        raise ConfigurationError(
            f"{config.path} has {raw_history.decode()} history but was opened "
            f"with a {config.kind} configuration ({config.history} history): "
            "open it with the configuration kind that created it"
        )
    if raw_schema is None:
        realm._set_schema(wanted)
        if config.read_only:
            raise ConfigurationError(
                f"{config.path} is not a realm yet and read_only=True cannot create it"
            )
        with realm.write():
            check_schema_unchanged(realm, None)
            store_schema(realm, wanted, config.schema_version)
            put_meta(realm, HISTORY_KEY, config.history.encode())
            if config.initial_data is not None:
                config.initial_data(realm)
        return
    if raw_key_format != KEY_FORMAT_VALUE:
        # Its keys would decode as other values (or not at all) and sort
        # in another order than this version's queries expect.
        if config.delete_if_migration_needed and not config.read_only:
            realm._set_schema(wanted)
            reset(realm, wanted)
            return
        found = (raw_key_format or b"1").decode(errors="replace")
        raise KeyFormatError(
            f"{config.path} stores keys in format {found} (written by an "
            f"older realmpy), this realmpy reads only format {codec.KEY_FORMAT} "
            "(variable-length int keys): copy the objects out with the realmpy "
            "that wrote the file and add them to a new one, or open it with "
            "delete_if_migration_needed=True to discard its data"
        )
    # The file names properties by their file names (map_to); compare,
    # merge and migrate under the models' names.
    stored = wanted.named_like(Schema.from_dict(codec.unpack_schema(raw_schema)))
    stored_version = int(raw_version or b"0")
    diff = wanted.diff(stored)
    merged = wanted.merged_with(stored)
    if config.schema_version < stored_version:
        raise MigrationRequiredError(
            f"{config.path} has schema_version {stored_version}, newer than the "
            f"configured {config.schema_version}: open it with the newer models"
        )
    if diff.breaking and config.schema_version == stored_version:
        if config.delete_if_migration_needed:
            realm._set_schema(merged)
            reset(realm, wanted)
            return
        raise MigrationRequiredError(
            "the models changed incompatibly with the file: "
            + "; ".join(diff.breaking)
            + f". Raise schema_version above {stored_version} (and pass a "
            "migration callback to convert data) or set "
            "delete_if_migration_needed=True"
        )
    realm._set_schema(merged)
    if diff.is_empty and config.schema_version == stored_version and raw_backlinks is not None:
        return
    if config.read_only:
        if raw_backlinks is None and diff.is_empty:
            # A file of an older realmpy: readers fall back to scanning.
            realm._backlinks_indexed = False
            return
        raise MigrationRequiredError(
            f"{config.path} needs a schema update ({'; '.join(diff.additive)}) "
            "but the realm is read-only"
        )
    with realm.write():
        check_schema_unchanged(realm, raw_schema)
        moved = relayout(realm, stored)
        rebuild_indexes(realm, stored, merged)
        store_schema(realm, merged, config.schema_version)
        if config.schema_version > stored_version and config.migration is not None:
            old = OldRealm(realm, stored, moved)
            config.migration(old, realm)
        realm._flush_links()
        txn = realm._require_write()
        if raw_backlinks is None or diff.breaking:
            # Built from the records once (an older file), and again after a
            # migration, which may have retargeted or removed link properties.
            backlinkindex.build(txn, merged)
            put_meta(realm, BACKLINKS_KEY, b"1")
        # Full-text tables of properties that gained the index (or all of
        # them after a migration, which may have rewritten the texts).
        fulltextindex.build(txn, merged, None if diff.breaking else gained_fulltext(stored, merged))
        for name in moved:
            txn.drop(OLD_PREFIX + name)


def reset(realm: Realm, schema: Schema) -> None:
    with realm.write():
        txn = realm._require_write()
        for name in txn.tables():
            txn.drop(name)
        realm._set_schema(schema)
        store_schema(realm, schema, realm._config.schema_version)
        put_meta(realm, HISTORY_KEY, realm._config.history.encode())
        if realm._config.initial_data is not None:
            realm._config.initial_data(realm)


def store_schema(realm: Realm, schema: Schema, version: int) -> None:
    """Store the schema of a file whose backlink tables match its records."""
    put_meta(realm, SCHEMA_KEY, codec.pack_record(schema.to_dict()))
    put_meta(realm, BACKLINKS_KEY, b"1")
    put_meta(realm, VERSION_KEY, str(version).encode())
    put_meta(realm, KEY_FORMAT_KEY, KEY_FORMAT_VALUE)


def put_meta(realm: Realm, key: bytes, value: bytes) -> None:
    realm._require_write().put(META, key, value)


def relayout(realm: Realm, stored: Schema) -> set[str]:
    """Rewrite the records of classes whose property order changed other
    than by appending (a property removed in a migration) in the current
    layout; returns those classes, whose old records are kept in
    ``_old:<Class>`` for the migration's old realm until it returns."""
    txn = realm._require_write()
    moved: set[str] = set()
    for info in realm._info.values():
        if info.schema.embedded or info.name not in stored:
            continue
        old_names = codec.record_names(stored[info.name])
        if info.names[: len(old_names)] == old_names:
            continue
        pairs = list(txn.scan(info.table))
        if not pairs:
            continue
        moved.add(info.name)
        txn.put_many(OLD_PREFIX + info.name, pairs)
        rows = []
        for key, raw in pairs:
            d = codec.record_to_dict(raw, old_names)
            row = [d.get(n, f) for n, f in zip(info.names, info.fill, strict=True)]
            rows.append((key, _pack(row)))
        txn.put_many(info.table, rows)
    return moved


def gained_fulltext(stored: Schema, new: Schema) -> set[tuple[str, str]]:
    """The (class, property) pairs full-text indexed in ``new`` but not in ``stored``."""
    out = set()
    for c in new.classes:
        old = stored[c.name] if c.name in stored else None
        for p in fulltextindex.fulltext_properties(c):
            was = old.get(p.name) if old is not None else None
            if was is None or not was.fulltext:
                out.add((c.name, p.name))
    return out


def rebuild_indexes(realm: Realm, stored: Schema, new: Schema) -> None:
    txn = realm._require_write()
    for c in new.classes:
        old = stored[c.name] if c.name in stored else None
        for p in c.properties:
            was = old.get(p.name) if old is not None else None
            had = was is not None and was.has_index
            if p.has_index and not had:
                info = realm._info[c.name]
                i = info.pos[p.name]
                for key, raw in txn.scan(table_name(c.name)):
                    value = info.decode(raw)[i]
                    pk = codec.decode_key(key)[0]
                    txn.put(index_name(c.name, p.file_name), codec.encode_keys(value, pk), b"")
            elif had and not p.has_index:
                txn.drop(index_name(c.name, p.file_name))


def compact_in_place(shared: SharedFile, config: Configuration) -> Environment:
    """Compact the file of ``shared`` (open in no other process) and reopen it."""
    compact_file(shared.env, config.path)
    shared.env = Environment(
        config.path,
        durability=config.durability,
        max_active_versions=config.max_active_versions,
    )
    return shared.env


class OldRealm:
    """What ``migration`` receives as the old realm: the records as the
    previous schema stored them, read-only, as :class:`~realmpy.dynamic.
    DynamicObject` s (attribute access that follows links, and dict access to
    the stored values for code written against the earlier dict records).

    ``old.all("Person")``, ``old.find("Person", pk)``; ``old.dynamic`` is
    the same object (Realm's ``oldRealm.dynamic.all(...)``).  Class names may
    also be given as model classes."""

    def __init__(self, realm: Realm, schema: Schema, moved: set[str] | None = None) -> None:
        self._realm = realm
        self.schema = schema
        self._moved = moved or set()

    @property
    def dynamic(self) -> OldRealm:
        return self

    def _where(self, class_name: str) -> tuple[str, tuple[str, ...]]:
        if class_name not in self.schema:
            raise SchemaError(
                f"the old schema has no class {class_name!r}; it has "
                f"{', '.join(self.schema.names())}"
            )
        names = codec.record_names(self.schema[class_name])
        if class_name in self._moved:  # rewritten in the new layout: the saved copy
            return OLD_PREFIX + class_name, names
        return table_name(class_name), names

    @staticmethod
    def _name(cls: str | type[_Model]) -> str:
        return cls if isinstance(cls, str) else cls.__realm_name__

    def _object(self, class_name: str, raw: bytes, names: tuple[str, ...]) -> DynamicObject:
        values = codec.record_to_dict(raw, names)
        from realmpy.dynamic import DynamicObject  # only a migration reads old objects

        return DynamicObject(values, class_name, self.schema, self._load)

    def _load(self, class_name: str, key: bytes) -> DynamicObject | None:
        """A link's target (``None`` if it is gone), for DynamicObject."""
        txn = self._realm._require_write()
        table, names = self._where(class_name)
        raw = txn.get(table, key)
        return None if raw is None else self._object(class_name, raw, names)

    def all(self, cls: str | type[_Model]) -> Iterator[DynamicObject]:
        """Each stored object of the class (by its old name)."""
        name = self._name(cls)
        txn = self._realm._require_write()
        table, names = self._where(name)
        for _k, v in txn.scan(table):
            yield self._object(name, v, names)

    def find(self, cls: str | type[_Model], primary_key: Any) -> DynamicObject | None:
        """The stored object with this primary key, or ``None``."""
        name = self._name(cls)
        return self._load(name, codec.encode_key(primary_key))
