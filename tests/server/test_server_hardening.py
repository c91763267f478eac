"""Issue 11's attacks against a real ``realmpy-server`` process: each is answered with its typed 4xx.

Malformed bearer tokens (401, never 500), body limits by endpoint and by
decoded value count (413, refused before the body is read when
``Content-Length`` says so), bodies of another content type (415), slow
bodies (408) and slow headers (connection closed), the connection cap, login
and registration rate limits (429 with ``Retry-After``, and the client's
``RateLimitedError``), another user's file ident answering like an unknown
one, and a client hanging up mid-body logged as a disconnect.  The
limits are configured small so each attack is cheap; ``bench/bench_server_attacks.py``
runs them at full size and measures memory and ``/health``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from realmpy.server.asgi import create_app
from realmpy.server.auth import AuthConfig, AuthService
from realmpy.server.config import ConfigError, ServerConfig, load_config
from realmpy.server.limits import Limits
from realmpy.server.ratelimit import HashPool, RateLimited, RateLimiter
from realmpy.server.testing import make_store, run_server
from realmpy.sync.app import App, AppConfiguration, Credentials
from realmpy.sync.errors import RateLimitedError
from realmpy.wire.protocol import AuthError, pack, unpack

P = "/api/v1/app/default"
MSGPACK = {"content-type": "application/msgpack"}
T = 30.0  # hang guard for socket reads

CONFIG = """
[auth]
scrypt_n = 1024

[limits]
max_request_bytes = 65536
max_request_values = 4000
header_timeout = 1
body_timeout = 1

[rate_limits]
login_per_account_burst = 3
login_per_account_per_minute = 1
register_per_address_burst = 4
register_per_address_per_minute = 1

[rules]
read = "TRUEPREDICATE"
write = "TRUEPREDICATE"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, data directory with the server's log)."""
    d = tmp_path_factory.mktemp("hardened")
    (d / "server.toml").write_text(CONFIG)
    with run_server(d, config=d / "server.toml", log_level="info") as (base, _proc):
        yield base, d


@pytest.fixture(scope="module", params=["auto", "h11"])
def transport_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """The server once per HTTP parser (``--http``): httptools' guarded protocol and the h11
    fallback each enforce the head deadline, the head size and the connection cap."""
    d = tmp_path_factory.mktemp(f"transport-{request.param}")
    (d / "server.toml").write_text(CONFIG)
    extra = ["--http", request.param]
    with run_server(d, config=d / "server.toml", log_level="info", extra_args=extra) as (base, _):
        yield base, d


@pytest.fixture
def http(server: tuple[str, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[0], timeout=T) as c:
        yield c


def error(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, unpack(r.content)["error"]


def anon(http: httpx.Client) -> str:
    r = http.post(P + "/auth/login", content=pack({"provider": "anonymous"}), headers=MSGPACK)
    return str(unpack(r.content)["access_token"])


def metric(http: httpx.Client, sample: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


def raw_request(base: str, data: bytes) -> socket.socket:
    port = int(base.rsplit(":", 1)[1])
    s = socket.create_connection(("127.0.0.1", port), timeout=T)
    s.sendall(data)
    return s


def read_all(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


# --------------------------------------------------------------------------- tokens


def test_every_malformed_bearer_token_is_a_401(http: httpx.Client) -> None:
    nested = base64.urlsafe_b64encode(b"[" * 2900).decode().rstrip("=")
    tokens = [
        b"rpa1.\xe9t\xe9.x",  # not ASCII: was UnicodeEncodeError -> 500
        f"rpa1.{nested}.AAAA".encode(),  # was parsed before the signature: RecursionError -> 500
        b"rpa1." + b"A" * 12_000 + b".x",  # long, within max_header_bytes (16 KiB)
        b"rpa1.e30.\xff\xfe",
        b"rpa1..",
        b"rpa1.a.b.c",
        b"\xe9",
    ]
    for tok in tokens:
        for path in ("/sync/schema", "/auth/profile"):
            r = http.get(P + path, headers={b"authorization": b"Bearer " + tok})
            assert r.status_code == 401, (tok[:40], r.status_code, r.content[:200])
            assert unpack(r.content)["error"] == "invalid_token"
        for path in ("/auth/logout", "/auth/refresh"):
            r = http.post(P + path, headers={b"authorization": b"Bearer " + tok})
            assert r.status_code == 401, (path, tok[:40])
    for tok in (b"rpr1.\xe9.x", b"rpr1." + b"a" * 600 + b".b", b"rpr1.nosuchsession.secret"):
        for path in ("/auth/logout", "/auth/refresh"):
            r = http.post(P + path, headers={b"authorization": b"Bearer " + tok})
            assert error(r) == (401, "invalid_token"), (path, tok[:40])


def test_a_correctly_signed_but_hostile_payload_is_refused(tmp_path: Path) -> None:
    """Even with the secret (leaked), a token's payload cannot crash the server."""
    with make_store("sqlite", tmp_path) as store:
        auth = AuthService(store, AuthConfig(scrypt_n=1024), app_id="a", secret=b"k" * 32)
        for raw in (b"[" * 2900, b"[1]", b"\xff"):
            payload = base64.urlsafe_b64encode(raw).decode().rstrip("=")
            mac = hmac.new(b"k" * 32, f"rpa1.{payload}".encode(), hashlib.sha256).digest()
            token = f"rpa1.{payload}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"
            with pytest.raises(AuthError, match="malformed"):
                auth.authenticate(token)


# --------------------------------------------------------------------------- bodies


def test_login_bodies_are_limited_to_a_few_kib(http: httpx.Client) -> None:
    big = pack({"provider": "anonymous", "pad": "x" * 1_000_000})
    r = http.post(P + "/auth/login", content=big, headers=MSGPACK)
    assert error(r) == (413, "request_too_large")
    assert "max_auth_request_bytes" in unpack(r.content)["message"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: the stream is cut at the limit
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    assert error(http.post(P + "/auth/login", content=chunked(), headers=MSGPACK)) == (
        413,
        "request_too_large",
    )


def test_a_declared_oversize_body_is_refused_before_it_is_sent(server: tuple[str, Path]) -> None:
    # Only the headers: a server that read the body first would wait for it (and answer 408).
    s = raw_request(
        server[0],
        f"POST {P}/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\n"
        "Content-Length: 15728640\r\nConnection: close\r\n\r\n".encode(),
    )
    with s:
        head = read_all(s).split(b"\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 413"), head


def test_upload_bodies_are_limited_in_bytes_and_in_decoded_values(http: httpx.Client) -> None:
    tok = anon(http)
    h = {**MSGPACK, "authorization": f"Bearer {tok}"}
    f = unpack(http.post(P + "/sync/ident", content=pack({"nonce": "n" * 16}), headers=h).content)
    head = {"file_ident": f["file_ident"], "salt": f["salt"]}
    # 5,000 empty maps: 5 KiB on the wire, ~350 KiB decoded: over the 4,000-value budget.
    many = pack({**head, "changesets": [{}] * 5000})
    r = http.post(P + "/sync/upload", content=many, headers=h)
    assert error(r) == (413, "request_too_large")
    assert unpack(r.content)["detail"] == {"max_items": 4000}
    too_long = pack({**head, "changesets": [], "pad": b"x" * 70_000})
    r = http.post(P + "/sync/upload", content=too_long, headers=h)
    assert error(r) == (413, "request_too_large")
    assert "max_request_bytes" in unpack(r.content)["message"]
    # Under both limits, the same shape is an ordinary malformed message.
    assert error(
        http.post(P + "/sync/upload", content=pack({**head, "changesets": [{}]}), headers=h)
    ) == (400, "malformed_message")


def test_deeply_nested_values_are_a_400_not_a_500(http: httpx.Client) -> None:
    tok = anon(http)
    h = {**MSGPACK, "authorization": f"Bearer {tok}"}
    node = {"n": {"type": "embedded", "target": "Node", "optional": True}}
    tables = {
        "Doc": {"primary_key": "id", "fields": {"id": {"type": "int"}, **node}},
        "Node": {"primary_key": None, "embedded": True, "fields": node},
    }
    r = http.post(P + "/sync/schema", content=pack({"tables": tables}), headers=h)
    assert r.status_code == 200, unpack(r.content)
    f = unpack(http.post(P + "/sync/ident", content=pack({"nonce": "d" * 16}), headers=h).content)
    value: Any = None
    for _ in range(1000):  # msgpack allows 1,024 levels; validation recursed past Python's limit
        value = {"n": value}
    cs = {"client_version": 1, "base_server_version": 0, "timestamp": int(time.time() * 1000)}
    body = {**f, "changesets": [{**cs, "ops": [[0, "Doc", 1], [2, "Doc", 1, "n", value]]}]}
    r = http.post(P + "/sync/upload", content=pack(body), headers=h)
    assert r.status_code == 400, unpack(r.content)


def test_bodies_must_be_msgpack(http: httpx.Client) -> None:
    body = pack({"provider": "anonymous"})
    for ctype in ("text/plain", "application/json", ""):
        r = http.post(P + "/auth/login", content=body, headers={"content-type": ctype})
        assert error(r) == (415, "unsupported_media_type"), ctype
    r = http.post(
        P + "/auth/login", content=body, headers={"content-type": "application/msgpack; x=1"}
    )
    assert r.status_code == 200


def test_a_slow_body_times_out(transport_server: tuple[str, Path]) -> None:
    s = raw_request(
        transport_server[0],
        f"POST {P}/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\n"
        "Content-Length: 100\r\nConnection: close\r\n\r\n\x81".encode(),
    )
    with s:
        answer = read_all(s)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert unpack(answer.split(b"\r\n\r\n", 1)[1])["error"] == "request_timeout"


def test_slow_headers_are_cut_off(transport_server: tuple[str, Path]) -> None:
    refused = 'realmpy_refused_connections_total{reason="header_timeout"}'
    with httpx.Client(base_url=transport_server[0], timeout=T) as http:
        before = metric(http, refused)
        s = raw_request(transport_server[0], b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        with s:
            assert read_all(s) == b""  # closed by the server, without an answer
        assert metric(http, refused) == before + 1


def test_a_request_head_over_max_header_bytes_is_refused(
    transport_server: tuple[str, Path],
) -> None:
    # 40 complete header lines of 500 bytes (20 KB > 16 KiB) and no end of the head yet:
    # refused as soon as they are in (h11 by its buffer, httptools by counting), not kept.
    head = f"GET {P}/auth/profile HTTP/1.1\r\nHost: x\r\n".encode()
    head += b"".join(b"X-Pad-%02d: %s\r\n" % (i, b"p" * 486) for i in range(40))
    with raw_request(transport_server[0], head) as s:
        answer = read_all(s)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]


@pytest.mark.parametrize("parser", ["auto", "h11"])
def test_connections_beyond_the_cap_are_closed(tmp_path: Path, parser: str) -> None:
    (tmp_path / "cap.toml").write_text(
        '[limits]\nmax_connections = 3\n[rules]\nread = "TRUEPREDICATE"\n'
    )
    extra = ["--http", parser]
    with run_server(tmp_path, config=tmp_path / "cap.toml", extra_args=extra) as (base, _proc):
        # Three connections held open (no request yet), then three more: the kernel hands
        # them over in order, so the later three are the ones beyond the cap, closed at once.
        held = [raw_request(base, b"") for _ in range(3)]
        for _ in range(3):
            with raw_request(base, b"") as s:
                try:
                    assert read_all(s) == b""
                except ConnectionResetError:
                    pass
        # A connection within the cap still gets answers.
        for s in held:
            with s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                assert read_all(s).startswith(b"HTTP/1.1 200")
        with httpx.Client(base_url=base, timeout=T) as c:
            assert metric(c, 'realmpy_refused_connections_total{reason="max_connections"}') >= 3


# --------------------------------------------------------------------------- rate limits


def test_logins_and_registrations_are_rate_limited(
    server: tuple[str, Path], http: httpx.Client, tmp_path: Path
) -> None:
    email = f"v{secrets.token_hex(4)}@example.com"
    r = http.post(
        P + "/auth/register",
        content=pack({"email": email, "password": "right password"}),
        headers=MSGPACK,
    )
    assert r.status_code == 200

    def login(password: str) -> httpx.Response:
        body = {"provider": "email_password", "email": email, "password": password}
        return http.post(P + "/auth/login", content=pack(body), headers=MSGPACK)

    assert [error(login(f"guess {i}")) for i in range(3)] == [(401, "invalid_credentials")] * 3
    r = login("guess 4")
    assert error(r) == (429, "rate_limited")
    retry = int(r.headers["retry-after"])
    assert retry >= 1 and unpack(r.content)["detail"]["retry_after"] == retry
    assert error(login("right password")) == (429, "rate_limited")  # the account is locked for now
    # The client raises a typed error carrying Retry-After.
    app = App(AppConfiguration("default", server[0], base_file_path=str(tmp_path / "app")))
    with pytest.raises(RateLimitedError) as info:
        app.log_in(Credentials.email_password(email, "right password"))
    assert info.value.status == 429 and info.value.retry_after >= 1
    assert not info.value.is_fatal
    # Registrations per address: the burst (4, one used above), then 429.
    codes = []
    for i in range(5):
        try:
            app.email_password_auth.register_user(
                f"r{i}{secrets.token_hex(3)}@example.com", "p" * 9
            )
            codes.append("ok")
        except RateLimitedError as exc:
            codes.append(exc.code)
    assert codes == ["ok"] * 3 + ["rate_limited"] * 2
    assert metric(http, 'realmpy_rate_limited_total{limit="register_per_address"}') == 2
    assert metric(http, 'realmpy_rate_limited_total{limit="login_per_account"}') == 3


def test_token_buckets_refill_and_stay_bounded() -> None:
    clock = [0.0]
    lim = RateLimiter(2, 6.0, max_keys=3, now=lambda: clock[0])  # 2 at once, then 1 per 10 s
    assert [lim.take("a"), lim.take("a")] == [0.0, 0.0]
    assert lim.take("a") == pytest.approx(10.0)
    clock[0] = 5.0
    assert lim.take("a") == pytest.approx(5.0)  # refusals cost nothing: Retry-After holds
    clock[0] = 10.0
    assert [lim.take("a"), lim.take("a")] == [0.0, pytest.approx(10.0)]
    for k in "bcde":
        lim.take(k)
    assert len(lim._buckets) == 3  # least recently used keys evicted


def test_password_hashes_are_bounded_and_the_queue_too() -> None:
    release = threading.Event()
    order: list[str] = []

    def hash_like(name: str) -> str:
        order.append(f"{name} runs")
        release.wait(T)
        return name

    async def go() -> list[str]:
        pool = HashPool(running=1, queued=1)
        first = asyncio.create_task(pool.run(hash_like, "a"))
        second = asyncio.create_task(pool.run(hash_like, "b"))
        await asyncio.sleep(0)  # both submitted: a runs, b waits
        with pytest.raises(RateLimited) as info:
            await pool.run(hash_like, "c")  # the queue is full
        assert info.value.detail["retry_after"] == 1
        release.set()
        done = await asyncio.gather(first, second)
        pool.close()
        return list(done)

    assert asyncio.run(go()) == ["a", "b"]
    assert order == ["a runs", "b runs"]


# --------------------------------------------------------------------------- probes, disconnects


def test_another_users_file_ident_answers_like_an_unknown_one(http: httpx.Client) -> None:
    a, b = anon(http), anon(http)
    fb = unpack(
        http.post(
            P + "/sync/ident",
            content=pack({"nonce": secrets.token_hex(8)}),
            headers={**MSGPACK, "authorization": f"Bearer {b}"},
        ).content
    )
    answers = []
    for ident in (fb["file_ident"], 10**9):
        r = http.post(
            P + "/sync/download",
            content=pack({"file_ident": ident, "salt": fb["salt"] ^ 1, "after_server_version": 0}),
            headers={**MSGPACK, "authorization": f"Bearer {a}"},
        )
        body = unpack(r.content)
        answers.append(
            (
                r.status_code,
                body["error"],
                body["detail"]["reason"],
                body["message"].replace(str(ident), "N"),
            )
        )
    assert answers[0] == answers[1]
    assert answers[0][:3] == (409, "client_reset_required", "unknown_file_ident")


def test_a_client_hanging_up_mid_body_is_logged_as_a_disconnect(
    server: tuple[str, Path], http: httpx.Client
) -> None:
    tok = anon(http)
    sample = 'realmpy_client_disconnects_total{route="upload"}'
    before = metric(http, sample)
    s = raw_request(
        server[0],
        f"POST {P}/sync/upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\n"
        f"Authorization: Bearer {tok}\r\nContent-Length: 60000\r\n\r\n".encode()
        + b"\x83" * 10,
    )
    s.close()
    deadline = time.monotonic() + T
    while metric(http, sample) == before:
        assert time.monotonic() < deadline, "the server never noticed the disconnect"
        time.sleep(0.02)  # observing another process: nothing to wait on but its metrics
    lines = [
        json.loads(ln)
        for ln in next(server[1].glob("server-*.log")).read_text().splitlines()
        if ln.startswith("{")
    ]
    assert any(ln["msg"] == "client disconnected" and ln["endpoint"] == "upload" for ln in lines)
    assert not any(ln["msg"] == "internal error" for ln in lines)


# --------------------------------------------------------------------------- metrics


def test_each_app_has_its_own_metrics_registry(tmp_path: Path) -> None:
    with make_store("sqlite", tmp_path / "a") as s1, make_store("sqlite", tmp_path / "b") as s2:
        one, two = create_app(ServerConfig(), s1), create_app(ServerConfig(), s2)
        one.metrics.changesets_in.inc(3)
        assert one.metrics.value("realmpy_upload_changesets_total") == 3
        assert two.metrics.value("realmpy_upload_changesets_total") == 0
        assert b"realmpy_upload_changesets_total 0.0" in two.metrics.render()


def test_limit_settings_are_checked(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    for text, message in [
        ("[limits]\nmax_request_byte = 1\n", "unknown settings ['max_request_byte']"),
        ("[limits]\nbody_timeout = 0\n", "[limits] body_timeout must be a positive number"),
        ("[rate_limits]\nlogin_per_account_burst = -1\n", "[rate_limits] login_per_account_burst"),
        ('[rate_limits]\nmax_keys = "many"\n', "[rate_limits] max_keys"),
        ("[auth]\nanonymus = false\n", "[auth]: unknown settings ['anonymus']"),
    ]:
        cfg.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_config(cfg)
        assert message in str(info.value), text
    cfg.write_text("[limits]\nmax_request_bytes = 1024\nmax_clock_skew_ms = 5\n")
    loaded = load_config(cfg)
    assert (loaded.limits.max_request_bytes, loaded.max_clock_skew_ms) == (1024, 5)
    assert loaded.limits.bulk.max_values == Limits().max_request_values
