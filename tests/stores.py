"""The server's store kinds as tests see them: SQLite always, PostgreSQL when reachable.

PostgreSQL is found through ``REALMPY_TEST_PG_URL`` (see realmpy/server/testing.py).
Without it a PostgreSQL case is skipped with the reason, except under ``CI``, where
a missing PostgreSQL fails the run instead of silently testing less.
"""

from __future__ import annotations

import os

import pytest

from realmpy.server.testing import postgres_available

KINDS = ["sqlite", "postgresql"]


def require_postgresql() -> None:
    """Skip the calling test (fail it under CI) when PostgreSQL is not reachable."""
    reason = postgres_available()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI requires PostgreSQL: {reason}")
        pytest.skip(reason)
