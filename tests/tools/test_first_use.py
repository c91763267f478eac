"""First-use fixes: Configuration.local's default path and a class passed for a list."""

from __future__ import annotations

import os
import pathlib

import pytest

from realmpy import Configuration, ConfigurationError, Object, Realm


class Thing(Object):
    name: str = ""


def test_local_without_a_path_is_default_realm_in_the_storage_directory(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Configuration, "default_storage_path", str(tmp_path))
    config = Configuration.local([Thing])
    assert config.path == os.path.join(str(tmp_path), "default.realm")
    with Realm(config) as realm, realm.write():
        realm.add(Thing(name="x"))
    assert (tmp_path / "default.realm").exists()


@pytest.mark.parametrize(
    "build",
    [
        lambda: Configuration.local(Thing),  # type: ignore[arg-type]
        lambda: Configuration.in_memory(Thing, identifier="x"),  # type: ignore[arg-type]
        lambda: Configuration.disconnected_sync(Thing, path="x.realm"),  # type: ignore[arg-type]
    ],
)
def test_a_class_instead_of_a_list_says_what_to_write(build: object) -> None:
    with pytest.raises(ConfigurationError, match=r"list of model classes.*\(\[Thing\]\)"):
        build()  # type: ignore[operator]


def test_other_non_lists_are_refused_too() -> None:
    for bad in ("Thing", None, 3):
        with pytest.raises(ConfigurationError, match="list of model classes"):
            Configuration.local(bad)  # type: ignore[arg-type]
