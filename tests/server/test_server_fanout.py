"""Polls woken by one commit download together (``download_many``, ``WokenPolls``): each
answer is exactly what the poll's own download would have been."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from realmpy.server.auth import Principal
from realmpy.server.config import ServerConfig
from realmpy.server.sync_service import ClientResetRequired, SyncService
from realmpy.server.woken_polls import WokenPolls
from realmpy.wire.protocol import DownloadRequest, DownloadResponse, ProtocolError
from tests.server.http_api import Api, config_from_toml, upload_body
from tests.server.test_server_permissions import CONFIG


@pytest.fixture
def server_config(tmp_path: Path) -> ServerConfig:
    return config_from_toml(tmp_path, CONFIG)


def device(api: Api, tok: str, nonce: str, query: str) -> dict[str, Any]:
    f = api.file(tok, nonce)
    sub = {
        "file_ident": f["file_ident"],
        "salt": f["salt"],
        "query_version": 1,
        "queries": {"Task": [[query, []]]},
    }
    assert api.post("/sync/subscriptions", sub, tok)[0] == 200
    return f


def request(f: dict[str, Any], after: int, **kw: Any) -> DownloadRequest:
    body = {"file_ident": f["file_ident"], "salt": f["salt"], "after_server_version": after}
    return DownloadRequest.from_wire(body | kw)


class _Rollback(Exception):
    pass


def own_download(sync: SyncService, p: Principal, req: DownloadRequest) -> DownloadResponse:
    """What the poll's own ``download`` answers, its transaction rolled back afterwards (a
    download records what it sent, and an erased object is sent once, then forgotten)."""
    answers: list[DownloadResponse] = []
    answer = sync._answer

    def capture(*args: Any) -> DownloadResponse:
        answers.append(answer(*args))
        raise _Rollback

    sync._answer = capture  # type: ignore[method-assign,assignment]
    try:
        with pytest.raises(_Rollback):
            sync.download(p, req)
    finally:
        del sync._answer
    return answers[0]


def test_a_shared_batch_answers_each_poll_as_its_own_download(api: Api) -> None:
    sync = api.server.sync
    a, b = api.anon(), api.anon()
    ta, tb = a["access_token"], b["access_token"]
    ua = a["user_id"]
    pa, pb = api.server.auth.authenticate(ta), api.server.auth.authenticate(tb)
    a1 = device(api, ta, "device-a-1", "TRUEPREDICATE")
    a2 = device(api, ta, "device-a-2", "title == 'keep'")
    b1 = device(api, tb, "device-b-1", "TRUEPREDICATE")
    late = device(api, tb, "device-b-2", "TRUEPREDICATE")  # never downloaded: needs its bootstrap
    own = [[2, "Task", k, "owner_id", ua] for k in (1, 2, 3)]
    ops = [[0, "Task", 1], [0, "Task", 2], [0, "Task", 3], *own]
    ops += [[2, "Task", k, "title", "keep"] for k in (1, 2, 3)]
    assert api.post("/sync/upload", upload_body(a1, 1, ops), ta)[1]["rejected"] == []
    cursor = {}
    for p, f in ((pa, a1), (pa, a2), (pb, b1)):  # bootstrapped, steady
        res = sync.download(p, request(f, 0))
        assert res.batch == "last"
        cursor[f["file_ident"]] = res.server_version
    # The commits the polls then hear of: a title change (task 1 leaves a2's view), an
    # erase (a tombstone for both of A's devices), B's refused edit (B's reset).
    api.post("/sync/upload", upload_body(a1, 2, [[2, "Task", 1, "title", "gone"]], base=1), ta)
    api.post("/sync/upload", upload_body(a1, 3, [[1, "Task", 2]], base=1), ta)
    _, refused = api.post(
        "/sync/upload", upload_body(b1, 1, [[2, "Task", 3, "title", "x"]], base=1), tb
    )
    assert [r["pk"] for r in refused["rejected"]] == [3]
    polls: list[tuple[Principal, DownloadRequest]] = [
        (pa, request(a1, cursor[a1["file_ident"]])),
        (pa, request(a2, cursor[a2["file_ident"]])),
        (pb, request(b1, cursor[b1["file_ident"]])),
        (pb, request(late, 0)),
        (pb, request({"file_ident": 10**6, "salt": 1}, 0)),  # unknown file
        (pa, request(a1, 10**6)),  # cursor ahead of the server
    ]
    alone = [own_download(sync, p, req) for p, req in polls[:3]]
    got = sync.download_many(polls[:5])
    assert got[3] is None  # the bootstrap is the poll's own download
    for answer, own_answer in zip(got[:3], alone):
        assert isinstance(answer, DownloadResponse)
        assert answer.to_wire() == own_answer.to_wire()
    assert isinstance(got[0], DownloadResponse)
    # the change and the tombstone
    assert {(e.kind, e.pk) for e in got[0].entries} == {("state", 1), ("state", 2)}
    assert isinstance(got[1], DownloadResponse)
    assert {(e.kind, e.pk) for e in got[1].entries} == {("forget", 1), ("state", 2)}
    assert isinstance(got[2], DownloadResponse)
    assert [(e.kind, e.pk) for e in got[2].entries] == [("reset", 3)]
    assert isinstance(got[4], ClientResetRequired)
    with pytest.raises(ClientResetRequired) as unknown:
        sync.download(*polls[4])
    assert (str(unknown.value), unknown.value.detail) == (str(got[4]), got[4].detail)
    [ahead] = sync.download_many([polls[5]])
    assert isinstance(ahead, ClientResetRequired) and ahead.detail["reason"] == "cursor_ahead"


def test_woken_polls_batch_one_poll_per_file() -> None:
    batches: list[list[int]] = []

    def many(
        items: Sequence[tuple[Principal, DownloadRequest]],
    ) -> list[DownloadResponse | ProtocolError | None]:
        batches.append([req.file_ident for _, req in items])
        return [None if req.file_ident == 3 else ProtocolError("x") for _, req in items]

    async def main() -> list[Any]:
        woken = WokenPolls(many)
        p = Principal("u", "s", "anonymous", None)
        reqs = [request({"file_ident": fi, "salt": 1}, 0) for fi in (1, 2, 1, 3)]
        return await asyncio.gather(*(woken.download(p, r) for r in reqs), return_exceptions=True)

    got = asyncio.run(main())
    assert batches == [[1, 2, 3], [1]]  # the second poll of file 1 waits for the next batch
    assert [type(g) for g in got] == [ProtocolError, ProtocolError, ProtocolError, type(None)]
