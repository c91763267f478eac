"""Long-polls woken by a commit download together (``SyncService.download_many``).

Why: one commit can wake a thousand parked polls at once; each running its own
download transaction on a worker thread cost ~2 ms of CPU and a pool
connection, so the last answered seconds after the commit.  Here a woken poll
queues its download request on the event loop; one drain task takes the
queue (at most ``max_batch``, one poll per file) to a worker thread as a single
``download_many`` call, and hands each poll its answer.  Polls woken while a
batch runs form the next one: the busier the fan-out, the larger the batches.
A poll that needs a bootstrap gets ``None`` and downloads on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from realmpy.server.auth import Principal
from realmpy.wire.protocol import DownloadRequest, DownloadResponse, ProtocolError

__all__ = ["WokenPolls"]

Many = Callable[
    [Sequence[tuple[Principal, DownloadRequest]]], list[DownloadResponse | ProtocolError | None]
]


@dataclass
class _Waiting:
    principal: Principal
    req: DownloadRequest
    answer: asyncio.Future[DownloadResponse | None]


class WokenPolls:
    """``await download(principal, req)``: its answer from the next shared batch (None: bootstrap)."""

    YIELDS = 4
    """Event-loop turns the drain waits before cutting a batch: the polls one wake-up set
    resume within a few turns (event, wait_for, the handler), so they land in one batch."""

    def __init__(self, many: Many, *, max_batch: int = 1024) -> None:
        self._many = many
        self._max_batch = max_batch
        self._queue: list[_Waiting] = []
        self._drain_task: asyncio.Task[None] | None = None

    async def download(self, principal: Principal, req: DownloadRequest) -> DownloadResponse | None:
        answer: asyncio.Future[DownloadResponse | None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(principal, req, answer))
        if self._drain_task is None:
            self._drain_task = asyncio.create_task(self._drain())
        return await answer

    def _take(self) -> list[_Waiting]:
        """The oldest waiting polls, one per file (a second poll of a file waits its turn:
        its download must see the first's view changes)."""
        batch: list[_Waiting] = []
        rest: list[_Waiting] = []
        files: set[int] = set()
        for w in self._queue:
            if w.answer.done():
                continue  # its request went away
            if len(batch) < self._max_batch and w.req.file_ident not in files:
                files.add(w.req.file_ident)
                batch.append(w)
            else:
                rest.append(w)
        self._queue = rest
        return batch

    async def _drain(self) -> None:
        try:
            while self._queue:
                for _ in range(self.YIELDS):
                    await asyncio.sleep(0)
                batch = self._take()
                if not batch:
                    continue
                try:
                    results: Sequence[
                        DownloadResponse | BaseException | None
                    ] = await run_in_threadpool(self._many, [(w.principal, w.req) for w in batch])
                except Exception as exc:  # the batch's transaction failed: every poll's error
                    results = [exc] * len(batch)
                for w, res in zip(batch, results):
                    if w.answer.done():
                        continue
                    if isinstance(res, BaseException):
                        w.answer.set_exception(res)
                    else:
                        w.answer.set_result(res)
        finally:
            self._drain_task = None
