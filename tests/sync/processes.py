"""Worker processes of the multi-process sync tests (``sync_worker.py``), seen from the test."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

WORKER = str(Path(__file__).with_name("sync_worker.py"))
DEADLINE = 120.0


class Proc:
    """A worker process whose JSON events are collected by a reader thread."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            [sys.executable, WORKER, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                pass

    def _read_err(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.stderr.append(line)

    def wait_for(
        self,
        event: str,
        pred: Callable[[dict[str, Any]], bool] = lambda e: True,
        timeout: float = DEADLINE,
    ) -> dict[str, Any]:
        for e in self.seen:
            if e["event"] == event and pred(e):
                return e
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.args[0]}: no {event!r} event in {timeout}s; seen {self.seen}; "
                    f"stderr: {''.join(self.stderr[-40:])}"
                )
            try:
                e = self.events.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                if self.popen.poll() is not None and self.events.empty():
                    raise AssertionError(
                        f"{self.args[0]} exited with {self.popen.returncode} before {event!r}; "
                        f"seen {self.seen}; stderr: {''.join(self.stderr[-40:])}"
                    ) from None
                continue
            self.seen.append(e)
            if e["event"] == event and pred(e):
                return e

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(30)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
