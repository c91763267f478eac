/*
 * msgpack.h -- the msgpack forms realmpy reads and writes in C, header only.
 *
 * One home for the byte-level knowledge of msgpack (https://msgpack.org/,
 * "spec.md") that the engine and the native module both need:
 *
 *   filter.c            steps over the fields of a record to reach the one
 *                       a filter program compares (rp_mp_skip)
 *   btree.c, txn.c      write the batches of rp_cursor_batch / rp_get_many
 *                       (rp_mp_put_bin_header, rp_mp_put_array32)
 *   csrc/py/record.c    the lazy Record: finds each field's extent once
 *                       (rp_mp_skip) and decodes scalars (rp_mp_be*)
 *   csrc/py/bulk.c      packs rows (rp_mp_put_be)
 *
 * Reading is bounds-checked: every reader takes the end of the buffer and
 * answers NULL (or a short count) rather than read past it, since a record
 * comes from disk and may be damaged.  Nothing here allocates or reports
 * errors: callers turn NULL into RP_CORRUPT or a Python exception with
 * their own context.
 *
 * Header only (static inline): the engine and the Python extension are
 * separate shared objects, and the hot loops want these inlined.
 */
#ifndef REALMPY_MSGPACK_H
#define REALMPY_MSGPACK_H

#include <stddef.h>
#include <stdint.h>

/* ---- tags (the first byte of an object) ------------------------------------- */

#define RP_MP_POSFIXINT_MAX 0x7f   /* 0x00..0x7f: the int itself            */
#define RP_MP_FIXMAP        0x80   /* 0x80..0x8f: map of (tag & 0x0f) pairs */
#define RP_MP_FIXARRAY      0x90   /* 0x90..0x9f: array of (tag & 0x0f)     */
#define RP_MP_FIXSTR        0xa0   /* 0xa0..0xbf: str of (tag & 0x1f) bytes */
#define RP_MP_NIL           0xc0
#define RP_MP_NEVER_USED    0xc1
#define RP_MP_FALSE         0xc2
#define RP_MP_TRUE          0xc3
#define RP_MP_BIN8          0xc4
#define RP_MP_BIN16         0xc5
#define RP_MP_BIN32         0xc6
#define RP_MP_ARRAY16       0xdc
#define RP_MP_ARRAY32       0xdd
#define RP_MP_NEGFIXINT     0xe0   /* 0xe0..0xff: the int (int8_t)tag       */

/* Bytes after the tag that every object of tags 0xc0..0xdf has, whatever
 * its value: the fixed-width body of scalars and fixext, the length field
 * of str/bin/ext (ext: plus its type byte), the count of array/map.
 * (A function, not a table at file scope: unused in some includers.) */
static inline unsigned rp_mp_after_tag(unsigned tag) {
    static const uint8_t after[32] = {
        0, 0, 0, 0, 1, 2, 4, 2, 3, 5, 4, 8, 1, 2, 4, 8,   /* 0xc0..0xcf */
        1, 2, 4, 8, 2, 3, 5, 9, 17, 1, 2, 4, 2, 4, 2, 4,  /* 0xd0..0xdf */
    };
    return after[tag - RP_MP_NIL];
}

/* ---- big-endian fields -------------------------------------------------------- */

static inline uint16_t rp_mp_be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t rp_mp_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t rp_mp_be64(const uint8_t *p) {
    return ((uint64_t)rp_mp_be32(p) << 32) | rp_mp_be32(p + 4);
}
/* An unsigned big-endian field of w bytes (w <= 8). */
static inline uint64_t rp_mp_be(const uint8_t *p, unsigned w) {
    uint64_t v = 0;
    for (unsigned i = 0; i < w; i++) v = (v << 8) | p[i];
    return v;
}

/* ---- arrays ---------------------------------------------------------------------- */

/* Past the header of the array at p (fixarray, array 16 or array 32), its
 * item count in *count; NULL if p does not start one that fits before e.
 * The items themselves are not checked. */
static inline const uint8_t *rp_mp_array(const uint8_t *p, const uint8_t *e, uint64_t *count) {
    unsigned c = p < e ? *p : 0;
    if (c >= RP_MP_FIXARRAY && c < RP_MP_FIXSTR) {
        *count = c & 0x0f;
        return p + 1;
    }
    if (c == RP_MP_ARRAY16 && e - p >= 3) {
        *count = rp_mp_be16(p + 1);
        return p + 3;
    }
    if (c == RP_MP_ARRAY32 && e - p >= 5) {
        *count = rp_mp_be32(p + 1);
        return p + 5;
    }
    return NULL;
}

/* ---- skipping ------------------------------------------------------------------- */

/* Past one msgpack object at p, nested ones included, or NULL if it is
 * malformed (0xc1) or runs past e.  Iterative (a count of objects still
 * owed), so nesting costs no stack; every object takes at least one byte,
 * so a count larger than the bytes left is malformed at once. */
static inline const uint8_t *rp_mp_skip_any(const uint8_t *p, const uint8_t *e) {
    uint64_t owed = 1;
    while (owed) {
        if (p >= e || owed > (uint64_t)(e - p)) return NULL;
        owed--;
        unsigned c = *p++;
        size_t avail = (size_t)(e - p);
        uint64_t body = 0, items = 0;
        if (c <= RP_MP_POSFIXINT_MAX || c >= RP_MP_NEGFIXINT) continue;
        if (c < RP_MP_FIXARRAY) {
            items = 2 * (uint64_t)(c & 0x0f);
        } else if (c < RP_MP_FIXSTR) {
            items = c & 0x0f;
        } else if (c < RP_MP_NIL) {
            body = c & 0x1f;
        } else if (c == RP_MP_NEVER_USED) {
            return NULL;
        } else {
            unsigned w = rp_mp_after_tag(c);
            if (avail < w) return NULL;
            body = w;
            switch (c) {
            case 0xc4: case 0xc5: case 0xc6:   /* bin 8/16/32: length */
            case 0xd9: case 0xda: case 0xdb:   /* str 8/16/32          */
                body += rp_mp_be(p, w);
                break;
            case 0xc7: case 0xc8: case 0xc9:   /* ext 8/16/32: length, type */
                body += rp_mp_be(p, w - 1);
                break;
            case 0xdc: case 0xdd:              /* array 16/32: count   */
                items = rp_mp_be(p, w);
                break;
            case 0xde: case 0xdf:              /* map 16/32: pairs     */
                items = 2 * rp_mp_be(p, w);
                break;
            default:                           /* fixed-size scalars   */
                break;
            }
        }
        if (body > avail) return NULL;
        p += body;
        owed += items;
    }
    return p;
}

/* rp_mp_skip_any with the scalars records are mostly made of (ints, nil,
 * bools, short strings, doubles) stepped over inline: a record's fields
 * are skipped one at a time, once each. */
static inline const uint8_t *rp_mp_skip(const uint8_t *p, const uint8_t *e) {
    if (p >= e) return NULL;
    unsigned c = *p;
    size_t avail = (size_t)(e - p) - 1, body;
    if (c <= RP_MP_POSFIXINT_MAX || c >= RP_MP_NEGFIXINT || c == RP_MP_NIL
        || c == RP_MP_FALSE || c == RP_MP_TRUE)
        return p + 1;
    if (c >= RP_MP_FIXSTR && c < RP_MP_NIL) body = c & 0x1f;
    else if (c == 0xcb || c == 0xcf || c == 0xd3) body = 8;   /* float64, (u)int64 */
    else if (c == 0xcd || c == 0xd1) body = 2;                /* (u)int16         */
    else if (c == 0xce || c == 0xd2) body = 4;                /* (u)int32         */
    else return rp_mp_skip_any(p, e);
    return body <= avail ? p + 1 + body : NULL;
}

/* ---- writing (the caller has made room) ---------------------------------------- */

/* The low w bytes of v, big-endian, at o (w <= 8). */
static inline void rp_mp_put_be(uint8_t *o, uint64_t v, unsigned w) {
    for (unsigned i = 0; i < w; i++) o[i] = (uint8_t)(v >> (8 * (w - 1 - i)));
}

/* Size of the bin header for len bytes: bin 8, 16 or 32. */
static inline size_t rp_mp_bin_size(size_t len) { return len < 256 ? 2 : len < 65536 ? 3 : 5; }

/* The bin header for len bytes at o; returns its size (rp_mp_bin_size). */
static inline size_t rp_mp_put_bin_header(uint8_t *o, size_t len) {
    size_t w = rp_mp_bin_size(len) - 1;
    o[0] = w == 1 ? RP_MP_BIN8 : w == 2 ? RP_MP_BIN16 : RP_MP_BIN32;
    rp_mp_put_be(o + 1, len, (unsigned)w);
    return 1 + w;
}

#define RP_MP_ARRAY32_SIZE 5   /* array 32: the tag + a big-endian u32 count */

/* An array 32 header of items at o (RP_MP_ARRAY32_SIZE bytes): a batch
 * reserves it before it knows its count. */
static inline void rp_mp_put_array32(uint8_t *o, uint32_t items) {
    o[0] = RP_MP_ARRAY32;
    rp_mp_put_be(o + 1, items, 4);
}

#endif
