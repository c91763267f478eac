"""The backlink index: which objects link to an object, without a scan.

Every link property of a top-level class (to-one, list, set or dictionary
of links) has a table ``b:<Class>:<prop>`` (:func:`~realmpy.layout.
backlink_name`) holding one empty-valued entry per (target, origin) pair:
the target's primary-key bytes followed by the origin's.  Since both are
self-delimiting encoded keys, the objects linking to a target through one
property are one prefix scan.  Entries are written in the same write
transaction as the records (:func:`update`, called wherever a record of a
class with links changes: ``Realm._add``, property and collection writes,
deletions, the clearing of links to deleted objects, and the sync client's
``apply_record``).

Readers treat an entry as a candidate and check the origin's record, so
an entry left behind (a property removed or retargeted by a migration)
can never make a wrong answer, only a wasted read.  Links held inside
embedded objects are not indexed: clearing links to a deleted object
still scans the classes that can reach it through embedded objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import realmpy.codec as codec
from realmpy.errors import CodecError
from realmpy.layout import BACKLINK_PREFIX, backlink_name, table_name
from realmpy.schema import ObjectSchema, Property, Schema
from realmpy.storage import Snapshot, WriteTransaction

if TYPE_CHECKING:
    from realmpy.classinfo import ClassInfo

__all__ = ["build", "link_properties", "linked_from", "origins", "targets", "update"]


def link_properties(cls: ObjectSchema) -> tuple[Property, ...]:
    """The indexed link properties of ``cls`` (none for an embedded class)."""
    if cls.embedded:
        return ()
    return tuple(p for p in cls.properties if p.type == "link")


def linked_from(schema: Schema, target: str) -> list[tuple[ObjectSchema, Property]]:
    """The (class, link property) pairs that can link to class ``target``."""
    return [(c, p) for c in schema.classes for p in link_properties(c) if p.target == target]


def targets(prop: Property, value: Any) -> set[bytes]:
    """The target keys a stored value of link property ``prop`` holds."""
    if value is None:
        return set()
    if prop.collection is None:
        return {bytes(value)}
    items = value.values() if prop.collection == "dict" else value
    return {bytes(x) for x in items if x is not None}


def update(
    txn: WriteTransaction,
    cls: ObjectSchema,
    links: Iterable[Property],
    key: bytes,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
) -> None:
    """Bring the entries of object ``key`` of ``cls`` from its ``old``
    record (None: it did not exist) to its ``new`` one (None: deleted).
    Records are mappings by property name; ``links`` are
    :func:`link_properties` of ``cls``."""
    for p in links:
        before = targets(p, old.get(p.name)) if old is not None else set()
        after = targets(p, new.get(p.name)) if new is not None else set()
        if before == after:
            continue
        table = backlink_name(cls.name, p.file_name)
        for t in before - after:
            txn.delete(table, t + key)
        for t in after - before:
            entry = t + key
            if len(entry) > codec.MAX_KEY:
                raise CodecError(
                    f"{cls.name}.{p.name}: backlink entry of {len(entry)} bytes, over the "
                    f"{codec.MAX_KEY}-byte key limit (the two objects' primary keys are too long)"
                )
            txn.put(table, entry, b"")


def origins(
    txn: Snapshot | WriteTransaction, cls: ObjectSchema, prop: Property, target: bytes
) -> list[bytes]:
    """Keys of the objects of ``cls`` whose ``prop`` may link to ``target``
    (candidates: check their records), in key order."""
    n = len(target)
    return [
        bytes(k)[n:]
        for k, _ in txn.scan(backlink_name(cls.name, prop.file_name), target, target + b"\xff")
    ]


def build(txn: WriteTransaction, schema: Schema) -> None:
    """Write the backlink tables of every link property of ``schema`` from
    the records (in ``schema``'s property order), and drop the tables of
    link properties it no longer has."""
    for name in txn.tables():
        if name.startswith(BACKLINK_PREFIX):
            txn.drop(name)
    for c in schema.classes:
        links = link_properties(c)
        if not links:
            continue
        for key, raw in txn.scan(table_name(c.name)):
            update(txn, c, links, bytes(key), None, codec.record_to_dict(raw, c))


# ---- reading a declared backlinks property ----------------------------------------


def origin_of(
    infos: Mapping[str, ClassInfo], cls_name: str, name: str
) -> tuple[ClassInfo, Property] | None:
    """The origin class and link property of backlinks property ``name``
    of ``cls_name``; None if there is none (or it is no link any more)."""
    decl = infos[cls_name].schema.backlink(name)
    origin = infos.get(decl.origin) if decl is not None else None
    prop = origin.schema.by_file_name(decl.property) if origin and decl else None
    if origin is None or prop is None or prop.type != "link":
        return None
    return origin, prop


def linking_rows(
    infos: Mapping[str, ClassInfo],
    txn: Snapshot | WriteTransaction,
    indexed: bool,
    cls_name: str,
    name: str,
    key: bytes,
) -> tuple[str, list[tuple[bytes, list[Any]]]] | None:
    """The origin class and ``(key, record)`` of each object that the
    backlinks property ``name`` of object ``key`` of ``cls_name`` lists:
    the index's candidates (every origin object when the file has no
    backlink tables: ``indexed`` false) whose link property still links to
    it; None if it has no such property."""
    found = origin_of(infos, cls_name, name)
    if found is None:
        return None
    origin, prop = found
    return origin.name, [(k, rec) for k, rec, _ in _linking(origin, prop, txn, indexed, key)]


def _linking(
    origin: ClassInfo, prop: Property, txn: Snapshot | WriteTransaction, indexed: bool, key: bytes
) -> list[tuple[bytes, list[Any], int]]:
    """``(key, record, links)`` of each object of ``origin`` whose link
    property ``prop`` links to ``key``, ``links`` times (a list may hold
    it twice), in key order: the index's candidates (every object when the
    file has no backlink tables: ``indexed`` false), checked on the record."""
    if indexed:
        candidates = origins(txn, origin.schema, prop, key)
    else:
        candidates = [bytes(k) for k, _ in txn.scan(origin.table)]
    i = origin.pos[prop.name]
    rows = []
    for k in candidates:
        raw = txn.get(origin.table, k)
        if raw is not None:
            rec = origin.decode(raw)
            times = _times(prop, rec[i], key)
            if times:
                rows.append((k, rec, times))
    return rows


def _times(prop: Property, value: Any, key: bytes) -> int:
    """How many times the stored value of link property ``prop`` links to ``key``."""
    if value is None:
        return 0
    if prop.collection is None:
        return int(bytes(value) == key)
    items = value.values() if prop.collection == "dict" else value
    return sum(1 for x in items if x is not None and bytes(x) == key)


# ---- @links in queries --------------------------------------------------------------


def incoming(
    infos: Mapping[str, ClassInfo],
    txn: Snapshot | WriteTransaction,
    indexed: bool,
    cls_name: str,
    part: str,
    key: bytes,
) -> list[tuple[str, bytes, list[Any]]]:
    """``(class, key, record)`` of the objects linking to object ``key`` of
    ``cls_name``, once per link, for the query key path part ``part``:
    ``@links.Class.property`` (through that property) or ``@links`` (through
    every link property of a top-level class that can link to it; the query
    binder refuses it where embedded objects could hold such links)."""
    _, _, rest = part.partition(".")
    pairs: list[tuple[ClassInfo, Property]] = []
    if rest:
        origin_name, _, prop_name = rest.partition(".")
        origin = infos.get(origin_name)
        prop = origin.schema.get(prop_name) if origin is not None else None
        if origin is not None and prop is None:
            prop = origin.schema.by_file_name(prop_name)
        if origin is not None and prop is not None and prop.target == cls_name:
            pairs.append((origin, prop))
    else:
        for info in infos.values():
            pairs += [(info, p) for p in link_properties(info.schema) if p.target == cls_name]
    out = []
    for origin, prop in pairs:
        for k, rec, times in _linking(origin, prop, txn, indexed, key):
            out += [(origin.name, k, rec)] * times
    return out
