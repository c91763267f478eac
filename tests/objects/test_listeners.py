"""Listeners: the initial call, and listeners on list, set and dict properties."""

from __future__ import annotations

import asyncio
import queue
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realmpy.config import Configuration
from realmpy.errors import FrozenRealmError, InvalidObjectError
from realmpy.managed import managed_collection
from realmpy.notifier import DictChange, ListChange, ObjectChange, ResultsChange, SetChange
from realmpy.realm import Realm
from realmpy.schema import EmbeddedObject, Object, field
from tests.objects_models import MODELS, Address, Dog, Person

TESTS = Path(__file__).parent.parent
WAIT = 30  # seconds before a missing notification fails the test


class Bag(Object):
    id: int = field(primary_key=True)
    nums: list[int] = field(default_factory=list)


class Tagged(EmbeddedObject):
    words: list[str] = field(default_factory=list)


class Holder(Object):
    id: int = field(primary_key=True)
    inner: Tagged | None = None


LOCAL_MODELS = [*MODELS, Bag, Tagged, Holder]


def config(tmp_path: Path) -> Configuration:
    return Configuration.local(LOCAL_MODELS, path=tmp_path / "l.realm", durability="none")


class Calls:
    """Callback arguments, as a queue the test thread waits on."""

    def __init__(self, read: Any = None) -> None:
        self.q: queue.Queue[tuple[Any, ...]] = queue.Queue()
        # what to read from the first argument during the call (frozen
        # arguments are only valid until the callback returns)
        self.read = read

    def __call__(self, *args: Any) -> None:
        if self.read is not None:
            args = (self.read(args[0]), *args[1:])
        self.q.put((*args, threading.get_ident()))

    def next(self) -> tuple[Any, ...]:
        return self.q.get(timeout=WAIT)

    def none_pending(self, realm: Realm) -> bool:
        """True if nothing is queued once the notifier handled every commit."""
        asyncio.run(_settle(realm))
        return self.q.empty()


async def _settle(realm: Realm) -> None:
    # refresh_async completes once the notifier processed the newest version
    notifier = realm._shared.notifier
    assert notifier is not None
    await notifier.wait_processed(realm._env.version, asyncio.get_running_loop())


# -- the initial call ------------------------------------------------------------


def test_initial_call_on_the_notifier_thread(tmp_path: Path) -> None:
    with Realm(config(tmp_path)) as realm:
        with realm.write():
            realm.add(Dog(id=1, name="Rex", age=3))
        calls = Calls()
        realm.query(Dog, "age > 1").add_listener(calls)
        results, change, thread = calls.next()
        assert isinstance(change, ResultsChange) and change.is_initial and change.is_empty
        assert thread != threading.get_ident()
        # frozen results were valid during the callback; what it saw:
        assert results.is_frozen
        with realm.write():
            realm.add(Dog(id=2, name="Fido", age=5))
        _results, change, _ = calls.next()
        assert change.inserted == (1,) and not change.is_initial


def test_initial_call_sees_the_results_it_reports(tmp_path: Path) -> None:
    with Realm(config(tmp_path)) as realm:
        with realm.write():
            realm.add(Dog(id=1, name="Rex", age=3))
        seen: queue.Queue[list[str]] = queue.Queue()
        realm.all(Dog).add_listener(lambda r, c: seen.put([d.name for d in r]))
        assert seen.get(timeout=WAIT) == ["Rex"]


def test_initial_object_call_and_opt_out(tmp_path: Path) -> None:
    with Realm(config(tmp_path)) as realm:
        with realm.write():
            rex = realm.add(Dog(id=1, name="Rex"))
        calls, quiet = Calls(lambda c: (c, c.object.name)), Calls()
        rex.add_listener(calls)
        rex.add_listener(quiet, initial=False)
        ((change, name), _) = calls.next()
        assert isinstance(change, ObjectChange) and change.is_initial and name == "Rex"
        assert change.properties == () and not change.is_deleted
        assert quiet.none_pending(realm)
        with realm.write():
            rex.age = 4
        ((change, _name), _) = calls.next()
        assert change.properties == ("age",) and not change.is_initial
        (change, _) = quiet.next()
        assert change.properties == ("age",) and not change.is_initial


def test_object_deleted_before_its_initial_call_reports_the_deletion(tmp_path: Path) -> None:
    with Realm(config(tmp_path)) as realm:
        with realm.write():
            rex = realm.add(Dog(id=1, name="Rex"))
        calls = Calls()
        rex.add_listener(calls)
        with realm.write():
            realm.delete(rex)
        first = calls.next()[0]
        # Either the notifier ran before the delete (the initial call, then
        # the deletion) or after it (the deletion only): never an initial
        # call without its object.
        if first.is_initial:
            assert first.object is not None  # (frozen: valid during the call only)
            first = calls.next()[0]
        assert first.is_deleted and first.object is None and not first.is_initial
        assert calls.none_pending(realm)


def test_initial_calls_on_the_asyncio_loop(tmp_path: Path) -> None:
    async def main() -> None:
        with Realm(config(tmp_path)) as realm:
            with realm.write():
                ann = realm.add(Person(name="Ann", tags={"a"}))
            me = threading.get_ident()
            got: list[tuple[str, Any, int]] = []
            done = asyncio.Event()

            def note(kind: str, *args: Any) -> None:
                got.append((kind, args, threading.get_ident()))
                if len(got) == 3:
                    done.set()

            realm.all(Person).add_listener(lambda r, c: note("results", len(r), c, r.is_frozen))
            ann.add_listener(lambda c: note("object", c))
            managed_collection(ann.tags).add_listener(lambda s, c: note("set", set(s), c))
            # nothing is called before the loop runs: like later calls
            assert got == []
            await asyncio.wait_for(done.wait(), WAIT)
            assert {t for _, _, t in got} == {me}
            by_kind = {k: a for k, a, _ in got}
            n, change, frozen = by_kind["results"]
            assert n == 1 and change.is_initial and not frozen
            assert by_kind["object"][0].is_initial and by_kind["object"][0].object == ann
            tags, change = by_kind["set"]
            assert tags == {"a"} and isinstance(change, SetChange) and change.is_initial

    asyncio.run(main())


def test_initial_call_comes_before_changes_on_the_loop(tmp_path: Path) -> None:
    async def main() -> None:
        with Realm(config(tmp_path)) as realm:
            changes: list[ResultsChange] = []
            two = asyncio.Event()

            def on_change(_r: Any, c: ResultsChange) -> None:
                changes.append(c)
                if len(changes) == 2:
                    two.set()

            realm.all(Dog).add_listener(on_change)
            with realm.write():  # committed before the loop ran the initial call
                realm.add(Dog(id=1, name="Rex"))
            await asyncio.wait_for(two.wait(), WAIT)
            assert changes[0].is_initial and changes[1].inserted == (0,)

    asyncio.run(main())


# -- collections -------------------------------------------------------------------


def test_list_of_links_listener(tmp_path: Path) -> None:
    with Realm(config(tmp_path)) as realm:
        with realm.write():
            ann = realm.add(Person(name="Ann"))
            ann.dogs.append(Dog(id=1, name="Rex"))
        calls = Calls()
        token = managed_collection(ann.dogs).add_listener(calls)
        view, change, _ = calls.next()
        assert isinstance(change, ListChange) and change.is_initial
        with realm.write():
            ann.dogs.append(Dog(id=2, name="Fido"))
        view, change, _ = calls.next()
        assert change.inserted == (1,) and not change.is_deleted
        with realm.write():
            fido = realm.find(Dog, 2)
            assert fido is not None
            fido.age = 7  # the linked object changed: a modification
        view, change, _ = calls.next()
        assert change.modified == (1,) and change.new_modified == (1,) and not change.inserted
        with realm.write():
            ann.name = "Anne"  # another property of the owner: no call
        with realm.write():
            del ann.dogs[0]
        view, change, _ = calls.next()
        assert change.deleted == (0,) and not change.inserted
        with realm.write():
            realm.delete(realm.find(Dog, 2))  # type: ignore[arg-type]
        view, change, _ = calls.next()  # the link left the list with it
        assert change.deleted == (0,) and change.is_cleared
        with realm.write():
            realm.delete(ann)
        view, change, _ = calls.next()
        assert view is None and change.is_deleted
        token.remove()
        assert calls.none_pending(realm)


def test_list_listener_gets_frozen_views_off_thread(tmp_path: Path) -> None:
    with Realm(config(tmp_path)) as realm:
        with realm.write():
            bag = realm.add(Bag(id=1, nums=[1, 2]))
        seen: queue.Queue[tuple[list[int], bool, ListChange]] = queue.Queue()
        managed_collection(bag.nums).add_listener(
            lambda v, c: seen.put((list(v), v._store.is_frozen, c)), initial=False
        )
        with realm.write():
            bag.nums.insert(0, 9)
        nums, frozen, change = seen.get(timeout=WAIT)
        assert nums == [9, 1, 2] and frozen and change.inserted == (0,)


def test_list_of_values_with_repeats(tmp_path: Path) -> None:
    with Realm(config(tmp_path)) as realm:
        with realm.write():
            bag = realm.add(Bag(id=1, nums=[1, 1, 2]))
        calls = Calls()
        managed_collection(bag.nums).add_listener(calls, initial=False)
        with realm.write():
            bag.nums.remove(1)
        _view, change, _ = calls.next()
        assert len(change.deleted) == 1 and not change.inserted
        with realm.write():
            bag.nums[0] = 5  # a value replaced: deleted and inserted at 0
        _view, change, _ = calls.next()
        assert change.deleted == (0,) and change.inserted == (0,)
        with realm.write():
            bag.nums.append(5)  # a repeat of an existing value
        _view, change, _ = calls.next()
        assert change.inserted == (2,) and not change.deleted


def test_set_and_dict_listeners(tmp_path: Path) -> None:
    with Realm(config(tmp_path)) as realm:
        with realm.write():
            ann = realm.add(Person(name="Ann", tags={"a", "b"}, scores={"x": 1.0, "y": 2.0}))
        sets, dicts = (
            Calls(lambda v: None if v is None else set(v)),
            Calls(lambda v: None if v is None else dict(v)),
        )
        managed_collection(ann.tags).add_listener(sets, initial=False)
        managed_collection(ann.scores).add_listener(dicts, initial=False)
        with realm.write():
            ann.tags.discard("a")
            ann.tags.add("c")
            ann.tags.add("d")
            ann.scores["x"] = 5.0
            del ann.scores["y"]
            ann.scores["z"] = 0.5
        view, change, _ = sets.next()
        assert change == SetChange(inserted=2, deleted=1)
        assert view == {"b", "c", "d"}
        view, change, _ = dicts.next()
        assert change == DictChange(inserted=("z",), deleted=("y",), modified=("x",))
        assert view == {"x": 5.0, "z": 0.5}
        with realm.write():
            ann.tags.clear()
            ann.scores.clear()
        assert sets.next()[1].is_cleared and dicts.next()[1].is_cleared
        with realm.write():
            realm.delete(ann)
        for calls in (sets, dicts):
            view, change, _ = calls.next()
            assert view is None and change.is_deleted


def test_collection_listener_errors(tmp_path: Path) -> None:
    with Realm(config(tmp_path)) as realm:
        with realm.write():
            ann = realm.add(Person(name="Ann", address=Address(street="Main")))
        frozen = realm.freeze()
        try:
            fann = frozen.find(Person, ann.id)
            assert fann is not None
            with pytest.raises(FrozenRealmError, match="never changes"):
                managed_collection(fann.dogs).add_listener(lambda v, c: None)
            with pytest.raises(FrozenRealmError, match="never changes"):
                fann.add_listener(lambda c: None)
        finally:
            frozen.close()
        with realm.write():
            holder = realm.add(Holder(id=1, inner=Tagged(words=["a"])))
        assert holder.inner is not None
        with pytest.raises(TypeError, match="not a managed collection"):
            managed_collection([1, 2])
        with pytest.raises(InvalidObjectError, match="embedded object"):
            managed_collection(holder.inner.words).add_listener(lambda v, c: None)


CHILD = """
import sys
sys.path.insert(0, {tests!r})
from objects_models import MODELS, Dog, Person
from realmpy.config import Configuration
from realmpy.realm import Realm
realm = Realm(Configuration.local(MODELS, path={path!r}, durability="none"))
for line in sys.stdin:
    n = int(line)
    ann = realm.query(Person, "name == 'Ann'")[0]
    with realm.write():
        ann.dogs.append(Dog(id=n, name="dog%d" % n))
    print(n, flush=True)
realm.close()
"""


def test_list_listener_hears_another_process(tmp_path: Path) -> None:
    cfg = Configuration.local(MODELS, path=tmp_path / "p.realm", durability="none")
    with Realm(cfg) as realm:
        with realm.write():
            ann = realm.add(Person(name="Ann"))
        calls = Calls()
        managed_collection(ann.dogs).add_listener(calls, initial=False)
        code = textwrap.dedent(CHILD).format(tests=str(TESTS), path=cfg.path)
        child = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert child.stdin is not None and child.stdout is not None
        try:
            for n in (1, 2):
                child.stdin.write(f"{n}\n")
                child.stdin.flush()
                assert child.stdout.readline().strip() == str(n)
                _view, change, _ = calls.next()
                assert change.inserted == (n - 1,)
        finally:
            child.stdin.close()
            assert child.wait(WAIT) == 0


# -- a model: replaying each list change set gives the new list ----------------------

list_ops = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), st.integers(0, 8), st.integers(0, 3)),
        st.tuples(st.just("delete"), st.integers(0, 8), st.just(0)),
        st.tuples(st.just("set"), st.integers(0, 8), st.integers(0, 3)),
        st.tuples(st.just("move"), st.integers(0, 8), st.integers(0, 8)),
    ),
    min_size=1,
    max_size=6,
)


def _apply(nums: list[int], op: tuple[str, int, int]) -> None:
    kind, i, v = op
    if kind == "insert":
        nums.insert(i, v)
    elif nums:
        i %= len(nums)
        if kind == "delete":
            del nums[i]
        elif kind == "set":
            nums[i] = v
        else:
            nums.insert(v % len(nums), nums.pop(i))


def _check_change(old: list[int], new: list[int], change: ListChange) -> None:
    """``change`` explains ``old`` -> ``new``: sizes add up, the survivors are
    the old list minus ``deleted``, the new list minus ``inserted``, and the
    survivors that did not move keep their order."""
    deleted, inserted = set(change.deleted), set(change.inserted)
    assert len(old) - len(deleted) + len(inserted) == len(new)
    survivors_old = [i for i in range(len(old)) if i not in deleted]
    survivors_new = [j for j in range(len(new)) if j not in inserted]
    assert sorted(old[i] for i in survivors_old) == sorted(new[j] for j in survivors_new)
    moved_old = {a for a, _ in change.moved}
    moved_new = {b for _, b in change.moved}
    stay_old = [old[i] for i in survivors_old if i not in moved_old]
    stay_new = [new[j] for j in survivors_new if j not in moved_new]
    assert stay_old == stay_new


@given(st.lists(st.integers(0, 3), max_size=5), st.lists(list_ops, min_size=1, max_size=4))
def test_list_change_sets_match_a_model(initial: list[int], commits: list[Any]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d, Realm(config(Path(d))) as realm:
        with realm.write():
            bag = realm.add(Bag(id=1, nums=initial))
        calls = Calls()
        managed_collection(bag.nums).add_listener(calls)
        _view, change, _ = calls.next()
        assert change.is_initial
        model = list(initial)
        for ops in commits:
            before = list(model)
            for op in ops:
                _apply(model, op)
            with realm.write():
                bag.nums = model
            if before == model:
                continue
            _view, change, _ = calls.next()
            # (the frozen view of the call is gone: check against the model)
            _check_change(before, model, change)
        assert calls.none_pending(realm)


class Box(Object):
    id: int = field(primary_key=True)
    words: set[str] = field(default_factory=set)
    marks: dict[str, int] = field(default_factory=dict)


set_states = st.lists(st.sets(st.sampled_from("abcde"), max_size=4), min_size=1, max_size=4)
dict_states = st.lists(
    st.dictionaries(st.sampled_from("wxyz"), st.integers(0, 2), max_size=3), min_size=1, max_size=4
)


@given(set_states, dict_states)
def test_set_and_dict_change_sets_match_a_model(
    sets: list[set[str]], dicts: list[dict[str, int]]
) -> None:
    import tempfile

    cfg = [*LOCAL_MODELS, Box]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "b.realm"
        with Realm(Configuration.local(cfg, path=path, durability="none")) as realm:
            with realm.write():
                box = realm.add(Box(id=1))
            set_calls, dict_calls = Calls(), Calls()
            managed_collection(box.words).add_listener(set_calls, initial=False)
            managed_collection(box.marks).add_listener(dict_calls, initial=False)
            old_s: set[str] = set()
            old_d: dict[str, int] = {}
            for new_s, new_d in zip(sets, dicts):
                with realm.write():
                    box.words = new_s
                    box.marks = new_d
                if new_s != old_s:
                    change = set_calls.next()[1]
                    assert change == SetChange(
                        inserted=len(new_s - old_s),
                        deleted=len(old_s - new_s),
                        is_cleared=bool(old_s) and not new_s,
                    )
                if new_d != old_d:
                    change = dict_calls.next()[1]
                    assert change == DictChange(
                        inserted=tuple(sorted(new_d.keys() - old_d.keys())),
                        deleted=tuple(sorted(old_d.keys() - new_d.keys())),
                        modified=tuple(
                            sorted(k for k in new_d if k in old_d and old_d[k] != new_d[k])
                        ),
                        is_cleared=bool(old_d) and not new_d,
                    )
                old_s, old_d = new_s, new_d
            assert set_calls.none_pending(realm) and dict_calls.none_pending(realm)
