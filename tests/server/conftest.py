"""Fixtures of the server tests: ``api`` (the HTTP API in-process) on every store kind.

A module that needs its own rules or schema overrides ``server_config`` (usually with
``tests.server.http_api.config_from_toml``); ``kind`` and ``database`` come from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from realmpy.server.auth import AuthConfig
from realmpy.server.config import ServerConfig
from realmpy.server.limits import Limits
from tests.server.http_api import Api, make_api


@pytest.fixture
def server_config() -> ServerConfig:
    return ServerConfig(limits=Limits(max_request_bytes=64 * 1024), auth=AuthConfig(scrypt_n=2**10))


@pytest.fixture
def api(kind: str, tmp_path: Path, server_config: ServerConfig) -> Iterator[Api]:
    yield from make_api(kind, tmp_path, server_config)
