"""The full-text index: which objects hold a word in a str property.

Every ``field(indexed="fulltext")`` property of a top-level class has a
table ``f:<Class>:<prop>`` (:func:`~realmpy.layout.fulltext_name`) holding
one empty-valued entry per (token, object) pair: the token's UTF-8 bytes,
a 0x00 byte, then the object's encoded primary key.  Tokens are those of
:func:`realmpy.textsearch.tokens` (letters and digits only, so never a
0x00 byte): the objects holding a word are one prefix scan of
``word 0x00``, those holding a word starting with ``pre`` one scan of
``pre``.  Entries are written in the same write transaction as the records
(:func:`update`, called wherever a record of a class with such a property
changes: ``Realm._add``, property writes, deletions and the sync client's
``apply_record``; the index is derived, so it is never synced), and built
from the records when a schema gains the index (:func:`build`).

A ``TEXT`` query on such a property reads its candidates here
(:func:`search`, chosen by realmpy.planner), and the index decides it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import realmpy.codec as codec
from realmpy.errors import CodecError
from realmpy.layout import FULLTEXT_PREFIX, fulltext_name, table_name
from realmpy.schema import ObjectSchema, Property, Schema
from realmpy.storage import Snapshot, WriteTransaction

if TYPE_CHECKING:
    from realmpy.textsearch import SearchTerms

__all__ = ["build", "entries", "fulltext_properties", "search", "update"]

_SEP = b"\x00"


def fulltext_properties(cls: ObjectSchema) -> tuple[Property, ...]:
    """The full-text indexed properties of ``cls`` (none for an embedded class)."""
    if cls.embedded:
        return ()
    return tuple(p for p in cls.properties if p.fulltext)


def entries(cls: ObjectSchema, prop: Property, key: bytes, value: Any) -> set[bytes]:
    """The index keys of object ``key`` whose ``prop`` holds ``value``."""
    from realmpy.textsearch import tokens  # loaded by a class with a full-text index

    out = set()
    for t in tokens(value if isinstance(value, str) else None):
        entry = t.encode("utf-8") + _SEP + key
        if len(entry) > codec.MAX_KEY:
            raise CodecError(
                f"{cls.name}.{prop.name}: full-text index entry of {len(entry)} bytes, over "
                f"the {codec.MAX_KEY}-byte key limit (the primary key is too long)"
            )
        out.add(entry)
    return out


def update(
    txn: WriteTransaction,
    cls: ObjectSchema,
    props: Iterable[Property],
    key: bytes,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
) -> None:
    """Bring the entries of object ``key`` of ``cls`` from its ``old``
    record (None: it did not exist) to its ``new`` one (None: deleted).
    Records are mappings by property name; ``props`` are
    :func:`fulltext_properties` of ``cls`` (or some of them)."""
    for p in props:
        before = old.get(p.name) if old is not None else None
        after = new.get(p.name) if new is not None else None
        if before == after:
            continue
        table = fulltext_name(cls.name, p.file_name)
        was = entries(cls, p, key, before)
        now = entries(cls, p, key, after)
        for e in was - now:
            txn.delete(table, e)
        for e in now - was:
            txn.put(table, e, b"")


def build(txn: WriteTransaction, schema: Schema, only: set[tuple[str, str]] | None = None) -> None:
    """(Re)write the full-text tables of ``schema`` from the records (only
    those of the (class, property name) pairs in ``only`` when given), and
    drop the tables of properties it no longer indexes."""
    todo = [
        (c, p)
        for c in schema.classes
        for p in fulltext_properties(c)
        if only is None or (c.name, p.name) in only
    ]
    wanted = {
        fulltext_name(c.name, p.file_name) for c in schema.classes for p in fulltext_properties(c)
    }
    rewritten = {fulltext_name(c.name, p.file_name) for c, p in todo}
    for name in txn.tables():
        if name.startswith(FULLTEXT_PREFIX) and (name not in wanted or name in rewritten):
            txn.drop(name)
    for c in schema.classes:
        props = tuple(p for cc, p in todo if cc is c)
        if props:
            for key, raw in txn.scan(table_name(c.name)):
                update(txn, c, props, bytes(key), None, codec.record_to_dict(raw, c))


def search(
    txn: Snapshot | WriteTransaction, cls: ObjectSchema, prop: Property, terms: SearchTerms
) -> list[bytes]:
    """The primary keys of the objects of ``cls`` whose ``prop`` matches
    ``terms``, in table order: one index scan per word and prefix (the
    whole table's keys when there are only excluded words)."""
    table = fulltext_name(cls.name, prop.file_name)

    def having(word: str) -> set[bytes]:
        start = word.encode("utf-8") + _SEP
        return {bytes(k)[len(start) :] for k, _ in txn.scan(table, start, start + b"\xff")}

    def starting(prefix: str) -> set[bytes]:
        start = prefix.encode("utf-8")
        out = set()
        for k, _ in txn.scan(table, start, start + b"\xff"):
            k = bytes(k)
            out.add(k[k.index(_SEP) + 1 :])
        return out

    found: set[bytes] | None = None
    for word in sorted(terms.words):
        keys = having(word)
        found = keys if found is None else found & keys
        if not found:
            return []
    for prefix in sorted(terms.prefixes):
        keys = starting(prefix)
        found = keys if found is None else found & keys
        if not found:
            return []
    if found is None:
        found = {bytes(k) for k, _ in txn.scan(table_name(cls.name))}
    for word in terms.excluded:
        found -= having(word)
    return sorted(found)
