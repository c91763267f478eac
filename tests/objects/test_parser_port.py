"""realm-core's query tests (``test/test_parser.cpp``), ported: every case
either passes or is listed in ``parser_port/exclusions.txt`` with its reason.

A case runs as realm-core's ``verify_query`` does: the query's count, then
the count of its description (``str(parse(text))``) re-run, must both be
the expected one; an error case must raise the error realm-core raises.
Excluded cases run too, as strict xfails: one that starts to pass must
leave the exclusions file.  The cases and their tables are in
``parser_port/sections.py`` and ``parser_port/syntax.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from realmpy import query
from realmpy.config import Configuration
from realmpy.errors import QuerySyntaxError
from realmpy.realm import Realm
from realmpy.results import Results
from tests.objects.parser_port.sections import FIRST_PERSON, SECTIONS, Case, Section, SubPerson
from tests.objects.parser_port.syntax import INVALID_QUERIES, VALID_QUERIES

EXCLUSIONS_FILE = Path(__file__).parent / "parser_port" / "exclusions.txt"


def load_exclusions() -> dict[str, str]:
    """``case id -> reason`` from the exclusions file (``id<TAB>reason`` lines;
    ``#`` comments; an id ending in ``::*`` excludes a whole unported test)."""
    out: dict[str, str] = {}
    for line in EXCLUSIONS_FILE.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        case_id, _, reason = line.partition("\t")
        assert reason.strip(), f"exclusion without a reason: {line!r}"
        assert case_id not in out, f"excluded twice: {case_id!r}"
        out[case_id] = reason.strip()
    return out


EXCLUDED = load_exclusions()


def case_id(section: str, text: str, args: tuple[Any, ...] = ()) -> str:
    return f"{section}::{text}" + (f"::{args!r}" if args else "")


def _params() -> Iterator[Any]:
    seen: set[str] = set()

    def param(cid: str, *values: Any) -> Any:
        n = 1
        while cid in seen:  # realm-core repeats a few cases: number the repeats
            n += 1
            cid = f"{cid.rsplit('#', 1)[0]}#{n}"
        seen.add(cid)
        marks = []
        if cid in EXCLUDED:
            marks.append(pytest.mark.xfail(strict=True, reason=EXCLUDED[cid]))
        return pytest.param(*values, id=cid, marks=marks)

    for text in VALID_QUERIES:
        yield param(case_id("Parser_valid_queries", text), None, Case(text, count=-1))
    for text in INVALID_QUERIES:
        yield param(
            case_id("Parser_invalid_queries", text), None, Case(text, error=QuerySyntaxError)
        )
    for s in SECTIONS:
        for c in s.cases:
            yield param(case_id(s.name, c.query, c.args), s, c)


def test_every_exclusion_names_a_case() -> None:
    """No stale line: each exclusion is a case of this module, or a whole
    ``TEST`` of realm-core's file that is not ported (``name::*``)."""
    ids = {p.id for p in _params()}
    ported = {cid.split("::")[0].split("<")[0] for cid in ids}
    stale = [
        cid
        for cid in EXCLUDED
        if (cid.endswith("::*") and cid[:-3] in ported)
        or (not cid.endswith("::*") and cid not in ids)
    ]
    assert stale == []


_REALMS: dict[str, Realm] = {}


@pytest.fixture(scope="module")
def realms() -> Iterator[dict[str, Realm]]:
    yield _REALMS
    for r in _REALMS.values():
        r.close()
    _REALMS.clear()


def _realm(realms: dict[str, Realm], s: Section) -> Realm:
    r = realms.get(s.name)
    if r is None:
        # Unique per process: in-memory realms of one identifier are shared
        # between processes, and two test runs at once must not meet.
        config = Configuration.in_memory(
            s.models, identifier=f"parser-port-{s.name}-{os.getpid()}-{id(realms)}"
        )
        r = realms[s.name] = Realm(config)
        if s.fill is not None:
            with r.write():
                s.fill(r)
    return r


def _results(r: Realm, s: Section, text: str, args: tuple[Any, ...]) -> Results[Any]:
    root = s.root
    head, sep, rest = text.partition(": ")
    if sep and head in {m.__name__ for m in s.models}:
        root = next(m for m in s.models if m.__name__ == head)
        text = rest
    assert root is not None
    # The managed object a case's arguments stand for (realm-core's ObjKey).
    args = tuple(r.find(SubPerson, 0) if a is FIRST_PERSON else a for a in args)
    return r.query(root, text, *args)


def _check(r: Realm, s: Section, case: Case, text: str) -> None:
    results = _results(r, s, text, case.args)
    assert len(results) == case.count
    if case.order is not None:
        path, values = case.order
        assert tuple(_follow(o, path) for o in results) == values


def _follow(obj: Any, path: str) -> Any:
    """The value at a dotted key path of an object: ``account.balance``,
    ``meta[age]`` (a dictionary's key)."""
    for name in path.split("."):
        name, _, key = name.rstrip("]").partition("[")
        obj = getattr(obj, name)
        if key:
            obj = obj[key]
    return obj


@pytest.mark.parametrize(("section", "case"), list(_params()))
def test_realm_core_parser_case(
    realms: dict[str, Realm], section: Section | None, case: Case
) -> None:
    if section is None:  # the grammar alone
        if case.error is not None:
            with pytest.raises(case.error):
                query.parse(case.query)
        else:
            parsed = query.parse(case.query)
            assert query.parse(str(parsed)).predicate == parsed.predicate
        return
    r = _realm(realms, section)
    if case.error is not None:
        with pytest.raises(case.error):
            len(_results(r, section, case.query, case.args))
        return
    _check(r, section, case, case.query)
    # realm-core's verify_query re-runs the query's description.
    head, sep, rest = case.query.partition(": ")
    text = rest if sep and head in {m.__name__ for m in section.models} else case.query
    description = str(query.parse(text))
    again = f"{head}: {description}" if text is not case.query else description
    _check(r, section, case, again)
