"""The per-class layout a realm reads and writes by: one :class:`ClassInfo`
per class of the stored schema (its table, the positions of its properties in
a record, their defaults and read kinds, its indexes), computed once per
schema and shared by the realm's hot paths, the query executor
(:mod:`realmpy.execute`) and schema opening (:mod:`realmpy.migration`)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import realmpy.codec as codec
from realmpy._native import record as _make_record
from realmpy._native import record_pairs as _record_pairs
from realmpy.layout import index_name, table_name, zero_value
from realmpy.schema import ObjectSchema, Property, _Model, validator

__all__ = [
    "K_COLLECTION",
    "K_COUNTER",
    "K_EMBEDDED",
    "K_LINK",
    "K_MIXED",
    "K_PLAIN",
    "ClassInfo",
    "kind",
]

_unpack_row = codec.unpack_row
# (table, names, primary key, ((property, index table), ...), key limit, positions,
# table name): what RealmState.add (csrc/py/add.c) reads.
AddPlan = tuple[
    bytes, tuple[str, ...], str, tuple[tuple[str, bytes], ...], int, dict[str, int], str
]
_decode_value = codec.decode_value

# How a property's stored value becomes what a read returns.
K_PLAIN = 0  # the stored value itself (scalars)
K_COUNTER = 1  # an int bound to its object as a Counter
K_COLLECTION = 2  # a live ManagedList / ManagedSet / ManagedDict view
K_LINK = 3  # a to-one link: the target object or None
K_EMBEDDED = 4  # a to-one embedded object or None
K_MIXED = 5  # a mixed value: its links resolved, nested lists/dicts copied


def kind(prop: Property) -> int:
    if prop.collection is not None:
        return K_COLLECTION
    if prop.type == "link":
        return K_LINK
    if prop.type == "embedded":
        return K_EMBEDDED
    if prop.type == "counter":
        return K_COUNTER
    if prop.type == "mixed":
        return K_MIXED
    return K_PLAIN


class ClassInfo:
    """Everything the hot paths need about one class, computed once per schema."""

    __slots__ = (
        "add_plan",
        "defaults",
        "fill",
        "fulltext",
        "indexed",
        "kinds",
        "links",
        "model",
        "n",
        "name",
        "names",
        "pk",
        "pk_check",
        "pos",
        "props",
        "row",
        "row_tuple",
        "schema",
        "simple",
        "table",
    )

    def __init__(self, schema: ObjectSchema, model: type[_Model] | None) -> None:
        self.schema = schema
        self.model = model
        self.name = schema.name
        self.table = table_name(schema.name)
        self.props = {p.name: p for p in schema.properties}
        self.defaults = {p.name: zero_value(p, model) for p in schema.properties}
        self.kinds = {p.name: kind(p) for p in schema.properties}
        # Records are positional, in this (the stored schema's) order.
        self.names = tuple(p.name for p in schema.properties)
        self.n = len(self.names)
        self.pos = {n: i for i, n in enumerate(self.names)}
        self.fill = [self.defaults[n] for n in self.names]
        # values dict (of a model object) -> record row
        self.row: Callable[[dict[str, Any]], list[Any]]
        # values dict -> record as a tuple (a C-level getter; reads index
        # tuples and lists alike, and pack_plain_rows packs them)
        self.row_tuple: Callable[[dict[str, Any]], tuple[Any, ...]]
        if self.n == 1:
            only = self.names[0]
            self.row = lambda values: [values[only]]
            self.row_tuple = lambda values: (values[only],)
        else:
            getter = operator.itemgetter(*self.names)
            self.row = lambda values: list(getter(values))
            self.row_tuple = getter
        self.pk = schema.primary_key
        self.pk_check: Callable[[Any], Any] | None = None
        if self.pk is not None and model is not None:
            self.pk_check = validator(model, self.props[self.pk])
        self.indexed = tuple(
            (p.name, index_name(schema.name, p.file_name)) for p in schema.properties if p.has_index
        )
        # Link properties with a backlink table (realmpy.backlinkindex).
        self.links = (
            tuple(p for p in schema.properties if p.type == "link") if not schema.embedded else ()
        )
        # Str properties with a full-text table (realmpy.fulltextindex).
        self.fulltext = (
            tuple(p for p in schema.properties if p.fulltext) if not schema.embedded else ()
        )
        # No links, embedded objects, mixed values (which may hold links) or
        # full-text indexes: the validated values are the record and nothing
        # else is written.
        self.simple = (
            not schema.embedded
            and not self.fulltext
            and all(p.type not in ("link", "embedded", "mixed") for p in schema.properties)
        )
        # What RealmState.add needs to add one new object in one native
        # call (a simple class with a primary key; None: the general path).
        self.add_plan: AddPlan | None = None
        if self.simple and self.pk is not None:
            self.add_plan = (
                self.table.encode(),
                self.names,
                self.pk,
                tuple((p, i.encode()) for p, i in self.indexed),
                codec.MAX_KEY,
                self.pos,
                self.table,
            )

    def full(self, rec: list[Any]) -> list[Any]:
        """``rec`` (a decoded record) padded with the defaults of properties
        added after it was written, so every position of the schema exists."""
        if len(rec) < self.n:
            rec.extend(self.fill[len(rec) :])
        return rec

    def decode(self, raw: bytes) -> list[Any]:
        return self.full(_unpack_row(raw))

    def record(self, raw: bytes) -> Sequence[Any]:
        """One stored record as a lazy :class:`~realmpy._native.Record`:
        reads as :meth:`decode` would return it, a field decoded when it is
        first read; damage to its structure raises CodecError here."""
        return _make_record(raw, self.n, self.fill, _decode_value, codec.CodecError)

    def lazy_rows(self, batch: bytes) -> list[tuple[bytes, Any]]:
        """``[(key, record), ...]`` of a raw engine batch, each record a lazy
        :class:`~realmpy._native.Record` (full: padded with ``fill``)
        that decodes a field when it is first read; a damaged record
        raises CodecError."""
        return _record_pairs(batch, self.n, self.fill, _decode_value, codec.CodecError)
