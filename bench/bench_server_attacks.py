"""The hostile-user requests of issue 11 against a real server, and /health meanwhile.

Starts ``realmpy-server`` (SQLite) with owner rules on ``Task`` and a
world-readable ``Note``, logs in two anonymous users A and B, and replays:

- ``oracle``: A's task links to B's; A subscribes ``parent.secret BEGINSWITH $0``
  and guesses B's secret one character at a time from whether her own task
  is downloaded → probes made and what was extracted;
- ``draft``: B writes ``draft-secret-K3`` on one device and ``final text`` on
  another; reader A bootstraps → whether the draft is in the bytes she gets;
- ``like``: a task titled ``a`` x ``--like-chars`` and the subscription
  ``title LIKE '*a*a*a*a*a*a*a*a*a*b'`` → the download's time;
- ``depth``: subscriptions of 1,500 nested parentheses, ``NOT`` x 1000 and
  ``!`` x 3000, and one naming an unknown property → status and error code;
- ``bootstrap``: ``--objects`` tasks of A, then a fresh subscription
  downloaded in one batch → the download's time.

Meanwhile another process polls ``GET /health`` every 5 ms; at the end each
phase prints its duration and the max, p99 and median /health latency.  Run it on two trees to compare (the server
subprocess imports ``realmpy`` from ``PYTHONPATH``):

    PYTHONPATH=/path/to/tree python bench/bench_server_attacks.py [--like-chars 34 --objects 20000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import secrets
import statistics
import string
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from realmpy.server.testing import run_server
from realmpy.sync.protocol import pack, unpack

P = "/api/v1/app/default"
CONFIG = """
app_id = "default"
[auth]
anonymous = true
scrypt_n = 1024

[schema.Task]
primary_key = "id"
fields = { id = "int", owner_id = "string", secret = "string?", title = "string?", parent = "link:Task?" }

[schema.Note]
primary_key = "id"
fields = { id = "int", owner_id = "string", body = "string?" }

[rules]
read = "FALSEPREDICATE"
write = "FALSEPREDICATE"

[rules.Task]
read = "owner_id == %user.id"
write = "owner_id == %user.id"

[rules.Note]
read = "TRUEPREDICATE"
write = "owner_id == %user.id"
"""


class Device:
    """One logged-in file of a user."""

    def __init__(self, base: str, same_user_as: Device | None = None) -> None:
        self.http = httpx.Client(base_url=base, timeout=120)
        self.tok, self.user_id = "", ""
        if same_user_as is None:
            login = self.post("/auth/login", {"provider": "anonymous"})[1]
            self.tok, self.user_id = login["access_token"], login["user_id"]
        else:
            self.tok, self.user_id = same_user_as.tok, same_user_as.user_id
        self.f = self.post("/sync/ident", {"nonce": secrets.token_hex(8)})[1]
        self.cv = self.qv = 0

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        h = {"content-type": "application/msgpack"}
        if self.tok:
            h["authorization"] = f"Bearer {self.tok}"
        r = self.http.post(P + path, content=pack(body), headers=h)
        return r.status_code, unpack(r.content)

    def ident(self) -> dict[str, Any]:
        return {"file_ident": self.f["file_ident"], "salt": self.f["salt"]}

    def upload(self, ops: list[Any], base: int = 0) -> Any:
        self.cv += 1
        now = int(time.time() * 1000)
        cs = {"client_version": self.cv, "base_server_version": base, "timestamp": now, "ops": ops}
        return self.post("/sync/upload", {**self.ident(), "changesets": [cs]})

    def subscribe(self, table: str, query: str, *args: Any) -> tuple[int, Any]:
        self.qv += 1
        body = {**self.ident(), "query_version": self.qv, "queries": {table: [[query, list(args)]]}}
        return self.post("/sync/subscriptions", body)

    def bootstrap(self) -> tuple[bytes, Any]:
        body = {**self.ident(), "after_server_version": 0, "max_bytes": 64 << 20}
        r = self.http.post(
            P + "/sync/download",
            content=pack(body),
            headers={"content-type": "application/msgpack", "authorization": f"Bearer {self.tok}"},
        )
        out = unpack(r.content)
        if r.status_code != 200:
            raise RuntimeError(out)
        return r.content, out


def _poll_health(base: str, stop: Any, out: Any) -> None:
    """In a child process (so the attack client's own work never delays a poll):
    GET /health every 5 ms; send back [(wall-clock start, latency)]."""
    http = httpx.Client(base_url=base, timeout=60)
    samples: list[tuple[float, float]] = []
    while not stop.is_set():
        t0, t = time.time(), time.perf_counter()
        http.get("/health")
        samples.append((t0, time.perf_counter() - t))
        stop.wait(0.005)
    out.send(samples)


class HealthProbe:
    """Polls /health from a child process; ``phase()`` marks one phase's time span."""

    def __init__(self, base: str) -> None:
        self.stop = multiprocessing.Event()
        self.recv, send = multiprocessing.Pipe(duplex=False)
        self.proc = multiprocessing.Process(target=_poll_health, args=(base, self.stop, send))
        self.proc.start()
        self.phases: list[tuple[str, float, float]] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.time()
        yield
        self.phases.append((name, t0, time.time()))

    def report(self) -> None:
        """Stop polling; print each phase's duration and /health latency while it ran."""
        self.stop.set()
        samples: list[tuple[float, float]] = self.recv.recv()
        self.proc.join()
        for name, t0, t1 in self.phases:
            s = sorted(lat for start, lat in samples if t0 <= start <= t1)
            p99 = s[min(len(s) - 1, int(len(s) * 0.99))] if s else float("nan")
            med = statistics.median(s) if s else float("nan")
            print(
                f"  [{name}] took {(t1 - t0) * 1000:.0f} ms; /health max "
                f"{max(s, default=float('nan')) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
                f"median {med * 1000:.1f} ms ({len(s)} polls)"
            )


def task(pk: int, owner: str, **fields: Any) -> list[list[Any]]:
    ops: list[list[Any]] = [[0, "Task", pk], [2, "Task", pk, "owner_id", owner]]
    return ops + [[2, "Task", pk, k, v] for k, v in fields.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--like-chars", type=int, default=34)
    ap.add_argument("--objects", type=int, default=20_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "server.toml"
        cfg.write_text(CONFIG)
        with run_server(Path(tmp), config=cfg) as (base, _proc):
            a, b = Device(base), Device(base)
            probe = HealthProbe(base)
            with probe.phase("idle"):
                time.sleep(1.0)  # a baseline: nothing but /health for one second

            print("oracle: A's task 1 links to B's task 2; A probes parent.secret BEGINSWITH $0")
            b.upload(task(2, b.user_id, secret="K3-topsecret"))
            a.upload(task(1, a.user_id, parent=2))
            known, probes = "", 0
            alphabet = string.ascii_letters + string.digits + "-_"
            with probe.phase("oracle"):
                while len(known) < 20:
                    for ch in alphabet:
                        probes += 1
                        status, res = a.subscribe("Task", "parent.secret BEGINSWITH $0", known + ch)
                        got = {e[2] for e in a.bootstrap()[1]["entries"] if e[0] == "state"}
                        if 1 in got:
                            known += ch
                            break
                    else:
                        break
            print(f"  {probes} probes, extracted {known!r}")

            print("draft: B overwrites 'draft-secret-K3' from a second device; reader A bootstraps")
            b2 = Device(base, same_user_as=b)
            b.upload([[0, "Note", 1], [2, "Note", 1, "owner_id", b.user_id]])
            b.upload([[2, "Note", 1, "body", "draft-secret-K3"]])
            b2.subscribe("Note", "TRUEPREDICATE")
            sv = b2.bootstrap()[1]["server_version"]
            b2.upload([[2, "Note", 1, "body", "final text"]], base=sv)
            a.subscribe("Note", "TRUEPREDICATE")
            raw, _ = a.bootstrap()
            print(
                f"  draft in A's download: {b'draft-secret-K3' in raw}; final: {b'final text' in raw}"
            )

            print(f"like: title of {args.like_chars} 'a's, title LIKE '*a*a*a*a*a*a*a*a*a*b'")
            a.upload(task(3, a.user_id, title="a" * args.like_chars))
            a.subscribe("Task", "title LIKE $0", "*a*a*a*a*a*a*a*a*a*b")
            with probe.phase("like"):
                a.bootstrap()

            print("depth and unknown properties: subscription status, error code")
            for name, q in (
                ("1500 parentheses", "(" * 1500 + "title == 'x'" + ")" * 1500),
                ("NOT x 1000", "NOT " * 1000 + "title == 'x'"),
                ("! x 3000", "!" * 3000 + "title == 'x'"),
                ("unknown property", "nope == 1"),
            ):
                status, res = a.subscribe("Task", q)
                print(f"  {name}: {status} {res.get('error') if isinstance(res, dict) else res}")

            print(f"bootstrap: {args.objects} tasks, one fresh download of all")
            for start in range(100, 100 + args.objects, 2000):
                ops = [
                    op
                    for pk in range(start, min(start + 2000, 100 + args.objects))
                    for op in task(pk, a.user_id, title=f"t{pk}")
                ]
                a.upload(ops)
            a.subscribe("Task", "title BEGINSWITH 't'")
            with probe.phase("bootstrap"):
                count = len(a.bootstrap()[1]["entries"])
            print(f"  {count} objects downloaded")
            print("/health latency per phase (polled every 5 ms from another process):")
            probe.report()


if __name__ == "__main__":
    main()
