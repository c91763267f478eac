"""The read methods snapshots and write transactions share: batched
lookups, scans, filtered scans and joins, counts, table lists.

They run once per batch, not per key, so they call the engine through cffi
(:mod:`realmpy.binding`); the per-key calls (``get``, ``put``, ``delete``)
are the native types' (``csrc/py/storage.c``).  Every method first takes
the transaction's engine pointer with ``self._handle()``, which checks the
caller's thread and that the transaction is open (the native base raises
:class:`~realmpy.errors.WrongThreadError` or
:class:`~realmpy.errors.TransactionError`).

Scans hold no engine cursor between items: each batch opens a cursor, seeks,
copies a batch of records and closes it, so an abandoned iterator pins
nothing and can be collected in any thread.  The scan iterator is native
(``ScanIter``): its steps cross into the engine once per batch, and hand
out the items of a batch with no Python code in between.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, NoReturn

import realmpy.binding as _b
import realmpy.errors as _e

from ._engine import ffi, lib
from ._native import pack_keys as _pack_keys
from .binding import BytesLike

if TYPE_CHECKING:
    from .storage import Environment

__all__ = ["PairDecoder", "ReadMethods"]

# A batch decoder for scan_filter_msgpack / scan_join: given the bytes of
# one engine buffer (a msgpack array of bin keys and raw msgpack values),
# its [(key, value), ...].
PairDecoder = Callable[[bytes], list[tuple[bytes, Any]]]

# rp_cursor_filter / rp_cursor_join copy at most this many records per call.
_MAX_BATCH_ITEMS: Final = 1 << 16
_buffers = _b.buffers


class ReadMethods:
    """The batched read methods of :class:`~realmpy.storage.Snapshot` and
    :class:`~realmpy.storage.WriteTransaction` (a mixin over the native
    transaction types, which provide ``_env`` and ``_handle``)."""

    __slots__ = ()

    if TYPE_CHECKING:
        _env: Environment
        _state: str

        def _handle(self) -> Any: ...
        def _scan_iter(
            self,
            table: str,
            name: bytes,
            start: bytes | None,
            stop: bytes | None,
            reverse: bool,
            decode: Any,
        ) -> Iterator[tuple[bytes, Any]]: ...

    def _fail(self, rc: int, what: str, table: object = None) -> NoReturn:
        if table is not None:
            what = f"{what} (table {table!r})"
        raise _b.error(rc, what, self._env._path)

    def _name(self, table: str) -> bytes:
        try:
            return self._env._names[table]
        except (KeyError, TypeError):  # first use, or not a (hashable) str
            return self._env._encode_name(table)

    def get_many(
        self, table: str, keys: Iterable[BytesLike], program: BytesLike | None = None
    ) -> list[bytes | None]:
        """``[get(table, k) for k in keys]``, answered in batches by the engine.

        With a filter ``program`` (see :meth:`scan_filter`), a value the
        program rejects comes back as ``None``, like an absent key."""
        return self._get_many(table, keys, None, program)

    def get_many_msgpack(
        self,
        table: str,
        keys: Iterable[BytesLike],
        options: Mapping[str, Any] | None = None,
        program: BytesLike | None = None,
    ) -> list[Any]:
        """Like :meth:`get_many` for a table whose values are msgpack
        documents: each value comes back decoded (``msgpack.unpackb`` with
        ``options``, in one call per batch), ``None`` for an absent key (and
        for an empty value, and for a value ``program`` rejects)."""
        return self._get_many(table, keys, _b.decoder(options), program)

    def _get_many(
        self, table: str, keys: Iterable[BytesLike], decode: Any, program: BytesLike | None
    ) -> list[Any]:
        txn = self._handle()
        if program is not None:
            if type(program) is not bytes:
                program = _b.as_bytes(program, "program")
            _b.filter_verdict(program, b"")  # checks it even when no key is given
        name = self._name(table)
        keyl: list[Any] = keys if type(keys) is list else list(keys)
        if not keyl:
            return []
        # One engine call answers a whole batch: keys go in packed as
        # [u32 len][key], values come back as one msgpack array (nil when
        # absent) that msgpack's C unpacker turns into the result list.
        try:
            packed = _pack_keys(keyl)  # bytes keys only
        except TypeError:
            keyl = [k if type(k) is bytes else _b.as_bytes(k, "key") for k in keyl]
            packed = _pack_keys(keyl)
        src = ffi.from_buffer(packed)
        sb = _buffers
        done, used = sb.n, sb.used
        result: list[Any] = []
        flags = 0 if decode is None else _b.BATCH_RAW
        decode = decode or _b.unpackb
        first = off = 0
        while first < len(keyl):
            if program is None:
                rc = lib.rp_get_many(
                    txn, name, len(name), src + off, len(packed) - off,
                    len(keyl) - first, flags, sb.buf, sb.size, done, used,
                )  # fmt: skip
            else:
                rc = lib.rp_get_many_filter(
                    txn, name, len(name), src + off, len(packed) - off,
                    len(keyl) - first, flags, program, len(program), sb.buf, sb.size,
                    done, used,
                )  # fmt: skip
            if rc != _b.OK:
                self._fail(rc, "get failed", table)
            answered = int(done[0])
            if not answered:  # not even one value fits: grow and retry
                sb.grow(int(used[0]))
                continue
            result += decode(ffi.buffer(sb.buf, used[0]))
            first += answered
            if first < len(keyl):  # more to come: skip the answered keys
                off += sum(4 + len(k) for k in keyl[first - answered : first])
        return result

    def count(self, table: str) -> int:
        """Number of keys in ``table`` (0 if it does not exist)."""
        txn = self._handle()
        name = self._name(table)
        out = _buffers.u64
        rc = lib.rp_table_count(txn, name, len(name), out)
        if rc != _b.OK:
            self._fail(rc, "count failed", table)
        return int(out[0])

    def scan(
        self,
        table: str,
        start: BytesLike | None = None,
        stop: BytesLike | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]:
        """Iterate ``(key, value)`` pairs of ``table`` in key order.

        Covers keys ``start <= key < stop`` (``None``: unbounded), ascending,
        or descending with ``reverse=True``.  Arguments are checked now; the
        records are read in batches as the iterator advances, and must be
        consumed in the transaction's thread while it is open.  In a write
        transaction, changes made during the iteration may or may not be
        seen (records are read a batch at a time).
        """
        return self._scan(table, start, stop, reverse, None)

    def scan_msgpack(
        self,
        table: str,
        start: BytesLike | None = None,
        stop: BytesLike | None = None,
        reverse: bool = False,
        options: Mapping[str, Any] | None = None,
    ) -> Iterator[tuple[bytes, Any]]:
        """Like :meth:`scan` for a table whose values are msgpack documents:
        yields ``(key, decoded value)``.

        The engine embeds the values in its batch as they are, so one
        ``msgpack.unpackb(batch, **options)`` call decodes a whole batch of
        keys and values in C (an empty value decodes as ``None``).  A value
        that is not msgpack raises msgpack's error.
        """
        return self._scan(table, start, stop, reverse, _b.decoder(options))

    def _scan(
        self,
        table: str,
        start: BytesLike | None,
        stop: BytesLike | None,
        reverse: bool,
        decode: Any,
    ) -> Iterator[tuple[bytes, Any]]:
        """Check the arguments now (the records are read lazily), then
        iterate the records of scan / scan_msgpack."""
        self._handle()  # checks the thread and that the transaction is open
        name = self._name(table)
        if start is not None and type(start) is not bytes:
            start = _b.as_bytes(start, "start")
        if stop is not None and type(stop) is not bytes:
            stop = _b.as_bytes(stop, "stop")
        if not isinstance(reverse, bool):
            raise _b.type_error("reverse", "a bool", reverse)
        if start == b"":
            start = None  # every key is >= b""
        if stop is not None and (stop == b"" or (start is not None and start >= stop)):
            return iter(())
        # The native iterator (csrc/py/storage.c: ScanIter) reads a batch per
        # refill, with no cursor held between: no Python code runs per item.
        return self._scan_iter(table, name, start, stop, reverse, decode)

    def scan_filter(self, table: str, program: BytesLike) -> list[tuple[bytes, bytes]]:
        """``(key, value)`` pairs of ``table`` in key order whose value a
        filter program does not reject (see ``FILTER PROGRAMS`` in
        ``csrc/realmpy.h``; :mod:`realmpy.filterprogram` builds them).

        Values must be msgpack arrays ("records").  The engine keeps records
        whose verdict is true *or unknown*, so the caller re-checks what it
        gets with the full predicate.  Unlike :meth:`scan` the result is one
        list, read with one cursor in this call.  Raises
        :class:`~realmpy.errors.InvalidArgumentError` for a malformed
        program and :class:`~realmpy.errors.CorruptError` for a value the
        program cannot read.
        """
        return self._engine_scan(table, None, None, program, None, None)

    def scan_filter_msgpack(
        self,
        table: str,
        program: BytesLike | None,
        options: Mapping[str, Any] | None = None,
        decode: PairDecoder | None = None,
        start: BytesLike | None = None,
        stop: BytesLike | None = None,
    ) -> list[tuple[bytes, Any]]:
        """:meth:`scan_filter` with the values decoded in C, as
        :meth:`scan_msgpack` does (``msgpack.unpackb`` with ``options``);
        ``program`` None keeps every record.  ``start <= key < stop``
        bound the scan as in :meth:`scan` (``None``: unbounded).

        ``decode`` (instead of ``options``): a batch decoder given each
        buffer's bytes (a msgpack array of bin keys and raw msgpack
        values) that returns its ``[(key, value), ...]``."""
        if start is not None and type(start) is not bytes:
            start = _b.as_bytes(start, "start")
        if stop is not None and type(stop) is not bytes:
            stop = _b.as_bytes(stop, "stop")
        if stop is not None and (stop == b"" or (start is not None and start >= stop)):
            return []
        return self._engine_scan(
            table,
            start or None,
            stop,
            program,
            _b.decoder(options) if decode is None else decode,
            None,
            paired=decode is not None,
        )

    def scan_join(
        self,
        index: str,
        prefix: BytesLike,
        table: str,
        program: BytesLike | None = None,
        options: Mapping[str, Any] | None = None,
        decode: PairDecoder | None = None,
    ) -> list[tuple[bytes, Any]]:
        """For an index table whose keys are ``prefix + key``: ``(key, value
        of key in table)`` for every index key starting with ``prefix``, in
        index order, values decoded as by :meth:`scan_msgpack`; keys absent
        from ``table`` are left out.  With a filter ``program`` only the
        values it does not reject (see :meth:`scan_filter`).  One engine
        call per buffer instead of an index scan plus :meth:`get_many`.
        ``decode``: as for :meth:`scan_filter_msgpack`."""
        if type(prefix) is not bytes:
            prefix = _b.as_bytes(prefix, "prefix")
        if not prefix or len(prefix) > _b.MAX_KEY:
            raise _e.InvalidArgumentError(f"prefix: 1 to {_b.MAX_KEY} bytes, not {len(prefix)}")
        return self._engine_scan(
            index,
            prefix,
            prefix + b"\xff",
            program,
            _b.decoder(options) if decode is None else decode,
            self._name(table),
            paired=decode is not None,
        )

    def _engine_scan(
        self,
        table: str,
        start: bytes | None,
        stop: bytes | None,
        program: BytesLike | None,
        decode: Any,
        join: bytes | None,
        paired: bool = False,
    ) -> list[Any]:
        """The records rp_cursor_filter (or, with ``join``, rp_cursor_join
        looking up keys past ``start`` in table ``join``) copies from
        ``table``'s keys in [start, stop), read with one cursor.  ``paired``:
        ``decode`` takes each buffer's bytes and returns its (key, value)
        pairs (else the flat list of a msgpack batch decoder)."""
        txn = self._handle()
        name = self._name(table)
        if program is not None:
            if type(program) is not bytes:
                program = _b.as_bytes(program, "program")
            _b.filter_verdict(program, b"")  # checks the program even on an empty table
        prog, proglen = (_b.NULL, 0) if program is None else (program, len(program))
        sb = outs = _buffers
        n, used = outs.n, outs.used
        curp = sb.cur
        rc = lib.rp_cursor_open(txn, name, len(name), curp)
        if rc != _b.OK:
            if rc == _b.NOTFOUND:
                return []
            self._fail(rc, "filtered scan failed", table)
        cur = curp[0]
        out: list[Any] = []
        flags = _b.BATCH_CURRENT | (_b.BATCH_RAW if decode is not None else 0)
        decode = decode or _b.unpackb
        stop_p, stop_len = (_b.NULL, 0) if stop is None else (stop, len(stop))
        try:
            kp, kl, vp, vl = outs.kp, outs.kl, outs.vp, outs.vl
            if start is None:
                rc = lib.rp_cursor_seek(cur, _b.SEEK_FIRST, _b.NULL, 0, kp, kl, vp, vl)
            else:
                rc = lib.rp_cursor_seek(cur, _b.SEEK_GE, start, len(start), kp, kl, vp, vl)
            while rc == _b.OK:
                # The cursor stays on the first record not examined, so each
                # call resumes where the last one stopped (buffer full).
                if join is None:
                    rc = lib.rp_cursor_filter(
                        cur, 1, flags, stop_p, stop_len, prog, proglen,
                        sb.buf, sb.size, _MAX_BATCH_ITEMS, n, used,
                    )  # fmt: skip
                else:
                    rc = lib.rp_cursor_join(
                        cur, 1, flags, stop_p, stop_len, len(start or b""), join, len(join),
                        prog, proglen, sb.buf, sb.size, _MAX_BATCH_ITEMS, n, used,
                    )  # fmt: skip
                if rc != _b.OK:
                    break
                if not n[0]:  # the next match does not fit: grow, retry it
                    sb.grow(int(used[0]))
                    continue
                if paired:
                    out += decode(ffi.buffer(sb.buf, used[0])[:])
                    continue
                flat = decode(ffi.buffer(sb.buf, used[0]))
                it = iter(flat)
                out += zip(it, it)
            if rc != _b.NOTFOUND:
                self._fail(rc, "filtered scan failed", table)
            return out
        finally:
            lib.rp_cursor_close(cur)

    def tables(self) -> list[str]:
        """Names of the tables in this version, sorted."""
        names: list[str] = []
        txn = self._handle()
        sb = outs = _buffers
        kp, kl, vp, vl = outs.kp, outs.kl, outs.vp, outs.vl
        curp = sb.cur
        rc = lib.rp_cursor_open(txn, _b.NULL, 0, curp)
        if rc != _b.OK:
            self._fail(rc, "list tables failed")
        cur = curp[0]
        try:
            rc = lib.rp_cursor_seek(cur, _b.SEEK_FIRST, _b.NULL, 0, kp, kl, vp, vl)
            while rc == _b.OK:
                raw = ffi.unpack(outs.kpc[0], kl[0])
                names.append(raw.decode("utf-8", "surrogateescape"))
                rc = lib.rp_cursor_step(cur, 1, kp, kl, vp, vl)
            if rc != _b.NOTFOUND:
                self._fail(rc, "list tables failed")
        finally:
            lib.rp_cursor_close(cur)
        return names

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state} [{self._env._path}]>"
