"""Issue 11's hostile-client attacks on a real ``realmpy-server``: what each answers, and what it costs.

Each attack runs against a fresh server subprocess (SQLite; a rate limit or a
slow phase of one attack never leaks into the next) and prints its request
sequence's answers.  The costly phases also print the server's peak-RSS
growth (``VmHWM`` from ``/proc/<pid>/status``, so no sampling can miss the
peak) and ``GET /health``'s p99 and max latency, polled every 5 ms from
another process meanwhile.

Query attacks (owner rules on ``Task``, a world-readable ``Note``, two
anonymous users A and B):

- ``oracle``: A's task links to B's; A subscribes ``parent.secret BEGINSWITH $0``
  and guesses B's secret one character at a time from whether her own task
  is downloaded: probes made and what was extracted;
- ``draft``: B writes ``draft-secret-K3`` on one device and ``final text`` on
  another; reader A bootstraps: whether the draft is in the bytes she gets;
- ``like``: a task titled ``a`` x ``--like-chars`` and the subscription
  ``title LIKE '*a*a*a*a*a*a*a*a*a*b'``: the download's time;
- ``depth``: subscriptions of 1,500 nested parentheses, ``NOT`` x 1000 and
  ``!`` x 3000, and one naming an unknown property: status and error code;
- ``bootstrap``: ``--objects`` tasks of A, then a fresh subscription
  downloaded in one batch.

Transport and authentication attacks (development mode):

- ``tokens``: non-ASCII, deeply nested and 100 KiB bearer tokens;
- ``big_body``: a 15 MiB login body of empty maps (also chunked), a 15 MiB
  upload of the same, one just under the 8 MiB default limit;
- ``valid_upload``: a valid upload of 80,000 ops creating 40,000 objects
  (within the default limits), twice;
- ``logins``: 60 concurrent email/password logins (rate limits lifted: the
  password-hash bound alone), and /health meanwhile;
- ``brute``: 600 wrong passwords for one account, then the right one; 50
  registrations from one address;
- ``slowloris``: 150 connections trickling header bytes at 1 byte/s;
- ``probes``: another user's file ident vs an unknown one;
- ``content``: a login body declared ``text/plain``;
- ``disconnect``: a client that hangs up mid-body (the server log must not
  call it an internal error).

Run it on two trees to compare (the server subprocess imports ``realmpy``
from ``PYTHONPATH``):

    PYTHONPATH=/path/to/tree python bench/bench_server_attacks.py [--only oracle,valid_upload,...]
        [--like-chars 34] [--objects 20000] [--slow-seconds 15]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import multiprocessing
import secrets
import socket
import string
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from realmpy.server.testing import run_server
from realmpy.wire.protocol import pack, unpack

P = "/api/v1/app/default"
MSGPACK = {"content-type": "application/msgpack"}

QUERY_RULES = """
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
"""The query attacks' server: owner rules on Task, a world-readable Note."""

LIFTED = """
[rate_limits]
login_per_account_burst = 100000
login_per_address_burst = 100000
register_per_address_burst = 100000
[rules]
read = "TRUEPREDICATE"
write = "TRUEPREDICATE"
"""
"""A configuration without effective rate limits: measures the password-hash bound alone."""


# --------------------------------------------------------------------------- measuring


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def reset_peak(pid: int) -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def _poll_health(base: str, stop: Any, out: Any) -> None:
    lat: list[float] = []
    with httpx.Client(base_url=base, timeout=60) as c:
        while not stop.is_set():
            t0 = time.perf_counter()
            with contextlib.suppress(httpx.HTTPError):
                c.get("/health")
            lat.append(time.perf_counter() - t0)
            stop.wait(0.005)
    out.send(lat)


@contextlib.contextmanager
def watch_health(base: str) -> Iterator[list[float]]:
    """Poll /health every 5 ms from another process (the attack's threads would otherwise
    share its GIL); yields the list of latencies (s), filled in when the block ends."""
    lat: list[float] = []
    stop = multiprocessing.Event()
    receive, send = multiprocessing.Pipe(duplex=False)
    proc = multiprocessing.Process(target=_poll_health, args=(base, stop, send))
    proc.start()
    try:
        yield lat
    finally:
        stop.set()
        lat.extend(receive.recv())
        proc.join()


def measured(base: str, pid: int, what: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` while watching /health and the server's peak RSS; print both."""
    reset_peak(pid)
    before = peak_rss_kib(pid)
    with watch_health(base) as lat:
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
    after = peak_rss_kib(pid)
    lat.sort()
    p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))] if lat else 0.0
    print(
        f"  {what}: {dt:.2f} s; server peak RSS {before / 1024:.0f} -> {after / 1024:.0f} MiB "
        f"(+{(after - before) / 1024:.0f}); /health over {len(lat)} polls: "
        f"p99 {p99 * 1000:.0f} ms, max {max(lat, default=0) * 1000:.0f} ms"
    )
    return out


def answer(r: httpx.Response) -> str:
    try:
        body = unpack(r.content)
        code = body.get("error", "ok") if isinstance(body, dict) else "?"
    except Exception:
        code = r.text[:60]
    extra = f" Retry-After={r.headers['retry-after']}" if "retry-after" in r.headers else ""
    return f"{r.status_code} {code}{extra}"


def register(c: httpx.Client, email: str, password: str = "password123") -> httpx.Response:
    return c.post(
        P + "/auth/register", content=pack({"email": email, "password": password}), headers=MSGPACK
    )


def login(c: httpx.Client, email: str, password: str = "password123") -> httpx.Response:
    return c.post(
        P + "/auth/login",
        content=pack({"provider": "email_password", "email": email, "password": password}),
        headers=MSGPACK,
    )


def anon(c: httpx.Client) -> str:
    r = c.post(P + "/auth/login", content=pack({"provider": "anonymous"}), headers=MSGPACK)
    return str(unpack(r.content)["access_token"])


def ident(c: httpx.Client, tok: str) -> dict[str, Any]:
    """A new file ident (and salt) for the user of ``tok``."""
    r = c.post(
        P + "/sync/ident",
        content=pack({"nonce": secrets.token_hex(8)}),
        headers={**MSGPACK, "authorization": f"Bearer {tok}"},
    )
    return dict(unpack(r.content))


# ------------------------------------------------------------------- query attacks


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


def task(pk: int, owner: str, **fields: Any) -> list[list[Any]]:
    ops: list[list[Any]] = [[0, "Task", pk], [2, "Task", pk, "owner_id", owner]]
    return ops + [[2, "Task", pk, k, v] for k, v in fields.items()]


def attack_oracle(t: Target) -> None:
    print("oracle: A's task 1 links to B's task 2; A probes parent.secret BEGINSWITH $0")
    a, b = Device(t.base), Device(t.base)
    b.upload(task(2, b.user_id, secret="K3-topsecret"))
    a.upload(task(1, a.user_id, parent=2))
    alphabet = string.ascii_letters + string.digits + "-_"

    def probe() -> tuple[str, int]:
        known, probes = "", 0
        while len(known) < 20:
            for ch in alphabet:
                probes += 1
                a.subscribe("Task", "parent.secret BEGINSWITH $0", known + ch)
                got = {e[2] for e in a.bootstrap()[1]["entries"] if e[0] == "state"}
                if 1 in got:
                    known += ch
                    break
            else:
                break
        return known, probes

    known, probes = measured(t.base, t.pid, "probing", probe)
    print(f"  {probes} probes, extracted {known!r}")


def attack_draft(t: Target) -> None:
    print("draft: B overwrites 'draft-secret-K3' from a second device; reader A bootstraps")
    a, b = Device(t.base), Device(t.base)
    b2 = Device(t.base, same_user_as=b)
    b.upload([[0, "Note", 1], [2, "Note", 1, "owner_id", b.user_id]])
    b.upload([[2, "Note", 1, "body", "draft-secret-K3"]])
    b2.subscribe("Note", "TRUEPREDICATE")
    sv = b2.bootstrap()[1]["server_version"]
    b2.upload([[2, "Note", 1, "body", "final text"]], base=sv)
    a.subscribe("Note", "TRUEPREDICATE")
    raw, _ = a.bootstrap()
    print(f"  draft in A's download: {b'draft-secret-K3' in raw}; final: {b'final text' in raw}")


def attack_like(t: Target) -> None:
    chars = t.args.like_chars
    print(f"like: title of {chars} 'a's, title LIKE '*a*a*a*a*a*a*a*a*a*b'")
    a = Device(t.base)
    a.upload(task(3, a.user_id, title="a" * chars))
    a.subscribe("Task", "title LIKE $0", "*a*a*a*a*a*a*a*a*a*b")
    measured(t.base, t.pid, "download", a.bootstrap)


def attack_depth(t: Target) -> None:
    print("depth and unknown properties: subscription status, error code")
    a = Device(t.base)
    for name, q in (
        ("1500 parentheses", "(" * 1500 + "title == 'x'" + ")" * 1500),
        ("NOT x 1000", "NOT " * 1000 + "title == 'x'"),
        ("! x 3000", "!" * 3000 + "title == 'x'"),
        ("unknown property", "nope == 1"),
    ):
        status, res = a.subscribe("Task", q)
        print(f"  {name}: {status} {res.get('error') if isinstance(res, dict) else res}")


def attack_bootstrap(t: Target) -> None:
    n = t.args.objects
    print(f"bootstrap: {n} tasks, one fresh download of all")
    a = Device(t.base)
    for start in range(100, 100 + n, 2000):
        ops = [
            op
            for pk in range(start, min(start + 2000, 100 + n))
            for op in task(pk, a.user_id, title=f"t{pk}")
        ]
        a.upload(ops)
    a.subscribe("Task", "title BEGINSWITH 't'")
    count = len(measured(t.base, t.pid, "download", a.bootstrap)[1]["entries"])
    print(f"  {count} objects downloaded")


# --------------------------------------------------------------- transport attacks


def attack_tokens(t: Target) -> None:
    c = t.c
    print("tokens: GET /sync/schema with a forged bearer token")
    nested = "rpa1." + base64.urlsafe_b64encode(b"[" * 2900).decode().rstrip("=") + ".AAAA"
    for name, tok in [
        ("non-ASCII byte", "rpa1.\xe9.x"),
        ("2,900 nested '['", nested),
        ("100 KiB token", "rpa1." + "A" * 100_000 + ".x"),
    ]:
        raw = tok.encode("latin-1")
        try:
            r = c.get(P + "/sync/schema", headers={b"authorization": b"Bearer " + raw})
            print(f"  {name}: {answer(r)}")
        except httpx.HTTPError as exc:
            print(f"  {name}: {type(exc).__name__}")


def empty_maps(n: int, per_array: int = 1_000_000) -> bytes:
    """msgpack: an array of ``n`` empty maps (1 byte each), split into arrays of ``per_array``."""
    out = bytearray()
    chunks = [min(per_array, n - i) for i in range(0, n, per_array)]
    out += b"\xdd" + len(chunks).to_bytes(4, "big")
    for k in chunks:
        out += b"\xdd" + k.to_bytes(4, "big") + b"\x80" * k
    return bytes(out)


def attack_big_body(t: Target) -> None:
    base, pid, c = t.base, t.pid, t.c
    print("big_body: 15 MiB login body of empty maps; 15 MiB authenticated upload of the same")
    body = b"\x83" + pack("provider") + pack("email_password") + pack("email") + pack("a@b.c")
    body += pack("password") + empty_maps(15 * 1024 * 1024 - 64)
    r = measured(
        base,
        pid,
        "login",
        lambda: c.post(P + "/auth/login", content=body, headers=MSGPACK),
    )
    print(f"  login answer: {answer(r)}")
    tok = anon(c)
    f = ident(c, tok)
    head = {"file_ident": f["file_ident"], "salt": f["salt"], "changesets": []}
    start = pack(head)[:-1] + b"\xdd" + (1).to_bytes(4, "big")  # changesets = [<junk>]
    for what, junk in (
        ("upload", empty_maps(15 * 1024 * 1024)),
        (
            "upload just under 8 MiB (the new default limit)",
            empty_maps(8 * 1024 * 1024 - 4096 - len(start), per_array=65536),
        ),
    ):
        up = start + junk
        r = measured(
            base,
            pid,
            what,
            lambda up=up: c.post(  # type: ignore[misc]
                P + "/sync/upload",
                content=up,
                headers={**MSGPACK, "authorization": f"Bearer {tok}"},
            ),
        )
        print(f"  upload answer: {answer(r)}")

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    r = measured(
        base,
        pid,
        "login, 15 MiB chunked (no Content-Length)",
        lambda: c.post(P + "/auth/login", content=chunks(), headers=MSGPACK),
    )
    print(f"  chunked login answer: {answer(r)}")


def attack_valid_upload(t: Target) -> None:
    print(
        "valid_upload: 80,000 ops creating 40,000 objects (1.2 MiB, within the default limits), twice"
    )
    base, pid, c = t.base, t.pid, t.c
    tok = anon(c)
    f = ident(c, tok)
    head = {"file_ident": f["file_ident"], "salt": f["salt"]}
    schema = {"primary_key": "id", "fields": {"id": {"type": "int"}, "t": {"type": "string"}}}
    c.post(
        P + "/sync/schema",
        content=pack({"tables": {"Big": schema}}),
        headers={**MSGPACK, "authorization": f"Bearer {tok}"},
    )
    for rep in range(2):  # the second: a warm server (its first upload also loads code, caches)
        ops: list[Any] = []
        for pk in range(rep * 40_000, (rep + 1) * 40_000):
            ops += [[0, "Big", pk], [2, "Big", pk, "t", f"title {pk}"]]
        now = int(time.time() * 1000)
        cs = {"client_version": rep + 1, "base_server_version": 0, "timestamp": now, "ops": ops}
        valid = pack({**head, "changesets": [cs]})
        r = measured(
            base,
            pid,
            f"valid upload {rep + 1} of 80,000 ops ({len(valid) / 1048576:.1f} MiB)",
            lambda valid=valid: c.post(  # type: ignore[misc]
                P + "/sync/upload",
                content=valid,
                headers={**MSGPACK, "authorization": f"Bearer {tok}"},
            ),
        )
        print(f"  answer: {answer(r)}")


def attack_logins(t: Target) -> None:
    base, pid, c = t.base, t.pid, t.c
    print("logins: 60 concurrent email/password logins to 60 accounts (rate limits lifted)")
    emails = [f"many{i}{secrets.token_hex(4)}@example.com" for i in range(60)]
    for email in emails:
        register(c, email)

    def one(i: int) -> str:
        with httpx.Client(base_url=base, timeout=120) as cc:
            return answer(login(cc, emails[i]))

    def run() -> list[str]:
        with ThreadPoolExecutor(60) as ex:
            return list(ex.map(one, range(60)))

    measured(base, pid, "idle baseline, 2 s", lambda: time.sleep(2))
    answers = measured(base, pid, "60 logins", run)
    counts: dict[str, int] = {}
    for a in answers:
        key = a.split(" Retry-After")[0]
        counts[key] = counts.get(key, 0) + 1
    print(f"  answers: {counts}")


def attack_brute(t: Target) -> None:
    c = t.c
    print("brute: 600 wrong passwords for one account, then the right one; 50 registrations")
    email = f"victim{secrets.token_hex(4)}@example.com"
    register(c, email)
    counts: dict[str, int] = {}
    t0 = time.perf_counter()
    for i in range(600):
        a = answer(login(c, email, f"wrong-{i}")).split(" Retry-After")[0]
        counts[a] = counts.get(a, 0) + 1
    print(f"  600 wrong: {counts} in {time.perf_counter() - t0:.1f} s")
    print(f"  then the right password: {answer(login(c, email))}")
    counts = {}
    t0 = time.perf_counter()
    for _ in range(50):
        a = answer(register(c, f"r{secrets.token_hex(6)}@example.com")).split(" Retry-After")[0]
        counts[a] = counts.get(a, 0) + 1
    print(f"  50 registrations: {counts} in {time.perf_counter() - t0:.1f} s")


def attack_slowloris(t: Target) -> None:
    base, c, seconds = t.base, t.c, t.args.slow_seconds
    print(f"slowloris: 150 connections sending one header byte per second for {seconds:.0f} s")
    port = int(base.rsplit(":", 1)[1])
    socks: list[socket.socket] = []
    for _ in range(150):
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    open_count = len(socks)
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < seconds:
        open_count = 0
        for s in socks:
            if s.fileno() < 0:
                continue
            try:
                s.send(request[i : i + 1])
                if s.recv(1, socket.MSG_PEEK) == b"":
                    s.close()
                    continue
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                continue
            open_count += 1
        i += 1
        time.sleep(1.0)
    print(f"  still open after {seconds:.0f} s: {open_count} of 150")
    t1 = time.perf_counter()
    r = c.get("/health")
    print(f"  /health meanwhile: {r.status_code} in {(time.perf_counter() - t1) * 1000:.0f} ms")
    for s in socks:
        s.close()


def attack_probes(t: Target) -> None:
    c = t.c
    print("probes: download with another user's file ident (wrong salt) vs an unknown ident")
    a, b = anon(c), anon(c)
    fb = ident(c, b)
    for name, file_ident in [("B's ident", fb["file_ident"]), ("unknown ident", 10**9)]:
        r = c.post(
            P + "/sync/download",
            content=pack({"file_ident": file_ident, "salt": 1, "after_server_version": 0}),
            headers={**MSGPACK, "authorization": f"Bearer {a}"},
        )
        print(f"  {name}: {answer(r)} {unpack(r.content).get('message', '')!r}")


def attack_content(t: Target) -> None:
    c = t.c
    print("content: a login body declared text/plain")
    r = c.post(
        P + "/auth/login",
        content=pack({"provider": "anonymous"}),
        headers={"content-type": "text/plain"},
    )
    print(f"  text/plain: {answer(r)}")


def attack_disconnect(t: Target) -> None:
    base, c, log = t.base, t.c, t.log
    print("disconnect: a client announces 1 MiB of upload body, sends 10 bytes, hangs up")
    tok = anon(c)
    port = int(base.rsplit(":", 1)[1])
    before = log.read_text(errors="replace")
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(
        f"POST {P}/sync/upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\n"
        f"Authorization: Bearer {tok}\r\nContent-Length: 1048576\r\n\r\n".encode()
        + b"\x83" * 10
    )
    time.sleep(0.3)  # let the server start reading the body
    s.close()
    time.sleep(0.5)  # let it notice
    new = log.read_text(errors="replace")[len(before) :]
    lines = [ln[:160] for ln in new.splitlines() if "upload" in ln or "disconnect" in ln]
    print("  server log: " + (" | ".join(lines) if lines else "(nothing)"))


# --------------------------------------------------------------------------- running


@dataclass
class Target:
    """The fresh server one attack runs against."""

    base: str
    pid: int
    c: httpx.Client
    log: Path
    args: argparse.Namespace


ATTACKS: dict[str, tuple[Callable[[Target], None], str | None]] = {
    "oracle": (attack_oracle, QUERY_RULES),
    "draft": (attack_draft, QUERY_RULES),
    "like": (attack_like, QUERY_RULES),
    "depth": (attack_depth, QUERY_RULES),
    "bootstrap": (attack_bootstrap, QUERY_RULES),
    "tokens": (attack_tokens, None),
    "big_body": (attack_big_body, None),
    "valid_upload": (attack_valid_upload, None),
    "logins": (attack_logins, LIFTED),
    "brute": (attack_brute, None),
    "slowloris": (attack_slowloris, None),
    "probes": (attack_probes, None),
    "content": (attack_content, None),
    "disconnect": (attack_disconnect, None),
}
"""Each attack and the configuration its server runs with (None: development mode)."""


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", default=",".join(ATTACKS), help="comma-separated attack names")
    ap.add_argument("--like-chars", type=int, default=34)
    ap.add_argument("--objects", type=int, default=20_000)
    ap.add_argument("--slow-seconds", type=float, default=15.0)
    args = ap.parse_args()
    for name in args.only.split(","):
        fn, text = ATTACKS[name]
        with tempfile.TemporaryDirectory() as d:
            config = None
            if text is not None:
                config = Path(d) / "server.toml"
                config.write_text(text)
            with run_server(Path(d), log_level="info", config=config) as (base, proc):
                log = next(Path(d).glob("server-*.log"))
                with httpx.Client(base_url=base, timeout=120) as c:
                    fn(Target(base, proc.pid, c, log, args))


if __name__ == "__main__":
    main()
