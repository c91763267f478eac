"""A realm file as the tools first see it: what it stores about itself.

Why: ``realmpy info``, ``dump``, ``query`` and Studio work on a file whose
models they have never seen.  The file stores its schema (``_meta/schema``,
docs/format.md), its schema version and its history kind; this module reads
them, and the object counts, with the storage layer alone (no object layer:
``realmpy info`` stays fast).  :mod:`realmpy.tools.filemodels` turns the
schema into model classes and opens the realm with them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from realmpy import codec
from realmpy.errors import SchemaError, StorageFileNotFoundError
from realmpy.layout import META, SCHEMA_KEY, VERSION_KEY, table_name
from realmpy.schema import Schema
from realmpy.storage import HISTORY_KEY, Environment

__all__ = ["StoredFile", "read_stored", "stored_env"]


@dataclass(frozen=True)
class StoredFile:
    """What the file says about itself, read in one snapshot."""

    path: str
    schema: Schema
    schema_version: int
    history: str  # "local" or "sync"
    version: int
    counts: dict[str, int]  # top-level class -> objects

    @property
    def synced(self) -> bool:
        return self.history == "sync"


def _open_env(path: str) -> Environment:
    if not os.path.exists(path):
        raise StorageFileNotFoundError(f"{path}: no such realm file")
    return Environment(path, read_only=True)


@contextmanager
def stored_env(path: str) -> Iterator[tuple[Environment, StoredFile]]:
    """The file opened read-only with the storage layer, and what it stores."""
    env = _open_env(path)
    try:
        with env.read() as snap:
            raw = snap.get(META, SCHEMA_KEY)
            if raw is None:
                raise SchemaError(f"{path} is a realmpy database but stores no realm schema")
            schema = Schema.from_dict(codec.unpack_record(raw))
            version = int(snap.get(META, VERSION_KEY) or b"0")
            history = (snap.get(META, HISTORY_KEY) or b"local").decode()
            counts = {
                c.name: snap.count(table_name(c.name)) for c in schema.classes if not c.embedded
            }
            stored = StoredFile(path, schema, version, history, snap.version, counts)
        yield env, stored
    finally:
        env.close()


def read_stored(path: str) -> StoredFile:
    with stored_env(path) as (_env, stored):
        return stored
