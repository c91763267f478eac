"""Fixtures of the object-layer tests: ``realm`` on a file and in memory.

``realm`` runs every test that uses it twice, on a file and on an in-memory realm.
Tests that need a file (other processes, reopening, compaction, side files, damage)
open their own file realm by path instead; a module with more classes overrides
``models``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from realmpy.config import Configuration
from realmpy.realm import Realm
from tests.objects_models import MODELS


@pytest.fixture
def models() -> list[type]:
    """The classes of the realm the fixtures open."""
    return list(MODELS)


@pytest.fixture(params=["file", "memory"])
def config(request: pytest.FixtureRequest, tmp_path: Path, models: list[type]) -> Configuration:
    if request.param == "memory":
        return Configuration.in_memory(models, identifier=f"t-{tmp_path.name}")
    return Configuration.local(models, path=tmp_path / "t.realm", durability="none")


@pytest.fixture
def realm(config: Configuration) -> Iterator[Realm]:
    with Realm(config) as r:
        yield r
