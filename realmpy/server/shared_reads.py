"""Reads shared by many long-polls' downloads in one transaction (``SyncService.download_many``).

Why: a commit that concerns a thousand parked long-polls used to wake each
into its own download transaction — a connection, the client row, the
versions, the changed objects, the client's views and refusals, a commit:
~2 ms of CPU and a dozen round trips each, so the last poll answered seconds
after the first.  Polls woken together mostly sit at the same cursor and ask
for the same changed objects; what differs per poll is small (its own view
rows, its own refusals) and is read here for all of them at once.

``SharedReads`` is a ``Tx`` on the batch's connection, so each poll's answer
is computed by exactly the code its own download runs (``_DownloadCtx``,
``_incremental``) — only these reads come from batched queries:

- ``objects_changed``: each distinct query once (polls at one cursor share it);
- ``views_many``: the views of every poll's file for the first page of its
  changed objects, prefetched in one query per 256 (file, object) pairs
  (bounded: beyond ``MAX_PREFETCHED_VIEWS`` pairs, each poll reads its own);
- ``rejections``: every file's refusals since the oldest cursor, one query;
- ``view_put_many``: buffered, written for all polls by ``flush`` in one
  statement.

Files' view rows are disjoint, so one poll's buffered writes never change
what another poll reads; a batch holds at most one poll per file.
"""

from __future__ import annotations

from collections.abc import Sequence

from realmpy.server.store import ObjectRow, Tx

__all__ = ["MAX_PREFETCHED_VIEWS", "SharedReads"]

MAX_PREFETCHED_VIEWS = 16_384
"""(file, object) view pairs read ahead for a batch, at most (one query per 256)."""


class SharedReads(Tx):
    """A ``Tx`` for a batch of incremental downloads: ``polls`` are (file, cursor) pairs."""

    def __init__(self, tx: Tx, polls: Sequence[tuple[int, int]], latest: int, page: int) -> None:
        super().__init__(tx._store, tx._conn)
        self._changed: dict[tuple[int, int, tuple[int, str, bytes], int], list[ObjectRow]] = {}
        self._files = {fi for fi, _ in polls}
        self._puts: list[tuple[int, str, bytes, bool, int]] = []
        # Each download starts by forgetting the view rows its cursor confirmed.
        tx.views_gc_many(list(polls))
        first: dict[int, list[ObjectRow]] = {}
        for after in sorted({a for _, a in polls}):
            first[after] = self.objects_changed(after, latest, (after, "", b""), page)
        pairs = [(fi, r.table, r.pk) for fi, after in polls for r in first[after]]
        self._views: dict[tuple[int, str, bytes], tuple[bool, int]] | None = None
        self._covered: set[tuple[int, str, bytes]] = set()
        if len(pairs) <= MAX_PREFETCHED_VIEWS:
            self._views = tx.views_of(pairs)
            self._covered = set(pairs)
        low = min((a for _, a in polls), default=latest)
        self._low, self._latest = low, latest
        self._rejections = tx.rejections_of(sorted(self._files), low, latest)

    def objects_changed(
        self, after_sv: int, upto_sv: int, pos: tuple[int, str, bytes], limit: int
    ) -> list[ObjectRow]:
        key = (after_sv, upto_sv, pos, limit)
        rows = self._changed.get(key)
        if rows is None:
            rows = self._changed[key] = super().objects_changed(after_sv, upto_sv, pos, limit)
        return rows

    def views_many(
        self, file_ident: int, keys: Sequence[tuple[str, bytes]]
    ) -> dict[tuple[str, bytes], tuple[bool, int]]:
        views = self._views
        if views is None or any((file_ident, t, pk) not in self._covered for t, pk in keys):
            return super().views_many(file_ident, keys)
        out: dict[tuple[str, bytes], tuple[bool, int]] = {}
        for t, pk in keys:
            got = views.get((file_ident, t, pk))
            if got is not None:
                out[(t, pk)] = got
        return out

    def rejections(
        self, file_ident: int, after_sv: int, upto_sv: int
    ) -> list[tuple[int, str, bytes, int, str]]:
        if file_ident not in self._files or after_sv < self._low or upto_sv > self._latest:
            return super().rejections(file_ident, after_sv, upto_sv)
        return [r for r in self._rejections.get(file_ident, ()) if after_sv < r[0] <= upto_sv]

    def view_put_many(self, file_ident: int, rows: Sequence[tuple[str, bytes, bool, int]]) -> None:
        self._puts += [(file_ident, t, pk, iv, sv) for t, pk, iv, sv in rows]

    def flush(self) -> None:
        """Write every poll's view changes: one batched statement."""
        self.views_put(self._puts)
        self._puts = []
