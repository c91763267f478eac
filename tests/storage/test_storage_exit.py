"""Exiting is prompt whatever is open (issue 15).

At interpreter exit CPython stops daemon threads where they stand: a thread
inside ``wait_for_change`` (the engine's futex wait, GIL released) never
returns to its ``finally``.  ``Environment.close`` used to wait for such
calls to leave, so an environment closed during finalisation (by a
``__del__``: an uncaught exception's traceback keeps the objects alive
until then) hung the process forever.  Closing now never waits: the last
call out frees the handle, and a call that never comes out leaves it to the
process's exit.

Each case runs a child interpreter; the timeout only bounds the test (a
hang fails it), it asserts nothing about speed.
"""

from __future__ import annotations

import textwrap
import threading
from pathlib import Path

import pytest

from realmpy.errors import ClosedError
from realmpy.storage import Environment
from tests.exiting import HANG_GUARD_S, exit_code

ROOT = Path(__file__).resolve().parents[2]

# A watcher thread (daemon) blocked in wait_for_change, as the notifier's
# is; an object whose __del__ closes the environment, kept alive by the
# main function's frame (so by the traceback of an uncaught exception)
# until the interpreter finalises.  {end} is how the main function ends.
CHILD = """
import os, struct, sys, threading
sys.path.insert(0, {root!r})
from realmpy.storage import Environment

LOCK_WAITERS_OFFSET = 140  # csrc/format.h: threads blocked on the version futex

class Owner:
    def __init__(self, env):
        self.env = env
    def __del__(self):
        self.env.close()

def waiters(lock_path):
    with open(lock_path, "rb") as f:
        f.seek(LOCK_WAITERS_OFFSET)
        return struct.unpack("<I", f.read(4))[0]

def main():
    env = Environment({path!r}, durability="none")
    owner = Owner(env)
    def watch():
        while True:
            env.wait_for_change(env.version)
    threading.Thread(target=watch, daemon=True).start()
    while not waiters({path!r} + ".lock"):
        threading.Event().wait(0.001)  # until the watcher sleeps in the engine
    {end}

main()
"""

ENDINGS = {
    "uncaught exception": ('raise RuntimeError("boom")', 1),
    "normal exit": ("return owner", 0),
    "sys.exit": ("sys.exit(3)", 3),
    "explicit close": ("env.close()", 0),
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_exit_with_a_thread_waiting_in_the_engine(tmp_path: Path, ending: str) -> None:
    end, code = ENDINGS[ending]
    path = str(tmp_path / "exit.db")
    Environment(path).close()  # the file exists before the child opens it
    child = textwrap.dedent(CHILD).format(root=str(ROOT), path=path, end=end)
    status, stderr = exit_code(child, ending)
    assert status == code, stderr
    # The file is fine afterwards, and nobody is left registered on it.
    with Environment(path) as env, env.read() as snap:
        assert snap.tables() == []


def test_close_does_not_wait_for_a_blocked_writer(db_path: str) -> None:
    """A thread blocked in write() (waiting for the write lock, in the
    engine) does not hold up close(): the blocked call frees the handle when
    it comes out, with ClosedError."""
    env = Environment(db_path)
    other = Environment(db_path)
    held = other.write()  # another handle holds the write lock
    errors: list[BaseException] = []
    entered = threading.Event()

    def write() -> None:
        entered.set()
        try:
            env.write(timeout=HANG_GUARD_S).abort()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=write)
    t.start()
    entered.wait()
    env.close()  # returns while the writer may still be waiting
    assert env.closed
    held.abort()  # the writer gets the lock, sees the close, gives up
    t.join(HANG_GUARD_S)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], ClosedError), errors
    assert env._handle is None  # the last call out freed the engine handle
    other.close()
