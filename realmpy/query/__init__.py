r"""Realm Query Language: parse once, evaluate anywhere.

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
Realm's query language (RQL) as realm-core's parser reads it; realm-core's
own parser tests are ported in tests/objects/test_parser_port.py, with what
does not pass listed in tests/objects/parser_port/exclusions.txt.

- comparisons ``== = != <> < <= > >=`` between key paths, literals,
  ``$0 $1 …`` arguments, ``%var`` variables and arithmetic (``+ - * /``
  with the usual precedence and parentheses), on either side;
- string operators ``BEGINSWITH ENDSWITH CONTAINS LIKE`` (``*`` any run,
  ``?`` one character) and ``==``/``!=``, each with ``[c]`` (case
  insensitive), ``[d]`` (diacritic insensitive) or ``[cd]``; on strings and
  on bytes (``bin('…')``);
- ``x BETWEEN {low, high}`` (inclusive), ``x IN {a, b, …}``, ``x IN $0``,
  ``x IN[c] …``, ``'v' IN list_property``;
- constant lists ``{…}`` with every operator, on either side, with
  ``ANY``/``ALL``/``NONE`` before them (``age == ALL {1, 2}``); a list
  argument means any of its values for every operator (``age > $0`` with
  ``[1, 2]``);
- ``AND OR NOT`` (any case) and ``&& || !``, parentheses,
  ``TRUEPREDICATE FALSEPREDICATE``;
- literals: integers (also ``0x1F`` and ``+5``), numbers with a fraction or
  an exponent (exact when compared with a Decimal: ``dec == 0.1``), with
  realm-core's ``f`` suffix a 32-bit float (``1.1f`` is 1.100000023841858),
  ``inf -inf infinity nan``, ``'strings'`` / ``"strings"`` with the escapes
  ``\" \' \\ \/ \b \f \n \r \t \0 \uXXXX``, ``true false null nil``,
  ``oid(<24 hex>)``, ``uuid(<uuid>)``, ``decimal128(<number>)``,
  ``B64"<base64>"`` (a string spelled in base64, as realm-core's; descriptions
  write strings with control characters so), bytes ``bin('<text>')``,
  ``bin(B64"<base64>")`` (``binary(…)``, any case, too), timestamps ``T<sec>:<nanos>`` and
  ``Y-M-D@h:m:s[:nanos]`` or ``Y-M-DTh:m:s[:nanos]`` (UTC);
- key paths through links, lists and dictionaries: ``owner.name``,
  ``settings['theme']``, ``settings[$0]`` (``list[$0]`` with an int: an
  index), ``settings.@keys``,
  ``settings.@values``, list elements ``list[0]``, ``list[FIRST]``,
  ``list[LAST]``, ``list[*]``, sizes ``list[SIZE]``, ``list.@size``,
  ``list.@count``, a string's or bytes' ``name.length``; property names in
  any script (``løbenummer``) or with backslash-escaped characters
  (``first\ name``);
- collection aggregates ``@count @size @sum @avg @min @max``, as
  ``tags.@count`` or ``dogs.@avg.age``; a value's type ``@type``;
- ``SUBQUERY(list, $x, predicate).@count`` (nested too);
- quantifiers ``ANY SOME ALL NONE`` before a comparison whose left side goes
  through a collection (or is a constant list); without one, a collection
  means ``ANY``, except against another collection or a constant list,
  compared whole, element by element (``ints == {1, 2}``), as realm-core;
  ``ALL objects.values == x`` (``values`` a list of scalars of objects
  reached through a list of links) holds when some object's values all
  equal x (or there is no object), as realm-core; likewise, where a key
  path reaches several collections (``links.tags``, ``links.dict.key``,
  ``value[*][*]``), each is compared on its own, whole or under its
  quantifier, and the object matches when one of them does
  (``links.tags == {1, 2}``: some linked object's tags are 1, 2);
- trailing ``SORT(path ASC|DESC, …)``, ``DISTINCT(path, …)``, ``LIMIT(n)``,
  applied in the order written (realmpy also accepts ``SORT(path)``,
  ascending).

Semantics (Realm's): ``null`` equals only ``null``; an ordering of ``null``
and a value is false, but ``null <= null`` and ``null >= null`` hold;
``true`` never equals ``1``; a null pattern is the empty string for
``BEGINSWITH``/``ENDSWITH``/``CONTAINS`` (so every string has it) and
``LIKE null`` matches only null; ``x / 0`` is an infinity of x's sign.
Sorting puts ``null`` first when ascending.  Over schema-less records,
comparisons of unrelated types are simply false; a query bound to a class of
a realm (``bind``) is type-checked instead: comparing a property with a
value it can never hold, a string operator on a number, ``@sum`` of strings,
``ANY`` on a to-one path… raise :class:`QueryTypeError` when the query is
built, naming the key path, its type and the value.  A string spelling a
number compared with a number property is that number (``age == '5'``).

Mixed values (a ``Mixed`` property): numbers compare across int, float and
Decimal; ``prop.@type == 'int'`` (``IN {...}``) tests a value's type by
Realm's names (:mod:`realmpy.query.typeof`; after a list or dictionary, of
each element); a list held in a mixed value is one value, reached inside
with ``[*]`` / ``[n]``.

Also in the language:

- backlinks: ``@links.Class.property`` (the objects of ``Class`` linking
  here through ``property``, once per link: ``@links.Person.dogs.@count``,
  ``ANY @links.Person.dogs.name == 'x'``) and ``@links.@count`` (every
  incoming link, from any class), read from the backlink index in a realm;
- full-text search ``prop TEXT 'word -excluded prefix*'`` on a property
  declared ``field(indexed="fulltext")`` (:mod:`realmpy.textsearch`);
- object literals ``obj('Class', primary key)`` (the primary key a literal
  or ``$n``) compared with links: ``owner == obj('Person', 5)``; a managed
  object as an argument does the same (``owner == $0``);
- geospatial ``point geoWithin geoBox([lng, lat], [lng, lat])``,
  ``geoCircle([lng, lat], radians)``, ``geoPolygon({[lng, lat], …}, {hole})``
  or ``$n`` (a :class:`GeoBox`, :class:`GeoCircle`, :class:`GeoPolygon` or
  its text), where the point is an object shaped as GeoJSON's (``type ==
  "Point"``, ``coordinates == [lng, lat]``); see :mod:`realmpy.query.geo`.

In a realm (``realm.query``, ``results.filter``), ``$K0`` is a key path
given as argument 0 (``"owner.name"``), as realm-core's: the query is checked
as if the path were written there.

Not supported: realm-core's internal object keys (``O0``), a
:class:`QueryUnsupportedError` when parsed (write ``obj('Class', pk)``).
One known difference: realmpy reads the escapes of a string literal
(``'a\nb'`` holds a newline); realm-core's lexer uses them only to find
the closing quote and keeps the backslashes in the value.

Layout of the package (each module imports only those above it; an
import-linter contract in pyproject.toml keeps it so):

- ``ast``: the syntax tree, the aggregates, the size limits, the default
  resolver; ``typeof``: ``@type`` (Realm's type names of values);
- ``tokenizer`` and ``parser``: text to tree;
- ``geo``: geospatial shapes (full-text terms are realmpy.textsearch's,
  shared with the full-text index);
- ``like``: ``LIKE`` matching;
- ``evaluate``: the interpreter, the reference semantics;
- ``closures``: the closure compiler (arguments bound once, fast paths);
- ``codegen``: the generated row filter;
- ``api``: :class:`Query` and :func:`parse`;
- ``bind``: binding to a class of a schema (the type checks).
"""

from __future__ import annotations

from realmpy.errors import (
    QueryArgumentError,
    QuerySyntaxError,
    QueryTooComplexError,
    QueryTypeError,
    QueryUnsupportedError,
)
from realmpy.query.api import Query, parse, with_key_path_args
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
    FullText,
    GeoShape,
    GeoWithin,
    KeyPath,
    Limit,
    LinksPart,
    ListExpr,
    ListIndex,
    Node,
    Not,
    ObjectRef,
    ObjLit,
    Or,
    Resolver,
    Sort,
    Subquery,
    TruePredicate,
    Var,
    default_resolver,
)
from realmpy.query.geo import GeoBox, GeoCircle, GeoPoint, GeoPolygon
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
    "FullText",
    "GeoBox",
    "GeoCircle",
    "GeoPoint",
    "GeoPolygon",
    "GeoShape",
    "GeoWithin",
    "KeyPath",
    "Limit",
    "LinksPart",
    "ListExpr",
    "ListIndex",
    "Node",
    "Not",
    "ObjLit",
    "ObjectRef",
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
    "with_key_path_args",
]
