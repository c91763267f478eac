"""Dynamic objects: records read by class *name*, without model classes.

Why: a migration reads the file as the *previous* schema stored it, whose
classes and properties may no longer exist as Python models, so it cannot
build model objects.  Realm's answer is a dynamic API
(``oldRealm.dynamic.all("Person")``): objects whose properties are read by
name.  A :class:`DynamicObject` is that, and stays a ``dict`` for code
written against the earlier dict records:

- ``obj.name`` reads a property, following links: a to-one link gives the
  target as a ``DynamicObject`` (or ``None`` if it is gone), a list or set
  of links a list of them, a dict of links a dict of them; embedded objects
  come back as ``DynamicObject`` too;
- ``obj["name"]``, ``obj.get``, iteration, ``dict(obj)``, ``==`` with a
  dict: the stored values as before (a link is its encoded key);
- it is read-only: assigning an attribute raises, write to the new realm.

A property named like a ``dict`` method (``items``, ``keys``, ``get``...)
is read with ``obj["items"]`` (its stored value) or :meth:`DynamicObject.
property`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from realmpy.errors import SchemaError, TransactionStateError
from realmpy.layout import zero_value
from realmpy.schema import ObjectSchema, Property, Schema

__all__ = ["DynamicObject", "LinkLoader"]

# (class name, encoded primary key) -> the target's record, or None if gone
LinkLoader = Callable[[str, bytes], "DynamicObject | None"]


class DynamicObject(dict[str, Any]):
    """One record of class :attr:`class_name`, as described by ``schema``."""

    __slots__ = ("_rp_class", "_rp_load", "_rp_schema")

    def __init__(
        self, values: dict[str, Any], class_name: str, schema: Schema, load: LinkLoader
    ) -> None:
        super().__init__(values)
        self._rp_class = class_name
        self._rp_schema = schema
        self._rp_load = load

    @property
    def class_name(self) -> str:
        return self._rp_class

    @property
    def object_schema(self) -> ObjectSchema:
        """The class as the (old) schema describes it."""
        return self._rp_schema[self._rp_class]

    def property(self, name: str) -> Any:
        """The property ``name`` with links followed (what ``obj.name`` gives)."""
        prop = self.object_schema.get(name)
        if prop is None:
            names = ", ".join(p.name for p in self.object_schema.properties)
            raise AttributeError(f"{self._rp_class} has no property {name!r}; it has {names}")
        if name not in self:
            return zero_value(prop, None)
        return self._convert(prop, self[name])

    def __getattr__(self, name: str) -> Any:
        if name.startswith(("__", "_rp_")):  # (copy and pickle probe these)
            raise AttributeError(name)
        return self.property(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in DynamicObject.__slots__:
            object.__setattr__(self, name, value)
            return
        raise TransactionStateError(
            f"the migration's old realm is read-only ({self._rp_class}.{name}): "
            "write to the new realm (its second argument)"
        )

    def _convert(self, prop: Property, stored: Any) -> Any:
        target = prop.target
        if target is None or stored is None:
            return stored
        if prop.type == "link":
            load = self._rp_load
            if prop.collection is None:
                return load(target, bytes(stored))
            if prop.collection == "dict":
                return {k: None if v is None else load(target, bytes(v)) for k, v in stored.items()}
            found = (load(target, bytes(v)) for v in stored if v is not None)
            return [obj for obj in found if obj is not None]  # gone targets read as absent
        if prop.type == "embedded":
            if prop.collection is None:
                return self._embedded(target, stored)
            if prop.collection == "dict":
                return {k: self._embedded(target, v) for k, v in stored.items()}
            return [self._embedded(target, v) for v in stored]
        raise SchemaError(f"{self._rp_class}.{prop.name}: unknown target kind {prop.type!r}")

    def _embedded(self, class_name: str, values: Any) -> DynamicObject | None:
        if values is None:
            return None
        return DynamicObject(values, class_name, self._rp_schema, self._rp_load)

    def __repr__(self) -> str:
        return f"DynamicObject({self._rp_class}, {dict.__repr__(self)})"

    # Pickling and copying give a plain dict: the loader belongs to one migration.
    def __reduce__(self) -> Any:
        return (dict, (dict(self),))
