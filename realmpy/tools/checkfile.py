"""``realmpy check``: is this realm file sound, and if not, what is wrong and where.

Three layers, each naming the place it found a problem:

1. the storage engine's check of the newest version: every page's checksum,
   every B+tree's structure (``Environment.check``);
2. every object record against the stored schema: it decodes, it has no
   more values than its class has properties, its primary key field is the
   key it is stored under, and each link points at an object that exists
   (deleting an object clears the links to it, so a dangling one is damage);
3. every secondary index holds exactly one entry per object, each naming a
   stored object;
4. every backlink table (``b:<Class>:<prop>``, see realmpy/backlinkindex.py)
   holds exactly the (target, origin) entries the records' links call for;
5. every full-text table (``f:<Class>:<prop>``, see realmpy/fulltextindex.py)
   holds exactly the (token, object) entries the records' texts call for.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from realmpy import codec
from realmpy.backlinkindex import link_properties, targets
from realmpy.errors import CodecError, CorruptError
from realmpy.fulltextindex import entries as fulltext_entries
from realmpy.fulltextindex import fulltext_properties
from realmpy.layout import (
    BACKLINKS_KEY,
    META,
    backlink_name,
    fulltext_name,
    index_name,
    table_name,
)
from realmpy.schema import ObjectSchema, Property
from realmpy.storage import Snapshot
from realmpy.tools.storedfile import stored_env

__all__ = ["MAX_PROBLEMS", "check_file"]

MAX_PROBLEMS = 20
"""Problems listed before the check stops looking."""


class _Problems(list[str]):
    def add(self, text: str) -> None:
        self.append(text)
        if len(self) >= MAX_PROBLEMS:
            raise _Enough


class _Enough(Exception):
    pass


def _links(prop: Property, value: Any) -> list[bytes]:
    """The encoded target keys of a stored link value."""
    if value is None:
        return []
    if prop.collection is None:
        return [bytes(value)]
    if prop.collection == "dict":
        return [bytes(v) for v in value.values() if v is not None]
    return [bytes(v) for v in value if v is not None]


def _check_class(snap: Snapshot, oschema: ObjectSchema, found: _Problems) -> set[bytes]:
    name = oschema.name
    table = table_name(name)
    pk = oschema.primary_key
    pk_pos = next((i for i, p in enumerate(oschema.properties) if p.primary_key), None)
    link_props = [(i, p) for i, p in enumerate(oschema.properties) if p.type == "link"]
    keys: set[bytes] = set()
    for key, raw in snap.scan(table):
        keys.add(key)
        where = f"{name} {codec.decode_key(key)[0]!r} (table {table})"
        try:
            row = codec.unpack_row(raw)
        except CodecError as exc:
            found.add(f"{where}: {exc}")
            continue
        if len(row) > len(oschema.properties):
            found.add(f"{where}: {len(row)} values for {len(oschema.properties)} properties")
            continue
        if pk is not None and pk_pos is not None and pk_pos < len(row):
            if codec.encode_key(row[pk_pos]) != key:
                found.add(f"{where}: its {pk} field is {row[pk_pos]!r}, not its key")
        for i, prop in link_props:
            if i >= len(row):
                continue
            assert prop.target is not None
            for target in _links(prop, row[i]):
                if snap.get(table_name(prop.target), target) is None:
                    found.add(
                        f"{where}: {prop.name} links to {prop.target} "
                        f"{codec.decode_key(target)[0]!r}, which does not exist"
                    )
    return keys


def _check_index(
    snap: Snapshot, oschema: ObjectSchema, prop: Property, keys: set[bytes], found: _Problems
) -> None:
    table = index_name(oschema.name, prop.name)
    entries = 0
    for entry, _ in snap.scan(table):
        entries += 1
        parts = codec.decode_key(entry)
        if len(parts) < 2 or codec.encode_key(parts[-1]) not in keys:
            found.add(f"index {table}: entry {parts!r} names no stored {oschema.name}")
    if entries != len(keys):
        found.add(f"index {table}: {entries} entries for {len(keys)} {oschema.name} objects")


def _check_derived(
    snap: Snapshot, oschema: ObjectSchema, with_backlinks: bool, found: _Problems
) -> int:
    """Compare the tables derived from ``oschema``'s records (backlink
    tables, full-text tables) with what the records say they must hold, in
    one scan of the class; returns how many tables were checked."""
    derived: list[_Derived] = []
    for i, p in enumerate(oschema.properties):
        if with_backlinks and p in link_properties(oschema):
            derived.append(
                _Derived(
                    i,
                    backlink_name(oschema.name, p.name),
                    functools.partial(_backlink_entries, p),
                    "backlinks",
                    lambda entry: f"entry {codec.decode_key(entry)!r}",
                    "has no link",
                )
            )
        if p in fulltext_properties(oschema):
            derived.append(
                _Derived(
                    i,
                    fulltext_name(oschema.name, p.name),
                    functools.partial(fulltext_entries, oschema, p),
                    "full-text index",
                    _word_entry_text,
                    "has no such word in the text",
                )
            )
    if not derived:
        return 0
    wanted: dict[str, set[bytes]] = {d.table: set() for d in derived}
    for key, raw in snap.scan(table_name(oschema.name)):
        try:
            row = codec.unpack_row(raw)
        except CodecError:
            continue  # reported by _check_class
        for d in derived:
            if d.prop < len(row):
                wanted[d.table].update(d.entries_of(bytes(key), row[d.prop]))
    for d in derived:
        stored = {bytes(k) for k, _ in snap.scan(d.table)}
        for entry in sorted(stored - wanted[d.table])[:3]:
            found.add(f"{d.kind} {d.table}: {d.describe(entry)} {d.extra_why}")
        for entry in sorted(wanted[d.table] - stored)[:3]:
            found.add(f"{d.kind} {d.table}: missing {d.describe(entry)}")
    return len(derived)


class _Derived(NamedTuple):
    """A table derived from one property of a class's records."""

    prop: int  # the property's index in a record
    table: str
    entries_of: Callable[[bytes, Any], Iterable[bytes]]  # (object key, value) -> entries
    kind: str  # how messages name the table's kind
    describe: Callable[[bytes], str]  # an entry, as a message shows it
    extra_why: str  # why an entry no record implies is wrong


def _backlink_entries(prop: Property, key: bytes, value: Any) -> Iterable[bytes]:
    """The backlink entries a record's link ``value`` implies (target + key)."""
    return (t + key for t in targets(prop, value))


def _word_entry_text(entry: bytes) -> str:
    word, _, key = entry.partition(b"\x00")
    return f"entry {word.decode(errors='replace')!r} of {_key_text(key)}"


def _key_text(key: bytes) -> str:
    try:
        return repr(codec.decode_key(key)[0])
    except CodecError:
        return key.hex()


def check_file(path: str) -> str:
    """A one-line summary if the file is sound; raises CorruptError listing what is not."""
    with stored_env(path) as (env, stored):
        env.check()
        found = _Problems()
        objects = indexes = 0
        try:
            with env.read() as snap:
                # Files of older realmpy versions have no backlink tables.
                has_backlinks = snap.get(META, BACKLINKS_KEY) is not None
                for oschema in stored.schema.classes:
                    if oschema.embedded:
                        continue
                    keys = _check_class(snap, oschema, found)
                    objects += len(keys)
                    for prop in oschema.properties:
                        if prop.has_index:
                            _check_index(snap, oschema, prop, keys, found)
                            indexes += 1
                    indexes += _check_derived(snap, oschema, has_backlinks, found)
        except _Enough:
            pass
        if found:
            more = " (stopped looking)" if len(found) >= MAX_PROBLEMS else ""
            raise CorruptError(f"{path}: {len(found)} problem(s){more}: " + "; ".join(found))
        return (
            f"{path}: sound (version {stored.version}: pages and trees verified, "
            f"{objects} objects in {len(stored.counts)} classes, {indexes} indexes)"
        )
