"""Realm Query Language (a documented subset): parse once, evaluate anywhere.

Why a module of its own, free of any realm: the same predicates filter live
``Results`` in a realm, decide sync subscriptions, and express the server's
permission rules (``owner_id == %user.id``) over plain records.  So the
parser and the evaluator work on anything that looks like a record; the realm
only adds index planning on top.

Interface (stable; the server and the sync client rely on it)::

    from realmpy import query
    q = query.parse("age > $0 AND owner.name BEGINSWITH[c] %user.name")
    q.matches(record, args=(20,), variables={"user.name": "a"})  # -> bool
    q.filter(records, args=..., variables=...)   # filter, then SORT/DISTINCT/LIMIT
    q.arg_count                                  # highest $n + 1
    str(q)                                       # canonical text, re-parses equal

``parse`` caches by text, so parsing the same string twice costs a dict
lookup.  ``record`` is any ``Mapping[str, Any]`` (or, with the default
resolver, any object with attributes).  A key path is resolved one name at a
time by a *resolver* ``(value, name) -> next value``; the default one reads
``value[name]`` (``None`` if absent) from mappings and ``getattr`` otherwise.
Pass ``resolver=`` to follow links stored as keys (the realm does this).
``%name.path`` variables look up ``variables["name.path"]`` first, else walk
``variables["name"]`` through the resolver.

Supported syntax
================
- comparisons ``== = != <> < <= > >=`` between key paths, literals,
  ``$0 $1 …`` arguments and ``%var`` variables, on either side;
- string operators ``BEGINSWITH ENDSWITH CONTAINS LIKE`` (``*`` any run,
  ``?`` one character) and ``==``/``!=``, each with ``[c]`` (case
  insensitive), ``[d]`` (diacritic insensitive) or ``[cd]``;
- ``x BETWEEN {low, high}`` (inclusive), ``x IN {a, b, …}`` or ``x IN $0``
  (any iterable argument) or ``'v' IN list_property``;
- ``AND OR NOT`` (any case) and ``&& || !``, parentheses,
  ``TRUEPREDICATE FALSEPREDICATE``;
- literals: integers, floats, ``'strings'`` / ``"strings"`` with backslash
  escapes, ``true false null nil``, ``oid(<24 hex>)``, ``uuid(<uuid>)``,
  ``decimal128(<number>)``, ``B64"<base64>"``, timestamps ``T<sec>:<nanos>``
  and ``YYYY-MM-DD@HH:MM:SS[:nanos]`` (UTC);
- key paths through links and dictionaries: ``owner.name``,
  ``settings['theme']``, ``settings.@keys``, ``settings.@values``;
- collection aggregates ``@count @size @sum @avg @min @max``, as
  ``tags.@count`` or ``dogs.@avg.age``;
- quantifiers ``ANY SOME ALL NONE`` before a comparison whose left side goes
  through a collection; without one, a collection means ``ANY``;
- trailing ``SORT(path ASC|DESC, …)``, ``DISTINCT(path, …)``, ``LIMIT(n)``,
  applied in the order written.

Semantics: ``null`` equals only ``null``; ordering comparisons with ``null``,
or between values of unrelated types (a string and a number), are false
rather than errors; ``true`` never equals ``1``.  Sorting puts ``null`` first
when ascending.  Not supported (a ``QuerySyntaxError`` says so):
``SUBQUERY``, ``GEOWITHIN``; ``@type`` and full-text ``TEXT`` are not
recognised.
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import math
import operator
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final, TypeVar

from realmpy.errors import QueryArgumentError, QuerySyntaxError, QueryTooComplexError
from realmpy.objectid import ObjectId

__all__ = [
    "AGGREGATES",
    "MAX_QUERY_CHARS",
    "MAX_QUERY_DEPTH",
    "MAX_QUERY_TERMS",
    "And",
    "Arg",
    "Between",
    "Comparison",
    "Const",
    "Distinct",
    "KeyPath",
    "Limit",
    "ListExpr",
    "Node",
    "Not",
    "Or",
    "Query",
    "QueryArgumentError",
    "QuerySyntaxError",
    "QueryTooComplexError",
    "Resolver",
    "Sort",
    "TruePredicate",
    "Var",
    "default_resolver",
    "like",
    "parse",
]

T = TypeVar("T")

Resolver = Callable[[Any, str], Any]
"""``(value, name) -> next value`` along a key path; ``None`` if absent."""

AGGREGATES: Final = frozenset(
    {"@count", "@size", "@sum", "@avg", "@min", "@max", "@keys", "@values"}
)
_COLLECTION_AGGS: Final = frozenset({"@sum", "@avg", "@min", "@max"})

_OPS: Final = {
    "==": "==",
    "=": "==",
    "!=": "!=",
    "<>": "!=",
    "<": "<",
    "<=": "<=",
    "=<": "<=",
    ">": ">",
    ">=": ">=",
    "=>": ">=",
    "beginswith": "BEGINSWITH",
    "endswith": "ENDSWITH",
    "contains": "CONTAINS",
    "like": "LIKE",
}
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


# ----------------------------------------------------------------------------
# AST.  Every node renders back to canonical query text with str().


class Node:
    """Base of the syntax tree; ``str(node)`` is canonical query text."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Const(Node):
    """A literal value."""

    value: Any

    def __str__(self) -> str:
        return _render_value(self.value)


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
            if _IDENT_RE.fullmatch(p) or p in AGGREGATES:
                out.append(("." if i else "") + p)
            else:
                out.append(f"[{_render_value(p)}]")
        return "".join(out)


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

    def __str__(self) -> str:
        mods = ("c" if self.case_insensitive else "") + ("d" if self.diacritic_insensitive else "")
        q = f"{self.quantifier} " if self.quantifier else ""
        m = f"[{mods}]" if mods else ""
        return f"{q}{self.left} {self.op}{m} {self.right}"


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


def _paren(node: Node, kinds: tuple[type, ...]) -> str:
    return f"({node})" if isinstance(node, kinds) else str(node)


_IDENT_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _render_value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)  # inf and nan have no literal: pass them as $n
    if isinstance(v, str):
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
        return 'B64"' + base64.b64encode(v).decode("ascii") + '"'
    if isinstance(v, ObjectId):
        return f"oid({v})"
    if isinstance(v, uuid.UUID):
        return f"uuid({v})"
    if isinstance(v, Decimal):
        return f"decimal128({v})"
    if isinstance(v, _dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=_dt.timezone.utc)
        delta = v - _EPOCH
        seconds = delta.days * 86400 + delta.seconds
        return f"T{seconds}:{delta.microseconds * 1000}"
    raise TypeError(f"cannot render {type(v).__name__} as a query literal")


_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


# ----------------------------------------------------------------------------
# Tokenizer


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # op, punct, ident, agg, str, num, lit, arg, var, mod, eof
    value: Any
    pos: int


_TOKEN_RE: Final = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<date>\d{4}-\d{2}-\d{2}[@T]\d{2}:\d{2}:\d{2}(?::\d+)?)
  | (?P<ts>T-?\d+:-?\d+)
  | (?P<oid>oid\(\s*(?P<oidv>[0-9A-Fa-f]{24})\s*\))
  | (?P<uuid>uuid\(\s*(?P<uuidv>[0-9A-Fa-f-]{32,36})\s*\))
  | (?P<dec>decimal128\(\s*(?P<decv>[^)\s]*)\s*\))
  | (?P<b64>B64"(?P<b64v>[A-Za-z0-9+/=]*)")
  | (?P<num>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
  | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<arg>\$\d+)
  | (?P<var>%[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_@][A-Za-z0-9_]*)*)
  | (?P<mod>\[(?:c|d|cd|dc)\])
  | (?P<op>==|!=|<>|<=|=<|>=|=>|&&|\|\||[=<>!])
  | (?P<agg>@[A-Za-z]+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[(){},.\[\]])
    """,
    re.VERBOSE,
)

_ESCAPES: Final = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "0": "\0",
    "\\": "\\",
    "'": "'",
    '"': '"',
}


def _unescape(body: str, pos: int, text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", body[i + 2 : i + 6]):
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        else:
            raise QuerySyntaxError(f"unknown escape '\\{nxt}'", text, pos + i + 1)
    return "".join(out)


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise QuerySyntaxError(f"unexpected character {text[pos]!r}", text, pos)
        kind = m.lastgroup
        assert kind is not None
        start = pos
        pos = m.end()
        if kind == "ws":
            continue
        raw = m.group(0)
        value: Any
        if kind == "num":
            if re.fullmatch(r"-?\d+", raw):
                try:
                    value = int(raw)
                except ValueError:  # more digits than int() converts
                    raise QuerySyntaxError("integer literal too long", text, start) from None
            else:
                value = float(raw)
            toks.append(_Tok("lit", value, start))
        elif kind == "str":
            toks.append(_Tok("lit", _unescape(raw[1:-1], start + 1, text), start))
        elif kind == "date":
            toks.append(_Tok("lit", _parse_date(raw, start, text), start))
        elif kind == "ts":
            secs, nanos = raw[1:].split(":")
            value = _EPOCH + _dt.timedelta(seconds=int(secs), microseconds=int(nanos) // 1000)
            toks.append(_Tok("lit", value, start))
        elif kind == "oid":
            toks.append(_Tok("lit", ObjectId(m.group("oidv")), start))
        elif kind == "uuid":
            try:
                value = uuid.UUID(m.group("uuidv"))
            except ValueError:
                raise QuerySyntaxError("malformed uuid(...)", text, start) from None
            toks.append(_Tok("lit", value, start))
        elif kind == "dec":
            try:
                value = Decimal(m.group("decv"))
            except InvalidOperation:
                raise QuerySyntaxError("malformed decimal128(...)", text, start) from None
            toks.append(_Tok("lit", value, start))
        elif kind == "b64":
            try:
                value = base64.b64decode(m.group("b64v"), validate=True)
            except ValueError:
                raise QuerySyntaxError('malformed B64"..."', text, start) from None
            toks.append(_Tok("lit", value, start))
        elif kind == "arg":
            toks.append(_Tok("arg", int(raw[1:]), start))
        elif kind == "var":
            toks.append(_Tok("var", raw[1:], start))
        elif kind == "mod":
            toks.append(_Tok("mod", raw[1:-1], start))
        elif kind == "agg":
            low = raw.lower()
            if low not in AGGREGATES:
                raise QuerySyntaxError(
                    f"unknown aggregate {raw!r} (supported: " + ", ".join(sorted(AGGREGATES)) + ")",
                    text,
                    start,
                )
            toks.append(_Tok("agg", low, start))
        else:
            if kind == "ident" and raw.lower() in _UNSUPPORTED:
                raise QuerySyntaxError(f"{raw.upper()} is not supported by realmpy", text, start)
            toks.append(_Tok(kind, raw, start))
    toks.append(_Tok("eof", None, n))
    return toks


def _parse_date(raw: str, pos: int, text: str) -> _dt.datetime:
    date, _, clock = raw.replace("T", "@", 1).partition("@")
    parts = clock.split(":")
    nanos = int(parts[3]) if len(parts) == 4 else 0
    try:
        y, mo, d = (int(x) for x in date.split("-"))
        when = _dt.datetime(
            y,
            mo,
            d,
            int(parts[0]),
            int(parts[1]),
            int(parts[2]),
            tzinfo=_dt.timezone.utc,
        )
    except ValueError as exc:
        raise QuerySyntaxError(f"invalid timestamp: {exc}", text, pos) from None
    return when + _dt.timedelta(microseconds=nanos // 1000)


# ----------------------------------------------------------------------------
# Parser (recursive descent)

_UNSUPPORTED: Final = frozenset({"subquery", "geowithin"})


class _Parser:
    def __init__(self, text: str) -> None:
        if len(text) > MAX_QUERY_CHARS:
            raise QueryTooComplexError(
                f"query of {len(text)} characters is longer than the limit of "
                f"{MAX_QUERY_CHARS} (MAX_QUERY_CHARS): pass long lists as a $argument",
                text[:80] + "...",
                80,
            )
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.max_arg = -1
        self.depth = 0
        self.terms = 0

    # -- helpers
    def peek(self, k: int = 0) -> _Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self) -> _Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def is_kw(self, word: str, k: int = 0) -> bool:
        t = self.peek(k)
        return t.kind == "ident" and t.value.lower() == word

    def error(
        self, message: str, tok: _Tok | None = None, kind: type[QuerySyntaxError] = QuerySyntaxError
    ) -> QuerySyntaxError:
        t = tok or self.peek()
        if t.kind == "eof":
            found = "end of query"
        else:
            found = repr(self.text[t.pos :].split(None, 1)[0][:20])
        return kind(f"{message}, found {found}", self.text, t.pos)

    def expect_punct(self, p: str) -> _Tok:
        t = self.peek()
        if t.kind == "punct" and t.value == p:
            return self.next()
        raise self.error(f"expected '{p}'")

    # -- grammar
    def parse(self) -> tuple[Node, tuple[Descriptor, ...]]:
        if self.peek().kind == "eof":
            raise self.error("empty query: write a predicate or TRUEPREDICATE")
        pred = self.parse_or()
        descs: list[Descriptor] = []
        while self.peek().kind != "eof":
            if self.is_kw("sort"):
                descs.append(self.parse_sort())
            elif self.is_kw("distinct"):
                descs.append(self.parse_distinct())
            elif self.is_kw("limit"):
                descs.append(self.parse_limit())
            else:
                raise self.error("expected AND, OR, SORT, DISTINCT, LIMIT or end")
        return pred, tuple(descs)

    def parse_or(self) -> Node:
        items = [self.parse_and()]
        while self.is_kw("or") or (self.peek().kind == "op" and self.peek().value == "||"):
            self.next()
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self) -> Node:
        items = [self.parse_not()]
        while self.is_kw("and") or (self.peek().kind == "op" and self.peek().value == "&&"):
            self.next()
            items.append(self.parse_not())
        return items[0] if len(items) == 1 else And(tuple(items))

    def enter(self) -> None:
        """One level deeper (a parenthesis or a NOT); see MAX_QUERY_DEPTH."""
        self.depth += 1
        if self.depth > MAX_QUERY_DEPTH:
            raise self.error(
                f"query nested deeper than {MAX_QUERY_DEPTH} parentheses and NOTs "
                "(MAX_QUERY_DEPTH): simplify it",
                kind=QueryTooComplexError,
            )

    def term(self) -> None:
        """One more comparison; see MAX_QUERY_TERMS."""
        self.terms += 1
        if self.terms > MAX_QUERY_TERMS:
            raise self.error(
                f"query with more than {MAX_QUERY_TERMS} comparisons (MAX_QUERY_TERMS): "
                "use IN $0 with a list argument, or split it",
                kind=QueryTooComplexError,
            )

    def parse_not(self) -> Node:
        if self.is_kw("not") or (self.peek().kind == "op" and self.peek().value == "!"):
            self.next()
            self.enter()
            item = self.parse_not()
            self.depth -= 1
            return Not(item)
        return self.parse_atom()

    def parse_atom(self) -> Node:
        t = self.peek()
        if t.kind == "punct" and t.value == "(":
            self.next()
            self.enter()
            inner = self.parse_or()
            self.expect_punct(")")
            self.depth -= 1
            return inner
        self.term()
        if self.is_kw("truepredicate"):
            self.next()
            return TruePredicate(True)
        if self.is_kw("falsepredicate"):
            self.next()
            return TruePredicate(False)
        return self.parse_comparison()

    def parse_comparison(self) -> Node:
        quant: str | None = None
        for word in ("any", "some", "all", "none"):
            if self.is_kw(word) and not self._is_operator_after_ident():
                self.next()
                quant = "ANY" if word == "some" else word.upper()
                break
        left = self.parse_operand()
        if quant is not None and not isinstance(left, KeyPath):
            raise self.error(f"{quant} needs a key path after it")
        t = self.peek()
        if self.is_kw("between"):
            self.next()
            self.expect_punct("{")
            low = self.parse_operand()
            self.expect_punct(",")
            high = self.parse_operand()
            self.expect_punct("}")
            return Between(left, low, high, quant)
        if self.is_kw("in"):
            self.next()
            right = self.parse_operand(allow_list=True)
            return Comparison(left, "IN", right, quant)
        op: str | None = None
        if t.kind == "op" and t.value in _OPS:
            op = _OPS[t.value]
        elif t.kind == "ident" and t.value.lower() in _OPS:
            op = _OPS[t.value.lower()]
        if op is None:
            raise self.error(
                "expected a comparison operator (== != < <= > >= BEGINSWITH "
                "ENDSWITH CONTAINS LIKE IN BETWEEN)"
            )
        self.next()
        ci = di = False
        if self.peek().kind == "mod":
            mod = self.next()
            ci = "c" in mod.value
            di = "d" in mod.value
            if op in ("<", "<=", ">", ">="):
                raise self.error(f"[{mod.value}] does not apply to {op}", mod)
        right = self.parse_operand()
        return Comparison(left, op, right, quant, ci, di)

    def _is_operator_after_ident(self) -> bool:
        """``any == 3``: a property named like a quantifier."""
        nxt = self.peek(1)
        return nxt.kind in ("op", "mod", "eof") or (
            nxt.kind == "punct" and nxt.value in (".", "[", ")")
        )

    def parse_operand(self, allow_list: bool = False) -> Node:
        t = self.peek()
        if t.kind == "lit":
            self.next()
            return Const(t.value)
        if t.kind == "arg":
            self.next()
            self.max_arg = max(self.max_arg, t.value)
            return Arg(t.value)
        if t.kind == "var":
            self.next()
            return Var(t.value)
        if t.kind == "punct" and t.value == "{":
            if not allow_list:
                raise self.error("a list {…} is only allowed after IN")
            self.next()
            items: list[Node] = []
            if not (self.peek().kind == "punct" and self.peek().value == "}"):
                items.append(self.parse_operand())
                while self.peek().kind == "punct" and self.peek().value == ",":
                    self.next()
                    items.append(self.parse_operand())
            self.expect_punct("}")
            return ListExpr(tuple(items))
        if t.kind == "ident":
            low = t.value.lower()
            if low in ("true", "false"):
                self.next()
                return Const(low == "true")
            if low in ("null", "nil"):
                self.next()
                return Const(None)
            return self.parse_keypath()
        raise self.error("expected a key path, literal, $argument or %variable")

    def parse_keypath(self) -> KeyPath:
        first = self.next()
        parts = [first.value]
        while True:
            t = self.peek()
            if t.kind == "punct" and t.value == ".":
                self.next()
                nt = self.next()
                if nt.kind not in ("ident", "agg"):
                    raise self.error("expected a property name or @aggregate after '.'", nt)
                parts.append(nt.value)
            elif t.kind == "agg":
                # "tags.@count" tokenizes as ident, punct '.', agg; allow
                # "tags@count" too? No: RQL requires the dot.
                raise self.error("expected '.' before an @aggregate")
            elif t.kind == "punct" and t.value == "[":
                self.next()
                key = self.next()
                if key.kind != "lit" or not isinstance(key.value, str):
                    raise self.error("expected a string key inside [...]", key)
                self.expect_punct("]")
                parts.append(key.value)
            else:
                break
        self._check_aggregates(parts, first)
        return KeyPath(tuple(parts))

    def _check_aggregates(self, parts: list[str], tok: _Tok) -> None:
        for i, p in enumerate(parts):
            if p not in AGGREGATES:
                continue
            if i == 0:
                raise self.error(f"{p} needs a collection before it", tok)
            rest = parts[i + 1 :]
            if p in ("@count", "@size") and rest:
                raise self.error(f"{p} must end the key path", tok)
            if p in _COLLECTION_AGGS and any(r in AGGREGATES for r in rest):
                raise self.error(f"nothing may follow {p} but property names", tok)

    def parse_sort(self) -> Sort:
        self.next()
        self.expect_punct("(")
        keys: list[tuple[KeyPath, bool]] = []
        while True:
            if self.peek().kind != "ident":
                raise self.error("expected a key path in SORT(...)")
            path = self.parse_keypath()
            asc = True
            if self.is_kw("asc") or self.is_kw("ascending"):
                self.next()
            elif self.is_kw("desc") or self.is_kw("descending"):
                self.next()
                asc = False
            keys.append((path, asc))
            if self.peek().kind == "punct" and self.peek().value == ",":
                self.next()
                continue
            break
        self.expect_punct(")")
        return Sort(tuple(keys))

    def parse_distinct(self) -> Distinct:
        self.next()
        self.expect_punct("(")
        paths: list[KeyPath] = []
        while True:
            if self.peek().kind != "ident":
                raise self.error("expected a key path in DISTINCT(...)")
            paths.append(self.parse_keypath())
            if self.peek().kind == "punct" and self.peek().value == ",":
                self.next()
                continue
            break
        self.expect_punct(")")
        return Distinct(tuple(paths))

    def parse_limit(self) -> Limit:
        self.next()
        self.expect_punct("(")
        t = self.next()
        if t.kind != "lit" or type(t.value) is not int or t.value < 0:
            raise self.error("LIMIT needs a non-negative integer", t)
        self.expect_punct(")")
        return Limit(t.value)


# ----------------------------------------------------------------------------
# Evaluation


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


# LIKE without backtracking.  A pattern is literal segments separated by
# ``*``; ``?`` stands for one character inside a segment, so every segment
# has a fixed length.  The first segment must match at the start, the last at
# the end, and each middle one is placed at its leftmost match after the one
# before: placing a segment earlier never leaves less room for the rest, so
# the leftmost placement finds a match whenever there is one.  Each segment
# is one ``str.find`` or, when it holds ``?``, one search of a regular
# expression made of literals and ``.`` only (no repetition, nothing to
# backtrack into): O(len(text) * len(pattern)) at worst, where translating
# the pattern to one ``.*`` regex took exponential time on ``*a*a*a*a*b``.
_Segment = tuple[str | re.Pattern[str], int]  # the segment, its length in characters


@functools.lru_cache(maxsize=256)
def _like_segments(pattern: str) -> tuple[int, tuple[_Segment, ...]]:
    """(fewest characters a match has, the segments); empty middle segments
    (``**``) are dropped, so each one the matcher visits consumes a character."""
    parts = pattern.split("*")
    kept = [parts[0], *(p for p in parts[1:-1] if p), parts[-1]] if len(parts) > 1 else parts
    segs = tuple(
        (
            part
            if "?" not in part
            else re.compile(".".join(re.escape(x) for x in part.split("?")), re.DOTALL),
            len(part),
        )
        for part in kept
    )
    return sum(n for _, n in segs), segs


def _segment_at(text: str, seg: str | re.Pattern[str], pos: int) -> bool:
    if isinstance(seg, str):
        return text.startswith(seg, pos)
    return seg.match(text, pos) is not None


def _segment_find(text: str, seg: str | re.Pattern[str], start: int, end: int) -> int:
    """Where ``seg`` first matches wholly inside ``text[start:end]`` (-1: nowhere)."""
    if isinstance(seg, str):
        return text.find(seg, start, end)
    m = seg.search(text, start, end)
    return -1 if m is None else m.start()


def like(text: str, pattern: str) -> bool:
    """Does all of ``text`` match the LIKE ``pattern`` (``*`` any run, ``?``
    one character)?  At worst O(len(text) * len(pattern)), never backtracking.
    A pattern is at most ``MAX_QUERY_CHARS`` characters (``QueryArgumentError``)."""
    if len(pattern) > MAX_QUERY_CHARS:
        raise QueryArgumentError(
            f"LIKE pattern of {len(pattern)} characters is longer than MAX_QUERY_CHARS "
            f"({MAX_QUERY_CHARS})"
        )
    least, segs = _like_segments(pattern)
    n = len(text)
    if n < least:
        return False
    (first, first_len), (last, last_len) = segs[0], segs[-1]
    if len(segs) == 1:
        return n == first_len and _segment_at(text, first, 0)
    pos, end = first_len, n - last_len
    if not _segment_at(text, first, 0) or not _segment_at(text, last, end):
        return False
    for seg, length in segs[1:-1]:
        found = _segment_find(text, seg, pos, end)
        if found < 0:
            return False
        pos = found + length
    return True


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
        and not (node.case_insensitive or node.diacritic_insensitive)
        and isinstance(node.left, KeyPath)
        and _is_fixed(node.right)
    ):
        return _compile_in(node, node.left, ctx)
    if (
        isinstance(node, Comparison)
        and node.quantifier is None
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
                return lambda r: False
            rv_bool = isinstance(rv, bool)

            def ordered(r: Any) -> bool:
                x = get(r)
                if type(x) in _SCALARS or isinstance(x, (ObjectId, uuid.UUID, _dt.datetime)):
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
                if type(x) in _SCALARS or isinstance(x, (ObjectId, uuid.UUID, _dt.datetime)):
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


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query: predicate plus SORT/DISTINCT/LIMIT descriptors.

    Immutable and shareable between threads; get one with :func:`parse`.
    """

    text: str
    predicate: Node
    descriptors: tuple[Descriptor, ...]
    arg_count: int
    terms: int = 1
    """Comparisons (and BETWEEN, TRUEPREDICATE, FALSEPREDICATE): see MAX_QUERY_TERMS."""

    def __str__(self) -> str:
        tail = "".join(" " + str(d) for d in self.descriptors)
        return f"{self.predicate}{tail}"

    def _ctx(
        self,
        args: Sequence[Any],
        variables: Mapping[str, Any] | None,
        resolver: Resolver | None,
    ) -> _Ctx:
        if len(args) < self.arg_count:
            raise QueryArgumentError(
                f"the query uses ${self.arg_count - 1} but only {len(args)} "
                f"argument(s) were given: {self.text!r}"
            )
        return _Ctx(args, variables or {}, resolver or default_resolver)

    def matches(
        self,
        record: Any,
        args: Sequence[Any] = (),
        variables: Mapping[str, Any] | None = None,
        resolver: Resolver | None = None,
    ) -> bool:
        """True if ``record`` satisfies the predicate (descriptors ignored)."""
        return _eval(self.predicate, record, self._ctx(args, variables, resolver))

    def matcher(
        self,
        args: Sequence[Any] = (),
        variables: Mapping[str, Any] | None = None,
        resolver: Resolver | None = None,
        direct: Direct | None = None,
        wrap: Callable[[Any], Any] | None = None,
    ) -> Callable[[Any], bool]:
        """A one-argument predicate with arguments bound (checked once).

        For speed over raw records: ``direct(name)`` returns ``(slot,)``
        when the one-name path ``name`` is a plain value read as
        ``record[slot]`` (e.g. a position in a positional record; else
        ``None``: the resolver is used), and ``wrap(record)`` gives what the
        resolver walks for everything else (e.g. an object that follows
        links)."""
        ctx = self._ctx(args, variables, resolver)
        ctx.direct = direct
        ctx.wrap = wrap
        return _compile(self.predicate, ctx)

    def row_filter(
        self,
        args: Sequence[Any] = (),
        resolver: Resolver | None = None,
        direct: Direct | None = None,
        wrap: Callable[[Any], Any] | None = None,
    ) -> Callable[[Iterable[tuple[Any, Any]]], list[Any]]:
        """Like :meth:`matcher`, for many records at once: a function from
        ``(key, record)`` pairs to the list of those whose record matches
        (one list comprehension; plain comparisons inline)."""
        ctx = self._ctx(args, None, resolver)
        ctx.direct = direct
        ctx.wrap = wrap
        return _row_filter(self.predicate, ctx)

    def filter(
        self,
        records: Iterable[T],
        args: Sequence[Any] = (),
        variables: Mapping[str, Any] | None = None,
        resolver: Resolver | None = None,
    ) -> list[T]:
        """Matching records, then SORT/DISTINCT/LIMIT in the order written."""
        match = _compile(self.predicate, self._ctx(args, variables, resolver))
        kept = [r for r in records if match(r)]
        return self.order(kept, resolver=resolver)

    def order(self, records: list[T], resolver: Resolver | None = None) -> list[T]:
        """Apply only the descriptors (SORT, DISTINCT, LIMIT) to ``records``."""
        ctx = _Ctx((), {}, resolver or default_resolver)
        out = records
        for d in self.descriptors:
            if isinstance(d, Sort):
                out = list(out)
                for path, asc in reversed(d.keys):
                    parts = path.parts

                    def sort_key(r: T, parts: tuple[str, ...] = parts) -> Any:
                        return _sort_rank(_walk([r], parts, ctx, False))

                    out.sort(key=sort_key, reverse=not asc)
            elif isinstance(d, Distinct):
                seen: set[Any] = set()
                kept: list[T] = []
                for r in out:
                    key = tuple(_hashable(_walk([r], p.parts, ctx, False)) for p in d.paths)
                    if key not in seen:
                        seen.add(key)
                        kept.append(r)
                out = kept
            else:
                out = out[: d.count]
        return out


def parse(text: str) -> Query:
    """Parse ``text`` once (cached); raise :class:`QuerySyntaxError` with the
    position of the first problem."""
    if not isinstance(text, str):
        raise TypeError(f"a query is a str, not {type(text).__name__}")
    return _parse_cached(text)


@functools.lru_cache(maxsize=1024)
def _parse_cached(text: str) -> Query:
    p = _Parser(text)
    predicate, descriptors = p.parse()
    return Query(text, predicate, descriptors, p.max_arg + 1, p.terms)
