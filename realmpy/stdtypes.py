"""``datetime``, ``Decimal`` and ``UUID`` without importing their modules up front.

Why: importing ``uuid`` (which imports ``platform``), ``datetime`` and
``decimal`` was about 4 ms of ``import realmpy`` (issue 15), and a realm
whose models and values use none of them never needs them.  Two facts make
them lazy without changing any behaviour:

- a value of one of these types exists only once its module was imported,
  so *recognising* a value (:func:`is_datetime`, ...) asks ``sys.modules``
  and never imports;
- *making* a value (decoding a stored one, a property's zero value) imports
  the module there, with an ordinary ``import`` in the function that makes
  it.

An annotation naming one of the types is recognised the same way
(:func:`lazy_scalar`): its module is loaded, since the annotation names it.
"""

from __future__ import annotations

import sys
from typing import Any, Final

__all__ = ["is_datetime", "is_decimal", "is_uuid", "lazy_scalar"]


def is_datetime(v: object) -> bool:
    """``isinstance(v, datetime.datetime)``, without importing datetime."""
    m = sys.modules.get("datetime")
    return m is not None and isinstance(v, m.datetime)


def is_decimal(v: object) -> bool:
    """``isinstance(v, decimal.Decimal)``, without importing decimal."""
    m = sys.modules.get("decimal")
    return m is not None and isinstance(v, m.Decimal)


def is_uuid(v: object) -> bool:
    """``isinstance(v, uuid.UUID)``, without importing uuid."""
    m = sys.modules.get("uuid")
    return m is not None and isinstance(v, m.UUID)


_SCALARS: Final[dict[tuple[Any, Any], str]] = {
    ("datetime", "datetime"): "datetime",
    ("decimal", "Decimal"): "decimal",
    ("uuid", "UUID"): "uuid",
}


def lazy_scalar(tp: Any) -> str | None:
    """The property type name of ``tp`` if it is ``datetime.datetime``,
    ``decimal.Decimal`` or ``uuid.UUID`` (the very class, not a subclass or
    a namesake), else None."""
    key = (getattr(tp, "__module__", None), getattr(tp, "__qualname__", None))
    name = _SCALARS.get(key)
    if name is None or getattr(sys.modules.get(key[0] or ""), key[1] or "", None) is not tp:
        return None
    return name
