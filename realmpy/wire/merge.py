"""The merge rule: one deterministic, state-based merge shared by client and server.

Why state-based (a CRDT) rather than Realm's operational transformation: the
server then needs no history replay to integrate an old upload, downloads can
carry object *states* that are filtered exactly by permissions and
subscriptions, and every replica converges on the same result whatever order
it receives operations in, and however often (retries and duplicates are
harmless because applying an operation twice equals applying it once).

Per object, an ``ObjectState`` keeps just enough to decide every future merge:

- **stamp** ``(timestamp, file ident, client version, op index)`` orders all
  operations totally.  Within one file it agrees with the file's own order,
  because a file's timestamps never decrease (its client clamps them, the
  server refuses an upload that goes back): every rule below that keeps the
  *newest* entry per origin thereby keeps that origin's highest stamp;
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
  kept in one deterministic order; erased elements stay as invisible anchors;
- **sets** are observed-remove sets (add wins): an element is present while
  some ``SET_ADD`` of it was not *observed* by any ``SET_ERASE`` of it — the
  erase came later from the same file, or its author had downloaded the
  server version the add was integrated at.  A concurrent add and erase of
  one element therefore keep the element; "observed" is monotone per origin,
  so the newest add and the newest erase per origin and element suffice;
- **dictionaries**: each key is a last-writer-wins register whose value may
  be "erased" (``DICT_ERASE``); the highest stamp decides whether the key is
  present and with what value;
- **embedded objects** are merged as part of their parent: a ``SET`` of an
  embedded field carries the whole object (a map) and ``SET``/``ADD`` may
  address a dotted path (``address.city``).  Every path is last-writer-wins:
  materialising replays a field's surviving writes in stamp order, a whole
  object replacing everything below it and a path write changing one value
  of an existing object (a path write under a null object is ignored).

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

from realmpy.wire.protocol import (
    ClockSkewError,
    MalformedMessage,
    Op,
    OpCode,
    PrimaryKey,
    Stamp,
    Value,
    pack,
    unpack,
)

__all__ = [
    "MAX_CLOCK_SKEW_MS",
    "Causal",
    "DictEntry",
    "ListNode",
    "ObjectState",
    "SetAdd",
    "Tombstone",
    "check_clock",
    "elem_key",
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


@dataclass(frozen=True)
class SetAdd:
    """A ``SET_ADD``: its author's causal context and the server version it was integrated at."""

    causal: Causal
    sv: int | None

    def seen_by(self, r: Causal) -> bool:
        """True if the author of erase ``r`` had observed this add."""
        a = self.causal.stamp
        if a.file_ident == r.stamp.file_ident and (r.stamp.client_version, r.stamp.op_index) > (
            a.client_version,
            a.op_index,
        ):
            return True
        return self.sv is not None and self.sv <= r.base_sv


@dataclass(frozen=True)
class DictEntry:
    """A dictionary key's candidate: ``present`` False is a ``DICT_ERASE``."""

    causal: Causal
    present: bool
    value: Value


def _newer_add(a: SetAdd, b: SetAdd) -> SetAdd:
    if a.causal.stamp != b.causal.stamp:
        return a if a.causal.newer_in_origin(b.causal) else b
    return a if a.sv is not None else b


def elem_key(value: Value) -> bytes:
    """A set element's identity: its canonical msgpack encoding."""
    return pack(value)


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
    sadds: dict[str, dict[bytes, dict[int, tuple[SetAdd, Value]]]] = field(default_factory=dict)
    """set field → element key → origin → (newest add, element value)"""
    srems: dict[str, dict[bytes, dict[int, Causal]]] = field(default_factory=dict)
    """set field → element key → origin → newest erase"""
    dicts: dict[str, dict[str, dict[int, DictEntry]]] = field(default_factory=dict)
    """dictionary field → key → origin → newest candidate"""

    # ----------------------------------------------------------------- queries

    @property
    def alive(self) -> bool:
        """True while at least one create survives every tombstone."""
        return bool(self.creates)

    def _survives(self, c: Causal) -> bool:
        return all(c.saw(t) for t in self.tombs.values())

    def stamps(self) -> Iterator[Stamp]:
        """The stamp of every operation the state holds (list element anchors included)."""
        yield from (t.stamp for t in self.tombs.values())
        yield from (c.stamp for c in self.creates.values())
        for regs in self.regs.values():
            yield from (c.stamp for c, _ in regs.values())
        for adds in self.adds.values():
            yield from adds
        for nodes in self.lists.values():
            yield from nodes
        for er in self.erased.values():
            yield from er
        for els in self.sadds.values():
            for by in els.values():
                yield from (a.causal.stamp for a, _ in by.values())
        for rels in self.srems.values():
            for rby in rels.values():
                yield from (r.stamp for r in rby.values())
        for keys in self.dicts.values():
            for dby in keys.values():
                yield from (d.causal.stamp for d in dby.values())

    def copy(self) -> ObjectState:
        """A deep enough copy: mutating the copy never changes ``self``."""
        return ObjectState(
            dict(self.tombs),
            dict(self.creates),
            {k: dict(v) for k, v in self.regs.items()},
            {k: dict(v) for k, v in self.adds.items()},
            {k: dict(v) for k, v in self.lists.items()},
            {k: set(v) for k, v in self.erased.items()},
            {f: {e: dict(o) for e, o in es.items()} for f, es in self.sadds.items()},
            {f: {e: dict(o) for e, o in es.items()} for f, es in self.srems.items()},
            {f: {k: dict(o) for k, o in ks.items()} for f, ks in self.dicts.items()},
        )

    def without_origin(self, file_ident: int) -> ObjectState:
        """A copy without anything stamped by ``file_ident`` (a client strips its
        not-yet-identified local writes, stamped 0, this way before re-applying them)."""

        def keep(st: Stamp) -> bool:
            return st.file_ident != file_ident

        out = ObjectState()
        out.tombs = {o: t for o, t in self.tombs.items() if o != file_ident}
        out.creates = {o: c for o, c in self.creates.items() if o != file_ident}
        for f, regs in self.regs.items():
            r = {o: cv for o, cv in regs.items() if o != file_ident}
            if r:
                out.regs[f] = r
        for f, adds in self.adds.items():
            a = {st: v for st, v in adds.items() if keep(st)}
            if a:
                out.adds[f] = a
        for f, nodes in self.lists.items():
            n = {st: v for st, v in nodes.items() if keep(st)}
            if n:
                out.lists[f] = n
        for f, er in self.erased.items():
            e = {st for st in er if keep(st)}
            if e:
                out.erased[f] = e
        for f, els in self.sadds.items():
            for k, by in els.items():
                b = {o: v for o, v in by.items() if o != file_ident}
                if b:
                    out.sadds.setdefault(f, {})[k] = b
        for f, rels in self.srems.items():
            for k, rby in rels.items():
                rb = {o: v for o, v in rby.items() if o != file_ident}
                if rb:
                    out.srems.setdefault(f, {})[k] = rb
        for f, keys in self.dicts.items():
            for dk, dby in keys.items():
                db = {o: v for o, v in dby.items() if o != file_ident}
                if db:
                    out.dicts.setdefault(f, {})[dk] = db
        return out

    def for_reader(self) -> ObjectState:
        """A copy without overwritten values: what a download may carry to a reader.

        Every stamp and tombstone stays (joins and future merges need them),
        but a value no reader can see now or later is replaced by null: a
        register candidate older than a write to the same path or to an
        embedded object above it, a counter delta before the winning ``SET``,
        an erased list element, a dictionary candidate that lost its key.
        None of them can win again: an origin's entry is only ever replaced by
        a newer write of that origin, which (timestamps never decreasing within
        a file, see the module docstring) has a higher stamp, so the stamp that
        beat a candidate is only ever beaten by a higher one; and a later
        tombstone drops every candidate written before it reached the server,
        the winner included (see ``Causal.saw``), so an older candidate never
        outlives a newer one.
        What still travels: an erased object's surviving candidates (a create
        that saw the erase brings them back), removed set elements (an
        element *is* its value) and erased dictionary keys (a key is its name).
        ``self`` itself when nothing was overwritten (one writer per field).
        """
        if not self._overwritten():
            return self
        out = self.copy()
        newest: dict[str, Stamp] = {
            f: max(c.stamp for c, _ in regs.values()) for f, regs in out.regs.items() if regs
        }

        def overwriting(path: str) -> Stamp | None:
            parts = path.split(".")
            found = [newest.get(".".join(parts[:i])) for i in range(1, len(parts) + 1)]
            return max((s for s in found if s is not None), default=None)

        for f, regs in out.regs.items():
            top = overwriting(f)
            out.regs[f] = {
                o: (c, v if top is None or c.stamp >= top else None) for o, (c, v) in regs.items()
            }
        for f, adds in out.adds.items():
            base = overwriting(f)
            out.adds[f] = {
                st: (b, d if base is None or st > base else 0) for st, (b, d) in adds.items()
            }
        for f, nodes in out.lists.items():
            gone = out.erased.get(f, set())
            out.lists[f] = {
                st: ListNode(n.after, None, n.base_sv) if st in gone else n
                for st, n in nodes.items()
            }
        for keys in out.dicts.values():
            for k, by in keys.items():
                win = max(d.causal.stamp for d in by.values())
                keys[k] = {
                    o: d if d.causal.stamp == win else DictEntry(d.causal, d.present, None)
                    for o, d in by.items()
                }
        return out

    def _overwritten(self) -> bool:
        """Might ``for_reader`` change anything?  (Cheap: no value is looked at.)"""
        return (
            any(len(regs) > 1 for regs in self.regs.values())
            or any("." in f for f in self.regs)
            or bool(self.adds and self.regs.keys() & {f.split(".", 1)[0] for f in self.adds})
            or any(self.erased.values())
            or any(len(by) > 1 for keys in self.dicts.values() for by in keys.values())
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
        elif op.code == OpCode.SET_ADD:
            assert op.field is not None
            by = self.sadds.setdefault(op.field, {}).setdefault(elem_key(op.value), {})
            new_add = SetAdd(c, sv)
            old_add = by.get(origin)
            if old_add is None or _newer_add(old_add[0], new_add) is new_add:
                by[origin] = (new_add, op.value)
        elif op.code == OpCode.SET_ERASE:
            assert op.field is not None
            rby = self.srems.setdefault(op.field, {}).setdefault(elem_key(op.value), {})
            old_r = rby.get(origin)
            if old_r is None or c.newer_in_origin(old_r):
                rby[origin] = c
        elif op.code in (OpCode.DICT_SET, OpCode.DICT_ERASE):
            assert op.field is not None and op.key is not None
            dby = self.dicts.setdefault(op.field, {}).setdefault(op.key, {})
            old_d = dby.get(origin)
            if old_d is None or c.newer_in_origin(old_d.causal):
                present = op.code == OpCode.DICT_SET
                dby[origin] = DictEntry(c, present, op.value if present else None)
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
        self.sadds = _purge3(self.sadds, lambda v: ok(v[0].causal))
        self.srems = _purge3(self.srems, ok)
        self.dicts = _purge3(self.dicts, lambda v: ok(v.causal))

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

    def set_value(self, name: str) -> list[Value]:
        """The merged set's elements, ordered by their encoding (deterministic)."""
        out: list[Value] = []
        rems = self.srems.get(name, {})
        for k, by in sorted(self.sadds.get(name, {}).items()):
            rs = rems.get(k, {})
            if any(not any(a.seen_by(r) for r in rs.values()) for a, _ in by.values()):
                out.append(next(iter(by.values()))[1])
        return out

    def dict_value(self, name: str) -> dict[str, Value]:
        """The merged dictionary (keys in sorted order)."""
        out: dict[str, Value] = {}
        for k, by in sorted(self.dicts.get(name, {}).items()):
            win = max(by.values(), key=lambda d: d.causal.stamp)
            if win.present:
                out[k] = win.value
        return out

    def _nested_value(self, name: str, paths: list[str]) -> Value:
        """Replay every surviving write of field ``name`` and the paths below it in stamp order."""
        events: list[tuple[Stamp, int, list[str], Value]] = []
        for p in paths:
            parts = p.split(".")
            for c, v in self.regs.get(p, {}).values():
                events.append((c.stamp, 0, parts, v))
            for st, (_, d) in self.adds.get(p, {}).items():
                events.append((st, 1, parts, d))
        events.sort(key=lambda e: e[0])
        root: dict[str, Value] = {}
        for _, kind, parts, v in events:
            parent: Any = root
            for part in parts[:-1]:
                parent = parent.get(part) if isinstance(parent, dict) else None
            if not isinstance(parent, dict):
                continue  # a path under a null (or replaced) embedded object
            last = parts[-1]
            if kind == 0:
                parent[last] = _deep_copy(v)
            else:
                cur = parent.get(last)
                base = cur if isinstance(cur, (int, float)) and not isinstance(cur, bool) else 0
                parent[last] = base + v
        return root.get(name)

    def materialize(self, pk_field: str, pk: PrimaryKey) -> dict[str, Value] | None:
        """The object as a plain record (field → value), or None if it does not exist.

        Lists are lists, sets are lists in a canonical order, dictionaries and
        embedded objects are maps (``{"address": {"city": ...}}``).
        """
        if not self.alive:
            return None
        rec: dict[str, Value] = {pk_field: pk}
        nested: dict[str, list[str]] = {}
        for name in self.regs.keys() | self.adds.keys():
            head = name.split(".", 1)[0]
            if head != name:
                nested.setdefault(head, []).append(name)
        for name in self.regs.keys() | self.adds.keys():
            if "." in name:
                continue
            if name in nested or any(
                isinstance(v, dict) for _, v in self.regs.get(name, {}).values()
            ):
                nested.setdefault(name, []).append(name)
                continue
            rec[name] = self.field_value(name)
        for name, paths in nested.items():
            rec[name] = self._nested_value(name, sorted(paths))
        for name in self.lists:
            rec[name] = self.list_value(name)
        for name in self.sadds:
            rec[name] = self.set_value(name)
        for name in self.dicts:
            rec[name] = self.dict_value(name)
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
            *self._collections_wire(),
        ]

    def _collections_wire(self) -> list[Any]:
        """The optional 7th element (sets and dictionaries), absent when both are empty."""
        ext: dict[str, Any] = {}
        fields = sorted(self.sadds.keys() | self.srems.keys())
        if fields:
            sets: dict[str, Any] = {}
            for f in fields:
                adds = self.sadds.get(f, {})
                rems = self.srems.get(f, {})
                items = []
                for k in sorted(adds.keys() | rems.keys()):
                    by = adds.get(k, {})
                    value = next(iter(by.values()))[1] if by else unpack(k)
                    items.append(
                        [
                            value,
                            [
                                [list(a.causal.stamp), a.causal.base_sv, a.sv]
                                for _, (a, _v) in sorted(by.items())
                            ],
                            [
                                [list(r.stamp), r.base_sv]
                                for _, r in sorted(rems.get(k, {}).items())
                            ],
                        ]
                    )
                sets[f] = items
            ext["sets"] = sets
        if self.dicts:
            ext["dicts"] = {
                f: [
                    [
                        k,
                        [
                            [list(d.causal.stamp), d.causal.base_sv, d.present, d.value]
                            for _, d in sorted(by.items())
                        ],
                    ]
                    for k, by in sorted(keys.items())
                ]
                for f, keys in sorted(self.dicts.items())
            }
        return [ext] if ext else []

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
        assert isinstance(obj, list) and len(obj) in (6, 7)
        tombs_w, creates_w, regs_w, adds_w, lists_w, erased_w = obj[:6]
        st = cls()
        if len(obj) == 7:
            st._collections_from_wire(obj[6])
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

    def _collections_from_wire(self, ext: object) -> None:
        assert isinstance(ext, dict) and set(ext) <= {"sets", "dicts"}
        sets = ext.get("sets", {})
        dicts = ext.get("dicts", {})
        assert isinstance(sets, dict) and isinstance(dicts, dict)
        for f, items in sets.items():
            assert isinstance(f, str)
            for value, adds_w, rems_w in items:
                k = elem_key(value)
                for s, b, sv in adds_w:
                    a = SetAdd(Causal(_stamp(s), _int(b)), _opt_int(sv))
                    self.sadds.setdefault(f, {}).setdefault(k, {})[a.causal.stamp.file_ident] = (
                        a,
                        value,
                    )
                for s, b in rems_w:
                    r = Causal(_stamp(s), _int(b))
                    self.srems.setdefault(f, {}).setdefault(k, {})[r.stamp.file_ident] = r
        for f, keys in dicts.items():
            assert isinstance(f, str)
            for key, cands in keys:
                assert isinstance(key, str)
                for s, b, present, v in cands:
                    assert isinstance(present, bool)
                    d = DictEntry(Causal(_stamp(s), _int(b)), present, v if present else None)
                    self.dicts.setdefault(f, {}).setdefault(key, {})[d.causal.stamp.file_ident] = d

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ObjectState):
            return NotImplemented
        return self.to_wire() == other.to_wire()

    __hash__ = None  # type: ignore[assignment]


def _purge3(
    m: dict[str, dict[Any, dict[int, Any]]], ok: Any
) -> dict[str, dict[Any, dict[int, Any]]]:
    out: dict[str, dict[Any, dict[int, Any]]] = {}
    for f, inner in m.items():
        for k, by in inner.items():
            kept = {o: v for o, v in by.items() if ok(v)}
            if kept:
                out.setdefault(f, {})[k] = kept
    return out


def _deep_copy(v: Value) -> Value:
    if isinstance(v, dict):
        return {k: _deep_copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_deep_copy(x) for x in v]
    return v


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
    for f, els in b.sadds.items():
        mine_s = out.sadds.setdefault(f, {})
        for ek, by in els.items():
            mb = mine_s.setdefault(ek, {})
            for o, (sa, v) in by.items():
                prev_a = mb.get(o)
                if prev_a is None or _newer_add(prev_a[0], sa) is sa:
                    mb[o] = (sa, v)
    for f, rels in b.srems.items():
        mine_r = out.srems.setdefault(f, {})
        for rk, rby in rels.items():
            mr = mine_r.setdefault(rk, {})
            for o, r in rby.items():
                prev_r = mr.get(o)
                if prev_r is None or r.newer_in_origin(prev_r):
                    mr[o] = r
    for f, keys in b.dicts.items():
        mine_d = out.dicts.setdefault(f, {})
        for k, dby in keys.items():
            md = mine_d.setdefault(k, {})
            for o, d in dby.items():
                prev_d = md.get(o)
                if prev_d is None or d.causal.newer_in_origin(prev_d.causal):
                    md[o] = d
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
