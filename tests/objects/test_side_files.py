"""Side files under attack, writers dying mid-commit, read-only media (issue 10).

* A symlink planted at ``<path>.lock`` / ``.session`` / ``.sync`` is refused
  with a SideFileError naming it; its target is untouched.
* A truncated lock file, a bad ``max_readers``, a lock file deleted while
  processes write: typed errors, no crash, no acknowledged commit lost.
* A forged owner in the writer mutex does not hang writers.
* A writer SIGKILLed at each step of its commit: a snapshot begun after the
  death sees what the next writer sees, and a waiter sees it too.
* ``read_only=True`` opens a realm in a directory this user cannot write,
  creating nothing; a missing directory names the data file.

Children are forked; anything that could hang is bounded by a join timeout
that only a bug reaches.
"""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
import pwd
import signal
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from realmpy._engine import lib
from realmpy.config import Configuration
from realmpy.errors import (
    IncompatibleLockError,
    LockFileChangedError,
    SideFileError,
    StorageError,
    StorageFileNotFoundError,
)
from realmpy.notifier import Notifier
from realmpy.realm import Realm
from realmpy.sidefiles import open_side_file
from realmpy.storage import Environment
from tests.objects_models import MODELS, Person

CTX = mp.get_context("fork")
HANG_GUARD_S = 60.0
# Lock file offsets (csrc/format.h).
MAX_READERS_OFFSET = 16
MUTEX_WORD_OFFSET = 64


def _join(p: Any) -> int:
    p.join(HANG_GUARD_S)
    if p.is_alive():
        p.kill()
        p.join()
        pytest.fail("child hangs")
    return int(p.exitcode)


def _poke32(path: str, offset: int, value: int) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, struct.pack("<I", value), offset)
    finally:
        os.close(fd)


def _put(env: Environment, key: bytes, value: bytes = b"x") -> int:
    with env.write() as txn:
        txn.put("t", key, value)
    return env.version


def _get(env: Environment, key: bytes) -> bytes | None:
    with env.read() as snap:
        return snap.get("t", key)


# ---- planted links ------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".lock", ".session", ".sync"])
def test_symlinked_side_file_is_refused(tmp_path: Path, suffix: str) -> None:
    db = str(tmp_path / "db")
    target = tmp_path / "precious"
    target.write_bytes(b"precious bytes")
    os.symlink(target, db + suffix)
    with pytest.raises(SideFileError) as info:
        if suffix == ".lock":
            Environment(db)
        elif suffix == ".session":
            Realm(Configuration.local(MODELS, path=db))
        else:
            open_side_file(db, suffix, read_only=False, what="cannot start sync")
    assert info.value.errno == errno.ELOOP
    assert info.value.filename == db + suffix
    assert db + suffix in str(info.value) and "symbolic link" in str(info.value)
    assert target.read_bytes() == b"precious bytes"


def test_hard_linked_side_file_is_refused(tmp_path: Path) -> None:
    db = str(tmp_path / "db")
    other = tmp_path / "other"
    other.write_bytes(b"other")
    os.link(other, db + ".session")
    with pytest.raises(SideFileError) as info:
        Realm(Configuration.local(MODELS, path=db))
    assert info.value.errno == errno.EMLINK
    assert other.read_bytes() == b"other"


def test_side_files_take_the_data_files_mode(tmp_path: Path) -> None:
    db = str(tmp_path / "db")
    Environment(db).close()
    os.unlink(db + ".lock")
    os.chmod(db, 0o640)
    Environment(db).close()
    fd = open_side_file(db, ".sync", read_only=False, what="test")
    assert fd is not None
    os.close(fd)
    mask = os.umask(0)
    os.umask(mask)
    for suffix in (".lock", ".sync"):
        assert os.stat(db + suffix).st_mode & 0o777 == 0o640 & ~mask


# ---- a damaged or vanished lock file --------------------------------------------------


def test_truncated_lock_file(tmp_path: Path) -> None:
    db = str(tmp_path / "db")
    with Environment(db, durability="none") as env:
        _put(env, b"k")
        os.truncate(db + ".lock", 0)
        with pytest.raises(LockFileChangedError) as info:
            _put(env, b"k2")
        assert "lock" in str(info.value) and db in str(info.value)
        with pytest.raises(LockFileChangedError):
            env.read()
        with pytest.raises(LockFileChangedError):
            env.wait_for_change(env.version, timeout=0.01)
        with pytest.raises(LockFileChangedError):
            Environment(db)  # abandoned while this env still has it open
    with Environment(db) as env:  # everybody left: rebuilt
        assert _get(env, b"k") == b"x"


def test_notifier_stops_on_a_changed_lock_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = str(tmp_path / "db")
    with Environment(db, durability="none") as env:
        notifier = Notifier(env)
        os.truncate(db + ".lock", 0)
        notifier._watch()  # the watcher thread's body: returns instead of raising
        assert "change notifications stopped" in caplog.text and ".lock" in caplog.text


def test_bad_max_readers(tmp_path: Path) -> None:
    db = str(tmp_path / "db")
    with Environment(db, durability="none") as env:
        _put(env, b"k")
        for bad in (0xFFFFFFFF, 0, 70000):
            _poke32(db + ".lock", MAX_READERS_OFFSET, bad)
            assert _get(env, b"k") == b"x"  # validated at open, never re-read
            _put(env, b"k2")
            assert env.stats().max_readers == 126
            env.readers()
            env.reader_check()
            with pytest.raises(IncompatibleLockError):
                Environment(db)


def _counter_writer(db: str, key: bytes, n: int, acks: Any, started: Any) -> None:
    """Increment key up to n times, reporting each acknowledged value, then
    how it ended ("finished" or the error's class) as the last message."""
    outcome = "finished"
    try:
        with Environment(db, durability="none") as env:
            for i in range(1, n + 1):
                _put(env, key, b"%d" % i)
                acks.put((key, i))
                if i == 5:
                    started.set()
    except StorageError as e:
        outcome = type(e).__name__
    acks.put((key, outcome))
    acks.close()
    acks.join_thread()
    os._exit(0)


def test_lock_file_deleted_while_processes_write(tmp_path: Path) -> None:
    db = str(tmp_path / "db")
    Environment(db).close()
    acks = CTX.Queue()
    started = CTX.Event()
    old = CTX.Process(target=_counter_writer, args=(db, b"old", 10**9, acks, started))
    old.start()
    assert started.wait(HANG_GUARD_S)
    os.unlink(db + ".lock")
    new = CTX.Process(target=_counter_writer, args=(db, b"new", 200, acks, CTX.Event()))
    new.start()
    last: dict[bytes, Any] = {}
    outcome: dict[bytes, str] = {}
    while len(outcome) < 2:
        key, value = acks.get(timeout=HANG_GUARD_S)
        if isinstance(value, int):
            last[key] = value
        else:
            outcome[key] = value
    assert _join(new) == 0
    assert _join(old) == 0
    # the old writer refused at its next write; the new one was never disturbed
    assert outcome == {b"old": "LockFileChangedError", b"new": "finished"}
    with Environment(db) as env:
        for key, value in last.items():
            assert _get(env, key) == b"%d" % value, key  # no acknowledged commit lost


def _forged_writer(db: str) -> None:
    with Environment(db, durability="none") as env:
        _put(env, b"forged")
    os._exit(0)


@pytest.mark.parametrize("owner", ["dead", "live", "self"])
def test_forged_writer_mutex_owner(tmp_path: Path, owner: str) -> None:
    db = str(tmp_path / "db")
    with Environment(db, durability="none") as env:  # holds the lock file in use
        _put(env, b"before")
        sleeper = None
        if owner == "dead":
            child = CTX.Process(target=os._exit, args=(0,))
            child.start()
            _join(child)
            tid = child.pid
        elif owner == "live":
            sleeper = CTX.Process(target=signal.pause)
            sleeper.start()
            tid = sleeper.pid
        else:
            tid = os.getpid()  # the main thread's tid: a writer here gets EDEADLK
        assert tid is not None
        _poke32(db + ".lock", MUTEX_WORD_OFFSET, tid)
        try:
            if owner == "self":
                _put(env, b"forged")
            else:
                writer = CTX.Process(target=_forged_writer, args=(db,))
                writer.start()
                assert _join(writer) == 0
        finally:
            if sleeper is not None:
                sleeper.kill()
                sleeper.join()
        assert _get(env, b"forged") == b"x"
        _put(env, b"after")


# ---- a writer killed mid-commit --------------------------------------------------------


def _dying_writer(db: str, step: int) -> None:
    with Environment(db) as env:
        lib.rp_fault_set(lib.RP_FAULT_CRASH, step)
        _put(env, b"in-doubt")
    os._exit(3)  # not reached: the commit kills this process


STEPS = [
    lib.RP_STEP_PAGES,
    lib.RP_STEP_MARKED,
    lib.RP_STEP_META,
    lib.RP_STEP_SYNCED,
    lib.RP_STEP_RING,
    lib.RP_STEP_PUBLISHED,
]


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("look", ["snapshot", "wait"])
def test_dead_writer_commit_is_resolved(tmp_path: Path, step: int, look: str) -> None:
    db = str(tmp_path / "db")
    durable = step >= lib.RP_STEP_META  # its meta page was written
    with Environment(db) as env:  # the third process, holding the file open
        v0 = env.version
        writer = CTX.Process(target=_dying_writer, args=(db, step))
        writer.start()
        assert _join(writer) == -signal.SIGKILL
        if look == "wait":
            seen = env.wait_for_change(v0, timeout=HANG_GUARD_S if durable else 0.01)
            assert seen == v0 + durable
        with env.read() as snap:  # begun after the death ...
            read_version, read_value = snap.version, snap.get("t", b"in-doubt")
        with env.write() as txn:  # ... agrees with the next writer
            assert (txn.version, txn.get("t", b"in-doubt")) == (read_version, read_value)
            txn.abort()
        assert read_version == v0 + durable
        assert read_value == (b"x" if durable else None)


# ---- read-only use ------------------------------------------------------------------------


def _as_unprivileged(fn: Callable[[], str]) -> str:
    """Run fn in a child that cannot write the test's directories (root
    writes anywhere, so the child drops to ``nobody``); returns its result
    or ``"Error: message"``."""
    if os.geteuid() != 0:
        try:
            return fn()
        except Exception as e:
            return f"{type(e).__name__}: {e}"
    nobody = pwd.getpwnam("nobody")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        try:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            out = fn()
        except BaseException as e:
            out = f"{type(e).__name__}: {e}"
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


@pytest.fixture
def ro_dir() -> Iterator[Path]:
    """A directory under /tmp that ``nobody`` can enter but not write."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="rp_ro_"))
    try:
        yield d
    finally:
        os.chmod(d, 0o755)
        for f in d.iterdir():
            f.unlink()
        d.rmdir()


@pytest.mark.parametrize("keep_lock_file", [False, True])
def test_read_only_directory(ro_dir: Path, keep_lock_file: bool) -> None:
    db = str(ro_dir / "db.realm")
    with Realm(Configuration.local(MODELS, path=db)) as realm, realm.write():
        realm.add(Person(name="Ann", age=30))
    with Environment(db) as env:
        _put(env, b"k")
    if not keep_lock_file:
        os.unlink(db + ".lock")
    for f in ro_dir.iterdir():
        os.chmod(f, 0o644)  # readable by everyone, writable by nobody else
    os.chmod(ro_dir, 0o555)
    before = sorted(os.listdir(ro_dir))

    def read_both() -> str:
        with Environment(db, read_only=True) as env:
            value = _get(env, b"k")
        cfg = Configuration.local(MODELS, path=db, read_only=True)
        with Realm(cfg) as realm:
            names = [p.name for p in realm.all(Person)]
        return f"{value!r} {names}"

    assert _as_unprivileged(read_both) == "b'x' ['Ann']"
    assert sorted(os.listdir(ro_dir)) == before  # nothing created


def _hold_read_only(db: str, opened: Any, done: Any) -> None:
    with Realm(Configuration.local(MODELS, path=db, read_only=True)):
        opened.set()
        done.wait(HANG_GUARD_S)
    os._exit(0)


def test_read_only_realm_still_blocks_compaction(tmp_path: Path) -> None:
    """Where it can, a read-only realm holds ``.session`` like any other, so
    another process never compacts (replaces) the file under it."""
    db = str(tmp_path / "db.realm")
    Realm(Configuration.local(MODELS, path=db)).close()
    os.unlink(db + ".session")  # the read-only opener recreates it
    opened, done = CTX.Event(), CTX.Event()
    holder = CTX.Process(target=_hold_read_only, args=(db, opened, done))
    holder.start()
    try:
        assert opened.wait(HANG_GUARD_S)
        assert Realm.compact(Configuration.local(MODELS, path=db)) is False
    finally:
        done.set()
        assert _join(holder) == 0
    assert Realm.compact(Configuration.local(MODELS, path=db)) is True


def _lock_file_not_ours(ro_dir: Path, data_mode: int, lock_mode: int = 0o444) -> str:
    """A database in ro_dir whose lock file the unprivileged child cannot write."""
    db = str(ro_dir / "db")
    Environment(db).close()
    os.chmod(db, data_mode)
    os.chmod(db + ".lock", lock_mode)
    os.chmod(ro_dir, 0o555)
    return db


def _open_unprivileged(db: str, read_only: bool) -> str:
    def attempt() -> str:
        try:
            Environment(db, read_only=read_only).close()
        except SideFileError as e:
            return f"{e.errno} {e.filename} {e}"
        return "opened"

    return _as_unprivileged(attempt)


@pytest.mark.skipif(os.geteuid() != 0, reason="the holder must write what the child cannot")
def test_read_only_refused_while_others_use_it(ro_dir: Path) -> None:
    db = _lock_file_not_ours(ro_dir, 0o644, 0o644)
    with Environment(db):  # in use: a reader without a slot would be unsafe
        err, name, _ = _open_unprivileged(db, read_only=True).split(" ", 2)
    assert (int(err), name) == (errno.EACCES, db + ".lock")
    assert _open_unprivileged(db, read_only=True) == "opened"  # once nobody uses it


def test_unwritable_lock_file_is_named(ro_dir: Path) -> None:
    db = _lock_file_not_ours(ro_dir, 0o666)
    err, name, message = _open_unprivileged(db, read_only=False).split(" ", 2)
    assert (int(err), name) == (errno.EACCES, db + ".lock")
    assert "read_only=True" in message  # says what to do


def test_missing_directory_names_the_data_file(tmp_path: Path) -> None:
    db = str(tmp_path / "missing" / "db")
    with pytest.raises(StorageFileNotFoundError) as info:
        Environment(db)
    assert db in str(info.value)
    with pytest.raises(StorageFileNotFoundError) as info:
        Realm(Configuration.local(MODELS, path=db))
    assert db in str(info.value) and ".session" not in str(info.value)
    assert "does not exist" in str(info.value)
