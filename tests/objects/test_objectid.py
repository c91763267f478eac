"""ObjectId: BSON layout, ordering, parsing and errors."""

from __future__ import annotations

import datetime as dt
import os
import pickle

import pytest

from realmpy.objectid import ObjectId


def test_new_ids_are_unique_and_increasing_within_a_second() -> None:
    ids = [ObjectId() for _ in range(1000)]
    assert len(set(ids)) == 1000
    same_second = [i for i in ids if i.binary[:4] == ids[0].binary[:4]]
    counters = [int.from_bytes(i.binary[9:], "big") for i in same_second]
    diffs = {(b - a) % (1 << 24) for a, b in zip(counters, counters[1:])}
    assert diffs <= {1}


def test_round_trips_and_layout() -> None:
    oid = ObjectId()
    assert ObjectId(str(oid)) == oid
    assert ObjectId(oid.binary) == oid
    assert ObjectId(oid) == oid
    assert bytes(oid) == oid.binary and len(oid.binary) == 12
    assert repr(oid) == f"ObjectId('{oid}')"
    assert pickle.loads(pickle.dumps(oid)) == oid
    now = dt.datetime.now(dt.timezone.utc)
    assert abs((oid.generation_time - now).total_seconds()) < 5
    assert hash(ObjectId(str(oid))) == hash(oid)


def test_ordering_is_byte_order() -> None:
    a = ObjectId("000000000000000000000001")
    b = ObjectId("000000000000000000000002")
    assert a < b <= b and b > a >= a and a != b
    when = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    assert ObjectId.from_datetime(when).generation_time == when


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("xyz", ValueError),
        ("g" * 24, ValueError),
        (b"short", ValueError),
        (3, TypeError),
    ],
)
def test_bad_input(value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        ObjectId(value)  # type: ignore[arg-type]
    assert not ObjectId.is_valid(value)


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ObjectId.from_datetime(dt.datetime(2024, 1, 1))


def test_immutable() -> None:
    with pytest.raises(AttributeError):
        ObjectId()._bytes = b""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_child_after_fork_draws_new_randomness() -> None:
    parent = ObjectId()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.write(w, ObjectId().binary)
        os._exit(0)
    os.close(w)
    child = os.read(r, 12)
    os.close(r)
    os.waitpid(pid, 0)
    assert child[4:9] != parent.binary[4:9]
