"""The files the file fuzz damages, and what they must read back as.

Two kinds of base file, each built deterministically with eight commits of
history: an object-layer realm (``build_objects``: owners and pets with every
kind of field, links both ways, embedded objects, two indexes, large values
in overflow runs) and a raw storage file (``build_storage``: four tables,
small to 30 KB values, deletes and a dropped table, so free pages).  The
readers (``dump_realm``, ``dump_env``) read everything several ways and raise
:class:`Mismatch` when the ways disagree; their result after each commit is
what a damaged copy is compared with (``compare``).  ``PageMap`` says what
each page of a base file is (format.h), so damage can be aimed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import random
import struct
from typing import Any

from realmpy.config import Configuration
from realmpy.realm import Realm
from realmpy.schema import EmbeddedObject, Object, field
from realmpy.storage import Environment

PAGE = 4096
SECTOR = 512
HEADER = struct.Struct("<IHHQQHHI")  # format.h: the 32-byte page header
META_BODY = struct.Struct("<8sIIQQQQQQ")  # format.h: meta page body after the header
P_BRANCH, P_LEAF, P_OVERFLOW, P_FREELIST, P_META = 0x01, 0x02, 0x04, 0x08, 0x10
E_BIG = 0x01
SLOT = 6  # format.h: a slot is a 4-byte key head and a 2-byte entry offset


def leaf_entry(data: bytes, e: int) -> tuple[bytes, int, int]:
    """(key, vtag, offset of the value or overflow ref) of the leaf entry at
    e (format.h, "Leaf entry": klen in 1 or 2 bytes, key, varint vtag)."""
    if data[e] & 0x80:
        klen, e = ((data[e] & 0x7F) << 8) | data[e + 1], e + 2
    else:
        klen, e = data[e], e + 1
    key, e = data[e : e + klen], e + klen
    vtag = shift = 0
    while True:
        vtag |= (data[e] & 0x7F) << shift
        shift += 7
        e += 1
        if not data[e - 1] & 0x80:
            return key, vtag, e


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

Dump = dict[str, dict[Any, Any]]


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
            if snap.get_many(table, keys[1::3]) != [v for _, v in fwd[1::3]]:
                raise Mismatch(f"table {table!r}: get_many() disagrees with a scan")
            if keys:
                mid = keys[len(keys) // 2]
                if list(snap.scan(table, start=mid)) != fwd[len(keys) // 2 :]:
                    raise Mismatch(f"table {table!r}: a scan from {mid!r} disagrees")
            out[table] = rows
    return out


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


def read(path: str) -> bytes:
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
            images.append(read(path))
            dumps.append(dump_env(env))
    data = read(path)
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
        images.append(read(path))
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
            images.append(read(path))
            dumps.append(dump_realm(realm))
    data = read(path)
    return Base("objects", data, images[-2], dumps, PageMap.parse(data))


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
            off = struct.unpack_from("<H", data, base + 32 + SLOT * i + 4)[0]
            e = base + off
            if not leaf:
                child = struct.unpack_from("<Q", data, e + 8)[0]
                self.walk(data, child, table, catalog)
                continue
            key, vtag, val = leaf_entry(data, e)
            vlen = vtag >> 1
            if vtag & E_BIG:
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


Verdict = tuple[str, str]  # (class, detail)


def build_bases(workdir: str) -> dict[str, Base]:
    """Both base files, built in ``workdir`` (deterministic contents)."""
    os.makedirs(workdir, exist_ok=True)
    return {
        "objects": build_objects(os.path.join(workdir, "base-objects.realm")),
        "storage": build_storage(os.path.join(workdir, "base-storage.db")),
    }
