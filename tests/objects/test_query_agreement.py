"""The four ways a query is evaluated agree on random queries over random data.

The interpreter (``Query.matches``) is the reference; the closure compiler
(``Query.matcher``), the generated row filter (``Query.row_filter``) and a
realm (index planner, engine filter program, row filter) must select exactly
the records it selects, for queries using the language's newer parts too:
list quantifiers, list indexes and sizes, arithmetic, list arguments, null
in ordering, string operators with ``[c]``, links, SUBQUERY, collections
compared whole with constant lists, full-text ``TEXT`` (the realm reads its
index) and ``@links`` (the realm reads the backlink index; the plain records
carry what it should find).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realmpy import query
from realmpy.realm import Realm
from realmpy.schema import Object, field
from tests.objects.conftest import make_config

SCALARS = ("a", "b", "s")  # read by slot in the row filter


class HLink(Object):
    k: int = field(primary_key=True)
    a: int | None = None


class HRow(Object):
    k: int = field(primary_key=True)
    a: int | None = field(default=None, indexed=True)
    b: float | None = None
    s: str | None = None
    ints: list[int] = field(default_factory=list)
    link: HLink | None = None
    links: list[HLink] = field(default_factory=list)
    t: str | None = field(default=None, indexed="fulltext")


small_ints = st.integers(-3, 3)
opt_ints = st.none() | small_ints
floats = st.none() | st.sampled_from([-1.5, 0.0, 0.5, 2.0, float("inf")])
texts = st.none() | st.sampled_from(["", "a", "ab", "B", "ba", "é"])
documents = st.none() | st.sampled_from(["", "red apple", "Red pie", "apples", "é pie", "pie, Pie"])
rows = st.lists(
    st.tuples(
        opt_ints,
        floats,
        texts,
        st.lists(small_ints, max_size=3),
        st.none() | st.integers(0, 2),
        st.lists(st.integers(0, 2), max_size=3),
        documents,
    ),
    min_size=1,
    max_size=8,
)
LINKS = {0: -1, 1: 2, 2: None}  # HLink k -> a


@st.composite
def queries(draw: st.DrawFn) -> tuple[str, list[Any]]:
    args: list[Any] = []

    def arg(v: Any) -> str:
        args.append(v)
        return f"${len(args) - 1}"

    def num() -> str:
        return str(draw(small_ints))

    def leaf() -> str:
        op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
        kind = draw(st.integers(0, 16))
        if kind == 0:
            return f"a {op} {arg(draw(opt_ints))}"
        if kind == 1:
            return f"a {op} {arg(draw(st.lists(small_ints, max_size=3)))}"  # any of
        if kind == 2:
            return f"b {op} {draw(st.sampled_from(['0.5', '-1', 'inf', '-inf', 'null']))}"
        if kind == 3:
            sop = draw(st.sampled_from(["BEGINSWITH", "ENDSWITH", "CONTAINS", "LIKE", "==", "!="]))
            mod = draw(st.sampled_from(["", "[c]"]))
            pat = draw(st.sampled_from(["'a'", "'B'", "'*a'", "''", "NULL"]))
            return f"s {sop}{mod} {pat}"
        if kind == 4:
            return f"a BETWEEN {{{num()}, {num()}}}"
        if kind == 5:
            q = draw(st.sampled_from(["ANY", "ALL", "NONE"]))
            items = ", ".join(num() for _ in range(draw(st.integers(0, 3))))
            return f"a {op} {q} {{{items}}}"
        if kind == 6:
            idx = draw(st.sampled_from(["FIRST", "LAST", "SIZE", "0", "1", "*"]))
            return f"ints[{idx}] {op} {num()}"
        if kind == 7:
            return f"ints.@count {op} {draw(st.integers(0, 3))}"
        if kind == 8:
            q = draw(st.sampled_from(["ANY", "ALL", "NONE"]))
            return f"{q} ints {op} {num()}"
        if kind == 9:
            arith = draw(st.sampled_from(["+", "-", "*"]))
            return f"a {arith} {num()} {op} {num()}"
        if kind == 10:
            return f"link.a {op} {num()}"
        if kind == 11:
            q = draw(st.sampled_from(["", "ALL ", "NONE "]))
            if draw(st.booleans()):
                return f"{q}links.a {op} {num()}"
            return f"SUBQUERY(links, $x, $x.a {op} {num()}).@count > 0"
        if kind == 12:
            return f"a IN {arg(draw(st.lists(opt_ints, max_size=3)))}"
        if kind == 13:
            terms = ["red", "apple*", "-red", "pie -red", "app* pie", "RED Pie", "e"]
            return f"t TEXT {arg(draw(st.sampled_from(terms)))}"
        if kind == 14:
            via = draw(st.sampled_from(["link", "links"]))
            links = draw(st.sampled_from(["@links.HRow.link", "@links.HRow.links", "@links"]))
            return f"{via}.{links}.@count {op} {draw(st.integers(0, 4))}"
        if kind == 15:
            items = ", ".join(num() for _ in range(draw(st.integers(0, 3))))
            return f"ints {op} {{{items}}}"  # whole against whole
        return f"ints.@sum {op} {num()}"

    def node(depth: int) -> str:
        if depth >= 2 or draw(st.integers(0, 2)) == 0:
            return leaf()
        kind = draw(st.sampled_from(["AND", "OR", "NOT"]))
        if kind == "NOT":
            return f"NOT ({node(depth + 1)})"
        return "(" + f" {kind} ".join(node(depth + 1) for _ in range(2)) + ")"

    return node(0), args


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory, module_realm_kind: str) -> Iterator[Realm]:
    config = make_config(module_realm_kind, [HLink, HRow], Path(tmp_path_factory.mktemp("agree")))
    with Realm(config) as r:
        with r.write():
            r.add_all([HLink(k=k, a=a) for k, a in LINKS.items()])
        yield r


def as_dicts(data: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The rows as plain records; each linked HLink carries the rows that
    link to it under its ``@links…`` names (what a realm's index finds),
    once per link."""
    by_link: dict[str, dict[int, list[int]]] = {"link": {}, "links": {}}
    for k, row in enumerate(data):
        if row[4] is not None:
            by_link["link"].setdefault(row[4], []).append(k)
        for x in row[5]:
            by_link["links"].setdefault(x, []).append(k)

    def target(x: int) -> dict[str, Any]:
        via_link = by_link["link"].get(x, [])
        via_links = by_link["links"].get(x, [])
        return {
            "k": x,
            "a": LINKS[x],
            "@links.HRow.link": via_link,
            "@links.HRow.links": via_links,
            "@links": via_link + via_links,
        }

    out = []
    for k, (a, b, s, ints, link, links, t) in enumerate(data):
        out.append(
            {
                "k": k,
                "a": a,
                "b": b,
                "s": s,
                "ints": ints,
                "link": None if link is None else target(link),
                "links": [target(x) for x in links],
                "t": t,
            }
        )
    return out


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(queries(), rows)
def test_interpreter_closures_row_filter_and_realm_agree(
    realm: Realm, q_args: tuple[str, list[Any]], data: list[tuple[Any, ...]]
) -> None:
    text, args = q_args
    q = query.parse(text)
    records = as_dicts(data)
    expected = [r["k"] for r in records if q.matches(r, args)]

    match = q.matcher(args)
    assert [r["k"] for r in records if match(r)] == expected, "closures"

    names = ("k", "a", "b", "s", "ints", "link", "links", "t")
    positional = [[r[n] for n in names] for r in records]

    def direct(name: str) -> tuple[Any] | None:
        return (names.index(name),) if name in SCALARS else None

    def wrap(rec: list[Any]) -> dict[str, Any]:
        return dict(zip(names, rec))

    keep = q.row_filter(args, direct=direct, wrap=wrap)
    assert [rec[0] for _, rec in keep([(None, p) for p in positional])] == expected, "row filter"

    targets = {o.k: o for o in realm.all(HLink)}
    with realm.write():
        realm.delete_all(HRow)
        for r in records:
            link = None if r["link"] is None else targets[r["link"]["k"]]
            links = [targets[x["k"]] for x in r["links"]]
            realm.add(
                HRow(
                    k=r["k"],
                    a=r["a"],
                    b=r["b"],
                    s=r["s"],
                    ints=r["ints"],
                    link=link,
                    links=links,
                    t=r["t"],
                )
            )
    assert [o.k for o in realm.query(HRow, text, *args)] == expected, "realm"
