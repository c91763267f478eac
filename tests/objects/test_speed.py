"""The everyday fast paths (issue 15) give the same answers as the general ones.

Speed itself is measured in bench/bench_objects.py, never asserted here; these
tests pin down that a fast path is taken (counted engine or Python calls) and
that it agrees with the slow path it replaces.
"""

from __future__ import annotations

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
