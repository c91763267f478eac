"""The interpreter: evaluates a predicate tree on one record, walking key
paths through a resolver.  The reference semantics that the closure
compiler and the generated row filter must agree with."""

from __future__ import annotations

import datetime as _dt
import math
import unicodedata
import uuid
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from realmpy.errors import QueryArgumentError
from realmpy.objectid import ObjectId
from realmpy.query.ast import (
    _COLLECTION_AGGS,
    _STRING_OPS,
    AGGREGATES,
    And,
    Arg,
    Between,
    Comparison,
    Const,
    KeyPath,
    ListExpr,
    Node,
    Not,
    Or,
    Resolver,
    TruePredicate,
    Var,
)
from realmpy.query.like import like


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
        return s
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
        return False
    try:
        return bool(a == b)
    except (TypeError, ValueError, InvalidOperation):  # a signaling Decimal NaN
        return False


def _order(a: Any, b: Any, op: str) -> bool:
    if a is None or b is None:
        return False
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
    if isinstance(a, str) and isinstance(b, str):
        a, b = _fold(a, ci, di), _fold(b, ci, di)
        if op == "LIKE":
            return like(a, b)
    elif not (isinstance(a, bytes) and isinstance(b, bytes)) or op == "LIKE":
        return False
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


def _aggregate(agg: str, coll: Any) -> Any:
    if agg in ("@count", "@size"):
        if coll is None:
            return 0
        try:
            return len(coll)
        except TypeError:
            return None
    if agg == "@keys":
        return _Multi(coll.keys()) if isinstance(coll, Mapping) else _Multi()
    if agg == "@values":
        return _Multi(coll.values()) if isinstance(coll, Mapping) else _Multi()
    if coll is None:
        items: list[Any] = []
    elif isinstance(coll, Mapping):
        items = list(coll.values())
    elif _is_collection(coll):
        items = list(coll)
    else:
        items = [coll]
    nums = [x for x in items if x is not None and not isinstance(x, bool)]
    if agg == "@sum":
        return sum(nums, 0)
    if not nums:
        return None
    try:
        if agg == "@avg":
            total = sum(nums, 0)
            if isinstance(total, Decimal):
                return total / len(nums)
            return total / len(nums)
        return min(nums) if agg == "@min" else max(nums)
    except TypeError:
        return None


def _walk(values: list[Any], parts: tuple[str, ...], ctx: _Ctx, multi: bool) -> Any:
    """Follow ``parts`` from ``values``; return a scalar or a ``_Multi``."""
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
            values = [_aggregate(part, v) for v in values]
            if part in ("@keys", "@values"):
                values = [x for v in values for x in v]
                multi = True
            i += 1
            continue
        nxt_is_agg = i + 1 < n and parts[i + 1] in AGGREGATES
        nxt: list[Any] = []
        for v in values:
            r = ctx.resolve(v, part)
            if not nxt_is_agg and _is_collection(r):
                nxt.extend(r)
                multi = True
            else:
                nxt.append(r)
        values = nxt
        i += 1
    if multi:
        return _Multi(values)
    return values[0]


def _operand(node: Node, record: Any, ctx: _Ctx) -> Any:
    if isinstance(node, Const):
        return node.value
    if isinstance(node, KeyPath):
        return _walk([record], node.parts, ctx, False)
    if isinstance(node, Arg):
        if node.index >= len(ctx.args):
            raise QueryArgumentError(
                f"the query uses ${node.index} but only {len(ctx.args)} argument(s) were given"
            )
        return ctx.args[node.index]
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
        return list(v)
    if isinstance(v, Mapping):
        return list(v.values())
    if _is_collection(v):
        return list(v)
    return [v]


def _eval(node: Node, record: Any, ctx: _Ctx) -> bool:
    if isinstance(node, Comparison):
        left = _operand(node.left, record, ctx)
        right = _operand(node.right, record, ctx)
        op, ci, di = node.op, node.case_insensitive, node.diacritic_insensitive
        if op == "IN":
            options = _as_list(right)
            if ci or di:
                options = [_fold(o, ci, di) for o in options]
            return _quantify(
                node.quantifier,
                left,
                lambda x: any(_values_equal(_fold(x, ci, di), o) for o in options),
            )
        if isinstance(left, Mapping) and not isinstance(right, Mapping) and right is not None:
            left = _Multi(left.values())  # a dictionary compared to a value
        if isinstance(right, _Multi):
            return _quantify(
                node.quantifier,
                left,
                lambda x: any(_compare(op, x, r, ci, di) for r in right),
            )
        return _quantify(node.quantifier, left, lambda x: _compare(op, x, right, ci, di))
    if isinstance(node, And):
        return all(_eval(i, record, ctx) for i in node.items)
    if isinstance(node, Or):
        return any(_eval(i, record, ctx) for i in node.items)
    if isinstance(node, Not):
        return not _eval(node.item, record, ctx)
    if isinstance(node, TruePredicate):
        return node.value
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


# Sorting ranks values by kind first so a mixed column sorts without error.
def _sort_rank(v: Any) -> tuple[int, Any]:
    if v is None:
        return (0, 0)
    if isinstance(v, bool):
        return (1, v)
    if isinstance(v, (int, float, Decimal)):
        if isinstance(v, float) and math.isnan(v):
            return (2, -math.inf)
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
