"""``realmpy demo``: the multi-process sync scenario, live, on this machine.

What it runs (each box is a separate OS process)::

    secondary-1 ─┐ disconnected_sync                      flexible_sync
    secondary-2 ─┼──▶ laptop/cars.realm ◀── main ──▶ server ──▶ phone/cars.realm ◀── device
                 ┘   (one file, shared)   (sync agent)  (SQLite)   (another device)

The secondaries write cars into the laptop's file without any network code;
the main process (the only sync agent of that file) notices each commit
through the shared version counter and uploads it; the device, logged in as
the same user elsewhere, receives every car, writes a few of its own, and
those come back down to the laptop, where the secondaries see them by
auto-refresh.  The demo prints progress as it goes and, at the end, what
moved where and how long it took (commit-to-visible latencies measured with
the machine's clock, which every process shares).

Why in the package rather than in ``examples/``: it is the README's first
command after installation, so it must work from an installed wheel.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from typing import Any, TextIO

from realmpy.config import Configuration
from realmpy.objectid import ObjectId
from realmpy.schema import Object, field

__all__ = ["Car", "main", "run_role"]

APP_ID = "demo"
EMAIL = "demo@example.com"


class Car(Object):
    """The demo's model: who wrote it, and when (µs since the epoch) it was committed."""

    id: ObjectId = field(primary_key=True, default_factory=ObjectId)
    make: str = field(indexed=True)
    origin: str = field(indexed=True)
    miles: int = 0
    written_us: int = 0


def _now_us() -> int:
    return time.time_ns() // 1000


def _emit(event: str, **kw: Any) -> None:
    print(json.dumps({"event": event, **kw}), flush=True)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


# ----------------------------------------------------------------------------- roles (child processes)


def _login(appdir: str, base: str, password: str) -> Any:
    from realmpy.sync.app import App, AppConfiguration, Credentials

    app = App(AppConfiguration(APP_ID, base, base_file_path=appdir, long_poll_seconds=10))
    return app.log_in(Credentials.email_password(EMAIL, password))


def _role_main(path: str, appdir: str, base: str, password: str) -> None:
    from realmpy.realm import Realm

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    realm = Realm(Configuration.flexible_sync(_login(appdir, base, password), [Car], path=path))
    with realm.subscriptions.update() as subs:
        subs.add(realm.all(Car), name="all cars")
    session = realm.sync_session
    _emit("role", role=session.role)

    def progress(p: Any) -> None:
        _emit("upload", acked=p.transferred, total=p.transferable)

    token = session.add_progress_listener("upload", "report_indefinitely", progress)
    stop.wait()
    token.remove()
    realm.close()


def _role_secondary(path: str, name: str, count: int, expect_device: int) -> None:
    from realmpy.realm import Realm

    realm = Realm(Configuration.disconnected_sync([Car], path=path))
    seen: dict[str, float] = {}
    lock = threading.Lock()
    done = threading.Event()

    def note(cars: Any) -> None:
        now = _now_us()
        with lock:
            for car in cars:
                seen.setdefault(str(car.id), (now - car.written_us) / 1000.0)
            if len(seen) >= expect_device:
                done.set()

    results = realm.query(Car, "origin == 'device'")
    token = results.add_listener(lambda res, changes: note(res))  # runs on the notifier thread
    note(results)
    _emit("listening")
    t0 = time.monotonic()
    for i in range(count):
        with realm.write():
            realm.add(
                Car(
                    make=("VW", "Fiat", "Volvo", "Kia")[i % 4],
                    origin=name,
                    miles=i,
                    written_us=_now_us(),
                )
            )
    _emit("wrote", n=count, seconds=time.monotonic() - t0)
    ok = done.wait(120) if expect_device else True
    token.remove()
    realm.refresh()
    with lock:
        lat = list(seen.values())
    _emit("seen", ok=ok, n=len(lat), visible=len(results), latencies_ms=lat)
    realm.close()


def _role_device(path: str, appdir: str, base: str, password: str, count: int, expect: int) -> None:
    from realmpy.realm import Realm

    realm = Realm(Configuration.flexible_sync(_login(appdir, base, password), [Car], path=path))
    with realm.subscriptions.update() as subs:
        subs.add(realm.all(Car), name="all cars")
    realm.subscriptions.wait_for_synchronization(timeout=120)
    _emit("subscribed")
    arrivals: dict[str, tuple[str, float]] = {}
    lock = threading.Lock()
    done = threading.Event()
    last_report = [0.0]

    def on_change(res: Any, changes: Any) -> None:
        now = _now_us()
        with lock:
            for i in changes.inserted:
                car = res[i]
                if car.origin != "device":
                    arrivals.setdefault(str(car.id), (car.origin, (now - car.written_us) / 1000.0))
            n = len(arrivals)
        if time.monotonic() - last_report[0] > 0.2 or n >= expect:
            last_report[0] = time.monotonic()
            _emit("received", n=n)
        if n >= expect:
            done.set()

    token = realm.all(Car).add_listener(on_change)
    sys.stdin.readline()  # the demo says "go" once every secondary process listens
    for i in range(count):
        with realm.write():
            realm.add(Car(make="Tesla", origin="device", miles=i, written_us=_now_us()))
    realm.sync_session.wait_for_upload(timeout=120)
    _emit("uploaded", n=count)
    ok = done.wait(180)
    token.remove()
    realm.refresh()
    total = len(realm.all(Car))
    by_origin: dict[str, list[float]] = {}
    with lock:
        for origin, lat in arrivals.values():
            by_origin.setdefault(origin, []).append(lat)
    _emit("done", ok=ok, total=total, latencies=by_origin)
    realm.close()


def run_role(argv: Sequence[str]) -> None:
    """Entry of a demo child process: ``realmpy demo --role ROLE ARGS...``."""
    role, *a = argv
    if role == "main":
        _role_main(a[0], a[1], a[2], a[3])
    elif role == "secondary":
        _role_secondary(a[0], a[1], int(a[2]), int(a[3]))
    elif role == "device":
        _role_device(a[0], a[1], a[2], a[3], int(a[4]), int(a[5]))
    else:
        raise SystemExit(f"unknown demo role {role!r}")


# ----------------------------------------------------------------------------- orchestrator


class _Child:
    def __init__(
        self,
        label: str,
        args: list[str],
        events: queue.Queue[tuple[str, dict[str, Any]]],
        logdir: str,
    ) -> None:
        self.label = label
        self.log = open(os.path.join(logdir, f"{label}.log"), "w")
        # cwd=logdir: `python -m` puts the working directory first on sys.path,
        # and run from a source checkout that would import its uncompiled
        # realmpy instead of the installed one.
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "realmpy", "demo", "--role", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            cwd=logdir,
        )
        self.events = events
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            try:
                self.events.put((self.label, json.loads(line)))
            except ValueError:
                pass
        self.events.put((self.label, {"event": "exit", "code": self.popen.wait()}))

    def go(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write("go\n")
        self.popen.stdin.flush()

    def wait_for(self, event: str, timeout: float = 120) -> dict[str, Any]:
        """Consume this child's events until ``event`` (others are re-queued for the main loop)."""
        deadline = time.monotonic() + timeout
        held: list[tuple[str, dict[str, Any]]] = []
        try:
            while time.monotonic() < deadline:
                try:
                    label, e = self.events.get(timeout=0.5)
                except queue.Empty:
                    continue
                if label == self.label and e["event"] == event:
                    return e
                if label == self.label and e["event"] == "exit":
                    raise RuntimeError(f"{self.label} exited (code {e['code']}) before {event!r}")
                held.append((label, e))
            raise RuntimeError(f"{self.label}: no {event!r} within {timeout}s")
        finally:
            for item in held:
                self.events.put(item)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log.close()


def _start_server(data: str, port: int, logdir: str) -> subprocess.Popen[bytes]:
    log = open(os.path.join(logdir, "server.log"), "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "realmpy.server.cli",
            "--data",
            data,
            "--port",
            str(port),
            "--app-id",
            APP_ID,
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=log,
        cwd=logdir,
    )  # not the caller's directory: see _Child
    log.close()
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}; see {logdir}/server.log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the server did not start in 60 s; see {logdir}/server.log")
        time.sleep(0.05)  # a subprocess's readiness has no event to wait on


def _help_text(doc: str) -> str:
    """The module docstring as ``--help`` shows it: its reST markup (literals,
    the ``::`` before the diagram) as plain text, without the last paragraph
    (which is for readers of the source)."""
    paragraphs = doc.strip().split("\n\n")[:-1]
    return "\n\n".join(paragraphs).replace("``", "").replace("::", ":")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the demo; returns the exit status (0 when every object arrived everywhere)."""
    import argparse

    p = argparse.ArgumentParser(
        prog="realmpy demo",
        description=_help_text(__doc__ or ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--secondaries", type=int, default=2, help="secondary processes writing (default 2)"
    )
    p.add_argument(
        "--objects", type=int, default=200, help="cars each secondary writes (default 200)"
    )
    p.add_argument(
        "--device-objects", type=int, default=20, help="cars the other device writes (default 20)"
    )
    p.add_argument(
        "--keep", metavar="DIR", help="keep all files (realms, logs, server data) in DIR"
    )
    p.add_argument("--role", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role:
        run_role(args.role)
        return 0
    w = out or sys.stdout

    def say(text: str = "") -> None:
        print(text, file=w, flush=True)

    try:
        import uvicorn  # noqa: F401
    except ImportError:
        say("realmpy demo needs the server's dependencies: pip install 'realmpy[server]'")
        return 2
    root = os.path.abspath(args.keep) if args.keep else tempfile.mkdtemp(prefix="realmpy-demo-")
    for d in ("server", "laptop", "phone", "logs"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    logs = os.path.join(root, "logs")
    n_sec, n_obj, n_dev = args.secondaries, args.objects, args.device_objects
    laptop = os.path.join(root, "laptop", "cars.realm")
    phone = os.path.join(root, "phone", "cars.realm")
    from realmpy.server.testing import free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    say("realmpy demo — one synced realm file shared by several processes")
    say(f"  files in {root}")
    t_start = time.monotonic()
    server = _start_server(os.path.join(root, "server"), port, logs)
    t_server = time.monotonic() - t_start
    say(f"  server       {base}  (SQLite store, development mode)  ready in {t_server:.2f}s")
    children: list[_Child] = []
    events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
    status = 1
    try:
        from realmpy.sync.app import App, AppConfiguration

        password = secrets.token_urlsafe(12)
        App(
            AppConfiguration(APP_ID, base, base_file_path=os.path.join(root, "laptop", "app"))
        ).email_password_auth.register_user(EMAIL, password)
        say(f"  user         {EMAIL} (registered; logged in on the laptop and on the phone)")
        main_p = _Child(
            "main",
            ["main", laptop, os.path.join(root, "laptop", "app"), base, password],
            events,
            logs,
        )
        children.append(main_p)
        say(f"  main         pid {main_p.popen.pid}  flexible_sync     {laptop}")
        role = main_p.wait_for("role")
        say(
            f"  [{time.monotonic() - t_start:6.2f}s] main process is the sync agent of the laptop file ({role['role']})"
        )
        device = _Child(
            "device",
            [
                "device",
                phone,
                os.path.join(root, "phone", "app"),
                base,
                password,
                str(n_dev),
                str(n_sec * n_obj),
            ],
            events,
            logs,
        )
        children.append(device)
        say(
            f"  device       pid {device.popen.pid}  flexible_sync     {phone}  (another device; writes {n_dev} cars)"
        )
        device.wait_for("subscribed")
        say(
            f"  [{time.monotonic() - t_start:6.2f}s] device subscribed to all cars (bootstrap complete)"
        )
        secs = []
        for i in range(n_sec):
            label = f"secondary-{i + 1}"
            secs.append(
                _Child(label, ["secondary", laptop, label, str(n_obj), str(n_dev)], events, logs)
            )
            say(
                f"  {label:<12} pid {secs[-1].popen.pid}  disconnected_sync {laptop}  (writes {n_obj} cars)"
            )
        children.extend(secs)
        for c in secs:
            c.wait_for("listening")
        t_go = time.monotonic()
        device.go()
        say(
            f"  [{t_go - t_start:6.2f}s] go: secondaries write on the laptop, the device writes on the phone"
        )
        say()
        expected = n_sec * n_obj
        wrote: dict[str, float] = {}
        seen: dict[str, dict[str, Any]] = {}
        done: dict[str, Any] | None = None
        t_all_written = t_device_has_all = 0.0
        received = acked = 0
        last_line = ""
        last_print = 0.0
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                label, e = events.get(timeout=0.5)
            except queue.Empty:
                continue
            ev = e["event"]
            if ev == "wrote":
                wrote[label] = e["seconds"]
                say(
                    f"  [{time.monotonic() - t_start:6.2f}s] {label} committed {e['n']} cars in {e['seconds']:.2f}s"
                )
                if len(wrote) == n_sec:
                    t_all_written = time.monotonic() - t_start
            elif ev == "upload":
                acked = e["acked"]
            elif ev == "received":
                received = e["n"]
                if received >= expected and not t_device_has_all:
                    t_device_has_all = time.monotonic() - t_start
            elif ev == "seen":
                seen[label] = e
            elif ev == "done":
                done = e
            elif ev == "exit" and e["code"] not in (0, -signal.SIGTERM) and label != "main":
                say(f"  {label} failed (exit {e['code']}); see {logs}/{label}.log")
                break
            line = f"laptop→server {acked} changesets acknowledged; phone has {received}/{expected} laptop cars"
            now = time.monotonic()
            if (
                ev in ("upload", "received")
                and line != last_line
                and (now - last_print > 0.25 or received >= expected)
            ):
                last_line, last_print = line, now
                say(f"  [{now - t_start:6.2f}s] progress: {line}")
            # The end: every process reported, and the laptop's file has recorded the server's
            # acknowledgement of every car (the phone may hold a car before the ack reaches the
            # laptop: it travels on the upload's answer), so the last line agrees with the phone.
            if done is not None and len(seen) == n_sec and acked >= expected:
                break
        final = f"laptop→server {acked} changesets acknowledged; phone has {received}/{expected} laptop cars"
        if final != last_line:
            say(f"  [{time.monotonic() - t_start:6.2f}s] progress: {final}")
        say()
        if done is None or len(seen) != n_sec:
            say(f"  the demo did not finish in time; logs are in {logs}")
            return 1
        lat = [x for origin, xs in done["latencies"].items() for x in xs]
        back = [x for s in seen.values() for x in s["latencies_ms"]]
        total_elapsed = time.monotonic() - t_start
        say("What moved where")
        for origin, xs in sorted(done["latencies"].items()):
            say(f"  {origin}: {len(xs)} cars  laptop file → main process → server → phone")
        say(
            f"  device: {n_dev} cars  phone → server → main process → laptop file → "
            f"{n_sec} secondary process(es) by auto-refresh"
        )
        say(
            f"  phone file holds {done['total']} cars ({expected} from the laptop + {n_dev} of its own)"
        )
        say()
        say("How long it took")
        say(f"  server start                         {t_server:8.2f} s")
        say(
            f"  secondaries' writes done             {t_all_written - (t_go - t_start):8.2f} s after go"
        )
        say(
            f"  all laptop cars on the phone         {t_device_has_all - (t_go - t_start):8.2f} s after go"
        )
        say(
            f"  commit in a secondary → on phone     p50 {_pct(lat, 0.5):7.1f} ms   p99 {_pct(lat, 0.99):7.1f} ms"
        )
        say(
            f"  commit on phone → seen by secondary  p50 {_pct(back, 0.5):7.1f} ms   p99 {_pct(back, 0.99):7.1f} ms"
        )
        say(
            f"  throughput secondaries → phone       {expected / max(1e-9, t_device_has_all - (t_go - t_start)):8.0f} cars/s"
            "  (each car is its own durable transaction)"
        )
        say(f"  total                                {total_elapsed:8.2f} s")
        ok = (
            done["ok"]
            and done["total"] == expected + n_dev
            and all(s["ok"] and s["n"] == n_dev and s["visible"] == n_dev for s in seen.values())
        )
        say()
        say("OK: every car reached every process." if ok else "FAILED: some cars did not arrive.")
        status = 0 if ok else 1
        return status
    finally:
        for c in children:
            c.stop()
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        if not args.keep and status == 0:
            shutil.rmtree(root, ignore_errors=True)
        elif not args.keep:
            print(f"  files kept for inspection in {root}", file=w)


if __name__ == "__main__":
    sys.exit(main())
