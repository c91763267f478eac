"""Mutations of a data file, aimed with the page map (format.h).

Each mutation takes a generator and an intact ``Base`` and returns the
damaged bytes with a description naming the page(s) hit: bit flips, zeroed
or random sectors and pages, page-header fields set to boundary values,
truncations, swapped and duplicated pages, appended bytes, damage to one or
both meta pages, and lost writes (a sector the last commit wrote reverted to
its previous content).
"""

from __future__ import annotations

import dataclasses
import random
import struct
from collections.abc import Callable

from tests.storage.fuzz_corpus import (
    P_BRANCH,
    P_FREELIST,
    P_LEAF,
    P_META,
    P_OVERFLOW,
    PAGE,
    SECTOR,
    Base,
)

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


def _flip_one(rng: random.Random, base: Base, pg: int, span: int) -> tuple[bytes, str]:
    """One random bit among the first ``span`` bytes of page ``pg``."""
    buf = bytearray(base.data)
    off = rng.randrange(span)
    bit = rng.randrange(8)
    _flip(buf, pg * PAGE + off, bit)
    return bytes(buf), f"bit {bit} of byte {off}"


def m_bitflip(rng: random.Random, base: Base) -> Damage:
    pg = pick_page(rng, base)
    data, what = _flip_one(rng, base, pg, PAGE)
    return Damage(data, f"{what} in {base.pages.describe(pg)}")


def m_bitflip_header(rng: random.Random, base: Base) -> Damage:
    pg = pick_page(rng, base, headered=True)
    data, what = _flip_one(rng, base, pg, 32)
    return Damage(data, f"{what} (header) in {base.pages.describe(pg)}")


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
    # Not 0 bytes: an empty file is a new database by design (as in SQLite;
    # a crash before the first meta write leaves one), so it opens empty.
    size = rng.choice([1, 40, PAGE - 1, PAGE, PAGE + 64, 2 * PAGE - 1, 2 * PAGE, 3 * PAGE])
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
    slot = _meta_slot(base, True)
    data, what = _flip_one(rng, base, slot, 128)  # the checksummed region
    return Damage(data, f"{what} of the newest meta (page {slot})")


def m_meta_older_bit(rng: random.Random, base: Base) -> Damage:
    slot = _meta_slot(base, False)
    data, what = _flip_one(rng, base, slot, 128)
    return Damage(data, f"{what} of the older meta (page {slot})")


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
