"""The everyday fast paths (issue 15) give the same answers as the general ones.

Speed itself is measured in bench/bench_objects.py, never asserted here; these
tests pin down that a fast path is taken (counted engine or Python calls) and
that it agrees with the slow path it replaces.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from realmpy.realm import Realm
from tests.objects_models import Dog, Note


def _no_evaluation(realm: Realm, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> Any:
        raise AssertionError("the results were evaluated")

    monkeypatch.setattr(realm, "_evaluate", refuse)


def test_len_of_all_is_the_table_count(realm: Realm, monkeypatch: pytest.MonkeyPatch) -> None:
    with realm.write():
        realm.add_all([Dog(id=i, name=f"d{i}") for i in range(10)])
        realm.add(Note(text="n"))
    dogs, notes = realm.all(Dog), realm.all(Note)
    _no_evaluation(realm, monkeypatch)
    assert (len(dogs), bool(dogs), len(notes)) == (10, True, 1)
    with realm.write():
        realm.delete(realm.find(Dog, 3))  # type: ignore[arg-type]
        assert len(dogs) == 9  # the write transaction's own count
        realm.delete_all(Dog)
        assert (len(dogs), bool(dogs)) == (0, False)
    assert len(realm.all(Dog)) == 0
    monkeypatch.undo()
    assert len(realm.query(Note, "n == 0")) == 1  # a filtered count evaluates


def _run(script: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, timeout=60, capture_output=True, text=True
    )
    return out.stdout.strip()


def test_import_realmpy_loads_only_the_local_realm(tmp_path: Path) -> None:
    """The sync client, the server, asyncio and the query compiler load on
    first use, also after a realm is opened, counted and written."""
    loaded = _run(
        "import sys\n"
        "import realmpy\n"
        "from tests.objects_models import MODELS, Dog\n"
        f"r = realmpy.Realm(realmpy.Configuration.local(MODELS, path={str(tmp_path / 'x.realm')!r}))\n"
        "with r.write():\n"
        "    r.add(Dog(id=1, name='a'))\n"
        "assert len(r.all(Dog)) == 1 and r.find(Dog, 1).name == 'a'\n"
        "r.close()\n"
        "heavy = ('realmpy.sync', 'realmpy.server', 'realmpy.query', 'realmpy.execute', 'asyncio')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    assert loaded == "[]"


def test_sync_names_and_configurations_load_on_first_use(tmp_path: Path) -> None:
    kinds = _run(
        "import sys, realmpy\n"
        "class Pet(realmpy.Object):\n"
        "    id: int = realmpy.field(primary_key=True)\n"
        "assert 'realmpy.sync' not in sys.modules\n"
        f"c = realmpy.Configuration.disconnected_sync([Pet], path={str(tmp_path / 's.realm')!r})\n"
        "print(c.kind, realmpy.App.__module__)\n"
    )
    assert kinds == "disconnected_sync realmpy.sync.app"
