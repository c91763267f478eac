"""The interpreter: evaluates a predicate tree on one record, walking key
paths through a resolver.  The reference semantics that the closure
compiler and the generated row filter must agree with."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import unicodedata
import uuid
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from realmpy.errors import QueryArgumentError, QuerySyntaxError, QueryTypeError
from realmpy.objectid import ObjectId
from realmpy.query import geo
from realmpy.query.ast import (
    _COLLECTION_AGGS,
    _STRING_OPS,
    AGGREGATES,
    And,
    Arg,
    ArgKey,
    Arith,
    Between,
    Collection,
    Comparison,
    Const,
    Each,
    FullText,
    GeoShape,
    GeoWithin,
    KeyPath,
    Length,
    LinksPart,
    ListExpr,
    ListIndex,
    NestedDict,
    NestedList,
    Node,
    Not,
    ObjectRef,
    ObjLit,
    OfMixed,
    Or,
    PerCollection,
    Resolver,
    Subquery,
    TruePredicate,
    Var,
)
from realmpy.query.like import like
from realmpy.query.parser import _Parser
from realmpy.query.typeof import TYPE_OF, ElementTypes, TypeOf
from realmpy.textsearch import SearchTerms, pattern_terms
from realmpy.textsearch import matches as _text_matches


class _Multi(list[Any]):
    """Values reached through a collection: comparisons quantify over them."""


Direct = Callable[[str], "tuple[Any] | None"]
"""``name -> (slot,)`` if a one-name key path can be read as
``record[slot]`` from every record the matcher gets (a position in a
positional record, or a key every mapping has), else ``None``."""


@dataclass(slots=True)
class _Ctx:
    args: Sequence[Any]
    variables: Mapping[str, Any]
    resolve: Resolver
    direct: Direct | None = None
    # Turns the record a compiled matcher receives into the one the resolver
    # walks (the realm matches raw records and resolves links on a wrapper).
    wrap: Callable[[Any], Any] | None = None
    # SUBQUERY variables (``$x``) bound to the element being tested.
    bindings: Mapping[str, Any] = dataclasses.field(default_factory=dict)


_NULL_HAYSTACK_OPS: Final = frozenset({"BEGINSWITH", "ENDSWITH", "CONTAINS"})
_SCALARS: Final = frozenset({int, str, float, bool, bytes, type(None), Decimal})


def _is_collection(v: Any) -> bool:
    if type(v) in _SCALARS:  # fast path: the common case, no ABC checks
        return False
    return isinstance(v, (list, tuple, Set, _Multi)) or (
        isinstance(v, Sequence) and not isinstance(v, (str, bytes, bytearray))
    )


def _strip_diacritics(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


def _fold(s: Any, ci: bool, di: bool) -> Any:
    if not isinstance(s, str):
        return s.lower() if ci and isinstance(s, bytes) else s  # bytes: ASCII letters
    if di:
        s = _strip_diacritics(s)
    if ci:
        s = s.casefold()
    return s


def _values_equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, str) != isinstance(b, str):
        if type(a) is TypeOf or type(b) is TypeOf:  # ``prop.@type == 'int'``
            return bool(a == b)
        return False
    try:
        return bool(a == b)
    except (TypeError, ValueError, InvalidOperation):  # a signaling Decimal NaN
        return False


def _order(a: Any, b: Any, op: str) -> bool:
    if a is None or b is None:
        # As Realm: null is not ordered against a value, but it equals null,
        # so ``null <= null`` and ``null >= null`` hold (``nid >= $0`` with a
        # null argument finds the null ``nid``s).
        return a is None and b is None and op in ("<=", ">=")
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    try:
        if op == "<":
            return bool(a < b)
        if op == "<=":
            return bool(a <= b)
        if op == ">":
            return bool(a > b)
        return bool(a >= b)
    except (TypeError, ValueError, InvalidOperation):
        return False


def _string_op(op: str, a: Any, b: Any, ci: bool, di: bool) -> bool:
    if b is None:
        # As Realm: a null pattern is the empty string for BEGINSWITH,
        # ENDSWITH and CONTAINS (every string, null included, has it), and
        # LIKE null matches only null.
        return a is None if op == "LIKE" else (a is None or isinstance(a, (str, bytes)))
    if isinstance(a, str) and isinstance(b, str):
        a, b = _fold(a, ci, di), _fold(b, ci, di)
        if op == "LIKE":
            return like(a, b)
    elif not (isinstance(a, bytes) and isinstance(b, bytes)):
        return False
    else:
        a, b = _fold(a, ci, di), _fold(b, ci, di)
    if op == "LIKE":
        # Bytes match byte for byte: latin-1 maps each byte to one character.
        return like(a.decode("latin-1"), b.decode("latin-1"))
    if op == "BEGINSWITH":
        return a.startswith(b)  # type: ignore[no-any-return]
    if op == "ENDSWITH":
        return a.endswith(b)  # type: ignore[no-any-return]
    return bool(b in a)


def _compare(op: str, a: Any, b: Any, ci: bool, di: bool) -> bool:
    if op == "==":
        if ci or di:
            a, b = _fold(a, ci, di), _fold(b, ci, di)
        return _values_equal(a, b)
    if op == "!=":
        if ci or di:
            a, b = _fold(a, ci, di), _fold(b, ci, di)
        return not _values_equal(a, b)
    if op in _STRING_OPS:
        return _string_op(op, a, b, ci, di)
    return _order(a, b, op)


def _sorted_keys(d: Mapping[Any, Any]) -> list[Any]:
    try:
        return sorted(d)
    except TypeError:  # schema-less keys of several types
        return list(d)


def _aggregate(agg: str, coll: Any) -> Any:
    if agg == TYPE_OF:
        return TypeOf(coll)
    if agg in ("@count", "@size"):
        if coll is None:
            return 0
        try:
            return len(coll)
        except TypeError:
            return 1  # a to-one link: one object (and 0 when null, above)
    # In key order, as Realm's dictionaries keep them (a collection compared
    # element by element sees that order).
    if agg == "@keys":
        return _Multi(_sorted_keys(coll)) if isinstance(coll, Mapping) else _Multi()
    if agg == "@values":
        return (
            _Multi(coll[k] for k in _sorted_keys(coll)) if isinstance(coll, Mapping) else _Multi()
        )
    if coll is None:
        items: list[Any] = []
    elif isinstance(coll, Mapping):
        items = list(coll.values())
    elif _is_collection(coll):
        items = list(coll)
    else:
        items = [coll]
    if type(agg) is OfMixed:
        return _mixed_aggregate(agg, items)
    nums = [x for x in items if x is not None and not isinstance(x, bool)]
    if agg in ("@sum", "@avg"):
        odd = next((x for x in nums if not isinstance(x, (int, float, Decimal))), None)
        if odd is not None:
            # Bound queries never get here (QueryTypeError at bind time);
            # schema-less records may hold anything.
            raise QueryTypeError(
                f"{agg} needs numbers, got {type(odd).__name__} {odd!r:.40}", agg, "", odd
            )
    if not nums:
        return 0 if agg == "@sum" else None
    try:
        if agg == "@sum":
            return sum(nums, 0)
        if agg == "@avg":
            return sum(nums, 0) / len(nums)
        return min(nums) if agg == "@min" else max(nums)
    except (TypeError, ArithmeticError, InvalidOperation):
        return None  # mixed Decimals and floats, or values with no order


def _mixed_aggregate(agg: str, items: list[Any]) -> Any:
    """``@sum``/``@avg``/``@min``/``@max`` of mixed values, as Realm (see
    :class:`OfMixed`): nulls and NaNs are skipped."""
    values = [x for x in items if x is not None and x == x]
    if agg in ("@min", "@max"):
        if not values:
            return None
        try:
            return (min if agg == "@min" else max)(values, key=_sort_rank)
        except (TypeError, ArithmeticError):
            return None
    nums = [x for x in values if isinstance(x, _NUMBERS) and not isinstance(x, bool)]
    if any(isinstance(x, Decimal) for x in nums):  # Decimals and floats: in Decimal
        nums = [Decimal(repr(x)) if isinstance(x, float) else x for x in nums]
    if not nums:
        return 0 if agg == "@sum" else None
    total = sum(nums, 0)
    return total if agg == "@sum" else total / len(nums)


def _elements(coll: Any) -> list[Any]:
    """The elements of a list or set, or the values of a dictionary."""
    if isinstance(coll, Mapping):
        return list(coll.values())
    return list(in_set_order(coll)) if _is_collection(coll) else []


def in_set_order(coll: Any) -> Any:
    """A collection's elements in a fixed order: a set's in the order Realm
    stores a set (by kind, then value: :func:`_sort_rank`), so that
    comparing it whole with a list does not depend on Python's hash seed."""
    return sorted(coll, key=_sort_rank) if isinstance(coll, Set) else coll


def _walk(
    values: list[Any], parts: tuple[str, ...], ctx: _Ctx, multi: bool, then: str | None = None
) -> Any:
    """Follow ``parts`` from ``values``; return a scalar or a ``_Multi``.
    ``then`` is the part the caller reads next, if any (a list it indexes is
    not spread into its elements)."""
    n = len(parts)
    i = 0
    while i < n:
        part = parts[i]
        if part in AGGREGATES:
            if part in _COLLECTION_AGGS and i + 1 < n:
                sub = parts[i + 1 :]
                out = []
                for coll in values:
                    elems = (
                        list(coll.values())
                        if isinstance(coll, Mapping)
                        else (list(coll) if _is_collection(coll) else [])
                    )
                    leaf = _walk(elems, sub, ctx, True)
                    out.append(_aggregate(part, leaf))
                values = out
                break
            if type(part) is ElementTypes:  # the @type of each element
                values = [TypeOf(x) for v in values for x in _elements(v)]
                multi = True
                i += 1
                continue
            values = [_aggregate(part, v) for v in values]
            if multi and part in ("@count", "@size") and type(parts[i - 1]) is LinksPart:
                # As Realm: the links to objects reached through a list
                # are counted together (``items.@links.@count``).
                values, multi = [sum(values)], False
            if part in ("@keys", "@values"):
                values = [x for v in values for x in v]
                multi = True
            i += 1
            continue
        kind = type(part)
        if kind is ListIndex:
            values, multi = _index(values, part, multi)
            i += 1
            continue
        if isinstance(part, ArgKey):
            part = _path_arg(ctx, part)
            if type(part) is int:  # a list index
                index = ListIndex("LAST" if part == -1 else str(part))
                values, multi = _index(values, index, multi) if part >= -1 else ([], True)
                i += 1
                continue
        after = parts[i + 1] if i + 1 < n else then
        nxt_is_agg = after is not None and (
            after in AGGREGATES or type(after) is ListIndex or type(after) is ArgKey
        )
        nxt: list[Any] = []
        for v in values:
            r: Any
            if part == "length" and isinstance(v, (str, bytes)):
                r = len(v)  # ``name.length``: a string's or bytes' length
            elif kind is Length:
                r = 0 if v is None else len(v)
            elif v is None and kind is Collection:
                r = ()  # a collection through a null link: empty
            else:
                r = ctx.resolve(v, part)
            if not nxt_is_agg and _is_collection(r) and type(r) is not NestedList:
                nxt.extend(in_set_order(r))
                multi = True
            else:
                nxt.append(r)
        values = nxt
        i += 1
    if multi:
        return _Multi(values)
    return values[0]


def _index(values: list[Any], part: str, multi: bool) -> tuple[list[Any], bool]:
    """Apply the list index ``part`` (``0``, ``FIRST``, ``LAST``, ``SIZE``,
    ``*``) to each list in ``values``; an index past the end yields nothing."""
    out: list[Any] = []
    for v in values:
        if v is None:
            continue
        if isinstance(v, Mapping) and part not in ("*", "SIZE"):
            continue  # as Realm: a dictionary has no order, so no element by position
        seq = list(v.values()) if isinstance(v, Mapping) else v
        if not _is_collection(seq):
            continue
        if part == "SIZE":
            out.append(len(seq))
        elif part == "*":
            out.extend(seq)
            multi = True
        elif len(seq):
            i = 0 if part == "FIRST" else -1 if part == "LAST" else int(part)
            if i < len(seq):
                out.append(seq[i])
        if part not in ("SIZE", "*") and not len(out):
            multi = True  # no such element: nothing to compare
    return out, multi or len(out) != 1


def _arg(ctx: _Ctx, index: int) -> Any:
    if index >= len(ctx.args):
        raise QueryArgumentError(
            f"the query uses ${index} but only {len(ctx.args)} argument(s) were given"
        )
    return ctx.args[index]


def _path_arg(ctx: _Ctx, part: ArgKey) -> Any:
    """The dictionary key (a str) or list index (an int) ``[$n]`` names."""
    key = _arg(ctx, part.arg_index)
    if type(key) is not str and type(key) is not int:
        raise QueryArgumentError(
            f"[{part}] takes a dictionary key (a str) or a list index (an int), "
            f"not {type(key).__name__} {key!r:.40}"
        )
    return key


_NUMBERS: Final = (int, float, Decimal)


def _arith(op: str, a: Any, b: Any) -> Any:
    """``a op b`` on numbers (None when either is not a number); a list
    operand applies it to each element."""
    if isinstance(a, _Multi):
        return _Multi(_arith(op, x, b) for x in a)
    if isinstance(b, _Multi):
        return _Multi(_arith(op, a, y) for y in b)
    if (
        not (isinstance(a, _NUMBERS) and isinstance(b, _NUMBERS))
        or isinstance(a, bool)
        or isinstance(b, bool)
    ):
        return None
    if isinstance(a, Decimal) != isinstance(b, Decimal):
        a, b = (Decimal(repr(x)) if isinstance(x, float) else Decimal(x) for x in (a, b))
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if b == 0:
            # As Realm: x / 0 is an infinity of x's sign (NaN for 0 / 0), for
            # ints and Decimals as for floats.
            sign = math.copysign(1.0, b) if isinstance(b, float) else 1.0
            inf = math.nan if a == 0 or a != a else math.copysign(math.inf, a) * sign
            return Decimal(inf) if isinstance(a, Decimal) else inf
        return a / b
    except (ArithmeticError, InvalidOperation):
        return None


def _subquery(node: Subquery, record: Any, ctx: _Ctx) -> int:
    elements = _operand(node.collection, record, ctx)  # may start at an outer $x
    count = 0
    for e in _as_list(elements):
        inner = dataclasses.replace(ctx, bindings={**ctx.bindings, node.variable: e})
        if _eval(node.predicate, record, inner):
            count += 1
    return count


def _operand(node: Node, record: Any, ctx: _Ctx) -> Any:
    if isinstance(node, Const):
        return node.value
    if isinstance(node, KeyPath):
        parts = node.parts
        if parts[0] in ctx.bindings:  # a SUBQUERY variable
            return (
                _walk([ctx.bindings[parts[0]]], parts[1:], ctx, False)
                if len(parts) > 1
                else ctx.bindings[parts[0]]
            )
        return _walk([record], parts, ctx, False)
    if isinstance(node, Arg):
        v = _arg(ctx, node.index)
        if isinstance(v, (list, tuple, Set)):
            return _Multi(v)  # as Realm: a list argument means any of its values
        return v
    if isinstance(node, Arith):
        return _arith(node.op, _operand(node.left, record, ctx), _operand(node.right, record, ctx))
    if isinstance(node, Subquery):
        return _subquery(node, record, ctx)
    if isinstance(node, Var):
        if node.name in ctx.variables:
            return ctx.variables[node.name]
        head, _, rest = node.name.partition(".")
        if head not in ctx.variables:
            raise QueryArgumentError(
                f"the query uses %{node.name} but no variable {node.name!r} or {head!r} was given"
            )
        value = ctx.variables[head]
        for name in rest.split(".") if rest else ():
            value = ctx.resolve(value, name)
        return value
    if isinstance(node, ListExpr):
        return _Multi(_operand(i, record, ctx) for i in node.items)
    if isinstance(node, ObjLit):
        return ObjectRef(node.cls, _operand(node.pk, record, ctx))
    raise TypeError(f"not an operand: {node!r}")


def _quantify(quant: str | None, left: Any, test: Callable[[Any], bool]) -> bool:
    if isinstance(left, _Multi):
        if quant == "ALL":
            return all(test(x) for x in left)
        if quant == "NONE":
            return not any(test(x) for x in left)
        return any(test(x) for x in left)
    if quant == "NONE":
        return not test(left)
    return test(left)


def _as_list(v: Any) -> list[Any]:
    if isinstance(v, (_Multi, list, tuple, Set)):
        return list(in_set_order(v))
    if isinstance(v, Mapping):
        return list(v.values())
    if _is_collection(v):
        return list(v)
    return [v]


def _exact(node: Node) -> Decimal | None:
    """The Decimal a literal number spells (compared exactly with Decimals)."""
    return node.exact if type(node) is Const else None


def _dict_values(v: Any) -> Any:
    """A dictionary, or dictionaries reached through a list, compared with a
    value without a key: their values."""
    if isinstance(v, Mapping):
        return v if type(v) is NestedDict else _Multi(v.values())
    if isinstance(v, _Multi) and any(_is_dict_property(x) for x in v):
        return _Multi(y for x in v for y in (x.values() if _is_dict_property(x) else (x,)))
    return v


def _is_dict_property(v: Any) -> bool:
    """A dictionary property's value (not one held in a mixed value)."""
    return isinstance(v, Mapping) and type(v) is not NestedDict


_SHAPES: Final = (geo.GeoBox, geo.GeoCircle, geo.GeoPolygon)


def _geo_shape(node: GeoWithin, ctx: _Ctx) -> geo.Shape:
    """The shape of ``geoWithin``: written in the query (its ``$n``
    coordinates filled in), or an argument (a shape, or its text)."""
    s = node.shape
    if isinstance(s, Arg):
        v = _arg(ctx, s.index)
        if isinstance(v, _SHAPES):
            return v
        if isinstance(v, str):
            try:
                shape = _Parser(f"x geoWithin {v}").parse()[0]
            except QuerySyntaxError as exc:
                raise QueryArgumentError(
                    f"{node}: ${s.index} is no geoBox, geoPolygon or geoCircle: {exc.args[0]}"
                ) from None
            if isinstance(shape, GeoWithin) and isinstance(shape.shape, GeoShape):
                return _build_shape(node, shape.shape, ctx)
        raise QueryArgumentError(
            f"{node}: ${s.index} must be a geospatial value (realmpy.query.GeoBox, GeoCircle "
            f"or GeoPolygon, or its text), not {type(v).__name__}"
        )
    assert isinstance(s, GeoShape)
    return _build_shape(node, s, ctx)


def _build_shape(node: GeoWithin, s: GeoShape, ctx: _Ctx) -> geo.Shape:
    def number(c: Node) -> float:
        v = _operand(c, None, ctx)
        if isinstance(v, bool) or not isinstance(v, (int, float, Decimal)):
            raise QueryArgumentError(
                f"{node}: a coordinate or radius is a number, but {c} is {type(v).__name__}"
            )
        return float(v)

    try:
        pts = [geo.GeoPoint(number(p[0]), number(p[1])) for p in s.points]
        if s.kind == "geoBox":
            return geo.GeoBox(pts[0], pts[1])
        if s.kind == "geoCircle":
            assert s.radius is not None
            return geo.GeoCircle(pts[0], number(s.radius))
        rings, i = [], 0
        for n in s.ring_sizes:
            rings.append(tuple(pts[i : i + n]))
            i += n
        return geo.GeoPolygon(tuple(rings))
    except ValueError as exc:
        raise QueryArgumentError(f"{node}: {exc}") from None


def _text_terms(node: FullText, ctx: _Ctx) -> SearchTerms:
    """The parsed terms of a ``TEXT`` pattern (a literal was checked when
    parsed; an argument is checked here)."""
    return pattern_terms(_operand(node.pattern, None, ctx), str(node))


def _types_of(side: Node) -> bool:
    """``path.@type``: the types of values gathered along a path are compared
    ANY against ANY, never whole against whole (realm-core's
    ``links.@type == links.mixed.@type`` matches an object where some pair
    agrees)."""
    return isinstance(side, KeyPath) and TYPE_OF in side.parts


def _elementwise(
    op: str, left: list[Any], right: list[Any], cmp: Callable[[Any, Any], bool]
) -> bool:
    """Two collections (or constant lists) compared without a quantifier,
    as realm-core does: whole against whole, element by element in order;
    lists of different sizes are ``!=`` and nothing else."""
    if len(left) != len(right):
        return op == "!="
    return all(cmp(x, y) for x, y in zip(left, right, strict=True))


def _collections(node: PerCollection, record: Any, ctx: _Ctx) -> list[_Multi]:
    """Each collection a :class:`PerCollection` path reaches, on its own
    (as realm-core: one per value its path reaches before the last part;
    none reached is one empty collection)."""
    parts = node.parts
    if parts[0] in ctx.bindings:  # a SUBQUERY variable
        start, parts = ctx.bindings[parts[0]], parts[1:]
    else:
        start = record
    before = _walk([start], parts[:-1], ctx, False, parts[-1]) if len(parts) > 1 else start
    owners = before if isinstance(before, _Multi) else [before]
    return [_walk([o], parts[-1:], ctx, True) for o in owners] or [_Multi()]


def _eval(node: Node, record: Any, ctx: _Ctx) -> bool:
    if isinstance(node, Comparison):
        if type(node.left) is PerCollection or type(node.right) is PerCollection:
            lefts = (
                _collections(node.left, record, ctx)
                if type(node.left) is PerCollection
                else [_operand(node.left, record, ctx)]
            )
            rights = (
                _collections(node.right, record, ctx)
                if type(node.right) is PerCollection
                else [_operand(node.right, record, ctx)]
            )
            return any(_compare_sides(node, lv, rv) for lv in lefts for rv in rights)
        return _compare_sides(
            node, _operand(node.left, record, ctx), _operand(node.right, record, ctx)
        )
    if isinstance(node, And):
        return all(_eval(i, record, ctx) for i in node.items)
    if isinstance(node, Or):
        return any(_eval(i, record, ctx) for i in node.items)
    if isinstance(node, Not):
        return not _eval(node.item, record, ctx)
    if isinstance(node, TruePredicate):
        return node.value
    if isinstance(node, Each):
        objects = _as_list(_operand(node.outer, record, ctx))
        if not objects:
            return node.item.quantifier in ("ALL", "NONE")
        return any(_eval(node.item, o, ctx) for o in objects if o is not None)
    if isinstance(node, GeoWithin):
        shape = _geo_shape(node, ctx)
        resolve = ctx.resolve

        def within(x: Any) -> bool:
            if x is None:
                return False
            p = geo.point_of(resolve(x, "type"), resolve(x, "coordinates"))
            return p is not None and geo.contains(shape, p)

        points = _operand(node.path, record, ctx)
        if node.quantifier == "ALL" and isinstance(points, _Multi) and not points:
            return False  # as realm-core: no point is within nothing
        return _quantify(node.quantifier, points, within)
    if isinstance(node, FullText):
        terms = _text_terms(node, ctx)
        return _quantify(None, _operand(node.path, record, ctx), lambda x: _text_matches(x, terms))
    if isinstance(node, Between):
        value = _operand(node.value, record, ctx)
        low = _operand(node.low, record, ctx)
        high = _operand(node.high, record, ctx)
        return _quantify(
            node.quantifier,
            value,
            lambda x: _order(x, low, ">=") and _order(x, high, "<="),
        )
    raise TypeError(f"not a predicate: {node!r}")


def _compare_sides(node: Comparison, left: Any, right: Any) -> bool:
    """A comparison of the values of its two sides."""
    op, ci, di = node.op, node.case_insensitive, node.diacritic_insensitive
    if op == "IN":
        options = _as_list(right)
        if ci or di:
            options = [_fold(o, ci, di) for o in options]
        lq = node.list_quantifier  # ``x IN ALL list``: x equals every element
        member = all if lq == "ALL" else any
        return _quantify(
            node.quantifier,
            left,
            lambda x: member(_values_equal(_fold(x, ci, di), o) for o in options) != (lq == "NONE"),
        )
    if left is None and op in _NULL_HAYSTACK_OPS and type(node.left) is Const:
        return False  # as Realm: the constant NULL contains nothing, not even NULL
    if not isinstance(right, Mapping) and right is not None:
        left = _dict_values(left)
    lexact, rexact = _exact(node.left), _exact(node.right)
    if lexact is not None or rexact is not None:
        # Decimals meet a literal written with a fraction exactly.
        def cmp(x: Any, r: Any) -> bool:
            if rexact is not None and type(x) is Decimal:
                r = rexact
            if lexact is not None and type(r) is Decimal:
                x = lexact
            return _compare(op, x, r, ci, di)
    else:

        def cmp(x: Any, r: Any) -> bool:
            return _compare(op, x, r, ci, di)

    if (
        isinstance(right, _Multi)
        and isinstance(left, _Multi)
        and node.quantifier is None
        and node.list_quantifier is None
        and isinstance(node.left, (KeyPath, ListExpr))
        and isinstance(node.right, (KeyPath, ListExpr))
        and not (_types_of(node.left) or _types_of(node.right))
    ):
        return _elementwise(op, left, right, cmp)
    if isinstance(right, _Multi):
        lq = node.list_quantifier
        if lq == "ALL":
            return _quantify(node.quantifier, left, lambda x: all(cmp(x, r) for r in right))
        if lq == "NONE":
            return _quantify(node.quantifier, left, lambda x: not any(cmp(x, r) for r in right))
        return _quantify(node.quantifier, left, lambda x: any(cmp(x, r) for r in right))
    if node.list_quantifier == "NONE":
        return _quantify(node.quantifier, left, lambda x: not cmp(x, right))
    return _quantify(node.quantifier, left, lambda x: cmp(x, right))


# Sorting ranks values by kind first so a mixed column sorts without error.
def _sort_rank(v: Any) -> tuple[int, Any]:
    if v is None:
        return (0, 0)
    if isinstance(v, bool):
        return (1, v)
    if isinstance(v, (int, float, Decimal)):
        if v.is_nan() if isinstance(v, Decimal) else v != v:  # NaN first (an
            return (2, -math.inf)  # ordered Decimal NaN would raise)
        return (2, v)
    if isinstance(v, str):
        return (3, v)
    if isinstance(v, bytes):
        return (4, v)
    if isinstance(v, _dt.datetime):
        return (
            5,
            v.timestamp() if v.tzinfo else v.replace(tzinfo=_dt.timezone.utc).timestamp(),
        )
    if isinstance(v, ObjectId):
        return (6, v.binary)
    if isinstance(v, uuid.UUID):
        return (7, v.bytes)
    return (8, repr(v))


def _hashable(v: Any) -> Any:
    if isinstance(v, (list, _Multi, tuple)):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, (set, frozenset)):
        return frozenset(_hashable(x) for x in v)
    if isinstance(v, Mapping):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    try:
        hash(v)
    except TypeError:
        return repr(v)
    return v
