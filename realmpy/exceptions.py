"""Errors of the object layer (schema, codec, query, realm, results).

Why separate from the storage errors: the object layer sits above storage and
raises about models, values and transactions, not pages.  Every class also
inherits the builtin a caller would naturally catch (``TypeError`` for a
value of the wrong type, ``ValueError`` for a malformed one, ``RuntimeError``
for an operation in the wrong state), so generic handlers keep working.
Messages say what happened and what to do.
"""

from __future__ import annotations

__all__ = [
    "ClosedRealmError",
    "CodecError",
    "ConfigurationError",
    "DuplicatePrimaryKeyError",
    "FrozenRealmError",
    "InvalidObjectError",
    "MigrationRequiredError",
    "ObjectTypeError",
    "QueryArgumentError",
    "QueryError",
    "QuerySyntaxError",
    "RealmError",
    "RealmThreadError",
    "SchemaError",
    "TransactionStateError",
    "WrongRealmError",
]


class RealmError(Exception):
    """Base of every object-layer error."""


class SchemaError(RealmError, TypeError):
    """A model class cannot be turned into a schema (bad annotation, two
    primary keys, an index on an unindexable type, an unknown link target)."""


class MigrationRequiredError(RealmError):
    """The stored schema differs incompatibly from the configured one and
    ``schema_version`` was not raised (or no migration can bridge it)."""


class ConfigurationError(RealmError, ValueError):
    """A configuration is invalid or conflicts with how the file is used
    (e.g. a local configuration on a file with sync history)."""


class ObjectTypeError(RealmError, TypeError):
    """A value does not fit its property: wrong type, missing required
    field, unknown field name, naive datetime, out-of-range int."""


class DuplicatePrimaryKeyError(RealmError, ValueError):
    """``add`` without ``update=True`` of an object whose primary key exists."""


class TransactionStateError(RealmError, RuntimeError):
    """A write outside a write transaction, or a nested/second begin."""


class ClosedRealmError(RealmError, RuntimeError):
    """The realm was closed; open a new ``Realm``."""


class FrozenRealmError(RealmError, RuntimeError):
    """A frozen realm, object or results was asked to change."""


class InvalidObjectError(RealmError, RuntimeError):
    """The object was deleted, or its realm closed."""


class WrongRealmError(RealmError, ValueError):
    """An object managed by another realm instance was passed in."""


class RealmThreadError(RealmError, RuntimeError):
    """A live realm (or its objects and results) was used from a thread
    other than the one that opened it; open a realm per thread, or pass
    ``realm.freeze()`` results between threads of your own design."""


class CodecError(RealmError, ValueError):
    """A value cannot be encoded (e.g. a key over the engine's key limit) or
    a stored record cannot be decoded."""


class QueryError(RealmError):
    """Base of query language errors."""


class QuerySyntaxError(QueryError, ValueError):
    """The query text does not parse; ``position`` is the offending offset.

    ``str(err)`` shows the message, the query, and a caret under the spot.
    """

    def __init__(self, message: str, text: str, position: int) -> None:
        self.message = message
        self.text = text
        self.position = position
        caret = " " * position + "^"
        super().__init__(f"{message} at position {position}\n  {text}\n  {caret}")

    def __reduce__(self) -> tuple[type[QuerySyntaxError], tuple[str, str, int]]:
        return (type(self), (self.message, self.text, self.position))


class QueryArgumentError(QueryError, ValueError):
    """A ``$n`` argument or ``%variable`` the query uses was not supplied, or
    the query does not fit the model (unknown property)."""
