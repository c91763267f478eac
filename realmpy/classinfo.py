"""The per-class layout a realm reads and writes by: one :class:`ClassInfo`
per class of the stored schema (its table, the positions of its properties in
a record, their defaults and read kinds, its indexes), computed once per
schema and shared by the realm's hot paths, the query executor
(:mod:`realmpy.execute`) and schema opening (:mod:`realmpy.migration`)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import realmpy.codec as codec
from realmpy._native import record as _make_record
from realmpy._native import record_pairs as _record_pairs
from realmpy.layout import backlink_name, index_name, table_name, zero_value
from realmpy.schema import ObjectSchema, Property, _Model, object_schema, validator

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
# table name, kinds, extras): what RealmState.add (csrc/py/add.c) reads.
# kinds is None for a simple class (every value a plain scalar: its record is
# cached as a tuple), else one ADD_* byte per property, with extras[i] the
# backlink table (bytes) of a link property or the EmbeddedPlan of an
# embedded one.
AddPlan = tuple[
    bytes,
    tuple[str, ...],
    str,
    tuple[tuple[str, bytes], ...],
    int,
    dict[str, int],
    str,
    bytes | None,
    tuple[Any, ...] | None,
]
# (model class, property names in its schema's order, kinds): an embedded
# object's record, a map as Realm._embedded_record builds it.
EmbeddedPlan = tuple[type, tuple[str, ...], bytes]

# RealmState.add's property encodings (csrc/py/add.c, enum add_kind).
ADD_PLAIN = ord("p")  # a plain scalar, as stored
ADD_LIST = ord("l")  # a list of plain scalars
ADD_LINK = ord("k")  # a to-one link: nil or the target's key (EXT_LINK)
ADD_LINK_LIST = ord("K")  # a list of links
ADD_EMBEDDED = ord("e")  # a to-one embedded object (its EmbeddedPlan)
_decode_value = codec.decode_value

# How a property's stored value becomes what a read returns.
K_PLAIN = 0  # the stored value itself (scalars)
K_COUNTER = 1  # an int bound to its object as a Counter
K_COLLECTION = 2  # a live ManagedList / ManagedSet / ManagedDict view
K_LINK = 3  # a to-one link: the target object or None
K_EMBEDDED = 4  # a to-one embedded object or None
K_MIXED = 5  # a mixed value: its links resolved, nested lists/dicts copied


def _add_kind(prop: Property) -> int | None:
    """How RealmState.add encodes ``prop`` (an ADD_* code), or None: not natively."""
    if prop.type == "mixed" or prop.collection not in (None, "list"):
        return None
    if prop.type == "link":
        return ADD_LINK if prop.collection is None else ADD_LINK_LIST
    if prop.type == "embedded":
        return ADD_EMBEDDED if prop.collection is None else None
    return ADD_PLAIN if prop.collection is None else ADD_LIST


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
            self.add_plan = self._plan(self.pk, None, None)

    def _plan(self, pk: str, kinds: bytes | None, extras: tuple[Any, ...] | None) -> AddPlan:
        return (
            self.table.encode(),
            self.names,
            pk,
            tuple((p, i.encode()) for p, i in self.indexed),
            codec.MAX_KEY,
            self.pos,
            self.table,
            kinds,
            extras,
        )

    def plan_linked(self, models: Mapping[str, type[_Model]]) -> None:
        """Set :attr:`add_plan` of a class with a primary key whose
        properties are plain scalars, lists of them, to-one links, lists of
        links or embedded objects of such plain properties (no mixed
        values, sets, dictionaries or full-text indexes): RealmState.add
        writes a new object of it in one call, with its backlink entries."""
        if self.add_plan is not None or self.pk is None or self.schema.embedded or self.fulltext:
            return
        kinds = bytearray()
        extras: list[Any] = []
        for p in self.schema.properties:
            k = _add_kind(p)
            extra: Any = None
            if k == ADD_LINK or k == ADD_LINK_LIST:
                extra = backlink_name(self.name, p.file_name).encode()
            elif k == ADD_EMBEDDED:
                model = models.get(p.target or "")
                if not isinstance(model, type):
                    return
                props = object_schema(model).properties
                sub = [_add_kind(q) for q in props]
                if any(c != ADD_PLAIN and c != ADD_LIST for c in sub):
                    return  # links or embedded objects inside: the general path
                extra = (model, tuple(q.name for q in props), bytes(sub))  # type: ignore[arg-type]
            elif k is None or (p.has_index and k != ADD_PLAIN):
                return
            kinds.append(k)
            extras.append(extra)
        self.add_plan = self._plan(self.pk, bytes(kinds), tuple(extras))

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
