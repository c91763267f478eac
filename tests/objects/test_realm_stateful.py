"""The object layer against a plain-Python model.

A hypothesis state machine adds, upserts, deletes, changes and links
``Item`` objects in a realm and in a dict; after every step queries must give
what the query module computes over the dict, and the change sets a results
listener receives must equal the diff of the model's query results.

Deleting an item clears the links to it in the same write, as Realm does:
to-one links (``Item.parent``, ``Bag.best``) become ``None`` and the item
leaves every list of links (``Bag.items``), so re-adding an object with the
same primary key never brings an old link back.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from realmpy import query
from realmpy.config import Configuration
from realmpy.errors import DuplicatePrimaryKeyError
from realmpy.notifier import ResultsChange, diff_rows
from realmpy.realm import Realm
from realmpy.results import Results
from realmpy.schema import Object, field
from tests.objects_models import Item


class Bag(Object):
    id: int = field(primary_key=True)
    items: list[Item] = field(default_factory=list)
    best: Item | None = None


ids = st.integers(0, 12)
bag_ids = st.integers(0, 3)
labels = st.sampled_from(["", "a", "ab", "B", "ba"])
numbers = st.integers(-3, 10)
WAIT = 30

QUERIES = [
    ("n > $0", (numbers,)),
    ("label == $0", (labels,)),
    ("label BEGINSWITH[c] $0 OR n == $1", (labels, numbers)),
    ("id BETWEEN {$0, $1}", (ids, ids)),
    ("id IN {$0, $1} AND NOT n < $2", (ids, ids, numbers)),
    ("parent.n >= $0", (numbers,)),
    ("parent == null", ()),
    ("parent.label == $0 AND label != $0", (labels,)),
    ("label < $0", (labels,)),
    ("n >= $0 AND n < $1", (numbers, numbers)),
    ("label IN {$0, $1}", (labels, labels)),
    ("parent.parent == null AND n != $0", (numbers,)),
]
LISTENED = "n > 2 SORT(id)"


class ObjectMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="realmpy-sm-")
        config = Configuration.local(
            [Item, Bag], path=Path(self.dir) / "m.realm", durability="none"
        )
        self.realm = Realm(config)
        self.model: dict[int, dict[str, Any]] = {}
        self.bags: dict[int, dict[str, Any]] = {}
        self.changes: queue.Queue[ResultsChange] = queue.Queue()
        self.last_rows = self.model_rows()
        self.token = self.realm.query(Item, LISTENED).add_listener(self.on_change, initial=False)

    def on_change(self, results: Results[Item], change: ResultsChange) -> None:
        self.changes.put(change)

    # -- model helpers ---------------------------------------------------------

    def view(self, i: int, depth: int = 0) -> dict[str, Any] | None:
        rec = self.model.get(i)
        if rec is None:
            return None
        parent = rec["parent"]
        return {
            "id": i,
            "label": rec["label"],
            "n": rec["n"],
            "parent": None if parent is None or depth > 3 else self.view(parent, depth + 1),
        }

    def model_query(self, text: str, args: tuple[Any, ...]) -> list[int]:
        q = query.parse(text)
        return sorted(i for i in self.model if q.matches(self.view(i), args))

    def model_rows(self) -> list[tuple[bytes, bytes]]:
        ids_ = self.model_query(LISTENED.replace(" SORT(id)", ""), ())
        return [(bytes([i]), repr(sorted(self.model[i].items())).encode()) for i in ids_]

    def committed(self) -> None:
        """Check the listener saw exactly the model's change."""
        rows = self.model_rows()
        expected = diff_rows(self.last_rows, rows)
        self.last_rows = rows
        if not expected.is_empty:
            got = self.changes.get(timeout=WAIT)
            assert got == expected, (got, expected)

    # -- rules ------------------------------------------------------------------

    @rule(i=ids, label=labels, n=numbers)
    def add(self, i: int, label: str, n: int) -> None:
        with self.realm.write():
            if i in self.model:
                try:
                    self.realm.add(Item(id=i, label=label, n=n))
                except DuplicatePrimaryKeyError:
                    pass
                else:
                    raise AssertionError("duplicate primary key accepted")
            else:
                self.realm.add(Item(id=i, label=label, n=n))
                self.model[i] = {"label": label, "n": n, "parent": None}
        self.committed()

    @rule(i=ids, label=labels, n=numbers)
    def upsert(self, i: int, label: str, n: int) -> None:
        with self.realm.write():
            self.realm.add(Item(id=i, label=label, n=n), update=True)
        self.model[i] = {"label": label, "n": n, "parent": None}
        self.committed()

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        i = data.draw(st.sampled_from(sorted(self.model)))
        with self.realm.write():
            obj = self.realm.find(Item, i)
            assert obj is not None
            self.realm.delete(obj)
        del self.model[i]
        for rec in self.model.values():  # links to it are cleared in the same write
            if rec["parent"] == i:
                rec["parent"] = None
        for bag in self.bags.values():
            bag["items"] = [x for x in bag["items"] if x != i]
            if bag["best"] == i:
                bag["best"] = None
        self.committed()

    @precondition(lambda self: self.model)
    @rule(b=bag_ids, data=st.data())
    def fill_bag(self, b: int, data: st.DataObject) -> None:
        present = sorted(self.model)
        items = data.draw(st.lists(st.sampled_from(present), max_size=4))
        best = data.draw(st.none() | st.sampled_from(present))
        with self.realm.write():
            found = [o for o in (self.realm.find(Item, x) for x in items) if o is not None]
            best_obj = None if best is None else self.realm.find(Item, best)
            self.realm.add(Bag(id=b, items=found, best=best_obj), update=True)
        self.bags[b] = {"items": items, "best": best}

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def delete_many(self, data: st.DataObject) -> None:
        n = data.draw(st.integers(-3, 10))
        with self.realm.write():
            self.realm.delete_many(self.realm.query(Item, "n <= $0", n))
        gone = {i for i, r in self.model.items() if r["n"] <= n}
        for i in gone:
            del self.model[i]
        for rec in self.model.values():
            if rec["parent"] in gone:
                rec["parent"] = None
        for bag in self.bags.values():
            bag["items"] = [x for x in bag["items"] if x not in gone]
            if bag["best"] in gone:
                bag["best"] = None
        self.committed()

    @precondition(lambda self: self.model)
    @rule(data=st.data(), n=numbers)
    def change(self, data: st.DataObject, n: int) -> None:
        i = data.draw(st.sampled_from(sorted(self.model)))
        with self.realm.write():
            obj = self.realm.find(Item, i)
            assert obj is not None
            obj.n = n
        self.model[i]["n"] = n
        self.committed()

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def link(self, data: st.DataObject) -> None:
        i = data.draw(st.sampled_from(sorted(self.model)))
        j = data.draw(st.none() | st.sampled_from(sorted(self.model)))
        with self.realm.write():
            obj = self.realm.find(Item, i)
            assert obj is not None
            obj.parent = None if j is None else self.realm.find(Item, j)
        self.model[i]["parent"] = j
        self.committed()

    @rule(data=st.data())
    def rollback(self, data: st.DataObject) -> None:
        i = data.draw(ids)
        tx = self.realm.begin_write()
        self.realm.add(Item(id=i, label="tmp"), update=True)
        tx.rollback()

    @rule(data=st.data(), which=st.integers(0, len(QUERIES) - 1))
    def run_query(self, data: st.DataObject, which: int) -> None:
        text, arg_strategies = QUERIES[which]
        args = tuple(data.draw(s) for s in arg_strategies)
        got = sorted(o.id for o in self.realm.query(Item, text, *args))
        assert got == self.model_query(text, args), (text, args)

    @invariant()
    def same_objects(self) -> None:
        got = {
            o.id: (o.label, o.n, None if o.parent is None else o.parent.id)
            for o in self.realm.all(Item)
        }
        assert got == {i: (r["label"], r["n"], r["parent"]) for i, r in self.model.items()}

    @invariant()
    def same_bags(self) -> None:
        got = {}
        for b in self.realm.all(Bag):
            # The stored list itself, not just what reads skip: no dangling keys.
            stored = b._rp_store.raw_get(b, "items")  # type: ignore[union-attr]
            assert len(stored) == len(b.items)
            got[b.id] = ([x.id for x in b.items], None if b.best is None else b.best.id)
        assert got == {k: (v["items"], v["best"]) for k, v in self.bags.items()}

    def teardown(self) -> None:
        try:
            self.token.remove()
            self.realm.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


TestObjectMachine = ObjectMachine.TestCase
