"""Which parked long-polls a commit concerns: by table, and by query and read rule where cheap.

Why: a woken poll runs a download transaction (~1 ms of server CPU) even when
it then has nothing to send and goes back to waiting.  With per-user data a
table-level match wakes every poll of every user on each commit to a shared
table; most find nothing.  So a poll also keeps its file's subscriptions, read
rules and user variables (``WakeFilter``, refreshed by each of its
downloads), and a commit made in this process carries its changed objects'
states before and after (``Commit.objects``): the poll wakes only if one of
them was or becomes visible to it (matches a subscribed query and the read
rule) — an object entering its view, changing in it or leaving it.

Where it is not cheap, a poll wakes as before, by table: commits heard from
another process (NOTIFY carries tables, not states), commits of more than
``Commit.objects``' bound, and objects of tables with link or embedded fields
(a query or rule may follow a link, which needs the store).  A filter that
says "concerned" wrongly costs only a download that answers nothing; it must
never say "not concerned" about a change the poll's download would send, and
it does not: visibility before and after the commit covers entering, changing
and leaving, and the commit's own file always wakes (its refusals and views).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from realmpy.server.permissions import Permissions, Subscriptions
from realmpy.server.store import ChangedObject, Commit
from realmpy.wire.protocol import TableSpec

__all__ = ["ChangedRecords", "WakeFilter"]

Record = Mapping[str, Any] | None


class ChangedRecords:
    """A commit's changed objects as records (before, after), materialised once per commit
    and table for every poll that asks."""

    def __init__(self, objects: tuple[ChangedObject, ...]) -> None:
        self._objects = objects
        self._by_table: dict[str, list[tuple[Record, Record]]] | None = None

    def of(self, table: str, spec: TableSpec) -> list[tuple[Record, Record]]:
        """(before, after) records of the commit's objects of ``table`` (None: did not exist)."""
        if self._by_table is None:
            self._by_table = {}
        got = self._by_table.get(table)
        if got is None:
            got = self._by_table[table] = [
                (
                    None if before is None else before.materialize(spec.primary_key, pk),
                    after.materialize(spec.primary_key, pk),
                )
                for t, pk, before, after in self._objects
                if t == table
            ]
        return got


class WakeFilter:
    """What one poll's file subscribes to and may read, for deciding whether a commit
    concerns it (module docstring)."""

    def __init__(
        self,
        file_ident: int,
        subs: Subscriptions,
        perms: Permissions,
        variables: Mapping[str, Any],
        schema: Mapping[str, TableSpec],
    ) -> None:
        self.file_ident = file_ident
        self.tables = subs.tables
        self._perms = perms
        self._variables = variables
        self._schema = schema
        # Tables whose records cannot lead a query or a rule to another object: no links,
        # no embedded objects (which may hold links).  Their matchers need no store.
        self._matchers: dict[str, Callable[[Mapping[str, Any]], bool]] = {}
        for table in self.tables:
            spec = schema.get(table)
            if spec is not None and not any(
                f.type in ("link", "embedded") for f in spec.fields.values()
            ):
                self._matchers[table] = subs.matcher(table, variables)

    def concerned(self, commit: Commit | None, changed: ChangedRecords | None) -> bool:
        """Might this poll's download have something new after ``commit``?  (``changed``: the
        commit's objects as records, when it carries them.)"""
        if commit is None or commit.tables is None:
            return True
        if self.file_ident in commit.files:
            return True
        tables = self.tables.intersection(commit.tables)
        if not tables:
            return False
        if changed is None:
            return True
        for table in tables:
            match = self._matchers.get(table)
            if match is None:
                return True  # links or embedded objects: by table
            for before, after in changed.of(table, self._schema[table]):
                if self._visible(table, match, before) or self._visible(table, match, after):
                    return True
        return False

    def _visible(
        self, table: str, match: Callable[[Mapping[str, Any]], bool], record: Record
    ) -> bool:
        return (
            record is not None
            and match(record)
            and self._perms.can_read(table, record, self._variables)
        )
