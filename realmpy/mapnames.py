"""Queries in file names: a query written with the models' property names
(``field(map_to=...)`` maps some to other names in the file) rewritten with
the names the file, and so the sync server, knows them by.

Why: a realm evaluates queries against its models' names, but a flexible
sync subscription is evaluated by the server, which only has the file's
(sync) schema; Realm's SDKs translate subscription queries the same way.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import realmpy.query as _query
from realmpy.schema import Schema

__all__ = ["in_file_names"]


def in_file_names(schema: Schema, class_name: str, q: _query.Query) -> str:
    """The text of ``q`` (on ``class_name`` of ``schema``) with each key path
    part that names a mapped property replaced by the property's file
    name; the text as written when nothing in it is mapped."""
    if not any(p.map_to for c in schema.classes for p in c.properties):
        return q.text

    def rename(kp: _query.KeyPath) -> _query.KeyPath:
        current = schema[class_name] if class_name in schema else None
        parts: list[Any] = []
        for part in kp.parts:
            prop = current.get(part) if current is not None and type(part) is str else None
            if prop is None:
                current = None  # an aggregate, a dictionary key, an index: stop mapping
                parts.append(part)
                continue
            parts.append(prop.file_name)
            current = schema[prop.target] if prop.target and prop.target in schema else None
        return dataclasses.replace(kp, parts=tuple(parts))

    text = str(_rewrite(q.predicate, rename))
    for d in q.descriptors:
        text += " " + str(_rewrite(d, rename))
    return text


def _rewrite(node: Any, rename: Any) -> Any:
    """``node`` (a frozen dataclass of the query AST, or a tuple of them)
    with every :class:`~realmpy.query.KeyPath` in it passed through
    ``rename``."""
    if isinstance(node, _query.KeyPath):
        return rename(node)
    if isinstance(node, tuple):
        return tuple(_rewrite(x, rename) for x in node)
    if not dataclasses.is_dataclass(node) or isinstance(node, type):
        return node
    changes = {}
    for f in dataclasses.fields(node):
        v = getattr(node, f.name)
        new = _rewrite(v, rename)
        if new is not v:
            changes[f.name] = new
    return dataclasses.replace(node, **changes) if changes else node
