"""The seed scenario end to end, agent takeover, and offline-first with SIGKILLs (real processes, real server),
each against a SQLite and a PostgreSQL store.

Every wait is a condition with a deadline (a process's JSON event, the
server's health); nothing sleeps to pass.
"""

from __future__ import annotations

import os
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
from tests.sync.processes import Proc


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
