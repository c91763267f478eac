"""Frozen vs live realm: a ``find`` by primary key plus a property read.

Each round finds a different object (a frozen realm caches what it read, so
repeating one key would measure the cache), on the realm's own thread and,
for the frozen realm, from a worker thread too; plus a full scan.  Prints
microseconds per operation.  No thresholds: a measuring tool, not a test::

    PYTHONPATH=$PWD python bench/bench_frozen.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(
    0, str(Path(__file__).resolve().parent.parent)
)  # the repository: tests.objects_models

from realmpy.config import Configuration
from realmpy.realm import Realm
from tests.objects_models import MODELS, Dog

N = 20_000
ROUNDS = 5


def find_read(realm: Realm, ids: range, frozen: bool) -> float:
    """Best-of-ROUNDS µs per find + property read; with ``frozen`` on a fresh
    ``realm.freeze()`` per round (so that nothing is cached)."""
    best = float("inf")
    for _ in range(ROUNDS):
        r = realm.freeze() if frozen else realm
        t = time.perf_counter()
        for i in ids:
            dog: Any = r.find(Dog, i)
            _ = dog.age
        best = min(best, (time.perf_counter() - t) / len(ids) * 1e6)
        if frozen:
            r.close()
    return best


def find_read_elsewhere(realm: Realm, ids: range) -> float:
    """find_read from a worker thread, one round per frozen realm in
    ``_frozen_made`` (made on the live realm's thread: only it may freeze)."""
    best = float("inf")
    for r in _frozen_made:
        t = time.perf_counter()
        for i in ids:
            dog: Any = r.find(Dog, i)
            _ = dog.age
        best = min(best, (time.perf_counter() - t) / len(ids) * 1e6)
    return best


_frozen_made: list[Realm] = []


def scan(realm: Realm) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        t = time.perf_counter()
        n = sum(1 for _ in realm.all(Dog))
        assert n == N
        best = min(best, (time.perf_counter() - t) * 1e3)
    return best


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        cfg = Configuration.local(MODELS, path=Path(d) / "b.realm", durability="none")
        with Realm(cfg) as realm:
            with realm.write():
                realm.add_all([Dog(id=i, name=f"d{i}", age=i % 50) for i in range(N)])
            ids = range(0, N, 4)
            live = find_read(realm, ids, False)
            here = find_read(realm, ids, True)
            frozen = realm.freeze()
            _frozen_made[:] = [realm.freeze() for _ in range(ROUNDS)]
            with ThreadPoolExecutor(1) as pool:
                # Another thread reads the frozen realms (frozen here).
                there = pool.submit(find_read_elsewhere, realm, ids).result()
            print(f"find + read, live realm:            {live:6.2f} µs")
            print(f"find + read, frozen, same thread:   {here:6.2f} µs")
            print(f"find + read, frozen, other thread:  {there:6.2f} µs")
            print(f"scan {N} objects, live:            {scan(realm):6.2f} ms")
            print(f"scan {N} objects, frozen:          {scan(frozen):6.2f} ms")
            frozen.close()
            for r in _frozen_made:
                r.close()


if __name__ == "__main__":
    main()
