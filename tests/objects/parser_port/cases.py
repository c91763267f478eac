"""realm-core's ``test/test_parser.cpp``, rebuilt with realmpy models.

Each :class:`Section` is one ``TEST`` of that file: its tables as realmpy
models, a function that fills a realm as the test fills its tables, and its
``verify_query`` calls as :class:`Case` rows with the same expected counts
(or the expected error: realm-core's ``SyntaxError`` is
:class:`QuerySyntaxError`, its ``InvalidQueryError`` our
:class:`QueryArgumentError` family, which :class:`QueryTypeError` joins).

Differences forced by realmpy's model, not by its query language, are kept
out of the rows and said here: realm-core's implicit object keys become an
``int`` primary key ``k`` where a test needs to tell objects apart; a
``TEST_TYPES`` test is one section per type it runs with.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from realmpy.errors import QueryArgumentError, QuerySyntaxError
from realmpy.realm import Realm

INVALID = QueryArgumentError  # realm-core's InvalidQueryError
SYNTAX = QuerySyntaxError  # realm-core's SyntaxError


@dataclass(frozen=True)
class Case:
    """``verify_query(table, query, args, count)``, or a query that raises
    ``error``; for a test that checks the objects in order (a sorted view),
    ``order`` is a key path and its values in the results, in order."""

    query: str
    count: int | None = None
    args: tuple[Any, ...] = ()
    error: type[Exception] | None = None
    order: tuple[str, tuple[Any, ...]] | None = None


@dataclass
class Section:
    name: str
    category: str
    models: list[type] = dc_field(default_factory=list)
    fill: Callable[[Realm], object] | None = None
    # The class queried by each case (the "table" of verify_query); a case
    # may name another one as "Class: query".
    root: type | None = None
    cases: list[Case] = dc_field(default_factory=list)

    def add(self, query: str, count: int | None = None, *args: Any) -> None:
        self.cases.append(Case(query, count, tuple(args)))

    def throws(self, query: str, error: type[Exception] = INVALID, *args: Any) -> None:
        self.cases.append(Case(query, None, tuple(args), error))

    def ordered(self, query: str, path: str, values: Sequence[Any]) -> None:
        """``query``'s results, in order, have these values at ``path``."""
        self.cases.append(Case(query, len(values), order=(path, tuple(values))))


SECTIONS: list[Section] = []


def section(
    name: str, category: str, models: Sequence[type] = (), root: type | None = None
) -> Section:
    s = Section(name, category, list(models), None, root)
    SECTIONS.append(s)
    return s


def ts(seconds: int) -> dt.datetime:
    """``seconds`` after the epoch, as realm-core's ``Timestamp{seconds, 0}``."""
    return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=seconds)


def fill_grocery(
    r: Realm,
    allergen: type,
    item: type,
    person: type,
    first_list: Sequence[int] = (0, 1, 2, 3),
) -> list[Any]:
    """The shop realm-core's OperatorIN, Subquery and AggregateShortcuts tests
    build: four allergens, four items (milk, oranges, pizza, cereal) and
    three customers; ``first_list`` is the first customer's items in order.
    Returns the items."""
    al = r.add_all(
        [
            allergen(k=i, name=n, population_affected=p)
            for i, (n, p) in enumerate(
                [("dairy", 0.75), ("nuts", 0.01), ("wheat", 0.01), ("soy", 0.005)]
            )
        ]
    )
    items = r.add_all(
        [
            item(k=i, name=n, price=p)
            for i, (n, p) in enumerate(
                [("milk", 5.5), ("oranges", 4.0), ("pizza", 9.5), ("cereal", 6.5)]
            )
        ]
    )
    items[0].allergens.append(al[0])
    items[2].allergens.extend([al[0], al[2], al[3]])
    items[3].allergens.extend([al[0], al[1], al[2]])
    lists = [[items[i] for i in first_list], [items[0]] * 10, [items[2], items[2], items[3]]]
    for i in range(3):
        r.add(
            person(
                k=i,
                customer_id=i,
                account_balance=(i + 1) * 10.0,
                fav_item=items[i],
                items=lists[i],
            )
        )
    return items
