"""Which schema parts and changesets a schema refusal takes out (``realmpy.sync.quarantine``),
and what each error code makes the client do (``realmpy.wire.error_codes``): no server."""

from __future__ import annotations

import importlib
import pkgutil

import realmpy.server
from realmpy.sync import quarantine as Q
from realmpy.sync.errors import SyncError
from realmpy.wire import protocol as P
from realmpy.wire.error_codes import ERROR_CODES, Handling, handling

_F = P.FieldSpec


def _tables() -> dict[str, P.TableSpec]:
    return {
        "Car": P.TableSpec(
            "id",
            {
                "id": _F("objectid"),
                "make": _F("string"),
                "owner": _F("link", True, None, "Person"),
                "address": _F("embedded", True, None, "Address"),
            },
        ),
        "Person": P.TableSpec("id", {"id": _F("objectid"), "name": _F("string")}),
        "Address": P.TableSpec("", {"city": _F("string"), "zip": _F("string")}, True),
    }


def test_refused_parts_close_over_links_embedded_objects_and_keys() -> None:
    pushed, refused = Q.without(_tables(), frozenset({("Person", None), ("Address", "zip")}))
    assert set(pushed) == {"Car"} and set(pushed["Car"].fields) == {"id", "make"}
    assert refused == {
        ("Person", None),
        ("Address", None),
        ("Address", "zip"),
        ("Car", "owner"),
        ("Car", "address"),
    }
    _, by_key = Q.without(_tables(), frozenset({("Person", "id")}))
    assert ("Person", None) in by_key and ("Car", "owner") in by_key


def test_touches_counts_dotted_paths_by_their_first_field() -> None:
    refused: Q.Refused = frozenset({("Car", "address"), ("Person", None)})
    ops = [
        P.Op(P.OpCode.SET, "Car", 1, "make", "VW"),
        P.Op(P.OpCode.SET, "Car", 1, "address.city", "Oslo"),
    ]
    assert Q.touches(ops[:1], refused) == set()
    assert Q.touches(ops, refused) == {"Car"}
    assert Q.touches([P.Op(P.OpCode.CREATE, "Person", 2)], refused) == {"Person"}


def test_refused_from_reads_the_list_or_the_single_part() -> None:
    listed = SyncError(
        "x", code="unknown_table", detail={"refused": [["Extra", None], ["Car", "n"]]}
    )
    assert Q.refused_from(listed) == frozenset({("Extra", None), ("Car", "n")})
    single = SyncError("x", code="unknown_field", detail={"table": "Car", "field": "n"})
    assert Q.refused_from(single) == frozenset({("Car", "n")})
    assert Q.refused_from(SyncError("x", code="schema_mismatch")) is None


def test_every_code_has_one_handling_and_unknown_codes_fall_back_on_the_status() -> None:
    assert handling("bad_file_ident", 403) is Handling.FATAL
    assert handling("schema_mismatch", 409) is Handling.SCHEMA
    assert handling("client_reset_required", 409) is Handling.RESET
    assert handling("connection_failed", None) is Handling.RETRY
    assert handling("invalid_query", 400) is Handling.SUBSCRIPTION
    assert handling("something_new", 503) is Handling.RETRY
    assert handling("something_new", 400) is Handling.FATAL
    # Every typed code the server sends is in the table (no status guessing for known codes).
    # Every module of the server package, so a new module's error class cannot be missed.
    modules = [P] + [
        importlib.import_module(f"realmpy.server.{info.name}")
        for info in pkgutil.iter_modules(realmpy.server.__path__)
        if info.name != "__main__"
    ]
    server_codes = {
        cls.code
        for module in modules
        for cls in vars(module).values()
        if isinstance(cls, type) and issubclass(cls, P.ProtocolError)
    }
    assert server_codes - set(ERROR_CODES) == set()
    assert SyncError("x", code="bad_file_ident", status=403).is_fatal
