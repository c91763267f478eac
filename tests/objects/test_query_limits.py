"""Bounded work per query (issue 11): LIKE without backtracking, limits on query size and nesting.

The LIKE matcher is checked against a reference (a regular expression
translation, fine on small inputs) on random patterns; the pathological
pattern that took exponential time through the old regex translation gets
its exact answer; oversized queries are ``QueryTooComplexError`` (a
``QuerySyntaxError``), never ``RecursionError``, in the parser and through a
realm's query paths (compiled matcher, generated row filter, engine pushdown).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realmpy import query
from realmpy.errors import QueryArgumentError, QuerySyntaxError, QueryTooComplexError
from realmpy.objectid import ObjectId
from realmpy.realm import Realm
from realmpy.schema import Object, field
from tests.objects.conftest import make_config


def reference_like(text: str, pattern: str) -> bool:
    """fnmatch-style: ``*`` any run, ``?`` one character, everything else literal."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, text, re.DOTALL) is not None


alphabet = st.sampled_from("abAB*?.\\\nßé")
patterns = st.text(alphabet, max_size=8)
texts = st.text(st.sampled_from("abAB*?.\\\nßé"), max_size=12)


@given(texts, patterns)
def test_like_agrees_with_the_reference(text: str, pattern: str) -> None:
    assert query.like(text, pattern) == reference_like(text, pattern)
    # through the query language, case-sensitive and not
    assert query.parse("s LIKE $0").matches({"s": text}, [pattern]) == reference_like(text, pattern)
    folded = reference_like(text.casefold(), pattern.casefold())
    assert query.parse("s LIKE[c] $0").matches({"s": text}, [pattern]) == folded


@given(st.text(st.sampled_from("ab"), max_size=40), st.text(st.sampled_from("ab*?"), max_size=12))
def test_like_agrees_on_star_heavy_patterns(text: str, pattern: str) -> None:
    assert query.like(text, pattern) == reference_like(text, pattern)


def test_the_backtracking_attack_gets_its_answer() -> None:
    attack = "*a*a*a*a*a*a*a*a*a*b"
    for n in (36, 40, 10_000):
        title = "a" * n
        assert not query.like(title, attack)
        assert query.like(title + "b", attack)
        for text in ("title LIKE $0", "title LIKE[c] $0", "title LIKE[cd] $0"):
            assert not query.parse(text).matches({"title": title}, [attack])


def test_like_patterns_are_bounded() -> None:
    stars = "*" * (query.MAX_QUERY_CHARS - 2)
    assert query.like("abc", "a" + stars + "c") and not query.like("abd", "a" + stars + "c")
    assert not query.like("ab", "*a*b*c*")  # shorter than any match: no segment is searched
    with pytest.raises(QueryArgumentError, match="MAX_QUERY_CHARS"):
        query.parse("s LIKE $0").matches({"s": "x"}, ["?" * (query.MAX_QUERY_CHARS + 1)])


def test_string_operators_on_bytes_and_mixed_types() -> None:
    assert not query.parse("s LIKE '*'").matches({"s": b"x"})
    assert not query.parse("s LIKE '*'").matches({"s": 3})
    assert query.parse("s LIKE[d] 'cafe*'").matches({"s": "café au lait"})


mixed = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.floats(-2, 2),
    st.sampled_from([Decimal("1"), Decimal("0.5"), Decimal("NaN"), Decimal("sNaN"), math.nan]),
    st.sampled_from(["", "1", "a"]),
    st.sampled_from([b"", b"1"]),
    st.sampled_from([dt.datetime(2020, 1, 1), ObjectId(b"\x01" * 12), uuid.UUID(int=1)]),
    st.lists(st.integers(0, 1), max_size=2),
)


@given(st.one_of(mixed, st.lists(mixed, max_size=3)), st.lists(mixed, max_size=8))
def test_in_with_a_hashed_list_agrees_with_the_evaluator(
    value: object, options: list[object]
) -> None:
    """The compiled ``IN`` (a hashed list, for long ``$0`` lists) answers as ``matches``."""
    for text in ("v IN $0", "ANY v IN $0", "ALL v IN $0", "NONE v IN $0"):
        q = query.parse(text)
        rec = {"v": value}
        assert q.matcher([options])(rec) == q.matches(rec, [options]), text


@pytest.mark.parametrize(
    "text",
    [
        "(" * 1500 + "a == 1" + ")" * 1500,
        "NOT " * 1000 + "a == 1",
        "!" * 3000 + "a == 1",
        " OR ".join(["a == 1"] * (query.MAX_QUERY_TERMS + 1)),
        "a == '" + "x" * query.MAX_QUERY_CHARS + "'",
        "a == 1 AND (" * 40 + "NOT " * 30 + "a == 1" + ")" * 40,  # mixed: depth 70
    ],
)
def test_oversized_queries_are_syntax_errors(text: str) -> None:
    with pytest.raises(QueryTooComplexError) as info:
        query.parse(text)
    assert isinstance(info.value, QuerySyntaxError)
    assert "MAX_QUERY_" in str(info.value)


def test_long_integer_literal_is_a_syntax_error() -> None:
    with pytest.raises(QuerySyntaxError, match="integer literal too long"):
        query.parse("a == " + "9" * 10_000)


class Row(Object):
    id: int = field(primary_key=True)
    a: int = 0
    title: str = ""


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory, module_realm_kind: str) -> Iterator[Realm]:
    config = make_config(module_realm_kind, [Row], tmp_path_factory.mktemp("limits"))
    with Realm(config) as r:
        with r.write():
            r.add_all([Row(id=i, a=i % 3, title="a" * 36 + "b" * (i % 2)) for i in range(20)])
        yield r


def test_queries_at_the_limits_run_through_a_realm(rows: Realm) -> None:
    depth = query.MAX_QUERY_DEPTH
    nested = "NOT (" * (depth // 2) + "a == 1" + ")" * (depth // 2)  # NOT NOT ... a == 1
    bangs = "!" * depth + "a == 1"
    parens = "(" * depth + "a == 1" + ")" * depth
    wide = " OR ".join(f"a == {i + 3}" for i in range(query.MAX_QUERY_TERMS - 1)) + " OR a == 1"
    ones = [i for i in range(20) if i % 3 == 1]
    for text in (nested, bangs, parens, wide):
        assert sorted(o.id for o in rows.query(Row, text)) == ones
    assert len(rows.query(Row, "title LIKE '*a*a*a*a*a*a*a*a*a*b'")) == 10
    with pytest.raises(QueryTooComplexError):
        rows.query(Row, "!" * (depth + 1) + "a == 1")
