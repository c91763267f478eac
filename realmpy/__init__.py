"""realmpy: an embedded object database for Python.

One database file is shared by many processes: copy-on-write B+trees with
MVCC snapshots, one writer at a time, and a shared version counter that other
processes can wait on.  The storage layer is :mod:`realmpy.storage`; errors
live in :mod:`realmpy.errors`.

The storage names are imported lazily (on first use), so that importing
``realmpy`` (and its pure-Python modules) does not require the compiled
engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .config import Configuration  # object layer: pure Python, engine names lazy
from .errors import *  # noqa: F403
from .errors import __all__ as _errors_all
from .objectid import ObjectId
from .schema import Backlinks, Counter, EmbeddedObject, Mixed, Object, backlinks, field

# Nothing else is imported here: a local realm needs only the modules above and,
# at the first Realm, realmpy.realm.  The sync client, the server, asyncio and
# the query compiler load on first use: the names below through __getattr__
# (PEP 562), the sync configuration kinds and history through the registries
# that name their modules (realmpy.config, realmpy.storage).

_STORAGE_NAMES = ("Environment", "ReaderInfo", "Snapshot", "Stats", "WriteTransaction")

_OBJECT_NAMES = {
    "Realm": "realm",
    "Transaction": "realm",
    "Results": "results",
    "ResultsChange": "notifier",
    "ObjectChange": "notifier",
    "ListChange": "notifier",
    "SetChange": "notifier",
    "DictChange": "notifier",
    "ListenerToken": "notifier",
    # sync client (issue 5), imported lazily like the rest
    "App": "sync.app",
    "AppConfiguration": "sync.app",
    "Credentials": "sync.app",
    "User": "sync.app",
}

__all__ = [
    "__version__",
    *_errors_all,
    *_STORAGE_NAMES,
    "Backlinks",
    "Configuration",
    "Counter",
    "EmbeddedObject",
    "Mixed",
    "Object",
    "ObjectId",
    "backlinks",
    "field",
    *_OBJECT_NAMES,
]

if TYPE_CHECKING:
    from .notifier import DictChange as DictChange
    from .notifier import ListChange as ListChange
    from .notifier import ListenerToken as ListenerToken
    from .notifier import ObjectChange as ObjectChange
    from .notifier import ResultsChange as ResultsChange
    from .notifier import SetChange as SetChange
    from .realm import Realm as Realm
    from .realm import Transaction as Transaction
    from .results import Results as Results
    from .storage import Environment as Environment
    from .storage import ReaderInfo as ReaderInfo
    from .storage import Snapshot as Snapshot
    from .storage import Stats as Stats
    from .storage import WriteTransaction as WriteTransaction
    from .sync.app import App as App
    from .sync.app import AppConfiguration as AppConfiguration
    from .sync.app import Credentials as Credentials
    from .sync.app import User as User


def __getattr__(name: str) -> Any:
    if name in _STORAGE_NAMES:
        from . import storage

        return getattr(storage, name)
    if name in _OBJECT_NAMES:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_OBJECT_NAMES[name]}"), name)
    raise AttributeError(f"module 'realmpy' has no attribute {name!r}")
