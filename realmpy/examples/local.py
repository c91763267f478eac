"""A complete local example: models, a write, a query, a listener, and a
second process whose commit this one sees.

Run it with ``python -m realmpy.examples.local [--path FILE]``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import threading
from pathlib import Path

from realmpy import Configuration, Object, ObjectId, Realm, Results, ResultsChange, field


class Person(Object):
    id: ObjectId = field(primary_key=True, default_factory=ObjectId)
    name: str = field(indexed=True)
    age: int = 0
    dogs: list[Dog] = field(default_factory=list)  # to-many link


class Dog(Object):
    id: int = field(primary_key=True)
    name: str
    owner: Person | None = None  # to-one link


def config(path: str) -> Configuration:
    return Configuration.local([Person, Dog], path=path)


def other_process(path: str) -> None:
    """Another process opens the same file and commits."""
    with Realm(config(path)) as realm, realm.write():
        realm.add(Person(name="Bo", age=41))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", help="realm file (default: a temporary one)")
    args = ap.parse_args(argv)
    path = args.path or str(Path(tempfile.mkdtemp(prefix="realmpy-")) / "people.realm")

    with Realm(config(path)) as realm:
        # Write: commits on a clean exit, rolls back on an exception.
        with realm.write():
            ann = realm.add(Person(name="Ann", age=30))
            ann.dogs.append(Dog(id=1, name="Rex", owner=ann))  # added through the link

        # Query: live results, re-evaluated when the file changes.
        adults = realm.query(Person, "age >= $0 SORT(name)", 18)
        print("adults:", [p.name for p in adults])
        rex = realm.find(Dog, 1)
        assert rex is not None and rex.owner is not None
        print("Rex belongs to", rex.owner.name)

        # Listen: without an asyncio loop the callback runs on the notifier
        # thread, with frozen results at the new version; the first call
        # reports the initial results.
        changed = threading.Event()

        def on_change(results: Results[Person], changes: ResultsChange) -> None:
            what = "initial results" if changes.is_initial else f"inserted at {changes.inserted}"
            print(f"listener: {what} ->", [p.name for p in results])
            if not changes.is_initial:
                changed.set()

        token = adults.add_listener(on_change)

        # A second process commits to the same file...
        proc = mp.get_context("spawn").Process(target=other_process, args=(path,))
        proc.start()
        proc.join()
        if not changed.wait(10):
            raise SystemExit("no notification within 10 s")
        # ...and this realm sees it on its next read: no refresh() needed.
        print("adults now:", [p.name for p in adults])
        token.remove()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
