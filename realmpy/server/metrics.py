"""Prometheus-style metrics, kept in-process with no dependency.

Why hand-rolled: the server needs a handful of counters, one gauge and
request durations; the text exposition format is a few lines, and avoiding
``prometheus_client`` keeps the server's dependencies to uvicorn, starlette
and (optionally) psycopg.
"""

from __future__ import annotations

import threading
from collections import defaultdict

__all__ = ["Metrics"]


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels
    )
    return "{" + inner + "}"


class Metrics:
    """Thread-safe counters, gauges and duration summaries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self._gauges: dict[str, float] = {}
        self._help: dict[str, tuple[str, str]] = {}

    def inc(self, name: str, value: float = 1.0, help: str = "", **labels: str) -> None:
        """Add to a counter."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._help.setdefault(name, ("counter", help))
            series = self._counters[name]
            series[key] = series.get(key, 0.0) + value

    def gauge(self, name: str, delta: float, help: str = "") -> None:
        """Move a gauge up or down."""
        with self._lock:
            self._help.setdefault(name, ("gauge", help))
            self._gauges[name] = self._gauges.get(name, 0.0) + delta

    def observe(self, name: str, seconds: float, help: str = "", **labels: str) -> None:
        """Record a duration as ``<name>_sum`` and ``<name>_count``."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._help.setdefault(name, ("summary", help))
            s = self._counters[name + "_sum"]
            c = self._counters[name + "_count"]
            s[key] = s.get(key, 0.0) + seconds
            c[key] = c.get(key, 0.0) + 1

    def value(self, name: str, **labels: str) -> float:
        """A counter's or gauge's current value (tests)."""
        with self._lock:
            if name in self._gauges:
                return self._gauges[name]
            return self._counters.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        """The text exposition format."""
        lines: list[str] = []
        with self._lock:
            for name, (kind, help) in sorted(self._help.items()):
                lines.append(f"# HELP {name} {help or name}")
                lines.append(f"# TYPE {name} {kind}")
                if kind == "gauge":
                    lines.append(f"{name} {self._gauges.get(name, 0.0):g}")
                    continue
                names = [name] if kind == "counter" else [name + "_sum", name + "_count"]
                for n in names:
                    for key, v in sorted(self._counters.get(n, {}).items()):
                        lines.append(f"{n}{_labels(key)} {v:g}")
        return "\n".join(lines) + "\n"
