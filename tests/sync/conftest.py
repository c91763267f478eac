"""Fixtures of the sync tests: ``base``, a sync server a module's tests share, and
``procs``, the worker processes a test starts (see processes.py), stopped after it.

``base`` serves from SQLite only: these tests are about the client, and the server
runs each store kind behind the same HTTP API (tests/server/ runs that API on both,
and so does test_sync_multiprocess.py end to end, through ``database`` from
tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from realmpy.server.testing import run_server
from tests.sync.processes import Proc


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    try:
        yield started
    finally:
        for p in started:
            p.stop()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a sync server (app ``demo``) shared by one module's tests."""
    with run_server(tmp_path_factory.mktemp("server"), app_id="demo") as (url, _proc):
        yield url
