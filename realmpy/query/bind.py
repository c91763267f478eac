"""Binding a parsed query to a class of a schema: the type checks Realm makes
when a query is built.

Why: the interpreter compares anything with anything (a string is simply
never greater than a number), which is right for schema-less records (the
server's permission rules) but turns a typo such as ``age > 'x'`` into a
silent "no results".  Realm rejects such queries when they are built; so
does :func:`bind`, raising :class:`~realmpy.errors.QueryTypeError` (which
names the key path, its type and the offending value) for:

- a literal, ``$argument`` or list element of a type the property never
  holds (``intCol == 'x'``, ``boolCol == 0`` and ``intCol == false`` alike,
  a naive datetime for a datetime property);
- a string operator on a property that is not a string (or, for ``LIKE``
  and the others, bytes);
- an aggregate on a property it does not apply to (``@sum`` of strings,
  ``@min.name``, ``age.@size``, ``@keys`` of a list);
- ``ANY``/``ALL``/``NONE`` on a key path that goes through no collection,
  ``BETWEEN`` on a collection, ``NULL`` compared with a list of links;
- two key paths of types that never compare (``name == age``).

Unknown properties raise :class:`~realmpy.errors.QueryArgumentError` as
before.  The checks of literals and key paths run once per (class, text);
the ``$argument`` checks are collected in a :class:`Binding` and run on each
call's arguments (a walk of a few tuples).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import uuid
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from realmpy.errors import QueryArgumentError, QueryTypeError, QueryUnsupportedError
from realmpy.objectid import ObjectId
from realmpy.query.api import Query
from realmpy.query.ast import (
    AGGREGATES,
    And,
    Arg,
    ArgKey,
    Arith,
    Between,
    Collection,
    Comparison,
    Const,
    Descriptor,
    Distinct,
    Each,
    FullText,
    GeoWithin,
    KeyPath,
    Length,
    LinksPart,
    ListExpr,
    ListIndex,
    Node,
    Not,
    ObjLit,
    OfMixed,
    Or,
    PerCollection,
    Sort,
    Subquery,
    Var,
)
from realmpy.query.typeof import TYPE_NAMES, TYPE_OF, ElementTypes, is_type_name
from realmpy.schema import ObjectSchema, Property

__all__ = ["Binding", "bind"]

_NUMERIC: Final = frozenset({"int", "counter", "float", "decimal"})
_STRINGY: Final = frozenset({"str", "bytes"})
# What aggregates apply to, by element type.
_SUMMABLE: Final = _NUMERIC
_ORDERABLE: Final = _NUMERIC | {"datetime"}
_KNOWN: Final = _NUMERIC | _STRINGY | {"bool", "datetime", "objectid", "uuid", "link", "embedded"}


@dataclass(frozen=True, slots=True)
class _Type:
    """The type of a key path: ``type`` as in :class:`Property` (``"any"`` when
    realmpy cannot tell, e.g. through a dictionary of embedded objects'
    unknown keys), whether it is still a ``collection`` (``"list"``, ``"set"``,
    ``"dict"``), whether it went through one (``many``), and the object schema
    it names when it is a link or an embedded object."""

    type: str
    collection: str | None = None
    optional: bool = True
    many: bool = False
    target: ObjectSchema | None = None

    def describe(self) -> str:
        base = self.target.name if self.target is not None else self.type
        if self.collection is not None:
            return f"{self.collection}[{base}]"
        return base


_INT: Final = _Type("int", optional=False)
# What ``path.@type`` reads: a type name (realmpy.query.typeof), of a mixed
# value (varies) or of a typed property (fixed by the schema: comparing it
# with a literal is comparing two constants, which Realm refuses).
_TYPEOF: Final = "typeof"
_TYPEOF_FIXED: Final = "typeof (fixed)"
_TYPES_OF: Final = frozenset({_TYPEOF, _TYPEOF_FIXED})
_NUMBER_AGGREGATES: Final = frozenset({"@sum", "@avg", "@min", "@max"})
_ANY: Final = _Type("any")


def _value_fits(t: _Type, v: Any) -> bool:
    """Can ``v`` be compared with a value of type ``t``?"""
    if v is None or t.type == "any":
        return True
    ty = t.type
    if ty in ("int", "counter") and isinstance(v, (float, Decimal)) and not math.isfinite(v):
        return False  # as Realm: "Infinity/NaN not supported for int"
    if ty in _NUMERIC:
        return isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)
    if ty == "bool":
        return isinstance(v, bool)
    if ty == "str":
        return isinstance(v, str)
    if ty == "bytes":
        return isinstance(v, bytes)
    if ty == "datetime":
        return isinstance(v, _dt.datetime) and v.tzinfo is not None
    if ty == "objectid":
        return isinstance(v, ObjectId)
    if ty == "uuid":
        return isinstance(v, uuid.UUID)
    if ty in ("link", "embedded"):
        return not isinstance(
            v, (int, float, Decimal, str, bytes, _dt.datetime, ObjectId, uuid.UUID)
        )
    if ty in _TYPES_OF:
        return is_type_name(v)
    return True


def _quoted_number(t: _Type, v: Any) -> Const | None:
    """A string literal spelling a number, compared with a number property:
    the number (Realm reads ``intCol == '5'`` as ``intCol == 5``)."""
    if not isinstance(v, str) or t.type not in _NUMERIC:
        return None
    try:
        if t.type in ("int", "counter"):
            return Const(int(v.strip(), 10))
        exact = Decimal(v.strip())
    except (ValueError, ArithmeticError):
        return None
    if not exact.is_finite() and v.strip().lower() not in ("inf", "-inf", "+inf", "nan"):
        return None
    return Const(exact) if t.type == "decimal" else Const(float(exact), exact)


def _types_compare(a: _Type, b: _Type) -> bool:
    if "any" in (a.type, b.type):
        return True
    if a.type in _TYPES_OF and b.type in _TYPES_OF:
        return True
    if a.type in _NUMERIC and b.type in _NUMERIC:
        return True
    if {a.type, b.type} <= _STRINGY:
        return True
    if a.type in ("link", "embedded") or b.type in ("link", "embedded"):
        return a.type == b.type and (a.target is None or b.target is None or a.target is b.target)
    return a.type == b.type


@dataclass(frozen=True, slots=True)
class _ArgCheck:
    index: int
    path: str
    type: _Type


def _check_quantifier(quantifier: str | None, t: _Type, text: str) -> None:
    """ANY/ALL/NONE only on a key path through a list (``text`` names the path)."""
    if quantifier is not None and not (t.many or t.collection):
        raise QueryTypeError(
            f"{quantifier} needs a key path through a list, but {text!r} is {t.describe()}",
            text,
            t.describe(),
            quantifier,
        )


def _per_collection(before: _Type, last: str, after: _Type) -> bool:
    """Whether a key path's last part, read from ``before``, reads into
    collections, several of them (``before.many``): realm-core then compares
    each on its own (:class:`PerCollection`)."""
    if type(last) is LinksPart:
        return False
    objects = before.type == "link" and before.collection in ("list", "set")
    if not (before.many or (objects and type(last) is not ListIndex)):
        return False
    if last in AGGREGATES:
        return last in ("@keys", "@values")
    return (
        (type(last) is ListIndex and last != "SIZE")
        or before.collection == "dict"  # a dictionary's key
        or (before.type == "any" and before.collection is None)  # a key in a mixed value
        or after.collection is not None  # a list, set or dictionary property
    )


class Binding:
    """A query bound to a class: ``query``, the query to evaluate (key paths
    made exact where the schema tells more than the text), and the
    ``$argument`` checks left for each call."""

    __slots__ = ("_checks", "query")

    def __init__(self, query: Query, checks: Sequence[_ArgCheck]) -> None:
        self.query = query
        self._checks = tuple(checks)

    def check_args(self, args: Sequence[Any]) -> None:
        """Raise :class:`QueryTypeError` if an argument cannot be compared
        with the key path it is compared with."""
        for c in self._checks:
            if c.index >= len(args):
                continue  # the caller reports missing arguments
            v = args[c.index]
            if isinstance(v, (list, tuple, Set)):
                continue  # as Realm: a list's elements of other types never match
            if not _value_fits(c.type, v):
                raise _mismatch(c.path, c.type, v, f"${c.index}")


def _mismatch(path: str, t: _Type, v: Any, where: str = "") -> QueryTypeError:
    hint = ""
    if isinstance(v, _dt.datetime) and v.tzinfo is None and t.type == "datetime":
        hint = ": a naive datetime is ambiguous, give it a tzinfo (e.g. datetime.timezone.utc)"
    if t.type == "bytes" and isinstance(v, str):
        hint = (
            ': bytes literals are bin("…") or bin(B64"…") (B64"…" alone is a string, as in Realm)'
        )
    at = f" ({where})" if where else ""
    if t.type in _TYPES_OF:
        hint = ": @type compares with Realm's type names, case-insensitive: " + ", ".join(
            TYPE_NAMES
        )
    return QueryTypeError(
        f"cannot compare {path!r} ({t.describe()}) with {type(v).__name__} {v!r:.60}{at}{hint}",
        path,
        t.describe(),
        v,
    )


class _Binder:
    def __init__(
        self,
        schema_of: Callable[[str], ObjectSchema],
        root: ObjectSchema,
        classes: Sequence[ObjectSchema] = (),
    ) -> None:
        self.schema_of = schema_of
        self.classes = classes
        self.root = root
        self.checks: list[_ArgCheck] = []
        self.vars: dict[str, _Type] = {}  # SUBQUERY variables
        # Nodes the schema reads more exactly than the text, by id: a key
        # path ending in a string's length, a quoted number for a number.
        self.replace: dict[int, Node] = {}

    # -- key paths
    def path_type(self, path: KeyPath) -> _Type:
        parts = path.parts
        cur: _Type
        if parts[0] in self.vars:  # a SUBQUERY variable
            cur = self.vars[parts[0]]
            parts = parts[1:]
        else:
            cur = _Type("object", optional=False, target=self.root)
        skip = len(path.parts) - len(parts)
        exact = list(path.parts)  # the parts as the schema reads them
        before = cur
        for i, part in enumerate(parts, skip):
            before = cur
            renamed = self.by_file_name(cur, part)
            if renamed is not None:
                part = exact[i] = renamed
            cur = self.step(cur, part, path)
            if part == "length" and before.type in _STRINGY:
                exact[i] = Length(part)  # a null string has length 0
            elif part == TYPE_OF and before.collection is not None:
                exact[i] = ElementTypes(part)  # the type of each element
            elif part in _NUMBER_AGGREGATES and before.type == "any":
                exact[i] = OfMixed(part)  # mixed values: the numbers among them
            elif cur.collection is not None and before.type == "link" and not before.collection:
                exact[i] = Collection(part)  # through a null link: an empty collection
        grouped = bool(parts) and _per_collection(before, exact[-1], cur)
        if (
            grouped
            or exact != list(path.parts)
            or any(type(a) is not type(b) for a, b in zip(exact, path.parts))
        ):
            self.replace[id(path)] = (PerCollection if grouped else KeyPath)(tuple(exact))
        return cur

    @staticmethod
    def by_file_name(cur: _Type, part: str) -> str | None:
        """The property name of ``part`` when it names a property of
        ``cur``'s class by its name in the file (``field(map_to=…)``, as
        queries written for other Realm SDKs do); None otherwise."""
        schema = cur.target
        if schema is None or type(part) is not str or schema.get(part) is not None:
            return None
        prop = schema.by_file_name(part)
        return prop.name if prop is not None else None

    def step(self, cur: _Type, part: str, path: KeyPath) -> _Type:
        text = str(path)
        if part == TYPE_OF:  # of a value (any value: mixed ones vary) or of each element
            fixed = cur.type not in ("any", *_TYPES_OF)
            return _Type(
                _TYPEOF_FIXED if fixed else _TYPEOF,
                optional=False,
                many=cur.many or cur.collection is not None,
            )
        if cur.type == "any" and cur.collection is None:
            if part == "*" and type(part) is ListIndex:  # a nested list's elements
                return _Type("any", optional=True, many=True)
            return cur  # a mixed value (or unknown): anything may follow
        if type(part) is ListIndex:
            if cur.collection not in ("list", "set", "dict") or (
                cur.collection == "dict" and part not in ("*", "SIZE")
            ):
                raise QueryTypeError(
                    f"[{part}] needs a list, but {text!r} reaches {cur.describe()}",
                    text,
                    cur.describe(),
                    part,
                )
            if part == "SIZE":
                return _Type("int", optional=False, many=cur.many)
            return _Type(cur.type, None, cur.optional, cur.many or part == "*", cur.target)
        if part in AGGREGATES:
            return self.aggregate(cur, part, text)
        if cur.collection == "list" and isinstance(part, ArgKey):  # an index given as $n
            return _Type(cur.type, None, cur.optional, cur.many, cur.target)
        if cur.collection == "dict" or isinstance(part, ArgKey):
            if cur.collection != "dict":
                raise QueryTypeError(
                    f"[{part}] needs a dictionary or a list, but {text!r} reaches {cur.describe()}",
                    text,
                    cur.describe(),
                    part,
                )
            return _Type(cur.type, None, True, cur.many, cur.target)
        if cur.collection is not None:
            cur = _Type(cur.type, None, cur.optional, True, cur.target)
            if cur.type == "any":
                return cur  # the elements of a list or set of mixed values
        if part == "length" and cur.type in _STRINGY:
            return _Type("int", optional=False, many=cur.many)
        if type(part) is LinksPart:
            return self.links(cur, part, text)
        schema = cur.target
        if schema is None:
            raise QueryArgumentError(
                f"{text!r}: {part!r} follows {cur.describe()}, which has no properties "
                "(only links and embedded objects do)"
            )
        prop = schema.get(part)
        backlink = schema.backlink(part) if prop is None else None
        if backlink is not None:
            # A declared backlinks property: the objects of ``origin`` linking here.
            if schema.primary_key is None:
                raise QueryArgumentError(
                    f"{schema.name}.{part}: querying backlinks needs {schema.name} "
                    "to have a primary key"
                )
            return _Type("link", "list", True, cur.many, self.schema_of(backlink.origin))
        if prop is None:
            raise QueryArgumentError(
                f"{schema.name} has no property {part!r} (in {text!r}); "
                f"its properties are {', '.join(p.name for p in schema.properties)}"
            )
        return self.prop_type(prop, cur.many)

    def links(self, cur: _Type, part: LinksPart, text: str) -> _Type:
        """``@links.Class.property`` / ``@links``: the objects linking to
        ``cur``'s objects, as a list of links (of ``Class``)."""
        schema = cur.target
        if schema is None or cur.type not in ("link", "object", "embedded"):
            raise QueryTypeError(
                f"@links needs an object, but {text!r} reaches {cur.describe()}",
                text,
                cur.describe(),
                "@links",
            )
        if schema.primary_key is None:
            raise QueryArgumentError(
                f"{text!r}: querying the links to {schema.name} needs {schema.name} "
                "to have a primary key"
            )
        origin = part.origin
        if origin is None:
            embedded = self.embedded_linking(schema.name)
            if embedded:
                raise QueryUnsupportedError(
                    f"{text!r}: links to {schema.name} held in embedded objects "
                    f"({embedded}) have no backlink index, so @links.@count cannot "
                    "count them; count the links of each class instead "
                    "(@links.Class.property.@count)",
                    text,
                    0,
                )
            return _Type("link", "list", True, cur.many, None)
        cls_name, prop_name = origin
        try:
            cls = self.schema_of(cls_name)
        except (KeyError, LookupError):
            raise QueryArgumentError(
                f"{text!r}: no class {cls_name!r} in this realm's schema"
            ) from None
        prop = cls.get(prop_name) or cls.by_file_name(prop_name)
        if prop is None or prop.type != "link" or prop.target != schema.name:
            raise QueryArgumentError(
                f"{text!r}: {cls_name} has no link property {prop_name!r} to {schema.name}"
            )
        if cls.embedded:
            raise QueryUnsupportedError(
                f"{text!r}: {cls_name} is embedded: its links have no backlink index",
                text,
                0,
            )
        return _Type("link", "list", True, cur.many, cls)

    def class_name(self, name: str) -> str:
        """The class ``obj(name, …)`` names.  As realm-core, ``name`` may be
        its table name, ``class_`` and the class name (its descriptions write
        that), unless a class is called so."""
        if name.startswith("class_"):
            for candidate in (name, name[len("class_") :]):
                try:
                    self.schema_of(candidate)
                except (KeyError, LookupError):
                    continue
                return candidate
        return name

    def embedded_linking(self, target: str) -> str:
        """The embedded classes' link properties to class ``target``, as text."""
        out = []
        for cls in self.classes:
            if cls.embedded:
                out += [f"{cls.name}.{p.name}" for p in cls.properties if p.target == target]
        return ", ".join(out)

    def prop_type(self, prop: Property, many: bool) -> _Type:
        target = self.schema_of(prop.target) if prop.target else None
        ty = prop.type if prop.type in _KNOWN else "any"  # a type this module does not know
        return _Type(ty, prop.collection, prop.optional or prop.type == "link", many, target)

    def aggregate(self, cur: _Type, agg: str, text: str) -> _Type:
        def refuse(what: str) -> QueryTypeError:
            return QueryTypeError(
                f"{agg} {what}, but {text!r} is {cur.describe()}", text, cur.describe(), agg
            )

        if agg in ("@count", "@size"):
            if cur.collection is None and cur.type not in _STRINGY and cur.type != "link":
                raise refuse("needs a list, set, dictionary, link or string")
            return _Type("int", optional=False, many=cur.many)
        if agg in ("@keys", "@values"):
            if cur.collection != "dict":
                raise refuse("needs a dictionary")
            if agg == "@keys":
                return _Type("str", optional=False, many=True)
            return _Type(cur.type, None, cur.optional, True, cur.target)
        if cur.collection is None:
            raise refuse("needs a collection")
        if cur.type in ("link", "embedded"):
            # ``items.@sum.price``: checked on the property that follows.
            return _Type(cur.type, None, cur.optional, cur.many, cur.target)
        allowed = _SUMMABLE if agg in ("@sum", "@avg") else _ORDERABLE
        if cur.type == "any":  # mixed values: the numbers among them, as Realm
            return _Type("any", optional=True, many=cur.many)
        if cur.type not in allowed:
            raise refuse("needs numbers" + (" or dates" if agg in ("@min", "@max") else ""))
        result = "float" if agg == "@avg" and cur.type != "decimal" else cur.type
        return _Type(result, optional=True, many=cur.many)

    def check_after_aggregate(self, path: KeyPath, t: _Type) -> None:
        """``items.@sum.price``: the property after the aggregate must suit it."""
        aggs = [p for p in path.parts if p in ("@sum", "@avg", "@min", "@max")]
        if not aggs or path.parts[-1] in AGGREGATES:
            return
        allowed = _SUMMABLE if aggs[-1] in ("@sum", "@avg") else _ORDERABLE
        if t.type not in allowed and t.type != "any":
            raise QueryTypeError(
                f"{aggs[-1]} needs numbers, but {str(path)!r} is {t.describe()}",
                str(path),
                t.describe(),
                aggs[-1],
            )

    # -- operands and predicates
    def operand(self, node: Node) -> _Type | None:
        """The type of a key path operand (None for values)."""
        if isinstance(node, KeyPath):
            t = self.path_type(node)
            self.check_after_aggregate(node, t)
            return t
        if isinstance(node, Subquery):
            coll = self.path_type(node.collection)
            if coll.type not in ("link", "embedded", "any"):
                raise QueryTypeError(
                    f"SUBQUERY needs a list of objects, but {str(node.collection)!r} is "
                    f"{coll.describe()}: compare its values with ANY/ALL/NONE instead",
                    str(node.collection),
                    coll.describe(),
                    "SUBQUERY",
                )
            if coll.collection is None and not coll.many:
                raise QueryTypeError(
                    f"SUBQUERY needs a list, but {str(node.collection)!r} is {coll.describe()}",
                    str(node.collection),
                    coll.describe(),
                    "SUBQUERY",
                )
            if node.variable in self.vars:
                raise QueryTypeError(
                    f"SUBQUERY variable {node.variable} is already the variable of an "
                    "enclosing SUBQUERY: give the inner one another name",
                    str(node.collection),
                    coll.describe(),
                    node.variable,
                )
            saved = dict(self.vars)
            self.vars[node.variable] = _Type(coll.type, None, coll.optional, False, coll.target)
            self.predicate(node.predicate)
            self.vars = saved
            return _INT
        if isinstance(node, Arith):
            for side in (node.left, node.right):
                st = self.operand(side)
                if st is not None and st.type not in _NUMERIC and st.type != "any":
                    raise QueryTypeError(
                        f"arithmetic needs numbers, but {str(side)!r} is {st.describe()}",
                        str(side),
                        st.describe(),
                        node.op,
                    )
                self.values(side, _Type("float"), str(node))
            return _Type("float")
        return None

    def values(self, node: Node, t: _Type, path: str) -> None:
        """Check the literals of ``node`` against ``t``; note its arguments."""
        if isinstance(node, Const):
            number = _quoted_number(t, node.value)
            if number is not None:
                self.replace[id(node)] = number  # as Realm: intCol == '5' is intCol == 5
            elif not _value_fits(t, node.value):
                raise _mismatch(path, t, node.value)
        elif isinstance(node, Arg):
            self.checks.append(_ArgCheck(node.index, path, t))
        elif isinstance(node, ListExpr) and t.type in _TYPES_OF:
            for item in node.items:  # every name of ``@type IN {...}`` must be one
                self.values(item, t, path)
        elif isinstance(node, ObjLit):
            self.object_literal(node, t, path)
        elif isinstance(node, ListExpr):
            for item in node.items:
                if isinstance(item, ObjLit):
                    self.object_literal(item, t, path)
        # As Realm: a list's elements of other types simply never match.

    def object_literal(self, node: ObjLit, t: _Type, path: str) -> None:
        """``obj('Class', pk)`` compares with links to that class only (and
        with mixed values, which may hold one)."""
        cls = self.class_name(node.cls)
        if cls != node.cls:
            self.replace[id(node)] = ObjLit(cls, node.pk)
        if t.type == "any":
            try:
                self.schema_of(cls)
            except (KeyError, LookupError):
                raise QueryArgumentError(
                    f"{path!r} is compared with {node}: no class {cls!r} in this realm's schema"
                ) from None
            return
        target = t.target.name if t.target is not None and t.type == "link" else None
        if target != cls:
            raise QueryTypeError(
                f"cannot compare {path!r} ({t.describe()}) with {node}: "
                + (f"it links to {target}" if target else "it is no link"),
                path,
                t.describe(),
                str(node),
            )

    def each(self, node: Comparison) -> None:
        """``ALL objects.values == x`` (``NONE``), ``values`` a list of scalars
        of objects reached through a collection: as realm-core, the
        quantifier applies to each object's list (an :class:`Each`)."""
        path = node.left
        if (
            node.quantifier not in ("ALL", "NONE")
            or not isinstance(path, KeyPath)
            or len(path.parts) < 2
            or path.parts[0] in self.vars
            or not isinstance(node.right, (Const, Arg, Var, ListExpr))
        ):
            return
        outer = KeyPath(path.parts[:-1])
        try:
            before = self.path_type(outer)
        except (QueryArgumentError, QueryTypeError):
            return  # reported by the whole path's check
        last = self.step(before, path.parts[-1], path)
        if (
            (before.many or before.collection is not None)
            and before.type == "link"
            and last.collection in ("list", "set")
            and last.type not in ("link", "embedded")
        ):
            inner = dataclasses.replace(node, left=KeyPath(path.parts[-1:]))
            self.replace[id(node)] = Each(self.replace.get(id(outer), outer), inner)  # type: ignore[arg-type]

    def comparison(self, node: Comparison) -> None:
        self.each(node)
        lt, rt = self.operand(node.left), self.operand(node.right)
        op = node.op
        for side, t in ((node.left, lt), (node.right, rt)):
            if t is None:
                continue
            text = str(side)
            if op in ("BEGINSWITH", "ENDSWITH", "CONTAINS", "LIKE") and t.type not in (
                *_STRINGY,
                "any",
            ):
                raise QueryTypeError(
                    f"{op} needs a string, but {text!r} is {t.describe()}", text, t.describe(), op
                )
            if (node.case_insensitive or node.diacritic_insensitive) and t.type not in (
                *_STRINGY,
                "any",
            ):
                mods = "[c]" if node.case_insensitive else "[d]"
                raise QueryTypeError(
                    f"{mods} applies to strings, but {text!r} is {t.describe()}",
                    text,
                    t.describe(),
                    mods,
                )
            if op in ("<", "<=", ">", ">=") and t.type in ("link", "embedded", "bool", *_TYPES_OF):
                raise QueryTypeError(
                    f"{op} does not order {t.describe()} ({text!r})", text, t.describe(), op
                )
            other = node.right if side is node.left else node.left
            if t.type == _TYPEOF_FIXED and not isinstance(other, (KeyPath, Subquery, Arith)):
                raise QueryTypeError(
                    f"{text!r} is the @type of a property the schema types: it never varies "
                    "(Realm refuses comparing two constants); @type tells mixed values apart",
                    text,
                    t.describe(),
                    op,
                )
            if op == "IN" and side is node.right:
                if t.collection is None and not t.many:
                    raise QueryTypeError(
                        f"IN needs a list, but {text!r} is {t.describe()}", text, t.describe(), op
                    )
                continue
            if (
                (t.collection is not None or t.many)
                and t.type == "link"
                and isinstance(other, Const)
                and other.value is None
            ):
                raise QueryTypeError(
                    f"{text!r} is {t.describe()} through a list: a list is never NULL "
                    f"(use {text}.@count == 0)",
                    text,
                    t.describe(),
                    None,
                )
        if (
            lt is not None
            and rt is not None
            and lt.collection is not None
            and rt.collection is not None
            and lt.type not in ("link", "embedded")
        ):
            raise QueryTypeError(
                f"comparing two lists of values ({str(node.left)!r} and {str(node.right)!r}) "
                "is not supported, as in Realm: compare one with ANY/ALL/NONE of a constant list",
                str(node.left),
                lt.describe(),
                str(node.right),
            )
        if lt is not None and rt is not None and not _types_compare(lt, rt):
            raise QueryTypeError(
                f"cannot compare {str(node.left)!r} ({lt.describe()}) with "
                f"{str(node.right)!r} ({rt.describe()})",
                str(node.left),
                lt.describe(),
                str(node.right),
            )
        if lt is not None:
            _check_quantifier(node.quantifier, lt, str(node.left))
        if lt is not None and rt is None:
            self.values(node.right, lt, str(node.left))
        elif rt is not None and lt is None:
            self.values(node.left, rt, str(node.right))

    def fulltext(self, node: FullText) -> None:
        """``path TEXT …`` needs a str property with a full-text index (as
        Realm: the search reads the index)."""
        path = node.path
        text = str(path)
        t = self.path_type(path)
        if t.type == "any":
            return
        owner = self.path_type(KeyPath(path.parts[:-1])) if len(path.parts) > 1 else None
        schema = owner.target if owner is not None else self.root
        prop = schema.get(path.parts[-1]) if schema is not None else None
        if prop is None or prop.type != "str" or prop.collection is not None:
            raise QueryTypeError(
                f"TEXT needs a string property, but {text!r} is {t.describe()}",
                text,
                t.describe(),
                "TEXT",
            )
        if not prop.fulltext:
            assert schema is not None
            raise QueryTypeError(
                f"{text!r} has no full-text index: declare {schema.name}.{prop.name} "
                'with field(indexed="fulltext") to search it with TEXT',
                text,
                t.describe(),
                "TEXT",
            )

    def geowithin(self, node: GeoWithin) -> None:
        """``path geoWithin …`` needs points: objects shaped as GeoJSON's
        (``type: str``, ``coordinates: list[float]``), as Realm's."""
        text = str(node.path)
        t = self.path_type(node.path)
        if t.type == "any":
            return
        target = t.target
        kind = target.get("type") if target is not None else None
        coords = target.get("coordinates") if target is not None else None
        if not (
            t.type in ("embedded", "link")
            and kind is not None
            and kind.type == "str"
            and kind.collection is None
            and coords is not None
            and coords.type in ("float", "int")
            and coords.collection == "list"
        ):
            raise QueryTypeError(
                f"geoWithin needs points: objects with 'type' (str) and 'coordinates' "
                f"(list[float]), as GeoJSON's; {text!r} is {t.describe()}",
                text,
                t.describe(),
                "geoWithin",
            )
        _check_quantifier(node.quantifier, t, text)

    def predicate(self, node: Node) -> None:
        if isinstance(node, (And, Or)):
            for i in node.items:
                self.predicate(i)
        elif isinstance(node, Not):
            self.predicate(node.item)
        elif isinstance(node, Comparison):
            self.comparison(node)
        elif isinstance(node, FullText):
            self.fulltext(node)
        elif isinstance(node, GeoWithin):
            self.geowithin(node)
        elif isinstance(node, Between):
            t = self.operand(node.value)
            if t is None:
                return
            text = str(node.value)
            _check_quantifier(node.quantifier, t, text)
            # As Realm: ALL list BETWEEN {…} holds when every element is
            # within; ANY, NONE and no quantifier are refused on a list.
            if t.collection is not None and node.quantifier != "ALL":
                raise QueryTypeError(
                    f"BETWEEN needs a single value, but {text!r} is {t.describe()} "
                    f"(write ANY {text} BETWEEN … through a link, or compare {text}[FIRST])",
                    text,
                    t.describe(),
                    "BETWEEN",
                )
            if t.type not in _ORDERABLE and t.type != "any":
                raise QueryTypeError(
                    f"BETWEEN needs numbers or dates, but {text!r} is {t.describe()}",
                    text,
                    t.describe(),
                    "BETWEEN",
                )
            self.values(node.low, t, text)
            self.values(node.high, t, text)
        elif isinstance(node, Var):
            pass


def bind(
    schema_of: Callable[[str], ObjectSchema],
    root: ObjectSchema,
    q: Query,
    classes: Sequence[ObjectSchema] = (),
) -> Binding:
    """Check ``q`` against class ``root`` (``schema_of(name)`` gives the other
    classes, ``classes`` all of them, for ``@links.@count``); return the
    checks its arguments need on each call.

    Raises :class:`QueryArgumentError` for an unknown property and
    :class:`QueryTypeError` for a comparison Realm would refuse."""
    b = _Binder(schema_of, root, classes)
    b.predicate(q.predicate)
    for d in q.descriptors:
        if isinstance(d, Sort):
            for path, _ in d.keys:
                b.path_type(path)
        elif isinstance(d, Distinct):
            for path in d.paths:
                b.path_type(path)
    if b.replace:
        q = dataclasses.replace(
            q,
            predicate=_rewrite(q.predicate, b.replace),
            descriptors=tuple(_rewrite_descriptor(d, b.replace) for d in q.descriptors),
        )
    return Binding(q, b.checks)


def _rewrite_descriptor(d: Descriptor, replace: dict[int, Node]) -> Descriptor:
    """``d`` with its key paths as the schema reads them (a property named
    by its name in the file, ``field(map_to=…)``, read by its name)."""

    def path(p: KeyPath) -> KeyPath:
        new = replace.get(id(p), p)
        return KeyPath(new.parts) if isinstance(new, KeyPath) else p

    if isinstance(d, Sort):
        return Sort(tuple((path(p), ascending) for p, ascending in d.keys))
    if isinstance(d, Distinct):
        return Distinct(tuple(path(p) for p in d.paths))
    return d


def _rewrite(node: Any, replace: dict[int, Node]) -> Any:
    """``node`` with the nodes in ``replace`` (by id) replaced."""
    if id(node) in replace:
        return replace[id(node)]
    if not isinstance(node, Node) or isinstance(node, (KeyPath, Const)):
        return node
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(node):  # type: ignore[arg-type]
        v = getattr(node, f.name)
        if isinstance(v, Node):
            changes[f.name] = _rewrite(v, replace)
        elif isinstance(v, tuple) and v and isinstance(v[0], Node):
            changes[f.name] = tuple(_rewrite(x, replace) for x in v)
    return dataclasses.replace(node, **changes) if changes else node  # type: ignore[type-var]
