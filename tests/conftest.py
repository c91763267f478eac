"""Shared pytest configuration: hypothesis profiles and database fixtures.

Hypothesis profiles are picked by the ``HYPOTHESIS_PROFILE`` environment
variable: ``dev`` (default; few examples, for a quick local run) or ``ci``
(more examples, used by ``.ci/run``).  Deadlines are off everywhere: the
machines running these tests are shared and timing is not what we test.
"""

from __future__ import annotations

import os
import pathlib

import pytest
from hypothesis import HealthCheck, settings

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
