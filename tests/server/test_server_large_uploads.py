"""Large uploads (issue 11): integrated alone and a slice at a time, still all-or-nothing.

An 80,000-op upload used to keep a merged state per object in memory until its commit
(~480,000 objects: +120 MiB, and 160-190 ms garbage-collector pauses of every thread).
The properties here: a large upload's result is exactly that of integrating it whole, at
most a slice of merged states is alive at any time, an error after slices were written
leaves nothing behind (a group of small uploads holding at most a slice's ops:
``tests/server/test_server_scale.py``).
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest

from realmpy.server.auth import AuthConfig
from realmpy.server.config import ServerConfig
from realmpy.server.store import Commit, Tx
from realmpy.server.sync_service import PreparedUpload
from realmpy.wire.merge import ObjectState
from realmpy.wire.protocol import UploadRequest, UploadResponse, pack, pk_key, unpack
from tests.server.http_api import Api, config_from_toml, setup_file

SLICE = 4


@pytest.fixture
def server_config(tmp_path: Path) -> ServerConfig:
    cfg = config_from_toml(
        tmp_path,
        '[rules.Car]\nread = "TRUEPREDICATE"\nwrite = "make != \'banned\'"\n',
    )
    return ServerConfig(permissions=cfg.permissions, auth=AuthConfig(scrypt_n=2**10))


def changeset(cv: int, ops: list[Any], base: int = 0) -> dict[str, Any]:
    return {"client_version": cv, "base_server_version": base, "timestamp": 1_000 + cv, "ops": ops}


def creates(pks: range, make: str = "VW") -> list[Any]:
    return [op for pk in pks for op in ([0, "Car", pk], [2, "Car", pk, "make", make])]


def large_upload(f: dict[str, Any]) -> dict[str, Any]:
    """Two changesets over more objects than a slice: the second updates objects of several
    of the first's slices, and one object of each is refused by the write rule."""
    first = creates(range(1, 11)) + creates(range(11, 12), "banned")
    second = [[2, "Car", pk, "make", "Audi"] for pk in (2, 5, 9)] + creates(range(20, 23))
    second += [[2, "Car", 3, "make", "banned"]]
    return {
        "file_ident": f["file_ident"],
        "salt": f["salt"],
        "changesets": [changeset(1, first), changeset(2, second)],
    }


def state(api: Api, pk: int) -> dict[str, Any] | None:
    with api.server.store.transaction(write=False) as tx:
        row = tx.get_object("Car", pk_key(pk))
    if row is None:
        return None
    return ObjectState.from_wire(unpack(row.state)).materialize("id", pk)


@pytest.fixture
def sliced(api: Api, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, Any]]:
    """A file of a user on a server whose slices (and groups) are ``SLICE`` ops."""
    monkeypatch.setattr(api.server.sync, "upload_slice_ops", SLICE)
    monkeypatch.setattr(api.server.sync._uploads, "_max_weight", SLICE)
    return setup_file(api)


def test_a_large_upload_is_integrated_a_slice_at_a_time_as_if_whole(
    api: Api, sliced: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    tok, f = sliced
    sync = api.server.sync
    body = large_upload(f)
    p = api.server.auth.authenticate(tok)
    job = PreparedUpload(p, UploadRequest.from_wire(body), sync.schema(), p.variables())

    alive: list[int] = []
    put_objects = Tx.put_objects

    def counting(self: Tx, rows: Any) -> None:
        alive.append(sum(isinstance(o, ObjectState) for o in gc.get_objects()))
        put_objects(self, rows)

    monkeypatch.setattr(Tx, "put_objects", counting)
    commits: list[Commit] = []
    api.server.store.add_listener(commits.append)
    [res] = sync._integrate_group([job])
    assert isinstance(res, UploadResponse)
    # Slices were written as they went, none holding more than a slice's merged states
    # (plus its objects' previous states); integrated whole, it would be all 15 at once.
    assert len(alive) > 2 and max(alive) <= 2 * SLICE
    assert (res.acked_client_version, res.server_version) == (2, 2)
    assert sorted((r.client_version, r.pk) for r in res.rejected) == [(1, 11), (2, 3)]

    makes = {pk: (state(api, pk) or {}).get("make") for pk in [*range(1, 12), 20, 21, 22]}
    assert makes == {
        **{pk: "VW" for pk in range(1, 11)},
        2: "Audi",
        5: "Audi",
        9: "Audi",
        11: None,  # refused: never created
        20: "VW",
        21: "VW",
        22: "VW",
    }
    assert state(api, 11) is None
    with api.server.store.transaction(write=False) as tx:
        history = tx.history(0, 10)
        views = tx.views_many(f["file_ident"], [("Car", pk_key(pk)) for pk in range(1, 23)])
        rejections = tx.rejections(f["file_ident"], 0, 2)
    # The history keeps each op at its index, refused ops nil: exactly pack() of the list.
    for (_, _, cv, _, _, ops), cs in zip(history, body["changesets"]):
        refused = {(1, 11), (2, 3)}
        expected = [None if (cv, op[2]) in refused else op for op in cs["ops"]]
        assert ops == pack(expected)
    assert sorted(unpack(k[1]) for k, v in views.items() if v[0]) == [
        *range(1, 11),
        20,
        21,
        22,
    ]
    assert sorted((r[3], unpack(r[2])) for r in rejections) == [(1, 11), (2, 3)]
    # The commit names every table its slices wrote (the long-poll wake-up's filter).
    # (PostgreSQL: heard twice, from this process and through NOTIFY)
    assert {(c.sv, c.tables) for c in commits} == {(2, frozenset({"Car"}))}


def test_an_error_after_written_slices_leaves_nothing(
    api: Api, sliced: tuple[str, dict[str, Any]]
) -> None:
    tok, f = sliced
    body = large_upload(f)
    body["changesets"][1]["base_server_version"] = 7  # past the versions the upload makes
    status, answer = api.post("/sync/upload", body, tok)
    assert status == 400 and answer["error"] == "malformed_message"
    assert all(state(api, pk) is None for pk in range(1, 23))
    with api.server.store.transaction(write=False) as tx:
        assert tx.latest_server_version() == 0
        assert tx.history(0, 10) == []
        assert tx.views_many(f["file_ident"], [("Car", pk_key(1))]) == {}
    # The same upload, corrected, is then integrated from the start.
    body["changesets"][1]["base_server_version"] = 0
    status, answer = api.post("/sync/upload", body, tok)
    assert status == 200 and answer["server_version"] == 2
