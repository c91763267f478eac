"""The store of a managed embedded object: an embedded object has no table of
its own, so its reads and writes go to its parent's record at (property,
slot), and its values convert through the realm that holds the parent."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from realmpy.errors import InvalidObjectError
from realmpy.layout import zero_value
from realmpy.managed import ManagedDict, ManagedList, ManagedSet
from realmpy.schema import Property, _Model, bind_counter, object_schema, validate_value
from realmpy.storage import WriteTransaction

if TYPE_CHECKING:
    from realmpy.realm import Realm

__all__ = ["EmbeddedStore"]


class EmbeddedStore:
    """ObjectStore of a managed embedded object: reads and writes go to the
    parent's record at (property, slot)."""

    def __init__(self, realm: Realm, parent: _Model, prop: str, slot: Any) -> None:
        self.realm = realm
        self.parent = parent
        self.prop = prop
        self.slot = slot
        self._shared = realm._shared
        self._frozen = realm._frozen

    def _node(self, container: Any) -> dict[str, Any]:
        node = container if self.slot is None else None
        try:
            if self.slot is not None:
                node = container[self.slot]
        except (IndexError, KeyError, TypeError):
            node = None
        if node is None:
            raise InvalidObjectError("this embedded object was removed from its parent")
        return cast(dict[str, Any], node)

    def raw_get(self, obj: _Model, name: str) -> Any:
        store = self.parent._rp_store
        container = store.raw_get(self.parent, self.prop)  # type: ignore[union-attr]
        node = self._node(container)
        if name in node:
            return node[name]
        prop = object_schema(type(obj)).property(name)
        return zero_value(prop, type(obj))

    def raw_set(self, obj: _Model, name: str, stored: Any) -> None:
        import copy  # here: the first write of an embedded object (issue 15)

        store = self.parent._rp_store
        container = copy.deepcopy(store.raw_get(self.parent, self.prop))  # type: ignore[union-attr]
        node = self._node(container)
        node[name] = stored
        store.raw_set(self.parent, self.prop, container)  # type: ignore[union-attr]

    def read_plain(self, obj: _Model, name: str) -> Any:
        return self.read_property(obj, name)

    def read_property(self, obj: _Model, name: str) -> Any:
        prop = object_schema(type(obj)).property(name)
        stored = self.raw_get(obj, name)
        if prop.collection is not None:
            kind = {"list": ManagedList, "set": ManagedSet, "dict": ManagedDict}[prop.collection]
            return kind(self, obj, prop)
        if prop.type == "counter" and type(stored) is int:
            return bind_counter(obj, name, stored)
        return self.realm._elem_to_py(obj, prop, stored, None)

    def write_property(self, obj: _Model, name: str, value: Any) -> None:
        self.realm._require_write()
        prop = object_schema(type(obj)).property(name)
        py = validate_value(type(obj), prop, value)
        self.raw_set(obj, name, self.realm._to_stored(prop, py))

    def increment_property(self, obj: _Model, name: str, delta: int) -> None:
        self.realm._require_write()
        self.raw_set(obj, name, self.raw_get(obj, name) + delta)

    # collections inside embedded objects convert elements through the realm
    def _elem_to_py(self, owner: _Model, prop: Property, stored: Any, slot: Any) -> Any:
        return self.realm._elem_to_py(owner, prop, stored, slot)

    def _elem_to_stored(self, prop: Property, v: Any) -> Any:
        return self.realm._elem_to_stored(prop, v)

    def _require_write(self) -> WriteTransaction:
        return self.realm._require_write()
