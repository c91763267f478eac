"""Queries evaluated for a user learn nothing the user may not read (issue 11).

A link to an object the user may not read (or that does not exist) is null
in rules and subscriptions, through every path, aggregate and ``@count``;
downloads carry no overwritten values; hostile query shapes are a 400.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from realmpy.server import asgi as server_app
from realmpy.server.config import ServerConfig, load_config
from realmpy.wire.merge import ObjectState
from realmpy.wire.protocol import DownloadResponse, pack, unpack
from tests.server.http_api import Api, config_from_toml, make_api, upload_body

CONFIG = """
app_id = "default"
[auth]
anonymous = true
scrypt_n = 1024

[schema.Task]
primary_key = "id"
fields = { id = "int", owner_id = "string", secret = "string?", n = "int?", parent = "link:Task?", links = "link:Task[]", named = "link:Task[str]", box = "embedded:Box?" }

[schema.Box]
embedded = true
fields = { ref = "link:Task?", n = "int?" }

[rules]
read = "FALSEPREDICATE"
write = "FALSEPREDICATE"

[rules.Task]
read = "owner_id == %user.id"
write = "owner_id == %user.id"

[schema.Note]
primary_key = "id"
fields = { id = "int", owner_id = "string", body = "string?", tags = "string[]" }

[rules.Note]
read = "TRUEPREDICATE"
write = "owner_id == %user.id"
"""

SECRET = "K3-topsecret"


@pytest.fixture
def server_config(tmp_path: Path) -> ServerConfig:
    return config_from_toml(tmp_path, CONFIG)


class User:
    def __init__(self, api: Api, nonce: str) -> None:
        t = api.anon()
        self.api, self.tok, self.id = api, t["access_token"], t["user_id"]
        self.f = api.file(self.tok, nonce)
        self.cv = 0
        self.qv = 0

    def upload(self, ops: list[Any]) -> dict[str, Any]:
        self.cv += 1
        status, res = self.api.post("/sync/upload", upload_body(self.f, self.cv, ops), self.tok)
        assert status == 200, res
        return res  # type: ignore[no-any-return]

    def subscribe(self, query: str, *args: Any, table: str = "Task") -> tuple[int, Any]:
        self.qv += 1
        body = {
            "file_ident": self.f["file_ident"],
            "salt": self.f["salt"],
            "query_version": self.qv,
            "queries": {table: [[query, list(args)]]},
        }
        return self.api.post("/sync/subscriptions", body, self.tok)

    def visible(self, query: str, *args: Any) -> set[int]:
        """The Task pks a fresh bootstrap of ``query`` downloads."""
        status, res = self.subscribe(query, *args)
        assert status == 200, res
        body = {"file_ident": self.f["file_ident"], "salt": self.f["salt"]}
        status, dl = self.api.post("/sync/download", {**body, "after_server_version": 0}, self.tok)
        assert status == 200, dl
        return {e[2] for e in dl["entries"] if e[0] == "state"}


def task(pk: int, owner: str, **fields: Any) -> list[list[Any]]:
    ops: list[list[Any]] = [[0, "Task", pk], [2, "Task", pk, "owner_id", owner]]
    for name, value in fields.items():
        ops.append([2, "Task", pk, name, value])
    return ops


@pytest.fixture
def ab(api: Api) -> tuple[User, User]:
    """B owns task 2 (secret, n=7); A owns 1 (parent -> B's 2), 3 (parent -> A's 1),
    4 (links/named -> [A's 5, B's 2]), 5 (n=1), 6 (parent -> 99, which does not exist)."""
    a, b = User(api, "device-a"), User(api, "device-b")
    assert b.upload(task(2, b.id, secret=SECRET, n=7))["rejected"] == []
    ops = task(5, a.id, n=1) + task(1, a.id, parent=2) + task(3, a.id, parent=1)
    ops += [*task(4, a.id), [4, "Task", 4, "links", None, 5], [4, "Task", 4, "links", None, 2]]
    ops += [[8, "Task", 4, "named", "mine", 5], [8, "Task", 4, "named", "theirs", 2]]
    ops += task(6, a.id, parent=99)
    assert a.upload(ops)["rejected"] == []
    return a, b


def test_prefix_probe_through_a_link_learns_nothing(ab: tuple[User, User]) -> None:
    a, _ = ab
    # The attack: guess B's secret one character at a time through A's own task 1.
    answers = {
        guess: 1 in a.visible("parent.secret BEGINSWITH $0", guess) for guess in ("K", "Z", "")
    }
    assert answers == {"K": False, "Z": False, "": False}
    assert a.visible("parent.secret == nil") == {1, 3, 4, 5, 6}
    # The link itself reads as null: B's object might as well not exist, as task 6's target.
    assert a.visible("parent == nil") == {1, 4, 5, 6}
    assert a.visible("parent == $0", 2) == set()
    assert a.visible("parent == $0", 1) == {3}


def test_multi_hop_paths_stop_at_an_unreadable_object(ab: tuple[User, User]) -> None:
    a, _ = ab
    assert a.visible("parent.parent.secret BEGINSWITH 'K'") == set()
    assert a.visible("parent.parent == nil") == {1, 3, 4, 5, 6}
    assert a.visible("parent.parent.n == 7") == set()


def test_collections_of_links_drop_unreadable_targets(ab: tuple[User, User]) -> None:
    a, _ = ab
    assert a.visible("links.@count == 1") == {4}
    assert a.visible("links.@sum.n == 1 AND links.@max.n == 1") == {4}
    assert a.visible("ANY links.n == 7") == set()
    assert a.visible("ANY links.secret BEGINSWITH 'K'") == set()
    assert a.visible("ALL links.n == 1 AND links.@count > 0") == {4}
    # a dictionary keeps the key (A's own data) with a null value
    assert a.visible("named.@count == 2 AND named['theirs'] == nil") == {4}
    assert a.visible("ANY named.@values.n == 7") == set()


def test_links_inside_embedded_objects_are_filtered_too(ab: tuple[User, User]) -> None:
    a, _ = ab
    a.upload([*task(7, a.id), [2, "Task", 7, "box", {"ref": 2, "n": 1}]])
    a.upload([*task(8, a.id), [2, "Task", 8, "box", {"ref": 5, "n": 1}]])
    assert a.visible("box.ref.secret BEGINSWITH 'K'") == set()
    assert a.visible("box.n == 1 AND box.ref == nil") == {7}
    assert a.visible("box.ref.n == 1") == {8}


def test_write_rules_see_unreadable_links_as_null(kind: str, tmp_path: Path) -> None:
    cfg_file = tmp_path / "w.toml"
    rules = CONFIG.replace('write = "owner_id == %user.id"', 'write = "parent == nil"')
    cfg_file.write_text(rules)
    # whether a write is refused must not tell whether B's task is there either
    for api2 in make_api(kind, tmp_path, load_config(cfg_file)):
        a, b = User(api2, "device-a"), User(api2, "device-b")
        assert b.upload(task(2, b.id, secret=SECRET))["rejected"] == []
        # A's task linking to B's (unreadable) task satisfies `parent == nil`
        assert a.upload(task(1, a.id, parent=2))["rejected"] == []
        assert [r["pk"] for r in a.upload(task(3, a.id, parent=1))["rejected"]] == [3]


@pytest.mark.parametrize(
    "text", ["(" * 1500 + "n == 1" + ")" * 1500, "NOT " * 1000 + "n == 1", "!" * 3000 + "n == 1"]
)
def test_oversized_subscriptions_are_a_400(api: Api, text: str) -> None:
    status, res = User(api, "device-c").subscribe(text)
    assert (status, res["error"]) == (400, "query_too_complex")
    assert "MAX_QUERY_DEPTH" in res["message"]


def test_like_subscription_answers_without_backtracking(ab: tuple[User, User]) -> None:
    a, _ = ab
    attack = "*a*a*a*a*a*a*a*a*a*b"
    a.upload(task(7, a.id, secret="a" * 36) + task(8, a.id, secret="a" * 36 + "b"))
    assert a.visible("secret LIKE $0", attack) == {8}
    assert a.visible("secret LIKE[c] $0", attack.upper()) == {8}


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("nope == 1", "nope"),
        ("parent.nope BEGINSWITH 'x'", "parent.nope"),
        ("ANY links.parent.nope == 1", "links.parent.nope"),
        ("n.x == 1", "n.x"),
        ("TRUEPREDICATE SORT(nope ASC)", "nope"),
    ],
)
def test_subscriptions_naming_unknown_properties_are_refused(
    api: Api, text: str, field: str
) -> None:
    status, res = User(api, "device-d").subscribe(text)
    assert (status, res["error"], res["detail"]["field"]) == (400, "unknown_field", field)


def test_subscriptions_through_links_and_collections_are_accepted(api: Api) -> None:
    u = User(api, "device-e")
    for text in (
        "parent.parent.secret == 'x'",
        "links.@count > 1 AND links.@sum.n > 2 AND ANY links.parent.n == 1",
        "named['any key'].n == 1 AND named.@keys == 'k' AND named.@values.secret == 'x'",
        "TRUEPREDICATE SORT(parent.n DESC) DISTINCT(secret)",
    ):
        status, res = u.subscribe(text)
        assert status == 200, (text, res)


def test_readers_download_no_overwritten_values(api: Api) -> None:
    a, b1 = User(api, "device-a"), User(api, "device-b1")
    b2 = User.__new__(User)  # B's second device: same user, another file
    b2.api, b2.tok, b2.id, b2.cv, b2.qv = api, b1.tok, b1.id, 0, 0
    b2.f = api.file(b1.tok, "device-b2")
    draft = [
        [0, "Note", 1],
        [2, "Note", 1, "owner_id", b1.id],
        [2, "Note", 1, "body", "draft-secret-K3"],
    ]
    draft.append([4, "Note", 1, "tags", None, "erased-secret"])
    assert b1.upload(draft)["rejected"] == []
    # B's other device overwrites the body and erases the list element it downloaded
    body = {"file_ident": b2.f["file_ident"], "salt": b2.f["salt"], "query_version": 1}
    api.post("/sync/subscriptions", {**body, "queries": {"Note": [["TRUEPREDICATE", []]]}}, b2.tok)
    dl = api.post("/sync/download", {**body, "after_server_version": 0}, b2.tok)[1]
    [entry] = dl["entries"]
    elem = next(iter(ObjectState.from_wire(entry[3]).lists["tags"]))
    ops = [[2, "Note", 1, "body", "final text"], [5, "Note", 1, "tags", list(elem)]]
    res = api.post("/sync/upload", {**upload_body(b2.f, 1, ops, base=dl["server_version"])}, b2.tok)
    assert res[0] == 200 and res[1]["rejected"] == []
    # reader A bootstraps: the bytes she receives hold the current values only
    a.subscribe("TRUEPREDICATE", table="Note")
    ident = {"file_ident": a.f["file_ident"], "salt": a.f["salt"], "after_server_version": 0}
    status, got = api.post("/sync/download", ident, a.tok)
    wire = pack(got)
    assert status == 200 and b"final text" in wire
    assert b"draft-secret-K3" not in wire and b"erased-secret" not in wire
    [note] = [e for e in got["entries"] if e[1] == "Note"]
    assert ObjectState.from_wire(note[3]).materialize("id", 1) == {
        "id": 1,
        "owner_id": b1.id,
        "body": "final text",
        "tags": [],
    }


def test_a_download_encoded_entry_by_entry_and_sent_in_pieces_is_the_same_bytes(
    ab: tuple[User, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_app, "SEND_CHUNK_BYTES", 64)  # answers above it go in pieces
    a, _ = ab
    a.subscribe("TRUEPREDICATE")
    body = {"file_ident": a.f["file_ident"], "salt": a.f["salt"], "after_server_version": 0}
    got = a.api.c.post(
        "/api/v1/app/default/sync/download",
        content=pack(body),
        headers={"content-type": "application/msgpack", "authorization": f"Bearer {a.tok}"},
    )
    raw = got.content
    assert got.headers["content-length"] == str(len(raw)) and len(raw) > 64
    res = DownloadResponse.from_wire(unpack(raw))
    assert len(res.entries) == 5 and res.pack() == raw == pack(res.to_wire())
    empty = DownloadResponse(1, 1, 2, 0, 1, "steady", 1.0, (), b"tok")
    assert empty.pack() == pack(empty.to_wire())


def test_read_rules_through_link_cycles_and_long_chains_terminate() -> None:
    from realmpy.server.links import MAX_LINK_DEPTH, LinkResolver
    from realmpy.server.permissions import Permissions
    from realmpy.wire.merge import ObjectState as State
    from realmpy.wire.protocol import FieldSpec, Op, OpCode, Stamp, TableSpec, pk_key

    schema = {
        "T": TableSpec(
            "id",
            {
                "id": FieldSpec("int"),
                "owner_id": FieldSpec("string"),
                "parent": FieldSpec("link", optional=True, target="T"),
            },
        )
    }
    # readable if the parent is (a chain), or if it has none and is mine
    perms = Permissions(
        {"T": ("parent.owner_id == 'me' OR (parent == nil AND owner_id == 'me')", None)}
    )
    states: dict[bytes, State] = {}

    def put(pk: int, parent: int | None) -> None:
        st = State()
        ops = [Op(OpCode.CREATE, "T", pk), Op(OpCode.SET, "T", pk, "owner_id", "me")]
        ops.append(Op(OpCode.SET, "T", pk, "parent", parent))
        for i, op in enumerate(ops):
            st.apply(op, Stamp(1, 1, 1, i), 0, 1)
        states[pk_key(pk)] = st

    n = 20 * MAX_LINK_DEPTH
    for pk in range(n):
        put(pk, pk + 1 if pk + 1 < n else None)  # 0 -> 1 -> ... -> n-1
    put(1000, 1001)
    put(1001, 1000)  # a cycle
    links = LinkResolver(schema, lambda t, pkb: states.get(pkb), perms, {})

    def readable(pk: int) -> bool:
        rec = links.wrap("T", states[pk_key(pk)].materialize("id", pk))
        return perms.can_read("T", rec, {}, links)

    assert readable(n - 1) and readable(n - 2)  # no parent; a readable parent
    assert readable(0)  # 320 links deep: decided without RecursionError
    # deciding 1000 asks about 1001, whose parent (1000, being decided) reads as null,
    # so ``parent == nil AND owner_id == 'me'`` holds for 1001, and then for 1000
    assert readable(1000) and readable(1001)


def test_a_download_looks_at_a_bounded_number_of_objects(api: Api) -> None:
    api.server.sync.max_objects_per_batch = 3
    a = User(api, "device-batch")
    for first in range(0, 8, 2):  # four server versions of two tasks each
        a.upload(task(first, a.id, n=first) + task(first + 1, a.id, n=first + 1))
    ident = {"file_ident": a.f["file_ident"], "salt": a.f["salt"]}

    def drain(after: int, token: bytes | None = None) -> tuple[list[str], set[int], int]:
        batches: list[str] = []
        got: set[int] = set()
        while True:
            body = {**ident, "after_server_version": after, "bootstrap_token": token}
            status, res = api.post("/sync/download", body, a.tok)
            assert status == 200, res
            batches.append(res["batch"])
            got |= {e[2] for e in res["entries"] if e[0] == "state"}
            token, after = res.get("bootstrap_token"), res["server_version"]
            if res["batch"] != "more":
                return batches, got, after

    a.subscribe("n >= 5")  # bootstrap: 8 objects, 3 at a time
    batches, got, cursor = drain(0)
    assert (batches, got) == (["more", "more", "last"], {5, 6, 7})
    for first in range(10, 18, 2):  # incremental: 3 objects, then the rest of their version
        a.upload(task(first, a.id, n=first) + task(first + 1, a.id, n=first + 1))
    batches, got, _ = drain(cursor)
    assert (batches, got) == (["more", "steady"], set(range(10, 18)))


def test_a_subscription_set_is_held_to_one_querys_limits(api: Api) -> None:
    from realmpy.query import MAX_QUERY_TERMS
    from realmpy.server.permissions import MAX_SUBSCRIPTION_ARGS

    u = User(api, "device-size")
    body = {"file_ident": u.f["file_ident"], "salt": u.f["salt"], "query_version": 1}
    wide = " OR ".join(["n == 1"] * 10)  # 10 comparisons per query, 101 queries
    queries: dict[str, list[list[Any]]] = {"Task": [[wide, []]] * (MAX_QUERY_TERMS // 10 + 1)}
    status, res = api.post("/sync/subscriptions", {**body, "queries": queries}, u.tok)
    assert (status, res["error"]) == (400, "query_too_complex")
    queries = {"Task": [["n IN $0", [list(range(MAX_SUBSCRIPTION_ARGS + 1))]]]}
    status, res = api.post("/sync/subscriptions", {**body, "queries": queries}, u.tok)
    assert (status, res["error"]) == (400, "query_too_complex")
    queries = {"Task": [["n IN $0", [list(range(MAX_SUBSCRIPTION_ARGS))]]]}
    assert api.post("/sync/subscriptions", {**body, "queries": queries}, u.tok)[0] == 200


def test_a_long_in_list_argument_is_hashed_once_per_download(api: Api) -> None:
    u = User(api, "device-in")
    u.upload([op for pk in range(20) for op in task(pk, u.id, n=pk)])
    wanted = [3, 7.0, "7", True, None, *range(1000, 1000 + 9_990)]
    assert u.visible("n IN $0", wanted) == {3, 7}
    assert u.visible("NOT (n IN $0) AND n < 5", wanted) == {0, 1, 2, 4}


def test_a_lost_last_bootstrap_batch_is_sent_again(api: Api) -> None:
    """The server records a bootstrap as finished (and its objects as in the file's view) when
    it answers the last batch; a client that never applied that answer says so (the query
    version it applied) and gets the bootstrap again, objects at or below its cursor included
    (the chaos test's device lost them while its cursor said it was up to date)."""
    a, b = User(api, "device-writes"), User(api, "device-lost-answer")
    for pk in range(3):  # server versions 1..3
        a.upload([[0, "Note", pk], [2, "Note", pk, "owner_id", a.id]])
    ident = {"file_ident": b.f["file_ident"], "salt": b.f["salt"]}

    def download(after: int, applied: int) -> dict[str, Any]:
        body = {**ident, "after_server_version": after, "query_version": applied}
        status, res = api.post("/sync/download", body, b.tok)
        assert status == 200, res
        return res  # type: ignore[no-any-return]

    first = download(0, 0)  # no subscription yet: nothing, cursor 3
    assert (first["batch"], first["server_version"], first["query_version"]) == ("last", 3, 0)
    status, res = b.subscribe("TRUEPREDICATE", table="Note")
    assert status == 200, res
    lost = download(3, 0)  # the bootstrap's last batch: the client never applies it
    assert lost["batch"] == "last" and {e[2] for e in lost["entries"]} == {0, 1, 2}
    again = download(3, 0)  # it asks again from the cursor and query version it still has
    assert again["batch"] == "last" and {e[2] for e in again["entries"]} == {0, 1, 2}, again
    applied = download(3, 1)  # applied: nothing again
    assert (applied["batch"], applied["entries"]) == ("steady", []), applied
