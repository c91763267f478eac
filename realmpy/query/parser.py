"""The parser (recursive descent): tokens to a predicate tree and descriptors."""

from __future__ import annotations

from typing import Final

from realmpy.errors import QuerySyntaxError, QueryTooComplexError, QueryUnsupportedError
from realmpy.query.ast import (
    _COLLECTION_AGGS,
    AGGREGATES,
    MAX_QUERY_CHARS,
    MAX_QUERY_DEPTH,
    MAX_QUERY_TERMS,
    And,
    Arg,
    ArgKey,
    Arith,
    Between,
    Comparison,
    Const,
    Descriptor,
    Distinct,
    FullText,
    GeoCoords,
    GeoShape,
    GeoWithin,
    KeyPath,
    Limit,
    LinksPart,
    ListExpr,
    ListIndex,
    Node,
    Not,
    ObjLit,
    Or,
    Sort,
    Subquery,
    TruePredicate,
    Var,
)
from realmpy.query.tokenizer import _Tok, _tokenize
from realmpy.textsearch import search_terms

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
            # A parenthesised predicate, or an arithmetic operand such as
            # ``(age + 1) * 2 > 10``: try the predicate first, and read a
            # comparison instead if that fails or an operator follows.
            state = (self.i, self.depth, self.terms, self.max_arg)
            first: QuerySyntaxError | None = None
            try:
                self.next()
                self.enter()
                inner = self.parse_or()
                self.expect_punct(")")
                self.depth -= 1
                after = self.peek()
                operator_follows = (
                    after.kind in ("arith", "mod")
                    or (after.kind == "op" and after.value in _OPS)
                    or (after.kind == "ident" and after.value.lower() in (*_OPS, "in", "between"))
                )
                if not operator_follows:
                    return inner
            except QueryUnsupportedError:
                raise
            except QuerySyntaxError as exc:
                first = exc
            self.i, self.depth, self.terms, self.max_arg = state
            try:
                self.term()
                return self.parse_comparison()
            except QuerySyntaxError as exc:
                # Report the reading that got further.
                if first is not None and first.position >= exc.position:
                    raise first from None
                raise
        self.term()
        if self.is_kw("truepredicate"):
            self.next()
            return TruePredicate(True)
        if self.is_kw("falsepredicate"):
            self.next()
            return TruePredicate(False)
        return self.parse_comparison()

    def quantifier(self) -> str | None:
        """``ANY``/``SOME``/``ALL``/``NONE`` before an operand, if there is one."""
        for word in ("any", "some", "all", "none"):
            if self.is_kw(word) and not self._is_operator_after_ident():
                self.next()
                return "ANY" if word == "some" else word.upper()
        return None

    def parse_comparison(self) -> Node:
        quant = self.quantifier()
        left = self.parse_operand()
        if quant is not None and not isinstance(left, (KeyPath, ListExpr, Arg)):
            raise self.error(f"{quant} needs a key path or a list after it")
        t = self.peek()
        if self.is_kw("between"):
            self.next()
            self.expect_punct("{")
            low = self.parse_operand()
            self.expect_punct(",")
            high = self.parse_operand()
            self.expect_punct("}")
            return Between(left, low, high, quant)
        if self.is_kw("text"):
            return self.parse_fulltext(quant, left)
        if self.is_kw("geowithin"):
            return self.parse_geowithin(quant, left)
        op: str | None = None
        if self.is_kw("in"):
            op = "IN"
        elif t.kind == "op" and t.value in _OPS:
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
        list_quant = self.quantifier()
        right = self.parse_operand()
        if list_quant is not None and not isinstance(right, (ListExpr, Arg, KeyPath)):
            raise self.error(f"{list_quant} needs a list after it")
        return Comparison(left, op, right, quant, ci, di, list_quant)

    def parse_fulltext(self, quant: str | None, left: Node) -> Node:
        """``path TEXT 'terms'`` (or ``TEXT $n``), after the path."""
        if quant is not None or not isinstance(left, KeyPath):
            raise self.error("TEXT needs a string property's key path on its left (no quantifier)")
        self.next()
        t = self.peek()
        right = self.parse_primary()
        if isinstance(right, Const) and isinstance(right.value, str):
            try:
                search_terms(right.value)
            except ValueError as exc:
                raise self.error(f"TEXT {right}: {exc}", t) from None
        elif not isinstance(right, Arg):
            raise self.error("TEXT needs a string literal or a $argument on its right", t)
        return FullText(left, right)

    def parse_geowithin(self, quant: str | None, left: Node) -> Node:
        """``path geoWithin geoBox(…) | geoCircle(…) | geoPolygon(…) | $n``."""
        if not isinstance(left, KeyPath):
            raise self.error("geoWithin needs a key path on its left")
        self.next()
        t = self.peek()
        if t.kind == "arg":
            self.next()
            self.max_arg = max(self.max_arg, t.value)
            return GeoWithin(left, Arg(t.value), quant)
        return GeoWithin(left, self.parse_geo_shape(), quant)

    def parse_geo_shape(self) -> GeoShape:
        t = self.next()
        kind = {"geobox": "geoBox", "geocircle": "geoCircle", "geopolygon": "geoPolygon"}.get(
            str(t.value).lower() if t.kind == "ident" else ""
        )
        if kind is None:
            raise self.error("expected geoBox, geoPolygon, geoCircle or a $argument", t)
        self.expect_punct("(")
        if kind == "geoPolygon":
            points: list[GeoCoords] = []
            sizes = []
            while True:
                self.expect_punct("{")
                ring = [self.parse_geo_point()]
                while self.peek().kind == "punct" and self.peek().value == ",":
                    self.next()
                    ring.append(self.parse_geo_point())
                self.expect_punct("}")
                points += ring
                sizes.append(len(ring))
                if not (self.peek().kind == "punct" and self.peek().value == ","):
                    break
                self.next()
            self.expect_punct(")")
            return GeoShape(kind, tuple(points), ring_sizes=tuple(sizes))
        first = self.parse_geo_point()
        self.expect_punct(",")
        if kind == "geoBox":
            second = self.parse_geo_point()
            self.expect_punct(")")
            return GeoShape(kind, (first, second))
        radius = self.parse_geo_number()
        self.expect_punct(")")
        return GeoShape(kind, (first,), radius)

    def parse_geo_point(self) -> GeoCoords:
        """``[longitude, latitude]`` or ``[longitude, latitude, altitude]``."""
        self.expect_punct("[")
        coords = [self.parse_geo_number()]
        while self.peek().kind == "punct" and self.peek().value == ",":
            self.next()
            coords.append(self.parse_geo_number())
        self.expect_punct("]")
        if len(coords) not in (2, 3):
            raise self.error("a point is [longitude, latitude] or [longitude, latitude, altitude]")
        return tuple(coords)

    def parse_geo_number(self) -> Node:
        t = self.next()
        if t.kind == "arg":
            self.max_arg = max(self.max_arg, t.value)
            return Arg(t.value)
        if t.kind == "lit" and type(t.value) in (int, float):
            return Const(t.value)
        raise self.error("expected a number or a $argument", t)

    def _is_operator_after_ident(self) -> bool:
        """``any == 3``: a property named like a quantifier."""
        nxt = self.peek(1)
        return nxt.kind in ("op", "mod", "eof", "arith") or (
            nxt.kind == "punct" and nxt.value in (".", "[", ")")
        )

    def parse_operand(self) -> Node:
        """An operand: a sum of products of primaries (``+ - * /``)."""
        left = self.parse_product()
        while self.peek().kind == "arith" and self.peek().value in "+-":
            op = self.next().value
            left = Arith(op, left, self.parse_product())
        return left

    def parse_product(self) -> Node:
        left = self.parse_primary()
        while self.peek().kind == "arith" and self.peek().value in "*/":
            op = self.next().value
            left = Arith(op, left, self.parse_primary())
        return left

    def parse_primary(self) -> Node:
        t = self.peek()
        if t.kind == "lit":
            self.next()
            return Const(t.value, t.exact)
        if t.kind == "arg":
            self.next()
            self.max_arg = max(self.max_arg, t.value)
            return Arg(t.value)
        if t.kind == "var":
            self.next()
            return Var(t.value)
        if t.kind in ("subvar", "links"):
            # ``$x.name`` inside SUBQUERY(…, $x, …); elsewhere a property
            # whose name starts with ``$`` (Realm allows it).  ``@links…``:
            # the objects linking to this one.
            return self.parse_keypath()
        if t.kind == "punct" and t.value == "(":
            self.next()
            self.enter()
            inner = self.parse_operand()
            self.expect_punct(")")
            self.depth -= 1
            return inner
        if t.kind == "punct" and t.value == "{":
            self.next()
            items: list[Node] = []
            if not (self.peek().kind == "punct" and self.peek().value == "}"):
                items.append(self.parse_list_item())
                while self.peek().kind == "punct" and self.peek().value == ",":
                    self.next()
                    items.append(self.parse_list_item())
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
            if low == "subquery" and self.peek(1).kind == "punct" and self.peek(1).value == "(":
                return self.parse_subquery()
            if low == "obj" and self.peek(1).kind == "punct" and self.peek(1).value == "(":
                return self.parse_object_literal()
            after = self.peek(1)
            if (
                low[0] == "o"
                and low[1:].isdigit()
                and not (after.kind == "punct" and after.value in (".", "["))
            ):
                raise self.error(
                    "realm-core's object keys (O0) are not supported by realmpy (it has none): "
                    "write obj('Class', primary_key)",
                    kind=QueryUnsupportedError,
                )
            return self.parse_keypath()
        raise self.error("expected a key path, literal, $argument or %variable")

    def parse_object_literal(self) -> ObjLit:
        """``obj('Class', primary key)``: the primary key a literal or ``$n``."""
        self.next()
        self.expect_punct("(")
        cls = self.next()
        if cls.kind != "lit" or not isinstance(cls.value, str):
            raise self.error("obj(...) needs a class name string first", cls)
        self.expect_punct(",")
        t = self.peek()
        pk = self.parse_primary()
        if not isinstance(pk, (Const, Arg)):
            raise self.error("obj(...) needs a primary key literal or $argument second", t)
        self.expect_punct(")")
        return ObjLit(cls.value, pk)

    def parse_list_item(self) -> Node:
        item = self.parse_operand()
        if not isinstance(item, (Const, Arg, Var, ObjLit)):
            raise self.error("a list {…} holds literals, $arguments and %variables only")
        return item

    def parse_subquery(self) -> Node:
        self.next()
        self.expect_punct("(")
        if self.peek().kind not in ("ident", "subvar", "links"):
            raise self.error("SUBQUERY needs a list key path first")
        coll = self.parse_keypath()
        self.expect_punct(",")
        var = self.next()
        if var.kind != "subvar":
            raise self.error("SUBQUERY needs a variable such as $x second", var)
        self.expect_punct(",")
        self.enter()
        pred = self.parse_or()
        self.depth -= 1
        self.expect_punct(")")
        self.expect_punct(".")
        agg = self.next()
        if agg.kind != "agg" or agg.value not in ("@count", "@size"):
            raise self.error("SUBQUERY(...) must be followed by .@count or .@size", agg)
        return Subquery(coll, var.value, pred)

    def parse_keypath(self) -> KeyPath:
        first = self.next()
        parts = [self.parse_links() if first.kind == "links" else first.value]
        while True:
            t = self.peek()
            if t.kind == "punct" and t.value == ".":
                self.next()
                nt = self.next()
                if nt.kind == "links":
                    parts.append(self.parse_links())
                    continue
                if nt.kind not in ("ident", "agg"):
                    raise self.error("expected a property name or @aggregate after '.'", nt)
                parts.append(nt.value)
            elif t.kind == "agg":
                raise self.error("expected '.' before an @aggregate")
            elif t.kind == "punct" and t.value == "[":
                self.next()
                parts.append(self.parse_subscript())
                self.expect_punct("]")
            else:
                break
        self._check_aggregates(parts, first)
        return KeyPath(tuple(parts))

    def parse_links(self) -> LinksPart:
        """After ``@links``: ``.Class.property``, or nothing before ``.@count``."""
        if self.peek().kind == "punct" and self.peek().value == ".":
            if self.peek(1).kind == "agg" and self.peek(1).value in ("@count", "@size"):
                return LinksPart("@links")
            self.next()
            cls = self.next()
            if cls.kind != "ident" or not (
                self.peek().kind == "punct" and self.peek().value == "."
            ):
                raise self.error("expected @links.Class.property or @links.@count", cls)
            self.next()
            prop = self.next()
            if prop.kind != "ident":
                raise self.error("expected @links.Class.property or @links.@count", prop)
            return LinksPart(f"@links.{cls.value}.{prop.value}")
        raise self.error("expected @links.Class.property or @links.@count")

    def parse_subscript(self) -> str:
        """Inside ``[…]``: a dictionary key (a string or ``$n``) or a list index."""
        key = self.next()
        if key.kind == "lit" and isinstance(key.value, str):
            return str(key.value)
        if key.kind == "lit" and type(key.value) is int and key.value >= 0:
            return ListIndex(str(key.value))
        if key.kind == "arg":
            self.max_arg = max(self.max_arg, key.value)
            return ArgKey(f"${key.value}")
        if key.kind == "ident" and key.value.upper() in ("FIRST", "LAST", "SIZE"):
            return ListIndex(key.value.upper())
        if key.kind == "arith" and key.value == "*":
            return ListIndex("*")
        raise self.error(
            "expected a string key, $argument, index, FIRST, LAST, SIZE or * inside [...]", key
        )

    def _check_aggregates(self, parts: list[str], tok: _Tok) -> None:
        for i, p in enumerate(parts):
            if p not in AGGREGATES:
                continue
            if i == 0:
                raise self.error(f"{p} needs a collection before it", tok)
            rest = parts[i + 1 :]
            if p in ("@count", "@size", "@type") and rest:
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
        if (
            t.kind != "lit"
            or type(t.value) is not int
            or t.value < 0
            or not self.text[t.pos : t.pos + 1].isdigit()
            or self.text[t.pos : t.pos + 2].lower() == "0x"
        ):
            raise self.error("LIMIT needs a non-negative integer", t)
        self.expect_punct(")")
        return Limit(t.value)
