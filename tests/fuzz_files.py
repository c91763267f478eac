"""Damaged-file fuzzing: realistic files, targeted damage, rounds in child processes.

Used by ``tests/test_fuzz_files.py`` and runnable on its own as a measuring
tool (no pass/fail, a table of outcomes)::

    python tests/fuzz_files.py --rounds 10000 --seed 1 [--suite data|recover|lock]

Each *round* takes one intact base file (an object-layer realm or a raw
storage file, built once per process with several commits of history),
applies one seed-chosen mutation (format.h tells where each structure is, so
damage lands on tree, overflow, free-list and meta pages on purpose), and
then, in a forked child with a time limit, opens the copy, reads everything
(every record both ways, point lookups, index queries), runs the integrity
check, writes, and reads again.  The parent classifies the child's outcome:

* ``typed error``   a :class:`~realmpy.errors.StorageError` (the storage
                    layer noticed the damage and said so);
* ``intact``        everything read equals the last acknowledged commit;
* ``recovered``     (``recover=True`` only) an older commit, as asked;
* ``wrong data``    something read differs, with no error; this includes an
                    object-layer error (``CodecError``, a lost schema...)
                    raised because the engine handed out damaged bytes;
* ``silent rollback`` everything equals an *older* commit, with no error;
* ``crash``         the child died of a signal (SIGBUS, SIGSEGV, abort);
* ``hang``          the child did not finish within the time limit;
* ``untyped exception`` any other exception (not a realmpy error).

Only the first two (and ``recovered`` in recover mode) are acceptable.

A round is reproducible from its seed alone: the base files are built
deterministically, and round ``i`` of a run with seed ``S`` uses seed
``S + i``, so ``--seed S+i --rounds 1`` (or ``REALMPY_FUZZ_SEED=S+i
REALMPY_FUZZ_ROUNDS=1`` for the test) replays it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import faulthandler
import inspect
import json
import os
import random
import select
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from realmpy.config import Configuration
from realmpy.errors import RealmpyError, StorageError
from realmpy.realm import Realm
from realmpy.schema import EmbeddedObject, Object, field
from realmpy.storage import Environment

PAGE = 4096
SECTOR = 512
HEADER = struct.Struct("<IHHQQHHI")  # format.h: the 32-byte page header
META_BODY = struct.Struct("<8sIIQQQQQQ")  # format.h: meta page body after the header
P_BRANCH, P_LEAF, P_OVERFLOW, P_FREELIST, P_META = 0x01, 0x02, 0x04, 0x08, 0x10
E_BIG = 0x01
# format.h, THE LOCK FILE
LOCK_MAX_READERS = 16
LOCK_MUTEX = 64
LOCK_WRITER_TID = 152
LOCK_SLOTS = 1216

TYPED = "typed error"
INTACT = "intact"
RECOVERED = "recovered"
WRONG = "wrong data"
ROLLBACK = "silent rollback"
CRASH = "crash"
HANG = "hang"
UNTYPED = "untyped exception"
CLASSES = (TYPED, INTACT, RECOVERED, WRONG, ROLLBACK, CRASH, HANG, UNTYPED)
ACCEPTABLE = {"rw": {TYPED, INTACT}, "ro": {TYPED, INTACT}, "recover": {TYPED, INTACT, RECOVERED}}

# A hang guard, not a performance threshold: a round takes well under a second.
DEFAULT_TIMEOUT_S = 20.0
# Caps what a child sends back, so it never blocks on a full pipe.
MAX_DETAIL = 2000

Dump = dict[str, dict[Any, Any]]


# =============================================================================
# The models of the object-layer file
# =============================================================================


class FzAddress(EmbeddedObject):
    street: str
    zip: int = 0


class FzOwner(Object):
    id: int = field(primary_key=True)
    name: str = field(indexed=True)
    score: float = 0.0
    joined: dt.datetime | None = None
    photo: bytes = b""
    tags: list[str] = field(default_factory=list)
    pets: list[FzPet] = field(default_factory=list)
    home: FzAddress | None = None
    past: list[FzAddress] = field(default_factory=list)


class FzPet(Object):
    id: int = field(primary_key=True)
    name: str = ""
    age: int = field(default=0, indexed=True)
    owner: FzOwner | None = None
    blob: bytes = b""


MODELS: list[type] = [FzOwner, FzPet, FzAddress]
EPOCH = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)


def _addr(a: FzAddress | None) -> tuple[str, int] | None:
    return None if a is None else (a.street, a.zip)


def owner_row(o: FzOwner) -> tuple[Any, ...]:
    """Every field of an owner, links as primary keys (works managed or not)."""
    return (
        o.name,
        o.score,
        o.joined,
        o.photo,
        tuple(o.tags),
        tuple(p.id for p in o.pets),
        _addr(o.home),
        tuple(_addr(a) for a in o.past),
    )


def pet_row(p: FzPet) -> tuple[Any, ...]:
    return (p.name, p.age, None if p.owner is None else p.owner.id, p.blob)


class Mismatch(Exception):
    """Reads disagree with each other or with the expected content."""


def dump_realm(realm: Realm) -> Dump:
    """Read every object and field; cross-check index queries, lookups by
    primary key and a descending sort against the full read."""
    owners = {o.id: owner_row(o) for o in realm.all(FzOwner)}
    pets = {p.id: pet_row(p) for p in realm.all(FzPet)}
    by_name: dict[str, list[int]] = {}
    for pk, row in owners.items():
        by_name.setdefault(row[0], []).append(pk)
    for name, pks in list(by_name.items())[::7]:
        got = sorted(o.id for o in realm.query(FzOwner, "name == $0", name))
        if got != sorted(pks):
            raise Mismatch(f"index query name == {name!r} gave {got}, a full read {sorted(pks)}")
    by_age: dict[int, set[int]] = {}
    for pk, row in pets.items():
        by_age.setdefault(row[1], set()).add(pk)
    for age in sorted(by_age)[::3]:
        got_set = {p.id for p in realm.query(FzPet, "age == $0", age)}
        if got_set != by_age[age]:
            raise Mismatch(f"index query age == {age} disagrees with a full read")
    for pk in list(owners)[::50]:
        found = realm.find(FzOwner, pk)
        if found is None or owner_row(found) != owners[pk]:
            raise Mismatch(f"find(FzOwner, {pk}) disagrees with a full read")
    desc = [p.id for p in realm.query(FzPet, "TRUEPREDICATE SORT(id DESC)")]
    if desc != sorted(pets, reverse=True):
        raise Mismatch("a descending sort of pets disagrees with a full read")
    return {"FzOwner": owners, "FzPet": pets}


def dump_env(env: Environment) -> Dump:
    """Read every table both ways, every key by lookup, and counts."""
    out: Dump = {}
    with env.read() as snap:
        for table in snap.tables():
            fwd = list(snap.scan(table))
            keys = [k for k, _ in fwd]
            if any(a >= b for a, b in zip(keys, keys[1:])):
                raise Mismatch(f"table {table!r}: a forward scan is not in key order")
            if list(snap.scan(table, reverse=True)) != fwd[::-1]:
                raise Mismatch(f"table {table!r}: forward and reverse scans disagree")
            if snap.count(table) != len(fwd):
                raise Mismatch(f"table {table!r}: count() disagrees with a scan")
            rows = dict(fwd)
            for k, v in fwd[::3]:
                if snap.get(table, k) != v:
                    raise Mismatch(f"table {table!r}: get({k!r}) disagrees with a scan")
            if keys:
                mid = keys[len(keys) // 2]
                if list(snap.scan(table, start=mid)) != fwd[len(keys) // 2 :]:
                    raise Mismatch(f"table {table!r}: a scan from {mid!r} disagrees")
            out[table] = rows
    return out


# =============================================================================
# Base files (built once per process, deterministically)
# =============================================================================


@dataclasses.dataclass
class Base:
    """An intact file and what every commit of its history holds."""

    kind: str  # "objects" or "storage"
    data: bytes  # the file after the last acknowledged commit
    previous: bytes  # the file before that commit (for lost-write damage)
    dumps: list[Dump]  # content after each commit, oldest first
    pages: PageMap

    @property
    def expected(self) -> Dump:
        return self.dumps[-1]


def _remove(path: str) -> None:
    for suffix in ("", ".lock", ".session"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def build_storage(path: str) -> Base:
    """Four tables (small, medium, overflow and many tiny values), eight
    commits with updates, deletes and a dropped table (free pages)."""
    rng = random.Random(1234)
    _remove(path)
    dumps: list[Dump] = []
    images: list[bytes] = []
    with Environment(path) as env:
        for commit in range(8):
            with env.write() as txn:
                if commit == 0:
                    for i in range(1200):
                        txn.put("users", b"user:%05d" % i, b"name-%05d|" % i + rng.randbytes(20))
                    for i in range(3000):
                        txn.put("events", struct.pack(">I", i * 7), b"%d" % i)
                    txn.put("scratch", b"x", b"y" * 3000)
                # The last commit is small, so most pages predate it.
                n = 30 if commit == 7 else 150 + 40 * commit
                for _ in range(n):
                    key = b"order:%06d" % rng.randrange(20000)
                    txn.put("orders", key, rng.randbytes(rng.randint(60, 900)))
                for _ in range(1 if commit == 7 else rng.randint(2, 6)):
                    size = rng.choice((1500, 5000, 9000, 30000))
                    txn.put("blobs", b"blob:%03d" % rng.randrange(60), rng.randbytes(size))
                for _ in range(5 if commit == 7 else 30):
                    txn.delete("users", b"user:%05d" % rng.randrange(1200))
                if commit == 3:
                    txn.drop("scratch")
                if commit >= 5:
                    for _ in range(5 if commit == 7 else 40):
                        txn.put("users", b"user:%05d" % rng.randrange(1200), b"updated-%d" % commit)
            images.append(_read(path))
            dumps.append(dump_env(env))
    data = _read(path)
    return Base("storage", data, images[-2], dumps, PageMap.parse(data))


def build_objects(path: str) -> Base:
    """1200 owners and pets with every kind of field, links both ways,
    embedded objects, two indexes, a few large values (overflow pages), and
    updates and deletes over eight commits."""
    rng = random.Random(4321)
    _remove(path)
    dumps: list[Dump] = []
    images: list[bytes] = []
    config = Configuration.local(MODELS, path=path)
    with Realm(config) as realm:
        images.append(_read(path))
        dumps.append(dump_realm(realm))
        next_id = 0
        for commit in range(7):
            with realm.write():
                for _ in range(200 if commit < 6 else 20):
                    i = next_id
                    next_id += 1
                    big = rng.random() < 0.03
                    owner = realm.add(
                        FzOwner(
                            id=i,
                            name=f"owner-{i % 700:04d}",
                            score=rng.random() * 100,
                            joined=EPOCH + dt.timedelta(seconds=i * 977, microseconds=i),
                            photo=rng.randbytes(
                                rng.randint(3000, 12000) if big else rng.randint(0, 80)
                            ),
                            tags=[f"tag{j}" for j in range(i % 4)],
                            home=FzAddress(street=f"street {i}", zip=10000 + i),
                            past=[FzAddress(street="old", zip=j) for j in range(i % 3)],
                        )
                    )
                    pet = realm.add(FzPet(id=i, name=f"pet{i}", age=i % 23, owner=owner))
                    owner.pets.append(pet)
                last = commit == 6  # small, so most pages predate it
                if commit >= 2:
                    for pk in rng.sample(range(next_id), 4 if last else 25):
                        o = realm.find(FzOwner, pk)
                        if o is not None:
                            o.score = -1.0
                            o.tags.append("edited")
                    for pk in rng.sample(range(next_id), 2 if last else 8):
                        p = realm.find(FzPet, pk)
                        if p is not None:
                            realm.delete(p)
            images.append(_read(path))
            dumps.append(dump_realm(realm))
    data = _read(path)
    return Base("objects", data, images[-2], dumps, PageMap.parse(data))


# =============================================================================
# The page map: what each page of a base file is (format.h)
# =============================================================================


@dataclasses.dataclass
class PageMap:
    """Roles of the pages of an intact file, for aiming damage."""

    pages_used: int
    newest_meta: int  # 0 or 1
    newest_txnid: int
    role: dict[int, str]  # pgno -> meta_new, meta_old, catalog, branch, leaf, ...
    txnid: dict[int, int]  # pgno -> txnid of the version that wrote it
    table: dict[int, str]  # pgno -> table name (tree and overflow pages)

    ROLES = (
        "meta_new",
        "meta_old",
        "catalog",
        "branch",
        "leaf",
        "overflow_head",
        "overflow_cont",
        "freelist",
        "free",
        "unused",
    )

    @classmethod
    def parse(cls, data: bytes) -> PageMap:
        metas = []
        for slot in (0, 1):
            hdr = HEADER.unpack_from(data, slot * PAGE)
            body = META_BODY.unpack_from(data, slot * PAGE + 32)
            metas.append((hdr[3], body))
        newest = 0 if metas[0][0] > metas[1][0] else 1
        txn, body = metas[newest]
        _magic, _ver, _psize, pages_used, cat, _cat_tx, free_pg, _free_tx, _free_len = body
        npages_file = len(data) // PAGE
        pm = cls(pages_used, newest, txn, {}, {}, {})
        for p in range(npages_file):
            pm.role[p] = "free" if p < pages_used else "unused"
        pm.role[newest] = "meta_new"
        pm.role[1 - newest] = "meta_old"
        pm.walk(data, cat, "", catalog=True)
        pg = free_pg
        while pg:
            pm.mark(data, pg, "freelist", "")
            pg = struct.unpack_from("<Q", data, pg * PAGE + 32)[0]
        return pm

    def mark(self, data: bytes, pg: int, role: str, table: str) -> None:
        self.role[pg] = role
        self.txnid[pg] = HEADER.unpack_from(data, pg * PAGE)[3]
        self.table[pg] = table

    def walk(self, data: bytes, pg: int, table: str, catalog: bool) -> None:
        if not pg:
            return
        base = pg * PAGE
        _sum, flags, nkeys, _tx, _pgno, _lo, _up, _np = HEADER.unpack_from(data, base)
        leaf = bool(flags & P_LEAF)
        self.mark(data, pg, "catalog" if catalog else ("leaf" if leaf else "branch"), table)
        for i in range(nkeys):
            off = struct.unpack_from("<H", data, base + 32 + 8 * i + 4)[0]
            e = base + off
            klen = struct.unpack_from("<H", data, e)[0]
            if not leaf:
                child = struct.unpack_from("<Q", data, e + 8)[0]
                self.walk(data, child, table, catalog)
                continue
            eflags, vlen = data[e + 2], struct.unpack_from("<I", data, e + 4)[0]
            key = data[e + 8 : e + 8 + klen]
            val = e + 8 + klen
            if eflags & E_BIG:
                ov = struct.unpack_from("<Q", data, val)[0]
                run = HEADER.unpack_from(data, ov * PAGE)[7]
                self.mark(data, ov, "overflow_head", table)
                for c in range(ov + 1, ov + run):
                    self.mark(data, c, "overflow_cont", table)
                    self.txnid[c] = self.txnid[ov]
            elif catalog and vlen >= 8:
                root = struct.unpack_from("<Q", data, val)[0]
                self.walk(data, root, key.decode("utf-8", "replace"), catalog=False)

    def in_role(self, role: str) -> list[int]:
        if role == "newest":  # tree, overflow and free-list pages of the last commit
            return sorted(p for p, t in self.txnid.items() if t == self.newest_txnid and not p < 2)
        return sorted(p for p, r in self.role.items() if r == role)

    def label(self, pg: int) -> str:
        """The page's role, marked "(last commit)" if the newest commit wrote it."""
        role = self.role.get(pg, "beyond the end")
        newest = self.txnid.get(pg) == self.newest_txnid and role not in ("free", "unused")
        return f"{role} (last commit)" if newest and not role.startswith("meta") else role

    def describe(self, pg: int) -> str:
        role = self.role.get(pg, "beyond the end")
        table = self.table.get(pg)
        tx = self.txnid.get(pg)
        where = f" of {table!r}" if table else ""
        by = f", written by v{tx}" if tx is not None and role not in ("free", "unused") else ""
        return f"page {pg} ({role}{where}{by})"


# =============================================================================
# Mutations of the data file
# =============================================================================

# Roles a targeted mutation picks from, with weights (pages of the newest
# commit are the ones whose damage used to turn into a silent rollback).
TARGET_WEIGHTS = {
    "meta_new": 1.0,
    "meta_old": 0.5,
    "catalog": 1.0,
    "branch": 2.0,
    "leaf": 3.0,
    "overflow_head": 2.0,
    "overflow_cont": 2.0,
    "freelist": 1.0,
    "newest": 3.0,
    "free": 0.7,
    "unused": 0.3,
}


@dataclasses.dataclass
class Damage:
    """A mutated file image and what was done to it."""

    data: bytes
    what: str


Mutation = Callable[[random.Random, Base], Damage]


def pick_page(rng: random.Random, base: Base, headered: bool = False) -> int:
    roles = [
        r
        for r in TARGET_WEIGHTS
        if base.pages.in_role(r) and not (headered and r in ("overflow_cont", "unused"))
    ]
    role = rng.choices(roles, [TARGET_WEIGHTS[r] for r in roles])[0]
    return rng.choice(base.pages.in_role(role))


def _flip(buf: bytearray, offset: int, bit: int) -> None:
    buf[offset] ^= 1 << bit


def m_bitflip(rng: random.Random, base: Base) -> Damage:
    buf = bytearray(base.data)
    pg = pick_page(rng, base)
    off = pg * PAGE + rng.randrange(PAGE)
    bit = rng.randrange(8)
    _flip(buf, off, bit)
    return Damage(bytes(buf), f"bit {bit} of byte {off - pg * PAGE} in {base.pages.describe(pg)}")


def m_bitflip_header(rng: random.Random, base: Base) -> Damage:
    buf = bytearray(base.data)
    pg = pick_page(rng, base, headered=True)
    off = rng.randrange(32)
    bit = rng.randrange(8)
    _flip(buf, pg * PAGE + off, bit)
    return Damage(bytes(buf), f"bit {bit} of header byte {off} in {base.pages.describe(pg)}")


def m_bitflips(rng: random.Random, base: Base) -> Damage:
    buf = bytearray(base.data)
    pg = pick_page(rng, base)
    n = rng.randint(2, 8)
    for _ in range(n):
        _flip(buf, pg * PAGE + rng.randrange(PAGE), rng.randrange(8))
    return Damage(bytes(buf), f"{n} random bits in {base.pages.describe(pg)}")


def m_bitflips_spread(rng: random.Random, base: Base) -> Damage:
    buf = bytearray(base.data)
    n = rng.randint(2, 8)
    hit = []
    for _ in range(n):
        off = rng.randrange(base.pages.pages_used * PAGE)
        _flip(buf, off, rng.randrange(8))
        hit.append(off // PAGE)
    return Damage(bytes(buf), f"{n} random bits in pages {sorted(set(hit))}")


def _fill(rng: random.Random, base: Base, size: int, garbage: bool) -> Damage:
    buf = bytearray(base.data)
    pg = pick_page(rng, base)
    off = pg * PAGE + rng.randrange(PAGE // size) * size
    buf[off : off + size] = rng.randbytes(size) if garbage else bytes(size)
    what = "random bytes over" if garbage else "zeroed"
    return Damage(
        bytes(buf), f"{what} {size} bytes at {off - pg * PAGE} of {base.pages.describe(pg)}"
    )


def m_zero_sector(rng: random.Random, base: Base) -> Damage:
    return _fill(rng, base, SECTOR, garbage=False)


def m_zero_page(rng: random.Random, base: Base) -> Damage:
    return _fill(rng, base, PAGE, garbage=False)


def m_garbage_sector(rng: random.Random, base: Base) -> Damage:
    return _fill(rng, base, SECTOR, garbage=True)


def m_garbage_page(rng: random.Random, base: Base) -> Damage:
    return _fill(rng, base, PAGE, garbage=True)


# Header fields: (offset, struct format); see format.h.
HEADER_FIELDS = {
    "checksum": (0, "<I"),
    "flags": (4, "<H"),
    "nkeys": (6, "<H"),
    "txnid": (8, "<Q"),
    "pgno": (16, "<Q"),
    "lower": (24, "<H"),
    "upper": (26, "<H"),
    "npages": (28, "<I"),
}


def _header_field(name: str) -> Mutation:
    off, fmt = HEADER_FIELDS[name]
    top = (1 << (8 * struct.calcsize(fmt))) - 1

    def mutate(rng: random.Random, base: Base) -> Damage:
        buf = bytearray(base.data)
        pg = pick_page(rng, base, headered=True)
        old = struct.unpack_from(fmt, buf, pg * PAGE + off)[0]
        special = [
            0,
            1,
            top,
            old + 1,
            old - 1,
            old ^ (1 << rng.randrange(8 * struct.calcsize(fmt))),
        ]
        if name == "npages":
            special += [0x10000, 0x7FFFFFFF, 2, base.pages.pages_used]
        if name in ("lower", "upper"):
            special += [PAGE, PAGE + 1, 31, 33]
        if name == "flags":
            special += [P_BRANCH, P_LEAF, P_OVERFLOW, P_FREELIST, P_META, P_LEAF | P_BRANCH]
        if name in ("txnid", "pgno"):
            special += [base.pages.newest_txnid, base.pages.newest_txnid + 1, 1 << 40]
        new = rng.choice([*special, rng.randrange(top + 1)]) & top
        struct.pack_into(fmt, buf, pg * PAGE + off, new)
        return Damage(
            bytes(buf), f"header {name} {old:#x} -> {new:#x} in {base.pages.describe(pg)}"
        )

    return mutate


def _truncated(base: Base, size: int, why: str) -> Damage:
    used = base.pages.pages_used
    return Damage(base.data[:size], f"truncated to {size} bytes ({why}; {used} pages in use)")


def m_truncate_small(rng: random.Random, base: Base) -> Damage:
    size = rng.randint(16, 128) * 1024
    if rng.random() < 0.5:
        size += rng.randrange(PAGE)
    return _truncated(base, size, "16-128 KiB, an interrupted copy")


def m_truncate_used(rng: random.Random, base: Base) -> Damage:
    size = rng.randrange(2 * PAGE, base.pages.pages_used * PAGE)
    if rng.random() < 0.5:
        size -= size % PAGE
    return _truncated(base, size, "inside the pages in use")


def m_truncate_last_page(rng: random.Random, base: Base) -> Damage:
    size = (base.pages.pages_used - 1) * PAGE + rng.randrange(PAGE)
    return _truncated(base, size, "inside the last page in use")


def m_truncate_tiny(rng: random.Random, base: Base) -> Damage:
    size = rng.choice([0, 1, 40, PAGE - 1, PAGE, PAGE + 64, 2 * PAGE - 1, 2 * PAGE, 3 * PAGE])
    return _truncated(base, size, "metas only or less")


def m_truncate_unused(rng: random.Random, base: Base) -> Damage:
    size = rng.randrange(base.pages.pages_used * PAGE, len(base.data) + 1)
    return _truncated(base, size, "only never-used pages cut")


def _used_page(rng: random.Random, base: Base) -> int:
    return pick_page(rng, base) if rng.random() < 0.8 else rng.randrange(base.pages.pages_used)


def m_swap_pages(rng: random.Random, base: Base) -> Damage:
    buf = bytearray(base.data)
    a = _used_page(rng, base)
    b = _used_page(rng, base)
    buf[a * PAGE : (a + 1) * PAGE], buf[b * PAGE : (b + 1) * PAGE] = (
        base.data[b * PAGE : (b + 1) * PAGE],
        base.data[a * PAGE : (a + 1) * PAGE],
    )
    return Damage(bytes(buf), f"swapped {base.pages.describe(a)} and {base.pages.describe(b)}")


def m_duplicate_page(rng: random.Random, base: Base) -> Damage:
    buf = bytearray(base.data)
    a = _used_page(rng, base)
    b = _used_page(rng, base)
    buf[b * PAGE : (b + 1) * PAGE] = base.data[a * PAGE : (a + 1) * PAGE]
    return Damage(bytes(buf), f"copied {base.pages.describe(a)} over {base.pages.describe(b)}")


def m_append_garbage(rng: random.Random, base: Base) -> Damage:
    n = rng.choice([1, 100, PAGE, PAGE + 7, 10 * PAGE, rng.randint(1, 40000)])
    return Damage(base.data + rng.randbytes(n), f"{n} random bytes appended")


def m_append_pages(rng: random.Random, base: Base) -> Damage:
    picks = [_used_page(rng, base) for _ in range(rng.randint(1, 4))]
    tail = b"".join(base.data[p * PAGE : (p + 1) * PAGE] for p in picks)
    return Damage(base.data + tail, f"copies of pages {picks} appended")


def _meta_slot(base: Base, newest: bool) -> int:
    return base.pages.newest_meta if newest else 1 - base.pages.newest_meta


def m_meta_newest_bit(rng: random.Random, base: Base) -> Damage:
    buf = bytearray(base.data)
    slot = _meta_slot(base, True)
    off = rng.randrange(128)  # the checksummed region
    bit = rng.randrange(8)
    _flip(buf, slot * PAGE + off, bit)
    return Damage(bytes(buf), f"bit {bit} of byte {off} of the newest meta (page {slot})")


def m_meta_older_bit(rng: random.Random, base: Base) -> Damage:
    buf = bytearray(base.data)
    slot = _meta_slot(base, False)
    off = rng.randrange(128)
    _flip(buf, slot * PAGE + off, rng.randrange(8))
    return Damage(bytes(buf), f"a bit of byte {off} of the older meta (page {slot})")


def _spoil_meta(rng: random.Random, buf: bytearray, slot: int) -> str:
    how = rng.choice(["zeroed", "garbage", "bit", "first sector zeroed"])
    at = slot * PAGE
    if how == "zeroed":
        buf[at : at + PAGE] = bytes(PAGE)
    elif how == "garbage":
        buf[at : at + PAGE] = rng.randbytes(PAGE)
    elif how == "bit":
        _flip(buf, at + rng.randrange(128), rng.randrange(8))
    else:
        buf[at : at + SECTOR] = bytes(SECTOR)
    return f"meta page {slot} {how}"


def m_meta_one(rng: random.Random, base: Base) -> Damage:
    buf = bytearray(base.data)
    newest = rng.random() < 0.7
    what = _spoil_meta(rng, buf, _meta_slot(base, newest))
    return Damage(bytes(buf), f"{what} ({'newest' if newest else 'older'})")


def m_meta_both(rng: random.Random, base: Base) -> Damage:
    buf = bytearray(base.data)
    a = _spoil_meta(rng, buf, 0)
    b = _spoil_meta(rng, buf, 1)
    return Damage(bytes(buf), f"{a}, {b}")


def m_meta_swap(rng: random.Random, base: Base) -> Damage:
    buf = bytearray(base.data)
    buf[0:PAGE], buf[PAGE : 2 * PAGE] = base.data[PAGE : 2 * PAGE], base.data[0:PAGE]
    return Damage(bytes(buf), "meta pages 0 and 1 swapped")


def _changed_sectors(base: Base) -> list[int]:
    old, new = base.previous, base.data
    n = min(len(old), len(new)) // SECTOR
    return [
        s
        for s in range(n)
        if old[s * SECTOR : (s + 1) * SECTOR] != new[s * SECTOR : (s + 1) * SECTOR]
    ]


def m_lost_write(rng: random.Random, base: Base) -> Damage:
    """One sector the last commit wrote reverts to its previous content (a
    write the device acknowledged but lost)."""
    sectors = _changed_sectors(base)
    s = rng.choice(sectors)
    buf = bytearray(base.data)
    buf[s * SECTOR : (s + 1) * SECTOR] = base.previous[s * SECTOR : (s + 1) * SECTOR]
    return Damage(
        bytes(buf),
        f"sector {s % 8} of {base.pages.describe(s * SECTOR // PAGE)} reverted to before the last commit",
    )


def m_lost_meta_write(rng: random.Random, base: Base) -> Damage:
    slot = _meta_slot(base, True)
    buf = bytearray(base.data)
    buf[slot * PAGE : slot * PAGE + SECTOR] = base.previous[slot * PAGE : slot * PAGE + SECTOR]
    return Damage(bytes(buf), f"the newest meta (page {slot}) reverted to its previous content")


def target_of(base: Base, data: bytes) -> str:
    """What kind of page a mutation hit (for the summary's second table)."""
    if len(data) != len(base.data):
        return "file end (truncated)" if len(data) < len(base.data) else "file end (appended)"
    hit = [
        p
        for p in range(len(data) // PAGE)
        if data[p * PAGE : (p + 1) * PAGE] != base.data[p * PAGE : (p + 1) * PAGE]
    ]
    labels = {base.pages.label(p) for p in hit}
    if not labels:
        return "nothing"
    return labels.pop() if len(labels) == 1 else "several kinds of page"


def m_none(rng: random.Random, base: Base) -> Damage:
    return Damage(base.data, "no damage (control)")


MUTATIONS: dict[str, tuple[float, Mutation]] = {
    "bitflip": (4.0, m_bitflip),
    "bitflip.header": (3.0, m_bitflip_header),
    "bitflips": (2.0, m_bitflips),
    "bitflips.spread": (2.0, m_bitflips_spread),
    "zero.sector": (2.0, m_zero_sector),
    "zero.page": (2.0, m_zero_page),
    "garbage.sector": (2.0, m_garbage_sector),
    "garbage.page": (1.0, m_garbage_page),
    **{f"header.{name}": (1.0, _header_field(name)) for name in HEADER_FIELDS},
    "truncate.16-128KiB": (1.0, m_truncate_small),
    "truncate.used": (1.0, m_truncate_used),
    "truncate.last-page": (1.0, m_truncate_last_page),
    "truncate.tiny": (0.5, m_truncate_tiny),
    "truncate.unused": (0.5, m_truncate_unused),
    "swap.pages": (2.0, m_swap_pages),
    "duplicate.page": (2.0, m_duplicate_page),
    "append.garbage": (0.5, m_append_garbage),
    "append.pages": (0.5, m_append_pages),
    "meta.newest-bit": (2.0, m_meta_newest_bit),
    "meta.older-bit": (0.5, m_meta_older_bit),
    "meta.one": (1.0, m_meta_one),
    "meta.both": (0.5, m_meta_both),
    "meta.swap": (0.3, m_meta_swap),
    "lost-write": (1.5, m_lost_write),
    "lost-write.meta": (0.5, m_lost_meta_write),
    "none": (0.3, m_none),
}


# =============================================================================
# Rounds, run in a child process
# =============================================================================


@dataclasses.dataclass
class Round:
    """Everything a round does, derived from its seed."""

    seed: int
    suite: str  # "data", "recover" or "lock"
    kind: str  # "objects" or "storage"
    mutation: str
    mode: str  # "rw", "ro" or "recover"
    only: str = ""  # the mutation filter it was drawn under (REALMPY_FUZZ_MUTATIONS)

    def replay(self) -> str:
        env = f"REALMPY_FUZZ_MUTATIONS={self.only} " if self.only else ""
        opt = f" --mutations {self.only}" if self.only else ""
        return (
            f"{env}REALMPY_FUZZ_SEED={self.seed} REALMPY_FUZZ_ROUNDS=1 python -m pytest -s "
            f"tests/test_fuzz_files.py -k {self.suite}   (or: python tests/fuzz_files.py "
            f"--suite {self.suite} --seed {self.seed} --rounds 1{opt} -v)"
        )


@dataclasses.dataclass
class Outcome:
    round: Round
    cls: str
    stage: str = ""
    detail: str = ""
    what: str = ""  # the damage
    target: str = ""  # the kind of page it hit (target_of)
    error: str = ""  # exception class, for typed and untyped errors
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.cls in ACCEPTABLE[self.round.mode]

    def line(self) -> str:
        r = self.round
        err = f" [{self.error}]" if self.error else ""
        return (
            f"seed={r.seed} {r.kind}/{r.mode} {r.mutation}: {self.what} -> {self.cls}{err} "
            f"at {self.stage}: {self.detail}"
        )


def supports_recover() -> dict[str, bool]:
    """Whether ``recover=True`` exists (it lands with the integrity work)."""
    return {
        "storage": "recover" in inspect.signature(Environment).parameters,
        "objects": "recover" in inspect.signature(Configuration.local).parameters,
    }


def plan_round(seed: int, suite: str, kinds: Sequence[str], only: str = "") -> Round:
    """The round of ``seed``; ``only``: comma-separated prefixes of the
    mutation names to draw from (all when empty)."""
    rng = random.Random(seed)
    kind = rng.choice(list(kinds))
    table = LOCK_SCENARIOS if suite == "lock" else MUTATIONS
    prefixes = tuple(p for p in only.split(",") if p)
    names = [n for n in table if not prefixes or n.startswith(prefixes)]
    if not names:
        raise ValueError(f"no {suite} mutation starts with any of {prefixes}")
    if suite == "lock":
        name = rng.choice(names)
        return Round(seed, suite, LOCK_SCENARIOS[name][0], name, "rw", only)
    mutation = rng.choices(names, [MUTATIONS[n][0] for n in names])[0]
    mode = "recover" if suite == "recover" else ("ro" if rng.random() < 0.2 else "rw")
    return Round(seed, suite, kind, mutation, mode, only)


def damage_for(rnd: Round, base: Base) -> Damage:
    """The round's damage; drawn again (same generator, so deterministic)
    when a draw happens to change nothing, e.g. zeroes over zeroes."""
    rng = random.Random(rnd.seed * 7919 + 1)
    mutate = MUTATIONS[rnd.mutation][1]
    damage = mutate(rng, base)
    for _ in range(50):
        if damage.data != base.data or rnd.mutation == "none":
            break
        damage = mutate(rng, base)
    return damage


def compare(got: Dump, base: Base, mode: str) -> tuple[str, str]:
    """(class, detail) of a complete read."""
    if got == base.expected:
        return INTACT, ""
    for i, old in enumerate(base.dumps[:-1]):
        if got == old:
            what = f"equals commit {i + 1} of {len(base.dumps)}, not the last acknowledged one"
            return (RECOVERED if mode == "recover" else ROLLBACK), what
    return WRONG, first_difference(got, base.expected)


def first_difference(got: Dump, want: Dump) -> str:
    for table in sorted(set(got) | set(want), key=str):
        g, w = got.get(table), want.get(table)
        if g is None or w is None:
            return f"table {table!r} {'missing' if g is None else 'unexpected'}"
        if g == w:
            continue
        missing = [k for k in w if k not in g]
        extra = [k for k in g if k not in w]
        changed = [k for k in w if k in g and g[k] != w[k]]
        parts = [
            f"table {table!r}: {len(missing)} missing, {len(extra)} extra, {len(changed)} changed"
        ]
        if changed:
            k = changed[0]
            parts.append(f"e.g. {k!r}: read {_short(g[k])}, expected {_short(w[k])}")
        elif missing:
            parts.append(f"e.g. {missing[0]!r} missing")
        else:
            parts.append(f"e.g. {extra[0]!r} extra")
        return "; ".join(parts)
    return "(no difference found)"


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) < 160 else s[:150] + "..."


class Stage:
    """Where in a round the child is (reported with errors and crashes)."""

    def __init__(self) -> None:
        self.name = "setup"

    def __call__(self, name: str) -> None:
        self.name = name
        # Visible in the child's stderr if it then crashes or hangs.
        os.write(2, f"stage: {name}\n".encode())


Verdict = tuple[str, str]  # (class, detail)


def _open_kwargs(mode: str) -> dict[str, Any]:
    if mode == "ro":
        return {"read_only": True}
    if mode == "recover":
        return {"recover": True}
    return {}


def _probe_storage(env: Environment, expected: Dump) -> Dump:
    """A write on the opened file; returns what every table should then hold."""
    want = {t: dict(rows) for t, rows in expected.items()}
    probe: dict[bytes, bytes] = {}
    with env.write() as txn:
        for i in range(12):
            value = (b"probe-%d|" % i) * (1200 if i % 5 == 0 else 3)
            txn.put("zz-probe", b"p%03d" % i, value)
            probe[b"p%03d" % i] = value
        for table, rows in sorted(want.items()):
            if rows:
                first = next(iter(rows))
                txn.put(table, first, b"overwritten")
                rows[first] = b"overwritten"
                last = list(rows)[-1]
                if last != first:
                    txn.delete(table, last)
                    del rows[last]
    want["zz-probe"] = probe
    return want


@contextlib.contextmanager
def _collecting_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def _reported(verdict: Verdict, env: Environment, caught: list[warnings.WarningMessage]) -> Verdict:
    """A recovery to an older commit must say so (a warning, or the
    environment's ``recovered_from``); one that does not is a silent
    rollback even though the caller asked for recover=True."""
    if verdict[0] != RECOVERED or caught or getattr(env, "recovered_from", None):
        return verdict
    return ROLLBACK, f"recover=True {verdict[1]}, without a warning or recovered_from"


def round_storage(path: str, base: Base, mode: str, stage: Stage) -> Verdict:
    stage("open")
    with _collecting_warnings() as caught:
        env = Environment(path, **_open_kwargs(mode))
    with env:
        stage("read")
        verdict = _reported(compare(dump_env(env), base, mode), env, caught)
        if verdict[0] not in (INTACT, RECOVERED):
            return verdict
        stage("check")
        env.check()
        if mode == "ro":
            return verdict
        stage("write")
        # After a recovery the probe goes on top of the version it opened.
        opened = base.expected if verdict[0] == INTACT else dump_env(env)
        want = _probe_storage(env, opened)
        stage("read after write")
        after = dump_env(env)
        if after != want:
            return WRONG, "after a write: " + first_difference(after, want)
        stage("check after write")
        env.check()
    stage("reopen after write")
    with Environment(path) as env:
        again = dump_env(env)
        if again == opened:
            return ROLLBACK, "the write acknowledged on the damaged file is gone after reopening"
        if again != want:
            return WRONG, "reopened after a write: " + first_difference(again, want)
    return verdict


# The object the write of an object-layer round adds (a large photo: an overflow run).
PROBE_FIELDS: dict[str, Any] = {
    "id": 10**6,
    "name": "probe",
    "score": 0.5,
    "joined": EPOCH,
    "photo": b"p" * 5000,
}


def _check_realm(realm: Realm) -> None:
    check = getattr(realm, "check", None)
    if callable(check):
        check()
    else:
        realm._env.check()  # no Realm.check() (yet): the storage layer's


def round_objects(path: str, base: Base, mode: str, stage: Stage) -> Verdict:
    stage("open")
    kwargs = _open_kwargs(mode)
    config = Configuration.local(MODELS, path=path, **kwargs)
    with _collecting_warnings() as caught:
        realm = Realm(config)
    with realm:
        stage("read")
        verdict = _reported(compare(dump_realm(realm), base, mode), realm._env, caught)
        if verdict[0] not in (INTACT, RECOVERED):
            return verdict
        stage("check")
        _check_realm(realm)
        if mode == "ro" or verdict[0] != INTACT:
            return verdict
        stage("write")
        want = {cls: dict(rows) for cls, rows in base.expected.items()}
        with realm.write():
            realm.add(FzOwner(**PROBE_FIELDS))
            first = min(want["FzOwner"])
            obj = realm.find(FzOwner, first)
            if obj is None:
                return WRONG, f"owner {first} not found by primary key"
            obj.score = 0.25
        want["FzOwner"][PROBE_FIELDS["id"]] = owner_row(FzOwner(**PROBE_FIELDS))
        want["FzOwner"][first] = (want["FzOwner"][first][0], 0.25, *want["FzOwner"][first][2:])
        stage("read after write")
        after = dump_realm(realm)
        if after != want:
            return WRONG, "after a write: " + first_difference(after, want)
        stage("check after write")
        _check_realm(realm)
    return verdict


# ---- lock-file scenarios (each runs whole in the child) ---------------------


class LockCtx:
    """One lock-file scenario's state: the intact data file it runs on and
    the keys its writes committed (they must all be there at the end)."""

    def __init__(self, rng: random.Random, path: str, base: Base, stage: Stage) -> None:
        self.rng = rng
        self.path = path
        self.lock = path + ".lock"
        self.base = base
        self.stage = stage
        self.written: list[bytes] = []
        self.context = ""  # what was done to the lock file, for stage names

    def after(self, what: str) -> None:
        """Record what the scenario just did (shown with every later stage)."""
        self.context = what
        self.stage(what)

    def poke(self, off: int, fmt: str, value: int) -> None:
        """Overwrite bytes of the lock file (as another process could)."""
        with open(self.lock, "r+b") as f:
            f.seek(off)
            f.write(struct.pack(fmt, value))

    def verify(self, env: Environment) -> Verdict:
        """The base content plus every committed key, nothing else."""
        got = dump_env(env)
        keys = got.pop(LOCK_TABLE, {})
        lost = [k for k in self.written if k not in keys]
        if lost:
            n = len(self.written)
            return WRONG, f"{len(lost)} of {n} acknowledged commits lost (e.g. {lost[:4]})"
        verdict = compare(got, self.base, "rw")
        return verdict if verdict[0] != INTACT else (INTACT, "")

    def use(self, env: Environment, name: str) -> Verdict:
        """Read everything, then commit one key and read it back."""
        where = f"{self.context}: " if self.context else ""
        self.stage(f"{where}read ({name})")
        verdict = self.verify(env)
        if verdict[0] != INTACT:
            return verdict
        self.stage(f"{where}write ({name})")
        key = b"%s-%03d" % (name.encode(), len(self.written))
        with env.write() as txn:
            txn.put(LOCK_TABLE, key, b"v")
        self.written.append(key)
        return self.verify(env)


LOCK_TABLE = "zz-lock"


def lock_symlink(ctx: LockCtx) -> Verdict:
    """A symlink planted at <path>.lock must not be followed."""
    victim = os.path.join(os.path.dirname(ctx.path), "victim.txt")
    content = b"not a lock file\n" * 200
    with open(victim, "wb") as f:
        f.write(content)
    os.symlink(victim, ctx.lock)
    ctx.stage("open")
    try:
        with Environment(ctx.path) as env:
            return ctx.use(env, "a")
    finally:
        if _read(victim) != content:
            raise Mismatch("the symlink's target was overwritten") from None


def lock_symlink_session(ctx: LockCtx) -> Verdict:
    """A dangling symlink planted at <path>.session (object layer) must not
    be followed (O_CREAT would create its target)."""
    victim = os.path.join(os.path.dirname(ctx.path), "victim.txt")
    os.symlink(victim, ctx.path + ".session")
    ctx.stage("open")
    try:
        with Realm(Configuration.local(MODELS, path=ctx.path)) as realm:
            ctx.stage("read")
            return compare(dump_realm(realm), ctx.base, "rw")
    finally:
        if os.path.lexists(victim):
            raise Mismatch("opening followed the .session symlink and created its target") from None


def lock_garbage_stale(ctx: LockCtx) -> Verdict:
    """A lock file nobody holds, full of garbage or cut short: rebuilt."""
    size = ctx.rng.choice([0, 7, 64, LOCK_SLOTS, LOCK_SLOTS + 64 * 126, 100000])
    with open(ctx.lock, "wb") as f:
        f.write(ctx.rng.randbytes(size) if ctx.rng.random() < 0.5 else bytes(size))
    ctx.after(f"open over a stale {size}-byte lock file")
    with Environment(ctx.path) as env:
        return ctx.use(env, "a")


def lock_truncated_in_use(ctx: LockCtx) -> Verdict:
    """The lock file is truncated while this process has it open."""
    ctx.stage("open")
    with Environment(ctx.path) as env:
        verdict = ctx.use(env, "a")
        if verdict[0] != INTACT:
            return verdict
        size = ctx.rng.choice([0, 64, 200, LOCK_SLOTS, LOCK_SLOTS + 64])
        os.truncate(ctx.lock, size)
        ctx.after(f"lock file truncated to {size}")
        verdict = ctx.use(env, "a")
        if verdict[0] != INTACT:
            return verdict
        ctx.stage("second opener")
        with Environment(ctx.path) as env2:
            return ctx.use(env2, "b")


def lock_max_readers_in_use(ctx: LockCtx) -> Verdict:
    """A bad max_readers in a lock file in use: a second opener and the
    first one keep working or get a typed error."""
    ctx.stage("open")
    with Environment(ctx.path) as env:
        value = ctx.rng.choice([0, 1, 65537, 1 << 20, 0x7FFFFFFF, 0xFFFFFFFF])
        ctx.poke(LOCK_MAX_READERS, "<I", value)
        ctx.after(f"second opener with max_readers={value:#x}")
        try:
            with Environment(ctx.path) as env2:
                verdict = ctx.use(env2, "b")
                if verdict[0] != INTACT:
                    return verdict
        except StorageError:
            pass  # refusing the second opener is right; the first must go on
        ctx.stage("first opener goes on")
        return ctx.use(env, "a")


def _dead_tid() -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - exits at once
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def lock_forged_writer(ctx: LockCtx) -> Verdict:
    """The writer mutex claims to be held by a thread that is dead, or that
    is alive but no realmpy writer: writers must not wait forever."""
    ctx.stage("open")
    with Environment(ctx.path) as env:
        dead = ctx.rng.random() < 0.5
        tid = _dead_tid() if dead else os.getppid()
        # glibc's pthread_mutex_t: __lock (the futex word: the owner's tid
        # for a robust mutex) at 0, __owner at 8.
        ctx.poke(LOCK_MUTEX, "<I", tid)
        ctx.poke(LOCK_MUTEX + 8, "<I", tid)
        ctx.poke(LOCK_WRITER_TID, "<Q", tid)
        ctx.after(f"write with the mutex forged to {'dead' if dead else 'live foreign'} tid {tid}")
        return ctx.use(env, "a")


def lock_header_in_use(ctx: LockCtx) -> Verdict:
    """Garbage in a header field of a lock file in use; then a second opener."""
    ctx.stage("open")
    with Environment(ctx.path) as env:
        off = ctx.rng.choice([0, 8, 12, 16, 20])
        ctx.poke(off, "<I", ctx.rng.getrandbits(32))
        ctx.after(f"second opener, lock header bytes {off}..{off + 4} garbage")
        try:
            with Environment(ctx.path) as env2:
                verdict = ctx.use(env2, "b")
                if verdict[0] != INTACT:
                    return verdict
        except StorageError:
            pass  # refusing the second opener is right; the first must go on
        ctx.stage("first opener goes on")
        return ctx.use(env, "a")


def lock_deleted_in_use(ctx: LockCtx) -> Verdict:
    """The lock file is deleted (or moved away) while one handle has it open
    and a second handle then opens the file: both write in turns; every
    acknowledged commit must survive, or a write must be refused."""
    ctx.stage("open")
    with Environment(ctx.path) as env1:
        verdict = ctx.use(env1, "a")
        if verdict[0] != INTACT:
            return verdict
        if ctx.rng.random() < 0.5:
            os.unlink(ctx.lock)
            how = "deleted"
        else:
            os.rename(ctx.lock, ctx.lock + ".old")
            how = "moved away"
        ctx.after(f"lock file {how}; second opener")
        with Environment(ctx.path) as env2:
            for _i in range(10):
                verdict = ctx.use(env1, "a")
                if verdict[0] == INTACT:
                    verdict = ctx.use(env2, "b")
                if verdict[0] != INTACT:
                    return verdict
    ctx.stage("reopen")
    with Environment(ctx.path) as env:
        return ctx.use(env, "c")


def lock_shared_state_in_use(ctx: LockCtx) -> Verdict:
    """Garbage in the shared version, the meta ring or a reader slot while
    in use: later snapshots and writes of this and a second opener."""
    ctx.stage("open")
    with Environment(ctx.path) as env:
        rng = ctx.rng
        off = rng.choice(
            [128, 136, 192 + 64 * rng.randrange(16) + 8 * rng.randrange(8), LOCK_SLOTS]
        )
        value = rng.choice([0, 1, 1 << 40, rng.getrandbits(64)])
        ctx.poke(off, "<Q", value)
        ctx.after(f"use after lock file byte {off} := {value:#x}")
        verdict = ctx.use(env, "a")
        if verdict[0] != INTACT:
            return verdict
        with Environment(ctx.path) as env2:
            return ctx.use(env2, "b")


LockScenario = Callable[[LockCtx], Verdict]
# name -> (base file kind, scenario)
LOCK_SCENARIOS: dict[str, tuple[str, LockScenario]] = {
    "lock.symlink": ("storage", lock_symlink),
    "lock.symlink-session": ("objects", lock_symlink_session),
    "lock.garbage-stale": ("storage", lock_garbage_stale),
    "lock.truncated-in-use": ("storage", lock_truncated_in_use),
    "lock.max-readers-in-use": ("storage", lock_max_readers_in_use),
    "lock.forged-writer": ("storage", lock_forged_writer),
    "lock.header-in-use": ("storage", lock_header_in_use),
    "lock.deleted-in-use": ("storage", lock_deleted_in_use),
    "lock.shared-state-in-use": ("storage", lock_shared_state_in_use),
}


RoundBody = Callable[[Round, Base, str, Stage], Verdict]


def run_round(rnd: Round, base: Base, path: str, stage: Stage) -> Verdict:
    """What a child does with the (damaged) file at ``path``."""
    if rnd.suite == "lock":
        ctx = LockCtx(random.Random(rnd.seed * 31 + 7), path, base, stage)
        return LOCK_SCENARIOS[rnd.mutation][1](ctx)
    fn = round_objects if rnd.kind == "objects" else round_storage
    return fn(path, base, rnd.mode, stage)


def _child(body: RoundBody, rnd: Round, base: Base, path: str) -> dict[str, Any]:
    """Run a round's body in the child; its verdict as a dict."""
    stage = Stage()
    try:
        cls, detail = body(rnd, base, path, stage)
        return {"cls": cls, "stage": stage.name, "detail": detail}
    except Mismatch as exc:
        return {"cls": WRONG, "stage": stage.name, "detail": str(exc)}
    except StorageError as exc:
        return {"cls": TYPED, "stage": stage.name, "detail": str(exc), "error": type(exc).__name__}
    except RealmpyError as exc:
        # An object-layer error on a damaged file: the engine handed out
        # damaged bytes, which the decoder (or schema check) tripped over.
        detail = f"object layer raised {type(exc).__name__} on damaged data: {exc}"
        return {"cls": WRONG, "stage": stage.name, "detail": detail, "error": type(exc).__name__}
    except Exception as exc:
        tb = traceback.format_exc(limit=-4)
        return {"cls": UNTYPED, "stage": stage.name, "detail": tb, "error": type(exc).__name__}


# =============================================================================
# The parent: forks rounds, enforces the time limit, classifies
# =============================================================================


@dataclasses.dataclass
class _Running:
    rnd: Round
    what: str
    target: str
    pid: int
    pidfd: int
    pipe: int
    dir: str
    started: float


class Runner:
    """Runs rounds in forked children, ``jobs`` at a time."""

    def __init__(
        self,
        workdir: str,
        bases: dict[str, Base],
        jobs: int = 1,
        timeout: float = DEFAULT_TIMEOUT_S,
        keep: str | None = None,
        body: RoundBody = run_round,
    ) -> None:
        self.body = body
        self.workdir = workdir
        self.bases = bases
        self.jobs = max(1, jobs)
        self.timeout = timeout
        self.keep = keep
        self._slots = [os.path.join(workdir, f"slot{i}") for i in range(self.jobs)]

    def run(
        self, rounds: Sequence[Round], progress: Callable[[Outcome], None] | None = None
    ) -> list[Outcome]:
        pending = list(reversed(rounds))
        free = list(self._slots)
        running: dict[int, _Running] = {}
        out: list[Outcome] = []
        while pending or running:
            while pending and free:
                running_job = self._start(pending.pop(), free.pop())
                running[running_job.pidfd] = running_job
            now = time.monotonic()
            wait = min(r.started + self.timeout + 5 - now for r in running.values())
            ready, _, _ = select.select(list(running), [], [], max(0.0, wait))
            now = time.monotonic()
            for fd, job in list(running.items()):
                if fd in ready or now > job.started + self.timeout + 5:
                    del running[fd]
                    outcome = self._finish(job, timed_out=fd not in ready)
                    free.append(job.dir)
                    out.append(outcome)
                    if progress is not None:
                        progress(outcome)
        out.sort(key=lambda o: o.round.seed)
        return out

    def _start(self, rnd: Round, slot: str) -> _Running:
        shutil.rmtree(slot, ignore_errors=True)
        os.makedirs(slot)
        base = self.bases[rnd.kind]
        path = os.path.join(slot, "fuzz.db")
        if rnd.suite == "lock":
            data, what, target = base.data, "(intact data file)", "lock file"
        else:
            damage = damage_for(rnd, base)
            data, what, target = damage.data, damage.what, target_of(base, damage.data)
        with open(path, "wb") as f:
            f.write(data)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(r)
            self._child_main(rnd, base, path, slot, w)
        os.close(w)
        return _Running(rnd, what, target, pid, os.pidfd_open(pid), r, slot, time.monotonic())

    def _child_main(self, rnd: Round, base: Base, path: str, slot: str, w: int) -> None:
        try:
            err = os.open(os.path.join(slot, "stderr"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(err, 1)
            os.dup2(err, 2)
            errfile = open(err, "w", closefd=False)
            faulthandler.enable(file=errfile, all_threads=True)
            faulthandler.dump_traceback_later(self.timeout - 1, file=errfile)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(int(self.timeout))
            result = _child(self.body, rnd, base, path)
            result["detail"] = str(result.get("detail", ""))[:MAX_DETAIL]
            os.write(w, json.dumps(result).encode())
            code = 0
        except BaseException:
            code = 3
        os._exit(code)

    def _finish(self, job: _Running, timed_out: bool) -> Outcome:
        if timed_out:
            os.kill(job.pid, signal.SIGKILL)
        _, status = os.waitpid(job.pid, 0)
        os.close(job.pidfd)
        chunks = []
        while True:
            chunk = os.read(job.pipe, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(job.pipe)
        seconds = time.monotonic() - job.started
        outcome = Outcome(job.rnd, CRASH, what=job.what, target=job.target, seconds=seconds)
        stderr = _tail(os.path.join(job.dir, "stderr"))
        stage = last_stage(job.dir)
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig in (signal.SIGALRM, signal.SIGKILL):
                outcome.cls, outcome.detail = HANG, f"no answer in {self.timeout:.0f} s\n{stderr}"
            else:
                outcome.detail = f"{signal.Signals(sig).name}\n{stderr}"
                outcome.error = signal.Signals(sig).name
            outcome.stage = stage
        elif chunks:
            result = json.loads(b"".join(chunks))
            outcome.cls = result["cls"]
            outcome.stage = result.get("stage", "")
            outcome.detail = result.get("detail", "")
            outcome.error = result.get("error", "")
        else:
            outcome.detail = f"exit status {os.WEXITSTATUS(status)} without an answer\n{stderr}"
            outcome.stage = stage
        if not outcome.ok and self.keep:
            os.makedirs(self.keep, exist_ok=True)
            dest = os.path.join(self.keep, f"{job.rnd.seed}-{job.rnd.kind}-{job.rnd.mutation}")
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(job.dir, dest, symlinks=True)
        return outcome


def _tail(path: str, limit: int = 1500) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    lines = [ln for ln in text.splitlines() if not ln.startswith("stage: ")]
    return "\n".join(lines)[-limit:]


def last_stage(slot: str) -> str:
    try:
        with open(os.path.join(slot, "stderr"), "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    stages = [ln[len("stage: ") :] for ln in lines if ln.startswith("stage: ")]
    return stages[-1] if stages else ""


# =============================================================================
# Suites, summaries and the command line
# =============================================================================


def build_bases(workdir: str) -> dict[str, Base]:
    """Both base files, built in ``workdir`` (deterministic contents)."""
    os.makedirs(workdir, exist_ok=True)
    return {
        "objects": build_objects(os.path.join(workdir, "base-objects.realm")),
        "storage": build_storage(os.path.join(workdir, "base-storage.db")),
    }


def plan(suite: str, seed: int, rounds: int, kinds: Sequence[str], only: str = "") -> list[Round]:
    return [plan_round(seed + i, suite, kinds, only) for i in range(rounds)]


def _table(
    outcomes: Sequence[Outcome], first: str, keys: Callable[[Outcome], Sequence[str]]
) -> list[str]:
    """Markdown rows: outcome classes per key (keys in bold sort last)."""
    counts: dict[str, Counter[str]] = {}
    for o in outcomes:
        for key in keys(o):
            counts.setdefault(key, Counter())[o.cls] += 1
    used = [c for c in CLASSES if any(c in n for n in counts.values()) or c in (TYPED, INTACT)]
    rows = sorted(counts, key=lambda r: (r == "**all**", r.startswith("**"), r))
    lines = [f"| {first} | rounds | " + " | ".join(used) + " |", "|---|---:|" + "---:|" * len(used)]
    for r in rows:
        c = counts[r]
        cells = " | ".join(str(c[k] or "") for k in used)
        lines.append(f"| {r} | {sum(c.values())} | {cells} |")
    return lines


def summary(outcomes: Sequence[Outcome], title: str, seconds: float) -> str:
    """Outcome classes per mutation kind (and file kind), then per kind of
    page hit, as Markdown tables."""
    bad = sum(1 for o in outcomes if not o.ok)
    lines = [f"### {title}: {len(outcomes)} rounds, {bad} unacceptable, {seconds:.1f} s", ""]
    lines += _table(
        outcomes,
        "mutation",
        lambda o: (o.round.mutation, f"**{o.round.kind} ({o.round.mode})**", "**all**"),
    )
    if any(o.round.suite != "lock" for o in outcomes):
        lines += ["", *_table(outcomes, "page hit", lambda o: (o.target,))]
    errors = Counter(o.error for o in outcomes if o.cls == TYPED)
    if errors:
        lines += ["", "typed errors: " + ", ".join(f"{k} {v}" for k, v in errors.most_common())]
    stages = Counter(f"{o.cls} at {o.stage}" for o in outcomes if not o.ok).most_common(12)
    if stages:
        lines += ["unacceptable, by stage: " + ", ".join(f"{k}: {v}" for k, v in stages)]
    return "\n".join(lines) + "\n"


@dataclasses.dataclass
class Settings:
    """The knobs of a run, from the environment (tests) or the command line."""

    seed: int = 20261207
    rounds: int = 300
    jobs: int = 2
    timeout: float = DEFAULT_TIMEOUT_S
    keep: str | None = None
    report: str | None = None
    kinds: tuple[str, ...] = ("objects", "storage")
    mutations: str = ""  # comma-separated name prefixes; empty: all

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        kinds = tuple(k for k in env.get("REALMPY_FUZZ_KINDS", "objects,storage").split(",") if k)
        return cls(
            seed=int(env.get("REALMPY_FUZZ_SEED", cls.seed)),
            rounds=int(env.get("REALMPY_FUZZ_ROUNDS", cls.rounds)),
            jobs=int(env.get("REALMPY_FUZZ_JOBS", min(2, os.cpu_count() or 1))),
            timeout=float(env.get("REALMPY_FUZZ_TIMEOUT", DEFAULT_TIMEOUT_S)),
            keep=env.get("REALMPY_FUZZ_KEEP") or None,
            report=env.get("REALMPY_FUZZ_REPORT") or None,
            kinds=kinds,
            mutations=env.get("REALMPY_FUZZ_MUTATIONS", ""),
        )


def run_suite(
    suite: str,
    settings: Settings,
    workdir: str,
    bases: dict[str, Base],
    rounds: int | None = None,
    progress: Callable[[Outcome], None] | None = None,
) -> tuple[list[Outcome], str]:
    """Run ``rounds`` rounds of ``suite``; (outcomes, summary table)."""
    n = settings.rounds if rounds is None else rounds
    kinds = settings.kinds
    if suite == "recover":
        ok = supports_recover()
        kinds = tuple(k for k in kinds if ok[k])
    todo = plan(suite, settings.seed, n, kinds, settings.mutations)
    runner = Runner(workdir, bases, settings.jobs, settings.timeout, settings.keep)
    start = time.monotonic()
    outcomes = runner.run(todo, progress)
    seconds = time.monotonic() - start
    title = f"{suite} suite, seed {settings.seed}, kinds {','.join(kinds)}"
    table = summary(outcomes, title, seconds)
    if settings.report:
        with open(settings.report, "a") as f:
            f.write(table + "\n")
    return outcomes, table


def failure_report(outcomes: Sequence[Outcome], limit: int = 25) -> str:
    bad = [o for o in outcomes if not o.ok]
    lines = [f"{len(bad)} of {len(outcomes)} rounds were neither a typed error nor intact:"]
    for o in bad[:limit]:
        lines.append("- " + o.line().replace("\n", "\n    "))
        lines.append(f"    replay: {o.round.replay()}")
    if len(bad) > limit:
        lines.append(f"... and {len(bad) - limit} more (REALMPY_FUZZ_REPORT / the summary has all)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    defaults = Settings.from_env()
    parser.add_argument("--suite", choices=["data", "recover", "lock"], action="append")
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--jobs", type=int, default=defaults.jobs)
    parser.add_argument("--timeout", type=float, default=defaults.timeout)
    parser.add_argument("--kinds", default=",".join(defaults.kinds))
    parser.add_argument(
        "--mutations", default=defaults.mutations, help="name prefixes, e.g. meta.,header.npages"
    )
    parser.add_argument(
        "--keep", default=defaults.keep, help="copy unacceptable rounds' files here"
    )
    parser.add_argument("--report", default=defaults.report, help="append the summary tables here")
    parser.add_argument("--failures", help="write every unacceptable round here (one per line)")
    parser.add_argument("--workdir", help="scratch directory (default: a new temporary one)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print unacceptable rounds")
    args = parser.parse_args(argv)
    settings = Settings(
        args.seed,
        args.rounds,
        args.jobs,
        args.timeout,
        args.keep,
        args.report,
        tuple(k for k in args.kinds.split(",") if k),
        args.mutations,
    )
    workdir = args.workdir or tempfile.mkdtemp(prefix="realmpy-fuzz-")
    bases = build_bases(os.path.join(workdir, "bases"))
    status = 0
    for suite in args.suite or ["data"]:
        if suite == "recover" and not any(supports_recover()[k] for k in settings.kinds):
            print("recover suite skipped: this realmpy has no recover=True")
            continue
        outcomes, table = run_suite(suite, settings, workdir, bases)
        print(table)
        bad = [o for o in outcomes if not o.ok]
        if bad:
            status = 1
            if args.verbose:
                print(failure_report(outcomes, limit=len(bad)))
            if args.failures:
                with open(args.failures, "a") as f:
                    for o in bad:
                        f.write(f"[{suite}] {o.line()}\n")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
