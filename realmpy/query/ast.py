"""The query language's syntax tree and vocabulary: nodes that render back
to canonical query text with ``str()``, the aggregates, the size limits and
the default resolver."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as _dt
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from realmpy.objectid import ObjectId

Resolver = Callable[[Any, str], Any]
"""``(value, name) -> next value`` along a key path; ``None`` if absent."""

AGGREGATES: Final = frozenset(
    {"@count", "@size", "@sum", "@avg", "@min", "@max", "@keys", "@values", "@type"}
)
_COLLECTION_AGGS: Final = frozenset({"@sum", "@avg", "@min", "@max"})

_STRING_OPS: Final = frozenset({"BEGINSWITH", "ENDSWITH", "CONTAINS", "LIKE"})

# Limits on what one query may ask for, so that parsing, compiling and
# evaluating it take bounded time and stack whoever wrote it (a sync
# subscription is written by a remote user).  Beyond them ``parse`` raises
# QuerySyntaxError.  Nesting is counted in parentheses and NOT/! prefixes;
# 64 keeps every recursive walk of the tree (evaluation, row-filter source,
# the engine's filter program, str()) far from Python's recursion limit.
MAX_QUERY_CHARS: Final = 65_536
"""Longest query text, in characters."""
MAX_QUERY_DEPTH: Final = 64
"""Deepest nesting of parentheses and NOT."""
MAX_QUERY_TERMS: Final = 1_000
"""Most comparisons (and BETWEEN, TRUEPREDICATE, FALSEPREDICATE) in one query."""


def default_resolver(value: Any, name: str) -> Any:
    """Read ``name`` from a mapping (``None`` if absent) or an attribute."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


class Node:
    """Base of the syntax tree; ``str(node)`` is canonical query text."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Const(Node):
    """A literal value.  A number written with a fraction or an exponent is
    a float in ``value`` and, in ``exact``, the Decimal it spells: compared
    with a Decimal property it is exact (``dec == 0.1``), as Realm's are."""

    value: Any
    exact: Decimal | None = field(default=None, compare=False)

    def __str__(self) -> str:
        if self.exact is not None and self.exact.is_finite():
            return str(self.exact)
        return _render_value(self.value)


class ListIndex(str):
    """A key path part ``[0]``, ``[FIRST]``, ``[LAST]``, ``[SIZE]`` or ``[*]``:
    an element of a list, its size, or all its elements.  The text is the
    part as written between the brackets (``"0"``, ``"FIRST"`` …)."""

    __slots__ = ()


class Length(str):
    """The key path part ``length`` known (from the schema) to read a
    string's or bytes' length: a null one has length 0, as in Realm.  The
    parser makes plain ``"length"`` parts; binding to a class makes these."""

    __slots__ = ()


class Collection(str):
    """A key path part known (from the schema) to name a list, set or
    dictionary: read through a null link it is empty, not null, as in Realm
    (``link.tags == NULL`` does not match a null ``link``).  Binding to a
    class makes these."""

    __slots__ = ()


class NestedList(list[Any]):
    """A list held in a mixed value (Realm's nested collections): compared
    as one value, not quantified over as a list property is (``mixed ==
    1`` does not look inside it, as in Realm); ``mixed[*]``, ``mixed[0]``
    and ``mixed.@size`` reach its elements.  The realm's query reads make
    these; plain lists of schema-less records stay lists."""

    __slots__ = ()


class NestedDict(dict[str, Any]):
    """A dictionary held in a mixed value: compared as one value, not as its
    values the way a dictionary property compared without a key is (Realm:
    ``mixed == 1`` never matches ``{"one": 1}``); ``mixed.key``,
    ``mixed['key']``, ``mixed[*]`` and ``mixed.@keys`` reach inside.  The
    realm's query reads make these."""

    __slots__ = ()


class OfMixed(str):
    """The key path part ``@sum``, ``@avg``, ``@min`` or ``@max`` known (from
    the schema) to aggregate mixed values, as Realm does: ``@sum`` and
    ``@avg`` take the numbers among them and skip the rest (over schema-less
    records a value that is not a number is an error), ``@min`` and ``@max``
    order every value by kind first (bool < numbers < strings < bytes <
    dates < ObjectIds < UUIDs).  Binding to a class makes these."""

    __slots__ = ()


class LinksPart(str):
    """A key path part reading the objects that link to the current one:
    ``@links.Class.property`` (the objects of ``Class`` whose link property
    ``property`` links here, once per link) or bare ``@links`` (every
    incoming link, only before ``.@count`` / ``.@size``).  A resolver
    gets the part's whole text as the name to read."""

    __slots__ = ()

    @property
    def origin(self) -> tuple[str, str] | None:
        """(class, property) of ``@links.Class.property``; None for bare ``@links``."""
        _, _, rest = self.partition(".")
        cls, _, prop = rest.partition(".")
        return (cls, prop) if rest else None


class ArgKey(str):
    """A key path part ``[$n]``: the dictionary key given as argument ``n``
    (a str), or the list index (an int; as realm-core, -1 is the last)."""

    __slots__ = ()

    @property
    def arg_index(self) -> int:
        return int(self[1:])


@dataclass(frozen=True, slots=True)
class Arg(Node):
    """``$index``: a positional argument supplied at evaluation."""

    index: int

    def __str__(self) -> str:
        return f"${self.index}"


@dataclass(frozen=True, slots=True)
class Var(Node):
    """``%name``: a named variable (e.g. ``%user.id``) supplied at evaluation."""

    name: str

    def __str__(self) -> str:
        return f"%{self.name}"


@dataclass(frozen=True, slots=True)
class KeyPath(Node):
    """``a.b.@count``: property names and aggregates from the record."""

    parts: tuple[str, ...]

    def __str__(self) -> str:
        out = []
        for i, p in enumerate(self.parts):
            if type(p) is ListIndex or type(p) is ArgKey:
                out.append(f"[{p}]")
            elif type(p) is LinksPart:
                names = p.origin
                text = "@links" + "".join("." + _escape_name(n) for n in names or ())
                out.append(("." if i else "") + text)
            elif _IDENT_RE.fullmatch(p) or p in AGGREGATES:
                out.append(("." if i else "") + p)
            elif i == 0 and p and not p[0].isdigit():
                out.append(_escape_name(p))  # ``true\ love``
            else:
                out.append(f"[{_render_value(p)}]")
        return "".join(out)


@dataclass(frozen=True, slots=True)
class PerCollection(KeyPath):
    """A key path whose last part reads into collections reached through
    more than one value (``links.tags``, ``value[*][*]``, ``links.dict.key``):
    as realm-core, each of those collections is compared on its own (a list
    whole against a constant list, a quantifier over its elements) and the
    record matches when one of them does.  Binding to a class makes these;
    a plain :class:`KeyPath` gathers all the values into one."""


@dataclass(frozen=True, slots=True)
class Arith(Node):
    """``left op right`` for ``+ - * /`` on numbers."""

    op: str
    left: Node
    right: Node

    def __str__(self) -> str:
        return f"({self.left} {self.op} {self.right})"


@dataclass(frozen=True, slots=True)
class Subquery(Node):
    """``SUBQUERY(collection, $x, predicate).@count``: how many elements of
    ``collection`` match ``predicate``, in which key paths starting with
    ``variable`` (``$x``) are read from the element."""

    collection: KeyPath
    variable: str
    predicate: Node

    def __str__(self) -> str:
        return f"SUBQUERY({self.collection}, {self.variable}, {self.predicate}).@count"


@dataclass(frozen=True, slots=True)
class ListExpr(Node):
    """``{a, b, c}``: a list literal (for ``IN``)."""

    items: tuple[Node, ...]

    def __str__(self) -> str:
        return "{" + ", ".join(str(i) for i in self.items) + "}"


@dataclass(frozen=True, slots=True)
class Comparison(Node):
    """``[quantifier] left op[modifiers] right``."""

    left: Node
    op: str  # "==", "!=", "<", "<=", ">", ">=", "IN", or a string op
    right: Node
    quantifier: str | None = None  # "ANY", "ALL", "NONE" or None
    case_insensitive: bool = False
    diacritic_insensitive: bool = False
    # ``prop == ALL {1, 2}``: how ``prop`` must compare with the elements of
    # the list on the right ("ANY", "ALL", "NONE"; None: ANY).
    list_quantifier: str | None = None

    def __str__(self) -> str:
        mods = ("c" if self.case_insensitive else "") + ("d" if self.diacritic_insensitive else "")
        q = f"{self.quantifier} " if self.quantifier else ""
        m = f"[{mods}]" if mods else ""
        lq = f"{self.list_quantifier} " if self.list_quantifier else ""
        return f"{q}{self.left} {self.op}{m} {lq}{self.right}"


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """The object of class ``cls`` (its name in the realm) with primary key
    ``pk``: what ``obj('Class', pk)`` evaluates to.  Schema-less records
    never equal it; a realm's link values do when they name that object."""

    cls: str
    pk: Any


@dataclass(frozen=True, slots=True)
class ObjLit(Node):
    """``obj('Class', pk)``: an object literal (``pk`` a literal or ``$n``)."""

    cls: str
    pk: Node

    def __str__(self) -> str:
        return f"obj({_render_value(self.cls)}, {self.pk})"


GeoCoords = tuple[Node, ...]
"""A point as written: ``[longitude, latitude(, altitude)]``, literals or ``$n``."""


@dataclass(frozen=True, slots=True)
class GeoShape(Node):
    """``geoBox(p, p)``, ``geoCircle(p, radius)`` or ``geoPolygon({p, …}, …)``
    as written (evaluated to a :mod:`realmpy.query.geo` shape with the
    arguments): ``points`` are a box's corners, a circle's centre, or a
    polygon's rings one after the other (``ring_sizes`` says where each
    ends); ``radius`` is a circle's."""

    kind: str  # "geoBox", "geoCircle", "geoPolygon"
    points: tuple[GeoCoords, ...]
    radius: Node | None = None
    ring_sizes: tuple[int, ...] = ()

    def __str__(self) -> str:
        pts = ["[" + ", ".join(str(c) for c in p) + "]" for p in self.points]
        if self.kind == "geoCircle":
            return f"geoCircle({pts[0]}, {self.radius})"
        if self.kind == "geoBox":
            return f"geoBox({pts[0]}, {pts[1]})"
        rings, i = [], 0
        for n in self.ring_sizes:
            rings.append("{" + ", ".join(pts[i : i + n]) + "}")
            i += n
        return f"geoPolygon({', '.join(rings)})"


@dataclass(frozen=True, slots=True)
class GeoWithin(Node):
    """``[quantifier] path geoWithin shape`` (a :class:`GeoShape` or ``$n``)."""

    path: KeyPath
    shape: Node
    quantifier: str | None = None

    def __str__(self) -> str:
        q = f"{self.quantifier} " if self.quantifier else ""
        return f"{q}{self.path} GEOWITHIN {self.shape}"


@dataclass(frozen=True, slots=True)
class FullText(Node):
    """``path TEXT pattern``: full-text search (realmpy.textsearch);
    ``pattern`` is a string literal or an argument."""

    path: KeyPath
    pattern: Node

    def __str__(self) -> str:
        return f"{self.path} TEXT {self.pattern}"


@dataclass(frozen=True, slots=True)
class Each(Node):
    """``ALL objects.values == x`` / ``NONE …`` where ``values`` is a list of
    scalars of each object reached through ``objects`` (a collection of
    links), as realm-core reads it: ``item`` (the comparison from
    ``values`` on) holds for some object of ``outer``; with no object at
    all, ALL and NONE hold.  Binding to a class makes these; ``str()`` is
    the comparison as written."""

    outer: KeyPath
    item: Comparison

    def __str__(self) -> str:
        c = self.item
        assert isinstance(c.left, KeyPath)
        return str(dataclasses.replace(c, left=KeyPath(self.outer.parts + c.left.parts)))


@dataclass(frozen=True, slots=True)
class Between(Node):
    """``value BETWEEN {low, high}``, inclusive."""

    value: Node
    low: Node
    high: Node
    quantifier: str | None = None

    def __str__(self) -> str:
        q = f"{self.quantifier} " if self.quantifier else ""
        return f"{q}{self.value} BETWEEN {{{self.low}, {self.high}}}"


@dataclass(frozen=True, slots=True)
class And(Node):
    """All of ``items``."""

    items: tuple[Node, ...]

    def __str__(self) -> str:
        return " AND ".join(_paren(i, (Or,)) for i in self.items)


@dataclass(frozen=True, slots=True)
class Or(Node):
    """Any of ``items``."""

    items: tuple[Node, ...]

    def __str__(self) -> str:
        return " OR ".join(str(i) for i in self.items)


@dataclass(frozen=True, slots=True)
class Not(Node):
    """Negation."""

    item: Node

    def __str__(self) -> str:
        return "NOT " + _paren(self.item, (And, Or, Not))


@dataclass(frozen=True, slots=True)
class TruePredicate(Node):
    """``TRUEPREDICATE`` (``value=True``) or ``FALSEPREDICATE``."""

    value: bool

    def __str__(self) -> str:
        return "TRUEPREDICATE" if self.value else "FALSEPREDICATE"


@dataclass(frozen=True, slots=True)
class Sort:
    """``SORT(path ASC, …)``: ``keys`` are (path, ascending) pairs."""

    keys: tuple[tuple[KeyPath, bool], ...]

    def __str__(self) -> str:
        inner = ", ".join(f"{p} {'ASC' if a else 'DESC'}" for p, a in self.keys)
        return f"SORT({inner})"


@dataclass(frozen=True, slots=True)
class Distinct:
    """``DISTINCT(path, …)``: keep the first record of each value tuple."""

    paths: tuple[KeyPath, ...]

    def __str__(self) -> str:
        return "DISTINCT(" + ", ".join(str(p) for p in self.paths) + ")"


@dataclass(frozen=True, slots=True)
class Limit:
    """``LIMIT(n)``: keep the first n records."""

    count: int

    def __str__(self) -> str:
        return f"LIMIT({self.count})"


Descriptor = Sort | Distinct | Limit


def _escape_name(name: str) -> str:
    """A property or class name as query text: ``true\\ love``."""
    name = re.sub(r"([^\w$-])", r"\\\1", name)
    return name.replace("\t", "t").replace("\n", "n").replace("\r", "r")  # ``\t`` …


def _paren(node: Node, kinds: tuple[type, ...]) -> str:
    return f"({node})" if isinstance(node, kinds) else str(node)


_IDENT_RE: Final = re.compile(r"(?:[^\W\d]|\$)[\w$-]*")


def _render_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v) if -(10**4000) < v < 10**4000 else hex(v)  # str() refuses 4,300+ digits
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return repr(v) if math.isfinite(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, str):
        if not v.replace("\n", "").replace("\r", "").replace("\t", "").isprintable():
            # Control characters as realm-core writes them, not raw in the
            # text (a lone surrogate, from a "\ud800" escape, stays raw).
            with contextlib.suppress(UnicodeEncodeError):
                return 'B64"' + base64.b64encode(v.encode("utf-8")).decode("ascii") + '"'
        return (
            '"'
            + v.replace("\\", "\\\\")
            .replace('"', '\\"')
            .replace("\n", "\\n")
            .replace("\r", "\\r")
            .replace("\t", "\\t")
            + '"'
        )
    if isinstance(v, bytes):
        return 'bin(B64"' + base64.b64encode(v).decode("ascii") + '")'  # B64"…" alone is a str
    if isinstance(v, ObjectId):
        return f"oid({v})"
    if isinstance(v, uuid.UUID):
        return f"uuid({v})"
    if isinstance(v, Decimal):
        return f"decimal128({v})"
    if isinstance(v, _dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=_dt.timezone.utc)
        micros = (v - _EPOCH) // _dt.timedelta(microseconds=1)
        # As Realm's Tseconds:nanoseconds: both parts carry the sign.
        seconds = abs(micros) // 1_000_000 * (1 if micros >= 0 else -1)
        return f"T{seconds}:{(micros - seconds * 1_000_000) * 1000}"
    raise TypeError(f"cannot render {type(v).__name__} as a query literal")


_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
