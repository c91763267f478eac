"""Owner rules: user A can neither read nor write user B's objects; refused writes are compensated."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from realmpy.server.config import ConfigError, ServerConfig, load_config
from tests.server.http_api import Api, config_from_toml, make_api, upload_body

CONFIG = """
app_id = "default"
[auth]
anonymous = true
scrypt_n = 1024

[schema.Task]
primary_key = "id"
fields = { id = "int", owner_id = "string", title = "string?" }

[rules]
read = "FALSEPREDICATE"
write = "FALSEPREDICATE"

[rules.Task]
read = "owner_id == %user.id"
write = "owner_id == %user.id"
"""


@pytest.fixture
def server_config(tmp_path: Path) -> ServerConfig:
    return config_from_toml(tmp_path, CONFIG)


def user(api: Api, nonce: str) -> tuple[str, str, dict[str, Any]]:
    t = api.anon()
    f = api.file(t["access_token"], nonce)
    sub = {
        "file_ident": f["file_ident"],
        "salt": f["salt"],
        "query_version": 1,
        "queries": {"Task": [["TRUEPREDICATE", []]]},
    }
    assert api.post("/sync/subscriptions", sub, t["access_token"])[0] == 200
    return t["access_token"], t["user_id"], f


def download(api: Api, tok: str, f: dict[str, Any], after: int = 0) -> dict[str, Any]:
    body = {"file_ident": f["file_ident"], "salt": f["salt"], "after_server_version": after}
    status, res = api.post("/sync/download", body, tok)
    assert status == 200, res
    return res  # type: ignore[no-any-return]


def test_users_only_see_their_own_objects(api: Api) -> None:
    ta, ua, fa = user(api, "device-a-1")
    tb, ub, fb = user(api, "device-b-1")
    ops_a = [[0, "Task", 1], [2, "Task", 1, "owner_id", ua], [2, "Task", 1, "title", "A's"]]
    ops_b = [[0, "Task", 2], [2, "Task", 2, "owner_id", ub], [2, "Task", 2, "title", "B's"]]
    assert api.post("/sync/upload", upload_body(fa, 1, ops_a), ta)[1]["rejected"] == []
    assert api.post("/sync/upload", upload_body(fb, 1, ops_b), tb)[1]["rejected"] == []
    got_a = {e[2] for e in download(api, ta, fa)["entries"] if e[0] == "state"}
    got_b = {e[2] for e in download(api, tb, fb)["entries"] if e[0] == "state"}
    assert (got_a, got_b) == ({1}, {2})


def test_writes_to_another_users_object_are_refused_and_compensated(api: Api) -> None:
    ta, ua, fa = user(api, "device-a-2")
    tb, ub, fb = user(api, "device-b-2")
    api.post(
        "/sync/upload",
        upload_body(
            fa, 1, [[0, "Task", 1], [2, "Task", 1, "owner_id", ua], [2, "Task", 1, "title", "mine"]]
        ),
        ta,
    )
    download(api, tb, fb)  # B is now at the server's version
    # B edits A's task, erases it, and creates one in A's name: all refused
    status, res = api.post(
        "/sync/upload", upload_body(fb, 1, [[2, "Task", 1, "title", "hacked"]], base=1), tb
    )
    assert status == 200
    [rej] = res["rejected"]
    assert (rej["client_version"], rej["table"], rej["pk"]) == (1, "Task", 1)
    assert "write rule" in rej["reason"]
    res = api.post("/sync/upload", upload_body(fb, 2, [[1, "Task", 1]], base=1), tb)[1]
    assert [r["pk"] for r in res["rejected"]] == [1]
    res = api.post(
        "/sync/upload",
        upload_body(fb, 3, [[0, "Task", 9], [2, "Task", 9, "owner_id", ua]], base=1),
        tb,
    )[1]
    assert [r["pk"] for r in res["rejected"]] == [9]
    # giving one's own object away is refused too
    api.post(
        "/sync/upload",
        upload_body(fb, 4, [[0, "Task", 5], [2, "Task", 5, "owner_id", ub]], base=1),
        tb,
    )
    res = api.post(
        "/sync/upload", upload_body(fb, 5, [[2, "Task", 5, "owner_id", ua]], base=1), tb
    )[1]
    assert [r["pk"] for r in res["rejected"]] == [5]
    # A's task is untouched on the server
    dl = download(api, ta, fa)
    [state] = [e for e in dl["entries"] if e[2] == 1]
    from realmpy.wire.merge import ObjectState

    assert ObjectState.from_wire(state[3]).materialize("id", 1) == {
        "id": 1,
        "owner_id": ua,
        "title": "mine",
    }
    # B's next download carries compensating resets, without A's data
    entries = [e for e in download(api, tb, fb, after=1)["entries"] if e[0] == "reset"]
    assert [(e[2], e[4]["client_version"]) for e in entries] == [(1, 1), (1, 2), (9, 3), (5, 5)]
    resets = {e[2]: e for e in entries}
    assert resets[1][3] is None and resets[9][3] is None  # unreadable for B: just drop locally
    assert "write rule" in resets[1][4]["reason"]
    rec = ObjectState.from_wire(resets[5][3]).materialize("id", 5)
    assert rec is not None and rec["owner_id"] == ub


def test_bad_rules_are_refused_at_start(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[rules.Task]\nread = "owner_id =="\n')
    with pytest.raises(ConfigError):
        load_config(cfg)
    cfg.write_text('[schema.Task]\nprimary_key = "id"\nfields = { id = "int", x = "vector" }\n')
    with pytest.raises(ConfigError):
        load_config(cfg)


LINK_CONFIG = """
app_id = "default"
[auth]
anonymous = true
scrypt_n = 1024

[schema.Team]
primary_key = "id"
fields = { id = "string", owner_id = "string", name = "string" }

[schema.Project]
primary_key = "id"
fields = { id = "int", team = "link:Team?", title = "string?" }

[rules.Team]
read = "owner_id == %user.id"
write = "owner_id == %user.id"

[rules.Project]
read = "team.owner_id == %user.id"
write = "team.owner_id == %user.id"
"""


@pytest.fixture
def link_api(kind: str, tmp_path: Path) -> Iterator[Api]:
    yield from make_api(kind, tmp_path, config_from_toml(tmp_path, LINK_CONFIG))


def test_rules_and_subscriptions_follow_links(link_api: Api) -> None:
    api = link_api

    def who(nonce: str, queries: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        t = api.anon()
        f = api.file(t["access_token"], nonce)
        sub = {"file_ident": f["file_ident"], "salt": f["salt"], "query_version": 1}
        status, res = api.post(
            "/sync/subscriptions", {**sub, "queries": queries}, t["access_token"]
        )
        assert status == 200, res
        return t["access_token"], t["user_id"], f

    q_red = {"Project": [["team.name == 'red' AND team == $0", ["t1"]]]}
    ta, ua, fa = who("device-a-9", q_red)
    tb, _, fb = who("device-b-9", {"Project": [["TRUEPREDICATE", []]]})
    # the project's rule reads its team, created earlier in the same upload
    ops = [
        [0, "Team", "t1"],
        [2, "Team", "t1", "owner_id", ua],
        [2, "Team", "t1", "name", "red"],
        [0, "Project", 1],
        [2, "Project", 1, "team", "t1"],
        [0, "Project", 3],
    ]
    res = api.post("/sync/upload", upload_body(fa, 1, ops), ta)[1]
    # project 3 has no team: team.owner_id is null, the rule denies it
    assert [(r["table"], r["pk"]) for r in res["rejected"]] == [("Project", 3)]
    # B cannot attach a project to A's team, nor see A's project
    ops_b = [[0, "Project", 2], [2, "Project", 2, "team", "t1"]]
    res_b = api.post("/sync/upload", upload_body(fb, 1, ops_b), tb)[1]
    assert [(r["table"], r["pk"]) for r in res_b["rejected"]] == [("Project", 2)]
    assert [e[2] for e in download(api, tb, fb)["entries"] if e[0] == "state"] == []
    # A's subscription goes through the link too
    assert [e[1:3] for e in download(api, ta, fa)["entries"] if e[0] == "state"] == [["Project", 1]]
