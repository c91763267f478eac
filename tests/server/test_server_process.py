"""realmpy-server as real processes: CLI start-up, graceful shutdown, SIGKILL mid-upload,
and two server processes sharing one PostgreSQL database."""

from __future__ import annotations

import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from realmpy.server.testing import drop_pg_schema, pg_schema_url, run_server
from realmpy.wire.protocol import pack, unpack
from tests.stores import require_postgresql

P = "/api/v1/app/default"
CAR = {"primary_key": "id", "fields": {"id": {"type": "int"}, "miles": {"type": "counter"}}}


class Client:
    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, timeout=60)

    def post(self, path: str, body: Any = None, token: str | None = None) -> Any:
        h = {"content-type": "application/msgpack"}
        if token:
            h["authorization"] = f"Bearer {token}"
        r = self.http.post(P + path, content=b"" if body is None else pack(body), headers=h)
        out = unpack(r.content)
        assert r.status_code == 200, out
        return out

    def register(self) -> tuple[str, dict[str, Any]]:
        email = f"u{secrets.token_hex(4)}@example.com"
        self.post("/auth/register", {"email": email, "password": "password123"})
        tok = self.post(
            "/auth/login", {"provider": "email_password", "email": email, "password": "password123"}
        )["access_token"]
        self.post("/sync/schema", {"tables": {"Car": CAR}}, tok)
        f = self.post("/sync/ident", {"nonce": secrets.token_hex(8)}, tok)
        return tok, f


def changeset(cv: int, ts: int) -> dict[str, Any]:
    return {
        "client_version": cv,
        "base_server_version": 0,
        "timestamp": ts,
        "ops": [[0, "Car", 1], [3, "Car", 1, "miles", 1]],
    }


def test_cli_dev_mode_warns_and_stops_gracefully_during_a_long_poll(tmp_path: Path) -> None:
    with run_server(tmp_path) as (base, proc):
        c = Client(base)
        health = c.http.get("/health").json()
        assert health["status"] == "ok" and health["dev_mode"] is True
        tok, f = c.register()
        first = c.post(
            "/sync/download",
            {"file_ident": f["file_ident"], "salt": f["salt"], "after_server_version": 0},
            tok,
        )
        assert first["batch"] == "last"  # the (empty) initial subscription set is bootstrapped
        result: dict[str, Any] = {}

        def poll() -> None:
            result["r"] = c.post(
                "/sync/download",
                {
                    "file_ident": f["file_ident"],
                    "salt": f["salt"],
                    "after_server_version": 0,
                    "wait_ms": 60_000,
                },
                tok,
            )

        t = threading.Thread(target=poll)
        t.start()
        deadline = time.monotonic() + 30
        while "realmpy_long_polls 1" not in c.http.get("/metrics").text:
            assert time.monotonic() < deadline, "long-poll never parked"
            time.sleep(0.02)  # observing another process: nothing to wait on but its metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) in (
            0,
            -signal.SIGTERM,
        )  # uvicorn re-raises the signal after its graceful exit
        t.join(timeout=30)
        assert result["r"]["batch"] == "steady"  # answered at shutdown, not left hanging
    log = next(tmp_path.glob("server-*.log")).read_text()
    assert "DEVELOPMENT MODE" in log


def test_sigkill_mid_upload_loses_nothing_acknowledged_and_applies_nothing_twice(
    tmp_path: Path, database: str | None
) -> None:
    ts = int(time.time() * 1000)
    acked = 0
    sent = 0
    with run_server(tmp_path, database=database) as (base, proc):
        c = Client(base)
        tok, f = c.register()
        first_ack = threading.Event()

        def uploader() -> None:
            nonlocal acked, sent
            try:
                while True:
                    batch = [changeset(cv, ts) for cv in range(sent + 1, sent + 6)]
                    sent += len(batch)
                    res = c.post(
                        "/sync/upload",
                        {"file_ident": f["file_ident"], "salt": f["salt"], "changesets": batch},
                        tok,
                    )
                    acked = res["acked_client_version"]
                    if acked >= 20:
                        first_ack.set()
            except (httpx.HTTPError, AssertionError, ValueError):
                return  # the server died under us

        t = threading.Thread(target=uploader)
        t.start()
        assert first_ack.wait(60)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        t.join(timeout=60)
    assert acked >= 20 and sent >= acked
    with run_server(tmp_path, database=database) as (base, _proc):
        c = Client(base)
        email_tok = tok  # tokens survive a restart: the signing secret is in the store
        # the client resends everything after its last ack (and some before): skipped or integrated once
        again = [changeset(cv, ts) for cv in range(max(1, acked - 3), sent + 1)]
        res = c.post(
            "/sync/upload",
            {"file_ident": f["file_ident"], "salt": f["salt"], "changesets": again},
            email_tok,
        )
        assert res["acked_client_version"] == sent
        sub = {
            "file_ident": f["file_ident"],
            "salt": f["salt"],
            "query_version": 1,
            "queries": {"Car": [["TRUEPREDICATE", []]]},
        }
        c.post("/sync/subscriptions", sub, email_tok)
        dl = c.post(
            "/sync/download",
            {"file_ident": f["file_ident"], "salt": f["salt"], "after_server_version": 0},
            email_tok,
        )
    from realmpy.wire.merge import ObjectState

    [entry] = dl["entries"]
    # every changeset adds 1 exactly once: a lost ack or a double apply would change the sum
    assert ObjectState.from_wire(entry[3]).field_value("miles") == sent


def test_two_server_processes_on_one_postgresql_exchange_changes(tmp_path: Path) -> None:
    require_postgresql()
    schema = f"p_{secrets.token_hex(6)}"
    url = pg_schema_url(schema)
    try:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        with (
            run_server(tmp_path / "a", database=url) as (base_a, _),
            run_server(tmp_path / "b", database=url) as (base_b, _),
        ):
            a, b = Client(base_a), Client(base_b)
            tok_a, fa = a.register()
            tok_b, fb = b.register()  # a user registered on B can log in on A: one database
            sub = {
                "file_ident": fb["file_ident"],
                "salt": fb["salt"],
                "query_version": 1,
                "queries": {"Car": [["TRUEPREDICATE", []]]},
            }
            b.post("/sync/subscriptions", sub, tok_b)
            first = b.post(
                "/sync/download",
                {"file_ident": fb["file_ident"], "salt": fb["salt"], "after_server_version": 0},
                tok_b,
            )
            result: dict[str, Any] = {}

            def poll() -> None:
                result["r"] = b.post(
                    "/sync/download",
                    {
                        "file_ident": fb["file_ident"],
                        "salt": fb["salt"],
                        "after_server_version": first["server_version"],
                        "wait_ms": 30_000,
                    },
                    tok_b,
                )

            t = threading.Thread(target=poll)
            t.start()
            deadline = time.monotonic() + 30
            while "realmpy_long_polls 1" not in b.http.get("/metrics").text:
                assert time.monotonic() < deadline
                time.sleep(0.02)  # observing another process: nothing to wait on but its metrics
            ts = int(time.time() * 1000)
            a.post(
                "/sync/upload",
                {
                    "file_ident": fa["file_ident"],
                    "salt": fa["salt"],
                    "changesets": [changeset(1, ts)],
                },
                tok_a,
            )
            t.join(timeout=30)
            assert not t.is_alive()
            assert [e[:3] for e in result["r"]["entries"]] == [
                ["state", "Car", 1]
            ]  # woken by NOTIFY
    finally:
        drop_pg_schema(schema)
