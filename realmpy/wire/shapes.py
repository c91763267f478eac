"""Shape checks shared by every ``from_wire``: a field of a map with a type,
an unsigned int, a bounded string, a table/field name, a key path; each
raises :class:`~realmpy.wire.errors.MalformedMessage` saying where."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from realmpy.wire.errors import MalformedMessage


def _map(obj: object, what: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise MalformedMessage(f"{what} must be a map")
    return obj


def _get(
    m: Mapping[str, Any],
    key: str,
    typ: type | tuple[type, ...],
    what: str,
    *,
    optional: bool = False,
    default: Any = None,
) -> Any:
    if key not in m or m[key] is None:
        if optional:
            return default
        raise MalformedMessage(f"{what}: missing {key!r}")
    v = m[key]
    if isinstance(v, bool) and bool not in (typ if isinstance(typ, tuple) else (typ,)):
        raise MalformedMessage(f"{what}: {key!r} has the wrong type")
    if not isinstance(v, typ):
        raise MalformedMessage(f"{what}: {key!r} has the wrong type")
    return v


def _uint(
    m: Mapping[str, Any],
    key: str,
    what: str,
    *,
    optional: bool = False,
    default: int = 0,
    maximum: int = 2**63 - 1,
) -> int:
    v = _get(m, key, int, what, optional=optional, default=default)
    if not 0 <= v <= maximum:
        raise MalformedMessage(f"{what}: {key!r} out of range")
    return int(v)


def _str(
    m: Mapping[str, Any], key: str, what: str, *, optional: bool = False, max_len: int = 1024
) -> Any:
    v = _get(m, key, str, what, optional=optional)
    if v is not None and len(v) > max_len:
        raise MalformedMessage(f"{what}: {key!r} is longer than {max_len}")
    return v


def _name(v: object, what: str) -> str:
    if not isinstance(v, str) or not 0 < len(v) <= 128:
        raise MalformedMessage(f"{what} must be a name of 1-128 characters")
    return v


def _field_name(v: object, what: str) -> str:
    name = _name(v, what)
    if "." in name:
        raise MalformedMessage(f"{what} {name!r}: field names cannot contain '.' (path separator)")
    return name


MAX_PATH_CHARS: Final = 1024
"""An op's ``field`` may be a dotted path into embedded objects (``address.city``)."""


def _path(v: object, what: str) -> str:
    if not isinstance(v, str) or not 0 < len(v) <= MAX_PATH_CHARS:
        raise MalformedMessage(
            f"{what} must be a field name or path of 1-{MAX_PATH_CHARS} characters"
        )
    return v
