"""Rate limits on logins and registrations, and a bound on concurrent password hashes.

Why token buckets keyed by account and by client address: a password
guesser is slowed per account however many addresses it uses, and one
address cannot register accounts or spray logins over many accounts without
limit.  A bucket holds ``burst`` attempts and refills at ``per_minute``; an
empty bucket answers ``429 rate_limited`` with ``Retry-After`` (seconds until
one attempt is back).  Buckets live in memory (per server process: with
several processes an attacker gets each one's allowance) and at most
``max_keys`` of them, least recently used evicted first, so many distinct
keys cannot exhaust memory.

Why a bound on concurrent hashes: scrypt takes about 16 MiB and some 50 ms
of CPU per attempt, so 60 concurrent logins took 600 MiB and every core.
``HashPool`` runs ``max_concurrent_hashes`` (half the cores) at a time on
low-priority threads and queues up to ``max_queued_hashes`` more; beyond
that a login is answered ``429`` at once instead of piling up.

A locked-out account is the price of the per-account limit: someone who
knows an email can keep its logins refused by guessing at the refill rate.
The victim's existing sessions and API keys keep working.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from realmpy.server.limits import require_positive
from realmpy.sync.protocol import ProtocolError

__all__ = ["HashPool", "RateLimited", "RateLimiter", "RateLimits", "check"]

T = TypeVar("T")


class RateLimited(ProtocolError):
    """Too many attempts: retry after ``detail.retry_after`` seconds (also the ``Retry-After`` header)."""

    code = "rate_limited"
    status = 429


@dataclass(frozen=True)
class RateLimits:
    """``[rate_limits]`` in the configuration file: ``<what>_burst`` and ``<what>_per_minute``."""

    login_per_account_burst: int = 10
    login_per_account_per_minute: float = 10.0
    login_per_address_burst: int = 60
    login_per_address_per_minute: float = 60.0
    register_per_address_burst: int = 20
    register_per_address_per_minute: float = 10.0
    max_concurrent_hashes: int = field(default_factory=lambda: max(1, (os.cpu_count() or 2) // 2))
    """Half the cores: logins must not starve everything else of CPU."""
    max_queued_hashes: int = 64
    max_keys: int = 100_000

    def __post_init__(self) -> None:
        require_positive("rate_limits", self)


class RateLimiter:
    """Token buckets by key; thread-safe."""

    def __init__(
        self,
        burst: int,
        per_minute: float,
        *,
        max_keys: int = 100_000,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = float(burst)
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self.now = now
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key → (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one attempt of ``key``: 0 if allowed, else the seconds until one is back."""
        t = self.now()
        with self._lock:
            tokens, at = self._buckets.pop(key, (self.burst, t))
            tokens = min(self.burst, tokens + (t - at) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, t)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return wait


def check(limiter: RateLimiter, key: str, what: str) -> None:
    """Raise ``RateLimited`` if ``key`` has no attempt left."""
    wait = limiter.take(key)
    if wait > 0:
        retry = max(1, math.ceil(wait))
        raise RateLimited(f"too many {what}; retry in {retry} s", retry_after=retry, limit=what)


class HashPool:
    """Password hashing on ``running`` low-priority threads, at most ``queued`` calls waiting.

    Its own threads, not the shared worker pool: they run at a lower CPU
    priority (10 nice levels below the process; Linux sets it per thread), so a burst of logins
    leaves the event loop and every other request the CPU they need, and the
    pool's size is the bound on concurrent hashes.
    """

    def __init__(self, running: int, queued: int) -> None:
        self._executor = ThreadPoolExecutor(
            running, thread_name_prefix="realmpy-hash", initializer=_lower_priority
        )
        self._limit = running + queued
        self._pending = 0  # touched on the event loop only

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a hashing thread; ``RateLimited`` if too many are waiting."""
        if self._pending >= self._limit:
            raise RateLimited(
                "too many logins in progress; retry in 1 s", retry_after=1, limit="hashes"
            )
        self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        finally:
            self._pending -= 1

    def close(self) -> None:
        """Stop the threads once they are idle."""
        self._executor.shutdown(wait=False)


def _lower_priority() -> None:
    """10 nice levels below the process (Linux: this thread only; elsewhere it may fail: fine)."""
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + 10))
