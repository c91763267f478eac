"""A realm file as the tools see it: its stored schema, and models made from it.

Why: ``realmpy info``, ``dump``, ``query`` and Studio work on a file whose
models they have never seen.  The file stores its schema (``_meta/schema``,
docs/format.md), so the tools read it with the storage layer alone, write the
Python model classes that match it (:func:`model_source`, which is also what
``realmpy schema --python`` prints) and execute that source to get the
classes; the realm is then opened with them through the ordinary public API,
so queries, writes, validation, indexes and notifications are the library's
own.  Models made from the stored schema itself never ask for a migration.

The stored schema has no defaults (they live in the app's code): in the
generated models a scalar is required, an optional value defaults to
``None`` and a collection to an empty one.
"""

from __future__ import annotations

import itertools
import keyword
import os
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from realmpy import codec
from realmpy.config import Configuration
from realmpy.errors import ConfigurationError, SchemaError, StorageFileNotFoundError
from realmpy.layout import META, SCHEMA_KEY, VERSION_KEY, table_name
from realmpy.realm import Realm
from realmpy.schema import Object, ObjectSchema, Property, Schema
from realmpy.storage import HISTORY_KEY, Environment

__all__ = [
    "StoredFile",
    "model_classes",
    "model_source",
    "object_id",
    "open_realm",
    "read_stored",
]

# Property type names (Property.type) -> how a model annotates them.
ANNOTATIONS = {
    "bool": "bool",
    "int": "int",
    "float": "float",
    "str": "str",
    "bytes": "bytes",
    "datetime": "datetime",
    "decimal": "Decimal",
    "objectid": "ObjectId",
    "uuid": "UUID",
    "counter": "Counter",
}

# Names the generated module imports: a stored class with one of these
# names gets another Python name (and keeps its stored name via __realm_name__).
_IMPORTED = frozenset(
    {"datetime", "Decimal", "UUID", "Counter", "EmbeddedObject", "Object", "ObjectId", "field"}
)


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


# ----------------------------------------------------------------------------- models


def _python_names(schema: Schema) -> dict[str, str]:
    """Stored class name -> a Python identifier for its model class."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for c in schema.classes:
        name = c.name
        if not name.isidentifier() or keyword.iskeyword(name) or name in _IMPORTED:
            base = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
            name = f"Model_{base}"
        while name in taken:
            name += "_"
        taken.add(name)
        out[c.name] = name
    return out


def _annotation(prop: Property, names: dict[str, str]) -> str:
    base = names[prop.target] if prop.target is not None else ANNOTATIONS.get(prop.type)
    if base is None:
        raise SchemaError(f"{prop.name}: the stored type {prop.type!r} is unknown to this realmpy")
    if prop.optional:
        base += " | None"
    if prop.collection == "list":
        return f"list[{base}]"
    if prop.collection == "set":
        return f"set[{base}]"
    if prop.collection == "dict":
        return f"dict[str, {base}]"
    return base


def _default(prop: Property) -> str:
    opts = []
    if prop.primary_key:
        opts.append("primary_key=True")
    elif prop.indexed:
        opts.append("indexed=True")
    if prop.collection is not None:
        opts.append(f"default_factory={prop.collection}")
    elif prop.optional:
        opts.append("default=None")
    if not opts:
        return ""
    if opts == ["default=None"]:
        return " = None"
    return f" = field({', '.join(opts)})"


def model_source(schema: Schema, origin: str = "", schema_version: int = 0) -> str:
    """Python source of model classes whose schema is ``schema``, in its stored
    property order (records are positional in that order)."""
    names = _python_names(schema)
    used = {p.type for c in schema.classes for p in c.properties}
    head = [f'"""Models matching the schema stored in {origin or "a realm file"}']
    head.append(f"(schema_version {schema_version}; generated by `realmpy schema --python`).")
    head.append("")
    head.append("The file stores types, not defaults: scalars are required, optional")
    head.append('values default to None and collections to empty ones."""')
    lines = [*head, "", "from __future__ import annotations", ""]
    std = []
    if "datetime" in used:
        std.append("from datetime import datetime")
    if "decimal" in used:
        std.append("from decimal import Decimal")
    if "uuid" in used:
        std.append("from uuid import UUID")
    if std:
        lines += [*std, ""]
    lines.append("from realmpy import Counter, EmbeddedObject, Object, ObjectId, field")
    for c in schema.classes:
        lines += ["", ""]
        base = "EmbeddedObject" if c.embedded else "Object"
        lines.append(f"class {names[c.name]}({base}):")
        if names[c.name] != c.name:
            lines.append(f"    __realm_name__ = {c.name!r}")
        for p in c.properties:
            if not p.name.isidentifier() or keyword.iskeyword(p.name) or p.name.startswith("_"):
                raise SchemaError(
                    f"{c.name}.{p.name}: this property name cannot be a Python model attribute"
                )
            lines.append(f"    {p.name}: {_annotation(p, names)}{_default(p)}")
        if not c.properties:
            lines.append("    pass")
    lines.append("")
    return "\n".join(lines)


_modules = itertools.count(1)


def model_classes(schema: Schema, origin: str = "") -> dict[str, type[Any]]:
    """Stored class name -> a model class made by executing :func:`model_source`."""
    name = f"realmpy.tools._stored_models_{next(_modules)}"
    module = types.ModuleType(name)
    sys.modules[name] = module  # the schema builder resolves forward references through it
    code = compile(model_source(schema, origin), f"<models of {origin or 'a realm'}>", "exec")
    exec(code, module.__dict__)  # our own generated source, nothing read from the file runs
    by_py = _python_names(schema)
    classes: dict[str, type[Any]] = {c: getattr(module, py) for c, py in by_py.items()}
    return classes


@dataclass
class OpenedRealm:
    realm: Realm
    stored: StoredFile
    models: dict[str, type[Any]]

    def model(self, class_name: str) -> type[Any]:
        cls = self.models.get(class_name)
        if cls is None or class_name not in self.stored.counts:
            names = ", ".join(self.stored.counts) or "none"
            raise ConfigurationError(
                f"{self.stored.path} has no class {class_name!r} (its classes: {names})"
            )
        return cls

    def object_schema(self, class_name: str) -> ObjectSchema:
        return self.stored.schema[class_name]

    def close(self) -> None:
        self.realm.close()


def realm_configuration(
    path: str, stored: StoredFile, models: dict[str, type[Any]], read_only: bool
) -> Configuration:
    classes = list(models.values())
    if stored.synced:
        # A secondary of the synced file: it reads and writes without syncing,
        # and its writes are uploaded by the file's agent like any other.
        return Configuration.disconnected_sync(
            classes, path=path, schema_version=stored.schema_version, should_compact=None
        )
    return Configuration.local(
        classes, path=path, schema_version=stored.schema_version, read_only=read_only
    )


def open_realm(path: str, read_only: bool = True) -> OpenedRealm:
    """Open the realm at ``path`` with models made from its stored schema."""
    path = os.path.abspath(path)
    stored = read_stored(path)
    models = model_classes(stored.schema, path)
    realm = Realm(realm_configuration(path, stored, models, read_only))
    return OpenedRealm(realm, stored, models)


def object_id(obj: Object) -> Any:
    """The stored key of a managed object, decoded: its primary key, or for a
    class without one the sequence number the realm gave it (the model layer
    exposes no public name for it; Studio shows it as ``#n``)."""
    return codec.decode_key(obj._rp_key)[0]
