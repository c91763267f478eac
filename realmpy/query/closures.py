"""The closure compiler: a predicate to nested closures with its arguments
bound once, with fast paths for plain properties read by slot."""

from __future__ import annotations

import datetime as _dt
import math
import operator
import uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from realmpy.objectid import ObjectId
from realmpy.query.ast import (
    AGGREGATES,
    And,
    Arg,
    Comparison,
    Const,
    KeyPath,
    ListExpr,
    Node,
    Not,
    Or,
    TruePredicate,
    Var,
)
from realmpy.query.evaluate import (
    _SCALARS,
    _as_list,
    _Ctx,
    _eval,
    _exact,
    _operand,
    _quantify,
    _values_equal,
    _walk,
)

_ORDER_OPS: Final = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _compile(node: Node, ctx: _Ctx) -> Callable[[Any], bool]:
    """Turn a predicate into nested closures (arguments bound once).

    Same semantics as :func:`_eval`; the common ``prop op constant`` shape
    gets a fast path for scalar values and falls back to ``_eval`` for
    anything else (collections, links, string modifiers).
    """
    wrap = ctx.wrap

    def general(n: Node) -> Callable[[Any], bool]:
        if wrap is None:
            return lambda r: _eval(n, r, ctx)
        return lambda r: _eval(n, wrap(r), ctx)

    if isinstance(node, And):
        parts = [_compile(i, ctx) for i in node.items]
        if len(parts) == 2:
            first, second = parts
            bounds = _numeric_bounds(node, ctx)
            if bounds is not None:
                # ``x >= lo AND x < hi`` on one plain property: read it once.
                slot, lo_op, lo, hi_op, hi = bounds

                def within(r: Any) -> bool:
                    x = r[slot]
                    t = type(x)
                    if t is int or t is float:
                        return lo_op(x, lo) and hi_op(x, hi)  # type: ignore[no-any-return]
                    return first(r) and second(r)

                return within
            return lambda r: first(r) and second(r)

        def all_of(r: Any) -> bool:
            for f in parts:
                if not f(r):
                    return False
            return True

        return all_of
    if isinstance(node, Or):
        parts = [_compile(i, ctx) for i in node.items]

        def any_of(r: Any) -> bool:
            for f in parts:
                if f(r):
                    return True
            return False

        return any_of
    if isinstance(node, Not):
        inner = _compile(node.item, ctx)
        return lambda r: not inner(r)
    if isinstance(node, TruePredicate):
        value = node.value
        return lambda r: value
    if (
        isinstance(node, Comparison)
        and node.op == "IN"
        and node.list_quantifier is None
        and not (node.case_insensitive or node.diacritic_insensitive)
        and isinstance(node.left, KeyPath)
        and _is_fixed(node.right)
    ):
        return _compile_in(node, node.left, ctx)
    if (
        isinstance(node, Comparison)
        and node.quantifier is None
        and node.list_quantifier is None
        and isinstance(node.left, KeyPath)
        and len(node.left.parts) == 1
        and node.left.parts[0] not in AGGREGATES
        and isinstance(node.right, (Const, Arg, Var))
        and node.op in ("==", "!=", *_ORDER_OPS)
    ):
        name = node.left.parts[0]
        rv = _operand(node.right, None, ctx)
        op = node.op
        ci, di = node.case_insensitive, node.diacritic_insensitive
        slow = general(node)
        if type(rv) not in _SCALARS and not isinstance(rv, (ObjectId, uuid.UUID, _dt.datetime)):
            return slow
        # A literal written with a fraction meets a Decimal exactly: the
        # interpreter compares those (``dec == 0.1``).
        scalars = _SCALARS - {Decimal} if _exact(node.right) is not None else _SCALARS
        spec = ctx.direct(name) if ctx.direct is not None else None
        get: Callable[[Any], Any]
        if spec is not None:
            slot = spec[0]

            def get(r: Any) -> Any:
                return r[slot]

        elif wrap is not None:
            resolve = ctx.resolve

            def get(r: Any) -> Any:
                return resolve(wrap(r), name)

        else:
            resolve = ctx.resolve

            def get(r: Any) -> Any:
                return resolve(r, name)

        if op in _ORDER_OPS:
            opfn = _ORDER_OPS[op]
            if rv is None:
                return slow  # only null <= null and null >= null hold
            rv_bool = isinstance(rv, bool)

            def ordered(r: Any) -> bool:
                x = get(r)
                if type(x) in scalars or isinstance(x, (ObjectId, uuid.UUID, _dt.datetime)):
                    if x is None or isinstance(x, bool) != rv_bool:
                        return False
                    try:
                        return bool(opfn(x, rv))
                    except (TypeError, ValueError, InvalidOperation):
                        return False
                return slow(r)

            if spec is not None and type(rv) in (int, float):
                # Numbers against a number read straight from the record.
                d = spec[0]

                def ordered_num(r: Any) -> bool:
                    x = r[d]
                    t = type(x)
                    if t is int or t is float:
                        return opfn(x, rv)  # type: ignore[no-any-return]
                    return ordered(r)

                return ordered_num
            return ordered
        if not (ci or di):
            negate = op == "!="

            def equal(r: Any) -> bool:
                x = get(r)
                if type(x) in scalars or isinstance(x, (ObjectId, uuid.UUID, _dt.datetime)):
                    return _values_equal(x, rv) != negate
                return slow(r)

            if spec is not None and type(rv) is str:
                d = spec[0]

                def equal_str(r: Any) -> bool:
                    x = r[d]
                    if type(x) is str:
                        return (x == rv) != negate
                    return equal(r)

                return equal_str
            return equal
        return slow
    return general(node)


def _is_fixed(node: Node) -> bool:
    """Does ``node`` evaluate to the same value for every record?"""
    if isinstance(node, ListExpr):
        return all(_is_fixed(i) for i in node.items)
    return isinstance(node, (Const, Arg, Var))


_KEYED_OTHER: Final = (_dt.datetime, ObjectId, uuid.UUID)


def _in_key(v: Any) -> tuple[str, Any] | None:
    """A hashable key with ``_in_key(a) == _in_key(b)`` exactly when
    ``_values_equal(a, b)``, or None when ``v`` has none (then compare)."""
    if v is None:
        return ("null", None)
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, str):
        return ("str", v)
    if isinstance(v, (int, float, Decimal)):
        if (isinstance(v, Decimal) and v.is_nan()) or (isinstance(v, float) and math.isnan(v)):
            return None  # NaN equals nothing, not even itself
        return ("num", v)
    if isinstance(v, bytes):
        return ("bytes", v)
    if isinstance(v, _KEYED_OTHER):
        return ("other", v)
    return None


def _compile_in(node: Comparison, left: KeyPath, ctx: _Ctx) -> Callable[[Any], bool]:
    """``path IN <fixed list>`` with the list hashed once: O(1) per value instead of
    O(len(list)) (a subscription may pass thousands of keys as ``$0``)."""
    options = _as_list(_operand(node.right, None, ctx))
    keys: set[tuple[str, Any]] = set()
    rest: list[Any] = []
    for o in options:
        k = _in_key(o)
        if k is None:
            rest.append(o)
        else:
            keys.add(k)

    def member(x: Any) -> bool:
        k = _in_key(x)
        if k is None:
            return any(_values_equal(x, o) for o in options)
        return k in keys or any(_values_equal(x, o) for o in rest)

    wrap, quant, parts = ctx.wrap, node.quantifier, left.parts

    def test(r: Any) -> bool:
        x = _walk([r if wrap is None else wrap(r)], parts, ctx, False)
        return _quantify(quant, x, member)

    return test


def _numeric_bounds(node: And, ctx: _Ctx) -> tuple[Any, Any, Any, Any, Any] | None:
    """``(slot, op1, v1, op2, v2)`` if ``node`` is two ordering
    comparisons of one directly readable property with numbers."""
    if ctx.direct is None or len(node.items) != 2:
        return None
    found = []
    for item in node.items:
        if not (
            isinstance(item, Comparison)
            and item.quantifier is None
            and item.list_quantifier is None
            and item.op in _ORDER_OPS
            and isinstance(item.left, KeyPath)
            and len(item.left.parts) == 1
            and isinstance(item.right, (Const, Arg, Var))
        ):
            return None
        rv = _operand(item.right, None, ctx)
        if type(rv) not in (int, float):
            return None
        found.append((item.left.parts[0], _ORDER_OPS[item.op], rv))
    (n1, op1, v1), (n2, op2, v2) = found
    if n1 != n2 or n1 in AGGREGATES:
        return None
    spec = ctx.direct(n1)
    if spec is None:
        return None
    return (spec[0], op1, v1, op2, v2)
