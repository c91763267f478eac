"""``realm.write(timeout=...)`` and ``realm.write_async``: bounded and non-blocking waits for the write lock.

The lock is held by another thread of this process (the writer mutex is the
same process-shared robust mutex another process would hold).  No test
depends on timing: a holder releases the lock only when the waiting side
proves it was still running, so a blocking implementation deadlocks into
its timeout and fails.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from realmpy.config import Configuration
from realmpy.errors import InvalidArgumentError, WriteLockTimeoutError
from realmpy.realm import Realm
from tests.objects_models import MODELS, Dog

T = 30.0


class Holder:
    """A thread that holds the write lock of ``path`` until told to commit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.holding = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.holding.wait(T)

    def _run(self) -> None:
        realm = Realm(Configuration.local(MODELS, path=str(self.path), durability="none"))
        with realm.write():
            realm.add(Dog(id=1000, name="holder"))
            self.holding.set()
            self.release.wait(T)
        realm.close()

    def finish(self) -> None:
        self.release.set()
        self.thread.join(T)


@pytest.fixture
def realm(tmp_path: Path) -> Iterator[Realm]:
    r = Realm(Configuration.local(MODELS, path=str(tmp_path / "w.realm"), durability="none"))
    yield r
    r.close()


def test_write_timeout_while_another_writer_holds_the_lock(realm: Realm) -> None:
    holder = Holder(Path(realm.path))
    try:
        with pytest.raises(WriteLockTimeoutError, match="write lock"):
            realm.write(timeout=0.05)
        with pytest.raises(WriteLockTimeoutError):
            realm.write(timeout=0)  # only if free now
        assert not realm.is_in_transaction  # nothing was begun
    finally:
        holder.finish()
    with realm.write(timeout=T):
        realm.add(Dog(id=1, name="after"))
    assert realm.find(Dog, 1) is not None and realm.find(Dog, 1000) is not None


def test_write_timeout_rejects_bad_values(realm: Realm) -> None:
    with pytest.raises(InvalidArgumentError):
        realm.write(timeout=-1)
    with pytest.raises(TypeError):
        realm.write(timeout="1")  # type: ignore[arg-type]
    with realm.write(timeout=float("inf")):
        realm.add(Dog(id=2, name="inf"))


def test_write_async_waits_without_blocking_the_loop(realm: Realm) -> None:
    holder = Holder(Path(realm.path))

    async def main() -> int:
        task = asyncio.ensure_future(
            realm.write_async(lambda: realm.add(Dog(id=3, name="async")).id, timeout=T)
        )
        await asyncio.sleep(0)  # the write is waiting now; the loop still runs this coroutine
        assert not task.done()
        holder.release.set()  # only a loop that was not blocked gets here
        return await task

    try:
        assert asyncio.run(main()) == 3
    finally:
        holder.finish()
    assert realm.find(Dog, 3) is not None


def test_write_async_times_out_and_rolls_back_on_error(realm: Realm) -> None:
    holder = Holder(Path(realm.path))
    try:
        with pytest.raises(WriteLockTimeoutError, match="write_async"):
            asyncio.run(realm.write_async(lambda: None, timeout=0.05))
    finally:
        holder.finish()

    def boom() -> None:
        realm.add(Dog(id=4, name="rolled back"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(realm.write_async(boom))
    assert realm.find(Dog, 4) is None and not realm.is_in_transaction
