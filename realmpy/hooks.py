"""Hooks the lower modules of the object layer call, filled in from above.

Models (``schema``), their collections (``managed``) and ``results`` offer
``add_listener``, but the notifier that implements it sits above them (it
follows realms, which hold results and objects).  Layers import downwards
only (docs/architecture.md), so the notifier registers its functions here
when it is imported, which is at the first listener (not with a realm: a
process that never listens does not pay for it, issue 15's cold start).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from realmpy.errors import InvalidObjectError

__all__ = ["Listenable", "add_listener", "register_listeners"]

# The module that registers the listener kinds (imported at the first use).
_NOTIFIER = "realmpy.notifier"


class Listenable:
    """A store whose commits the notifier follows: :class:`realmpy.realm.Realm`
    derives from it (an embedded object's store, or an unmanaged object's, does not)."""

    __slots__ = ()


ListenerAdder = Callable[..., Any]
_ADDERS: dict[str, ListenerAdder] = {}


def register_listeners(**adders: ListenerAdder) -> None:
    """Called by :mod:`realmpy.notifier`: ``object=``, ``collection=``, ``results=``."""
    _ADDERS.update(adders)


def add_listener(kind: str, *args: Any) -> Any:
    """Register a listener of ``kind`` (see :func:`register_listeners`)."""
    adder = _ADDERS.get(kind)
    if adder is None:
        importlib.import_module(_NOTIFIER)  # registers the kinds
        adder = _ADDERS.get(kind)
    if adder is None:
        raise InvalidObjectError("only objects managed by a realm can have listeners")
    return adder(*args)
