"""A server's answer nested deeper than anything a client can write is refused with a typed
error (issue 11), never ``RecursionError`` half-way through applying a download."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from realmpy.schema import MAX_EMBEDDED_DEPTH, EmbeddedObject, Object, Schema, field
from realmpy.sync.app import _Transport
from realmpy.sync.errors import ServerResponseError
from realmpy.sync.wirevalues import MAX_RESPONSE_NESTING, check_nesting, record_from_state_values
from realmpy.wire import protocol as P


class Node(EmbeddedObject):
    n: int = 0
    child: Node | None = None


class Tree(Object):
    id: int = field(primary_key=True)
    root: Node | None = None


SCHEMA = Schema.from_models([Tree, Node])


def chain(levels: int) -> dict[str, Any] | None:
    """``levels`` embedded Nodes, each the previous one's child."""
    v: dict[str, Any] | None = None
    for i in range(levels):
        v = {"n": i, "child": v}
    return v


def nested_lists(levels: int) -> list[Any]:
    v: list[Any] = []
    for _ in range(levels - 1):
        v = [v]
    return v


def response(body: bytes) -> requests.Response:
    r = requests.Response()
    r.status_code = 200
    r.headers["content-type"] = "application/msgpack"
    r._content = body
    return r


def test_an_answer_nested_past_the_bound_is_a_typed_error() -> None:
    deep = {"entries": [{"state": chain(900)}]}  # ends in RecursionError when converted
    with pytest.raises(ServerResponseError, match="deeper than") as info:
        _Transport._decode(response(P.pack(deep)), "POST", "/sync/download")
    assert info.value.code == "bad_response"
    # the bound itself: exactly MAX_RESPONSE_NESTING levels pass, one more does not
    check_nesting(nested_lists(MAX_RESPONSE_NESTING), "answer")
    with pytest.raises(ServerResponseError):
        check_nesting(nested_lists(MAX_RESPONSE_NESTING + 1), "answer")
    # wide is not deep
    check_nesting({"entries": [{"k": [1, 2, {"a": []}]}] * 10_000}, "answer")


def test_embedded_objects_deeper_than_the_schema_limit_are_a_typed_error() -> None:
    tree = SCHEMA["Tree"]
    ok = record_from_state_values(tree, {"root": chain(MAX_EMBEDDED_DEPTH)}, {}, SCHEMA)
    assert ok["root"]["n"] == MAX_EMBEDDED_DEPTH - 1
    with pytest.raises(ServerResponseError, match="nested deeper than"):
        record_from_state_values(tree, {"root": chain(MAX_EMBEDDED_DEPTH + 1)}, {}, SCHEMA)
