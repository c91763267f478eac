"""HTTP API of realmpy-server: every endpoint, every typed error, auth flows, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from realmpy.server.auth import AuthConfig
from realmpy.server.config import ServerConfig
from realmpy.wire.merge import ObjectState
from realmpy.wire.protocol import pack, pk_key
from tests.server.http_api import CAR, Api, P, make_api, setup_file, upload_body

# --------------------------------------------------------------------------- health and metrics


def test_health_and_metrics(api: Api) -> None:
    status, body = api.call("GET", "/health")
    assert status == 200 and '"status":"ok"' in body.replace(" ", "")
    status, text = api.call("GET", "/metrics")
    assert status == 200
    # Every family is there before any request, with a latency series per route.
    for family in (
        "realmpy_requests_total",
        "realmpy_errors_total",
        "realmpy_upload_changesets_total",
        "realmpy_upload_ops_total",
        "realmpy_download_objects_total",
        "realmpy_bootstrap_objects_total",
        "realmpy_compensating_writes_total",
        "realmpy_client_disconnects_total",
        "process_resident_memory_bytes",
    ):
        assert f"# TYPE {family.removesuffix('_total')}" in text, family
    assert 'realmpy_rate_limited_total{limit="login_per_account"} 0.0' in text
    assert "realmpy_long_polls 0.0" in text
    assert 'realmpy_request_duration_seconds_count{route="upload"} 0.0' in text
    api.post("/auth/login", {"provider": "anonymous"})
    api.post("/auth/login", {"provider": "nobody"})
    text = api.call("GET", "/metrics")[1]
    assert 'realmpy_requests_total{route="login",status="200"} 1.0' in text
    assert 'realmpy_requests_total{route="login",status="400"} 1.0' in text
    assert 'realmpy_errors_total{code="malformed_message"} 1.0' in text
    assert 'realmpy_request_duration_seconds_count{route="login"} 2.0' in text
    assert 'realmpy_request_duration_seconds_bucket{le="60.0",route="login"} 2.0' in text


# --------------------------------------------------------------------------- auth


def test_email_password_register_login_refresh_logout(api: Api) -> None:
    status, body = api.post(
        "/auth/register", {"email": "Ann@Example.com", "password": "correct horse"}
    )
    assert status == 200 and body["user_id"]
    assert (
        api.post("/auth/register", {"email": "ann@example.com", "password": "another one"})[1][
            "error"
        ]
        == "email_taken"
    )
    assert api.post("/auth/register", {"email": "bob@example.com", "password": "short"})[0] == 400
    assert (
        api.post(
            "/auth/login",
            {"provider": "email_password", "email": "ann@example.com", "password": "wrong!!!!"},
        )[1]["error"]
        == "invalid_credentials"
    )
    assert (
        api.post(
            "/auth/login",
            {"provider": "email_password", "email": "nobody@example.com", "password": "x"},
        )[1]["error"]
        == "invalid_credentials"
    )
    status, tokens = api.post(
        "/auth/login",
        {"provider": "email_password", "email": "ann@example.com", "password": "correct horse"},
    )
    assert status == 200 and tokens["user_id"] == body["user_id"]
    status, prof = api.call("GET", "/auth/profile", token=tokens["access_token"])
    assert prof == {
        "user_id": body["user_id"],
        "provider": "email_password",
        "email": "ann@example.com",
    }
    status, refreshed = api.post("/auth/refresh", token=tokens["refresh_token"])
    assert status == 200 and refreshed["refresh_token"] is None and refreshed["access_token"]
    assert api.post("/auth/logout", token=tokens["refresh_token"])[0] == 200
    # log-out revokes both the refresh token and every access token of the session
    assert api.post("/auth/refresh", token=tokens["refresh_token"])[1]["error"] == "invalid_token"
    assert (
        api.call("GET", "/auth/profile", token=refreshed["access_token"])[1]["error"]
        == "invalid_token"
    )


def test_access_token_expiry_and_refresh(api: Api) -> None:
    tokens = api.anon()
    assert api.call("GET", "/auth/profile", token=tokens["access_token"])[0] == 200
    api.clock.t += 15 * 60 + 1
    status, err = api.call("GET", "/auth/profile", token=tokens["access_token"])
    assert (status, err["error"]) == (401, "token_expired")
    assert (
        api.post("/sync/ident", {"nonce": "device-0001"}, tokens["access_token"])[1]["error"]
        == "token_expired"
    )
    status, fresh = api.post("/auth/refresh", token=tokens["refresh_token"])
    assert status == 200
    assert api.call("GET", "/auth/profile", token=fresh["access_token"])[0] == 200
    api.clock.t += 61 * 24 * 3600
    assert api.post("/auth/refresh", token=tokens["refresh_token"])[1]["error"] == "token_expired"


def test_forged_and_missing_tokens(api: Api) -> None:
    tokens = api.anon()
    head, body, _sig = tokens["access_token"].split(".")
    assert (
        api.call("GET", "/auth/profile", token=f"{head}.{body}.AAAA")[1]["error"] == "invalid_token"
    )
    assert api.call("GET", "/auth/profile", token="garbage")[1]["error"] == "invalid_token"
    assert api.call("GET", "/auth/profile")[1]["error"] == "unauthorized"
    assert api.post("/auth/refresh", token=tokens["access_token"])[1]["error"] == "invalid_token"


def test_api_keys(api: Api) -> None:
    tok = api.anon()
    status, created = api.post("/auth/api-keys", {"name": "ci"}, tok["access_token"])
    assert status == 200 and created["key"].startswith("rpk1.")
    status, listed = api.call("GET", "/auth/api-keys", token=tok["access_token"])
    assert listed["keys"] == [{"id": created["id"], "name": "ci", "key": None}]
    status, via_key = api.post("/auth/login", {"provider": "api_key", "key": created["key"]})
    assert status == 200 and via_key["user_id"] == tok["user_id"]
    bad = created["key"][:-2] + "xx"
    assert (
        api.post("/auth/login", {"provider": "api_key", "key": bad})[1]["error"]
        == "invalid_credentials"
    )
    other = api.anon()
    assert (
        api.call("DELETE", f"/auth/api-keys/{created['id']}", token=other["access_token"])[0] == 404
    )
    assert (
        api.call("DELETE", f"/auth/api-keys/{created['id']}", token=tok["access_token"])[0] == 200
    )
    assert (
        api.post("/auth/login", {"provider": "api_key", "key": created["key"]})[1]["error"]
        == "invalid_credentials"
    )


def test_disabled_providers(kind: str, tmp_path: Path) -> None:
    cfg = ServerConfig(
        dev_mode=False, auth=AuthConfig(anonymous=False, api_keys=False, scrypt_n=2**10)
    )
    for api in make_api(kind, tmp_path, cfg):
        assert api.post("/auth/login", {"provider": "anonymous"})[1]["error"] == "provider_disabled"
        assert (
            api.post("/auth/login", {"provider": "api_key", "key": "rpk1.a.b"})[1]["error"]
            == "provider_disabled"
        )
        assert api.post("/auth/login", {"provider": "magic"})[1]["error"] == "malformed_message"


# --------------------------------------------------------------------------- identity, schema


def test_ident_is_idempotent_per_nonce_and_bound_to_the_user(api: Api) -> None:
    a = api.anon()["access_token"]
    b = api.anon()["access_token"]
    fa = api.file(a)
    assert api.file(a) == fa
    assert api.file(a, "device-0002")["file_ident"] != fa["file_ident"]
    assert api.file(b)["file_ident"] != fa["file_ident"]
    assert api.post("/sync/ident", {"nonce": "short"}, a)[1]["error"] == "malformed_message"
    # B cannot use A's file, and a wrong salt is refused
    body = {"file_ident": fa["file_ident"], "salt": fa["salt"], "after_server_version": 0}
    assert api.post("/sync/download", body, b)[1]["error"] == "bad_file_ident"
    body["salt"] = fa["salt"] ^ 1  # the user's own ident with another salt: re-allocated
    status, err = api.post("/sync/download", body, a)
    assert (status, err["error"], err["detail"]["reason"]) == (
        409,
        "client_reset_required",
        "salt_mismatch",
    )
    body["file_ident"] = 10_000  # never allocated here: the server lost its history
    status, err = api.post("/sync/download", body, a)
    assert (status, err["error"], err["detail"]["reason"]) == (
        409,
        "client_reset_required",
        "unknown_file_ident",
    )


def test_schema_is_additive_in_dev_mode(api: Api) -> None:
    tok = api.anon()["access_token"]
    assert api.post("/sync/schema", {"tables": {"Car": CAR}}, tok)[0] == 200
    more = {
        "primary_key": "id",
        "fields": {**CAR["fields"], "year": {"type": "int", "optional": True}},
    }
    status, body = api.post("/sync/schema", {"tables": {"Car": more}}, tok)
    assert status == 200 and "year" in body["tables"]["Car"]["fields"]
    changed = {"primary_key": "id", "fields": {**CAR["fields"], "make": {"type": "int"}}}
    status, err = api.post("/sync/schema", {"tables": {"Car": changed}}, tok)
    assert (status, err["error"]) == (409, "schema_mismatch")
    bad_link = {
        "primary_key": "id",
        "fields": {"id": {"type": "int"}, "x": {"type": "link", "target": "Nope"}},
    }
    assert (
        api.post("/sync/schema", {"tables": {"Dog": bad_link}}, tok)[1]["error"] == "unknown_table"
    )
    status, got = api.call("GET", "/sync/schema", token=tok)
    assert set(got["tables"]) == {"Car"}


# --------------------------------------------------------------------------- upload and download


def test_upload_download_round_trip_and_idempotent_resend(api: Api) -> None:
    tok, f = setup_file(api)
    ops = [
        [0, "Car", 1],
        [2, "Car", 1, "make", "VW"],
        [3, "Car", 1, "miles", 5],
        [4, "Car", 1, "tags", None, "red"],
    ]
    body = upload_body(f, 1, ops)
    status, res = api.post("/sync/upload", body, tok)
    assert status == 200 and res["acked_client_version"] == 1 and res["server_version"] == 1
    status, res2 = api.post("/sync/upload", body, tok)  # resent: skipped but acknowledged
    assert res2["acked_client_version"] == 1 and res2["server_version"] == 1
    with api.server.store.transaction(write=False) as tx:
        assert tx.changeset_count(f["file_ident"], 1) == 1

    tok2 = api.anon()["access_token"]
    f2 = api.file(tok2)
    sub = {
        "file_ident": f2["file_ident"],
        "salt": f2["salt"],
        "query_version": 1,
        "queries": {"Car": [["miles > $0", [1]]]},
    }
    assert api.post("/sync/subscriptions", sub, tok2)[1] == {"query_version": 1, "state": "pending"}
    status, dl = api.post(
        "/sync/download",
        {"file_ident": f2["file_ident"], "salt": f2["salt"], "after_server_version": 0},
        tok2,
    )
    assert (
        dl["batch"] == "last"
        and dl["query_version"] == 1
        and dl["server_version"] == 1
        and dl["progress"] == 1.0
    )
    [entry] = dl["entries"]
    assert entry[:3] == ["state", "Car", 1]
    assert api.post("/sync/subscriptions", sub, tok2)[1] == {
        "query_version": 1,
        "state": "complete",
    }
    old = dict(sub, query_version=0)
    assert api.post("/sync/subscriptions", old, tok2)[1]["state"] == "superseded"
    status, steady = api.post(
        "/sync/download",
        {
            "file_ident": f2["file_ident"],
            "salt": f2["salt"],
            "after_server_version": 1,
            "wait_ms": 0,
        },
        tok2,
    )
    assert steady["batch"] == "steady" and steady["entries"] == []


def test_objects_leaving_the_subscription_are_forgotten(api: Api) -> None:
    tok, f = setup_file(api)
    api.post("/sync/upload", upload_body(f, 1, [[0, "Car", 1], [2, "Car", 1, "make", "VW"]]), tok)
    tok2 = api.anon()["access_token"]
    f2 = api.file(tok2)
    sub = {
        "file_ident": f2["file_ident"],
        "salt": f2["salt"],
        "query_version": 1,
        "queries": {"Car": [["make == 'VW'", []]]},
    }
    api.post("/sync/subscriptions", sub, tok2)
    dl = api.post(
        "/sync/download",
        {"file_ident": f2["file_ident"], "salt": f2["salt"], "after_server_version": 0},
        tok2,
    )[1]
    assert [e[0] for e in dl["entries"]] == ["state"]
    api.post("/sync/upload", upload_body(f, 2, [[2, "Car", 1, "make", "Audi"]], base=1), tok)
    req = {
        "file_ident": f2["file_ident"],
        "salt": f2["salt"],
        "after_server_version": dl["server_version"],
    }
    dl2 = api.post("/sync/download", req, tok2)[1]
    assert [e[:3] for e in dl2["entries"]] == [["forget", "Car", 1]]
    # the answer may be lost: asking again from the old cursor repeats the forget
    assert [e[0] for e in api.post("/sync/download", req, tok2)[1]["entries"]] == ["forget"]
    # a new subscription set bootstraps the object back in
    api.post(
        "/sync/subscriptions",
        dict(sub, query_version=2, queries={"Car": [["TRUEPREDICATE", []]]}),
        tok2,
    )
    dl3 = api.post("/sync/download", dict(req, after_server_version=dl2["server_version"]), tok2)[1]
    assert dl3["query_version"] == 2 and [e[0] for e in dl3["entries"]] == ["state"]


@pytest.mark.parametrize("skip_own", [True, False])
def test_skip_own_leaves_out_objects_only_the_caller_wrote(api: Api, skip_own: bool) -> None:
    """``skip_own``: an incremental batch omits states made only of the caller's operations
    (also an erase of one it holds) and still moves the cursor past them; an object another
    file also wrote comes whole.  Without the flag (older clients) everything comes back."""
    tok, f = setup_file(api)
    tok2 = api.anon()["access_token"]
    f2 = api.file(tok2, nonce="device-0002")
    api.post(
        "/sync/subscriptions",
        {
            "file_ident": f["file_ident"],
            "salt": f["salt"],
            "query_version": 1,
            "queries": {"Car": [["TRUEPREDICATE", []]]},
        },
        tok,
    )
    req = {"file_ident": f["file_ident"], "salt": f["salt"], "query_version": 1}

    def download(after: int) -> tuple[int, list[list[Any]]]:
        body = dict(req, after_server_version=after, skip_own=skip_own)
        status, dl = api.post("/sync/download", body, tok)
        assert status == 200, dl
        return dl["server_version"], [e[:3] for e in dl["entries"]]

    assert download(0) == (0, [])  # the (empty) bootstrap
    own = [[0, "Car", 1], [2, "Car", 1, "make", "VW"], [0, "Car", 3]]
    assert api.post("/sync/upload", upload_body(f, 1, own), tok)[0] == 200
    assert api.post("/sync/upload", upload_body(f2, 1, [[0, "Car", 2]]), tok2)[0] == 200
    cursor, entries = download(0)
    assert cursor == 2
    if skip_own:
        assert entries == [["state", "Car", 2]]
    else:
        assert entries == [["state", "Car", 1], ["state", "Car", 3], ["state", "Car", 2]]
    api.post("/sync/upload", upload_body(f, 2, [[1, "Car", 3]], base=2), tok)
    api.post("/sync/upload", upload_body(f2, 2, [[2, "Car", 1, "make", "Audi"]], base=2), tok2)
    cursor, entries = download(2)
    assert cursor == 4
    if skip_own:
        assert entries == [["state", "Car", 1]]
    else:
        assert entries == [["state", "Car", 3], ["state", "Car", 1]]


def test_bootstrap_comes_in_batches_with_progress(api: Api) -> None:
    tok, f = setup_file(api)
    ops = [op for pk in range(1, 41) for op in ([0, "Car", pk], [2, "Car", pk, "make", "x" * 100])]
    api.post("/sync/upload", upload_body(f, 1, ops), tok)
    tok2 = api.anon()["access_token"]
    f2 = api.file(tok2)
    api.post(
        "/sync/subscriptions",
        {
            "file_ident": f2["file_ident"],
            "salt": f2["salt"],
            "query_version": 1,
            "queries": {"Car": [["TRUEPREDICATE", []]]},
        },
        tok2,
    )
    req: dict[str, Any] = {
        "file_ident": f2["file_ident"],
        "salt": f2["salt"],
        "after_server_version": 0,
        "max_bytes": 1024,
    }
    batches, got, progress = [], 0, []
    while True:
        dl = api.post("/sync/download", req, tok2)[1]
        batches.append(dl["batch"])
        got += len(dl["entries"])
        progress.append(dl["progress"])
        if dl["batch"] == "last":
            break
        assert dl["server_version"] == 0  # the cursor moves only when the bootstrap is complete
        req["bootstrap_token"] = dl["bootstrap_token"]
    assert got == 40 and len(batches) > 2 and batches[-1] == "last"
    assert progress == sorted(progress) and progress[-1] == 1.0 and progress[0] < 1.0


def _held_poll_answer(
    api: Api, body: dict[str, Any], tok: str, meanwhile: Callable[[], object]
) -> dict[str, Any]:
    """Park a long poll (``body``), run ``meanwhile`` while it is held, return its answer."""
    result: dict[str, Any] = {}

    def poll() -> None:
        result["dl"] = api.post("/sync/download", body, tok)[1]

    waiting = api.server.metrics
    t = threading.Thread(target=poll)
    t.start()
    deadline = time.monotonic() + 30
    while waiting.value("realmpy_long_polls") < 1 and time.monotonic() < deadline:
        time.sleep(0.01)  # waiting for the poll to park; there is no event to observe from outside
    meanwhile()
    t.join(timeout=30)  # (shorter than the polls' own wait)
    assert not t.is_alive()
    return result["dl"]  # type: ignore[no-any-return]


def test_long_poll_wakes_on_upload(api: Api) -> None:
    tok, f = setup_file(api)
    tok2 = api.anon()["access_token"]
    f2 = api.file(tok2)
    api.post(
        "/sync/subscriptions",
        {
            "file_ident": f2["file_ident"],
            "salt": f2["salt"],
            "query_version": 1,
            "queries": {"Car": [["TRUEPREDICATE", []]]},
        },
        tok2,
    )
    api.post(
        "/sync/download",
        {"file_ident": f2["file_ident"], "salt": f2["salt"], "after_server_version": 0},
        tok2,
    )
    body = {
        "file_ident": f2["file_ident"],
        "salt": f2["salt"],
        "after_server_version": 0,
        "wait_ms": 60_000,
    }
    dl = _held_poll_answer(
        api, body, tok2, lambda: api.post("/sync/upload", upload_body(f, 1, [[0, "Car", 7]]), tok)
    )
    assert [e[:3] for e in dl["entries"]] == [["state", "Car", 7]]


def test_a_skip_own_long_poll_answers_when_its_own_upload_lands(api: Api) -> None:
    """With nothing to send but the caller's own upload left out, a held poll still answers at
    once with the moved cursor: the client's ``wait_for_download`` waits for that cursor, and
    would otherwise wait for the whole poll."""
    tok, f = setup_file(api)
    sub = {"file_ident": f["file_ident"], "salt": f["salt"], "query_version": 1}
    api.post("/sync/subscriptions", dict(sub, queries={"Car": [["TRUEPREDICATE", []]]}), tok)
    api.post("/sync/download", dict(sub, after_server_version=0), tok)  # the bootstrap
    body = dict(sub, after_server_version=0, wait_ms=60_000, skip_own=True)

    def upload() -> None:
        assert api.post("/sync/upload", upload_body(f, 1, [[0, "Car", 7]]), tok)[0] == 200

    dl = _held_poll_answer(api, body, tok, upload)
    assert dl["entries"] == [] and dl["server_version"] == 1


# --------------------------------------------------------------------------- bad input


def test_typed_errors_for_bad_uploads(api: Api) -> None:
    tok, f = setup_file(api)

    def err(ops: list[Any], **kw: Any) -> tuple[int, str]:
        status, body = api.post("/sync/upload", upload_body(f, 1, ops, **kw), tok)
        return status, body["error"]

    assert err([[0, "Truck", 1]]) == (400, "unknown_table")
    assert err([[2, "Car", 1, "colour", "red"]]) == (400, "unknown_field")
    assert err([[2, "Car", 1, "make", 42]]) == (400, "wrong_type")
    assert err([[0, "Car", "not-an-int"]]) == (400, "wrong_type")
    assert err([[3, "Car", 1, "make", 1]]) == (400, "invalid_op")
    assert err([[4, "Car", 1, "make", None, "x"]]) == (400, "invalid_op")
    assert err([[2, "Car", 1, "id", 5]]) == (400, "invalid_op")
    assert err([[99, "Car", 1]]) == (400, "invalid_op")
    assert err([[2, "Car", 1]]) == (400, "malformed_message")
    assert err([[0, "Car", 1]], ts=int(time.time() * 1000) + 3_600_000) == (400, "clock_skew")
    assert err([[0, "Car", 1]], base=5) == (
        400,
        "malformed_message",
    )  # base beyond the server's history
    # a mixed upload with one bad changeset stores nothing at all
    good = upload_body(f, 1, [[0, "Car", 1]])
    good["changesets"].append(upload_body(f, 2, [[2, "Car", 1, "make", 3]])["changesets"][0])
    assert api.post("/sync/upload", good, tok)[1]["error"] == "wrong_type"
    with api.server.store.transaction(write=False) as tx:
        assert tx.latest_server_version() == 0 and tx.count_objects() == 0


def test_typed_errors_for_malformed_requests(api: Api) -> None:
    tok, f = setup_file(api)
    assert api.post("/sync/upload", raw=b"\xc1\xc1", token=tok)[1]["error"] == "malformed_message"
    assert (
        api.post("/sync/upload", raw=pack([1, 2, 3]), token=tok)[1]["error"] == "malformed_message"
    )
    assert api.post("/sync/upload", {"file_ident": "x"}, tok)[1]["error"] == "malformed_message"
    assert (
        api.post("/sync/upload", raw=pack({"a": 1}) + b"extra", token=tok)[1]["error"]
        == "malformed_message"
    )
    nested = b"\x91" * 5000 + b"\xc0"
    assert api.post("/sync/upload", raw=nested, token=tok)[1]["error"] == "malformed_message"
    status, body = api.post("/sync/upload", raw=b"\x00" * (65 * 1024), token=tok)
    assert (status, body["error"]) == (413, "request_too_large")
    assert api.post("/sync/upload", {"file_ident": 1}, None)[1]["error"] == "unauthorized"
    assert (
        api.call("POST", "/api/v2/app/default/sync/upload", {})[1]["error"]
        == "unsupported_protocol_version"
    )
    assert api.call("POST", "/api/v1/app/other/sync/upload", {}, tok)[1]["error"] == "not_found"
    assert api.call("GET", "/nope")[0] == 404
    assert api.call("GET", f"{P}/sync/upload")[0] == 405
    sub = {
        "file_ident": f["file_ident"],
        "salt": f["salt"],
        "query_version": 1,
        "queries": {"Car": [["make ==", []]]},
    }
    assert api.post("/sync/subscriptions", sub, tok)[1]["error"] == "invalid_query"
    sub["queries"] = {"Truck": [["TRUEPREDICATE", []]]}
    assert api.post("/sync/subscriptions", sub, tok)[1]["error"] == "invalid_query"
    body2 = {"file_ident": f["file_ident"], "salt": f["salt"], "after_server_version": 99}
    assert api.post("/sync/download", body2, tok)[1]["error"] == "client_reset_required"
    # after all that, the server still works
    assert api.post("/sync/upload", upload_body(f, 1, [[0, "Car", 1]]), tok)[0] == 200


CAR_FULL: dict[str, Any] = {
    "primary_key": "id",
    "fields": {
        **CAR["fields"],
        "labels": {"type": "string", "collection": "set"},
        "prefs": {"type": "string", "optional": True, "collection": "dict"},
        "addr": {"type": "embedded", "optional": True, "target": "Address"},
    },
}
ADDRESS = {
    "primary_key": None,
    "embedded": True,
    "fields": {"city": {"type": "string", "optional": True}, "n": {"type": "counter"}},
}


def test_sets_dictionaries_and_embedded_objects_round_trip(api: Api) -> None:
    tok = api.anon()["access_token"]
    status, sch = api.post("/sync/schema", {"tables": {"Car": CAR_FULL, "Address": ADDRESS}}, tok)
    assert status == 200 and sch["tables"]["Address"]["embedded"] is True, sch
    f = api.file(tok)
    ops = [
        [0, "Car", 1],
        [6, "Car", 1, "labels", "x"],
        [6, "Car", 1, "labels", "y"],
        [7, "Car", 1, "labels", "y"],
        [8, "Car", 1, "prefs", "theme", "dark"],
        [8, "Car", 1, "prefs", "size", "L"],
        [9, "Car", 1, "prefs", "size"],
        [2, "Car", 1, "addr", {"city": "Oslo", "n": 1}],
        [2, "Car", 1, "addr.city", "Bergen"],
        [3, "Car", 1, "addr.n", 2],
    ]
    status, res = api.post("/sync/upload", upload_body(f, 1, ops), tok)
    assert status == 200 and res["acked_client_version"] == 1, res

    tok2 = api.anon()["access_token"]
    f2 = api.file(tok2)
    q = "addr.city == 'Bergen' AND 'x' IN labels AND prefs['theme'] == 'dark' AND addr.n == 3"
    sub = {
        "file_ident": f2["file_ident"],
        "salt": f2["salt"],
        "query_version": 1,
        "queries": {"Car": [[q, []]]},
    }
    assert api.post("/sync/subscriptions", sub, tok2)[0] == 200
    body = {"file_ident": f2["file_ident"], "salt": f2["salt"], "after_server_version": 0}
    status, dl = api.post("/sync/download", body, tok2)
    [entry] = dl["entries"]
    state = ObjectState.from_wire(entry[3])
    assert state.materialize("id", 1) == {
        "id": 1,
        "labels": ["x"],
        "prefs": {"theme": "dark"},
        "addr": {"city": "Bergen", "n": 3},
    }
    sub["queries"] = {"Address": [["TRUEPREDICATE", []]]}
    sub["query_version"] = 2
    assert api.post("/sync/subscriptions", sub, tok2)[1]["error"] == "invalid_query"

    def err(op: list[Any]) -> tuple[int, str]:
        status, body = api.post("/sync/upload", upload_body(f, 2, [op]), tok)
        return status, body["error"]

    assert err([2, "Car", 1, "labels", ["x"]]) == (400, "invalid_op")  # SET on a set
    assert err([6, "Car", 1, "tags", "x"]) == (400, "invalid_op")  # SET_ADD on a list
    assert err([8, "Car", 1, "labels", "k", "x"]) == (400, "invalid_op")  # DICT_SET on a set
    assert err([6, "Car", 1, "labels", 5]) == (400, "wrong_type")
    assert err([8, "Car", 1, "prefs", 5, "x"]) == (400, "wrong_type")  # keys are strings
    assert err([8, "Car", 1, "prefs", "k", 5]) == (400, "wrong_type")
    assert err([2, "Car", 1, "addr", {"city": 5}]) == (400, "wrong_type")
    assert err([2, "Car", 1, "addr", {"zip": "x"}]) == (400, "unknown_field")
    assert err([2, "Car", 1, "addr", "Oslo"]) == (400, "wrong_type")
    assert err([2, "Car", 1, "addr.zip", "x"]) == (400, "unknown_field")
    assert err([2, "Car", 1, "make.x", "x"]) == (400, "invalid_op")  # not an embedded object
    assert err([3, "Car", 1, "addr.city", 1]) == (400, "invalid_op")
    assert err([0, "Address", 1]) == (400, "unknown_table")  # written through the parent only
    bad_schema = {
        "Boat": {"primary_key": "id", "fields": {"id": {"type": "int"}, "a.b": {"type": "int"}}}
    }
    assert api.post("/sync/schema", {"tables": bad_schema}, tok)[1]["error"] == "malformed_message"


def sync_down(api: Api, tok: str, f: dict[str, Any], after: int) -> tuple[int, Any]:
    body = {"file_ident": f["file_ident"], "salt": f["salt"], "after_server_version": after}
    return api.post("/sync/download", body, tok)


def subscribe_all(api: Api, tok: str, f: dict[str, Any]) -> int:
    """Subscribe to every Car and download until steady; returns the cursor."""
    sub = {
        "file_ident": f["file_ident"],
        "salt": f["salt"],
        "query_version": 1,
        "queries": {"Car": [["TRUEPREDICATE", []]]},
    }
    assert api.post("/sync/subscriptions", sub, tok)[0] == 200
    cursor = 0
    while True:
        status, dl = sync_down(api, tok, f, cursor)
        assert status == 200, dl
        cursor = dl["server_version"]
        if dl["batch"] != "more":
            return int(cursor)


def test_history_trimming_requires_a_client_reset_behind_the_horizon(api: Api) -> None:
    tok, f = setup_file(api)
    assert (
        api.post("/sync/upload", upload_body(f, 1, [[0, "Car", 1], [0, "Car", 2]]), tok)[0] == 200
    )
    tc = api.anon()["access_token"]
    fc = api.file(tc)
    assert subscribe_all(api, tc, fc) == 1  # C is at sv 1, before the erase
    up = upload_body(f, 2, [[1, "Car", 2]], base=1)
    up["changesets"] += upload_body(f, 3, [[0, "Car", 3]], base=2)["changesets"]
    assert api.post("/sync/upload", up, tok)[1]["acked_client_version"] == 3
    tb = api.anon()["access_token"]
    fb = api.file(tb)
    assert subscribe_all(api, tb, fb) == 3  # B is up to date

    assert api.server.sync.trim_history(2) == (2, 1)  # the erased object 2 is dropped
    assert api.server.sync.trim_history(1) == (2, 0)  # never lowers the horizon
    with api.server.store.transaction(write=False) as tx:
        assert [h[0] for h in tx.history(0, 100)] == [3]
        assert tx.get_object("Car", pk_key(2)) is None and tx.horizon() == 2

    # C is behind the horizon: it may still hold object 2, whose erasure is gone
    status, err = sync_down(api, tc, fc, 1)
    assert (status, err["error"], err["detail"]["reason"]) == (
        409,
        "client_reset_required",
        "history_trimmed",
    )
    status, err = api.post("/sync/upload", upload_body(fc, 1, [[0, "Car", 2]], base=1), tc)
    assert (status, err["error"], err["detail"]["reason"]) == (
        409,
        "client_reset_required",
        "history_trimmed",
    )
    # B is past it and carries on; a fresh file bootstraps without a reset
    assert sync_down(api, tb, fb, 3)[1]["batch"] == "steady"
    assert api.post("/sync/upload", upload_body(fb, 1, [[0, "Car", 4]], base=3), tb)[0] == 200
    td = api.anon()["access_token"]
    fd = api.file(td)
    sub = {"file_ident": fd["file_ident"], "salt": fd["salt"], "query_version": 1}
    api.post("/sync/subscriptions", {**sub, "queries": {"Car": [["TRUEPREDICATE", []]]}}, td)
    status, dl = sync_down(api, td, fd, 0)
    assert status == 200 and dl["batch"] == "last"
    assert sorted(e[2] for e in dl["entries"]) == [1, 3, 4]
    # age-based trimming: everything older than "now" (all of it) goes
    assert api.server.sync.trim_history(older_than_ms=0)[0] == 4


def test_timestamps_must_not_go_backwards_within_a_file(api: Api) -> None:
    tok, f = setup_file(api)
    now = int(time.time() * 1000)
    assert api.post("/sync/upload", upload_body(f, 1, [[0, "Car", 1]], ts=now), tok)[0] == 200
    assert (
        api.post("/sync/upload", upload_body(f, 2, [[0, "Car", 2]], ts=now - 10), tok)[1]["error"]
        == "clock_skew"
    )
