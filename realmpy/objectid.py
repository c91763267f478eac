"""A 12-byte, BSON-compatible ObjectId without a bson dependency.

Why our own: Realm models use ObjectId primary keys by default and sync needs
ids that are unique across devices without coordination; pulling in pymongo's
``bson`` for one small class is not worth the dependency (and its C extension).

Layout (the BSON spec): 4 bytes big-endian seconds since the Unix epoch, 5
bytes of per-process randomness, 3 bytes of a big-endian counter that starts
at a random value.  Byte order therefore equals creation order (to the
second), which keeps primary-key B+trees append-mostly.  After ``fork()`` the
child draws new randomness, so parent and child never produce the same id.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import datetime as _dt  # imported by generation_time (realmpy.stdtypes)

__all__ = ["ObjectId"]

_lock: Final = threading.Lock()
_state: dict[str, int | bytes] = {}


def _next_tail() -> bytes:
    """Return the 8 bytes after the timestamp: process random + counter."""
    with _lock:
        pid = os.getpid()
        if _state.get("pid") != pid:
            _state["pid"] = pid
            _state["random"] = os.urandom(5)
            _state["counter"] = int.from_bytes(os.urandom(3), "big")
        counter = (int(_state["counter"]) + 1) & 0xFFFFFF
        _state["counter"] = counter
        rnd = _state["random"]
    assert isinstance(rnd, bytes)
    return rnd + counter.to_bytes(3, "big")


class ObjectId:
    """An immutable 12-byte identifier, ordered by its bytes.

    ``ObjectId()`` makes a new one; ``ObjectId("5f...")`` parses 24 hex
    digits; ``ObjectId(b"...12 bytes...")`` wraps raw bytes.
    """

    __slots__ = ("_bytes",)
    _bytes: bytes

    def __init__(self, value: str | bytes | ObjectId | None = None) -> None:
        if value is None:
            raw = int(time.time()).to_bytes(4, "big") + _next_tail()
        elif isinstance(value, ObjectId):
            raw = value._bytes
        elif isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            if len(raw) != 12:
                raise ValueError(f"an ObjectId is 12 bytes, got {len(raw)}")
        elif isinstance(value, str):
            if len(value) != 24:
                raise ValueError(f"an ObjectId string is 24 hex digits, got {value!r}")
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                raise ValueError(f"an ObjectId string is 24 hex digits, got {value!r}") from None
        else:
            raise TypeError(
                "ObjectId() takes None, 24 hex digits, 12 bytes or an ObjectId, "
                f"not {type(value).__name__}"
            )
        object.__setattr__(self, "_bytes", raw)

    @classmethod
    def from_datetime(cls, when: _dt.datetime) -> ObjectId:
        """The smallest ObjectId of the given second (for range queries)."""
        if when.tzinfo is None:
            raise ValueError("ObjectId.from_datetime needs a timezone-aware datetime")
        seconds = int(when.timestamp())
        return cls(seconds.to_bytes(4, "big") + bytes(8))

    @classmethod
    def is_valid(cls, value: object) -> bool:
        """True if ``ObjectId(value)`` would succeed."""
        try:
            cls(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
        return True

    @property
    def binary(self) -> bytes:
        """The 12 raw bytes."""
        return self._bytes

    @property
    def generation_time(self) -> _dt.datetime:
        """The creation second, as an aware UTC datetime."""
        import datetime

        seconds = int.from_bytes(self._bytes[:4], "big")
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("ObjectId is immutable")

    def __str__(self) -> str:
        return self._bytes.hex()

    def __repr__(self) -> str:
        return f"ObjectId('{self._bytes.hex()}')"

    def __bytes__(self) -> bytes:
        return self._bytes

    def __hash__(self) -> int:
        return hash(self._bytes)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ObjectId):
            return self._bytes == other._bytes
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        if isinstance(other, ObjectId):
            return self._bytes != other._bytes
        return NotImplemented

    def __lt__(self, other: ObjectId) -> bool:
        if isinstance(other, ObjectId):
            return self._bytes < other._bytes
        return NotImplemented

    def __le__(self, other: ObjectId) -> bool:
        if isinstance(other, ObjectId):
            return self._bytes <= other._bytes
        return NotImplemented

    def __gt__(self, other: ObjectId) -> bool:
        if isinstance(other, ObjectId):
            return self._bytes > other._bytes
        return NotImplemented

    def __ge__(self, other: ObjectId) -> bool:
        if isinstance(other, ObjectId):
            return self._bytes >= other._bytes
        return NotImplemented

    def __reduce__(self) -> tuple[type[ObjectId], tuple[bytes]]:
        return (ObjectId, (self._bytes,))
