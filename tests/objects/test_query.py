"""Realm Query Language on plain records: parsing, errors, evaluation.

The property tests generate syntax trees, render them to text and check that
(1) the text parses back to the same tree and (2) evaluation agrees with a
reference evaluator written directly in Python over the same records.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realmpy import query
from realmpy.errors import QueryArgumentError, QuerySyntaxError
from realmpy.objectid import ObjectId
from realmpy.query import And, Comparison, Const, KeyPath, Node, Not, Or

ANN = {
    "name": "Ann",
    "age": 30,
    "score": 1.5,
    "tags": ["red", "blue"],
    "dogs": [{"name": "Rex", "age": 3}, {"name": "Fido", "age": 7}],
    "owner": {"name": "Bob", "id": 7},
    "settings": {"theme": "dark", "lang": "en"},
    "nick": None,
    "active": True,
}


def m(text: str, record: Any = ANN, *args: Any, **variables: Any) -> bool:
    return query.parse(text).matches(record, args, variables)


# -- parsing -----------------------------------------------------------------


def test_parse_is_cached() -> None:
    assert query.parse("age > 3") is query.parse("age > 3")


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("age >> 3", 5, "expected a key path"),
        ("age > 3 AND", 11, "end of query"),
        ("age > 3 )", 8, "expected AND, OR"),
        ("(age > 3", 8, "expected ')'"),
        ("age ~ 3", 4, "unexpected character"),
        ("tags.@bogus > 1", 5, "unknown aggregate"),
        ("age < [c] 3", 6, "does not apply"),
        ("", 0, "empty query"),
        ("age > 3 LIMIT(-1)", 14, "non-negative integer"),
        ("dogs.@links.Person.@count > 0", 19, "expected @links.Class.property"),
        ("name == 'abc", 8, "unexpected character"),
        ("age IN 3 4", 9, "expected AND, OR"),
        ('b == B64"/w=="', 5, 'write bin(B64"...") for bytes'),
        ('b == bin(B64"AAE")', 5, 'malformed B64"..."'),
    ],
)
def test_syntax_errors_name_the_position(text: str, position: int, fragment: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        query.parse(text)
    assert info.value.position == position
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_syntax_error_shows_a_caret() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        query.parse("a == 1 AND b ==")
    lines = str(info.value).splitlines()
    assert lines[1].strip() == "a == 1 AND b =="
    assert lines[2].index("^") - 2 == 15


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        query.parse(3)  # type: ignore[arg-type]


def test_arg_count_and_missing_arguments() -> None:
    q = query.parse("age > $0 AND name == $2")
    assert q.arg_count == 3
    with pytest.raises(QueryArgumentError, match=r"\$2"):
        q.matches(ANN, (1, 2))


def test_missing_variable_is_a_typed_error() -> None:
    with pytest.raises(QueryArgumentError, match=r"user\.id"):
        query.parse("owner.id == %user.id").matches(ANN)


def test_canonical_text() -> None:
    q = query.parse(
        "age>$0 && name beginswith[c] 'a' || !(nick = nil) sort(age desc, name) limit(2)"
    )
    assert str(q) == (
        'age > $0 AND name BEGINSWITH[c] "a" OR NOT nick == null SORT(age DESC, name ASC) LIMIT(2)'
    )


def test_literals() -> None:
    oid = ObjectId()
    u = uuid.uuid4()
    rec = {
        "o": oid,
        "u": u,
        "d": Decimal("1.25"),
        "b": b"\x00\x01",
        "t": dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.timezone.utc),
        "s": 'it\'s "q"\n',
    }
    assert m(f"o == oid({oid})", rec)
    assert m(f"u == uuid({u})", rec)
    assert m("d == decimal128(1.25)", rec)
    assert m('b == bin(B64"AAE=")', rec)
    assert m('b == BINARY("\\0\u0001")', rec)
    # As realm-core: B64"…" alone is a string literal, spelled in base64.
    assert not m('b == B64"AAE="', rec)
    assert m('s == B64"aXQncyAicSIK"', rec)
    assert m("t == 2024-05-01@12:00:00", rec)
    assert m("t == T1714564800:0", rec)
    assert m("t > 2024-05-01@11:59:59:999999999", rec)
    assert m(r"s == 'it\'s \"q\"\n'", rec)
    for node in query.parse(
        f"o == oid({oid}) AND u == uuid({u}) AND d == decimal128(1.25) AND b == "
        'bin(B64"AAE=") AND t == T1714564800:0 AND s == B64"AAE=" AND s == "a\\nb"'
    ).predicate.items:  # type: ignore[attr-defined]
        assert query.parse(str(node)).predicate == node


# -- evaluation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("age == 30", True),
        ("age = 30 AND name == 'Ann'", True),
        ("age != 30", False),
        ("age <> 31", True),
        ("age >= 30 AND age <= 30 AND age > 29 AND age < 31", True),
        ("age => 30 AND age =< 30", True),
        ("age BETWEEN {20, 30}", True),
        ("age BETWEEN {31, 40}", False),
        ("age IN {1, 30}", True),
        ("age IN {}", False),
        ("name ==[c] 'ann'", True),
        ("name == 'ann'", False),
        ("name BEGINSWITH 'A' AND name ENDSWITH 'nn' AND name CONTAINS 'n'", True),
        ("name BEGINSWITH[c] 'a'", True),
        ("name LIKE 'A?n'", True),
        ("name LIKE 'a*'", False),
        ("name LIKE[c] 'a*'", True),
        ("name LIKE '*'", True),
        ("nick == null", True),
        ("nick != nil", False),
        ("nick > 3", False),
        ("nick BEGINSWITH 'a'", False),
        ("owner.name == 'Bob'", True),
        ("owner.missing == null", True),
        ("dogs.name == 'Fido'", True),
        ("ANY dogs.age > 5", True),
        ("SOME dogs.age > 5", True),
        ("ALL dogs.age > 5", False),
        ("ALL dogs.age > 1", True),
        ("NONE dogs.age > 10", True),
        ("NONE dogs.name == 'Rex'", False),
        ("dogs.@count == 2", True),
        ("dogs.@size == 2", True),
        ("tags.@count == 2 AND tags == 'red'", True),
        ("'blue' IN tags", True),
        ("'green' IN tags", False),
        ("dogs.@sum.age == 10", True),
        ("dogs.@avg.age == 5", True),
        ("dogs.@min.age == 3 AND dogs.@max.age == 7", True),
        ("settings.theme == 'dark'", True),
        ("settings['lang'] == 'en'", True),
        ("settings == 'en'", True),
        ("settings.@keys == 'theme'", True),
        ("settings.@values == 'dark'", True),
        ("settings.@count == 2", True),
        ("active == true", True),
        ("active == 1", False),
        ("age == 30.0", True),
        ("age == '30'", False),
        ("age > 'a'", False),
        ("score > 1 AND score < 2", True),
        ("TRUEPREDICATE", True),
        ("FALSEPREDICATE", False),
        ("NOT FALSEPREDICATE AND !(age == 1)", True),
        ("age == 1 OR age == 30 AND name == 'Ann'", True),
        ("(age == 1 OR age == 30) AND name == 'Zed'", False),
        ("30 == age", True),
        ("age == age", True),
    ],
)
def test_evaluation(text: str, expected: bool) -> None:
    assert m(text) is expected
    assert query.parse(text).matcher()(ANN) is expected


def test_arguments_and_variables() -> None:
    assert m("age > $0 AND name BEGINSWITH[c] $1", ANN, 20, "a")
    assert m("age IN $0", ANN, [1, 30])
    assert m("age IN $0", ANN, {30})
    assert m("owner.id == %user.id", ANN, **{"user.id": 7})
    assert query.parse("owner.id == %user.id").matches(ANN, variables={"user": {"id": 7}})
    assert not query.parse("owner.id == %user.id").matches(ANN, variables={"user": {"id": 8}})


def test_diacritic_insensitive() -> None:
    rec = {"name": "Éloïse"}
    assert m("name ==[d] 'Eloise'", rec)
    assert m("name BEGINSWITH[cd] 'elo'", rec)
    assert not m("name BEGINSWITH[c] 'elo'", rec)


def test_a_float_suffix_makes_a_32_bit_float() -> None:
    # As realm-core: ``1.1f`` is the 32-bit float nearest 1.1, not 1.1.
    assert m("x == 1.5f AND y == 2f", {"x": 1.5, "y": 2})
    assert not m("x == 1.1f", {"x": 1.1})
    assert m("x == 1.1f", {"x": 1.100000023841858})
    assert m("x < 1e39f AND x > -1e39f", {"x": 1e38})  # beyond a float: its infinity
    assert str(query.parse("x == 1.1f")) == "x == 1.100000023841858"


def test_bytes_string_operators() -> None:
    rec = {"data": b"hello"}
    assert m('data BEGINSWITH bin(B64"aGU=")', rec)
    assert not m('data BEGINSWITH B64"aGU="', rec)  # a string
    assert not m("data BEGINSWITH 'he'", rec)


def test_custom_resolver_follows_links_by_key() -> None:
    people = {1: {"name": "Bob"}, 2: {"name": "Cy"}}
    dog = {"name": "Rex", "owner": 2}

    def resolve(value: Any, name: str) -> Any:
        if name == "owner":
            return people.get(value["owner"])
        return value.get(name) if value is not None else None

    q = query.parse("owner.name == 'Cy'")
    assert q.matches(dog, resolver=resolve)
    assert not q.matches(dog)  # the default resolver sees the raw key


def test_attribute_records() -> None:
    class P:
        name = "Ann"
        age = 3

    assert query.parse("name == 'Ann' AND age < 4").matches(P())


def test_matcher_binds_once() -> None:
    match = query.parse("age > $0").matcher((10,))
    assert match({"age": 11}) and not match({"age": 9})
    with pytest.raises(QueryArgumentError):
        query.parse("age > $0").matcher(())


def test_sort_distinct_limit() -> None:
    rows: list[dict[str, Any]] = [
        {"n": "b", "a": 2},
        {"n": "a", "a": 2},
        {"n": "c", "a": None},
        {"n": "a", "a": 1},
    ]
    q = query.parse("TRUEPREDICATE SORT(a DESC, n ASC)")
    assert [r["n"] for r in q.filter(rows)] == ["a", "b", "a", "c"]
    q = query.parse("TRUEPREDICATE SORT(a ASC)")
    assert [r["a"] for r in q.filter(rows)] == [None, 1, 2, 2]
    q = query.parse("a != 5 DISTINCT(a) SORT(n)")
    assert [(r["n"], r["a"]) for r in q.filter(rows)] == [
        ("a", 1),
        ("b", 2),
        ("c", None),
    ]
    q = query.parse("TRUEPREDICATE SORT(n) LIMIT(2)")
    assert [r["n"] for r in q.filter(rows)] == ["a", "a"]
    q = query.parse("TRUEPREDICATE LIMIT(2) SORT(n DESC)")
    assert [r["n"] for r in q.filter(rows)] == ["b", "a"]


def test_sort_mixed_types_does_not_raise() -> None:
    rows: list[dict[str, Any]] = [{"v": "x"}, {"v": 1}, {"v": None}, {"v": b"b"}]
    out = query.parse("TRUEPREDICATE SORT(v)").filter(rows)
    assert [r["v"] for r in out] == [None, 1, "x", b"b"]


def test_property_named_like_quantifier() -> None:
    assert m("any == 3", {"any": 3})


# -- properties --------------------------------------------------------------

INT_FIELDS = ("i", "j")
STR_FIELDS = ("s",)

ints = st.integers(-5, 5)
strs = st.text(alphabet="abAB\"'\\\n", max_size=3)


def _leaf() -> st.SearchStrategy[Node]:
    int_cmp = st.builds(
        Comparison,
        st.sampled_from(INT_FIELDS).map(lambda f: KeyPath((f,))),
        st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
        st.one_of(ints, st.none()).map(Const),
    )
    str_cmp = st.builds(
        lambda op, c, v: Comparison(KeyPath(("s",)), op, Const(v), None, c),
        st.sampled_from(["==", "!=", "BEGINSWITH", "ENDSWITH", "CONTAINS"]),
        st.booleans(),
        strs,
    )
    dog_cmp = st.builds(
        lambda q, op, v: Comparison(KeyPath(("dogs", "age")), op, Const(v), q),
        st.sampled_from([None, "ANY", "ALL", "NONE"]),
        st.sampled_from(["==", "<", ">"]),
        ints,
    )
    count_cmp = st.builds(
        lambda v: Comparison(KeyPath(("dogs", "@count")), ">=", Const(v)),
        st.integers(0, 3),
    )
    return st.one_of(int_cmp, str_cmp, dog_cmp, count_cmp)


def _combine(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    def flat(kind: type[And] | type[Or], items: list[Node]) -> Node:
        out: list[Node] = []
        for it in items:
            out.extend(it.items if isinstance(it, kind) else [it])
        return kind(tuple(out))

    return st.one_of(
        st.lists(children, min_size=2, max_size=3).map(lambda xs: flat(And, xs)),
        st.lists(children, min_size=2, max_size=3).map(lambda xs: flat(Or, xs)),
        children.map(Not),
    )


predicates = st.recursive(_leaf(), _combine, max_leaves=6)
records = st.fixed_dictionaries(
    {
        "i": st.one_of(ints, st.none()),
        "j": ints,
        "s": st.one_of(strs, st.none()),
        "dogs": st.lists(st.fixed_dictionaries({"age": ints}), max_size=3),
    }
)


def reference(node: Node, rec: dict[str, Any]) -> bool:
    """Direct Python semantics of the generated subset."""
    if isinstance(node, And):
        return all(reference(i, rec) for i in node.items)
    if isinstance(node, Or):
        return any(reference(i, rec) for i in node.items)
    if isinstance(node, Not):
        return not reference(node.item, rec)
    assert isinstance(node, Comparison)
    assert isinstance(node.left, KeyPath) and isinstance(node.right, Const)
    c = node.right.value
    parts = node.left.parts
    if parts == ("dogs", "@count"):
        return bool(len(rec["dogs"]) >= c)
    if parts == ("dogs", "age"):
        hits = [basic(node.op, d["age"], c) for d in rec["dogs"]]
        if node.quantifier == "ALL":
            return all(hits)
        if node.quantifier == "NONE":
            return not any(hits)
        return any(hits)
    v = rec[parts[0]]
    if node.case_insensitive and isinstance(v, str):
        v, c = v.casefold(), c.casefold()
    return basic(node.op, v, c)


def basic(op: str, v: Any, c: Any) -> bool:
    if op == "==":
        return bool(v == c)
    if op == "!=":
        return bool(v != c)
    if v is None or c is None:
        # Realm: null is not ordered against a value but equals null; a null
        # pattern is the empty string every string (and null) has.
        if op in ("<=", ">="):
            return v is None and c is None
        return c is None and op in ("BEGINSWITH", "ENDSWITH", "CONTAINS")
    if op == "<":
        return bool(v < c)
    if op == "<=":
        return bool(v <= c)
    if op == ">":
        return bool(v > c)
    if op == ">=":
        return bool(v >= c)
    if op == "BEGINSWITH":
        return bool(v.startswith(c))
    if op == "ENDSWITH":
        return bool(v.endswith(c))
    return bool(c in v)


@given(predicates)
def test_render_then_parse_round_trips(node: Node) -> None:
    text = str(node)
    assert query.parse(text).predicate == node
    assert str(query.parse(text)) == text


@given(predicates, st.lists(records, max_size=5))
def test_evaluator_agrees_with_reference(node: Node, recs: list[dict[str, Any]]) -> None:
    q = query.parse(str(node))
    compiled = q.matcher()
    for rec in recs:
        expected = reference(node, rec)
        assert q.matches(rec) is expected, (str(node), rec)
        assert compiled(rec) is expected, (str(node), rec)


@given(st.lists(records, max_size=8), st.booleans())
def test_sort_matches_python_sorted(recs: list[dict[str, Any]], asc: bool) -> None:
    q = query.parse(f"TRUEPREDICATE SORT(i {'ASC' if asc else 'DESC'})")
    got = [r["i"] for r in q.filter(recs)]
    want = sorted(
        (r["i"] for r in recs),
        key=lambda v: (v is not None, v if v is not None else 0),
        reverse=not asc,
    )
    assert got == want


@given(st.text(max_size=30))
def test_arbitrary_text_never_crashes(text: str) -> None:
    try:
        query.parse(text)
    except QuerySyntaxError as err:
        assert 0 <= err.position <= len(text)


_POSITIONAL_QUERIES = [
    "a >= $0 AND a < $1",
    "a > 2.5 OR b == 'x'",
    "NOT (a <= $0) AND b != 'y'",
    "b == $2 AND a != 3",
    "a == 3 OR (b BEGINSWITH 'x' AND a > -1)",
    "b == 'x' AND TRUEPREDICATE",
    "a == null OR b == null",
    "b ENDSWITH $2 OR b CONTAINS 'a'",
    "b BEGINSWITH $2 AND NOT (b CONTAINS[c] 'A')",
    "a CONTAINS 'x' OR b ENDSWITH ''",
]
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(-5, 5),
    st.just(float("nan")),
    st.sampled_from(["x", "y", "xa", "ax", ""]),
    st.sampled_from([b"x", b"xa", b""]),
    st.decimals(-5, 5, places=1),
)


@given(
    rows=st.lists(st.tuples(_VALUES, _VALUES), max_size=12),
    lo=st.integers(-5, 5),
    hi=st.one_of(st.integers(-5, 5), st.floats(-5, 5)),
    text_arg=st.sampled_from(["x", "a", "", b"x"]),
)
def test_row_filter_matches_the_matcher_on_positional_records(
    rows: list[tuple[Any, Any]], lo: int, hi: float, text_arg: Any
) -> None:
    """``row_filter`` (inline fast paths over positional records) keeps
    exactly the rows the per-record matcher (and the evaluator) accepts."""
    slots = {"a": 0, "b": 1}

    def direct(name: str) -> tuple[Any] | None:
        return (slots[name],) if name in slots else None

    def resolve(rec: Any, name: str) -> Any:
        return rec[slots[name]]

    pairs = [(i, list(r)) for i, r in enumerate(rows)]
    # The generated filters are cached by shape, so these runs also check
    # that one made for other argument values is not reused with them.
    args = (lo, hi, text_arg)
    for text in _POSITIONAL_QUERIES:
        q = query.parse(text)
        match = q.matcher(args, resolver=resolve, direct=direct)
        expected = [(k, r) for k, r in pairs if match(r)]
        assert q.row_filter(args, resolver=resolve, direct=direct)(iter(pairs)) == expected, text
        as_maps = [k for k, r in pairs if q.matches(dict(zip("ab", r)), args)]
        assert [k for k, _ in expected] == as_maps, text


def test_property_names_escape_white_space_as_realm_core() -> None:
    """``\\t`` ``\\n`` ``\\r`` in a property name are those characters (realm-core's
    lexer), ``\\ `` a space; ``str()`` writes them back so."""
    q = query.parse("nullable\\tdata == 1 AND fav\\ item == 2 AND a\\nb\\rc == 3")
    assert q.matches({"nullable\tdata": 1, "fav item": 2, "a\nb\rc": 3})
    assert str(q) == "nullable\\tdata == 1 AND fav\\ item == 2 AND a\\nb\\rc == 3"
