"""Links to deleted objects: which classes can link to which (also through
embedded objects), and clearing the stored links to objects deleted in a
write.  There is no backlink index, so each class that can link to a dead
class is scanned once when the write's deletions are flushed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import realmpy.codec as codec
from realmpy.layout import table_name
from realmpy.schema import ObjectSchema, Schema

if TYPE_CHECKING:
    from realmpy.realm import Realm

__all__ = ["clear_links", "link_reach", "strip_links"]


def link_reach(schema: Schema) -> dict[str, set[str]]:
    """Class name -> classes its objects can link to, also through embedded objects."""
    direct: dict[str, set[str]] = {}
    embeds: dict[str, set[str]] = {}
    for c in schema.classes:
        direct[c.name] = {p.target for p in c.properties if p.type == "link" and p.target}
        embeds[c.name] = {p.target for p in c.properties if p.type == "embedded" and p.target}
    reach: dict[str, set[str]] = {}
    for c in schema.classes:
        seen: set[str] = set()
        out: set[str] = set()
        stack = [c.name]
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            out |= direct.get(n, set())
            stack.extend(embeds.get(n, set()))
        reach[c.name] = out
    return reach


def strip_links(
    schema: Schema, cls: ObjectSchema, rec: dict[str, Any], dead: dict[str, set[bytes] | None]
) -> dict[str, Any] | None:
    """``rec`` without its links to dead objects, or None if it has none."""
    out: dict[str, Any] | None = None
    for p in cls.properties:
        value = rec.get(p.name)
        if value is None or p.target is None:
            continue
        new: Any = value
        if p.type == "link":
            if p.target not in dead:
                continue
            keys = dead[p.target]

            def gone(x: Any, keys: set[bytes] | None = keys) -> bool:
                return x is not None and (keys is None or x in keys)

            if p.collection is None:
                new = None if gone(value) else value
            elif p.collection == "list":
                new = [x for x in value if not gone(x)]
            elif p.collection == "set":
                new = {x for x in value if not gone(x)}
            else:
                new = {k: (None if gone(x) else x) for k, x in value.items()}
            if new == value:
                continue
        else:  # embedded: strip inside
            emb = schema[p.target]
            if p.collection is None:
                inner = strip_links(schema, emb, value, dead)
                if inner is None:
                    continue
                new = inner
            elif p.collection == "list":
                items = [strip_links(schema, emb, x, dead) if x else None for x in value]
                if all(x is None for x in items):
                    continue
                new = [x if y is None else y for x, y in zip(value, items, strict=True)]
            elif p.collection == "dict":
                parts = {
                    k: (strip_links(schema, emb, x, dead) if x else None) for k, x in value.items()
                }
                if all(x is None for x in parts.values()):
                    continue
                new = {k: (x if parts[k] is None else parts[k]) for k, x in value.items()}
            else:
                continue
        if out is None:
            out = dict(rec)
        out[p.name] = new
    return out


def clear_links(realm: Realm, dead: dict[str, set[bytes] | None]) -> None:
    """Remove links to deleted objects (``dead``: class -> keys, None =
    all) from every object that can hold one, in the open write.

    There is no backlink index: each class that can link to a dead
    class (directly or through embedded objects) is scanned once."""
    txn = realm._require_write()
    targets = set(dead)
    for c in realm._schema.classes:
        if c.embedded or not (realm._reach.get(c.name, set()) & targets):
            continue
        table = table_name(c.name)
        names = realm._info[c.name].names
        changed: list[tuple[bytes, bytes]] = []
        for key, raw in txn.scan(table):
            rec = strip_links(realm._schema, c, codec.record_to_dict(raw, names), dead)
            if rec is not None:
                changed.append((key, codec.record_from_dict(rec, names)))
        if changed:
            txn.put_many(table, changed)
            realm._stamp += 1
