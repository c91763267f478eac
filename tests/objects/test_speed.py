"""The everyday fast paths (issue 15) give the same answers as the general ones.

Speed itself is measured in bench/bench_objects.py, never asserted here; these
tests pin down that a fast path is taken (counted engine or Python calls) and
that it agrees with the slow path it replaces.
"""

from __future__ import annotations

import queue
import random
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped,unused-ignore]
import pytest

from realmpy import changelog, query
from realmpy._native import pack_changes
from realmpy.codec import CodecError, encode_key
from realmpy.errors import DuplicatePrimaryKeyError, RealmThreadError
from realmpy.layout import table_name
from realmpy.notifier import ResultsChange, diff_rows
from realmpy.ondemand import on_first_use
from realmpy.realm import Realm
from realmpy.schema import EmbeddedObject, Object, field
from realmpy.storage import CHANGED_KEYS_MAX, CHANGES_TABLE, Environment, WriteTransaction
from tests.objects.conftest import make_config
from tests.objects_models import MODELS, Dog, Note, Person


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
    """The sync client, the server, asyncio, the query compiler and the
    notifier load on first use, also after a realm is opened, counted and
    written."""
    loaded = _run(
        "import sys\n"
        "import realmpy\n"
        "from tests.objects_models import MODELS, Dog\n"
        f"r = realmpy.Realm(realmpy.Configuration.local(MODELS, path={str(tmp_path / 'x.realm')!r}))\n"
        "with r.write():\n"
        "    r.add(Dog(id=1, name='a'))\n"
        "assert len(r.all(Dog)) == 1 and r.find(Dog, 1).name == 'a'\n"
        "r.close()\n"
        "heavy = ('realmpy.sync', 'realmpy.server', 'realmpy.query', 'realmpy.execute',\n"
        "         'realmpy.notifier', 'asyncio')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    assert loaded == "[]"


_LOCAL_MODEL = (
    "import sys\n"
    "import realmpy\n"
    "class Car(realmpy.Object):\n"
    "    id: int = realmpy.field(primary_key=True)\n"
    "    make: str = realmpy.field(default='', indexed=True)\n"
    "    extra: realmpy.Mixed = None\n"
)


def test_a_cold_start_loads_no_module_it_does_not_use(tmp_path: Path) -> None:
    """``import realmpy``, open, ``len``, a first object written: neither
    dataclasses nor inspect (realmpy.valueclass replaces them; a model's
    ``__signature__`` is made when asked for), nor uuid, decimal
    (realmpy.stdtypes) or platform load; nor do the modules a realm needs
    only for other kinds of work (a migration's old objects, full-text
    indexing, copying an embedded object)."""
    path = str(tmp_path / "c.realm")
    _run(
        _LOCAL_MODEL + f"r = realmpy.Realm(realmpy.Configuration.local([Car], path={path!r}))\n"
        "with r.write():\n"
        "    r.add(Car(id=1, make='a', extra=2))\n"
    )
    loaded = _run(
        _LOCAL_MODEL + "never = ('dataclasses', 'inspect', 'uuid', 'decimal', 'platform',\n"
        "         'copy', 'realmpy.dynamic', 'realmpy.textsearch')\n"
        "at_import = sorted(m for m in sys.modules if m in never)\n"
        f"r = realmpy.Realm(realmpy.Configuration.local([Car], path={path!r}))\n"
        "assert len(r.all(Car)) == 1\n"
        "at_open = sorted(m for m in sys.modules if m in never)\n"
        "with r.write():\n"
        "    r.add(Car(id=2, make='b'))\n"
        "print(at_import, at_open, sorted(m for m in sys.modules if m in never))\n"
    )
    assert loaded == "[] [] []"


def test_an_open_and_count_loads_no_write_path_module(tmp_path: Path) -> None:
    """A new process that opens a realm and counts loads none of the write
    path's modules (realmpy.ondemand binds them where first used); a write
    after it works (the rest of the suite uses every one of them)."""
    path = str(tmp_path / "w.realm")
    _run(
        _LOCAL_MODEL + f"r = realmpy.Realm(realmpy.Configuration.local([Car], path={path!r}))\n"
        "with r.write():\n"
        "    r.add(Car(id=1, make='a', extra=2))\n"
    )
    loaded = _run(
        _LOCAL_MODEL + "write_path = ('realmpy.bulkadd', 'realmpy.backlinkindex',\n"
        "    'realmpy.fulltextindex', 'realmpy.managed', 'realmpy.embeddedstore',\n"
        "    'realmpy.waiting')\n"
        f"r = realmpy.Realm(realmpy.Configuration.local([Car], path={path!r}))\n"
        "assert len(r.all(Car)) == 1 and r.find(Car, 1).make == 'a'\n"
        "at_read = sorted(m for m in sys.modules if m in write_path)\n"
        "with r.write():\n"
        "    r.add(Car(id=2, make='b'))\n"
        "assert len(r.all(Car)) == 2\n"
        "print(at_read)\n"
    )
    assert loaded == "[]"


def test_an_open_and_count_loads_no_msgpack(tmp_path: Path) -> None:
    """Neither ``import realmpy`` nor an open and a count load msgpack (or
    the datetime it imports): the stored schema is read by the codec's small
    decoder and the count is the engine's.  The first record read loads it
    (the codec's packers and decoder bind it where first used)."""
    path = str(tmp_path / "m.realm")
    _run(
        _LOCAL_MODEL + f"r = realmpy.Realm(realmpy.Configuration.local([Car], path={path!r}))\n"
        "with r.write():\n"
        "    r.add(Car(id=1, make='a', extra=2))\n"
    )
    loaded = _run(
        _LOCAL_MODEL + "lazy = ('msgpack', 'datetime')\n"
        "at_import = sorted(m for m in sys.modules if m in lazy)\n"
        f"r = realmpy.Realm(realmpy.Configuration.local([Car], path={path!r}))\n"
        "assert len(r.all(Car)) == 1\n"
        "at_open = sorted(m for m in sys.modules if m in lazy)\n"
        "car = r.find(Car, 1)\n"
        "assert (car.make, car.extra) == ('a', 2)\n"
        "with r.write():\n"
        "    r.add(Car(id=2, make='b'))\n"
        "assert [c.make for c in r.all(Car)] == ['a', 'b']\n"
        "print(at_import, at_open, 'msgpack' in sys.modules)\n"
    )
    assert loaded == "[] [] True"


def test_a_module_bound_on_first_use_replaces_its_stand_in() -> None:
    """The first attribute access imports the module and rebinds the alias,
    so later uses are plain global lookups (no stand-in on the add path)."""
    namespace: dict[str, Any] = {}
    namespace["lay"] = on_first_use("realmpy.layout", "lay", namespace)
    assert "imported on first use" in repr(namespace["lay"])
    assert namespace["lay"].table_name("C") == table_name("C")
    assert namespace["lay"] is sys.modules["realmpy.layout"]


def test_values_of_lazily_imported_types_read_back_in_a_new_process(tmp_path: Path) -> None:
    """A process that never imported datetime's, Decimal's or UUID's module
    reads them from a mixed property (the codec imports them to decode)."""
    path = str(tmp_path / "v.realm")
    _run(
        "import datetime, decimal, uuid\n"
        + _LOCAL_MODEL
        + f"r = realmpy.Realm(realmpy.Configuration.local([Car], path={path!r}))\n"
        "with r.write():\n"
        "    r.add(Car(id=1, extra=uuid.UUID(int=7)))\n"
        "    r.add(Car(id=2, extra=decimal.Decimal('1.5')))\n"
        "    r.add(Car(id=3, extra=datetime.datetime(2020, 1, 2, tzinfo=datetime.timezone.utc)))\n"
        "    r.add(Car(id=4, extra=[uuid.UUID(int=8), {'d': decimal.Decimal('-2')}]))\n"
    )
    read = _run(
        _LOCAL_MODEL + f"r = realmpy.Realm(realmpy.Configuration.local([Car], path={path!r}))\n"
        "assert 'uuid' not in sys.modules and 'decimal' not in sys.modules\n"
        "print([repr(r.find(Car, i).extra) for i in range(1, 5)])\n"
    )
    assert read == repr(
        [
            "UUID('00000000-0000-0000-0000-000000000007')",
            "Decimal('1.5')",
            "datetime.datetime(2020, 1, 2, 0, 0, tzinfo=datetime.timezone.utc)",
            "[UUID('00000000-0000-0000-0000-000000000008'), {'d': Decimal('-2')}]",
        ]
    )


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


class Car(Object):
    """A simple class (no links): realm.add takes the native path."""

    id: int = field(primary_key=True)
    make: str = field(default="", indexed=True)
    miles: int = 0
    price: float = 0.0


def _contents(realm: Realm) -> dict[str, list[tuple[bytes, bytes]]]:
    txn = realm._reader()
    return {t: list(txn.scan(t)) for t in txn.tables() if t != CHANGES_TABLE}


def _cars(n: int) -> list[Car]:
    return [Car(id=i, make=f"m{i % 7}", miles=i * 3, price=i / 2) for i in range(n)]


def test_a_loop_of_add_is_one_native_call_each_and_writes_what_add_all_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with Realm(make_config("file", [Car], tmp_path / "a")) as bulk:
        with bulk.write():
            bulk.add_all(_cars(50))
        expected = _contents(bulk)
    with Realm(make_config("file", [Car], tmp_path / "b")) as realm:
        calls: list[str] = []
        for name in ("put", "put_many", "put_columns", "get", "get_many", "count"):
            method = getattr(WriteTransaction, name)

            def counted(*args: Any, _m: Any = method, _n: str = name) -> Any:
                calls.append(_n)
                return _m(*args)

            monkeypatch.setattr(WriteTransaction, name, counted)
        with realm.write():
            added = [realm.add(c, update=c.id % 2 == 0) for c in _cars(50)]
            # No storage wrapper per object (one add_new call each); the
            # transaction looks its history kind up once.
            assert calls in ([], ["get"])
            assert [c.miles for c in added] == [i * 3 for i in range(50)]  # managed
            with pytest.raises(DuplicatePrimaryKeyError):
                realm.add(Car(id=3, make="again"))
            realm.add(Car(id=3, make="m1", miles=9), update=True)
        monkeypatch.undo()
        got = _contents(realm)
        assert realm.find(Car, 3).make == "m1"  # type: ignore[union-attr]
        assert len(realm.query(Car, "make == 'm1'")) == 8
        assert len(realm.query(Car, "make == 'm3'")) == 6
    expected[table_name("Car")] = [
        (k, got[table_name("Car")][3][1] if k == encode_key(3) else v)
        for k, v in expected[table_name("Car")]
    ]
    assert got.keys() == expected.keys()
    for t in got:
        if "make" not in t:
            assert got[t] == expected[t]


def test_values_the_native_add_declines_take_the_general_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Realm(make_config("memory", [Car], tmp_path)) as realm:
        with realm.write():
            with pytest.raises(CodecError, match="byte limit"):
                realm.add(Car(id=1, make="x" * 5000))  # an index entry over the limit
            assert realm.find(Car, 1) is None  # nothing of it was written
            realm.add(Car(id=1, make="x"))
        assert [c.id for c in realm.query(Car, "make == 'x'")] == [1]


class Tag(Object):
    """A simple class that another class links to."""

    id: int = field(primary_key=True)
    name: str = ""


class Post(Object):
    id: int = field(primary_key=True)
    tag: Tag | None = None


def test_the_native_add_declines_what_only_the_general_path_does_right(tmp_path: Path) -> None:
    with Realm(make_config("file", [Car, Tag, Post], tmp_path)) as realm:
        with realm.write():
            realm.add(Post(id=1, tag=Tag(id=1, name="old")))
        with realm.write():
            realm.add(Car(id=1))  # the native path is on in this transaction
            realm.delete(realm.find(Tag, 1))  # type: ignore[arg-type]
            # The deleted key comes back: the links to the deleted object are
            # cleared first, as the general path does (not moved to the new
            # one), and a link made to the new one afterwards stays.
            new = realm.add(Tag(id=1, name="new"))
            realm.add(Post(id=2, tag=new))
            realm.add(Car(id=2))
        assert realm.find(Post, 1).tag is None  # type: ignore[union-attr]
        assert realm.find(Post, 2).tag.name == "new"  # type: ignore[union-attr]
        assert [t.name for t in realm.all(Tag)] == ["new"]
        assert [c.id for c in realm.all(Car)] == [1, 2]
        with realm.write():
            realm.add(Car(id=3))
            with pytest.raises(TypeError, match="unexpected keyword"):
                realm.add(Car(id=4), replace=True)  # type: ignore[call-arg]
            errors: list[BaseException] = []

            def other_thread() -> None:
                try:
                    realm.add(Car(id=5))
                except BaseException as exc:  # recorded for the assertion
                    errors.append(exc)

            t = threading.Thread(target=other_thread)
            t.start()
            t.join()
            assert [type(e) for e in errors] == [RealmThreadError]
            car = realm.add(Car(id=6))
            assert realm.add(car) is car  # already managed here: returned as is
        assert [c.id for c in realm.all(Car)] == [1, 2, 3, 6]


class Spot(EmbeddedObject):
    city: str = ""
    zips: list[int] = field(default_factory=list)


class Owner(Object):
    """Links, lists and an embedded object: realm.add takes the native path too."""

    id: int = field(primary_key=True)
    name: str = field(default="", indexed=True)
    car: Car | None = None
    cars: list[Car] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    spot: Spot | None = None


def _fill_owners(realm: Realm, add: Callable[[Object, bool], object]) -> None:
    """Cars, owners linking to them, upserts of existing keys (their old
    index and backlink entries go), then what only the general path
    writes: a link to an unmanaged object (added with it)."""
    with realm.write():
        cars = _cars(6)
        for c in cars:
            add(c, False)
        for i in range(6):
            spot = Spot(city=f"c{i}", zips=[i, -i, 2**40]) if i % 2 else None
            car = cars[i] if i % 3 else None
            owner = Owner(id=i, name=f"o{i % 2}", car=car, cars=cars[:i], tags=["t"] * i, spot=spot)
            add(owner, False)
        for c in _cars(6):
            c.make = "m0" if c.id % 2 else c.make  # some index entries change, some stay
            c.miles += 1
            add(c, True)
        add(Owner(id=1, name="o1", car=None, cars=cars[3:]), True)
        add(Owner(id=5, name="o0", car=cars[0], cars=[cars[1], cars[5], cars[1]]), True)
        add(Owner(id=4, name="o0", car=cars[4], cars=[cars[5], cars[5]]), True)
        add(Owner(id=4, name="o0", car=cars[4], cars=[cars[3]]), True)  # old: a link twice
        add(Owner(id=9, car=Car(id=99, make="new")), False)


def test_links_lists_embedded_objects_and_upserts_are_native_and_write_what_the_general_path_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models: list[type] = [Car, Owner, Spot]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with Realm(make_config("file", models, tmp_path / "a")) as ref:
        _fill_owners(ref, lambda o, update: ref._add(o, update=update, cascade=False))
        expected = _contents(ref)
    with Realm(make_config("file", models, tmp_path / "b")) as realm:
        slow: list[tuple[object, bool]] = []
        general = realm._add_slow

        def spy(obj: Object, update: bool = False) -> Object:
            slow.append((obj, update))
            return general(obj, update)

        monkeypatch.setattr(realm, "_add_slow", spy)
        _fill_owners(realm, realm.add)
        # The first add decides the transaction's path, then only the last
        # (a link to an unmanaged object) leaves the native one.
        assert [(type(o).__name__, o.id, u) for o, u in slow] == [  # type: ignore[attr-defined]
            ("Car", 0, False),
            ("Owner", 9, False),
        ]
        assert _contents(realm) == expected
        three = realm.find(Owner, 3)
        assert three is not None and three.spot is not None
        assert (three.spot.city, list(three.spot.zips), list(three.tags)) == (
            "c3",
            [3, -3, 2**40],
            ["t"] * 3,
        )
        assert [c.id for c in three.cars] == [0, 1, 2] and three.car is None
        four = realm.find(Owner, 4)
        assert four is not None and four.car is not None and four.spot is None
        assert (four.car.id, four.car.make, four.car.miles) == (4, "m4", 13)
        linked = realm.query(Car, "@links.Owner.car.@count > 0")
        assert sorted(c.id for c in linked) == [0, 2, 4, 99]
        in_lists = realm.query(Car, "@links.Owner.cars.@count > 0")
        assert sorted(c.id for c in in_lists) == [0, 1, 2, 3, 4, 5]
        four_cars = realm.find(Owner, 4)
        assert four_cars is not None and [c.id for c in four_cars.cars] == [3]
        five = realm.find(Owner, 5)
        assert five is not None and [c.id for c in five.cars] == [1, 5, 1]
        assert sorted(c.id for c in realm.query(Car, "make == 'm0'")) == [0, 1, 3, 5]
        version = realm._env.version
        with realm._env.read() as snap:
            changes = changelog.read(snap, version - 1, version)
        assert changes is not None
        assert changes[table_name("Owner")] == {encode_key(i) for i in (0, 1, 2, 3, 4, 5, 9)}
        assert changes[table_name("Car")] == {encode_key(i) for i in (0, 1, 2, 3, 4, 5, 99)}


# -- listeners cost what a commit changed ------------------------------------------


class _Seen:
    """A results listener's calls, and how often the notifier re-ran a query."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.changes: queue.Queue[tuple[list[int], ResultsChange]] = queue.Queue()
        self.reruns = 0
        self.lengths: list[int] = []  # len(results) - the objects listed, per call
        full = Realm._evaluate_raw

        def counted(realm: Realm, *args: Any) -> Any:
            if threading.current_thread().name.startswith("realmpy-notifier"):
                self.reruns += 1
            return full(realm, *args)

        monkeypatch.setattr(Realm, "_evaluate_raw", counted)

    def __call__(self, results: Any, change: ResultsChange) -> None:
        # The length first: the results answer it before listing their rows.
        self.lengths.append(len(results))
        ids = [c.id for c in results]
        self.lengths[-1] -= len(ids)  # 0 when it was right
        self.changes.put((ids, change))

    def next(self) -> tuple[list[int], ResultsChange]:
        return self.changes.get(timeout=60)


def _expected(realm: Realm, text: str, before: list[tuple[bytes, bytes]]) -> Any:
    after = realm._evaluate_raw("Car", query.parse(text), ())
    return after, diff_rows(before, after)


@pytest.mark.parametrize("text", ["miles < 300", "make == 'm2' OR price >= 40.0", None])
def test_a_local_query_is_patched_with_the_change_sets_of_a_full_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str | None
) -> None:
    rng = random.Random(15)
    seen = _Seen(monkeypatch)
    with Realm(make_config("file", [Car, Note], tmp_path)) as realm:
        with realm.write():
            realm.add_all(_cars(200))
        results = realm.all(Car) if text is None else realm.query(Car, text)
        q = "TRUEPREDICATE" if text is None else text
        state = realm._evaluate_raw("Car", query.parse(q), ())
        token = results.add_listener(seen, initial=False)
        for step in range(40):
            with realm.write():
                for _ in range(rng.randrange(1, 6)):
                    i = rng.randrange(260)
                    car = realm.find(Car, i)
                    what = rng.randrange(4)
                    if car is None:
                        realm.add(Car(id=i, make=f"m{i % 7}", miles=rng.randrange(600)))
                    elif what == 0:
                        realm.delete(car)
                    elif what == 1:
                        car.miles = rng.randrange(600)
                    elif what == 2:
                        car.price = rng.randrange(80) / 2
                    else:
                        realm.add(Car(id=i, make="m2", miles=step), update=True)
                if step % 5 == 0:
                    realm.add(Note(text=f"other class {step}"))
            state, expected = _expected(realm, q, state)
            if not expected.is_empty:
                ids, got = seen.next()
                assert got == expected
                assert ids == [c.id for c in results]
        token.remove()
    assert seen.reruns == 0  # every commit was patched or skipped
    assert seen.lengths and not any(seen.lengths)


def test_commits_to_other_classes_do_not_reach_a_listener(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _Seen(monkeypatch)
    with Realm(make_config("file", [Car, Note], tmp_path)) as realm:
        with realm.write():
            realm.add_all(_cars(10))
        token = realm.query(Car, "miles > 3").add_listener(seen, initial=False)
        for i in range(5):
            with realm.write():
                realm.add(Note(text=str(i)))
            with realm.write():
                pass  # an empty commit changes nothing either
        with realm.write():
            realm.find(Car, 1).miles = 100  # type: ignore[union-attr]
        ids, change = seen.next()  # the first call is this commit's
        assert change == ResultsChange(inserted=(0,))
        assert ids == list(range(1, 10))
        token.remove()
    assert seen.reruns == 0


def test_every_commit_to_a_realm_file_records_its_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also a plain storage write (another writer, the sync client): its
    record is that commit's, so the listener is patched, not re-run."""
    seen = _Seen(monkeypatch)
    with Realm(make_config("file", [Car], tmp_path)) as realm:
        with realm.write():
            realm.add_all(_cars(10))
        token = realm.query(Car, "miles > 3").add_listener(seen, initial=False)
        with Environment(str(tmp_path / "t.realm"), durability="none") as env:
            with env.write() as txn:
                txn.delete(table_name("Car"), encode_key(5))
            version = env.version
            with env.read() as snap:
                assert changelog.read(snap, version - 1, version) == {
                    table_name("Car"): {encode_key(5)}
                }
                assert changelog.read(snap, 0, version) is None  # before the records began
        ids, change = seen.next()
        assert change == ResultsChange(deleted=(3,))
        assert 5 not in ids
        token.remove()
    assert seen.reruns == 0


def test_the_native_writes_note_each_key_and_any_key_past_the_limit(tmp_path: Path) -> None:
    with Realm(make_config("file", [Car], tmp_path)) as realm:
        with realm.write():
            realm.add(Car(id=1))  # the file keeps change records from here on
    with Environment(str(tmp_path / "t.realm"), durability="none") as env:
        with env.write() as txn:
            keys = [i.to_bytes(4, "big") for i in range(CHANGED_KEYS_MAX)]
            for k in keys:
                txn.put("t", k, b"")
            txn.delete("u", b"gone")
            assert txn.changed() == {"t": set(keys), "u": {b"gone"}}
            txn.put("t", b"one more", b"")
            assert txn.changed() == {"t": None, "u": {b"gone"}}
        version = env.version
        with env.read() as snap:
            assert changelog.read(snap, version - 1, version) == {"t": None, "u": {b"gone"}}


def test_change_records_are_packed_as_msgpack_packs_them() -> None:
    """The native encoder of a commit's change record (storage.c
    pack_changes) writes the bytes the record's documented form packs to."""
    rng = random.Random(15)
    for _ in range(200):
        changed: dict[str, set[bytes] | None] = {}
        for t in range(rng.randrange(20)):
            n = rng.choice([0, 1, 15, 16, 300, CHANGED_KEYS_MAX, CHANGED_KEYS_MAX + 1])
            keys = {rng.randbytes(rng.randrange(1, 12)) for _ in range(n)}
            changed[f"t{t}" + "é" * (t % 3)] = None if rng.random() < 0.2 else keys
        changed[CHANGES_TABLE] = {b"never listed"}
        form = {
            t: None if k is None or len(k) > CHANGED_KEYS_MAX else sorted(k)
            for t, k in changed.items()
            if t != CHANGES_TABLE
        }
        assert pack_changes(changed, CHANGES_TABLE) == msgpack.packb(form, use_bin_type=True)


def test_storage_files_keep_no_change_records(tmp_path: Path) -> None:
    with Environment(str(tmp_path / "s.db"), durability="none") as env:
        with env.write() as txn:
            txn.put("t", b"k", b"v")
        with env.read() as snap:
            assert snap.tables() == ["t"]


def test_a_query_through_links_is_re_run_when_any_class_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _Seen(monkeypatch)
    with Realm(make_config("file", MODELS, tmp_path)) as realm:
        with realm.write():
            rex = realm.add(Dog(id=1, name="rex"))
        token = realm.query(Dog, "owner.name == 'ann'").add_listener(seen, initial=False)
        with realm.write():
            rex.owner = Person(name="ann")
        ids, change = seen.next()
        assert (ids, change) == ([1], ResultsChange(inserted=(0,)))
        token.remove()
    assert seen.reruns == 1
