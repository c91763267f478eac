"""Shared pytest configuration: hypothesis profiles and the fixtures every layer uses.

Hypothesis profiles are picked by the ``HYPOTHESIS_PROFILE`` environment
variable: ``dev`` (default; few examples, for a quick local run) or ``ci``
(more examples, used by ``.ci/run``).  Deadlines are off everywhere: the
machines running these tests are shared and timing is not what we test.
"""

from __future__ import annotations

import os
import pathlib
import secrets
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from realmpy.server.testing import drop_pg_schema, pg_schema_url
from tests.stores import KINDS, require_postgresql

settings.register_profile(
    "dev",
    max_examples=20,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    max_examples=100,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> str:
    """Path of a fresh (not yet created) database file."""
    return str(tmp_path / "test.db")


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """The server's store kind; every test using it runs on SQLite and on PostgreSQL."""
    if request.param == "postgresql":
        require_postgresql()
    return str(request.param)


@pytest.fixture
def database(kind: str) -> Iterator[str | None]:
    """A server's ``--database``: None (SQLite in its data directory) or a URL of a
    fresh PostgreSQL schema, dropped afterwards."""
    if kind == "sqlite":
        yield None
        return
    schema = f"t_{secrets.token_hex(6)}"
    yield pg_schema_url(schema)
    drop_pg_schema(schema)
