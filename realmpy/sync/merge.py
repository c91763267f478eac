"""The merge rule: one deterministic, state-based merge shared by client and server.

Why state-based (a CRDT) rather than Realm's operational transformation: the
server then needs no history replay to integrate an old upload, downloads can
carry object *states* that are filtered exactly by permissions and
subscriptions, and every replica converges on the same result whatever order
it receives operations in, and however often (retries and duplicates are
harmless because applying an operation twice equals applying it once).

Per object, an ``ObjectState`` keeps just enough to decide every future merge:

- **stamp** ``(timestamp, file ident, client version, op index)`` orders all
  operations totally;
- **fields** are last-writer-wins registers: the value with the highest stamp
  wins (one candidate per origin file is kept, see *erase* below);
- **counters**: ``ADD`` operations commute; a field's value is the winning
  ``SET`` plus every ``ADD`` stamped after it (Realm's rule);
- **create** is an idempotent upsert by primary key: the object exists while
  at least one create survives;
- **erase wins over concurrent changes**: an erase leaves a tombstone; an
  operation survives only if its author had *seen* every tombstone of the
  object — the tombstone came from the same file earlier, or the server had
  integrated it at a version the author had downloaded (``base_server_version``).
  Changes made without seeing the erase are dropped, including creates, so a
  create that saw the erase resurrects the object and one that did not stays
  dead.  Because "saw" is monotone per origin, keeping the newest tombstone
  and the newest candidate per origin is enough;
- **lists** are RGA sequences: each element is named by the stamp of the
  insert that made it and hangs after another element (or the head);
  siblings are ordered newest first, so concurrent inserts at one spot are all
  kept in one deterministic order; erased elements stay as invisible anchors.

``join`` is commutative, associative and idempotent; ``apply`` of an
operation equals ``join`` with that operation's singleton state.  Timestamps
too far in the future are rejected by the server before they get here
(``check_clock``).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from realmpy.sync.protocol import (
    ClockSkewError,
    MalformedMessage,
    Op,
    OpCode,
    PrimaryKey,
    Stamp,
    Value,
)

__all__ = [
    "MAX_CLOCK_SKEW_MS",
    "Causal",
    "ListNode",
    "ObjectState",
    "Tombstone",
    "check_clock",
    "join",
    "list_element_ids",
    "now_ms",
    "op_stamps",
]

MAX_CLOCK_SKEW_MS: Final = 5 * 60 * 1000
"""Default: a changeset stamped more than five minutes ahead of the server is refused."""


def now_ms() -> int:
    """Milliseconds since the Unix epoch (the unit of stamps)."""
    return int(_dt.datetime.now(_dt.timezone.utc).timestamp() * 1000)


def check_clock(timestamp: int, *, now: int, max_skew_ms: int = MAX_CLOCK_SKEW_MS) -> None:
    """Refuse a timestamp from the future, so one bad clock cannot win every merge forever."""
    if timestamp > now + max_skew_ms:
        raise ClockSkewError(
            f"changeset timestamp {timestamp} is {timestamp - now} ms ahead of the server (limit {max_skew_ms})",
            timestamp=timestamp,
            server_time=now,
        )


def op_stamps(
    file_ident: int, client_version: int, timestamp: int, ops: tuple[Op, ...]
) -> Iterator[tuple[Stamp, Op]]:
    """Pair each op of a changeset with its stamp."""
    for i, op in enumerate(ops):
        yield Stamp(timestamp, file_ident, client_version, i), op


@dataclass(frozen=True)
class Causal:
    """What an operation's author had seen: its own stamp, and the server version it had downloaded."""

    stamp: Stamp
    base_sv: int

    def saw(self, t: Tombstone) -> bool:
        """True if the author knew of tombstone ``t`` when writing."""
        s, ts = self.stamp, t.stamp
        if s.file_ident == ts.file_ident and (s.client_version, s.op_index) > (
            ts.client_version,
            ts.op_index,
        ):
            return True
        return t.sv is not None and t.sv <= self.base_sv

    def newer_in_origin(self, other: Causal) -> bool:
        """Within one origin file, later client versions (and op indexes) are newer."""
        return (self.stamp.client_version, self.stamp.op_index) > (
            other.stamp.client_version,
            other.stamp.op_index,
        )


@dataclass(frozen=True)
class Tombstone:
    """An erase: its stamp and the server version it was integrated at (None = not yet, on a client)."""

    stamp: Stamp
    sv: int | None


@dataclass(frozen=True)
class ListNode:
    """An RGA list element: inserted after ``after`` (None = head) with ``value``."""

    after: Stamp | None
    value: Value
    base_sv: int


def _newer_tomb(a: Tombstone, b: Tombstone) -> Tombstone:
    ka = (a.stamp.client_version, a.stamp.op_index)
    kb = (b.stamp.client_version, b.stamp.op_index)
    if ka != kb:
        return a if ka > kb else b
    return a if a.sv is not None else b


@dataclass
class ObjectState:
    """The mergeable state of one object (see the module docstring)."""

    tombs: dict[int, Tombstone] = field(default_factory=dict)
    creates: dict[int, Causal] = field(default_factory=dict)
    regs: dict[str, dict[int, tuple[Causal, Value]]] = field(default_factory=dict)
    adds: dict[str, dict[Stamp, tuple[int, int | float]]] = field(default_factory=dict)
    lists: dict[str, dict[Stamp, ListNode]] = field(default_factory=dict)
    erased: dict[str, set[Stamp]] = field(default_factory=dict)

    # ----------------------------------------------------------------- queries

    @property
    def alive(self) -> bool:
        """True while at least one create survives every tombstone."""
        return bool(self.creates)

    def _survives(self, c: Causal) -> bool:
        return all(c.saw(t) for t in self.tombs.values())

    def copy(self) -> ObjectState:
        """A deep enough copy: mutating the copy never changes ``self``."""
        return ObjectState(
            dict(self.tombs),
            dict(self.creates),
            {k: dict(v) for k, v in self.regs.items()},
            {k: dict(v) for k, v in self.adds.items()},
            {k: dict(v) for k, v in self.lists.items()},
            {k: set(v) for k, v in self.erased.items()},
        )

    # ----------------------------------------------------------------- apply

    def apply(self, op: Op, stamp: Stamp, base_sv: int, sv: int | None) -> bool:
        """Merge one operation in place; returns False if it was dropped (erased concurrently).

        ``sv`` is the server version the op's changeset was integrated at (the
        server knows it; a client applying its own local op passes None).
        """
        c = Causal(stamp, base_sv)
        origin = stamp.file_ident
        if op.code == OpCode.ERASE:
            self._add_tomb(Tombstone(stamp, sv))
            return True
        if op.code == OpCode.LIST_ERASE:
            assert op.field is not None and op.elem is not None
            self.erased.setdefault(op.field, set()).add(op.elem)
            return True
        if not self._survives(c):
            return False
        if op.code == OpCode.CREATE:
            old = self.creates.get(origin)
            if old is None or c.newer_in_origin(old):
                self.creates[origin] = c
        elif op.code == OpCode.SET:
            assert op.field is not None
            regs = self.regs.setdefault(op.field, {})
            prev = regs.get(origin)
            if prev is None or c.newer_in_origin(prev[0]):
                regs[origin] = (c, op.value)
        elif op.code == OpCode.ADD:
            assert op.field is not None
            self.adds.setdefault(op.field, {})[stamp] = (base_sv, op.value)
        elif op.code == OpCode.LIST_INSERT:
            assert op.field is not None
            self.lists.setdefault(op.field, {})[stamp] = ListNode(op.elem, op.value, base_sv)
        return True

    def _add_tomb(self, t: Tombstone) -> None:
        origin = t.stamp.file_ident
        old = self.tombs.get(origin)
        new = t if old is None else _newer_tomb(old, t)
        if new is old:
            return
        self.tombs[origin] = new
        self._purge()

    def _purge(self) -> None:
        """Drop every candidate whose author had not seen all tombstones."""
        ok = self._survives
        self.creates = {o: c for o, c in self.creates.items() if ok(c)}
        for f, regs in list(self.regs.items()):
            kept = {o: cv for o, cv in regs.items() if ok(cv[0])}
            if kept:
                self.regs[f] = kept
            else:
                del self.regs[f]
        for f, adds in list(self.adds.items()):
            kept_adds = {s: a for s, a in adds.items() if ok(Causal(s, a[0]))}
            if kept_adds:
                self.adds[f] = kept_adds
            else:
                del self.adds[f]
        for f, nodes in list(self.lists.items()):
            kept_nodes = {s: n for s, n in nodes.items() if ok(Causal(s, n.base_sv))}
            if kept_nodes:
                self.lists[f] = kept_nodes
            else:
                del self.lists[f]

    # ----------------------------------------------------------------- read

    def field_value(self, name: str) -> Value:
        """The merged value of a scalar or counter field (None if never set)."""
        regs = self.regs.get(name)
        base: Value = None
        base_stamp: Stamp | None = None
        if regs:
            c, base = max(regs.values(), key=lambda cv: cv[0].stamp)
            base_stamp = c.stamp
        adds = self.adds.get(name)
        if adds:
            later = [adds[s][1] for s in sorted(adds) if base_stamp is None or s > base_stamp]
            if later:
                total: int | float = (
                    base if isinstance(base, (int, float)) and not isinstance(base, bool) else 0
                )
                for d in later:
                    total += d
                return total
        return base

    def list_value(self, name: str) -> list[Value]:
        """The merged list, in RGA order, without erased elements."""
        return [self.lists[name][s].value for s in list_element_ids(self, name)]

    def materialize(self, pk_field: str, pk: PrimaryKey) -> dict[str, Value] | None:
        """The object as a plain record (field → value), or None if it does not exist."""
        if not self.alive:
            return None
        rec: dict[str, Value] = {pk_field: pk}
        for name in self.regs.keys() | self.adds.keys():
            rec[name] = self.field_value(name)
        for name in self.lists:
            rec[name] = self.list_value(name)
        return rec

    # ----------------------------------------------------------------- codec

    def to_wire(self) -> list[Any]:
        """Canonical msgpack-able form: equal states encode to equal bytes."""
        return [
            [[list(t.stamp), t.sv] for _, t in sorted(self.tombs.items())],
            [[list(c.stamp), c.base_sv] for _, c in sorted(self.creates.items())],
            {
                f: [[list(c.stamp), c.base_sv, v] for _, (c, v) in sorted(r.items())]
                for f, r in sorted(self.regs.items())
            },
            {
                f: [[list(s), b, d] for s, (b, d) in sorted(a.items())]
                for f, a in sorted(self.adds.items())
            },
            {
                f: [
                    [list(s), None if n.after is None else list(n.after), n.base_sv, n.value]
                    for s, n in sorted(ns.items())
                ]
                for f, ns in sorted(self.lists.items())
            },
            {f: [list(s) for s in sorted(e)] for f, e in sorted(self.erased.items()) if e},
        ]

    @classmethod
    def from_wire(cls, obj: object) -> ObjectState:
        """Decode (and validate the shape of) a state received from a peer."""
        try:
            return cls._from_wire(obj)
        except (TypeError, ValueError, KeyError, IndexError, AssertionError) as exc:
            if isinstance(exc, MalformedMessage):
                raise
            raise MalformedMessage(f"malformed object state: {exc}") from None

    @classmethod
    def _from_wire(cls, obj: object) -> ObjectState:
        assert isinstance(obj, list) and len(obj) == 6
        tombs_w, creates_w, regs_w, adds_w, lists_w, erased_w = obj
        st = cls()
        for s, sv in tombs_w:
            t = Tombstone(_stamp(s), _opt_int(sv))
            st.tombs[t.stamp.file_ident] = t
        for s, b in creates_w:
            c = Causal(_stamp(s), _int(b))
            st.creates[c.stamp.file_ident] = c
        assert isinstance(regs_w, dict) and isinstance(adds_w, dict)
        assert isinstance(lists_w, dict) and isinstance(erased_w, dict)
        for f, items in regs_w.items():
            st.regs[f] = {}
            for s, b, v in items:
                c = Causal(_stamp(s), _int(b))
                st.regs[f][c.stamp.file_ident] = (c, v)
        for f, items in adds_w.items():
            st.adds[f] = {}
            for s, b, d in items:
                assert isinstance(d, (int, float)) and not isinstance(d, bool)
                st.adds[f][_stamp(s)] = (_int(b), d)
        for f, items in lists_w.items():
            st.lists[f] = {}
            for s, after, b, v in items:
                st.lists[f][_stamp(s)] = ListNode(
                    None if after is None else _stamp(after), v, _int(b)
                )
        for f, items in erased_w.items():
            st.erased[f] = {_stamp(s) for s in items}
        return st

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObjectState):
            return NotImplemented
        return self.to_wire() == other.to_wire()

    __hash__ = None  # type: ignore[assignment]


def _int(v: object) -> int:
    assert isinstance(v, int) and not isinstance(v, bool) and v >= 0
    return v


def _opt_int(v: object) -> int | None:
    return None if v is None else _int(v)


def _stamp(v: object) -> Stamp:
    assert isinstance(v, (list, tuple)) and len(v) == 4
    return Stamp(_int(v[0]), _int(v[1]), _int(v[2]), _int(v[3]))


def join(a: ObjectState, b: ObjectState) -> ObjectState:
    """The least state containing both: commutative, associative, idempotent."""
    out = a.copy()
    for t in b.tombs.values():
        old = out.tombs.get(t.stamp.file_ident)
        out.tombs[t.stamp.file_ident] = t if old is None else _newer_tomb(old, t)
    for o, c in b.creates.items():
        old_c = out.creates.get(o)
        if old_c is None or c.newer_in_origin(old_c):
            out.creates[o] = c
    for f, regs in b.regs.items():
        mine = out.regs.setdefault(f, {})
        for o, cv in regs.items():
            prev = mine.get(o)
            if prev is None or cv[0].newer_in_origin(prev[0]):
                mine[o] = cv
    for f, adds in b.adds.items():
        out.adds.setdefault(f, {}).update(adds)
    for f, nodes in b.lists.items():
        out.lists.setdefault(f, {}).update(nodes)
    for f, er in b.erased.items():
        out.erased.setdefault(f, set()).update(er)
    out._purge()
    return out


def list_element_ids(state: ObjectState, name: str) -> list[Stamp]:
    """Visible element ids of list ``name`` in order (a client maps indexes to ids with this)."""
    nodes = state.lists.get(name)
    if not nodes:
        return []
    erased = state.erased.get(name, set())
    children: dict[Stamp | None, list[Stamp]] = {}
    for s, n in nodes.items():
        children.setdefault(n.after, []).append(s)
    for kids in children.values():
        kids.sort(reverse=True)
    out: list[Stamp] = []
    stack: list[Stamp] = list(reversed(children.get(None, [])))
    while stack:
        s = stack.pop()
        if s not in erased:
            out.append(s)
        stack.extend(reversed(children.get(s, [])))
    return out


def state_of(ops: Mapping[Stamp, tuple[Op, int, int | None]]) -> ObjectState:
    """Build a state from stamped ops (stamp → (op, base_sv, sv)), in stamp order."""
    st = ObjectState()
    for s in sorted(ops):
        op, base, sv = ops[s]
        st.apply(op, s, base, sv)
    return st
