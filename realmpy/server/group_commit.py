"""Group commit: concurrent callers' work done in batches, one batch at a time.

Why: integrating an upload must hold the store-wide version lock from
allocating its server versions until its commit is visible (so versions
become visible in order, see docs/server.md).  One upload per lock
acquisition made the lock's hold time — a dozen round trips and a commit —
the server's throughput limit, whatever the number of processes.  Here the
first caller to find no batch running becomes the leader: it takes every
waiting item (up to ``max_batch``), runs them through one call (one lock
acquisition, one transaction, one commit), hands each caller its own result
or exception, and lets the next leader go.  Callers arriving meanwhile wait
for the next batch, which then holds everyone who queued during this one:
the busier the server, the larger the batches.

A batch is also bounded by the items' total ``weight`` (an upload's ops):
the work of one batch is held in memory until its commit, so many large
items are not taken together, and an item heavier than ``max_weight`` on its
own runs alone (its ``run`` may then work through it in slices).
"""

from __future__ import annotations

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
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._weight = weight
        self._max_weight = max_weight
        self._cond = threading.Condition()
        self._queue: list[_Slot[T, R]] = []
        self._leading = False

    def submit(self, item: T) -> R:
        """Run ``item`` in the next batch; its result."""
        slot: _Slot[T, R] = _Slot(item)
        with self._cond:
            self._queue.append(slot)
        while True:
            with self._cond:
                while not slot.done and self._leading:
                    self._cond.wait()
                if slot.done:
                    break
                self._leading = True
                batch = self._take()
            self._lead(batch)
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

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
            try:
                results: Sequence[R | BaseException] = self._run([s.item for s in batch])
                if len(results) != len(batch):
                    raise RuntimeError("group commit: one result per item expected")
            except BaseException as exc:  # the whole batch failed (a database error, ...)
                results = [exc] * len(batch)
        finally:
            with self._cond:
                for s, r in zip(batch, results):
                    if isinstance(r, BaseException):
                        s.error = r
                    else:
                        s.result = r
                    s.done = True
                self._leading = False
                self._cond.notify_all()
