"""What every benchmark script here times and stores its databases with.

``Timer`` (a ``with`` block's wall time, GC off inside), ``percentile`` and
``Workdir`` (a fresh directory per database).  A sibling module like
``machine``: bench/ is not a package, scripts put their directory on
``sys.path``.
"""

from __future__ import annotations

import gc
from pathlib import Path
from time import perf_counter_ns

__all__ = ["Timer", "Workdir", "percentile"]


class Timer:
    """Wall time of a ``with`` block in ns, with the GC off inside it.

    GC pauses land at random points of a loop that allocates, so they would
    add noise, not signal.  ``collect=True`` collects on entry, for blocks
    that allocate a lot (the previous block's garbage is not billed to this
    one); the default does not, because walking every object would evict
    the data that a warm-up pass just brought into the CPU caches.
    """

    ns: int = 0

    def __init__(self, collect: bool = False) -> None:
        self._collect = collect

    def __enter__(self) -> Timer:
        if self._collect:
            gc.collect()
        gc.disable()
        self._t0 = perf_counter_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        self.ns = perf_counter_ns() - self._t0
        gc.enable()


def percentile(xs: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty list."""
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


class Workdir:
    """A fresh directory per database under ``base``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._count = 0

    def new(self, name: str) -> Path:
        self._count += 1
        d = self.base / f"{name}-{self._count}"
        d.mkdir()
        return d
