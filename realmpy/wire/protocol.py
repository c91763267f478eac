"""The sync wire format, version 1: msgpack bodies over HTTP, shared by client and server.

Why one module imported by both sides: the client and the server must agree
byte for byte on how values, operations, changesets and messages look, and on
what counts as malformed.  Keeping the codec *and* its validation here means a
message the client can build is a message the server accepts, and a
third-party client has one package (``realmpy/wire/``, plus
``docs/protocol.md``) to read.

Everything that arrives from the network is untrusted: ``unpack`` bounds the
sizes msgpack may allocate, and every ``from_wire`` checks shapes and types
and raises a ``ProtocolError`` subclass whose ``code`` is the typed error code
the server returns with a 4xx status.  Nothing here imports the server.

Values: msgpack's own types (nil, bool, int, float, str, bin) plus three
extension types (``ObjectId`` = 1, ``UUID`` = 2, ``Decimal`` = 3, see
``ExtCode``) and msgpack's timestamp extension (-1) for aware datetimes.

One concept per module, all re-exported here (``from realmpy.wire import
protocol as P`` sees every public name): :mod:`~realmpy.wire.errors` (the
error classes), :mod:`~realmpy.wire.values` (value encoding, ``pack`` /
``unpack``), :mod:`~realmpy.wire.shapes` (shape checks of untrusted maps),
:mod:`~realmpy.wire.tables` (the synced schema and value checks),
:mod:`~realmpy.wire.changesets` (operations and changesets),
:mod:`~realmpy.wire.messages` (each endpoint's request and response).
"""

from __future__ import annotations

from typing import Final

from realmpy.wire.changesets import Changeset, Op, OpCode, Stamp
from realmpy.wire.errors import (
    AuthError,
    ClockSkewError,
    FileIdentError,
    InvalidOpError,
    MalformedMessage,
    MessageTooLarge,
    ProtocolError,
    SchemaMismatch,
    UnknownFieldError,
    UnknownTableError,
    WrongTypeError,
)
from realmpy.wire.messages import (
    BATCH_STATES,
    ApiKeyRequest,
    ApiKeyResponse,
    DownloadEntry,
    DownloadRequest,
    DownloadResponse,
    ErrorResponse,
    IdentRequest,
    IdentResponse,
    LoginRequest,
    RegisterRequest,
    RejectedWrite,
    SchemaRequest,
    SubscriptionRequest,
    SubscriptionResponse,
    TokenResponse,
    UploadRequest,
    UploadResponse,
    ensure_sequence,
)
from realmpy.wire.shapes import MAX_PATH_CHARS
from realmpy.wire.tables import (
    COLLECTIONS,
    FIELD_TYPES,
    MAX_DICT_KEY_CHARS,
    PK_TYPES,
    FieldSpec,
    TableSpec,
    check_value,
    check_whole,
    resolve_path,
    tables_from_wire,
    tables_to_wire,
)
from realmpy.wire.values import MAX_STRING_BYTES, ExtCode, PrimaryKey, Value, pack, pk_key, unpack

__all__ = [
    "BATCH_STATES",
    "COLLECTIONS",
    "FIELD_TYPES",
    "MAX_DICT_KEY_CHARS",
    "MAX_PATH_CHARS",
    "MAX_STRING_BYTES",
    "PK_TYPES",
    "PROTOCOL_VERSION",
    "ApiKeyRequest",
    "ApiKeyResponse",
    "AuthError",
    "Changeset",
    "ClockSkewError",
    "DownloadEntry",
    "DownloadRequest",
    "DownloadResponse",
    "ErrorResponse",
    "ExtCode",
    "FieldSpec",
    "FileIdentError",
    "IdentRequest",
    "IdentResponse",
    "InvalidOpError",
    "LoginRequest",
    "MalformedMessage",
    "MessageTooLarge",
    "Op",
    "OpCode",
    "PrimaryKey",
    "ProtocolError",
    "RegisterRequest",
    "RejectedWrite",
    "SchemaMismatch",
    "SchemaRequest",
    "Stamp",
    "SubscriptionRequest",
    "SubscriptionResponse",
    "TableSpec",
    "TokenResponse",
    "UnknownFieldError",
    "UnknownTableError",
    "UploadRequest",
    "UploadResponse",
    "Value",
    "WrongTypeError",
    "check_value",
    "check_whole",
    "ensure_sequence",
    "pack",
    "pk_key",
    "resolve_path",
    "tables_from_wire",
    "tables_to_wire",
    "unpack",
]

PROTOCOL_VERSION: Final = 1
"""Bumped on any incompatible change; it is the ``vN`` in every URL."""
