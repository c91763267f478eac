"""Models and their schema: ``Object``, ``EmbeddedObject``, ``field``.

Why this shape: users write ordinary annotated classes, and
``typing.dataclass_transform`` makes type checkers see a typed keyword-only
``__init__`` for them, exactly as for dataclasses.  At run time each model is
turned (lazily, so forward references such as ``list["Dog"]`` resolve once
``Dog`` exists) into an :class:`ObjectSchema`: plain, serialisable
description objects that the realm stores in the file and compares with the
schema of the next opener (:meth:`Schema.diff`).

Property types: ``bool``, ``int`` (64-bit), ``float``, ``str``, ``bytes``,
``datetime`` (timezone-aware), ``Decimal``, ``ObjectId``, ``UUID``,
:class:`Counter`, :data:`Mixed` (any of those, a link, or a nested
list/dict: :mod:`realmpy.mixed`), ``T | None``, ``list[T]``, ``set[T]``, ``dict[str, T]``,
links to other models (to-one links must be ``Model | None``), and embedded
objects (subclasses of :class:`EmbeddedObject`, stored inside their parent).

An unmanaged object (``Person(name="Ann")``) keeps its values in memory.
Once added to a realm it becomes *managed*: every attribute read goes to the
realm's current version and every write goes into the open write
transaction.  The bridge is the small :class:`ObjectStore` protocol, so this
module never imports the realm.
"""

from __future__ import annotations

import sys
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Final, Generic, Literal, Protocol, TypeVar, overload

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # pragma: no cover - CPython 3.10 takes it from the backport (setup.cfg)
    from typing_extensions import dataclass_transform

from realmpy._native import ModelBase, ModelInit, PropertyBase
from realmpy.descriptions import Backlink, ObjectSchema, Property, Schema, SchemaDiff
from realmpy.errors import ObjectTypeError, SchemaError
from realmpy.hooks import add_listener
from realmpy.mixed import Mixed
from realmpy.mixed import validate as _validate_mixed
from realmpy.objectid import ObjectId
from realmpy.stdtypes import lazy_scalar
from realmpy.valueclass import ValueClass

__all__ = [
    "MAX_EMBEDDED_DEPTH",
    "PRIMARY_KEY_TYPES",
    "SCALAR_TYPES",
    "Backlink",
    "Backlinks",
    "Counter",
    "EmbeddedObject",
    "Field",
    "Mixed",
    "Object",
    "ObjectSchema",
    "ObjectStore",
    "Property",
    "Schema",
    "SchemaDiff",
    "backlinks",
    "field",
    "object_schema",
]

MAX_EMBEDDED_DEPTH: Final = 100
"""Deepest nesting of embedded objects in one value (an embedded object inside
an embedded object ... inside an object).  Deeper values are refused when
written (``CodecError``) and when received by the sync server (``400
wrong_type``), so every walk over a value stays far from Python's recursion
limit."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

# Filled below (Counter first); datetime, Decimal and UUID join when a model
# first names them (their modules load on demand: realmpy.stdtypes).
SCALAR_TYPES: Final[dict[type, str]] = {}
PRIMARY_KEY_TYPES: Final = frozenset({"int", "str", "objectid", "uuid"})
INDEXABLE_TYPES: Final = frozenset(
    {"bool", "int", "str", "objectid", "uuid", "datetime", "decimal", "float", "mixed"}
)


class Counter(int):
    """An integer property whose concurrent increments merge.

    Annotate ``visits: Counter = Counter(0)`` (or ``= 0``).  Reading it from
    a managed object gives a ``Counter`` bound to that object, so
    ``obj.visits.increment(1)`` adds inside the write transaction, and sync
    merges the *addition* (two devices adding 1 give +2), whereas assigning
    ``obj.visits = 5`` is an ordinary last-writer-wins set.
    """

    _owner: Any = None
    _name: str = ""

    def increment(self, delta: int = 1) -> None:
        """Add ``delta`` (may be negative) to the stored value."""
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise ObjectTypeError(f"a counter increments by an int, not {type(delta).__name__}")
        owner = self._owner
        if owner is None:
            raise ObjectTypeError("this Counter is not bound to an object: read it from one")
        store = owner._rp_store
        if store is None:
            owner._rp_values[self._name] = owner._rp_values[self._name] + delta
        else:
            store.increment_property(owner, self._name, delta)

    def decrement(self, delta: int = 1) -> None:
        """Subtract ``delta``: ``increment(-delta)``."""
        self.increment(-delta)


SCALAR_TYPES.update(
    {
        Counter: "counter",
        bool: "bool",
        int: "int",
        float: "float",
        str: "str",
        bytes: "bytes",
        ObjectId: "objectid",
    }
)


def _scalar_name(tp: Any) -> str | None:
    """The property type name of a scalar annotation, or None."""
    try:
        name = SCALAR_TYPES.get(tp)
    except TypeError:  # an unhashable annotation is no scalar type
        return None
    if name is None:
        name = lazy_scalar(tp)
        if name is not None:
            SCALAR_TYPES[tp] = name
    return name


class Field(ValueClass):
    """What :func:`field` returns: per-property options."""

    default: Any = MISSING
    default_factory: Callable[[], Any] | _Missing = MISSING
    primary_key: bool = False
    indexed: bool | str = False
    map_to: str | None = None

    def has_default(self) -> bool:
        return self.default is not MISSING or self.default_factory is not MISSING

    def make_default(self) -> Any:
        if not isinstance(self.default_factory, _Missing):
            return self.default_factory()
        return self.default


def field(
    *,
    default: Any = MISSING,
    default_factory: Callable[[], Any] | _Missing = MISSING,
    primary_key: bool = False,
    indexed: bool | str = False,
    map_to: str | None = None,
) -> Any:
    """Options of one property: a default, primary key, or secondary index.

    ``id: ObjectId = field(primary_key=True, default_factory=ObjectId)``.
    A primary key is always indexed; ``indexed=True`` keeps a separate
    ordered index so equality and range queries on it need no scan;
    ``indexed="fulltext"`` (a ``str`` property) keeps a full-text index
    instead, for ``prop TEXT 'words -excluded prefix*'`` queries.
    ``map_to="name_in_file"`` (Realm's ``@MapTo``) stores the property
    under another name in the file and its sync schema, while Python code
    and queries use the attribute's name.
    """
    if not isinstance(indexed, bool) and indexed != "fulltext":
        raise SchemaError(f'indexed is True, False or "fulltext", not {indexed!r}')
    if map_to is not None and (not isinstance(map_to, str) or not map_to):
        raise SchemaError(f"map_to is a non-empty str, not {map_to!r}")
    if default is not MISSING and default_factory is not MISSING:
        raise SchemaError("field() takes default or default_factory, not both")
    if isinstance(default, (list, dict, set)):
        raise SchemaError(
            "a mutable default would be shared by every object: "
            "use default_factory=list (or dict, set)"
        )
    return Field(default, default_factory, primary_key, indexed, map_to)


class _BacklinkSpec(ValueClass):
    """What :func:`backlinks` returns: the origin's link property."""

    origin_property: str


def backlinks(origin_property: str, *, init: Literal[False] = False) -> Any:
    """Declare an inverse relationship (Realm's ``LinkingObjects`` /
    ``@Backlink``): ``owners: Backlinks["Person"] = backlinks("dogs")``
    on ``Dog`` is every ``Person`` whose ``dogs`` (a to-one, list, set or
    dictionary link property to ``Dog``) links to the dog.  Read-only and
    live, read from the backlink index (:mod:`realmpy.backlinkindex`); stored
    in the schema but not in records, and never synced (it is derived).
    ``init`` only tells type checkers it is no ``__init__`` parameter."""
    if not isinstance(origin_property, str) or not origin_property:
        raise SchemaError(f"backlinks() takes the origin property's name, not {origin_property!r}")
    return _BacklinkSpec(origin_property)


_O = TypeVar("_O", bound="Object")


class Backlinks(Sequence[_O], Generic[_O]):
    """The objects linking to an object through one link property, as
    declared with :func:`backlinks`: a read-only, live sequence (read again
    on each access, so it follows writes and auto-refresh).  Empty for an
    unmanaged object."""

    __slots__ = ("_name", "_owner")

    def __init__(self, owner: _Model, name: str) -> None:
        self._owner = owner
        self._name = name

    def _items(self) -> list[_O]:
        store: Any = self._owner._rp_store
        if store is None:
            return []
        items: list[_O] = store.read_backlinks(self._owner, self._name)
        return items

    def __len__(self) -> int:
        return len(self._items())

    @overload
    def __getitem__(self, i: int) -> _O: ...

    @overload
    def __getitem__(self, i: slice) -> list[_O]: ...

    def __getitem__(self, i: int | slice) -> _O | list[_O]:
        return self._items()[i]

    def __iter__(self) -> Iterator[_O]:
        return iter(self._items())

    def __contains__(self, obj: object) -> bool:
        return obj in self._items()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple, Backlinks)):
            return self._items() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Backlinks({self._items()!r})"

    def results(self) -> Any:
        """The same objects as live :class:`~realmpy.results.Results` of the
        origin class (Realm's ``LinkingObjects`` is a results collection):
        to refine with ``filter``/``sort``/``distinct``, or to listen to.
        Evaluated as a query over the origin class (``dogs == $0``), like
        any results."""
        store: Any = self._owner._rp_store
        if store is None:
            raise ObjectTypeError(
                "backlinks of an unmanaged object have no results: add the object to a realm"
            )
        return store.backlinks_results(self._owner, self._name)

    def add_listener(self, callback: Callable[[Any, Any], None], *, initial: bool = True) -> Any:
        """Realm's listener on linking objects: ``callback(results,
        changes)`` with a :class:`~realmpy.notifier.ResultsChange` whenever
        the set of linking objects (or one of them) changes; see
        :meth:`realmpy.results.Results.add_listener`."""
        return self.results().add_listener(callback, initial=initial)


class _BacklinksDescriptor:
    """The class attribute of a declared backlinks property."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: _Model | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return Backlinks(obj, self.name)

    def __set__(self, obj: _Model, value: Any) -> None:
        raise _read_only(type(obj), self.name)


def _read_only(cls: type, name: str) -> AttributeError:
    return AttributeError(
        f"{cls.__name__}.{name} is backlinks (read-only): change the link "
        "property of the objects that link here instead"
    )


# ----------------------------------------------------------------------------
# Models


class ObjectStore(Protocol):
    """What a managed object needs from its realm (implemented there)."""

    def read_property(self, obj: _Model, name: str) -> Any: ...

    def read_plain(self, obj: _Model, name: str) -> Any:
        """``read_property`` of a property whose stored value is its value
        (a scalar that is not a counter): the descriptors' fast path."""
        ...

    def write_property(self, obj: _Model, name: str, value: Any) -> None: ...

    def increment_property(self, obj: _Model, name: str, delta: int) -> None: ...

    def read_backlinks(self, obj: _Model, name: str) -> list[Any]:
        """The objects the declared backlinks property ``name`` lists."""
        ...

    def backlinks_results(self, obj: _Model, name: str) -> Any:
        """Those objects as live results of their class."""
        ...


_REGISTRY: dict[str, type[_Model]] = {}
# Link/embedded target class of each (model, property), from the resolved
# annotation: models of the same name (tests, reloads) never get mixed up.
_TARGETS: dict[tuple[type, str], type] = {}
_SCHEMAS: dict[type[_Model], ObjectSchema] = {}


class _PropertyDescriptor(PropertyBase):
    """Routes attribute access to memory (unmanaged) or the realm (managed).

    ``__get__`` is C (:class:`realmpy._native.PropertyBase`): for a
    managed object of a :class:`~realmpy.realm.Realm` and a plain property it
    checks the owner thread and the shared version counter, then returns the
    value from the object's cached record if its stamp is the realm's; an
    unmanaged object's non-int value comes straight from its ``__dict__``.
    Every other case calls :meth:`_slow_get` (or ``store.read_plain`` when
    only a check failed), which is the reference semantics."""

    __slots__ = ()

    def __init__(self, name: str) -> None:
        self.name = name
        # Whether the stored value is the value (a scalar, not a counter);
        # known once the schema is (lazily) resolved.
        self.plain = None

    def _slow_get(self, obj: _Model, owner: type | None = None) -> Any:
        store: Any = obj._rp_store
        if store is not None:
            # Managed: the store converts (and binds counters) itself.
            plain = self.plain
            if plain:
                return store.read_plain(obj, self.name)
            if plain is None:
                prop = object_schema(type(obj)).property(self.name)
                self.plain = prop.collection is None and prop.type not in (
                    "link",
                    "embedded",
                    "counter",
                    "mixed",  # may hold links, resolved when read
                )
            return store.read_property(obj, self.name)
        try:
            value = obj.__dict__[self.name]
        except KeyError:
            raise AttributeError(self.name) from None
        if type(value) is int and _is_counter(type(obj), self.name):
            return bind_counter(obj, self.name, value)
        return value

    def __set__(self, obj: _Model, value: Any) -> None:
        store = obj._rp_store
        prop = object_schema(type(obj)).get(self.name)
        assert prop is not None
        if store is None:
            obj._rp_values[self.name] = validate_value(type(obj), prop, value)
        else:
            store.write_property(obj, self.name, value)

    def __delete__(self, obj: _Model) -> None:
        raise AttributeError(f"cannot delete property {self.name!r}")


def _prime_instance_keys(cls: type, names: Iterable[str]) -> None:
    """Enter every name a model's instance dicts hold (its properties) in
    the class's shared dict keys, once, at class creation.

    CPython (3.11) shares one key table among the instance dicts of a
    class, and a new name can only join it while it has room; that room
    shrinks with every instance dict made.  A name that no longer fits
    turns the dict it is set in into a dict of its own (an allocation, a
    copy, and several times the memory).  A throwaway instance puts the
    names in while they fit; only memory layout changes, never what the
    dicts hold.  (Not for a class with a finaliser, which would see the
    throwaway instance.)"""
    if getattr(cls, "__del__", None) is not None:
        return
    try:
        probe: Any = object.__new__(cls)
        d = probe.__dict__
    except Exception:  # pragma: no cover - a model without an instance dict
        return
    for name in names:
        d[name] = None


_M = TypeVar("_M", bound="_Model")


def _restore_unmanaged(cls: type[_M], values: dict[str, Any]) -> _M:
    """An unmanaged ``cls`` object holding ``values`` (a copy's or a
    pickle's reconstructor)."""
    obj = cls.__new__(cls)
    obj.__dict__.update(values)
    return obj


@dataclass_transform(kw_only_default=True, field_specifiers=(field, Field, backlinks))
class _Model(ModelBase):
    """Common base of Object and EmbeddedObject (not a model itself).

    A managed object's state is in the C fields of
    :class:`realmpy._native.ModelBase`, not in its instance dict:
    ``_rp_store`` (its realm, None while unmanaged), ``_rp_key`` (its
    primary-key bytes) and ``_rp_cache`` (``(stamp, record, positions)``:
    its record, read at the realm stamp, by position; None: read it on
    first access)."""

    __realm_name__: ClassVar[str]
    _rp_store: ObjectStore | None
    _rp_fields: ClassVar[dict[str, Field]]
    # Declared backlinks: attribute -> the origin's link property (its name).
    _rp_backlinks: ClassVar[dict[str, str]] = {}

    @classmethod
    def _rp_describe(cls) -> ObjectSchema | None:
        """This model's description (descriptions.Schema.from_models asks);
        None for the base classes, which are not models."""
        if cls in (_Model, Object, EmbeddedObject):
            return None
        return object_schema(cls)

    @property
    def _rp_values(self) -> dict[str, Any]:
        """An unmanaged object's property values, by name.

        They live in the instance dict itself (one dict per object: cheap
        to build); the data descriptors of the properties take precedence
        over it for attribute access, so only they read these entries."""
        return self.__dict__

    def __init_subclass__(cls, name: str | None = None, **kwargs: Any) -> None:
        """``class Person(Object, name="people")`` (Realm's class-level
        ``@MapTo``) names the class ``people`` in the file, its sync schema
        and a dynamic realm; Python code keeps using ``Person``."""
        super().__init_subclass__(**kwargs)
        if cls.__module__ == __name__:
            return
        if name is not None and (not isinstance(name, str) or not name):
            raise SchemaError(f"{cls.__name__}: name= is a non-empty str, not {name!r}")
        fields: dict[str, Field] = {}
        inverse: dict[str, str] = {}
        for base in reversed(cls.__mro__[1:]):
            fields.update(getattr(base, "_rp_fields", {}))
            inverse.update(getattr(base, "_rp_backlinks", {}))
        annotations = _own_annotations(cls)
        for attr in annotations:
            if _is_classvar(annotations[attr]):
                fields.pop(attr, None)
                continue
            _check_property_name(cls, attr)
            raw = cls.__dict__.get(attr, MISSING)
            if isinstance(raw, _BacklinkSpec):
                if issubclass(cls, EmbeddedObject):
                    raise SchemaError(
                        f"{cls.__name__}.{attr}: an embedded object cannot have backlinks"
                    )
                inverse[attr] = raw.origin_property
                continue
            if isinstance(raw, Field):
                f = raw
            elif raw is MISSING:
                f = Field()
            else:
                if isinstance(raw, (list, dict, set)):
                    raise SchemaError(
                        f"{cls.__name__}.{attr}: a mutable default would be shared "
                        "by every object: use field(default_factory=...)"
                    )
                f = Field(default=raw)
            fields[attr] = f
        cls._rp_fields = fields
        cls._rp_backlinks = inverse
        for attr in fields:
            setattr(cls, attr, _PropertyDescriptor(attr))
        for attr in inverse:
            setattr(cls, attr, _BacklinksDescriptor(attr))
        cls.__realm_name__ = name or cls.__dict__.get("__realm_name__", cls.__name__)
        _REGISTRY[cls.__realm_name__] = cls
        _SCHEMAS.pop(cls, None)
        _INIT_PLANS.pop(cls, None)
        if "__init__" not in cls.__dict__:
            # Each model gets its own __init__, generated at first use (when
            # forward references resolve), like a dataclass's.
            type.__setattr__(cls, "__init__", _lazy_init(cls))
        _prime_instance_keys(cls, fields)

    def __init__(self, /, **kwargs: Any) -> None:
        cls = type(self)
        plan = _INIT_PLANS.get(cls)
        if plan is None:
            plan = _init_plan(cls)
        values: dict[str, Any] = {}
        used = 0
        for name, check, kind, default in plan:
            if name in kwargs:
                values[name] = check(kwargs[name])
                used += 1
            elif kind == _PLAIN_DEFAULT:
                values[name] = default  # validated once, immutable
            elif kind == _FACTORY:
                values[name] = check(default())
            elif kind == _COPIED_DEFAULT:
                values[name] = check(default)
            else:
                prop = object_schema(cls).property(name)
                raise ObjectTypeError(
                    f"{cls.__name__}() missing required field {name!r} ({prop.describe()})"
                )
        if used != len(kwargs):
            schema = object_schema(cls)
            names = ", ".join(sorted(k for k in kwargs if k not in values))
            raise ObjectTypeError(
                f"{cls.__name__}() got unknown field(s) {names}; its properties "
                f"are {', '.join(p.name for p in schema.properties)}"
            )
        self.__dict__.update(values)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_rp_") or name in type(self)._rp_fields:
            object.__setattr__(self, name, value)
            return
        if name in type(self)._rp_backlinks:
            raise _read_only(type(self), name)
        raise AttributeError(
            f"{type(self).__name__} has no property {name!r} "
            "(models only store their annotated properties)"
        )

    # Copying and pickling: ModelBase's C fields are no state that pickle
    # knows about, so say what a copy is.  An unmanaged object is its
    # values; a managed one is a handle on a stored object: copy.copy gives
    # another handle on it, and a deep copy or a pickle would have to copy
    # the realm, so they are refused.
    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        if self._rp_store is not None:
            raise TypeError(
                f"a managed {type(self).__name__} cannot be pickled or deep-copied: "
                "build an unmanaged copy from its values instead"
            )
        return (_restore_unmanaged, (type(self), dict(self.__dict__)))

    def __copy__(self) -> Any:
        if self._rp_store is None:
            return _restore_unmanaged(type(self), dict(self.__dict__))
        other = type(self).__new__(type(self))
        other._rp_store = self._rp_store
        other._rp_key = self._rp_key
        return other

    @property
    def is_managed(self) -> bool:
        """True once the object belongs to a realm."""
        return self._rp_store is not None

    def __repr__(self) -> str:
        schema = object_schema(type(self))
        try:
            parts = []
            for p in schema.properties[:6]:
                v = getattr(self, p.name)
                if isinstance(v, _Model):
                    parts.append(f"{p.name}=<{type(v).__name__}>")
                elif p.collection:
                    parts.append(f"{p.name}=<{p.collection} of {len(v)}>")
                else:
                    parts.append(f"{p.name}={v!r}")
            inner = ", ".join(parts)
        except Exception as exc:  # a deleted object or closed realm
            inner = f"<{type(exc).__name__}>"
        return f"{type(self).__name__}({inner})"


def _check_property_name(cls: type, name: str) -> None:
    """Refuse an annotated name that cannot be a property.

    The rule (docs/objects.md): every annotated attribute that is not a
    ``ClassVar`` is a property, ``_id`` and other names with one leading
    underscore included, except names that start with two underscores
    (Python mangles them, and dunders are Python's), names that start with
    ``_rp_`` (realmpy's own state on every model) and the attributes that
    ``Object`` and ``EmbeddedObject`` themselves define (``is_valid``,
    ``add_listener``, ...), which a property would hide."""
    why = ""
    if name.startswith("__"):
        why = "names starting with two underscores are Python's"
    elif name.startswith("_rp_"):
        why = "names starting with _rp_ are realmpy's own"
    else:
        for klass in cls.__mro__[1:]:
            if klass.__module__ in (__name__, ModelBase.__module__, "builtins") and (
                name in vars(klass)
            ):
                why = f"every model has an attribute {name!r}"
                break
    if why:
        raise SchemaError(
            f"{cls.__name__}.{name} cannot be a property ({why}): rename it, "
            "or annotate it ClassVar[...] if it is not stored"
        )


_COUNTERS: dict[tuple[type, str], bool] = {}

# How __init__ fills each property: (name, validator, kind, default).
_REQUIRED: Final = 0
_PLAIN_DEFAULT: Final = 1  # default validated once (an immutable scalar)
_FACTORY: Final = 2  # default_factory(), validated per object
_COPIED_DEFAULT: Final = 3  # a default of a collection property, validated per object
_INIT_PLANS: dict[type, tuple[tuple[str, Callable[[Any], Any], int, Any], ...]] = {}


def _init_plan(cls: type[_Model]) -> tuple[tuple[str, Callable[[Any], Any], int, Any], ...]:
    schema = object_schema(cls)
    plan: list[tuple[str, Callable[[Any], Any], int, Any]] = []
    for prop in schema.properties:
        check = validator(cls, prop)
        f = cls._rp_fields[prop.name]
        if not isinstance(f.default_factory, _Missing):
            plan.append((prop.name, check, _FACTORY, f.default_factory))
        elif f.default is MISSING:
            plan.append((prop.name, check, _REQUIRED, None))
        elif prop.collection is None:
            plan.append((prop.name, check, _PLAIN_DEFAULT, check(f.default)))
        else:
            plan.append((prop.name, check, _COPIED_DEFAULT, f.default))
    out = tuple(plan)
    _INIT_PLANS[cls] = out
    return out


def _lazy_init(cls: type[_Model]) -> Callable[..., None]:
    def __init__(self: _Model, /, **kwargs: Any) -> None:
        if type(self) is not cls:  # pragma: no cover - subclasses have their own
            _Model.__init__(self, **kwargs)
            return
        fast = _compile_init(cls)
        type.__setattr__(cls, "__init__", fast)
        fast(self, **kwargs)

    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    return __init__


def _missing_field(cls: type[_Model], name: str) -> None:
    prop = object_schema(cls).property(name)
    raise ObjectTypeError(f"{cls.__name__}() missing required field {name!r} ({prop.describe()})")


def _unknown_fields(cls: type[_Model], extra: dict[str, Any]) -> None:
    schema = object_schema(cls)
    raise ObjectTypeError(
        f"{cls.__name__}() got unknown field(s) {', '.join(sorted(extra))}; its properties "
        f"are {', '.join(p.name for p in schema.properties)}"
    )


def _exact_type(type_name: str) -> type | None:
    """The class whose exact instances a property of ``type_name`` stores
    unchanged (the fast paths of ``__init__`` and :func:`validator`)."""
    if type_name == "uuid":
        import uuid  # a model with a UUID property: its module is loaded

        return uuid.UUID
    return _EXACT.get(type_name)


_EXACT: Final[dict[str, type]] = {"str": str, "float": float, "bool": bool, "objectid": ObjectId}


def _compile_init(cls: type[_Model]) -> Callable[..., None]:
    """A model's ``__init__(self, *, prop=..., ...)`` in C
    (:class:`realmpy._native.ModelInit`): the same checks, in the same
    order and with the same errors, as the Python one that
    :func:`_compile_init_py` generates (the reference; tests compare them)."""
    plan = _INIT_PLANS.get(cls) or _init_plan(cls)
    schema = object_schema(cls)
    fields = []
    for name, check, kind, default in plan:
        prop = schema.property(name)
        fast, exact = _F_NONE, None
        if prop.collection is None and prop.type in ("int", "counter"):
            fast = _F_INT64
        elif prop.collection is None and _exact_type(prop.type) is not None:
            fast, exact = _F_EXACT, _exact_type(prop.type)
        fields.append((name, kind, fast, exact, check, default))
    init: Callable[..., None] = ModelInit(
        cls,
        tuple(fields),
        _missing_field,
        _unknown_fields,
        _Model.__init__,
        f"{cls.__qualname__}.__init__",
    )
    # What inspect.signature() shows: the parameters of the Python
    # reference, made at the first look (inspect loads then: a program
    # that only makes objects never needs it).
    init._rp_signature_of = lambda: _reference_signature(cls)  # type: ignore[attr-defined]
    return init


def _reference_signature(cls: type[_Model]) -> Any:
    import inspect

    return inspect.signature(_compile_init_py(cls))


# How ModelInit checks a value before calling its validator: never (always
# validate), an int of 64 bits passes, a value of exactly the type passes.
_F_NONE: Final = 0
_F_INT64: Final = 1
_F_EXACT: Final = 2


def _compile_init_py(cls: type[_Model]) -> Callable[..., None]:
    """Generate ``__init__(self, *, prop=..., ...)`` for a model: keyword-only
    parameters with the defaults, each value checked inline when it has
    exactly the stored type, else by the property's validator (which also
    gives the error messages).  Same behaviour as :meth:`_Model.__init__`.

    The reference semantics of the C ``__init__`` (:func:`_compile_init`)."""
    plan = _INIT_PLANS.get(cls) or _init_plan(cls)
    schema = object_schema(cls)
    ns: dict[str, Any] = {
        "_rp_M": MISSING,
        "_rp_cls": cls,
        "_rp_missing": _missing_field,
        "_rp_unknown": _unknown_fields,
        "_rp_type": type,
        "_rp_int": int,
    }
    params: list[str] = []
    body: list[str] = []
    for i, (name, _check, kind, default) in enumerate(plan):
        prop = schema.property(name)
        ns[f"_rp_c{i}"] = _check
        if prop.collection is None and prop.type in ("int", "counter"):
            check = (
                f"if _rp_type({name}) is not _rp_int or not "
                f"{_INT_MIN} <= {name} <= {_INT_MAX}: {name} = _rp_c{i}({name})"
            )
        elif prop.collection is None and _exact_type(prop.type) is not None:
            ns[f"_rp_t{i}"] = _exact_type(prop.type)
            check = f"if _rp_type({name}) is not _rp_t{i}: {name} = _rp_c{i}({name})"
        else:
            check = f"{name} = _rp_c{i}({name})"
        if kind == _PLAIN_DEFAULT:
            ns[f"_rp_d{i}"] = default
            params.append(f"{name}=_rp_d{i}")
            body.append(f"    if {name} is not _rp_d{i}:")
            body.append(f"        {check}")
            continue
        params.append(f"{name}=_rp_M")
        if kind == _REQUIRED:
            body.append(f"    if {name} is _rp_M: _rp_missing(_rp_cls, {name!r})")
        elif kind == _FACTORY:
            ns[f"_rp_f{i}"] = default
            body.append(f"    if {name} is _rp_M: {name} = _rp_f{i}()")
        else:  # _COPIED_DEFAULT
            ns[f"_rp_d{i}"] = default
            body.append(f"    if {name} is _rp_M: {name} = _rp_d{i}")
        body.append(f"    {check}")
    star = "*, " if params else ""
    src = (
        f"def __init__(_rp_self_, {star}{', '.join(params)}{', ' if params else ''}**_rp_extra):\n"
        + "".join(line + "\n" for line in body)
        + "    if _rp_extra: _rp_unknown(_rp_cls, _rp_extra)\n"
        + "    _rp_d_ = _rp_self_.__dict__\n"
        + "".join(f"    _rp_d_[{n!r}] = {n}\n" for n, _, _, _ in plan)
    )
    exec(src, ns)  # generated from identifiers of the model's own annotations
    fn: Callable[..., None] = ns["__init__"]
    fn.__qualname__ = f"{cls.__qualname__}.__init__"
    return fn


def bind_counter(obj: _Model, name: str, value: int) -> Counter:
    """A :class:`Counter` with ``value`` bound to ``obj.name``."""
    c = Counter(value)
    c._owner = obj
    c._name = name
    return c


def _is_counter(cls: type[_Model], name: str) -> bool:
    key = (cls, name)
    hit = _COUNTERS.get(key)
    if hit is None:
        hit = _COUNTERS[key] = object_schema(cls).property(name).type == "counter"
    return hit


def _own_annotations(cls: type) -> dict[str, Any]:
    """The annotations a class body declares (not inherited):
    ``inspect.get_annotations(cls)`` without importing ``inspect``, which
    a local realm's import path has no other use for."""
    if sys.version_info >= (3, 14):  # pragma: no cover - annotations are made on demand
        import annotationlib

        return dict(annotationlib.get_annotations(cls))
    ann = cls.__dict__.get("__annotations__")  # noqa: RUF063 (3.14+ above)
    if ann is None or isinstance(ann, types.GetSetDescriptorType):
        return {}
    if not isinstance(ann, dict):
        raise ValueError(f"{cls!r}.__annotations__ is neither a dict nor None")
    return dict(ann)


def _is_classvar(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return annotation.startswith(("ClassVar", "typing.ClassVar"))
    return typing.get_origin(annotation) is ClassVar


class Object(_Model):
    """Base class of top-level models (each has its own table).

    ``class Person(Object): name: str = field(indexed=True); age: int = 0``
    """

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Object):
            return NotImplemented
        if self._rp_store is None or other._rp_store is None:
            return self is other
        return (
            type(self) is type(other)
            and self._rp_key == other._rp_key
            and _store_path(self._rp_store) == _store_path(other._rp_store)
        )

    def __hash__(self) -> int:
        if self._rp_store is None:
            return id(self)
        return hash((type(self).__realm_name__, self._rp_key))

    @property
    def is_valid(self) -> bool:
        """False once the object was deleted or its realm closed."""
        store = self._rp_store
        if store is None:
            return True
        try:
            store.read_property(self, next(iter(type(self)._rp_fields)))
        except Exception:
            return False
        return True

    def add_listener(self, callback: Callable[[Any], None], *, initial: bool = True) -> Any:
        """Call ``callback(change)`` once with the object as it is
        (``change.is_initial``; skipped with ``initial=False``), then after
        each version that changes this managed object (``change.is_deleted``,
        ``change.properties``); returns a token with ``remove()``.  See
        :mod:`realmpy.notifier` for the thread it runs on."""
        return add_listener("object", self, callback, initial)


class EmbeddedObject(_Model):
    """Base class of models stored inside their parent object.

    An embedded object has no primary key and no table; it lives and dies
    with the object (or collection element) that holds it.
    """

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EmbeddedObject):
            return NotImplemented
        if type(self) is not type(other):
            return False
        if self is other:
            return True
        schema = object_schema(type(self))
        return all(getattr(self, p.name) == getattr(other, p.name) for p in schema.properties)

    __hash__ = None  # type: ignore[assignment]


def _store_path(store: Any) -> Any:
    return getattr(store, "path", id(store))


def object_schema(cls: type[_Model]) -> ObjectSchema:
    """The :class:`ObjectSchema` of a model class (built once, cached)."""
    cached = _SCHEMAS.get(cls)
    if cached is not None:
        return cached
    schema = _build_schema(cls)
    _SCHEMAS[cls] = schema
    return schema


def _build_schema(cls: type[_Model]) -> ObjectSchema:
    module = sys.modules.get(cls.__module__)
    localns: dict[str, Any] = {n: c for n, c in _REGISTRY.items()}
    localns.update({c.__name__: c for c in _REGISTRY.values()})
    if module is not None:
        localns.update(vars(module))
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        ann = _own_annotations(klass)
        for name, raw in ann.items():
            if name not in cls._rp_fields and name not in cls._rp_backlinks:
                continue
            hints[name] = _resolve_refs(raw, localns, cls, name)
    embedded = issubclass(cls, EmbeddedObject)
    props = []
    for name, f in cls._rp_fields.items():
        p = _property(cls, name, hints[name], f)
        if embedded and p.primary_key:
            raise SchemaError(f"embedded object {cls.__name__} cannot have a primary key")
        if embedded and p.map_to is not None:
            # Embedded records are maps by property name inside their
            # parent's record; mapping those names is not supported yet.
            raise SchemaError(
                f"{cls.__name__}.{name}: map_to is not supported on embedded objects yet"
            )
        props.append(p)
    if not props:
        raise SchemaError(
            f"{cls.__name__} has no properties: annotate at least one (e.g. "
            "'_id: ObjectId = field(primary_key=True, default_factory=ObjectId)')"
        )
    _check_file_names(cls, props)
    pks = [p.name for p in props if p.primary_key]
    if len(pks) > 1:
        raise SchemaError(f"{cls.__name__} has several primary keys: {pks}")
    _BUILDING[cls] = tuple(props)  # for backlinks to cls declared on cls or on a class it links
    try:
        inverse = tuple(
            _backlink(cls, name, hints[name], origin_prop)
            for name, origin_prop in cls._rp_backlinks.items()
        )
    finally:
        del _BUILDING[cls]
    return ObjectSchema(cls.__realm_name__, tuple(props), embedded, inverse)


# The properties of the classes whose schema is being built: a backlink
# declared on a class needs its origin's properties only, and the origin may
# be that class itself (``parent``/``children``) or be building it (classes
# declaring backlinks to each other), before any schema is cached.
_BUILDING: dict[type, tuple[Property, ...]] = {}


def _backlink(cls: type[_Model], name: str, tp: Any, origin_prop: str) -> Backlink:
    """The :class:`Backlink` of ``name: Backlinks[Origin] = backlinks(origin_prop)``."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) is not Backlinks or len(args) != 1:
        raise SchemaError(
            f"{cls.__name__}.{name}: backlinks() needs the annotation "
            f"Backlinks[OriginModel], not {tp!r}"
        )
    origin = args[0]
    if not (isinstance(origin, type) and issubclass(origin, Object)):
        raise SchemaError(
            f"{cls.__name__}.{name}: Backlinks[...] takes a model class, not {origin!r}"
        )
    building = _BUILDING.get(origin)
    prop = (
        next((p for p in building if p.name == origin_prop), None)
        if building is not None
        else object_schema(origin).get(origin_prop)
    )
    if prop is None or prop.type != "link" or prop.target != cls.__realm_name__:
        raise SchemaError(
            f"{cls.__name__}.{name}: {origin.__name__}.{origin_prop} is not a link "
            f"property to {cls.__name__} (to-one, list, set or dict of {cls.__name__})"
        )
    return Backlink(name, origin.__realm_name__, prop.file_name)


def _check_file_names(cls: type, props: list[Property]) -> None:
    """Each property's file name is unique in its class, and no property's
    Python name is another's file name (which would make a file written
    with one naming read as the other)."""
    seen: dict[str, str] = {}
    for p in props:
        other = seen.get(p.file_name)
        if other is not None:
            raise SchemaError(
                f"{cls.__name__}.{p.name} and {cls.__name__}.{other} are both stored "
                f"as {p.file_name!r}: give them different map_to names"
            )
        seen[p.file_name] = p.name
    for p in props:
        owner = seen.get(p.name)
        if owner is not None and owner != p.name:
            raise SchemaError(
                f"{cls.__name__}.{p.name} has the file name of {cls.__name__}.{owner} "
                f"(map_to={p.name!r}): rename one of them"
            )


def _resolve_refs(tp: Any, localns: dict[str, Any], cls: type, name: str) -> Any:
    """Evaluate string annotations and forward references, also inside
    ``list["Dog"]`` or ``Optional["Dog"]`` (no ``from __future__`` needed)."""
    if isinstance(tp, typing.ForwardRef):
        tp = tp.__forward_arg__
    if isinstance(tp, str):
        try:
            tp = eval(tp, dict(localns), {})  # annotation text
        except NameError as exc:
            raise SchemaError(
                f"{cls.__name__}.{name}: cannot resolve annotation {tp!r} "
                f"({exc}); define the referenced model before using "
                f"{cls.__name__}"
            ) from None
        return _resolve_refs(tp, localns, cls, name)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is None or not args:
        return tp
    resolved = tuple(_resolve_refs(a, localns, cls, name) for a in args)
    if resolved == args:
        return tp
    if origin is typing.Union or origin is types.UnionType:
        return typing.Union[resolved]
    if origin in (list, set, dict):
        return origin[resolved]
    if origin is Backlinks:
        return typing.cast(Any, Backlinks)[resolved]
    return tp


def _split_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != len(typing.get_args(tp)) - 1 or len(args) != 1:
            raise SchemaError(f"only 'T | None' unions are supported, not {tp!r}")
        return args[0], True
    return tp, False


def _element(cls: type, name: str, tp: Any) -> tuple[str, str | None, bool]:
    """(type name, target, optional) of a non-collection annotation."""
    inner, optional = _split_optional(tp)
    if isinstance(inner, typing.ForwardRef):
        raise SchemaError(f"{cls.__name__}.{name}: unresolved forward reference {inner}")
    scalar = _scalar_name(inner)
    if scalar is not None:
        return scalar, None, optional
    if inner is Mixed:  # realmpy.Mixed is typing.Any; a mixed value may be None
        return "mixed", None, True
    if isinstance(inner, type) and issubclass(inner, EmbeddedObject):
        _TARGETS[(cls, name)] = inner
        return "embedded", inner.__realm_name__, optional
    if isinstance(inner, type) and issubclass(inner, Object):
        _TARGETS[(cls, name)] = inner
        return "link", inner.__realm_name__, optional
    raise SchemaError(
        f"{cls.__name__}.{name}: unsupported type {tp!r}; use bool, int, float, "
        "str, bytes, datetime, Decimal, ObjectId, UUID, Counter, Mixed, a model "
        "class, or list/set/dict of those"
    )


def _property(cls: type, name: str, tp: Any, f: Field) -> Property:
    origin = typing.get_origin(tp)
    collection: str | None = None
    if origin in (list, set, dict):
        args = typing.get_args(tp)
        if origin is dict:
            if len(args) != 2 or args[0] is not str:
                raise SchemaError(f"{cls.__name__}.{name}: dictionaries need str keys")
            elem = args[1]
        else:
            if len(args) != 1:
                raise SchemaError(f"{cls.__name__}.{name}: {tp!r} needs one type")
            elem = args[0]
        collection = origin.__name__
        type_name, target, optional = _element(cls, name, elem)
        if type_name == "counter":
            raise SchemaError(f"{cls.__name__}.{name}: counters cannot be in a collection")
        if type_name == "link" and optional and collection != "dict":
            raise SchemaError(f"{cls.__name__}.{name}: links in a list or set cannot be None")
        if type_name == "embedded" and collection == "set":
            raise SchemaError(f"{cls.__name__}.{name}: a set cannot hold embedded objects")
    elif origin is not None and origin not in (typing.Union, types.UnionType):
        raise SchemaError(f"{cls.__name__}.{name}: unsupported generic {tp!r}")
    else:
        type_name, target, optional = _element(cls, name, tp)
        if type_name in ("link", "embedded") and not optional:
            raise SchemaError(
                f"{cls.__name__}.{name}: a to-one link must be optional: "
                f"annotate it '{target} | None'"
            )
    if f.primary_key:
        if collection or type_name not in PRIMARY_KEY_TYPES:
            raise SchemaError(
                f"{cls.__name__}.{name}: a primary key must be int, str, ObjectId "
                f"or UUID, not {tp!r}"
            )
    fulltext = f.indexed == "fulltext"
    if fulltext and (collection or type_name != "str" or f.primary_key):
        raise SchemaError(
            f'{cls.__name__}.{name}: indexed="fulltext" needs a str property '
            f"(not a primary key), not {tp!r}"
        )
    if f.indexed is True and (collection or type_name not in INDEXABLE_TYPES):
        raise SchemaError(
            f"{cls.__name__}.{name}: cannot index {tp!r} (indexable: "
            + ", ".join(sorted(INDEXABLE_TYPES))
            + ")"
        )
    return Property(
        name,
        type_name,
        collection,
        optional,
        target,
        f.primary_key,
        f.indexed is True or f.primary_key,
        f.map_to if f.map_to != name else None,
        fulltext,
    )


# ----------------------------------------------------------------------------
# Validation of values given by the user

_INT_MIN: Final = -(1 << 63)
_INT_MAX: Final = (1 << 63) - 1


def _bad(cls: type, prop: Property, value: Any, why: str = "") -> ObjectTypeError:
    extra = f" ({why})" if why else ""
    return ObjectTypeError(
        f"{cls.__name__}.{prop.name} expects {prop.describe()}, got "
        f"{type(value).__name__} {value!r:.60}{extra}"
    )


def validate_scalar(cls: type, prop: Property, value: Any) -> Any:
    """Check and normalise one non-collection value for ``prop``."""
    if prop.type == "mixed":
        return _validate_mixed(
            f"{cls.__name__}.{prop.name}", value, nested=prop.collection != "set"
        )
    if value is None:
        if prop.optional:
            return None
        raise _bad(cls, prop, value, "it is not optional")
    t = prop.type
    if t in ("int", "counter"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(cls, prop, value)
        if not _INT_MIN <= value <= _INT_MAX:
            raise _bad(cls, prop, value, "out of the 64-bit range")
        return int(value)
    if t == "bool":
        if not isinstance(value, bool):
            raise _bad(cls, prop, value)
        return value
    if t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(cls, prop, value)
        return float(value)
    if t == "str":
        if not isinstance(value, str):
            raise _bad(cls, prop, value)
        return value
    if t == "bytes":
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise _bad(cls, prop, value)
        return bytes(value)
    if t == "datetime":
        import datetime  # loaded: a model names it

        if not isinstance(value, datetime.datetime):
            raise _bad(cls, prop, value)
        if value.tzinfo is None or value.utcoffset() is None:
            raise _bad(cls, prop, value, "naive datetime: give it a tzinfo")
        return value
    if t == "decimal":
        from decimal import Decimal  # loaded: a model names it

        if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
            raise _bad(cls, prop, value)
        return Decimal(value)
    if t == "objectid":
        if not isinstance(value, ObjectId):
            raise _bad(cls, prop, value)
        return value
    if t == "uuid":
        import uuid  # loaded: a model names it

        if not isinstance(value, uuid.UUID):
            raise _bad(cls, prop, value)
        return value
    if t in ("link", "embedded"):
        target = _TARGETS.get((cls, prop.name)) or _REGISTRY.get(prop.target or "")
        if target is None or not isinstance(value, target):
            raise _bad(cls, prop, value)
        return value
    raise SchemaError(f"unknown property type {t!r}")


def validate_value(cls: type, prop: Property, value: Any) -> Any:
    """Check and normalise a whole property value (collections included)."""
    if prop.collection is None:
        return validate_scalar(cls, prop, value)
    if prop.collection == "dict":
        if not isinstance(value, Mapping):
            raise _bad(cls, prop, value)
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _bad(cls, prop, value, f"key {k!r} is not a str")
            out[k] = validate_scalar(cls, prop, v)
        return out
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise _bad(cls, prop, value)
    items = [validate_scalar(cls, prop, v) for v in value]
    if prop.collection == "set":
        try:
            return set(items)
        except TypeError as exc:
            raise _bad(cls, prop, value, str(exc)) from None
    return items


def validator(cls: type, prop: Property) -> Callable[[Any], Any]:
    """A one-argument :func:`validate_value` for ``prop``, with a fast path
    for values of exactly the stored type (the common case)."""
    if prop.collection is None:
        exact = int if prop.type in ("int", "counter") else _exact_type(prop.type)
        if exact is int:

            def check_int(value: Any) -> Any:
                if type(value) is int and _INT_MIN <= value <= _INT_MAX:
                    return value
                return validate_scalar(cls, prop, value)

            return check_int
        if exact is not None:

            def check_exact(value: Any) -> Any:
                if type(value) is exact:
                    return value
                return validate_scalar(cls, prop, value)

            return check_exact

        def check_scalar(value: Any) -> Any:
            return validate_scalar(cls, prop, value)

        return check_scalar

    def check_value(value: Any) -> Any:
        return validate_value(cls, prop, value)

    return check_value
