"""The seed scenario end to end, agent takeover, and offline-first with SIGKILLs (real processes, real server),
each against a SQLite and a PostgreSQL store.

Every wait is a condition with a deadline (a process's JSON event, the
server's health); nothing sleeps to pass.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip(
    "uvicorn", reason="the server extra is not installed: pip install -e '.[test,server]'"
)

from realmpy.server.testing import free_port
from tests.sync.processes import DEADLINE, Proc


class Server:
    """``realmpy-server`` (SQLite, or PostgreSQL at ``database``) on a fixed loopback port that can be
    killed and restarted (a restart keeps the store: the data directory or the database)."""

    def __init__(self, data: Path, database: str | None = None) -> None:
        self.data = data
        self.database = database
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.data / "server.log", "ab")
        self.popen = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "realmpy.server.cli",
                "--data",
                str(self.data),
                "--port",
                str(self.port),
                "--app-id",
                "demo",
                "--log-level",
                "warning",
                *(["--database", self.database] if self.database else []),
            ],
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + 60
        while True:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"server exited: {(self.data / 'server.log').read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start")
            time.sleep(0.05)  # readiness of a subprocess: no event to wait on

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(30)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def server(database: str | None, tmp_path: Path) -> Iterator[Server]:
    """A server on each store kind (``database`` from tests/conftest.py)."""
    data = tmp_path / "server"
    data.mkdir()
    s = Server(data, database)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _contents(path: Path) -> list[tuple[str, int]]:
    """(make, seq) of every car in a synced file, read here as a secondary process would."""
    from realmpy.config import Configuration
    from realmpy.realm import Realm
    from tests.sync.sync_worker import Car

    with Realm(Configuration.disconnected_sync([Car], path=path)) as realm:
        return sorted((c.make, c.seq) for c in realm.all(Car))


def test_seed_scenario(tmp_path: Path, server: Server, procs: list[Proc]) -> None:
    """Main (flexible_sync) + two concurrent secondaries (disconnected_sync) + another device."""
    file_a = str(tmp_path / "a" / "cars.realm")
    os.makedirs(os.path.dirname(file_a))
    main = Proc("main", file_a, str(tmp_path / "app-a"), server.base)
    procs.append(main)
    main.wait_for("role", lambda e: e["role"] == "agent")
    s1 = Proc("secondary", file_a, "s1", "25", "5")
    s2 = Proc("secondary", file_a, "s2", "25", "5")
    procs += [s1, s2]
    device = Proc(
        "device", str(tmp_path / "b.realm"), str(tmp_path / "app-b"), server.base, "5", "55"
    )
    procs.append(device)
    done = device.wait_for("done")
    assert done["ok"] and done["unique"], done
    assert done["makes"] == {"s1": 25, "s2": 25, "device": 5}
    for s in (s1, s2):
        # The secondary's sync_session: a view of the agent process (README: "in every process").
        up = s.wait_for("uploaded")
        assert up["role"] == "secondary" and up["agent_pid"] == main.popen.pid, up
        assert up["state"] == "connected" and up["session"] == "active", up
        seen = s.wait_for("seen")
        assert seen["ok"] and seen["device_cars"] == 5, seen  # the device's writes, by auto-refresh
        assert seen["refresh_async"] in (True, False)
    main.stop()
    assert _contents(Path(file_a)) == _contents(tmp_path / "b.realm")


def test_agent_takeover_after_sigkill(tmp_path: Path, server: Server, procs: list[Proc]) -> None:
    """A second flexible_sync opener stands by, and takes over when the agent is SIGKILLed."""
    file_a = str(tmp_path / "cars.realm")
    appdir = str(tmp_path / "app-a")
    m1 = Proc("main", file_a, appdir, server.base)
    procs.append(m1)
    m1.wait_for("role", lambda e: e["role"] == "agent")
    m1.wait_for("conn", lambda e: e["state"] == "connected")
    m2 = Proc("main", file_a, appdir, server.base)
    procs.append(m2)
    # A freshly opened standby knows it is one and reports the agent's real state at once.
    opened = m2.wait_for("open")
    assert opened["role"] == "standby" and opened["state"] == "connected", opened
    assert opened["agent_pid"] == m1.popen.pid, opened
    # The standby reports the agent's connection (published by the agent), not its own idle one.
    agent_pid = m1.popen.pid
    m2.wait_for(
        "conn",
        lambda e: (
            e["role"] == "standby" and e["state"] == "connected" and e["agent_pid"] == agent_pid
        ),
    )
    server.kill()
    m2.wait_for("conn", lambda e: e["role"] == "standby" and e["state"] != "connected")
    server.start()
    n = len(m2.seen)
    m2.wait_for(
        "conn",
        lambda e: (
            e["role"] == "standby"
            and e["state"] == "connected"
            and any(x is e for x in m2.seen[n:])
        ),
    )
    w1 = Proc("writer", file_a, "before", "10")
    procs.append(w1)
    w1.wait_for("progress", lambda e: e["n"] == 10)
    m1.kill()
    m2.wait_for("role", lambda e: e["role"] == "agent")
    w2 = Proc("writer", file_a, "after", "10")
    procs.append(w2)
    device = Proc(
        "device", str(tmp_path / "b.realm"), str(tmp_path / "app-b"), server.base, "0", "20"
    )
    procs.append(device)
    done = device.wait_for("done")
    assert done["ok"] and done["unique"] and done["makes"] == {"before": 10, "after": 10}, done


def test_offline_first_with_sigkills(tmp_path: Path, server: Server, procs: list[Proc]) -> None:
    """Server down: writes go on; main, a secondary and the server are SIGKILLed; everything converges once."""
    file_a = str(tmp_path / "cars.realm")
    appdir = str(tmp_path / "app-a")
    main = Proc("main", file_a, appdir, server.base)
    procs.append(main)
    main.wait_for("role", lambda e: e["role"] == "agent")
    # Uploads in flight when the server dies.
    w0 = Proc("writer", file_a, "w0", "30")
    procs.append(w0)
    w0.wait_for("progress", lambda e: e["n"] >= 5)
    server.kill()
    w0.wait_for("progress", lambda e: e["n"] == 30)
    # Offline: a secondary writes, another is SIGKILLed mid-write, the main process is SIGKILLed.
    w1 = Proc("writer", file_a, "w1", "20")
    procs.append(w1)
    w2 = Proc("writer", file_a, "w2", "100000")
    procs.append(w2)
    w2.wait_for("progress", lambda e: e["n"] >= 10)
    w2.kill()
    main.kill()
    w1.wait_for("progress", lambda e: e["n"] == 20)
    before = _contents(Path(file_a))
    counts = {m: sum(1 for mk, _ in before if mk == m) for m in ("w0", "w1", "w2")}
    assert counts["w0"] == 30 and counts["w1"] == 20 and counts["w2"] >= 10
    # Back online: a new main process takes over from the persisted cursors.
    server.start()
    main2 = Proc("main", file_a, appdir, server.base)
    procs.append(main2)
    main2.wait_for("role", lambda e: e["role"] == "agent")
    total = len(before)
    device = Proc(
        "device", str(tmp_path / "b.realm"), str(tmp_path / "app-b"), server.base, "0", str(total)
    )
    procs.append(device)
    done = device.wait_for("done")
    assert done["ok"] and done["unique"] and done["total"] == total, done
    main2.stop()
    assert _contents(tmp_path / "b.realm") == before


def _settle(path: Path) -> None:
    """Take the write lock of ``path`` once: if a writer was SIGKILLed holding it, the repair
    publishes (or discards) its last commit now, so what this test reads next is final (readers
    alone would still see the version before it while the agent may already upload it)."""
    from realmpy.config import Configuration
    from realmpy.realm import Realm
    from tests.sync.sync_worker import CHAOS_MODELS

    with Realm(Configuration.disconnected_sync(CHAOS_MODELS, path=path)) as realm, realm.write():
        pass


def _cursors(path: Path) -> dict[str, object]:
    """The sync cursors of a file (for failure messages)."""
    from realmpy.storage import Environment
    from realmpy.sync.history import Meta

    env = Environment(str(path))
    try:
        with env.read() as snap:
            m = Meta(snap)
            return {"cv": m.cv(), "acked": m.acked(), "dl": m.download(), "ident": m.ident()}
    finally:
        env.close()


def _tally(path: Path) -> int:
    from realmpy.config import Configuration
    from realmpy.realm import Realm
    from tests.sync.sync_worker import CHAOS_MODELS, Tally

    with Realm(Configuration.disconnected_sync(CHAOS_MODELS, path=path)) as realm:
        t = realm.find(Tally, "hits")
        return 0 if t is None else int(t.hits)


def test_chaos(tmp_path: Path, server: Server, procs: list[Proc]) -> None:
    """Seeded chaos: the agent, the standby, secondaries, the second device and the server are
    SIGKILLed at random points of the secondaries' progress while they write; after healing, every
    committed write is on the second device exactly once (no sequence gap or repeat, the shared
    counter equals the number of commits) and both replicas are identical.

    ``REALMPY_CHAOS_ROUNDS`` (default 1) and ``REALMPY_CHAOS_SEED`` (default 12) scale and vary it.
    """
    import random

    rounds = int(os.environ.get("REALMPY_CHAOS_ROUNDS", "1"))
    seed = int(os.environ.get("REALMPY_CHAOS_SEED", "12"))
    rng = random.Random(seed)
    file_a, file_b = str(tmp_path / "a.realm"), str(tmp_path / "b.realm")
    app_a, app_b = str(tmp_path / "app-a"), str(tmp_path / "app-b")
    live: dict[str, Proc] = {}
    kills: dict[str, int] = {}

    env = {**os.environ, "REALMPY_WORKER_TALLY": "1"}  # every process has the Tally model

    def start(name: str) -> None:
        if name.startswith("main"):
            p = Proc("main", file_a, app_a, server.base, env=env)
        elif name.startswith("writer"):
            p = Proc("chaoswriter", file_a, name, env=env)
        else:  # the second device's main process, syncing all the while
            p = Proc("main", file_b, app_b, server.base, env=env)
        procs.append(p)
        live[name] = p

    def progress() -> int:
        """Commits the writers have reported (each writer's latest count)."""
        total = 0
        for name, p in live.items():
            if name.startswith("writer"):
                while not p.events.empty():
                    p.seen.append(p.events.get())
                total += max((e["n"] for e in p.seen if e["event"] == "progress"), default=0)
        return total

    def writers_advance(by: int) -> None:
        target = progress() + by
        deadline = time.monotonic() + DEADLINE
        while progress() < target:
            for name in ("writer-1", "writer-2"):  # a writer that died on its own: say why
                p = live[name]
                assert p.popen.poll() is None, (
                    f"{name} exited with {p.popen.returncode}: {''.join(p.stderr[-20:])}"
                )
            assert time.monotonic() < deadline, "writers made no progress: " + "; ".join(
                f"{n}: {live[n].seen[-2:]} {''.join(live[n].stderr[-10:])}" for n in live
            )
            w = live[rng.choice(["writer-1", "writer-2"])]
            with contextlib.suppress(queue.Empty):
                w.seen.append(w.events.get(timeout=0.5))  # blocks until that writer commits

    t0 = time.monotonic()
    start("main-1")
    # Its user is the app directory's current user from now on: every later main process (and
    # restart) syncs as that user (two first logins at once would make two users, one per file).
    live["main-1"].wait_for("open")
    for name in ("main-2", "writer-1", "writer-2", "device"):
        start(name)
    for _ in range(rounds):
        for _ in range(8):
            writers_advance(rng.randint(2, 12))
            victim = rng.choice(["main-1", "main-2", "writer-1", "writer-2", "device", "server"])
            kills[victim.split("-")[0]] = kills.get(victim.split("-")[0], 0) + 1
            if victim == "server":
                server.kill()
                writers_advance(rng.randint(2, 12))  # writes go on while the server is down
                server.start()
            else:
                live[victim].kill()
                start(victim)
    for name in ("writer-1", "writer-2"):  # stop writing (SIGKILL: maybe mid-commit)
        live.pop(name).kill()
    chaos_s = time.monotonic() - t0
    _settle(Path(file_a))
    # Heal: server and both mains of A up; a device process on B takes over its agent.
    before = _contents(Path(file_a))
    for name in ("writer-1", "writer-2"):
        seqs = [seq for make, seq in before if make == name]
        bad = next((k for k, seq in enumerate(seqs) if seq != k), None)
        assert bad is None, f"{name}: gap or repeat at {bad}: {seqs[max(0, bad - 3) : bad + 3]}"
    total = len(before)
    assert _tally(Path(file_a)) == total
    live.pop("device").stop()
    t1 = time.monotonic()
    device = Proc("device", file_b, app_b, server.base, "0", str(total), env=env)
    procs.append(device)
    try:
        done = device.wait_for("done")
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\nA {total} cars, B {len(_contents(Path(file_b)))}; cursors "
            f"A {_cursors(Path(file_a))}, B {_cursors(Path(file_b))}; A's main processes: "
            + "; ".join(f"{n}: {live[n].seen[-3:]} {''.join(live[n].stderr[-5:])}" for n in live)
        ) from None
    converged_s = time.monotonic() - t1
    after = _contents(Path(file_b))
    missing = sorted(set(before) - set(after))[:10]
    extra = sorted(set(after) - set(before))[:10]
    assert after == before, (
        f"A {total}, B {len(after)}: missing on B {missing}, extra {extra}; {done}"
    )
    assert done["ok"] and done["unique"] and done["tally"] == total, f"A {total}: {done}"
    print(
        f"\nchaos seed {seed}, {rounds} round(s) of 8 kills in {chaos_s:.1f} s: kills {kills}, "
        f"{total} committed writes, all on device B exactly once "
        f"({converged_s:.1f} s after healing)"
    )
