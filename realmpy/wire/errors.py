"""The protocol's error classes: every ``from_wire`` raises a
:class:`ProtocolError` subclass whose ``code`` (with its HTTP status from
:mod:`realmpy.wire.error_codes`) is what the server returns and the client
matches on."""

from __future__ import annotations

from typing import Any, ClassVar

from realmpy.wire.error_codes import status_of


class ProtocolError(ValueError):
    """A message is not acceptable; ``code`` is the typed code sent to the client."""

    code: ClassVar[str] = "malformed_message"
    status: ClassVar[int] = status_of("malformed_message")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The status comes from the one table of codes (error_codes.ERRORS):
        # a subclass names its code only, and a code missing there fails here.
        super().__init_subclass__(**kwargs)
        if "status" in cls.__dict__:
            raise TypeError(f"{cls.__name__}: the status of {cls.code!r} is set in ERRORS only")
        cls.status = status_of(cls.code)

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class MalformedMessage(ProtocolError):
    """Not msgpack, or not the shape the message type requires."""

    code = "malformed_message"


class MessageTooLarge(ProtocolError):
    """A body above the endpoint's byte limit, or with more values than it allows."""

    code = "request_too_large"


class UnknownTableError(ProtocolError):
    """An operation or subscription names a table the schema does not have."""

    code = "unknown_table"


class UnknownFieldError(ProtocolError):
    """An operation names a field its table does not have."""

    code = "unknown_field"


class WrongTypeError(ProtocolError):
    """A value does not have the type its field (or primary key) declares."""

    code = "wrong_type"


class InvalidOpError(ProtocolError):
    """An operation is not applicable to its field (a list op on a scalar, ...)."""

    code = "invalid_op"


class SchemaMismatch(ProtocolError):
    """A client schema changes an existing table or field incompatibly."""

    code = "schema_mismatch"


class ClockSkewError(ProtocolError):
    """A changeset's timestamp lies too far in the future (or before the last one)."""

    code = "clock_skew"


class FileIdentError(ProtocolError):
    """A file ident or its salt is unknown, forged, or belongs to another user."""

    code = "bad_file_ident"


class AuthError(ProtocolError):
    """Missing, invalid, expired or revoked credentials."""

    code = "invalid_token"
