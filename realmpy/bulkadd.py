"""Adding many objects of one class without links or embedded objects
(``Realm.add_all``'s fast path): their validated values are their records,
so each is packed once (in C where it can be), and the records and index
entries go in with one bulk put per table; replacements, repeats and errors
take the careful path, one object at a time, with the outcome of a loop of
``Realm.add``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import realmpy.codec as codec
from realmpy._native import column_keys as _column_keys
from realmpy._native import manage as _manage
from realmpy._native import pack_rows as _pack_rows
from realmpy._native import strictly_increasing as _strictly_increasing
from realmpy._native import unmanaged_dicts as _unmanaged_dicts
from realmpy.classinfo import ClassInfo
from realmpy.errors import DuplicatePrimaryKeyError, WrongRealmError
from realmpy.storage import WriteTransaction

if TYPE_CHECKING:
    from realmpy.realm import Realm

__all__ = ["add_simple", "add_simple_each"]

_encode_key = codec.encode_key
_pack = codec.pack_row


def put_all(
    txn: WriteTransaction, table: str, keys: list[bytes], values: list[bytes] | None
) -> None:
    """``put_many`` of parallel lists (``values`` None: empty values)."""
    txn.put_columns(table, keys, values)


def add_simple(realm: Realm, info: ClassInfo, objs: list[Any], update: bool) -> None:
    """Add objects of one class without links or embedded objects.

    Their validated values are their records: each is packed once, the
    records go in with one ``put_many``, index entries with one per
    index.  On any error the objects before the failing one are added
    (as a loop of ``add`` would) and the error is raised."""
    txn = realm._require_write()
    values = _unmanaged_dicts(objs)  # their __dict__s, None if some are managed
    if values is not None:
        todo = objs  # the common case: all unmanaged
    else:
        stores = [o._rp_store for o in objs]
        for o, store in zip(objs, stores, strict=True):
            if store is not None and store is not realm:
                raise WrongRealmError(
                    f"this {type(o).__name__} is already managed by another realm"
                )
        todo = [o for o, store in zip(objs, stores, strict=True) if store is None]
        values = [o.__dict__ for o in todo]  # unmanaged: the values (see _rp_values)
    if not todo:
        return
    if info.name in realm._dead:
        realm._flush_links()  # before a deleted key can come back
    encode_list = codec.encode_key_list
    pk = info.pk
    try:
        if pk is not None:
            keys = _column_keys(values, pk, None, codec.MAX_KEY)  # None: not ints/strs
            if keys is None:
                keys = encode_list([v[pk] for v in values])
        else:
            first = realm._next_seq(info.name, len(todo))
            keys = encode_list(list(range(first, first + len(todo))))
    except Exception:
        # A key that cannot be encoded: add one by one up to it.
        add_simple_each(realm, info, todo, None, update)
        return
    # Into an empty table nothing is replaced: skip the lookups.
    olds = [] if txn.count(info.table) == 0 else txn.get_many(info.table, keys)
    if olds.count(None) != len(olds) or (
        not _strictly_increasing(keys) and len(set(keys)) != len(keys)
    ):
        # Replacements or repeats: the careful loop.
        add_simple_each(realm, info, todo, keys, update)
        return
    try:
        # Tuples: cached records are only indexed, and a write copies.
        # Records of plain scalars are built and packed in C (the same
        # bytes as pack_plain_rows), index entries of ints and strs too.
        done = _pack_rows(values, info.names)
        if done is not None:
            rows, packed = done
        else:
            rows = list(map(info.row_tuple, values))
            packed = codec.pack_plain_rows(rows)
        entries = []
        for pname, _iname in info.indexed:
            ik = _column_keys(values, pname, keys, codec.MAX_KEY)
            if ik is None:
                ik = list(map(bytes.__add__, encode_list([v[pname] for v in values]), keys))
                if max(map(len, ik)) > codec.MAX_KEY:
                    raise codec.CodecError("index entry over the key limit")
            entries.append(ik)
    except Exception:
        add_simple_each(realm, info, todo, keys, update)
        return
    put_all(txn, info.table, keys, packed)
    for (_pname, iname), ik in zip(info.indexed, entries, strict=True):
        put_all(txn, iname, ik, None)
    realm._stamp += 1
    # Each object: _rp_store, _rp_key, and its record cached with the stamp.
    _manage(todo, realm, keys, rows, realm._stamp, info.pos)


def add_simple_each(
    realm: Realm, info: ClassInfo, todo: list[Any], keys: list[bytes] | None, update: bool
) -> None:
    """The careful path of :func:`add_simple`: one object at a time
    (replacements, repeats, errors), with the same outcome as a loop of
    :meth:`Realm.add`."""
    txn = realm._require_write()
    encode = _encode_key
    pk = info.pk
    for i, obj in enumerate(todo):
        if obj._rp_store is not None:
            continue  # the same object twice
        values = obj._rp_values
        if keys is not None:
            key = keys[i]
        else:
            key = encode(values[pk] if pk is not None else realm._next_seq(info.name))
        old_raw = txn.get(info.table, key)
        if old_raw is not None and not update:
            raise DuplicatePrimaryKeyError(
                f"a {info.name} with primary key {values[pk or ''] if pk else key!r} "
                "already exists: use add(obj, update=True) to replace it"
            )
        row = info.row(values)
        packed = _pack(row)
        puts = []
        for pname, iname in info.indexed:
            ik = encode(values[pname]) + key
            if len(ik) > codec.MAX_KEY:
                raise codec.CodecError(
                    f"{info.name}.{pname}: index entry of {len(ik)} bytes, "
                    f"over the {codec.MAX_KEY}-byte key limit"
                )
            puts.append((iname, ik))
        if old_raw is not None:
            old = info.decode(old_raw)
            for pname, iname in info.indexed:
                txn.delete(iname, encode(old[info.pos[pname]]) + key)
        for iname, ik in puts:
            txn.put(iname, ik, b"")
        txn.put(info.table, key, packed)
        realm._stamp += 1
        _manage([obj], realm, [key], [row], realm._stamp, info.pos)
