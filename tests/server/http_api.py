"""The server's HTTP API in-process: msgpack over Starlette's test client, with an injectable clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from realmpy.server.asgi import ServerApp, create_app
from realmpy.server.config import ServerConfig, load_config
from realmpy.server.testing import make_store
from realmpy.wire.protocol import pack, unpack

P = "/api/v1/app/default"
CAR: dict[str, Any] = {
    "primary_key": "id",
    "fields": {
        "id": {"type": "int"},
        "make": {"type": "string", "optional": True},
        "miles": {"type": "counter"},
        "tags": {"type": "string", "collection": "list"},
    },
}


class Clock:
    """An injectable clock, so token expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


class Api:
    """msgpack over the test client."""

    def __init__(self, client: TestClient, server: ServerApp, clock: Clock) -> None:
        self.c, self.server, self.clock = client, server, clock

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        h = {"content-type": "application/msgpack", **(headers or {})}
        if token:
            h["authorization"] = f"Bearer {token}"
        content = raw if raw is not None else (None if body is None else pack(body))
        r = self.c.request(
            method,
            path
            if path.startswith("/")
            and not path.startswith("/auth")
            and not path.startswith("/sync")
            else P + path,
            content=content,
            headers=h,
        )
        try:
            return r.status_code, unpack(r.content)
        except Exception:
            return r.status_code, r.text

    def post(
        self, path: str, body: Any = None, token: str | None = None, **kw: Any
    ) -> tuple[int, Any]:
        return self.call("POST", path, body, token, **kw)

    def anon(self) -> dict[str, Any]:
        status, body = self.post("/auth/login", {"provider": "anonymous"})
        assert status == 200, body
        return body  # type: ignore[no-any-return]

    def file(self, token: str, nonce: str = "device-0001") -> dict[str, Any]:
        status, body = self.post("/sync/ident", {"nonce": nonce}, token)
        assert status == 200, body
        return body  # type: ignore[no-any-return]


def make_api(kind: str, tmp: Path, config: ServerConfig) -> Iterator[Api]:
    clock = Clock()
    with make_store(kind, tmp) as store:
        server = create_app(config, store, now=clock)
        with TestClient(server.app) as client:
            yield Api(client, server, clock)


def upload_body(
    f: dict[str, Any], cv: int, ops: list[Any], base: int = 0, ts: int | None = None
) -> dict[str, Any]:
    ts = int(time.time() * 1000) if ts is None else ts
    return {
        "file_ident": f["file_ident"],
        "salt": f["salt"],
        "changesets": [
            {"client_version": cv, "base_server_version": base, "timestamp": ts, "ops": ops}
        ],
    }


def config_from_toml(tmp_path: Path, text: str) -> ServerConfig:
    """The server configuration a ``server.toml`` holding ``text`` gives."""
    cfg_file = tmp_path / "server.toml"
    cfg_file.write_text(text)
    return load_config(cfg_file)


def setup_file(api: Api) -> tuple[str, dict[str, Any]]:
    tok = api.anon()["access_token"]
    assert api.post("/sync/schema", {"tables": {"Car": CAR}}, tok)[0] == 200
    return tok, api.file(tok)
