"""Fixtures of the object-layer tests: ``realm`` on a file and in memory.

``realm`` runs every test that uses it twice, on a file and on an in-memory realm.
Tests that need a file (other processes, reopening, compaction, side files, damage)
open their own file realm by path instead; a module with more classes overrides
``models``.  A module whose tests share one filled realm builds it with
``make_config(module_realm_kind, ...)``, so that realm is a file and in memory too.
"""

from __future__ import annotations

import hashlib
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


KINDS = ["file", "memory"]


def make_config(kind: str, models: list[type], directory: Path) -> Configuration:
    """A realm on ``directory/t.realm`` or in memory (named after the whole
    ``directory`` path: unique also when two test runs share the machine,
    whose tmp_path names repeat)."""
    if kind == "memory":
        digest = hashlib.sha1(str(directory).encode()).hexdigest()[:16]
        return Configuration.in_memory(models, identifier=f"t-{directory.name}-{digest}")
    return Configuration.local(models, path=directory / "t.realm", durability="none")


@pytest.fixture(params=KINDS)
def config(request: pytest.FixtureRequest, tmp_path: Path, models: list[type]) -> Configuration:
    return make_config(request.param, models, tmp_path)


@pytest.fixture(scope="module", params=KINDS)
def module_realm_kind(request: pytest.FixtureRequest) -> str:
    """The kind of a realm a module's tests share (filled once, read by many)."""
    return str(request.param)


@pytest.fixture
def realm(config: Configuration) -> Iterator[Realm]:
    with Realm(config) as r:
        yield r
