"""Group commit: concurrent callers' work done in batches, one batch at a time.

Why: integrating an upload must hold the store-wide version lock from
allocating its server versions until its commit is visible (so versions
become visible in order, see docs/server.md).  One upload per lock
acquisition made the lock's hold time — a dozen round trips and a commit —
the server's throughput limit, whatever the number of processes.  Here one
committer thread takes every waiting item (up to ``max_batch``), runs them
through one call (one lock acquisition, one transaction, one commit) and
hands each caller its own result or exception.  Items arriving meanwhile
wait for the next batch, which then holds everyone who queued during this
one: the busier the server, the larger the batches.

Why a committer thread rather than a caller leading the batch: an upload
handler on the event loop submits with ``submit_async`` and awaits a future,
so an upload costs no worker-thread hop of its own (two GIL hand-offs and a
thread wake-up each, ~20% of the server's CPU per small upload when every
upload went through ``run_in_threadpool`` and a condition variable); the
committer makes one hop per batch and resolves the batch's futures with one
callback per event loop.  Blocking callers (``submit``) wait on a condition.
The thread exits after ``idle_seconds`` without work and is started again
by the next item.

A batch is also bounded by the items' total ``weight`` (an upload's ops):
the work of one batch is held in memory until its commit, so many large
items are not taken together, and an item heavier than ``max_weight`` on its
own runs alone (its ``run`` may then work through it in slices).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Slot(Generic[T, R]):
    item: T
    future: asyncio.Future[R] | None = None
    """Set for ``submit_async``: resolved on its loop."""
    done: bool = False
    result: R | None = None
    error: BaseException | None = field(default=None)


class GroupCommit(Generic[T, R]):
    """``submit(item)`` returns ``run(batch)[i]`` for its item (or raises its exception).

    ``run`` gets the items in arrival order and returns one result or exception
    per item; an exception raised by ``run`` itself is every item's.
    """

    def __init__(
        self,
        run: Callable[[list[T]], Sequence[R | BaseException]],
        *,
        max_batch: int = 64,
        weight: Callable[[T], int] = lambda _: 1,
        max_weight: int | None = None,
        idle_seconds: float = 1.0,
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._weight = weight
        self._max_weight = max_weight
        self._idle_seconds = idle_seconds
        lock = threading.Lock()
        self._work = threading.Condition(lock)  # the committer waits for items
        self._done = threading.Condition(lock)  # blocking callers wait for their batch
        self._queue: list[_Slot[T, R]] = []
        self._committer: threading.Thread | None = None

    def submit(self, item: T) -> R:
        """Run ``item`` in the next batch; its result (blocking)."""
        slot: _Slot[T, R] = _Slot(item)
        with self._done:
            self._enqueue(slot)
            while not slot.done:
                self._done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    async def submit_async(self, item: T) -> R:
        """``submit`` for a coroutine: awaits the batch without a thread of its own."""
        slot: _Slot[T, R] = _Slot(item, asyncio.get_running_loop().create_future())
        with self._work:
            self._enqueue(slot)
        assert slot.future is not None
        return await slot.future

    def _enqueue(self, slot: _Slot[T, R]) -> None:
        """(Lock held.)  Queue ``slot``; wake or start the committer."""
        self._queue.append(slot)
        if self._committer is None:
            self._committer = threading.Thread(
                target=self._serve, name="realmpy-group-commit", daemon=True
            )
            self._committer.start()
        else:
            self._work.notify()

    def _serve(self) -> None:
        while True:
            with self._work:
                if not self._queue:
                    self._work.wait(self._idle_seconds)
                    if not self._queue:
                        self._committer = None
                        return
                batch = self._take()
            self._lead(batch)

    def _take(self) -> list[_Slot[T, R]]:
        """The next batch: the oldest items within ``max_batch`` and ``max_weight`` (at least one)."""
        n, total = 0, 0
        for slot in self._queue[: self._max_batch]:
            total += self._weight(slot.item)
            if n and self._max_weight is not None and total > self._max_weight:
                break
            n += 1
        batch = self._queue[:n]
        del self._queue[:n]
        return batch

    def _lead(self, batch: list[_Slot[T, R]]) -> None:
        try:
            results: Sequence[R | BaseException] = self._run([s.item for s in batch])
            if len(results) != len(batch):
                raise RuntimeError("group commit: one result per item expected")
        except BaseException as exc:  # the whole batch failed (a database error, ...)
            results = [exc] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[_Slot[T, R]]] = {}
        with self._done:
            for s, r in zip(batch, results):
                if isinstance(r, BaseException):
                    s.error = r
                else:
                    s.result = r
                s.done = True
                if s.future is not None:
                    by_loop.setdefault(s.future.get_loop(), []).append(s)
            self._done.notify_all()
        for loop, slots in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
                loop.call_soon_threadsafe(_resolve, slots)


def _resolve(slots: list[_Slot[T, R]]) -> None:
    """(On the slots' loop.)  Each future gets its result or exception."""
    for s in slots:
        fut = s.future
        if fut is None or fut.done():  # its caller went away (cancelled)
            continue
        if s.error is not None:
            fut.set_exception(s.error)
        else:
            fut.set_result(s.result)  # type: ignore[arg-type]
