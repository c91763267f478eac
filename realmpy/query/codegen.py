"""The row-filter code generator: one generated list comprehension per
predicate shape, plain comparisons inline, the rest calling compiled closures."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from realmpy.query.ast import AGGREGATES, And, Arg, Comparison, Const, KeyPath, Node, Not, Or, Var
from realmpy.query.closures import _ORDER_OPS, _compile
from realmpy.query.evaluate import _Ctx, _operand

RowFilter = Callable[[Iterable[tuple[Any, Any]]], list[Any]]

# Generated row-filter factories by source text.  The source depends only on
# the predicate's shape (slots, operators, the kinds of the inline values),
# never on the values, which the factory binds: a query run again with other
# arguments reuses it instead of compiling Python source again (~100 us).
_ROW_FILTER_FACTORIES: dict[str, Callable[..., RowFilter]] = {}
_ROW_FILTER_FACTORIES_MAX: Final = 512


# Case-sensitive string operators on two strs, as _string_op computes them.
_INLINE_STRING_OPS: Final = {
    "BEGINSWITH": "{x}.startswith({v})",
    "ENDSWITH": "{x}.endswith({v})",
    "CONTAINS": "({v} in {x})",
}
_INLINE_OPS: Final = frozenset({"==", "!=", *_ORDER_OPS, *_INLINE_STRING_OPS})


class _RowFilterSource:
    """Builds the source of a row filter for one predicate and context; the
    values it refers to are collected in :attr:`values` (``_b0``, ...)."""

    def __init__(self, ctx: _Ctx) -> None:
        self.ctx = ctx
        self.values: list[Any] = []

    def bind(self, value: Any) -> str:
        self.values.append(value)
        return f"_b{len(self.values) - 1}"

    def fallback(self, n: Node) -> str:
        return f"{self.bind(_compile(n, self.ctx))}(r)"

    def expr(self, n: Node) -> str:
        ctx = self.ctx
        if isinstance(n, And):
            return "(" + " and ".join(self.expr(i) for i in n.items) + ")"
        if isinstance(n, Or):
            return "(" + " or ".join(self.expr(i) for i in n.items) + ")"
        if isinstance(n, Not):
            return f"(not {self.expr(n.item)})"
        if not (
            isinstance(n, Comparison)
            and ctx.direct is not None
            and n.quantifier is None
            and n.list_quantifier is None
            and not n.case_insensitive
            and not n.diacritic_insensitive
            and isinstance(n.left, KeyPath)
            and len(n.left.parts) == 1
            and n.left.parts[0] not in AGGREGATES
            and isinstance(n.right, (Const, Arg, Var))
            and n.op in _INLINE_OPS
        ):
            return self.fallback(n)
        spec = ctx.direct(n.left.parts[0])
        rv = _operand(n.right, None, ctx)
        if spec is None or type(spec[0]) is not int:
            return self.fallback(n)
        slot = spec[0]
        slow = self.fallback(n)
        v = self.bind(rv)
        x = f"_x{v}"
        if n.op in _ORDER_OPS and type(rv) in (int, float):
            return (
                f"(({x} {n.op} {v}) if (_type({x} := r[{slot}]) is _int "
                f"or _type({x}) is _float) else {slow})"
            )
        if n.op in ("==", "!=") and type(rv) in (int, str):
            t = "_int" if type(rv) is int else "_str"
            return f"(({x} {n.op} {v}) if _type({x} := r[{slot}]) is {t} else {slow})"
        if n.op in _INLINE_STRING_OPS and type(rv) is str:
            test = _INLINE_STRING_OPS[n.op].format(x=x, v=v)
            return f"({test} if _type({x} := r[{slot}]) is _str else {slow})"
        return slow


def _row_filter(node: Node, ctx: _Ctx) -> RowFilter:
    """``rows -> [(key, record) ...]`` keeping the rows whose record matches:
    one generated list comprehension, with comparisons of directly readable
    properties (``ctx.direct``) with numbers and strings written inline and
    everything else calling the compiled closure of that part.  Same
    semantics as :func:`_compile` (the inline tests are its fast paths)."""
    source = _RowFilterSource(ctx)
    body = source.expr(node)
    params = ", ".join(f"_b{i}" for i in range(len(source.values)))
    src = (
        f"def _make({params}):\n"
        "    def _filter(rows):\n"
        f"        return [(k, r) for k, r in rows if {body}]\n"
        "    return _filter\n"
    )
    make = _ROW_FILTER_FACTORIES.get(src)
    if make is None:
        ns: dict[str, Any] = {"_int": int, "_float": float, "_str": str, "_type": type}
        exec(src, ns)  # built from slot numbers, operators and generated names only
        make = ns["_make"]
        if len(_ROW_FILTER_FACTORIES) >= _ROW_FILTER_FACTORIES_MAX:
            _ROW_FILTER_FACTORIES.clear()
        _ROW_FILTER_FACTORIES[src] = make
    fn: RowFilter = make(*source.values)
    return fn
