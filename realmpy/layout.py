"""Where the object layer keeps things in the engine's tables.

One home for the names of the tables and meta keys a realm file holds (see
docs/format.md for the whole file): the object layer, the notifier and the
sync history all read them from here, so none of them reaches into another's
private names.
"""

from __future__ import annotations

from typing import Any, Final

import realmpy.codec as codec
from realmpy.objectid import ObjectId
from realmpy.schema import MISSING, Property
from realmpy.storage import HISTORY_KEY, HISTORY_TABLE

__all__ = [
    "BACKLINKS_KEY",
    "BACKLINK_PREFIX",
    "FULLTEXT_PREFIX",
    "HISTORY_KEY",
    "INDEX_PREFIX",
    "KEY_FORMAT_KEY",
    "KEY_FORMAT_VALUE",
    "META",
    "OLD_PREFIX",
    "SCHEMA_KEY",
    "TABLE_PREFIX",
    "VERSION_KEY",
    "backlink_name",
    "fulltext_name",
    "index_name",
    "table_name",
    "zero_value",
]

TABLE_PREFIX: Final = "o:"  # one table per top-level class: primary key -> record
INDEX_PREFIX: Final = "i:"  # one table per indexed property: value key + primary key -> b""
# one table per link property of a top-level class: target key + origin key -> b""
BACKLINK_PREFIX: Final = "b:"
# one table per full-text indexed str property: token + 0x00 + primary key -> b""
FULLTEXT_PREFIX: Final = "f:"
OLD_PREFIX = "_old:"  # a migration's copy of records whose layout changed

# The meta table holds the schema and format keys; the storage layer reads the
# file's history kind from it too (realmpy.storage.HISTORY_TABLE/HISTORY_KEY).
META: Final = HISTORY_TABLE
SCHEMA_KEY = b"schema"
VERSION_KEY = b"schema_version"
KEY_FORMAT_KEY = b"key_format"
KEY_FORMAT_VALUE = str(codec.KEY_FORMAT).encode()
# Present (b"1") once every link property of the file has its backlink table.
BACKLINKS_KEY = b"backlinks"


def table_name(cls_name: str) -> str:
    return TABLE_PREFIX + cls_name


def index_name(cls_name: str, prop: str) -> str:
    return f"{INDEX_PREFIX}{cls_name}:{prop}"


def backlink_name(cls_name: str, prop: str) -> str:
    """The backlink table of link property ``prop`` (its file name) of ``cls_name``."""
    return f"{BACKLINK_PREFIX}{cls_name}:{prop}"


def fulltext_name(cls_name: str, prop: str) -> str:
    """The full-text index of str property ``prop`` (its file name) of ``cls_name``."""
    return f"{FULLTEXT_PREFIX}{cls_name}:{prop}"


def zero_value(prop: Property, model: type | None) -> Any:
    """The value a record lacking ``prop`` reads as (property added later)."""
    if model is not None:
        f = getattr(model, "_rp_fields", {}).get(prop.name)
        if f is not None and f.has_default():
            if f.default is not MISSING:
                return f.default
    if prop.collection == "list":
        return []
    if prop.collection == "set":
        return set()
    if prop.collection == "dict":
        return {}
    if prop.optional or prop.type in ("link", "embedded"):
        return None
    # datetime, decimal and uuid are imported only for a property of theirs
    # (realmpy.stdtypes).
    if prop.type == "decimal":
        import decimal

        return decimal.Decimal(0)
    if prop.type == "uuid":
        import uuid

        return uuid.UUID(int=0)
    if prop.type == "datetime":
        import datetime

        return datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return {
        "int": 0,
        "counter": 0,
        "bool": False,
        "float": 0.0,
        "str": "",
        "bytes": b"",
        "objectid": ObjectId(bytes(12)),
    }[prop.type]
