"""Filter pushdown: the part of a query the storage engine can decide.

Why: a query over all objects of a class otherwise decodes every record in
Python only to reject most of them.  The engine can evaluate simple
comparisons on the raw msgpack records (``FILTER PROGRAMS`` in
``csrc/realmpy.h``) and hand back only the candidates.

:func:`compile_filter` turns a parsed :class:`~realmpy.query.Query` with its
arguments into such a program, or ``None`` when nothing of it can be pushed.
What is pushed, with the query language's exact semantics:

- ``prop op value`` and ``value op prop`` for ``== != < <= > >=``, where
  ``prop`` is a property read by position from the record (``slot``) and
  ``value`` a literal or ``$n`` argument that is ``None``, a ``bool``, an
  ``int`` in [-2**63, 2**64), a ``float``, a ``str`` or ``bytes``;
- ``prop BETWEEN {low, high}``, ``prop IN {a, b, …}`` and ``prop IN $n``
  (a list, tuple or set of such values), without quantifier or ``[c]``/``[d]``;
- ``AND``, ``OR``, ``NOT``, ``TRUEPREDICATE``, ``FALSEPREDICATE``.

Everything else (key paths through links, collections, aggregates, string
operators, ``[c]``, quantifiers, other value types, ``%variables``) becomes
an *unknown* verdict, so the engine never rejects a record that the full
predicate could accept: ``a AND unknown`` still filters on ``a``.  Records
shorter than the schema (written before a property existed) get, per
comparison, the verdict Python reaches on the property's default, computed
here.  The engine keeps true *and* unknown records; the caller always
re-checks the full predicate on what it gets, so a program only has to be
sound where it says false, and is exact where it decides (the tests check
both against the Python evaluator).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Final

import msgpack  # type: ignore[import-untyped,unused-ignore]

import realmpy.query as _q
from realmpy._engine import lib
from realmpy.query.evaluate import _compare

__all__ = ["MAX_FIELDS", "compile_filter"]

_CMP: Final[int] = int(lib.RP_FILTER_CMP)
_AND: Final[int] = int(lib.RP_FILTER_AND)
_OR: Final[int] = int(lib.RP_FILTER_OR)
_NOT: Final[int] = int(lib.RP_FILTER_NOT)
_PUSH: Final[int] = int(lib.RP_FILTER_PUSH)
_FALSE: Final[int] = int(lib.RP_FILTER_FALSE)
_TRUE: Final[int] = int(lib.RP_FILTER_TRUE)
_UNKNOWN: Final[int] = int(lib.RP_FILTER_UNKNOWN)
_OPCODE: Final = {
    "==": int(lib.RP_FOP_EQ),
    "!=": int(lib.RP_FOP_NE),
    "<": int(lib.RP_FOP_LT),
    "<=": int(lib.RP_FOP_LE),
    ">": int(lib.RP_FOP_GT),
    ">=": int(lib.RP_FOP_GE),
}
# ``value op prop`` is ``prop flipped-op value``.
_FLIP: Final = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
# The engine's limits (csrc/internal.h): fields, instructions, stack.
MAX_FIELDS: Final = 1024
_MAX_OPS: Final = 256
_MAX_DEPTH: Final = 64
# Exactly these types (not subclasses such as IntEnum) are compared by the
# engine; their msgpack encoding is one nil/bool/int/float/str/bin.
_PLAIN: Final = frozenset({type(None), bool, int, float, str, bytes})
_INT_MIN: Final = -(2**63)
_INT_END: Final = 2**64
_IN_TYPES: Final = (list, tuple, set, frozenset)

_cmp_header = struct.Struct("<BBH").pack  # operator, missing verdict, field


_ANY_VERDICT: Final = frozenset({_FALSE, _TRUE, _UNKNOWN})


def _k_and(a: int, b: int) -> int:
    """Kleene AND, as the engine computes it."""
    if _FALSE in (a, b):
        return _FALSE
    return _TRUE if a == b == _TRUE else _UNKNOWN


def _k_or(a: int, b: int) -> int:
    if _TRUE in (a, b):
        return _TRUE
    return _FALSE if a == b == _FALSE else _UNKNOWN


def _k_not(a: int) -> int:
    return a if a == _UNKNOWN else _TRUE if a == _FALSE else _FALSE


class _Unpushable(Exception):
    """Raised inside the compiler for a part the engine cannot decide."""


def _has_var(node: object) -> bool:
    if isinstance(node, _q.Var):
        return True
    if isinstance(node, (_q.And, _q.Or, _q.ListExpr)):
        return any(_has_var(i) for i in node.items)
    if isinstance(node, _q.Not):
        return _has_var(node.item)
    if isinstance(node, _q.Comparison):
        return _has_var(node.left) or _has_var(node.right)
    if isinstance(node, _q.Between):
        return _has_var(node.value) or _has_var(node.low) or _has_var(node.high)
    return False


class _Compiler:
    def __init__(
        self,
        args: Sequence[Any],
        slot: Callable[[str], int | None],
        defaults: Sequence[Any],
    ) -> None:
        self.args = args
        self.slot = slot
        self.defaults = defaults
        self.out = bytearray()
        self.ops = 0
        self.cmps = 0
        self.depth = 0
        self.max_depth = 0
        # Per stack entry, the verdicts it can have at run time: a program
        # that can never say FALSE filters nothing and is not worth running.
        self.can: list[frozenset[int]] = []

    def _op(self, code: int, pushes: int) -> None:
        self.ops += 1
        self.depth += pushes
        self.max_depth = max(self.max_depth, self.depth)
        self.out.append(code)

    def push(self, verdict: int) -> None:
        self._op(_PUSH, 1)
        self.out.append(verdict)
        self.can.append(frozenset({verdict}))

    def combine(self, code: int, parts: Sequence[Callable[[], None]]) -> None:
        """Each part pushes one verdict; fold them with AND/OR (depth 2)."""
        fold = _k_and if code == _AND else _k_or
        for i, emit in enumerate(parts):
            emit()
            if i:
                self._op(code, -1)
                b, a = self.can.pop(), self.can.pop()
                self.can.append(frozenset(fold(x, y) for x in a for y in b))

    def value(self, node: _q.Node) -> Any:
        if isinstance(node, _q.Const):
            return node.value
        if isinstance(node, _q.Arg) and node.index < len(self.args):
            return self.args[node.index]
        raise _Unpushable

    def field(self, node: _q.Node) -> int:
        if not (
            isinstance(node, _q.KeyPath)
            and len(node.parts) == 1
            and node.parts[0] not in _q.AGGREGATES
        ):
            raise _Unpushable
        slot = self.slot(node.parts[0])
        if slot is None or not 0 <= slot < MAX_FIELDS:
            raise _Unpushable
        return slot

    def cmp(self, slot: int, op: str, value: Any) -> None:
        """Push ``field[slot] op value``, or raise :class:`_Unpushable`."""
        t = type(value)
        if t not in _PLAIN or (t is int and not _INT_MIN <= value < _INT_END):
            raise _Unpushable
        try:
            const = msgpack.packb(value, use_bin_type=True)
        except (ValueError, OverflowError, UnicodeEncodeError):  # lone surrogates
            raise _Unpushable from None
        # A record too short for the field reads the property's default:
        # decide that here, with the Python evaluator's own comparison.
        missing = _UNKNOWN
        if slot < len(self.defaults) and type(self.defaults[slot]) in _PLAIN:
            hit = _compare(op, self.defaults[slot], value, False, False)
            missing = _TRUE if hit else _FALSE
        self._op(_CMP, 1)
        self.out += _cmp_header(_OPCODE[op], missing, slot)
        self.out += const
        self.cmps += 1
        self.can.append(_ANY_VERDICT)  # unknown too: a nested or ext value

    def emit(self, node: _q.Node) -> None:
        """Push the verdict of ``node``: exact where pushable, else unknown."""
        if isinstance(node, _q.And):
            self.combine(_AND, [partial(self.emit, i) for i in node.items])
        elif isinstance(node, _q.Or):
            self.combine(_OR, [partial(self.emit, i) for i in node.items])
        elif isinstance(node, _q.Not):
            self.emit(node.item)
            self._op(_NOT, 0)
            self.can[-1] = frozenset(_k_not(x) for x in self.can[-1])
        elif isinstance(node, _q.TruePredicate):
            self.push(_TRUE if node.value else _FALSE)
        else:
            # A leaf either pushes exactly one verdict or nothing at all.
            mark = (len(self.out), len(self.can), self.ops, self.cmps, self.depth)
            try:
                self.leaf(node)
            except _Unpushable:
                del self.out[mark[0] :]
                del self.can[mark[1] :]
                self.ops, self.cmps, self.depth = mark[2:]
                self.push(_UNKNOWN)

    def leaf(self, node: _q.Node) -> None:
        if isinstance(node, _q.Between):
            if node.quantifier is not None:
                raise _Unpushable
            slot = self.field(node.value)
            low, high = self.value(node.low), self.value(node.high)
            self.combine(
                _AND, [partial(self.cmp, slot, ">=", low), partial(self.cmp, slot, "<=", high)]
            )
            return
        if not (
            isinstance(node, _q.Comparison)
            and node.quantifier is None
            and node.list_quantifier is None
            and not node.case_insensitive
            and not node.diacritic_insensitive
        ):
            raise _Unpushable
        if node.op == "IN":
            slot = self.field(node.left)
            if isinstance(node.right, _q.ListExpr):
                options = [self.value(i) for i in node.right.items]
            else:
                v = self.value(node.right)
                options = list(v) if isinstance(v, _IN_TYPES) else [v]
            if not options:
                self.push(_FALSE)
                return
            self.combine(_OR, [partial(self.cmp, slot, "==", o) for o in options])
            return
        if node.op not in _OPCODE:
            raise _Unpushable
        if isinstance(node.left, _q.KeyPath):
            self.cmp(self.field(node.left), node.op, self.value(node.right))
        else:
            self.cmp(self.field(node.right), _FLIP[node.op], self.value(node.left))


def compile_filter(
    q: _q.Query,
    args: Sequence[Any],
    slot: Callable[[str], int | None],
    defaults: Sequence[Any],
) -> bytes | None:
    """The engine filter program for ``q``'s predicate with ``args``, or
    ``None`` if no comparison of it can be pushed (or the program would
    exceed the engine's limits).

    ``slot(name)`` gives the record position of a property whose stored
    value is the plain value the query compares (``None`` for links,
    collections and the like); ``defaults[i]`` is the value a record too
    short for position ``i`` has there."""
    if len(args) < q.arg_count or _has_var(q.predicate):
        return None  # Python reports the missing argument or variable
    c = _Compiler(args, slot, defaults)
    c.emit(q.predicate)
    if not c.cmps or c.ops > _MAX_OPS or c.max_depth > _MAX_DEPTH or _FALSE not in c.can[0]:
        return None  # nothing pushed, too large, or it could never reject a record
    return bytes(c.out)
