"""Another program truncates the lock file or the data file while a process
uses it (issue 10; the SIGBUS guard, csrc/sigbus.c).

A page of a shared mapping beyond the end of its file raises SIGBUS when
touched; the process must get a typed error instead of dying, and must never
read the guard's zero pages as data.  Children are forked or spawned and
report through their exit code; nothing here depends on timing.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from realmpy.errors import CorruptError, LockFileChangedError
from realmpy.storage import Environment

CTX = mp.get_context("fork")
HANG_GUARD_S = 60.0
VALUE = b"v" * 200
KEYS = 3000


def _fill(path: str) -> None:
    with Environment(path) as env:
        with env.write() as txn:
            for i in range(KEYS):
                txn.put("t", b"k%05d" % i, VALUE)


def _reader(path: str, ready: Any, go: Any, want: str) -> None:
    """Hold a snapshot, let the parent truncate, then go on reading."""
    with Environment(path) as env:
        with env.read() as snap:
            assert snap.get("t", b"k00005") == VALUE
            ready.set()
            go.wait(HANG_GUARD_S)
            try:
                for i in range(0, KEYS, 11):
                    got = snap.get("t", b"k%05d" % i)
                    if got != VALUE:
                        os._exit(3)  # zeros (or anything else) handed out as data
            except CorruptError as exc:
                if want != "data" or "lost pages while in use" not in str(exc):
                    os._exit(4)
        try:
            with env.read() as snap:
                snap.get("t", b"k00001")
        except LockFileChangedError as exc:
            os._exit(0 if want == "lock" and ".lock" in str(exc) else 5)
        except CorruptError:
            os._exit(0 if want == "data" else 6)
    os._exit(7)


@pytest.mark.parametrize("which", ["lock", "data"])
def test_truncated_under_another_process(tmp_path: Any, which: str) -> None:
    path = str(tmp_path / "db")
    _fill(path)
    ready, go = CTX.Event(), CTX.Event()
    child = CTX.Process(target=_reader, args=(path, ready, go, which))
    child.start()
    assert ready.wait(HANG_GUARD_S)
    if which == "lock":
        os.truncate(path + ".lock", 0)
    else:
        os.truncate(path, 2 * 4096)
    go.set()
    child.join(HANG_GUARD_S)
    if child.is_alive():
        child.kill()
        child.join()
    assert child.exitcode == 0, f"child exit code {child.exitcode} (negative: killed by a signal)"


def _run(code: str, path: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), path],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        env=env,
    )


def test_faulthandler_enabled_after_open(tmp_path: Any) -> None:
    """faulthandler.enable() after a database was opened displaces the
    guard's handler; the next open puts the guard back on top."""
    path = str(tmp_path / "db")
    _fill(path)
    r = _run(
        """
        import faulthandler, os, sys
        from realmpy.errors import LockFileChangedError
        from realmpy.storage import Environment
        path = sys.argv[1]
        first = Environment(path)
        faulthandler.enable()
        with Environment(path) as env:
            os.truncate(path + ".lock", 0)
            try:
                with env.read() as snap:
                    snap.get("t", b"k00001")
            except LockFileChangedError:
                print("typed")
        """,
        path,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "typed"
    assert "Fatal Python error" not in r.stderr


def test_foreign_sigbus_still_fatal(tmp_path: Any) -> None:
    """A SIGBUS outside the engine's mappings is passed on: with faulthandler
    enabled after the guard, it prints its traceback once and the process
    dies of SIGBUS (no loop between the two handlers, no hang)."""
    path = str(tmp_path / "db")
    _fill(path)
    foreign = str(tmp_path / "foreign")
    with open(foreign, "wb") as f:
        f.write(b"x" * 4096)
    r = _run(
        """
        import faulthandler, mmap, os, sys
        from realmpy.storage import Environment
        env = Environment(sys.argv[1])
        faulthandler.enable()
        f = open(os.path.join(os.path.dirname(sys.argv[1]), "foreign"), "r+b")
        m = mmap.mmap(f.fileno(), 4096)
        os.truncate(f.name, 0)
        print(m[10])
        """,
        path,
    )
    # Under AddressSanitizer (CI's sanitizer run) its handler, first in
    # the chain, reports the signal and exits instead.
    assert r.returncode == -signal.SIGBUS or "AddressSanitizer" in r.stderr, (
        r.returncode,
        r.stderr,
    )
    assert r.stderr.count("Fatal Python error: Bus error") == 1, r.stderr
