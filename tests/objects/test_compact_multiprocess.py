"""``should_compact`` across processes: compaction only when alone.

Each process holds a shared lock (an OFD lock) on ``<path>.session`` while it has
the file open; compaction takes it exclusively for its whole run.  These
tests use real processes: one holding the file open, one killed with
SIGKILL, and one opening the file while compaction runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from realmpy.config import Configuration
from realmpy.realm import Realm
from realmpy.sidefiles import lock_side_file
from tests.objects_models import MODELS, Dog

TESTS = Path(__file__).parent.parent
WAIT = 60

# A process that opens the realm, says "open", then obeys one command a line:
# "add N" (commit a Dog, then say "added N"), "count" (say how many Dogs it
# reads), "hold" (begin a read snapshot and keep it), "exit".
CHILD = """
import sys
sys.path.insert(0, {tests!r})
from objects_models import MODELS, Dog
from realmpy.config import Configuration
from realmpy.realm import Realm
realm = Realm(Configuration.local(MODELS, path={path!r}, durability="none"))
print("open", flush=True)
held = []
for line in sys.stdin:
    cmd, *arg = line.split()
    if cmd == "add":
        with realm.write():
            realm.add(Dog(id=int(arg[0]), name="child"))
        print("added", arg[0], flush=True)
    elif cmd == "count":
        print(len(realm.all(Dog)), flush=True)
    elif cmd == "hold":
        held.append(realm.freeze())
        print("holding", flush=True)
    elif cmd == "exit":
        break
realm.close()
"""


class Child:
    """Another process with the realm open, driven line by line."""

    def __init__(self, path: Path) -> None:
        code = textwrap.dedent(CHILD).format(tests=str(TESTS), path=str(path))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.read()

    def read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def exit(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("exit\n")
        self.proc.stdin.close()
        assert self.proc.wait(WAIT) == 0


def grow(path: Path, n: int = 6000) -> None:
    """Write then delete many objects: the file gets free pages to compact."""
    with Realm(Configuration.local(MODELS, path=path, durability="none")) as realm:
        with realm.write():
            realm.add_all([Dog(id=i, name="x" * 400) for i in range(1000, 1000 + n)])
        with realm.write():
            realm.delete_many(list(realm.query(Dog, "id >= 1000")))
        with realm.write():
            realm.add(Dog(id=1, name="kept"))


class Asked:
    """A should_compact callback that records its calls."""

    def __init__(self, answer: bool = True) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def __call__(self, total: int, used: int) -> bool:
        self.calls.append((total, used))
        return self.answer


def compacting(path: Path, asked: Asked) -> Configuration:
    return Configuration.local(MODELS, path=path, durability="none", should_compact=asked)


def test_compacts_when_alone(tmp_path: Path) -> None:
    path = tmp_path / "c.realm"
    grow(path)
    # Held open so that its inode number cannot be reused: the file is
    # compacted on open and again at the last close, and the second copy
    # could otherwise get the first file's freed inode back.
    with open(path, "rb") as old:
        before = os.fstat(old.fileno())
        asked = Asked()
        with Realm(compacting(path, asked)) as realm:
            assert len(asked.calls) == 1
            total, used = asked.calls[0]
            assert used < total
            assert [d.name for d in realm.all(Dog)] == ["kept"]
        after = os.stat(path)
    assert after.st_ino != before.st_ino and after.st_size < before.st_size


def test_another_process_prevents_compaction_and_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "c.realm"
    grow(path)
    child = Child(path)
    try:
        assert child.read() == "open"
        before = os.stat(path).st_ino
        asked = Asked()
        with Realm(compacting(path, asked)) as realm:
            assert asked.calls == []  # not alone: not even asked
            assert os.stat(path).st_ino == before
            # both processes keep working on the same file
            assert child.ask("add 2") == "added 2"
            assert realm.find(Dog, 2) is not None
            with realm.write():
                realm.add(Dog(id=3, name="parent"))
            assert child.ask("count") == "3"
        assert Realm.compact(compacting(path, Asked())) is False  # still open there
        assert child.ask("count") == "3"
    finally:
        child.exit()
    assert Realm.compact(compacting(path, Asked())) is True  # alone now


def test_a_killed_process_does_not_block_compaction(tmp_path: Path) -> None:
    path = tmp_path / "c.realm"
    grow(path)
    child = Child(path)
    assert child.read() == "open"
    assert child.ask("hold") == "holding"  # it also pins a version
    child.proc.send_signal(signal.SIGKILL)
    assert child.proc.wait(WAIT) == -signal.SIGKILL
    assert child.proc.stdin is not None and child.proc.stdout is not None
    child.proc.stdin.close()
    child.proc.stdout.close()
    with open(path, "rb") as old:  # its inode number cannot be reused (see above)
        before = os.fstat(old.fileno()).st_ino
        asked = Asked()
        with Realm(compacting(path, asked)) as realm:
            assert len(asked.calls) == 1  # the kernel dropped the dead one's lock
            assert [d.name for d in realm.all(Dog)] == ["kept"]
            with realm.write():
                realm.add(Dog(id=5, name="after"))
        assert os.stat(path).st_ino != before
    other = Child(path)  # and the compacted file opens in another process
    try:
        assert other.read() == "open"
        assert other.ask("count") == "2"
    finally:
        other.exit()


def _blocked_on_session_lock(path: Path) -> bool:
    """Whether a process waits for a lock of ``<path>.session`` (a ``->`` line of /proc/locks;
    OFD locks show no pid, so the file's inode tells; only the child can be waiting)."""
    # e.g. "1: -> OFDLCK ADVISORY  READ -1 fe:00:2146524 0 EOF"
    st = os.stat(str(path) + ".session")
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with open("/proc/locks") as f:
        rows = [line.split() for line in f]
    return any(r[1] == "->" and r[6] == inode for r in rows if len(r) > 6)


def test_an_opener_during_compaction_opens_the_compacted_file(tmp_path: Path) -> None:
    path = tmp_path / "c.realm"
    grow(path)
    children: list[Child] = []

    def should_compact(total: int, used: int) -> bool:
        if children:  # asked again when the realm closes (compaction on last close)
            return False
        # Another process opens the file now, while we compact: it must wait
        # for us (it would otherwise map the file we are about to replace).
        children.append(Child(path))
        deadline = time.monotonic() + WAIT
        # No event can tell that another process is blocked in the kernel:
        # poll /proc/locks (which shows it) until it is.
        while not _blocked_on_session_lock(path):
            assert time.monotonic() < deadline, "the opener never reached its session lock"
            time.sleep(0.01)
        return True

    config = Configuration.local(
        MODELS, path=path, durability="none", should_compact=should_compact
    )
    with Realm(config) as realm:
        child = children[0]
        try:
            assert child.read() == "open"
            assert child.ask("add 7") == "added 7"
            found = realm.find(Dog, 7)  # its commit is in our (compacted) file
            assert found is not None and found.name == "child"
            with realm.write():
                realm.add(Dog(id=8, name="parent"))
            assert child.ask("count") == "3"
        finally:
            child.exit()


_TRY_EXCLUSIVE = """
import os, sys
from realmpy.sidefiles import lock_side_file
fd = os.open(sys.argv[1], os.O_RDWR)
print("refused" if not lock_side_file(fd, exclusive=True, block=False) else "granted")
"""


def test_a_refused_upgrade_keeps_the_shared_session_lock(tmp_path: Path) -> None:
    # "Am I alone?" is an upgrade attempt.  flock(2) drops the shared lock before
    # trying the exclusive one, so a refused attempt left the asker with no lock,
    # and a later "alone" process compacted the file under it (the chaos test saw
    # LockFileChangedError in writers).  The session lock must survive the question.
    session = str(tmp_path / "s.session")
    fd = os.open(session, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        assert lock_side_file(fd, exclusive=False, block=True)
        other = subprocess.Popen(
            [sys.executable, "-c", _HOLD_SHARED, session], stdout=subprocess.PIPE, text=True
        )
        assert other.stdout is not None
        assert other.stdout.readline().strip() == "holding"
        assert not lock_side_file(fd, exclusive=True, block=False)  # not alone
        other.kill()
        assert other.wait(WAIT) == -signal.SIGKILL
        other.stdout.close()
        probe = subprocess.run(
            [sys.executable, "-c", _TRY_EXCLUSIVE, session],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=True,
        )
        assert probe.stdout.strip() == "refused"  # this process still holds its shared lock
    finally:
        os.close(fd)


_HOLD_SHARED = """
import os, sys, time
from realmpy.sidefiles import lock_side_file
fd = os.open(sys.argv[1], os.O_RDWR)
lock_side_file(fd, exclusive=False, block=True)
print("holding", flush=True)
time.sleep(600)
"""
