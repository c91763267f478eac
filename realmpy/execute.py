"""The query executor: the objects of one class matching a query, read from
a realm's current version.

:func:`evaluate` (for :class:`~realmpy.results.Results`) returns lazy
records, :func:`evaluate_raw` (for the notifier, which diffs them) raw ones.
Both ask :mod:`realmpy.planner` which index or key range to read, let the
engine drop what a filter program (:mod:`realmpy.filterprogram`) rejects, and
re-check the rest with the query's matcher, which reads plain properties by
position and everything else through :func:`resolve` on a :class:`Bound`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import realmpy.backlinkindex as _backlinkindex
import realmpy.codec as codec
import realmpy.filterprogram as _pushdown
import realmpy.mixed as _mixed
import realmpy.planner as _planner
import realmpy.query as _query
from realmpy._native import Record as _Record
from realmpy._native import all_full as _all_full
from realmpy._native import found_rows as _found_rows
from realmpy._native import rows_full as _rows_full
from realmpy.classinfo import K_COUNTER, K_PLAIN, ClassInfo
from realmpy.codec import MixedLink
from realmpy.errors import CorruptError, InvalidArgumentError
from realmpy.query.ast import NestedDict, NestedList
from realmpy.query.evaluate import in_set_order
from realmpy.schema import Object, ObjectSchema, Property
from realmpy.storage import Snapshot, WriteTransaction

if TYPE_CHECKING:
    from realmpy.realm import Realm

__all__ = ["Bound", "evaluate", "evaluate_raw", "resolve"]

_OPTS = codec.RECORD_OPTIONS


class Bound:
    """A record with its class, as the query evaluator sees it."""

    __slots__ = ("cls", "key", "rec")

    def __init__(self, cls: str, key: bytes, rec: Any) -> None:
        # rec: a top-level record (a full list) or an embedded one (a dict)
        self.cls = cls
        self.key = key
        self.rec = rec

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Bound):
            return self.cls == other.cls and self.key == other.key
        if isinstance(other, Object) and other._rp_store is not None:
            return type(other).__realm_name__ == self.cls and other._rp_key == self.key
        if isinstance(other, _query.ObjectRef):  # obj('Class', pk) in a query
            if other.cls != self.cls:
                return False
            try:
                return codec.encode_key(other.pk) == self.key
            except (codec.CodecError, TypeError, ValueError):
                return False
        return False

    def __hash__(self) -> int:
        return hash((self.cls, self.key))


def record_access(
    info: ClassInfo,
) -> tuple[Callable[[str], tuple[Any] | None], Callable[[Any], Any]]:
    """How compiled queries read a decoded record of ``info``'s class: plain
    properties by position (``direct``), anything else through a
    :class:`Bound` wrapper (``bind``) made only when needed."""
    kinds, pos, name = info.kinds, info.pos, info.name

    def direct(prop: str) -> tuple[Any] | None:
        if kinds.get(prop) in (K_PLAIN, K_COUNTER):
            return (pos[prop],)
        return None

    def bind(rec: Any) -> Any:
        return Bound(name, b"", rec)

    return direct, bind


def filter_program(info: ClassInfo, q: _query.Query, args: tuple[Any, ...]) -> bytes | None:
    """The engine filter program of ``q`` with ``args`` over ``info``'s
    records (see :mod:`realmpy.filterprogram`), cached per (class, query, args)
    for plain scalar arguments.  The key carries the arguments' types too:
    ``1 == True == 1.0`` as dict keys, but they are different queries."""
    if all(type(a) in _CACHE_ARG_TYPES for a in args):
        return _filter_program_cached(info, q, tuple(map(type, args)), args)
    return _compile_filter(info, q, (), args)  # a list for IN, a datetime, ...


_CACHE_ARG_TYPES = frozenset({type(None), bool, int, float, str, bytes})


def _compile_filter(
    info: ClassInfo, q: _query.Query, _types: tuple[type, ...], args: tuple[Any, ...]
) -> bytes | None:
    # _types is unused here: it only makes the arguments' types part of the
    # lru_cache key of _filter_program_cached.
    kinds, pos = info.kinds, info.pos

    def slot(prop: str) -> int | None:
        return pos[prop] if kinds.get(prop) in (K_PLAIN, K_COUNTER) else None

    return _pushdown.compile_filter(q, args, slot, info.fill)


_filter_program_cached = functools.lru_cache(maxsize=256)(_compile_filter)


def resolve(realm: Realm, value: Any, name: str) -> Any:
    if type(value) is Bound:
        rec = value.rec
        if type(rec) is list or type(rec) is _Record:  # a top-level record: positional
            info = realm._info[value.cls]
            i = info.pos.get(name)
            if i is None:
                return resolve_backlinks(realm, info, value, name)
            prop = info.props[name]
            stored = rec[i]
        else:  # an embedded record: a map
            eprop = realm._props[value.cls].get(name)
            if eprop is None:
                return None
            prop = eprop
            stored = rec.get(name, realm._defaults[value.cls][name])
        if prop.type == "link":
            return bind_links(realm, prop, stored)
        if prop.type == "mixed":
            return bind_mixed(realm, stored, top=prop.collection is not None)
        if prop.type == "embedded":
            target = prop.target or ""
            if prop.collection == "list":
                return [Bound(target, b"", r) for r in stored]
            if prop.collection == "dict":
                return {
                    k: (None if r is None else Bound(target, b"", r)) for k, r in stored.items()
                }
            return None if stored is None else Bound(target, b"", stored)
        return stored
    return _query.default_resolver(value, name)


def resolve_backlinks(realm: Realm, info: ClassInfo, value: Bound, name: str) -> Any:
    """The objects a declared backlinks property lists, as Bounds (None if
    ``name`` is none).  A record being filtered is bound without its key:
    it is the encoded primary key (the query binder (realmpy.query.bind) refuses backlinks of a
    class without one)."""
    key = value.key
    if not key and info.pk is not None:
        key = codec.encode_key(value.rec[info.pos[info.pk]])
    if name.startswith("@links"):  # @links.Class.property, @links: undeclared
        if not key:
            return None
        incoming = _backlinkindex.incoming(
            realm._info, realm._reader(), realm._backlinks_indexed, info.name, name, key
        )
        return [Bound(origin, k, rec) for origin, k, rec in incoming]
    found = realm._backlink_rows(info.name, name, key) if key else None
    if found is None:
        return None
    origin, rows = found
    return [Bound(origin, k, rec) for k, rec in rows]


def bind_links(realm: Realm, prop: Property, stored: Any) -> Any:
    txn = realm._reader()
    target = prop.target or ""
    info = realm._info[target]
    table = info.table

    def load(link: Any) -> Bound | None:
        if link is None:
            return None
        raw = txn.get(table, bytes(link))
        return None if raw is None else Bound(target, bytes(link), info.record(raw))

    if prop.collection in ("list", "set"):
        keys = [bytes(x) for x in stored if x is not None]
        recs = get_records(txn, info, keys)
        return [Bound(target, k, r) for k, r in zip(keys, recs, strict=True) if r is not None]
    if prop.collection == "dict":
        return {k: load(v) for k, v in stored.items()}
    return load(stored)


def bind_mixed(realm: Realm, stored: Any, top: bool = False) -> Any:
    """A stored mixed value (or collection of them) as queries see it: each
    link a :class:`Bound` of its target, or None if the target is gone."""
    if type(stored) not in _MIXED_CONTAINERS:
        return stored
    if type(stored) is dict and top:  # a dict[str, Mixed] property
        return {k: bind_mixed(realm, v) for k, v in stored.items()}
    txn = realm._reader()

    def follow(link: MixedLink) -> Bound | None:
        info = realm._info.get(link.cls)
        raw = None if info is None else txn.get(info.table, link.key)
        return None if info is None or raw is None else Bound(link.cls, link.key, info.record(raw))

    if type(stored) is set:  # in Realm's set order, as a whole comparison needs it
        return [_mixed.from_stored(v, follow, NestedList, NestedDict) for v in in_set_order(stored)]
    if type(stored) is list and top:  # a list[Mixed] property: its elements are quantified
        return [_mixed.from_stored(v, follow, NestedList, NestedDict) for v in stored]
    return _mixed.from_stored(stored, follow, NestedList, NestedDict)


_MIXED_CONTAINERS = (MixedLink, list, dict, set)


def get_records(
    txn: Snapshot | WriteTransaction, info: ClassInfo, keys: list[bytes]
) -> list[list[Any] | None]:
    """Full records of ``keys`` (None where absent): one batched read,
    decoded in C."""
    try:
        recs: list[Any] = txn.get_many_msgpack(info.table, keys, _OPTS)
    except codec.CodecError:
        raise
    except Exception:  # a damaged record: find it and name it
        raws = txn.get_many(info.table, keys)
        return [None if r is None else info.decode(r) for r in raws]
    n = info.n
    if _all_full(recs, n):
        return recs
    out: list[list[Any] | None] = []
    for r in recs:
        if r is not None and type(r) is not list:
            raise codec.CodecError("corrupt object record: not an array")
        out.append(None if r is None else info.full(r))
    return out


def plan(
    realm: Realm, schema: ObjectSchema, q: _query.Query, args: tuple[Any, ...]
) -> tuple[list[bytes], bool] | None:
    return _planner.plan(realm, schema, _planner.choose(schema, q, args))


def matcher(
    realm: Realm, info: ClassInfo, q: _query.Query, args: tuple[Any, ...]
) -> Callable[[list[Any]], bool]:
    """The predicate over decoded (positional) records of ``info``'s class.

    Plain properties are read straight from the record by position;
    anything else (links, embedded objects, collections) goes through
    the resolver on a :class:`Bound` made only when needed."""
    direct, bind = record_access(info)
    return q.matcher(args, resolver=functools.partial(resolve, realm), direct=direct, wrap=bind)


def row_filter(
    realm: Realm, info: ClassInfo, q: _query.Query, args: tuple[Any, ...]
) -> Callable[[Iterable[tuple[bytes, Any]]], list[Any]]:
    """:func:`matcher` over many (key, record) pairs at once."""
    direct, bind = record_access(info)
    return q.row_filter(args, resolver=functools.partial(resolve, realm), direct=direct, wrap=bind)


def evaluate(
    realm: Realm, name: str, q: _query.Query | None, args: tuple[Any, ...]
) -> list[tuple[bytes, list[Any] | None]]:
    """Matching (key, full record) in result order.

    Scans and index joins read one engine buffer at a time and return
    lazy records (:class:`~realmpy._native.Record`: a field is decoded
    when something reads it); key lookups decode a batch at a time in C
    (``get_many_msgpack``).  The predicate reads records by position: no
    object is built for a record that does not match.  Where the engine
    can decide part of the predicate (:mod:`realmpy.filterprogram`), it drops
    the records that part rejects before any is decoded (``scan_filter``
    / ``scan_join``); the rest is re-checked here as always."""
    txn = realm._reader()
    info = realm._info[name]
    table = info.table
    if q is None:
        return txn.scan_filter_msgpack(table, None, decode=info.lazy_rows)
    pairs: list[tuple[bytes, Any]] | None = None
    chosen = _planner.choose(info.schema, q, args)  # the index read, if any
    ranged = _planner.index_prefix(info.schema, chosen)
    if ranged is not None:
        # One range of a secondary index: the engine reads it, looks the
        # keys up and (if the index does not decide everything) filters
        # the records, in one call per buffer.
        iname, prefix, exact = ranged
        program = None if exact else filter_program(info, q, args)
        try:
            pairs = txn.scan_join(iname, prefix, table, program, decode=info.lazy_rows)
        except InvalidArgumentError:
            raise
        except (CorruptError, ValueError):
            pairs = None  # a damaged record: the plain path reports it
        if pairs is not None and exact and not q.descriptors:
            return pairs
    if pairs is None and ranged is None:
        bounds = _planner.table_range(chosen)
        if bounds is not None:
            # A range of primary keys: the engine scans just that part
            # of the table, filtering as it goes; re-checked below.
            try:
                pairs = txn.scan_filter_msgpack(
                    table,
                    filter_program(info, q, args),
                    decode=info.lazy_rows,
                    start=bounds[0],
                    stop=bounds[1],
                )
            except InvalidArgumentError:
                raise
            except (CorruptError, ValueError):
                pairs = None  # a damaged record: the plain path reports it
    planned = None if pairs is not None else _planner.plan(realm, info.schema, chosen)
    if planned is not None:
        keys, exact = planned
        program = None if exact else filter_program(info, q, args)
        if program is not None:
            # The engine drops the candidates the pushable part rejects
            # (they come back as None, like absent keys).
            try:
                found = txn.get_many_msgpack(table, keys, _OPTS, program)
                pairs = full_rows(
                    info, [(k, r) for k, r in zip(keys, found, strict=True) if r is not None]
                )
            except InvalidArgumentError:
                raise
            except (CorruptError, ValueError):
                pairs = None  # a damaged record: the plain path reports it
        if pairs is None:
            recs = get_records(txn, info, keys)
            pairs = _found_rows(keys, recs)  # (k, r) where r is not None
        if exact and not q.descriptors:
            # The index decided the whole predicate: nothing to re-check.
            return pairs
    elif pairs is None:
        program = filter_program(info, q, args)
        if program is not None:
            # The engine drops the records the pushable part rejects;
            # the survivors are re-checked in full below.
            try:
                pairs = txn.scan_filter_msgpack(table, program, decode=info.lazy_rows)
            except InvalidArgumentError:
                raise
            except (CorruptError, ValueError):
                pairs = None  # a damaged record: the plain path reports it
    keep = row_filter(realm, info, q, args)
    try:
        out = keep(pairs if pairs is not None else txn.scan_msgpack(table, options=_OPTS))
    except (IndexError, TypeError, AttributeError, KeyError, ValueError):
        # A record shorter than the schema (written before a property was
        # added) or a damaged one: decode and pad each, then match.
        full = info.decode
        if pairs is None:
            pairs = [(k, full(v)) for k, v in txn.scan(table)]
        else:
            pairs = [(k, info.full(r)) for k, r in pairs]
        out = keep(pairs)
    out = full_rows(info, out)
    if q.descriptors:
        bound = [Bound(name, k, rec) for k, rec in out]
        by_key = dict(out)
        out = [
            (b.key, by_key[b.key])
            for b in q.order(bound, resolver=functools.partial(resolve, realm))
        ]
    return out


def full_rows(info: ClassInfo, rows: list[tuple[bytes, Any]]) -> list[tuple[bytes, Any]]:
    """``rows`` with every record padded to the schema (checked once)."""
    n = info.n
    if type(rows) is list and _rows_full(rows, n):  # the usual case, checked in C
        return rows
    for _k, r in rows:
        if type(r) is _Record:
            continue  # made full
        if type(r) is not list or len(r) < n:
            break
    else:
        return rows
    out: list[tuple[bytes, Any]] = []
    for k, r in rows:
        if type(r) is _Record:
            out.append((k, r))
            continue
        if type(r) is not list:
            raise codec.CodecError("corrupt object record: not an array")
        out.append((k, info.full(r)))
    return out


def evaluate_raw(
    realm: Realm, name: str, q: _query.Query | None, args: tuple[Any, ...]
) -> list[tuple[bytes, bytes]]:
    """Matching (key, raw record) in result order (the notifier diffs
    raw records); a record is decoded only where the predicate needs it."""
    txn = realm._reader()
    info = realm._info[name]
    table = info.table
    if q is None:
        return list(txn.scan(table))
    planned = plan(realm, info.schema, q, args)
    rows: Iterable[tuple[bytes, bytes]]
    if planned is None:
        program = filter_program(info, q, args)
        rows = txn.scan(table)
        if program is not None:
            # The engine drops what the pushable part rejects; a damaged
            # record makes it fail, and the plain scan reports it.
            try:
                rows = txn.scan_filter(table, program)
            except CorruptError:
                pass
    else:
        keys, exact = planned
        program = None if exact else filter_program(info, q, args)
        try:
            # Candidates the pushable part rejects come back as None.
            raws = txn.get_many(table, keys, program)
        except CorruptError:
            raws = txn.get_many(table, keys)  # the matcher reports the damage
        found = [(k, v) for k, v in zip(keys, raws, strict=True) if v is not None]
        if exact and not q.descriptors:
            return found
        rows = found
    match = matcher(realm, info, q, args)
    decode = info.decode
    out: list[tuple[bytes, bytes, list[Any]]] = []
    for k, v in rows:  # one record at a time: a rejected one is freed at once
        rec = decode(v)
        if match(rec):
            out.append((k, v, rec))
    if q.descriptors:
        bound = [Bound(name, k, rec) for k, _, rec in out]
        by_key = {k: (k, v, rec) for k, v, rec in out}
        out = [by_key[b.key] for b in q.order(bound, resolver=functools.partial(resolve, realm))]
    return [(k, v) for k, v, _ in out]
