"""What a fuzz round does in its child process with a (damaged) file.

Data-file rounds open the file (read-write, read-only or ``recover=True``),
read everything, run the integrity check, write, read again and reopen;
lock-file scenarios tamper with ``<path>.lock`` (or plant symlinks) around a
live environment, then use it and a second opener.  Each returns a verdict
``(class, detail)``; the caller (``fuzz_files``) classifies exceptions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import struct
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from realmpy.config import Configuration
from realmpy.errors import StorageError
from realmpy.realm import Realm
from realmpy.storage import Environment
from tests.storage.fuzz_corpus import (
    EPOCH,
    INTACT,
    MODELS,
    RECOVERED,
    ROLLBACK,
    WRONG,
    Base,
    Dump,
    FzOwner,
    Mismatch,
    Verdict,
    compare,
    dump_env,
    dump_realm,
    first_difference,
    owner_row,
    read,
)

# format.h, THE LOCK FILE
LOCK_MAX_READERS = 16
LOCK_MUTEX = 64
LOCK_WRITER_TID = 152
LOCK_SLOTS = 1216


@dataclasses.dataclass
class Round:
    """Everything a round does, derived from its seed."""

    seed: int
    suite: str  # "data", "recover" or "lock"
    kind: str  # "objects" or "storage"
    mutation: str
    mode: str  # "rw", "ro" or "recover"
    only: str = ""  # the mutation filter it was drawn under (REALMPY_FUZZ_MUTATIONS)

    def replay(self) -> str:
        env = f"REALMPY_FUZZ_MUTATIONS={self.only} " if self.only else ""
        opt = f" --mutations {self.only}" if self.only else ""
        return (
            f"{env}REALMPY_FUZZ_SEED={self.seed} REALMPY_FUZZ_ROUNDS=1 python -m pytest -s "
            f"tests/storage/test_fuzz_files.py -k {self.suite}   (or: python -m tests.storage.fuzz_files "
            f"--suite {self.suite} --seed {self.seed} --rounds 1{opt} -v)"
        )


class Stage:
    """Where in a round the child is (reported with errors and crashes)."""

    def __init__(self) -> None:
        self.name = "setup"

    def __call__(self, name: str) -> None:
        self.name = name
        # Visible in the child's stderr if it then crashes or hangs.
        os.write(2, f"stage: {name}\n".encode())


def _open_kwargs(mode: str) -> dict[str, Any]:
    if mode == "ro":
        return {"read_only": True}
    if mode == "recover":
        return {"recover": True}
    return {}


def _probe_storage(env: Environment, expected: Dump) -> Dump:
    """A write on the opened file; returns what every table should then hold."""
    want = {t: dict(rows) for t, rows in expected.items()}
    probe: dict[bytes, bytes] = {}
    with env.write() as txn:
        for i in range(12):
            value = (b"probe-%d|" % i) * (1200 if i % 5 == 0 else 3)
            txn.put("zz-probe", b"p%03d" % i, value)
            probe[b"p%03d" % i] = value
        for table, rows in sorted(want.items()):
            if rows:
                first = next(iter(rows))
                txn.put(table, first, b"overwritten")
                rows[first] = b"overwritten"
                last = list(rows)[-1]
                if last != first:
                    txn.delete(table, last)
                    del rows[last]
    want["zz-probe"] = probe
    return want


@contextlib.contextmanager
def _collecting_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def _reported(verdict: Verdict, env: Environment, caught: list[warnings.WarningMessage]) -> Verdict:
    """A recovery to an older commit must say so (a warning, or the
    environment's ``recovered_from``); one that does not is a silent
    rollback even though the caller asked for recover=True."""
    if verdict[0] != RECOVERED or caught or getattr(env, "recovered_from", None):
        return verdict
    return ROLLBACK, f"recover=True {verdict[1]}, without a warning or recovered_from"


def round_storage(path: str, base: Base, mode: str, stage: Stage) -> Verdict:
    """Open, read everything, check; unless read-only: write, read and
    check again, reopen and read again."""
    stage("open")
    with _collecting_warnings() as caught:
        env = Environment(path, **_open_kwargs(mode))
    with env:
        stage("read")
        verdict = _reported(compare(dump_env(env), base, mode), env, caught)
        if verdict[0] not in (INTACT, RECOVERED):
            return verdict
        stage("check")
        env.check()
        if mode == "ro":
            return verdict
        stage("write")
        # After a recovery the probe goes on top of the version it opened.
        opened = base.expected if verdict[0] == INTACT else dump_env(env)
        want = _probe_storage(env, opened)
        stage("read after write")
        after = dump_env(env)
        if after != want:
            return WRONG, "after a write: " + first_difference(after, want)
        stage("check after write")
        env.check()
    stage("reopen after write")
    with Environment(path) as env:
        again = dump_env(env)
        if again == opened:
            return ROLLBACK, "the write acknowledged on the damaged file is gone after reopening"
        if again != want:
            return WRONG, "reopened after a write: " + first_difference(again, want)
    return verdict


# The object the write of an object-layer round adds (a large photo: an overflow run).
PROBE_FIELDS: dict[str, Any] = {
    "id": 10**6,
    "name": "probe",
    "score": 0.5,
    "joined": EPOCH,
    "photo": b"p" * 5000,
}


def _check_realm(realm: Realm) -> None:
    check = getattr(realm, "check", None)
    if callable(check):
        check()
    else:
        realm._env.check()  # no Realm.check() (yet): the storage layer's


def round_objects(path: str, base: Base, mode: str, stage: Stage) -> Verdict:
    """Open the realm, read every object, check; unless read-only or
    recovered: add and change objects, read and check again."""
    stage("open")
    kwargs = _open_kwargs(mode)
    config = Configuration.local(MODELS, path=path, **kwargs)
    with _collecting_warnings() as caught:
        realm = Realm(config)
    with realm:
        stage("read")
        verdict = _reported(compare(dump_realm(realm), base, mode), realm._env, caught)
        if verdict[0] not in (INTACT, RECOVERED):
            return verdict
        stage("check")
        _check_realm(realm)
        if mode == "ro" or verdict[0] != INTACT:
            return verdict
        stage("write")
        want = {cls: dict(rows) for cls, rows in base.expected.items()}
        with realm.write():
            realm.add(FzOwner(**PROBE_FIELDS))
            first = min(want["FzOwner"])
            obj = realm.find(FzOwner, first)
            if obj is None:
                raise Mismatch(f"find(FzOwner, {first}) found nothing")  # aborts the write
            obj.score = 0.25
        want["FzOwner"][PROBE_FIELDS["id"]] = owner_row(FzOwner(**PROBE_FIELDS))
        want["FzOwner"][first] = (want["FzOwner"][first][0], 0.25, *want["FzOwner"][first][2:])
        stage("read after write")
        after = dump_realm(realm)
        if after != want:
            return WRONG, "after a write: " + first_difference(after, want)
        stage("check after write")
        _check_realm(realm)
    return verdict


# ---- lock-file scenarios (each runs whole in the child) ---------------------


class LockCtx:
    """One lock-file scenario's state: the intact data file it runs on and
    the keys its writes committed (they must all be there at the end)."""

    def __init__(self, rng: random.Random, path: str, base: Base, stage: Stage) -> None:
        self.rng = rng
        self.path = path
        self.lock = path + ".lock"
        self.base = base
        self.stage = stage
        self.written: list[bytes] = []
        self.context = ""  # what was done to the lock file, for stage names

    def after(self, what: str) -> None:
        """Record what the scenario just did (shown with every later stage)."""
        self.context = what
        self.stage(what)

    def poke(self, off: int, fmt: str, value: int) -> None:
        """Overwrite bytes of the lock file (as another process could)."""
        with open(self.lock, "r+b") as f:
            f.seek(off)
            f.write(struct.pack(fmt, value))

    def verify(self, env: Environment) -> Verdict:
        """The base content plus every committed key, nothing else."""
        got = dump_env(env)
        keys = got.pop(LOCK_TABLE, {})
        lost = [k for k in self.written if k not in keys]
        if lost:
            n = len(self.written)
            return WRONG, f"{len(lost)} of {n} acknowledged commits lost (e.g. {lost[:4]})"
        verdict = compare(got, self.base, "rw")
        return verdict if verdict[0] != INTACT else (INTACT, "")

    def use(self, env: Environment, name: str) -> Verdict:
        """Read everything, then commit one key and read it back."""
        where = f"{self.context}: " if self.context else ""
        self.stage(f"{where}read ({name})")
        verdict = self.verify(env)
        if verdict[0] != INTACT:
            return verdict
        self.stage(f"{where}write ({name})")
        key = b"%s-%03d" % (name.encode(), len(self.written))
        with env.write() as txn:
            txn.put(LOCK_TABLE, key, b"v")
        self.written.append(key)
        return self.verify(env)


LOCK_TABLE = "zz-lock"


def lock_symlink(ctx: LockCtx) -> Verdict:
    """A symlink planted at <path>.lock must not be followed."""
    victim = os.path.join(os.path.dirname(ctx.path), "victim.txt")
    content = b"not a lock file\n" * 200
    with open(victim, "wb") as f:
        f.write(content)
    os.symlink(victim, ctx.lock)
    ctx.stage("open")
    try:
        with Environment(ctx.path) as env:
            return ctx.use(env, "a")
    finally:
        if read(victim) != content:
            raise Mismatch("the symlink's target was overwritten") from None


def lock_symlink_session(ctx: LockCtx) -> Verdict:
    """A dangling symlink planted at <path>.session (object layer) must not
    be followed (O_CREAT would create its target)."""
    victim = os.path.join(os.path.dirname(ctx.path), "victim.txt")
    os.symlink(victim, ctx.path + ".session")
    ctx.stage("open")
    try:
        with Realm(Configuration.local(MODELS, path=ctx.path)) as realm:
            ctx.stage("read")
            return compare(dump_realm(realm), ctx.base, "rw")
    finally:
        if os.path.lexists(victim):
            raise Mismatch("opening followed the .session symlink and created its target") from None


def lock_garbage_stale(ctx: LockCtx) -> Verdict:
    """A lock file nobody holds, full of garbage or cut short: rebuilt."""
    size = ctx.rng.choice([0, 7, 64, LOCK_SLOTS, LOCK_SLOTS + 64 * 126, 100000])
    with open(ctx.lock, "wb") as f:
        f.write(ctx.rng.randbytes(size) if ctx.rng.random() < 0.5 else bytes(size))
    ctx.after(f"open over a stale {size}-byte lock file")
    with Environment(ctx.path) as env:
        return ctx.use(env, "a")


def lock_truncated_in_use(ctx: LockCtx) -> Verdict:
    """The lock file is truncated while this process has it open."""
    ctx.stage("open")
    with Environment(ctx.path) as env:
        verdict = ctx.use(env, "a")
        if verdict[0] != INTACT:
            return verdict
        size = ctx.rng.choice([0, 64, 200, LOCK_SLOTS, LOCK_SLOTS + 64])
        os.truncate(ctx.lock, size)
        ctx.after(f"lock file truncated to {size}")
        verdict = ctx.use(env, "a")
        if verdict[0] != INTACT:
            return verdict
        ctx.stage("second opener")
        with Environment(ctx.path) as env2:
            return ctx.use(env2, "b")


def lock_truncated_in_write(ctx: LockCtx) -> Verdict:
    """The lock file is truncated while this process is inside a write
    transaction: it holds the writer mutex, whose bytes in the lock file
    also hold glibc's robust-list links for this thread.  The commit must be
    refused, and this thread's later writes (through a rebuilt lock file)
    must work."""
    ctx.stage("open")
    with Environment(ctx.path) as env:
        verdict = ctx.use(env, "a")
        if verdict[0] != INTACT:
            return verdict
        size = ctx.rng.choice([0, 64, 80, 90, 96, 100, 104, 128, 200, LOCK_SLOTS])
        try:
            with env.write() as txn:
                txn.put(LOCK_TABLE, b"refused", b"v")
                os.truncate(ctx.lock, size)
                ctx.after(f"lock file truncated to {size} inside a write transaction")
        except StorageError:
            pass  # refused: right
        else:
            ctx.written.append(b"refused")
    ctx.stage("reopen")
    for name in ("b", "c"):
        with Environment(ctx.path) as env2:
            verdict = ctx.use(env2, name)
            if verdict[0] != INTACT:
                return verdict
    return INTACT, ""


def data_truncated_in_use(ctx: LockCtx) -> Verdict:
    """The data file is truncated by another program while this process has
    it mapped, with a snapshot open: the lost pages must give typed errors
    (the SIGBUS guard, csrc/sigbus.c), never a crash or zeros as data."""
    ctx.stage("open")
    with Environment(ctx.path) as env:
        verdict = ctx.use(env, "a")
        if verdict[0] != INTACT:
            return verdict
        size = os.path.getsize(ctx.path)
        pages = size // 4096
        cut = ctx.rng.choice([0, 4096, 2 * 4096, pages // 2 * 4096, (pages - 1) * 4096])
        with env.read() as snap:
            os.truncate(ctx.path, cut)
            ctx.after(f"data file truncated to {cut} of {size} bytes under a snapshot")
            got = {t: dict(snap.scan(t)) for t in snap.tables()}
            want = dict(ctx.base.expected)
            want[LOCK_TABLE] = {k: b"v" for k in ctx.written}
            if got != want:
                return WRONG, "a snapshot read other data than the file held, without an error"
        return ctx.use(env, "a")


def second_then_first(ctx: LockCtx, env: Environment) -> Verdict:
    """After damage to a lock file in use: a second opener works or is
    refused with a typed error; either way the first handle goes on."""
    try:
        with Environment(ctx.path) as env2:
            verdict = ctx.use(env2, "b")
            if verdict[0] != INTACT:
                return verdict
    except StorageError:
        pass  # refusing the second opener is right; the first must go on
    ctx.stage("first opener goes on")
    return ctx.use(env, "a")


def lock_max_readers_in_use(ctx: LockCtx) -> Verdict:
    """A bad max_readers in a lock file in use: a second opener and the
    first one keep working or get a typed error."""
    ctx.stage("open")
    with Environment(ctx.path) as env:
        value = ctx.rng.choice([0, 1, 65537, 1 << 20, 0x7FFFFFFF, 0xFFFFFFFF])
        ctx.poke(LOCK_MAX_READERS, "<I", value)
        ctx.after(f"second opener with max_readers={value:#x}")
        return second_then_first(ctx, env)


def _dead_tid() -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - exits at once
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def lock_forged_writer(ctx: LockCtx) -> Verdict:
    """The writer mutex claims to be held by a thread that is dead, or that
    is alive but no realmpy writer: writers must not wait forever."""
    ctx.stage("open")
    with Environment(ctx.path) as env:
        dead = ctx.rng.random() < 0.5
        tid = _dead_tid() if dead else os.getppid()
        # glibc's pthread_mutex_t: __lock (the futex word: the owner's tid
        # for a robust mutex) at 0, __owner at 8.
        ctx.poke(LOCK_MUTEX, "<I", tid)
        ctx.poke(LOCK_MUTEX + 8, "<I", tid)
        ctx.poke(LOCK_WRITER_TID, "<Q", tid)
        ctx.after(f"write with the mutex forged to {'dead' if dead else 'live foreign'} tid {tid}")
        return ctx.use(env, "a")


def lock_header_in_use(ctx: LockCtx) -> Verdict:
    """Garbage in a header field of a lock file in use; then a second opener."""
    ctx.stage("open")
    with Environment(ctx.path) as env:
        off = ctx.rng.choice([0, 8, 12, 16, 20])
        ctx.poke(off, "<I", ctx.rng.getrandbits(32))
        ctx.after(f"second opener, lock header bytes {off}..{off + 4} garbage")
        return second_then_first(ctx, env)


def lock_deleted_in_use(ctx: LockCtx) -> Verdict:
    """The lock file is deleted (or moved away) while one handle has it open
    and a second handle then opens the file: both write in turns; every
    acknowledged commit must survive, or a write must be refused."""
    ctx.stage("open")
    with Environment(ctx.path) as env1:
        verdict = ctx.use(env1, "a")
        if verdict[0] != INTACT:
            return verdict
        if ctx.rng.random() < 0.5:
            os.unlink(ctx.lock)
            how = "deleted"
        else:
            os.rename(ctx.lock, ctx.lock + ".old")
            how = "moved away"
        ctx.after(f"lock file {how}; second opener")
        with Environment(ctx.path) as env2:
            for _i in range(10):
                verdict = ctx.use(env1, "a")
                if verdict[0] == INTACT:
                    verdict = ctx.use(env2, "b")
                if verdict[0] != INTACT:
                    return verdict
    ctx.stage("reopen")
    with Environment(ctx.path) as env:
        return ctx.use(env, "c")


def lock_shared_state_in_use(ctx: LockCtx) -> Verdict:
    """Garbage in the shared version, the meta ring or a reader slot while
    in use: later snapshots and writes of this and a second opener."""
    ctx.stage("open")
    with Environment(ctx.path) as env:
        rng = ctx.rng
        off = rng.choice(
            [128, 136, 192 + 64 * rng.randrange(16) + 8 * rng.randrange(8), LOCK_SLOTS]
        )
        value = rng.choice([0, 1, 1 << 40, rng.getrandbits(64)])
        ctx.poke(off, "<Q", value)
        ctx.after(f"use after lock file byte {off} := {value:#x}")
        verdict = ctx.use(env, "a")
        if verdict[0] != INTACT:
            return verdict
        with Environment(ctx.path) as env2:
            return ctx.use(env2, "b")


LockScenario = Callable[[LockCtx], Verdict]
# name -> (base file kind, scenario)
LOCK_SCENARIOS: dict[str, tuple[str, LockScenario]] = {
    "lock.symlink": ("storage", lock_symlink),
    "lock.symlink-session": ("objects", lock_symlink_session),
    "lock.garbage-stale": ("storage", lock_garbage_stale),
    "lock.truncated-in-use": ("storage", lock_truncated_in_use),
    "lock.max-readers-in-use": ("storage", lock_max_readers_in_use),
    "lock.forged-writer": ("storage", lock_forged_writer),
    "lock.header-in-use": ("storage", lock_header_in_use),
    "lock.deleted-in-use": ("storage", lock_deleted_in_use),
    "lock.shared-state-in-use": ("storage", lock_shared_state_in_use),
    "lock.truncated-in-write": ("storage", lock_truncated_in_write),
    "lock.data-truncated-in-use": ("storage", data_truncated_in_use),
}


RoundBody = Callable[[Round, Base, str, Stage], Verdict]


def run_round(rnd: Round, base: Base, path: str, stage: Stage) -> Verdict:
    """What a child does with the (damaged) file at ``path``."""
    if rnd.suite == "lock":
        ctx = LockCtx(random.Random(rnd.seed * 31 + 7), path, base, stage)
        return LOCK_SCENARIOS[rnd.mutation][1](ctx)
    fn = round_objects if rnd.kind == "objects" else round_storage
    return fn(path, base, rnd.mode, stage)
