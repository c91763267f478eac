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
"

Layout of the package (each module imports only those above it; an
import-linter contract in pyproject.toml keeps it so):

- ``ast``: the syntax tree, the aggregates, the size limits, the default
  resolver;
- ``tokenizer`` and ``parser``: text to tree;
- ``like``: ``LIKE`` matching;
- ``evaluate``: the interpreter, the reference semantics;
- ``closures``: the closure compiler (arguments bound once, fast paths);
- ``codegen``: the generated row filter;
- ``api``: :class:`Query` and :func:`parse`.
"""

from __future__ import annotations

from realmpy.errors import (
    QueryArgumentError,
    QuerySyntaxError,
    QueryTooComplexError,
    QueryTypeError,
    QueryUnsupportedError,
)
from realmpy.query.api import Query, parse
from realmpy.query.ast import (
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
    Distinct,
    KeyPath,
    Limit,
    ListExpr,
    ListIndex,
    Node,
    Not,
    Or,
    Resolver,
    Sort,
    Subquery,
    TruePredicate,
    Var,
    default_resolver,
)
from realmpy.query.like import like

__all__ = [
    "AGGREGATES",
    "MAX_QUERY_CHARS",
    "MAX_QUERY_DEPTH",
    "MAX_QUERY_TERMS",
    "And",
    "Arg",
    "ArgKey",
    "Arith",
    "Between",
    "Comparison",
    "Const",
    "Distinct",
    "KeyPath",
    "Limit",
    "ListExpr",
    "ListIndex",
    "Node",
    "Not",
    "Or",
    "Query",
    "QueryArgumentError",
    "QuerySyntaxError",
    "QueryTooComplexError",
    "QueryTypeError",
    "QueryUnsupportedError",
    "Resolver",
    "Sort",
    "Subquery",
    "TruePredicate",
    "Var",
    "default_resolver",
    "like",
    "parse",
]
