"""A process with an open realm and a listener exits promptly (issue 15).

The notifier's watcher thread (a daemon) sleeps in the engine's wait;
CPython stops it there at exit, and closing the realm during finalisation
(its ``__del__``, kept alive by an uncaught exception's traceback) used to
wait for that wait forever.  Each case runs a child interpreter; the
timeout only bounds the test (a hang fails it).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.exiting import exit_code

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys
sys.path.insert(0, {root!r})
from realmpy.config import Configuration
from realmpy.realm import Realm
from tests.objects_models import MODELS, Person

def main():
    realm = Realm(Configuration.local(MODELS, path={path!r}, durability="none"))
    with realm.write():
        realm.add(Person(name="Ann"))
    token = realm.all(Person).add_listener(lambda *args: None)
    {end}

main()
"""

ENDINGS = {
    "uncaught exception": ('raise RuntimeError("boom")', 1),
    "no close": ("return token, realm", 0),
    "close": ("realm.close()", 0),
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_exit_with_a_listener_open(tmp_path: Path, ending: str) -> None:
    end, code = ENDINGS[ending]
    child = textwrap.dedent(CHILD).format(
        root=str(ROOT), path=str(tmp_path / "exit.realm"), end=end
    )
    status, stderr = exit_code(child, ending)
    assert status == code, stderr
