"""Immutable value classes that cost a plain class to define.

Why not ``@dataclass(frozen=True)``: the ``dataclasses`` module imports
``inspect`` (and with it ``ast``, ``dis`` and ``tokenize``), and each class
it builds compiles half a dozen generated methods (twice the class with
``slots=True``).  For the dozen value classes a local realm defines
(schema descriptions, field options, the configuration, statistics) that
was about half of ``import realmpy`` (issue 15).

A subclass of :class:`ValueClass` is written like a dataclass: annotated
fields, optional defaults, an optional ``__post_init__``.  Its instances behave like
those of ``@dataclass(frozen=True, slots=True)``: ``__init__`` takes the
fields positionally or by name in declaration order, the repr lists them,
equality and hashing compare them (only with an instance of the same class),
assigning or deleting an attribute raises
``dataclasses.FrozenInstanceError``, and copy/pickle rebuild through
``__init__``.  ``dataclasses.fields``/``replace``/``asdict``/``is_dataclass``
keep working: ``__dataclass_fields__`` is built the first time one of them
asks (by then the caller has imported ``dataclasses`` anyway).
``class C(ValueClass, slots=False)`` keeps an instance dict (for a class
that had one as a dataclass).

The defining modules use ``from __future__ import annotations``: the field
names come from the class body's ``__annotations__``.  A ``ClassVar[...]``
annotation is a class attribute, not a field.
"""

from __future__ import annotations

import sys
from operator import attrgetter
from typing import TYPE_CHECKING, Any, ClassVar

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # pragma: no cover - CPython 3.10 takes it from the backport (setup.cfg)
    from typing_extensions import dataclass_transform

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ValueClass"]


class _ValueClassMeta(type):
    """Turns the annotated class body into slots and per-class field tables."""

    def __new__(
        mcls, name: str, bases: tuple[type, ...], ns: dict[str, Any], *, slots: bool = True
    ) -> _ValueClassMeta:
        annotations: dict[str, Any] = ns.get("__annotations__", {})
        own = tuple(
            n
            for n, a in annotations.items()
            if not (isinstance(a, str) and a.startswith(("ClassVar", "typing.ClassVar")))
        )
        # A class attribute of a slot's name would shadow the slot: the
        # defaults move into a table that __init__ reads.
        defaults = {n: ns.pop(n) for n in own if n in ns}
        if slots:
            ns["__slots__"] = own
        cls: Any = super().__new__(mcls, name, bases, ns)
        inherited: tuple[str, ...] = getattr(cls, "_rp_fields", ())
        fields = inherited + tuple(n for n in own if n not in inherited)
        cls._rp_fields = fields
        cls._rp_defaults = {**getattr(cls, "_rp_defaults", {}), **defaults}
        cls._rp_post_init = getattr(cls, "__post_init__", None)
        # The field values as a tuple (equality, hash, repr, copies): a C
        # getter, stored where no binding makes it a method (call it with self).
        if len(fields) > 1:
            cls._rp_values = attrgetter(*fields)
        elif fields:
            one = attrgetter(fields[0])
            cls._rp_values = staticmethod(lambda obj: (one(obj),))
        cls.__match_args__ = fields  # type: ignore[misc]  # (mypy: a class attribute of every class)
        return cls  # type: ignore[no-any-return]


class _DataclassFields:
    """``__dataclass_fields__``, made on first access (see the module doc):
    the fields of an equivalent dataclass, so that the ``dataclasses``
    functions treat the class as one."""

    def __get__(self, obj: object, cls: type[ValueClass]) -> dict[str, Any]:
        if cls is ValueClass:
            raise AttributeError("__dataclass_fields__")  # the base is no dataclass
        import dataclasses

        shadow = dataclasses.make_dataclass(
            cls.__name__,
            [
                (n, Any, dataclasses.field(default=cls._rp_defaults[n]))
                if n in cls._rp_defaults
                else (n, Any)
                for n in cls._rp_fields
            ],
            frozen=True,
        )
        fields: dict[str, Any] = shadow.__dataclass_fields__  # type: ignore[attr-defined]
        type.__setattr__(cls, "__dataclass_fields__", fields)
        return fields


def _values(obj: ValueClass) -> tuple[Any, ...]:
    """The field values of ``obj``, in declaration order."""
    return type(obj)._rp_values(obj)


def _frozen(name: str) -> AttributeError:
    import dataclasses

    return dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


@dataclass_transform(frozen_default=True)
class ValueClass(metaclass=_ValueClassMeta):
    """Base of the immutable value classes (see the module doc)."""

    _rp_fields: ClassVar[tuple[str, ...]] = ()
    _rp_defaults: ClassVar[dict[str, Any]] = {}
    _rp_post_init: ClassVar[Callable[[Any], None] | None] = None
    _rp_values: ClassVar[Callable[[Any], tuple[Any, ...]]] = staticmethod(lambda obj: ())
    __dataclass_fields__: ClassVar[Any] = _DataclassFields()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        fields = cls._rp_fields
        if len(args) > len(fields):
            raise TypeError(
                f"{cls.__name__}() takes {len(fields)} positional arguments "
                f"but {len(args)} were given"
            )
        put = object.__setattr__
        for name, value in zip(fields, args):
            put(self, name, value)
        if len(args) < len(fields) or kwargs:
            defaults = cls._rp_defaults
            for name in fields[: len(args)]:
                if name in kwargs:
                    raise TypeError(f"{cls.__name__}() got multiple values for argument {name!r}")
            for name in fields[len(args) :]:
                if name in kwargs:
                    put(self, name, kwargs[name])
                elif name in defaults:
                    put(self, name, defaults[name])
                else:
                    raise TypeError(f"{cls.__name__}() missing required argument: {name!r}")
            if not all(n in fields for n in kwargs):
                extra = ", ".join(repr(n) for n in kwargs if n not in fields)
                raise TypeError(f"{cls.__name__}() got unexpected keyword argument(s) {extra}")
        post = cls._rp_post_init
        if post is not None:
            post(self)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={v!r}" for n, v in zip(self._rp_fields, _values(self)))
        return f"{type(self).__qualname__}({inner})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return bool(_values(self) == _values(other))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(_values(self))

    def __setattr__(self, name: str, value: Any) -> None:
        raise _frozen(name)

    def __delattr__(self, name: str) -> None:
        raise _frozen(name)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), _values(self))

    def _replace(self, **changes: Any) -> Any:
        """A copy with ``changes`` (``dataclasses.replace`` without importing it)."""
        return type(self)(**{**dict(zip(self._rp_fields, _values(self))), **changes})

    __replace__ = _replace  # copy.replace (Python 3.13), as a dataclass has it
