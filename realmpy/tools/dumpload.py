"""``realmpy dump`` and ``realmpy load``: every object as JSON, and back.

The dump (docs/tools.md) starts with a header holding the stored schema, so
``load`` rebuilds the realm without the app's models; then one JSON object
per realm object, in each class's key order, in the encoding of
:mod:`realmpy.tools.jsonformat`, with ``"$class"`` and, for a class without a
primary key, ``"$id"``: its ordinal in that class (1, 2, ...), which links to
it use.  Ordinals, not the realm's internal sequence numbers: ``load`` adds
the objects in order into an empty realm, which numbers them 1, 2, ... again,
so ``dump`` -> ``load`` -> ``dump`` gives the same bytes even when the
original had deleted objects in between.

``load`` adds the objects in two passes, so links may point forwards and form
cycles: first every object with its values but without links (nor embedded
values that hold links), a write transaction per :data:`BATCH` objects; then
those links, resolved by primary key or ordinal.  Only the link values are
kept in memory between the passes, so a dump is read as a stream.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from typing import Any, Final, TextIO

from realmpy.errors import CodecError, ConfigurationError
from realmpy.realm import Realm
from realmpy.schema import ObjectSchema, Property, Schema
from realmpy.tools import jsonformat as J
from realmpy.tools.filemodels import OpenedRealm, model_classes, realm_configuration
from realmpy.tools.storedfile import StoredFile, read_stored

__all__ = [
    "BATCH",
    "DUMP_FORMAT",
    "dump",
    "encode_object",
    "json_line",
    "load",
    "write_csv",
]

DUMP_FORMAT: Final = 1
"""Version of the dump layout (the header's ``"realmpy_dump"``)."""

BATCH: Final = 10_000
"""Objects per write transaction while loading."""


class DumpLinks:
    """How a dump names link targets: primary key, or ordinal for a class without one."""

    def __init__(self, opened: OpenedRealm) -> None:
        self._opened = opened
        self._ordinals: dict[str, dict[bytes, int]] = {}

    def ordinals(self, class_name: str) -> dict[bytes, int]:
        table = self._ordinals.get(class_name)
        if table is None:
            cls = self._opened.models[class_name]
            table = {o._rp_key: i for i, o in enumerate(self._opened.realm.all(cls), 1)}
            self._ordinals[class_name] = table
        return table

    def __call__(self, class_name: str, target: Any) -> Any:
        oschema = self._opened.stored.schema[class_name]
        pk = oschema.primary_key
        if pk is not None:
            return J.encode_scalar(oschema.property(pk).type, getattr(target, pk))
        return self.ordinals(class_name)[target._rp_key]


def encode_object(schema: Schema, oschema: ObjectSchema, obj: Any, links: Any) -> dict[str, Any]:
    return {
        p.name: J.encode_property(schema, p, getattr(obj, p.name), links)
        for p in oschema.properties
    }


def iter_objects(
    opened: OpenedRealm, classes: Iterable[str], links: DumpLinks
) -> Iterator[dict[str, Any]]:
    """Each object of ``classes`` as a dump line (``$class``, ``$id``, values)."""
    schema = opened.stored.schema
    for name in classes:
        oschema = schema[name]
        cls = opened.model(name)
        keyless = oschema.primary_key is None
        for i, obj in enumerate(opened.realm.all(cls), 1):
            head: dict[str, Any] = {"$class": name}
            if keyless:
                head["$id"] = i
            head.update(encode_object(schema, oschema, obj, links))
            yield head


def header(opened: OpenedRealm) -> dict[str, Any]:
    stored = opened.stored
    return {
        "realmpy_dump": DUMP_FORMAT,
        "schema_version": stored.schema_version,
        "history": stored.history,
        "schema": stored.schema.to_dict(),
    }


def json_line(value: Any) -> str:
    """One value as compact JSON text (a line of a dump, of ``query``'s output)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dump(opened: OpenedRealm, out: TextIO, fmt: str, classes: list[str]) -> int:
    """Write the objects of ``classes`` to ``out``; returns how many."""
    links = DumpLinks(opened)
    count = 0
    if fmt == "csv":
        (name,) = classes
        return dump_csv(opened, name, out, links)
    if fmt == "jsonl":
        out.write(json_line(header(opened)) + "\n")
        for line in iter_objects(opened, classes, links):
            out.write(json_line(line) + "\n")
            count += 1
        return count
    # json: one document, still written as it goes
    head = json_line(header(opened))
    out.write(head[:-1] + ',"objects":[')
    for line in iter_objects(opened, classes, links):
        out.write(("\n" if count == 0 else ",\n") + json_line(line))
        count += 1
    out.write("\n]}\n")
    return count


def csv_cell(prop: Property, value: Any) -> str:
    """One CSV cell: plain text for scalars JSON writes as themselves, else the JSON."""
    if value is None:
        return ""
    if prop.type == "mixed":  # "5" and 5 differ: the JSON says which
        return json_line(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return json_line(value)


def write_csv(out: TextIO, oschema: ObjectSchema, lines: Iterable[dict[str, Any]]) -> int:
    """Objects of one class (encoded as dump lines) as CSV; a ``$id`` column
    first if the lines have one.  Returns how many."""
    props = oschema.properties
    writer = csv.writer(out, lineterminator="\n")
    count = 0
    for line in lines:
        with_id = "$id" in line
        if count == 0:
            writer.writerow((["$id"] if with_id else []) + [p.name for p in props])
        row = [str(line["$id"])] if with_id else []
        writer.writerow(row + [csv_cell(p, line[p.name]) for p in props])
        count += 1
    if count == 0:
        writer.writerow([p.name for p in props])
    return count


def dump_csv(opened: OpenedRealm, name: str, out: TextIO, links: DumpLinks) -> int:
    oschema = opened.stored.schema[name]
    return write_csv(out, oschema, iter_objects(opened, [name], links))


# ----------------------------------------------------------------------------- load


def holds_links(schema: Schema, prop: Property, seen: frozenset[str] = frozenset()) -> bool:
    """Does a value of ``prop`` contain links (itself, or inside embedded objects)?"""
    if prop.type in ("link", "mixed"):  # a mixed value may link
        return True
    if prop.type != "embedded" or prop.target is None or prop.target in seen:
        return False
    inner = schema[prop.target]
    return any(holds_links(schema, p, seen | {prop.target}) for p in inner.properties)


def _empty(prop: Property) -> Any:
    return {"list": list, "set": set, "dict": dict}.get(prop.collection or "", lambda: None)()


class Loader:
    """Adds dumped objects to a realm opened with models made from the dump's schema."""

    def __init__(self, realm: Realm, schema: Schema, models: dict[str, type[Any]]) -> None:
        self.realm = realm
        self.schema = schema
        self.models = models
        self.linked = {
            c.name: {p.name for p in c.properties if holds_links(schema, p)} for c in schema.classes
        }
        self.by_ordinal: dict[str, dict[int, Any]] = {}
        self.deferred: list[tuple[str, Any, str, Any]] = []  # class, id, property, JSON
        self.count = 0

    def _embedded(self, class_name: str, values: dict[str, Any]) -> Any:
        return self.models[class_name](**values)

    def _no_links(self, class_name: str, ident: Any) -> Any:
        raise AssertionError("links are set in the second pass")  # pragma: no cover

    def build(self, line: Any) -> tuple[str, Any, Any]:
        """(class, id, unmanaged object without its links) from one dump line."""
        if not isinstance(line, dict) or not isinstance(line.get("$class"), str):
            raise CodecError('a dumped object needs "$class": the class name')
        name = line["$class"]
        if name not in self.schema or self.schema[name].embedded:
            raise CodecError(f"the dump's schema has no top-level class {name!r}")
        oschema = self.schema[name]
        pk = oschema.primary_key
        values: dict[str, Any] = {}
        for key, raw in line.items():
            if key.startswith("$"):
                continue
            prop = oschema.get(key)
            if prop is None:
                raise CodecError(f"{name} has no property {key!r}")
            if key in self.linked[name]:
                values[key] = _empty(prop)
            else:
                values[key] = J.decode_property(
                    self.schema, name, prop, raw, self._no_links, self._embedded
                )
        if pk is not None:
            ident: Any = values.get(pk)
        else:
            ident = line.get("$id")
            if isinstance(ident, bool) or not isinstance(ident, int):
                raise CodecError(f'a {name} has no primary key, so it needs "$id": its ordinal')
        for key in self.linked[name]:
            if line.get(key) not in (None, [], {"$set": []}, {"$dict": {}}):
                self.deferred.append((name, ident, key, line[key]))
        return name, ident, self.models[name](**values)

    def add(self, lines: Iterable[Any]) -> None:
        """First pass: add the objects, a write transaction per BATCH."""
        batch: list[tuple[str, Any, Any]] = []
        for line in lines:
            batch.append(self.build(line))
            if len(batch) >= BATCH:
                self._commit(batch)
                batch = []
        self._commit(batch)

    def _commit(self, batch: list[tuple[str, Any, Any]]) -> None:
        if not batch:
            return
        with self.realm.write():
            self.realm.add_all([obj for _n, _i, obj in batch])
        for name, ident, obj in batch:
            if self.schema[name].primary_key is None:
                self.by_ordinal.setdefault(name, {})[ident] = obj
        self.count += len(batch)

    def lookup(self, class_name: str, ident: Any) -> Any:
        """The loaded object of ``class_name`` with primary key (or ordinal) ``ident``."""
        if self.schema[class_name].primary_key is None:
            obj = self.by_ordinal.get(class_name, {}).get(ident)
        else:
            obj = self.realm.find(self.models[class_name], ident)
        if obj is None:
            raise CodecError(f"a link to {class_name} {ident!r}, which the dump does not hold")
        return obj

    def target(self, class_name: str, ident: Any) -> Any:
        """A link's target from its JSON id."""
        if class_name not in self.schema:  # a mixed value's link names its class
            raise CodecError(f"a link to {class_name!r}, which is not a class of the dump")
        oschema = self.schema[class_name]
        pk = oschema.primary_key
        if pk is not None:
            ident = J.decode_scalar(oschema.property(pk).type, ident, f"a link to {class_name}")
        return self.lookup(class_name, ident)

    def link(self) -> None:
        """Second pass: set the deferred link values."""
        for start in range(0, len(self.deferred), BATCH):
            with self.realm.write():
                for name, ident, key, raw in self.deferred[start : start + BATCH]:
                    prop = self.schema[name].property(key)
                    value = J.decode_property(
                        self.schema, name, prop, raw, self.target, self._embedded
                    )
                    setattr(self.lookup(name, ident), key, value)


def read_lines(stream: TextIO, fmt: str) -> tuple[dict[str, Any], Iterator[Any]]:
    """(header, objects) of a dump."""
    if fmt == "json":
        doc = json.load(stream)
        if not isinstance(doc, dict) or not isinstance(doc.get("objects"), list):
            raise CodecError('a JSON dump is an object with "schema" and "objects"')
        return doc, iter(doc.pop("objects"))
    first = stream.readline()
    if not first:
        raise CodecError("the dump is empty (its first line is the header)")
    head = json.loads(first)

    def rest() -> Iterator[Any]:
        for n, text in enumerate(stream, 2):
            if text.strip():
                try:
                    yield json.loads(text)
                except ValueError as exc:
                    raise CodecError(f"line {n}: not JSON ({exc})") from None

    return head, rest()


def load(path: str, stream: TextIO, fmt: str) -> int:
    """Load a dump into the new or empty realm at ``path``; returns the objects added."""
    head, lines = read_lines(stream, fmt)
    if not isinstance(head, dict) or head.get("realmpy_dump") != DUMP_FORMAT:
        raise CodecError(
            f'not a realmpy dump: its header needs "realmpy_dump": {DUMP_FORMAT} '
            "(written by `realmpy dump`)"
        )
    schema = Schema.from_dict(head["schema"])
    version = int(head.get("schema_version", 0))
    try:
        existing = read_stored(path)
    except (FileNotFoundError, ConfigurationError):
        existing = None
    if existing is not None and any(existing.counts.values()):
        held = sum(existing.counts.values())
        raise ConfigurationError(
            f"{path} already holds {held} objects: load into a new or empty realm"
        )
    models = model_classes(schema, path)
    target = StoredFile(path, schema, version, "local", 0, {})
    realm = Realm(realm_configuration(path, target, models, read_only=False))
    try:
        loader = Loader(realm, schema, models)
        loader.add(lines)
        loader.link()
        return loader.count
    finally:
        realm.close()
