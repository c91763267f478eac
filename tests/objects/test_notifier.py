"""Change notifications, refresh, and auto-refresh across processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from realmpy.config import Configuration
from realmpy.notifier import ObjectChange, ResultsChange, diff_rows
from realmpy.realm import Realm
from realmpy.results import Results
from tests.objects_models import MODELS, Dog, Person

TESTS = Path(__file__).parent.parent
WAIT = 30  # seconds before a missing notification fails the test


def config(tmp_path: Path) -> Configuration:
    return Configuration.local(MODELS, path=tmp_path / "n.realm", durability="none")


# -- change sets ---------------------------------------------------------------


def test_diff_rows_basic() -> None:
    old = [(b"a", b"1"), (b"b", b"1"), (b"c", b"1")]
    new = [(b"c", b"2"), (b"a", b"1"), (b"d", b"1")]
    ch = diff_rows(old, new)
    assert ch.deleted == (1,)
    assert ch.inserted == (2,)
    assert ch.modified == (2,) and ch.new_modified == (0,)
    assert ch.moved == ((2, 0),) or ch.moved == ((0, 1),)
    assert not ch.is_cleared
    assert diff_rows(old, []).is_cleared
    assert diff_rows(old, old).is_empty


@given(
    st.lists(st.integers(0, 9), unique=True, max_size=8),
    st.lists(st.integers(0, 9), unique=True, max_size=8),
    st.sets(st.integers(0, 9)),
)
def test_diff_rows_accounts_for_every_row(
    old_keys: list[int], new_keys: list[int], changed: set[int]
) -> None:
    old = [(bytes([k]), b"x") for k in old_keys]
    new = [(bytes([k]), b"y" if k in changed else b"x") for k in new_keys]
    ch = diff_rows(old, new)
    assert len(old) - len(ch.deleted) + len(ch.inserted) == len(new)
    assert {old_keys[i] for i in ch.deleted} == set(old_keys) - set(new_keys)
    assert {new_keys[i] for i in ch.inserted} == set(new_keys) - set(old_keys)
    assert {old_keys[i] for i in ch.modified} == set(old_keys) & set(new_keys) & changed
    # replaying deletes, inserts and moves on the old order gives the new order
    survivors = [k for k in old_keys if k in set(new_keys)]
    moved = {new_keys[j] for _, j in ch.moved}
    stay = [k for k in survivors if k not in moved]
    assert stay == [k for k in new_keys if k in set(stay)]


# -- listeners -----------------------------------------------------------------


def test_results_listener_on_notifier_thread(tmp_path: Path) -> None:
    with Realm(config(tmp_path)) as realm:
        got: list[tuple[list[str], ResultsChange, bool, int]] = []
        done = threading.Event()

        def on_change(results: Results[Dog], changes: ResultsChange) -> None:
            got.append(
                ([d.name for d in results], changes, results.is_frozen, threading.get_ident())
            )
            done.set()

        token = realm.query(Dog, "age > 1 SORT(age)").add_listener(on_change, initial=False)
        with realm.write():
            realm.add(Dog(id=1, name="young", age=1))
            realm.add(Dog(id=2, name="old", age=5))
        assert done.wait(WAIT)
        names, changes, frozen, thread = got[0]
        assert names == ["old"] and changes.inserted == (0,) and frozen
        assert thread != threading.get_ident()
        done.clear()
        with realm.write():
            dog = realm.find(Dog, 2)
            assert dog is not None
            dog.name = "older"
        assert done.wait(WAIT)
        assert got[-1][1].modified == (0,) and got[-1][1].new_modified == (0,)
        token.remove()
        count = len(got)
        with realm.write():
            realm.add(Dog(id=3, name="x", age=9))
        with realm.write():
            realm.delete_all(Dog)
        # the notifier has handled our commits once refresh_async returns
        asyncio.run(realm.refresh_async())
        assert len(got) == count


def test_listeners_on_the_asyncio_loop(tmp_path: Path) -> None:
    async def main() -> None:
        with Realm(config(tmp_path)) as realm:
            calls: list[tuple[Any, ...]] = []
            obj_calls: list[ObjectChange] = []
            event = asyncio.Event()
            me = threading.get_ident()

            def on_results(r: Results[Person], c: ResultsChange) -> None:
                calls.append((len(r), c.inserted, r.is_frozen, threading.get_ident()))
                event.set()

            def on_object(change: ObjectChange) -> None:
                obj_calls.append(change)
                event.set()

            realm.all(Person).add_listener(on_results, initial=False)
            with realm.write():
                ann = realm.add(Person(name="Ann"))
            # our own commit: the realm is already at the newest version
            assert not await realm.refresh_async()
            await asyncio.wait_for(event.wait(), WAIT)
            assert calls == [(1, (0,), False, me)]
            ann.add_listener(on_object, initial=False)
            event.clear()
            with realm.write():
                ann.age = 3
            # The results listener fires for this commit too (ann changed),
            # possibly first: wait for the object's own call.
            while not obj_calls:
                event.clear()
                await asyncio.wait_for(event.wait(), WAIT)
            assert obj_calls[-1].properties == ("age",) and not obj_calls[-1].is_deleted
            assert obj_calls[-1].object == ann
            event.clear()
            with realm.write():
                realm.delete(ann)
            for _ in range(10):
                if any(c.is_deleted for c in obj_calls):
                    break
                event.clear()
                await asyncio.wait_for(event.wait(), WAIT)
            assert [c.object for c in obj_calls if c.is_deleted] == [None]

    asyncio.run(main())


def test_refresh_async_waits_for_another_realms_commit(tmp_path: Path) -> None:
    async def main() -> None:
        cfg = config(tmp_path)
        with Realm(cfg) as realm:
            seen: list[int] = []
            realm.all(Dog).add_listener(lambda r, c: seen.append(len(r)), initial=False)
            writer_done = threading.Event()

            def writer() -> None:
                with Realm(cfg) as other, other.write():
                    other.add(Dog(id=1, name="Rex"))
                writer_done.set()

            t = threading.Thread(target=writer)
            t.start()
            t.join()
            assert writer_done.is_set()
            # the other realm's commit returned: refresh_async advances and
            # the loop-bound listener has run by the time it completes
            assert await realm.refresh_async()
            assert seen == [1]
            assert not await realm.refresh_async()

    asyncio.run(main())


# -- other processes -----------------------------------------------------------------

CHILD = """
import sys
sys.path.insert(0, {tests!r})
from objects_models import MODELS, Dog
from realmpy.config import Configuration
from realmpy.realm import Realm
realm = Realm(Configuration.local(MODELS, path={path!r}, durability="none"))
for line in sys.stdin:
    n = int(line)
    with realm.write():
        realm.add(Dog(id=n, name="dog%d" % n, age=n))
    print(n, flush=True)
realm.close()
"""


def spawn(path: Path) -> subprocess.Popen[str]:
    code = textwrap.dedent(CHILD).format(tests=str(TESTS), path=str(path))
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_another_process_commit_is_seen_without_refresh(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with Realm(cfg) as realm:
        dogs = realm.all(Dog)
        assert len(dogs) == 0
        child = spawn(cfg.path)  # type: ignore[arg-type]
        assert child.stdin is not None and child.stdout is not None
        try:
            for n in range(1, 4):
                child.stdin.write(f"{n}\n")
                child.stdin.flush()
                assert child.stdout.readline().strip() == str(n)  # commit returned
                # a read that starts now sees it: no refresh() needed
                assert len(dogs) == n
                found = realm.find(Dog, n)
                assert found is not None and found.name == f"dog{n}"
        finally:
            child.stdin.close()
            assert child.wait(WAIT) == 0


def test_listener_fires_for_another_process(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with Realm(cfg) as realm:
        seen: list[tuple[int, ...]] = []
        done = threading.Event()

        def on_change(results: Results[Dog], changes: ResultsChange) -> None:
            seen.append(changes.inserted)
            done.set()

        realm.all(Dog).add_listener(on_change, initial=False)
        child = spawn(cfg.path)  # type: ignore[arg-type]
        assert child.stdin is not None and child.stdout is not None
        try:
            child.stdin.write("7\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "7"
            assert done.wait(WAIT)
            assert seen == [(0,)]
        finally:
            child.stdin.close()
            assert child.wait(WAIT) == 0
        assert realm.refresh() is True or len(realm.all(Dog)) == 1
