"""Links to deleted objects: which classes can link to which (also through
embedded objects), and clearing the stored links to objects deleted in a
write.  The objects linking to a dead object directly are found in the
backlink index (:mod:`realmpy.backlinkindex`); only classes that can hold a
link to a dead class inside embedded objects, or in a mixed value (which
may link to any class and is not in the index), are scanned, once per
write."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import realmpy.codec as codec
from realmpy.layout import backlink_name, table_name
from realmpy.ondemand import on_first_use
from realmpy.schema import ObjectSchema, Schema

if TYPE_CHECKING:
    import realmpy.backlinkindex as backlinkindex
    from realmpy.realm import Realm
else:  # only a delete needs it (realmpy.ondemand)
    backlinkindex = on_first_use("realmpy.backlinkindex", "backlinkindex", globals())

__all__ = ["clear_links", "embedded_reach", "link_reach", "strip_links"]


def link_reach(schema: Schema) -> dict[str, set[str]]:
    """Class name -> classes its objects can link to, also through embedded objects."""
    direct: dict[str, set[str]] = {}
    embeds: dict[str, set[str]] = {}
    anything = {c.name for c in schema.classes if not c.embedded}
    for c in schema.classes:
        direct[c.name] = {p.target for p in c.properties if p.type == "link" and p.target}
        if any(p.type == "mixed" for p in c.properties):
            direct[c.name] |= anything  # a mixed value links to any class
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


def embedded_reach(schema: Schema) -> dict[str, set[str]]:
    """Class name -> classes its objects can link to from inside their
    embedded objects or from their mixed values (links the backlink index
    does not hold)."""
    inner = link_reach(schema)
    anything = {c.name for c in schema.classes if not c.embedded}
    out: dict[str, set[str]] = {}
    for c in schema.classes:
        found: set[str] = set()
        if any(p.type == "mixed" for p in c.properties):
            found |= anything
        for p in c.properties:
            if p.type == "embedded" and p.target:
                found |= inner.get(p.target, set())
        out[c.name] = found
    return out


def strip_links(
    schema: Schema, cls: ObjectSchema, rec: dict[str, Any], dead: dict[str, set[bytes] | None]
) -> dict[str, Any] | None:
    """``rec`` without its links to dead objects, or None if it has none."""
    out: dict[str, Any] | None = None
    for p in cls.properties:
        value = rec.get(p.name)
        if value is None:
            continue
        new: Any = value
        if p.type == "mixed":
            new = _strip_mixed(value, dead)
            if new is value:
                continue
        elif p.target is None:
            continue
        elif p.type == "link":
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


def _strip_mixed(value: Any, dead: dict[str, set[bytes] | None]) -> Any:
    """A stored mixed value (or collection of them) with its links to dead
    objects nulled, as Realm does; ``value`` itself if it has none."""
    t = type(value)
    if t is codec.MixedLink:
        keys = dead.get(value.cls, set())
        return None if keys is None or value.key in keys else value
    if t is list or t is set:
        items = [_strip_mixed(x, dead) for x in value]
        if all(a is b for a, b in zip(items, value)):
            return value
        return items if t is list else set(items)
    if t is dict:
        entries = {k: _strip_mixed(x, dead) for k, x in value.items()}
        return value if all(entries[k] is x for k, x in value.items()) else entries
    return value


def clear_links(realm: Realm, dead: dict[str, set[bytes] | None]) -> None:
    """Remove links to deleted objects (``dead``: class -> keys, None =
    all) from every object that holds one, in the open write."""
    txn = realm._require_write()
    schema = realm._schema
    # Objects linking directly: from the backlink index (candidates).
    holders: dict[str, set[bytes]] = {}
    for target, keys in dead.items():
        for c, p in backlinkindex.linked_from(schema, target):
            found = holders.setdefault(c.name, set())
            if keys is None:
                # Every target is dead: every entry's origin (its second key).
                table = backlink_name(c.name, p.file_name)
                found.update(codec.encode_key(codec.decode_key(k)[1]) for k, _ in txn.scan(table))
            else:
                for k in keys:
                    found.update(backlinkindex.origins(txn, c, p, k))
    for name, keys in holders.items():
        info = realm._info[name]
        for key in sorted(keys):
            raw = txn.get(info.table, key)
            if raw is not None:
                _rewrite(realm, info.schema, key, raw, dead)
    # Links inside embedded objects: scan the classes that can hold them.
    targets = set(dead)
    for c in schema.classes:
        if c.embedded or not (realm._embedded_reach.get(c.name, set()) & targets):
            continue
        for key, raw in list(txn.scan(table_name(c.name))):
            _rewrite(realm, c, bytes(key), raw, dead)


def _rewrite(
    realm: Realm, cls: ObjectSchema, key: bytes, raw: bytes, dead: dict[str, set[bytes] | None]
) -> None:
    """Store object ``key`` of ``cls`` (record ``raw``) without its links
    to dead objects, if it has any."""
    info = realm._info[cls.name]
    old = codec.record_to_dict(raw, info.names)
    new = strip_links(realm._schema, cls, old, dead)
    if new is None:
        return
    txn = realm._require_write()
    backlinkindex.update(txn, cls, info.links, key, old, new)
    for pname, iname in info.indexed:  # an indexed mixed value may have been a link
        if old.get(pname) is not new.get(pname) and pname in old:
            pk = codec.decode_key(key)[0]
            txn.delete(iname, codec.encode_keys(old[pname], pk))
            txn.put(iname, codec.encode_keys(new[pname], pk), b"")
    txn.put(info.table, key, codec.record_from_dict(new, info.names))
    realm._stamp += 1
