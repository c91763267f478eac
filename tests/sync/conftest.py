"""Fixtures of the sync tests: ``procs``, the worker processes a test starts (see
processes.py), stopped after it; the server's ``kind``/``database`` come from tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sync.processes import Proc


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    try:
        yield started
    finally:
        for p in started:
            p.stop()
