"""The object layer against a plain-Python model.

A hypothesis state machine adds, upserts, deletes, changes and links
``Item`` objects in a realm and in a dict; after every step queries must give
what the query module computes over the dict, and the change sets a results
listener receives must equal the diff of the model's query results.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from objects_models import Item

from realmpy import query
from realmpy.config import Configuration
from realmpy.errors import DuplicatePrimaryKeyError
from realmpy.notifier import ResultsChange, diff_rows
from realmpy.realm import Realm
from realmpy.results import Results

ids = st.integers(0, 12)
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
]
LISTENED = "n > 2 SORT(id)"


class ObjectMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="realmpy-sm-")
        config = Configuration.local([Item], path=Path(self.dir) / "m.realm", durability="none")
        self.realm = Realm(config)
        self.model: dict[int, dict[str, Any]] = {}
        self.changes: queue.Queue[ResultsChange] = queue.Queue()
        self.last_rows = self.model_rows()
        self.token = self.realm.query(Item, LISTENED).add_listener(self.on_change)

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
        got = {o.id: (o.label, o.n) for o in self.realm.all(Item)}
        assert got == {i: (r["label"], r["n"]) for i, r in self.model.items()}

    def teardown(self) -> None:
        try:
            self.token.remove()
            self.realm.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


TestObjectMachine = ObjectMachine.TestCase
