"""Waiting for a condition on a file's state: one mechanism for blocking and ``await`` callers.

Why on the shared version counter: every state a caller may wait for
(an upload acknowledgement, a download cursor, a subscription set's state,
a free write lock) changes only by a commit, in some process, and every
commit bumps the file's version counter.  So a waiter checks its condition,
sleeps until the version moves (a futex: no CPU, woken within microseconds
by a commit in any process), and checks again — never a timed poll of the
state itself.

The blocking form sleeps in ``Environment.wait_for_change``.  The awaitable
form must not block the event loop: one watcher thread per environment
sleeps on the counter for every pending ``await`` of every loop and
resolves their futures through ``call_soon_threadsafe``; it exists only
while something awaits.  Both forms run the same steps (:class:`_Wait`):
check ``ready``, then ``give_up`` (an error that ends the wait, e.g. a
stopped session), then the deadline (``timed_out`` builds the error).

Waits are cut into slices of at most ``slice_s`` so that a state that
changes *without* a commit (a process that died holding the write lock, a
session stopped in memory) is noticed anyway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Final

if TYPE_CHECKING:
    import asyncio  # loaded where a coroutine waits (not by `import realmpy`)

    from realmpy.storage import Environment

__all__ = ["wait_until", "wait_until_async"]

_SLICE_S: Final = 1.0
"""Default longest sleep between two checks (see the module docstring)."""


class _Wait:
    """The steps both forms share: deadline bookkeeping and the order of the checks."""

    def __init__(
        self,
        ready: Callable[[], bool],
        timeout: float | None,
        give_up: Callable[[], BaseException | None],
        timed_out: Callable[[], BaseException],
        slice_s: float,
    ) -> None:
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be >= 0 or None, not {timeout}")
        self.ready = ready
        self.give_up = give_up
        self.timed_out = timed_out
        self.slice_s = slice_s
        self.deadline = None if timeout is None else time.monotonic() + timeout

    def step(self) -> float | None:
        """None when ready; else how long to sleep before the next check (raises to end the wait)."""
        if self.ready():
            return None
        err = self.give_up()
        if err is not None:
            raise err
        if self.deadline is None:
            return self.slice_s
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self.timed_out()
        return min(remaining, self.slice_s)


def _never() -> BaseException | None:
    return None


def wait_until(
    env: Environment,
    ready: Callable[[], bool],
    timeout: float | None,
    *,
    timed_out: Callable[[], BaseException],
    give_up: Callable[[], BaseException | None] = _never,
    slice_s: float = _SLICE_S,
) -> None:
    """Block until ``ready()`` (checked after every commit to the file); raise ``give_up()``'s
    error when it returns one, ``timed_out()`` after ``timeout`` seconds (None: no limit)."""
    w = _Wait(ready, timeout, give_up, timed_out, slice_s)
    while True:
        seen = env.version  # read before the check: a commit in between is not missed
        sleep = w.step()
        if sleep is None:
            return
        env.wait_for_change(seen, sleep)


async def wait_until_async(
    env: Environment,
    ready: Callable[[], bool],
    timeout: float | None,
    *,
    timed_out: Callable[[], BaseException],
    give_up: Callable[[], BaseException | None] = _never,
    slice_s: float = _SLICE_S,
) -> None:
    """:func:`wait_until` for a coroutine: the event loop keeps running while it waits."""
    w = _Wait(ready, timeout, give_up, timed_out, slice_s)
    import asyncio  # loaded already: this is a coroutine

    loop = asyncio.get_running_loop()
    while True:
        seen = env.version
        sleep = w.step()
        if sleep is None:
            return
        await _Watcher.changed(env, seen, sleep, loop)


class _Watcher:
    """One thread per environment that sleeps on its version counter for every awaiting coroutine."""

    _all: ClassVar[dict[int, _Watcher]] = {}
    _all_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.thread = threading.Thread(target=self._run, name="realmpy-waiter", daemon=True)

    @classmethod
    async def changed(
        cls, env: Environment, seen: int, timeout: float, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Complete when the version differs from ``seen``, or after ``timeout`` seconds."""
        import asyncio  # loaded already: this is a coroutine

        fut: asyncio.Future[None] = loop.create_future()
        with cls._all_lock:
            w = cls._all.get(id(env))
            start = w is None
            if w is None:
                w = cls._all[id(env)] = _Watcher(env)
            w.waiters.append((seen, loop, fut))
        if start:
            w.thread.start()
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with cls._all_lock:
                w.waiters = [x for x in w.waiters if x[2] is not fut]

    def _run(self) -> None:
        while True:
            with _Watcher._all_lock:
                if not self.waiters:
                    del _Watcher._all[id(self.env)]  # the next await starts a new watcher
                    return
                since = min(s for s, _, _ in self.waiters)
            try:
                now: int | None = self.env.wait_for_change(since, _SLICE_S)
            except Exception:  # closed: wake everyone, they re-check and see why
                now = None
            if now == since:
                continue
            with _Watcher._all_lock:
                due = [x for x in self.waiters if now is None or x[0] != now]
                self.waiters = [x for x in self.waiters if x not in due]
            for _, loop, fut in due:
                try:
                    loop.call_soon_threadsafe(_resolve, fut)
                except RuntimeError:  # that loop is closed
                    pass


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
