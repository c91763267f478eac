"""Per-table read and write rules, written in the Realm Query Language.

Why rules are queries: the same language the client uses for subscriptions
says which objects a user may see or change (``owner_id == %user.id``), it is
evaluated by the object layer's ``realmpy.query`` on plain records, and a rule
is visible in one line of configuration.  A table without its own rule uses
the default; with no configuration (development mode) everything is allowed.

Write checks look at both images of an object: a change is allowed only if the
object before it (when it existed) *and* after it (when it still exists)
satisfy the table's write rule, so a user can neither edit another user's
object nor give an object away, nor create one on another user's behalf.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from realmpy import query as rql
from realmpy.errors import QueryError, QueryTooComplexError
from realmpy.sync.protocol import ProtocolError, TableSpec, UnknownFieldError

__all__ = [
    "MAX_SUBSCRIPTION_ARGS",
    "InvalidQueryError",
    "Permissions",
    "QueryTooComplex",
    "Rule",
    "Subscriptions",
    "check_key_paths",
    "compile_query",
]


class InvalidQueryError(ProtocolError):
    """A rule or subscription query does not parse or names an unknown table."""

    code = "invalid_query"


class QueryTooComplex(InvalidQueryError):
    """A query exceeds the query language's size limits (``realmpy.query.MAX_QUERY_*``)."""

    code = "query_too_complex"


def compile_query(text: str) -> rql.Query:
    """Parse a query, turning syntax errors into a typed protocol error."""
    try:
        return rql.parse(text)
    except QueryTooComplexError as exc:
        raise QueryTooComplex(
            f"query too complex: {exc.message}",
            limits={
                "chars": rql.MAX_QUERY_CHARS,
                "depth": rql.MAX_QUERY_DEPTH,
                "terms": rql.MAX_QUERY_TERMS,
            },
        ) from None
    except (QueryError, ValueError, TypeError) as exc:
        raise InvalidQueryError(f"invalid query {text!r}: {exc}", query=text) from None


def _key_paths(node: Any) -> Iterator[tuple[str, ...]]:
    """Every key path of a predicate or descriptor."""
    if isinstance(node, rql.KeyPath):
        yield node.parts
    elif isinstance(node, rql.Comparison):
        yield from _key_paths(node.left)
        yield from _key_paths(node.right)
    elif isinstance(node, rql.Between):
        for n in (node.value, node.low, node.high):
            yield from _key_paths(n)
    elif isinstance(node, (rql.And, rql.Or, rql.ListExpr)):
        for n in node.items:
            yield from _key_paths(n)
    elif isinstance(node, rql.Not):
        yield from _key_paths(node.item)
    elif isinstance(node, rql.Sort):
        for path, _ in node.keys:
            yield path.parts
    elif isinstance(node, rql.Distinct):
        for path in node.paths:
            yield path.parts


def check_key_paths(q: rql.Query, table: str, schema: Mapping[str, TableSpec]) -> None:
    """Raise ``UnknownFieldError`` unless every key path of ``q`` on ``table`` names
    properties the schema has (through links, embedded objects and collections)."""
    for node in (q.predicate, *q.descriptors):
        for parts in _key_paths(node):
            _check_path(parts, table, schema, q.text)


def _check_path(
    parts: tuple[str, ...], table: str, schema: Mapping[str, TableSpec], text: str
) -> None:
    obj: str | None = table  # the table the next name is read on (None: a plain value)
    coll = None  # the collection field whose elements come next
    for i, name in enumerate(parts):
        if coll is not None:
            elements = coll.target if coll.type in ("link", "embedded") else None
            was_dict, coll = coll.collection == "dict", None
            if name in rql.AGGREGATES:
                obj = None if name in ("@keys", "@count", "@size") else elements
                continue
            obj = elements
            if was_dict:
                continue  # ``settings.theme``: a dictionary key, any name
        elif name in rql.AGGREGATES:
            continue  # on a plain value: evaluates to null, as the object layer does
        spec = schema.get(obj) if obj is not None else None
        field = spec.fields.get(name) if spec is not None else None
        if field is None:
            where = obj if obj is not None else ".".join(parts[:i])
            raise UnknownFieldError(
                f"query {text!r}: {where} has no property {name!r}; "
                "subscribe only to properties of the server's schema",
                table=table,
                field=".".join(parts[: i + 1]),
            )
        if field.collection is not None:
            obj, coll = None, field
        else:
            obj = field.target if field.type in ("link", "embedded") else None


def _matches(
    q: rql.Query | None,
    record: Mapping[str, Any],
    variables: Mapping[str, Any],
    args: tuple[Any, ...] = (),
    resolver: rql.Resolver | None = None,
) -> bool:
    if q is None:
        return True
    try:
        return q.matches(record, args=args, variables=variables, resolver=resolver)
    except (QueryError, ValueError, TypeError, KeyError):
        return False  # a rule that cannot be evaluated on this record denies


@dataclass(frozen=True)
class Rule:
    """One table's rule: None means "allowed"."""

    read: rql.Query | None
    write: rql.Query | None


class Permissions:
    """The rule set of an app."""

    def __init__(
        self,
        tables: Mapping[str, tuple[str | None, str | None]] | None = None,
        default: tuple[str | None, str | None] = (None, None),
    ) -> None:
        def rule(pair: tuple[str | None, str | None]) -> Rule:
            return Rule(*(None if t is None else compile_query(t) for t in pair))

        self._default = rule(default)
        self._tables = {name: rule(pair) for name, pair in (tables or {}).items()}
        text = repr((sorted((k, v) for k, v in (tables or {}).items()), default))
        self.fingerprint = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        """Changes whenever the rules change, so clients re-bootstrap."""

    @property
    def allows_everything(self) -> bool:
        """True in development mode (no rules)."""
        return not self._tables and self._default == Rule(None, None)

    def rule(self, table: str) -> Rule:
        """The rule for ``table`` (or the default)."""
        return self._tables.get(table, self._default)

    def can_read(
        self,
        table: str,
        record: Mapping[str, Any],
        variables: Mapping[str, Any],
        resolver: rql.Resolver | None = None,
    ) -> bool:
        """May the user see this object?  (``resolver`` follows links: ``server.links``.)"""
        return _matches(self.rule(table).read, record, variables, (), resolver)

    def check_write(
        self,
        table: str,
        pre: Mapping[str, Any] | None,
        post: Mapping[str, Any] | None,
        variables: Mapping[str, Any],
        resolver: rql.Resolver | None = None,
    ) -> str | None:
        """None if the change is allowed, else the reason it is not."""
        q = self.rule(table).write
        if q is None:
            return None
        if pre is not None and not _matches(q, pre, variables, (), resolver):
            return f"write to {table} denied: the object does not satisfy the write rule ({q.text})"
        if post is not None and not _matches(q, post, variables, (), resolver):
            return (
                f"write to {table} denied: the result would not satisfy the write rule ({q.text})"
            )
        return None


MAX_SUBSCRIPTION_ARGS = 10_000
"""Argument values of one subscription set, list elements counted one by one."""


def _arg_values(args: tuple[Any, ...]) -> int:
    return sum(len(a) if isinstance(a, (list, tuple, dict)) else 1 for a in args)


class Subscriptions:
    """A client's compiled subscription set: table → [(query, args)].

    Every object a download considers is tested against the whole set, so the
    set as a whole is held to one query's limits (``check_size``): at most
    ``MAX_QUERY_TERMS`` comparisons and ``MAX_SUBSCRIPTION_ARGS`` argument
    values in all.
    """

    def __init__(
        self,
        queries: Mapping[str, tuple[tuple[str, tuple[Any, ...]], ...]],
        known_tables: Mapping[str, Any],
    ) -> None:
        compiled: dict[str, list[tuple[rql.Query, tuple[Any, ...]]]] = {}
        terms = values = 0
        for table, items in queries.items():
            if table not in known_tables:
                raise InvalidQueryError(f"subscription on unknown table {table!r}", table=table)
            if getattr(known_tables[table], "embedded", False):
                raise InvalidQueryError(
                    f"subscription on embedded table {table!r}: subscribe to its parent",
                    table=table,
                )
            for text, args in items:
                q = compile_query(text)
                if len(args) < q.arg_count:
                    raise InvalidQueryError(
                        f"query {text!r} needs {q.arg_count} argument(s)", query=text
                    )
                compiled.setdefault(table, []).append((q, args))
                terms += q.terms
                values += _arg_values(args)
        self._queries = compiled
        self._size = (terms, values)

    def check_size(self) -> None:
        """Refuse a set beyond the limits (checked when a set is stored, not on sets stored
        before the limits existed)."""
        terms, values = self._size
        if terms > rql.MAX_QUERY_TERMS or values > MAX_SUBSCRIPTION_ARGS:
            raise QueryTooComplex(
                f"the subscription set has {terms} comparisons and {values} argument values; "
                f"at most {rql.MAX_QUERY_TERMS} and {MAX_SUBSCRIPTION_ARGS} in all",
                terms=terms,
                values=values,
            )

    @property
    def tables(self) -> frozenset[str]:
        """Tables with at least one query."""
        return frozenset(self._queries)

    def matcher(
        self, table: str, variables: Mapping[str, Any], resolver: rql.Resolver | None = None
    ) -> Callable[[Mapping[str, Any]], bool]:
        """``record -> is the object in any subscribed query of table?``, with the
        arguments bound once (``IN $0`` lists hashed): make one per request.  A query
        that cannot be evaluated (on this record) matches nothing."""
        tests = []
        for q, args in self._queries.get(table, ()):
            try:
                tests.append(q.matcher(args, variables, resolver))
            except (QueryError, ValueError, TypeError, KeyError):
                continue

        def match(record: Mapping[str, Any]) -> bool:
            for test in tests:
                try:
                    if test(record):
                        return True
                except (QueryError, ValueError, TypeError, KeyError):
                    continue
            return False

        return match
