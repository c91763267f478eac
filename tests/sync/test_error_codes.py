"""One table of wire error codes (realmpy.wire.error_codes.ERRORS): the
server's error classes take their HTTP status from it, and the client picks
its exception class from it."""

from __future__ import annotations

import pytest

from realmpy.sync.app import error_class
from realmpy.sync.errors import AppError, AuthenticationError, RateLimitedError
from realmpy.wire import protocol as P
from realmpy.wire.error_codes import ERRORS, Family, status_of


def test_a_server_error_class_takes_its_status_from_the_table() -> None:
    class Gone(P.ProtocolError):
        code = "not_found"

    assert Gone.status == ERRORS["not_found"].status == 404


def test_a_code_missing_from_the_table_cannot_be_defined() -> None:
    with pytest.raises(KeyError, match=r"error_codes\.py"):

        class Unlisted(P.ProtocolError):
            code = "no_such_code"


def test_a_status_set_outside_the_table_is_refused() -> None:
    with pytest.raises(TypeError, match="ERRORS only"):

        class Elsewhere(P.ProtocolError):
            code = "not_found"
            status = 410


def test_client_side_codes_have_no_status() -> None:
    for code, entry in ERRORS.items():
        assert (entry.status is None) == (entry.family is Family.LOCAL), code
    with pytest.raises(KeyError):
        status_of("connection_failed")


@pytest.mark.parametrize(
    ("code", "status", "cls"),
    [
        ("token_expired", 401, AuthenticationError),
        ("provider_disabled", 403, AuthenticationError),  # by its code, not its status
        ("rate_limited", 429, RateLimitedError),
        ("forbidden", 403, AppError),
        ("a_newer_servers_code", 401, AuthenticationError),  # unknown: by status
        ("a_newer_servers_code", 429, RateLimitedError),
        ("a_newer_servers_code", 400, AppError),
    ],
)
def test_the_client_picks_its_exception_from_the_table(
    code: str, status: int, cls: type[AppError]
) -> None:
    assert error_class(code, status) is cls
