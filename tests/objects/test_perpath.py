"""The one refcounted per-path registry (realmpy/perpath.py) that the open
files (SharedFile) and the sync clients (SyncClient) of a process share."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from realmpy.config import Configuration
from realmpy.errors import ConfigurationError
from realmpy.perpath import PathRegistry
from realmpy.schema import Object
from realmpy.sharedfile import SharedFile


class Item(Object):
    name: str = ""


class Thing:
    def __init__(self, path: str) -> None:
        self.path = path
        self.pid = os.getpid()
        self.refs = 0
        self.done = False


def test_one_object_per_path_counted_until_the_last_release() -> None:
    reg: PathRegistry[Thing] = PathRegistry()
    made: list[Thing] = []

    def create(path: str) -> Thing:
        made.append(Thing(path))
        return made[-1]

    a = reg.acquire("/a", lambda: create("/a"))
    assert reg.acquire("/a", lambda: create("/a")) is a
    b = reg.acquire("/b", lambda: create("/b"))
    assert b is not a and len(made) == 2
    assert a.refs == 2 and "/a" in reg
    assert reg.release(a) is False  # one user left
    assert "/a" in reg
    assert reg.release(a) is True  # the last: forgotten, the caller closes it
    assert "/a" not in reg and "/b" in reg
    assert reg.acquire("/a", lambda: create("/a")) is not a  # a new one
    assert len(made) == 3


def test_check_refuses_without_counting() -> None:
    reg: PathRegistry[Thing] = PathRegistry()
    a = reg.acquire("/a", lambda: Thing("/a"))

    def refuse(thing: Thing) -> None:
        raise ValueError("not for you")

    with pytest.raises(ValueError, match="not for you"):
        reg.acquire("/a", lambda: Thing("/a"), check=refuse)
    assert a.refs == 1
    assert reg.release(a) is True


def test_left_over_or_unusable_objects_are_replaced_and_release_only_themselves() -> None:
    reg: PathRegistry[Thing] = PathRegistry()
    old = reg.acquire("/a", lambda: Thing("/a"))
    old.pid = -1  # as if inherited from the parent across fork()
    new = reg.acquire("/a", lambda: Thing("/a"))
    assert new is not old and new.refs == 1
    assert reg.release(old) is True  # its own last reference...
    assert "/a" in reg  # ...does not forget the current one
    new.done = True
    newer = reg.acquire("/a", lambda: Thing("/a"), usable=lambda t: not t.done)
    assert newer is not new
    assert reg.release(newer) is True and "/a" not in reg


def test_shared_file_is_one_per_path_through_the_registry(tmp_path: Path) -> None:
    config = Configuration.local([Item], path=str(tmp_path / "x.realm"))
    a = SharedFile.acquire(config)
    try:
        assert SharedFile.acquire(config) is a and a.refs == 2
        a.release()
        assert config.path in SharedFile.registry
        memory = dataclasses.replace(config, kind="in_memory")
        with pytest.raises(ConfigurationError, match="open here as"):
            SharedFile.acquire(memory)
        assert a.refs == 1
    finally:
        a.release()
    assert config.path not in SharedFile.registry
