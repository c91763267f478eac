"""Hooks the lower modules of the object layer call, filled in from above.

Models (``schema``), their collections (``managed``) and ``results`` offer
``add_listener``, but the notifier that implements it sits above them (it
follows realms, which hold results and objects).  Layers import downwards
only (docs/architecture.md), so the notifier registers its functions here
when it is imported; ``realmpy.realm`` imports it, so every realm-managed
object finds them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from realmpy.errors import InvalidObjectError

__all__ = ["add_listener", "register_listeners"]

ListenerAdder = Callable[..., Any]
_ADDERS: dict[str, ListenerAdder] = {}


def register_listeners(**adders: ListenerAdder) -> None:
    """Called by :mod:`realmpy.notifier`: ``object=``, ``collection=``, ``results=``."""
    _ADDERS.update(adders)


def add_listener(kind: str, *args: Any) -> Any:
    """Register a listener of ``kind`` (see :func:`register_listeners`)."""
    adder = _ADDERS.get(kind)
    if adder is None:  # no realm was ever opened in this process
        raise InvalidObjectError("only objects managed by a realm can have listeners")
    return adder(*args)
