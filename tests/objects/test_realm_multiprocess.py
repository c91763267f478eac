"""Several processes on one realm file: concurrent writers, counters,
version limits."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from realmpy.config import Configuration
from realmpy.errors import VersionLimitError
from realmpy.realm import Realm
from tests.objects_models import MODELS, Person

TESTS = Path(__file__).parent.parent

WRITER = """
import sys
sys.path.insert(0, {tests!r})
from objects_models import MODELS, Person
from realmpy.config import Configuration
from realmpy.realm import Realm
from realmpy.objectid import ObjectId
with Realm(Configuration.local(MODELS, path={path!r}, durability="none")) as realm:
    for _ in range({rounds}):
        with realm.write():
            ann = realm.query(Person, "name == 'Ann'").first()
            ann.visits.increment(1)
            ann.age = ann.age + 1   # read-modify-write under the writer lock
"""


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "mp.realm"
    config = Configuration.local(MODELS, path=path, durability="none")
    with Realm(config) as realm:
        with realm.write():
            realm.add(Person(name="Ann"))
        rounds, procs = 150, 3
        code = textwrap.dedent(WRITER).format(tests=str(TESTS), path=str(path), rounds=rounds)
        children = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(procs)]
        assert [c.wait(120) for c in children] == [0] * procs
        ann = realm.query(Person, "name == 'Ann'").first()
        assert ann is not None
        assert ann.visits == rounds * procs and ann.age == rounds * procs


def test_max_active_versions_counts_every_process(tmp_path: Path) -> None:
    path = tmp_path / "v.realm"
    config = Configuration.local(MODELS, path=path, durability="none", max_active_versions=3)
    with Realm(config) as realm:
        pins = []
        with pytest.raises(VersionLimitError):
            for i in range(10):
                with realm.write():
                    realm.add(Person(name=str(i)))
                pins.append(realm.freeze())  # each frozen realm pins a version
        for p in pins:
            p.close()
        with realm.write():  # unpinned: writing works again
            realm.add(Person(name="after"))


def test_the_complete_local_example_runs(tmp_path: Path) -> None:
    # realmpy/examples/local.py is the README's example: models, a write, a
    # query, a listener, and a second process whose commit it sees.
    out = subprocess.run(
        [sys.executable, "-m", "realmpy.examples.local", "--path", str(tmp_path / "p.realm")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "adults: ['Ann']" in out
    assert "listener: inserted at (1,) -> ['Ann', 'Bo']" in out
    assert out.rstrip().endswith("adults now: ['Ann', 'Bo']")
