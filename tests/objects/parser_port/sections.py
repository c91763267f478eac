"""realm-core's ``test/test_parser.cpp``, rebuilt with realmpy models: every
``TEST`` a :class:`~tests.objects.parser_port.cases.Section` (see cases.py for
how), registered in ``SECTIONS`` in the order of these modules."""

from __future__ import annotations

from tests.objects.parser_port import (
    aggregates,
    backlinks,
    containers,
    encoding,
    mixed,
    queries,
    scalars,
)
from tests.objects.parser_port.aggregates import FIRST_PERSON, SubPerson
from tests.objects.parser_port.cases import SECTIONS, Case, Section

__all__ = ["FIRST_PERSON", "SECTIONS", "Case", "Section", "SubPerson"]
_MODULES = (
    scalars,
    encoding,
    aggregates,
    queries,
    containers,
    mixed,
    backlinks,
)  # imported for their sections
