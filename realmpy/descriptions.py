"""Schema descriptions: what a realm stores about its classes.

Why a module of its own: these are plain, serialisable, frozen values
(:class:`Property`, :class:`Backlink`, :class:`ObjectSchema`,
:class:`Schema`, :class:`SchemaDiff`: :class:`~realmpy.valueclass.ValueClass`
classes) that the file stores, the sync schema is built from and the next opener compares with (:meth:`Schema.diff`).  The
model machinery that produces them from annotated classes is
:mod:`realmpy.schema`; this module knows models only through the one hook
every model class has, ``_rp_describe()`` (its :class:`ObjectSchema`), so
descriptions never import models.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from realmpy._native import ModelBase
from realmpy.errors import SchemaError
from realmpy.valueclass import ValueClass


class Property(ValueClass):
    """One property as stored in the file.

    ``type`` is a scalar name (``"int"``, ``"str"``, …, ``"counter"``),
    ``"mixed"`` (:mod:`realmpy.mixed`: any of them, a link to any class or
    a nested list/dict; always optional), ``"link"`` (to ``target``) or
    ``"embedded"`` (of ``target``);
    ``collection`` is ``None``, ``"list"``, ``"set"`` or ``"dict"``;
    ``optional`` applies to the value (or each element of a collection).
    ``name`` is the name Python code and queries use; ``map_to`` the name
    in the file when it differs (``field(map_to=...)``).  The file stores
    only :attr:`file_name`: a schema read from a file names every property
    by it, and :meth:`Schema.named_like` gives them their model names.
    """

    name: str
    type: str
    collection: str | None = None
    optional: bool = False
    target: str | None = None
    primary_key: bool = False
    indexed: bool = False
    map_to: str | None = None
    # ``field(indexed="fulltext")``: a str property with a full-text index
    # (realmpy.fulltextindex) instead of an ordered one.
    fulltext: bool = False

    @property
    def file_name(self) -> str:
        """The property's name in the file, its index and its sync schema."""
        return self.map_to or self.name

    @property
    def is_link(self) -> bool:
        return self.type == "link"

    @property
    def has_index(self) -> bool:
        """True if values are kept in an index table (not the primary key)."""
        return self.indexed and not self.primary_key

    def describe(self) -> str:
        """Type as a user would write it, for messages."""
        base = self.target if self.target else self.type
        if self.type == "mixed":
            base = "Mixed"  # holds None among its values
        elif self.optional:
            base += " | None"
        if self.collection == "list":
            return f"list[{base}]"
        if self.collection == "set":
            return f"set[{base}]"
        if self.collection == "dict":
            return f"dict[str, {base}]"
        return base

    def to_dict(self) -> dict[str, Any]:
        d = {
            "name": self.file_name,
            "type": self.type,
            "collection": self.collection,
            "optional": self.optional,
            "target": self.target,
            "primary_key": self.primary_key,
            "indexed": self.indexed,
        }
        if self.fulltext:  # absent otherwise: schemas without one read as before
            d["fulltext"] = True
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Property:
        return cls(
            str(d["name"]),
            str(d["type"]),
            d.get("collection"),
            bool(d.get("optional", False)),
            d.get("target"),
            bool(d.get("primary_key", False)),
            bool(d.get("indexed", False)),
            fulltext=bool(d.get("fulltext", False)),
        )

    def shape(self) -> tuple[Any, ...]:
        """What must not change without a migration."""
        return (self.type, self.collection, self.optional, self.target)


class Backlink(ValueClass):
    """A declared backlinks property (:func:`backlinks`): ``name`` on this
    class lists the objects of class ``origin`` whose link property
    ``property`` (its file name) links here.  Computed: no record holds it."""

    name: str
    origin: str
    property: str

    def to_list(self) -> list[str]:
        return [self.name, self.origin, self.property]


class ObjectSchema(ValueClass):
    """One model: its table name, properties, primary key and kind, and its
    declared backlinks (computed: not part of the records)."""

    name: str
    properties: tuple[Property, ...]
    embedded: bool = False
    backlinks: tuple[Backlink, ...] = ()

    @property
    def primary_key(self) -> str | None:
        for p in self.properties:
            if p.primary_key:
                return p.name
        return None

    def property(self, name: str) -> Property:
        for p in self.properties:
            if p.name == name:
                return p
        raise KeyError(name)

    def get(self, name: str) -> Property | None:
        for p in self.properties:
            if p.name == name:
                return p
        return None

    def by_file_name(self, file_name: str) -> Property | None:
        for p in self.properties:
            if p.file_name == file_name:
                return p
        return None

    def backlink(self, name: str) -> Backlink | None:
        for b in self.backlinks:
            if b.name == name:
                return b
        return None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "embedded": self.embedded,
            "properties": [p.to_dict() for p in self.properties],
        }
        if self.backlinks:  # absent otherwise: the schema of older files, unchanged
            out["backlinks"] = [b.to_list() for b in self.backlinks]
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ObjectSchema:
        return cls(
            str(d["name"]),
            tuple(Property.from_dict(p) for p in d["properties"]),
            bool(d.get("embedded", False)),
            tuple(Backlink(str(a), str(b), str(c)) for a, b, c in d.get("backlinks", ())),
        )


class SchemaDiff(ValueClass):
    """Differences between a stored and a configured schema.

    ``additive`` changes (new class, new property, index added or dropped)
    apply without a migration; ``breaking`` ones (removed property, changed
    type, optionality, primary key or kind) need a ``schema_version`` bump
    and usually a migration function.
    """

    additive: tuple[str, ...]
    breaking: tuple[str, ...]

    @property
    def is_empty(self) -> bool:
        return not self.additive and not self.breaking


class Schema(ValueClass):
    """A set of object schemas, by name."""

    classes: tuple[ObjectSchema, ...]

    def __post_init__(self) -> None:
        names = [c.name for c in self.classes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise SchemaError(f"two models share the name(s) {sorted(dup)}")

    def __getitem__(self, name: str) -> ObjectSchema:
        for c in self.classes:
            if c.name == name:
                return c
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.classes)

    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def to_dict(self) -> dict[str, Any]:
        return {"classes": [c.to_dict() for c in self.classes]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Schema:
        return cls(tuple(ObjectSchema.from_dict(c) for c in d["classes"]))

    @classmethod
    def from_models(cls, models: Iterable[type[ModelBase]]) -> Schema:
        """Build and check the schema of a list of model classes.

        Every link or embedded target must be in the list, so a realm never
        holds a link it cannot follow.
        """
        classes = list(models)
        if not classes:
            raise SchemaError("a schema needs at least one model class")
        out = []
        for m in classes:
            describe = getattr(m, "_rp_describe", None) if isinstance(m, type) else None
            described = describe() if describe is not None else None
            if not isinstance(described, ObjectSchema):  # not a model, or a base class
                raise SchemaError(
                    f"{m!r} is not a model: subclass realmpy.Object or EmbeddedObject"
                )
            out.append(described)
        schema = cls(tuple(out))
        by_name = {c.name for c in schema.classes}
        for c in schema.classes:
            refs = [(p.name, p.target) for p in c.properties if p.target is not None]
            refs += [(b.name, b.origin) for b in c.backlinks]
            for name, target in refs:
                if target not in by_name:
                    raise SchemaError(
                        f"{c.name}.{name} refers to {target}, which is not in "
                        "the schema: add it to the configuration's model list"
                    )
        return schema

    def named_like(self, stored: Schema) -> Schema:
        """``stored`` (a schema read from a file, every property under its
        file name) with this schema's names: a stored property whose file
        name a model property maps to is renamed to that model property's
        name (and keeps its ``map_to``), so :meth:`diff`,
        :meth:`merged_with` and a migration compare properties by what they
        are in the file.  A stored property that no model property maps to
        but whose name a model property uses for something else is named
        ``"<name> (in the file)"`` (it reads as removed)."""
        classes = []
        for old in stored.classes:
            new = self[old.name] if old.name in self else None
            if new is None or all(p.map_to is None for p in new.properties):
                classes.append(old)
                continue
            props = []
            for q in old.properties:
                p = new.by_file_name(q.name)
                if p is not None:
                    q = q._replace(name=p.name, map_to=p.map_to)
                elif new.get(q.name) is not None:
                    q = q._replace(name=f"{q.name} (in the file)")
                props.append(q)
            classes.append(ObjectSchema(old.name, tuple(props), old.embedded, old.backlinks))
        return Schema(tuple(classes))

    def merged_with(self, stored: Schema) -> Schema:
        """This schema plus stored classes it does not mention (kept as is).

        A class in both keeps the stored property order (records are
        positional in that order), then appends its new properties; a
        property the models no longer have is left out."""
        classes = []
        for c in self.classes:
            if c.name not in stored:
                classes.append(c)
                continue
            old = stored[c.name]
            kept = [p for p in (c.get(q.name) for q in old.properties) if p is not None]
            added = [p for p in c.properties if old.get(p.name) is None]
            classes.append(ObjectSchema(c.name, tuple(kept + added), c.embedded, c.backlinks))
        extra = tuple(c for c in stored.classes if c.name not in self)
        return Schema(tuple(classes) + extra)

    def diff(self, stored: Schema) -> SchemaDiff:
        """Changes needed to go from ``stored`` (in the file) to ``self``."""
        additive: list[str] = []
        breaking: list[str] = []
        for new in self.classes:
            if new.name not in stored:
                additive.append(f"class {new.name} added")
                continue
            old = stored[new.name]
            if old.embedded != new.embedded:
                breaking.append(f"{new.name} changed between embedded and top-level")
            if old.primary_key != new.primary_key:
                breaking.append(
                    f"{new.name}: primary key changed from {old.primary_key} to {new.primary_key}"
                )
            for p in new.properties:
                q = old.get(p.name)
                if q is None:
                    additive.append(f"{new.name}.{p.name} added")
                elif q.shape() != p.shape():
                    breaking.append(
                        f"{new.name}.{p.name} changed from {q.describe()} to {p.describe()}"
                    )
                elif q.indexed != p.indexed:
                    additive.append(
                        f"{new.name}.{p.name} index " + ("added" if p.indexed else "removed")
                    )
                elif q.fulltext != p.fulltext:
                    additive.append(
                        f"{new.name}.{p.name} full-text index "
                        + ("added" if p.fulltext else "removed")
                    )
            for q in old.properties:
                if new.get(q.name) is None:
                    breaking.append(f"{new.name}.{q.name} removed")
            if old.backlinks != new.backlinks:  # computed: nothing to migrate
                additive.append(f"{new.name} backlinks changed")
        return SchemaDiff(tuple(additive), tuple(breaking))
