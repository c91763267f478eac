"""A module imported where it is first used, then a plain global.

Why: a new process that opens a realm and reads (``import realmpy``, open,
``len(realm.all(C))``) needs none of the write path's modules (bulk add, the
backlink and full-text indexes, managed collections, embedded objects), and
unmarshalling and running them is a measurable part of a cold start (issue
15).  An ``import`` inside each function that uses one costs an import
lookup on every call, too much on the per-object add path.  Instead the
importing module binds a stand-in under the module's alias; the stand-in's
first attribute access imports the module and rebinds the alias to it in the
importer's namespace, so every later use is the global lookup it was before.

Usage (type checkers see the real import)::

    if TYPE_CHECKING:
        import realmpy.bulkadd as _bulkadd
    else:
        _bulkadd = on_first_use("realmpy.bulkadd", "_bulkadd", globals())

Thread safety: two threads may both import (the import system serialises
the module's execution) and both rebind the alias to the same module.
"""

from __future__ import annotations

import sys
from typing import Any


class _OnFirstUse:
    __slots__ = ("_alias", "_name", "_namespace")

    def __init__(self, name: str, alias: str, namespace: dict[str, Any]) -> None:
        self._name = name
        self._alias = alias
        self._namespace = namespace

    def __getattr__(self, attr: str) -> Any:
        __import__(self._name)
        module = sys.modules[self._name]
        self._namespace[self._alias] = module
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<{self._name}, imported on first use>"


def on_first_use(name: str, alias: str, namespace: dict[str, Any]) -> Any:
    """A stand-in for module ``name`` bound as ``namespace[alias]`` (the
    importer's ``globals()``): its first attribute access imports the module
    and replaces the stand-in with it."""
    return _OnFirstUse(name, alias, namespace)
