"""The client reset modes: what the sync client does when the server cannot
continue this file's history.  Its own module so that the configuration (which
users build) and the agent (which acts on it) both import it, neither the other.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["ClientResetMode"]


class ClientResetMode(str, Enum):
    """What to do when the server cannot continue this file's history."""

    DISCARD_UNSYNCED = "discard_unsynced"
    RECOVER_UNSYNCED = "recover_unsynced"
    RECOVER_OR_DISCARD = "recover_or_discard"
    MANUAL = "manual"
