"""Hostile-client attacks on a real ``realmpy-server`` (issue 11): what each answers, and what it costs.

Starts a server subprocess (SQLite, development mode) on a loopback port and,
for each attack, prints the request sequence's answers; for the two heavy
ones it also prints the server's peak-RSS growth (``VmHWM`` from
``/proc/<pid>/status``, so no sampling can miss the peak) and the worst
``GET /health`` latency seen by a thread polling it every 10 ms meanwhile.

    PYTHONPATH=. python bench/attack_server.py [--only big_body,logins,...] [--slow-seconds 15]

The query attacks (the read-rule oracle, LIKE, query depth) are in
``bench_server_attacks.py``.  Attacks here: ``tokens`` (non-ASCII and deeply nested bearer tokens), ``big_body``
(15 MiB login body of empty maps; 15 MiB upload of the same), ``logins`` (60
concurrent email/password logins), ``brute`` (600 wrong passwords for one
account, then the right one; 50 registrations from one address),
``slowloris`` (150 connections trickling header bytes at 1 byte/s),
``probes`` (another user's file ident vs an unknown one), ``content``
(a login body declared ``text/plain``), ``disconnect`` (a client that
hangs up mid-body; the server log must not call it an internal error).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import multiprocessing
import secrets
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from realmpy.server.testing import run_server
from realmpy.sync.protocol import pack, unpack

P = "/api/v1/app/default"
MSGPACK = {"content-type": "application/msgpack"}


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
            stop.wait(0.01)
    out.send(lat)


@contextlib.contextmanager
def watch_health(base: str) -> Iterator[list[float]]:
    """Poll /health every 10 ms from another process (the attack's threads would otherwise
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


def attack_tokens(base: str, pid: int, c: httpx.Client) -> None:
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


def attack_big_body(base: str, pid: int, c: httpx.Client) -> None:
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
    up = pack(head)[:-1] + b"\xdd" + (1).to_bytes(4, "big")  # changesets = [<junk>]
    up += empty_maps(15 * 1024 * 1024)
    r = measured(
        base,
        pid,
        "upload",
        lambda: c.post(
            P + "/sync/upload", content=up, headers={**MSGPACK, "authorization": f"Bearer {tok}"}
        ),
    )
    print(f"  upload answer: {answer(r)}")
    up = pack(head)[:-1] + b"\xdd" + (1).to_bytes(4, "big")
    up += empty_maps(8 * 1024 * 1024 - 4096 - len(up), per_array=65536)
    r = measured(
        base,
        pid,
        "upload just under 8 MiB (the new default limit)",
        lambda: c.post(
            P + "/sync/upload", content=up, headers={**MSGPACK, "authorization": f"Bearer {tok}"}
        ),
    )
    print(f"  upload answer: {answer(r)}")

    # A valid upload as large as the value budget allows: 80,000 ops creating 40,000 objects.
    schema = {"primary_key": "id", "fields": {"id": {"type": "int"}, "t": {"type": "string"}}}
    c.post(
        P + "/sync/schema",
        content=pack({"tables": {"Big": schema}}),
        headers={**MSGPACK, "authorization": f"Bearer {tok}"},
    )
    ops: list[Any] = []
    for pk in range(40_000):
        ops += [[0, "Big", pk], [2, "Big", pk, "t", f"title {pk}"]]
    cs = {"client_version": 1, "base_server_version": 0, "timestamp": int(time.time() * 1000)}
    valid = pack({**head, "changesets": [{**cs, "ops": ops}]})
    r = measured(
        base,
        pid,
        f"valid upload of 80,000 ops ({len(valid) / 1048576:.1f} MiB)",
        lambda: c.post(
            P + "/sync/upload",
            content=valid,
            headers={**MSGPACK, "authorization": f"Bearer {tok}"},
        ),
    )
    print(f"  valid upload answer: {answer(r)}")

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


def attack_logins(base: str, pid: int, c: httpx.Client) -> None:
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


def attack_brute(base: str, pid: int, c: httpx.Client) -> None:
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


def attack_slowloris(base: str, pid: int, c: httpx.Client, seconds: float) -> None:
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


def attack_probes(base: str, pid: int, c: httpx.Client) -> None:
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


def attack_content(base: str, pid: int, c: httpx.Client) -> None:
    print("content: a login body declared text/plain")
    r = c.post(
        P + "/auth/login",
        content=pack({"provider": "anonymous"}),
        headers={"content-type": "text/plain"},
    )
    print(f"  text/plain: {answer(r)}")


def attack_disconnect(base: str, pid: int, c: httpx.Client, log: Path) -> None:
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


ATTACKS = ["tokens", "big_body", "logins", "brute", "slowloris", "probes", "content", "disconnect"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(ATTACKS))
    ap.add_argument("--slow-seconds", type=float, default=15.0)
    args = ap.parse_args()
    only = args.only.split(",")
    for name in only:  # a fresh server each: one attack's rate limits do not leak into another
        with tempfile.TemporaryDirectory() as d:
            config = None
            if name == "logins":
                config = Path(d) / "lifted.toml"
                config.write_text(LIFTED)
            with run_server(Path(d), log_level="info", config=config) as (base, proc):
                log = next(Path(d).glob("server-*.log"))
                with httpx.Client(base_url=base, timeout=120) as c:
                    fn = globals()[f"attack_{name}"]
                    if name == "slowloris":
                        fn(base, proc.pid, c, args.slow_seconds)
                    elif name == "disconnect":
                        fn(base, proc.pid, c, log)
                    else:
                        fn(base, proc.pid, c)


if __name__ == "__main__":
    main()
