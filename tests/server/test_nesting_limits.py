"""Deeply nested values are typed errors, never ``RecursionError`` (issue 11).

Embedded objects nest at most ``MAX_EMBEDDED_DEPTH`` deep: a realm refuses a
deeper value with ``CodecError``, the sync server answers ``400 wrong_type``
(or ``400 malformed_message`` when msgpack itself refuses the nesting), and a
value at the limit still goes through both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from realmpy.config import Configuration
from realmpy.errors import CodecError
from realmpy.realm import Realm
from realmpy.schema import MAX_EMBEDDED_DEPTH, EmbeddedObject, Object, field
from realmpy.server.config import ServerConfig
from realmpy.wire.merge import ObjectState
from tests.server.http_api import Api, config_from_toml, upload_body


class Node(EmbeddedObject):
    v: int = 0
    child: Node | None = None


class Root(Object):
    id: int = field(primary_key=True)
    node: Node | None = None
    nodes: list[Node] = field(default_factory=list)


def chain(depth: int) -> Node:
    n = Node(v=0)
    for i in range(1, depth):
        n = Node(v=i, child=n)
    return n


def test_a_realm_refuses_embedded_objects_nested_too_deep(tmp_path: Path) -> None:
    with Realm(Configuration.local([Root, Node], path=tmp_path / "r.realm")) as r:
        with r.write():
            root = r.add(Root(id=1, node=chain(MAX_EMBEDDED_DEPTH)))
        for value in (chain(MAX_EMBEDDED_DEPTH + 1), chain(10_000)):
            with pytest.raises(CodecError, match="MAX_EMBEDDED_DEPTH"), r.write():
                r.add(Root(id=2, node=value))
            with pytest.raises(CodecError), r.write():
                root.nodes.append(value)
        assert r.find(Root, 2) is None
        assert root.nodes == []
        got, depth = root.node, 0
        while got is not None:
            got, depth = got.child, depth + 1
        assert depth == MAX_EMBEDDED_DEPTH


CONFIG = """
app_id = "default"
[auth]
anonymous = true
scrypt_n = 1024

[schema.Node]
embedded = true
fields = { v = "int", child = "embedded:Node?" }

[schema.Root]
primary_key = "id"
fields = { id = "int", node = "embedded:Node?" }
"""


@pytest.fixture
def server_config(tmp_path: Path) -> ServerConfig:
    return config_from_toml(tmp_path, CONFIG)


def wire_chain(depth: int) -> dict[str, Any] | None:
    n: dict[str, Any] | None = None
    for i in range(depth):
        n = {"v": i, "child": n}
    return n


def test_the_server_refuses_embedded_values_nested_too_deep(api: Api) -> None:
    tok = api.anon()["access_token"]
    f = api.file(tok, "device-deep")
    ok = [[0, "Root", 1], [2, "Root", 1, "node", wire_chain(MAX_EMBEDDED_DEPTH)]]
    assert api.post("/sync/upload", upload_body(f, 1, ok), tok)[0] == 200
    for depth, code in ((MAX_EMBEDDED_DEPTH + 1, "wrong_type"), (900, "wrong_type")):
        ops = [[0, "Root", 2], [2, "Root", 2, "node", wire_chain(depth)]]
        status, res = api.post("/sync/upload", upload_body(f, 2, ops), tok)
        assert (status, res["error"]) == (400, code)
    # msgpack itself refuses 10,000 levels (a raw body: the test client's packer would too)
    deep = b"\x82\xa1v\x00\xa5child" * 10_000 + b"\xc0"
    body = upload_body(f, 2, [[2, "Root", 1, "node", None]])
    from realmpy.wire.protocol import pack

    raw = pack(body).replace(b"\xa4node\xc0", b"\xa4node" + deep)
    status, res = api.post("/sync/upload", raw=raw, token=tok)
    assert (status, res["error"]) == (400, "malformed_message")
    # a path write counts the embedded objects it goes through
    path = ".".join(["node"] + ["child"] * MAX_EMBEDDED_DEPTH) + ".v"
    status, res = api.post("/sync/upload", upload_body(f, 2, [[2, "Root", 1, path, 1]]), tok)
    assert (status, res["error"]) == (400, "wrong_type")
    sub = {"file_ident": f["file_ident"], "salt": f["salt"], "query_version": 1}
    api.post("/sync/subscriptions", {**sub, "queries": {"Root": [["TRUEPREDICATE", []]]}}, tok)
    body = {"file_ident": f["file_ident"], "salt": f["salt"], "after_server_version": 0}
    [entry] = api.post("/sync/download", body, tok)[1]["entries"]
    rec = ObjectState.from_wire(entry[3]).materialize("id", 1)
    assert rec is not None and rec["node"] == wire_chain(MAX_EMBEDDED_DEPTH)
