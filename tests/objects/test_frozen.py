"""Frozen realms, results and objects are immutable and usable from any thread."""

from __future__ import annotations

import gc
import itertools
import queue
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realmpy.config import Configuration
from realmpy.errors import ClosedRealmError, FrozenRealmError, RealmThreadError, TransactionError
from realmpy.realm import Realm
from realmpy.sharedsnapshot import SCAN_BATCH
from tests.objects_models import MODELS, Dog, Person

WAIT = 30


def config(path: Path) -> Configuration:
    return Configuration.local(MODELS, path=path / "f.realm", durability="none")


def in_thread(fn: Callable[[], Any]) -> Any:
    """``fn()`` run on a new thread; its result or its exception."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result(timeout=WAIT)


def test_frozen_realm_results_and_objects_in_other_threads(realm: Realm) -> None:
    with realm.write():
        ann = realm.add(Person(name="Ann", age=30))
        ann.dogs.append(Dog(id=1, name="Rex", owner=ann))
    frozen = realm.freeze()
    people = frozen.query(Person, "age >= 18")
    fann = frozen.find(Person, ann.id)
    assert fann is not None
    with realm.write():  # the live realm moves on; the frozen one does not
        ann.age = 5
        realm.add(Person(name="Bo", age=40))

    def read() -> tuple[Any, ...]:
        dogs = [(d.name, d.owner.name if d.owner else None) for d in fann.dogs]
        return ([p.name for p in people], fann.age, dogs, len(frozen.all(Person)))

    expected = (["Ann"], 30, [("Rex", "Ann")], 1)
    assert read() == expected
    with ThreadPoolExecutor(4) as pool:  # several threads at once
        assert [f.result(WAIT) for f in [pool.submit(read) for _ in range(8)]] == [expected] * 8
    ann_id = ann.id
    assert in_thread(lambda: frozen.find(Person, ann_id).name) == "Ann"  # type: ignore[union-attr]
    with pytest.raises(FrozenRealmError):
        in_thread(frozen.begin_write)
    in_thread(frozen.close)  # any thread may close it
    with pytest.raises(ClosedRealmError):
        _ = fann.name
    with pytest.raises(ClosedRealmError):
        in_thread(lambda: len(people))


def test_frozen_scans_span_batches(realm: Realm) -> None:
    n = SCAN_BATCH * 2 + 3
    with realm.write():
        realm.add_all([Dog(id=i, name=f"d{i}", age=i % 7) for i in range(n)])
    frozen = realm.freeze()
    try:
        assert in_thread(lambda: [d.id for d in frozen.all(Dog)]) == list(range(n))
        assert in_thread(lambda: len(frozen.query(Dog, "age == 3"))) == len(
            [i for i in range(n) if i % 7 == 3]
        )
    finally:
        frozen.close()


def test_listener_results_are_lent_to_the_callback_thread(realm: Realm) -> None:
    got: queue.Queue[BaseException | None] = queue.Queue()

    def on_change(results: Any, change: Any) -> None:
        def other() -> None:
            len(results)

        try:
            in_thread(other)
        except BaseException as exc:
            got.put(exc)
        else:
            got.put(None)

    token = realm.all(Dog).add_listener(on_change)
    exc = got.get(timeout=WAIT)
    token.remove()
    assert isinstance(exc, RealmThreadError) and "realm.freeze()" in str(exc)


def test_live_realm_still_belongs_to_its_thread(realm: Realm) -> None:
    with pytest.raises(RealmThreadError, match="pass a frozen one"):
        in_thread(lambda: realm.all(Dog))


def test_an_unreferenced_frozen_realm_unpins_its_version(realm: Realm) -> None:
    with realm.write():
        realm.add(Dog(id=1, name="Rex"))
    threads = threading.active_count()
    frozen = realm.freeze()
    assert threading.active_count() == threads  # no thread of its own
    version = frozen.version
    with realm.write():  # the live realm moves on: only the frozen one pins `version`
        realm.add(Dog(id=2, name="Bo"))
    assert realm.find(Dog, 2) is not None
    pinned = [r for r in realm._env.readers() if r.version == version]
    assert len(pinned) == 1
    # The reader slot names the thread that froze the realm (rp_txn_share).
    assert pinned[0].thread == threading.get_native_id()
    del frozen
    gc.collect()
    assert not [r for r in realm._env.readers() if r.version == version]


def test_a_frozen_realm_collected_on_another_thread_unpins_its_version(realm: Realm) -> None:
    with realm.write():
        realm.add(Dog(id=1, name="Rex"))
    box = [realm.freeze()]
    version = box[0].version
    with realm.write():
        realm.add(Dog(id=2, name="Bo"))
    assert realm.find(Dog, 2) is not None

    def drop() -> None:
        assert box[0].find(Dog, 1) is not None
        box.clear()  # the last reference goes on this thread
        gc.collect()

    in_thread(drop)
    assert not [r for r in realm._env.readers() if r.version == version]


def test_many_threads_read_one_frozen_realm_at_once(realm: Realm) -> None:
    n = SCAN_BATCH + 50
    with realm.write():
        realm.add_all([Dog(id=i, name=f"d{i}", age=i % 9) for i in range(n)])
    frozen = realm.freeze()
    with realm.write():  # the frozen realm keeps reading the older version
        for d in realm.all(Dog):
            d.age = 100
        realm.add(Dog(id=n, name="late"))
    expected_ages = {i: i % 9 for i in range(n)}
    snap: Any = frozen._snap
    start = threading.Barrier(8)

    def reader(k: int) -> int:
        start.wait(WAIT)
        for r in range(6):
            dogs = frozen.all(Dog)
            i = (k * 131 + r * 17) % n
            d = frozen.find(Dog, i)
            assert d is not None and d.age == i % 9 and d.name == f"d{i}"
            assert frozen.find(Dog, n) is None
            assert snap.count("o:Dog") == n
            keys = [k for k, _ in itertools.islice(snap.scan("o:Dog"), 3)]  # abandoned scan
            got = snap.get_many("o:Dog", keys)
            assert len(got) == 3 and None not in got
            if r % 3 == 0:
                assert {d.id: d.age for d in dogs} == expected_ages
            assert len(frozen.query(Dog, "age == 3")) == len([a for a in range(n) if a % 9 == 3])
        return k

    with ThreadPoolExecutor(8) as pool:
        assert sorted(
            f.result(WAIT * 4) for f in [pool.submit(reader, k) for k in range(8)]
        ) == list(range(8))
    frozen.close()


# -- a model: a frozen realm read from another thread shows the state at freezing --

ops = st.lists(
    st.tuples(st.sampled_from(["add", "age", "delete"]), st.integers(0, 5), st.integers(0, 9)),
    max_size=8,
)


def _apply(realm: Realm, model: dict[int, int], op: tuple[str, int, int]) -> None:
    kind, i, age = op
    with realm.write():
        dog = realm.find(Dog, i)
        if kind == "add" and dog is None:
            realm.add(Dog(id=i, name=str(i), age=age))
            model[i] = age
        elif kind == "age" and dog is not None:
            dog.age = age
            model[i] = age
        elif kind == "delete" and dog is not None:
            realm.delete(dog)
            del model[i]


@given(ops, ops)
def test_frozen_state_matches_the_model_at_freezing(before: list[Any], after: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as d, Realm(config(Path(d))) as realm:
        model: dict[int, int] = {}
        for op in before:
            _apply(realm, model, op)
        frozen = realm.freeze()
        expected = dict(model)
        dogs = frozen.all(Dog)
        for op in after:
            _apply(realm, model, op)
        assert in_thread(lambda: {d.id: d.age for d in dogs}) == expected
        assert in_thread(lambda: {d.id for d in frozen.query(Dog, "age > 4")}) == {
            i for i, a in expected.items() if a > 4
        }
        frozen.close()


def test_shared_snapshot_forwards_reads_but_never_moves(realm: Realm) -> None:
    with realm.write():
        realm.add(Dog(id=1, name="Rex"))
    frozen = realm.freeze()
    try:
        snap: Any = frozen._snap
        assert "o:Dog" in in_thread(snap.tables)
        assert in_thread(lambda: snap.count("o:Dog")) == 1
        assert in_thread(lambda: snap.get_many("o:Dog", iter([b"nope"]))) == [None]
        with pytest.raises(AttributeError):
            _ = snap.refresh  # a frozen snapshot never moves to a newer version
        with pytest.raises(AttributeError, match="no method"):
            _ = snap.put
    finally:
        frozen.close()
    with pytest.raises(TransactionError, match="freeze the realm again"):
        snap.count("o:Dog")
    with pytest.raises(TransactionError, match="freeze the realm again"):
        snap.get("o:Dog", b"x")
