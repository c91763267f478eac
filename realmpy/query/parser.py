"""The parser (recursive descent): tokens to a predicate tree and descriptors."""

from __future__ import annotations

from typing import Final

from realmpy.errors import QuerySyntaxError, QueryTooComplexError
from realmpy.query.ast import (
    _COLLECTION_AGGS,
    AGGREGATES,
    MAX_QUERY_CHARS,
    MAX_QUERY_DEPTH,
    MAX_QUERY_TERMS,
    And,
    Arg,
    Between,
    Comparison,
    Const,
    Descriptor,
    Distinct,
    KeyPath,
    Limit,
    ListExpr,
    Node,
    Not,
    Or,
    Sort,
    TruePredicate,
    Var,
)
from realmpy.query.tokenizer import _Tok, _tokenize

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
