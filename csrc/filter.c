/*
 * filter.c -- filter programs: simple predicates evaluated on msgpack
 * records inside the engine (rp_filter_eval, rp_cursor_filter).
 *
 * Why in the engine: a query over a table of msgpack records otherwise has
 * to decode every record in the binding's language to reject 99% of them.
 * Deciding "field 3 >= 40" needs only a walk over the record's bytes.
 *
 * The program format is documented in realmpy.h (FILTER PROGRAMS).  A
 * program is parsed and checked once per call (rp_filter_parse) into a
 * fixed array of instructions, then run on each record (rp_filter_run).
 * Every read of a record is bounds-checked: a record comes from disk and
 * may be damaged; what is malformed is RP_CORRUPT, never a wild read.
 *
 * Verdicts are three-valued (Kleene logic): a comparison whose field holds
 * something the engine does not compare (an array, a map, an extension type)
 * is UNKNOWN, and the caller re-checks such records itself.
 */
#include <assert.h>
#include <math.h>

#include "internal.h"
#include "msgpack.h"

/* ---- msgpack reading (the byte forms: msgpack.h) ----------------------------- */

/* Length of an str/bin/ext payload, given in w big-endian bytes at p[1]. */
static int sized(const uint8_t *p, size_t avail, unsigned w, unsigned extra,
                 rp_fval *v, size_t *size, uint8_t cls) {
    if (avail < 1 + (size_t)w) return RP_CORRUPT;
    uint64_t len = rp_mp_be(p + 1, w);
    uint64_t hdr = 1 + (uint64_t)w + extra;
    if (hdr > avail || len > avail - hdr) return RP_CORRUPT;
    v->cls = cls;
    v->s = p + hdr;
    v->len = (size_t)len;
    *size = (size_t)(hdr + len);
    return RP_OK;
}

/* Decode the integer of w bytes at p as (neg, magnitude); sign: two's
 * complement of width w. */
static void int_at(const uint8_t *p, unsigned w, int sign, rp_fval *v) {
    uint64_t u = rp_mp_be(p, w);
    v->cls = RP_FV_INT;
    v->neg = 0;
    v->mag = u;
    if (sign && (u >> (8 * w - 1)) & 1) {
        v->neg = 1;
        v->mag = w == 8 ? 0 - u : (UINT64_C(1) << (8 * w)) - u;
    }
}

/* Read the msgpack object at p (avail bytes available, > 0): its class and
 * value into *v, the bytes of its header and payload into *size, and the
 * number of objects nested in it that follow (array items, map keys and
 * values) into *children.  RP_CORRUPT if it does not fit or is not
 * msgpack (0xc1). */
int rp_mp_read(const uint8_t *p, size_t avail, rp_fval *v, size_t *size,
               uint64_t *children) {
    assert(p && v && size && children);
    if (avail == 0) return RP_CORRUPT;
    uint8_t b = p[0];
    *children = 0;
    v->cls = RP_FV_OTHER;
    if (b <= 0x7f) { v->cls = RP_FV_INT; v->neg = 0; v->mag = b; *size = 1; return RP_OK; }
    if (b >= 0xe0) { v->cls = RP_FV_INT; v->neg = 1; v->mag = 256u - b; *size = 1; return RP_OK; }
    if (b <= 0x8f) { *children = 2u * (b & 0x0fu); *size = 1; return RP_OK; }
    if (b <= 0x9f) { *children = b & 0x0fu; *size = 1; return RP_OK; }
    if (b <= 0xbf) {
        size_t len = b & 0x1fu;
        if (len > avail - 1) return RP_CORRUPT;
        v->cls = RP_FV_STR; v->s = p + 1; v->len = len; *size = 1 + len;
        return RP_OK;
    }
    if (b == RP_MP_NEVER_USED) return RP_CORRUPT;
    unsigned w = rp_mp_after_tag(b);   /* length, count or body after b */
    if (avail < 1 + (size_t)w) return RP_CORRUPT;
    switch (b) {
    case 0xc0: v->cls = RP_FV_NIL; *size = 1; return RP_OK;
    case 0xc2: case 0xc3:
        v->cls = RP_FV_BOOL; v->neg = 0; v->mag = b == 0xc3; *size = 1;
        return RP_OK;
    case 0xc4: return sized(p, avail, 1, 0, v, size, RP_FV_BIN);
    case 0xc5: return sized(p, avail, 2, 0, v, size, RP_FV_BIN);
    case 0xc6: return sized(p, avail, 4, 0, v, size, RP_FV_BIN);
    case 0xc7: return sized(p, avail, 1, 1, v, size, RP_FV_OTHER);  /* ext */
    case 0xc8: return sized(p, avail, 2, 1, v, size, RP_FV_OTHER);
    case 0xc9: return sized(p, avail, 4, 1, v, size, RP_FV_OTHER);
    case 0xca: {
        uint32_t u = (uint32_t)rp_mp_be(p + 1, 4);
        float f;
        memcpy(&f, &u, 4);
        v->cls = RP_FV_FLOAT; v->d = f; *size = 5;
        return RP_OK;
    }
    case 0xcb: {
        uint64_t u = rp_mp_be(p + 1, 8);
        memcpy(&v->d, &u, 8);
        v->cls = RP_FV_FLOAT; *size = 9;
        return RP_OK;
    }
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
        int_at(p + 1, w, 0, v); *size = 1 + w;
        return RP_OK;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3:
        int_at(p + 1, w, 1, v); *size = 1 + w;
        return RP_OK;
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:   /* fixext */
        *size = 1 + (size_t)w;
        return RP_OK;
    case 0xd9: return sized(p, avail, 1, 0, v, size, RP_FV_STR);
    case 0xda: return sized(p, avail, 2, 0, v, size, RP_FV_STR);
    case 0xdb: return sized(p, avail, 4, 0, v, size, RP_FV_STR);
    case 0xdc: case 0xdd:
        *children = rp_mp_be(p + 1, w); *size = 1 + w;
        return RP_OK;
    default:   /* 0xde, 0xdf: maps */
        *children = 2 * rp_mp_be(p + 1, w); *size = 1 + w;
        return RP_OK;
    }
}

/* Skip one whole msgpack object (with everything nested in it) starting at
 * *pos in rec[0..len). */
static int mp_skip(const uint8_t *rec, size_t len, size_t *pos) {
    const uint8_t *end = rp_mp_skip(rec + *pos, rec + len);
    if (!end) return RP_CORRUPT;
    *pos = (size_t)(end - rec);
    return RP_OK;
}

/* ---- comparisons --------------------------------------------------------- */

static int int_cmp(int an, uint64_t am, int bn, uint64_t bm) {
    if (an != bn) return an ? -1 : 1;
    if (am == bm) return 0;
    return (am < bm) != (an != 0) ? -1 : 1;
}

/* Exact comparison of an integer with a double, as Python compares int and
 * float: -1, 0, 1, or 2 if unordered (NaN).  No rounding of the integer to
 * double: the double's integer part (exact, since |d| < 2^64 here) is
 * compared as an integer, then its fraction breaks the tie. */
static int int_dbl_cmp(int neg, uint64_t mag, double d) {
    if (isnan(d)) return 2;
    if (d >= 18446744073709551616.0) return -1;          /* >= 2^64, +inf  */
    if (d < -9223372036854775808.0) return 1;            /* < -2^63, -inf  */
    int tn;
    uint64_t tm;
    double frac;
    if (d >= 0) {
        tm = (uint64_t)d;
        tn = 0;
        frac = d - (double)tm;
    } else {
        int64_t t = (int64_t)d;                          /* toward zero    */
        tn = t < 0;
        tm = tn ? 0 - (uint64_t)t : 0;
        frac = d - (double)t;
    }
    int c = int_cmp(neg, mag, tn, tm);
    if (c) return c;
    return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

static int is_num(const rp_fval *v) { return v->cls == RP_FV_INT || v->cls == RP_FV_FLOAT; }

/* Numbers x and c: -1, 0, 1, or 2 if unordered. */
static int num_cmp(const rp_fval *x, const rp_fval *c) {
    if (x->cls == RP_FV_INT && c->cls == RP_FV_INT) return int_cmp(x->neg, x->mag, c->neg, c->mag);
    if (x->cls == RP_FV_INT) return int_dbl_cmp(x->neg, x->mag, c->d);
    if (c->cls == RP_FV_INT) {
        int r = int_dbl_cmp(c->neg, c->mag, x->d);
        return r == 2 ? 2 : -r;
    }
    if (isnan(x->d) || isnan(c->d)) return 2;
    return x->d < c->d ? -1 : x->d > c->d ? 1 : 0;
}

/* Byte strings in memcmp order (for UTF-8: code point order). */
static int bytes_cmp(const rp_fval *x, const rp_fval *c) {
    size_t n = x->len < c->len ? x->len : c->len;
    int r = n ? memcmp(x->s, c->s, n) : 0;
    if (r) return r < 0 ? -1 : 1;
    return x->len < c->len ? -1 : x->len > c->len ? 1 : 0;
}

/* x op c for a scalar x (not RP_FV_OTHER), with the query language's rules:
 * null equals only null and is not ordered against a value (so null <= null
 * and null >= null hold, as in Realm, and null < 5 does not); a bool equals and orders only
 * against bools (true is not 1); ints and floats compare exactly; strings
 * and byte strings compare only with their own kind; other mixes are
 * unequal and unordered. */
static int compare(int op, const rp_fval *x, const rp_fval *c) {
    assert(x->cls != RP_FV_OTHER && c->cls != RP_FV_OTHER);
    int r;   /* -1, 0, 1; 2: unordered or incomparable */
    if (x->cls == RP_FV_NIL || c->cls == RP_FV_NIL) {
        r = x->cls == c->cls ? 0 : 2;
    } else if (x->cls == RP_FV_BOOL || c->cls == RP_FV_BOOL) {
        r = x->cls != c->cls ? 2 : int_cmp(0, x->mag, 0, c->mag);
    } else if (is_num(x) && is_num(c)) {
        r = num_cmp(x, c);
    } else if (x->cls == c->cls) {
        r = bytes_cmp(x, c);
    } else {
        r = 2;
    }
    switch (op) {
    case RP_FOP_EQ: return r == 0;
    case RP_FOP_NE: return r != 0;
    case RP_FOP_LT: return r == -1;
    case RP_FOP_LE: return r == -1 || r == 0;
    case RP_FOP_GT: return r == 1;
    default:        return r == 0 || r == 1;   /* RP_FOP_GE */
    }
}

/* ---- programs --------------------------------------------------------------- */

int rp_filter_parse(rp_filter *f, const void *prog, size_t len) {
    assert(f);
    if (!prog || len == 0) return RP_INVALID;
    const uint8_t *p = prog;
    size_t pos = 0;
    unsigned depth = 0;
    f->nops = 0;
    f->max_field = 0;
    f->has_cmp = 0;
    while (pos < len) {
        if (f->nops == RP_FILTER_MAX_OPS) return RP_INVALID;
        rp_fop *op = &f->ops[f->nops++];
        op->code = p[pos++];
        switch (op->code) {
        case RP_FILTER_CMP: {
            if (len - pos < 4) return RP_INVALID;
            op->op = p[pos];
            op->missing = p[pos + 1];
            op->field = (uint16_t)(p[pos + 2] | (p[pos + 3] << 8));
            pos += 4;
            if (op->op > RP_FOP_GE || op->missing > RP_FILTER_UNKNOWN) return RP_INVALID;
            if (op->field >= RP_FILTER_MAX_FIELDS) return RP_INVALID;
            size_t size;
            uint64_t children;
            if (rp_mp_read(p + pos, len - pos, &op->c, &size, &children)) return RP_INVALID;
            if (op->c.cls == RP_FV_OTHER) return RP_INVALID;
            pos += size;
            if (op->field > f->max_field) f->max_field = op->field;
            f->has_cmp = 1;
            if (++depth > RP_FILTER_MAX_DEPTH) return RP_INVALID;
            break;
        }
        case RP_FILTER_PUSH:
            if (pos == len || p[pos] > RP_FILTER_UNKNOWN) return RP_INVALID;
            op->missing = p[pos++];
            if (++depth > RP_FILTER_MAX_DEPTH) return RP_INVALID;
            break;
        case RP_FILTER_AND:
        case RP_FILTER_OR:
            if (depth < 2) return RP_INVALID;
            depth--;
            break;
        case RP_FILTER_NOT:
            if (depth < 1) return RP_INVALID;
            break;
        default:
            return RP_INVALID;
        }
    }
    return depth == 1 ? RP_OK : RP_INVALID;
}

/* Kleene logic on FALSE 0, TRUE 1, UNKNOWN 2. */
static uint8_t k_and(uint8_t a, uint8_t b) {
    if (a == RP_FILTER_FALSE || b == RP_FILTER_FALSE) return RP_FILTER_FALSE;
    return a == RP_FILTER_TRUE && b == RP_FILTER_TRUE ? RP_FILTER_TRUE : RP_FILTER_UNKNOWN;
}
static uint8_t k_or(uint8_t a, uint8_t b) {
    if (a == RP_FILTER_TRUE || b == RP_FILTER_TRUE) return RP_FILTER_TRUE;
    return a == RP_FILTER_FALSE && b == RP_FILTER_FALSE ? RP_FILTER_FALSE : RP_FILTER_UNKNOWN;
}

int rp_filter_run(const rp_filter *f, const uint8_t *rec, size_t len, int *verdict) {
    assert(f && verdict && f->nops > 0);
    assert(rec || len == 0);
    *verdict = RP_FILTER_UNKNOWN;
    /* Not an array (an empty value, a damaged or foreign record): the
     * caller decides; its own decoder reports what is wrong. */
    if (len == 0) return RP_OK;
    uint8_t b = rec[0];
    if (!((b >= 0x90 && b <= 0x9f) || b == 0xdc || b == 0xdd)) return RP_OK;
    rp_fval hv;
    size_t hsize;
    uint64_t count;
    int rc = rp_mp_read(rec, len, &hv, &hsize, &count);
    if (rc) return rc;
    if (count > len - hsize) return RP_CORRUPT;
    /* Start offsets of fields 0..known-1, found as the program asks. */
    size_t offs[RP_FILTER_MAX_FIELDS + 1];
    unsigned known = 0;
    offs[0] = hsize;
    /* Programs often compare one field twice (a range): read it once. */
    rp_fval x;
    unsigned x_field = RP_FILTER_MAX_FIELDS;   /* none read yet */
    uint8_t stack[RP_FILTER_MAX_DEPTH];
    unsigned sp = 0;
    for (unsigned i = 0; i < f->nops; i++) {
        const rp_fop *op = &f->ops[i];
        switch (op->code) {
        case RP_FILTER_CMP: {
            assert(sp < RP_FILTER_MAX_DEPTH);
            if (op->field >= count) {   /* record older than the field */
                stack[sp++] = op->missing;
                break;
            }
            if (op->field != x_field) {
                while (known < op->field) {
                    size_t at = offs[known];
                    rc = mp_skip(rec, len, &at);
                    if (rc) return rc;
                    offs[++known] = at;
                }
                size_t size;
                uint64_t children;
                rc = rp_mp_read(rec + offs[op->field], len - offs[op->field], &x, &size,
                                &children);
                if (rc) return rc;
                x_field = op->field;
            }
            stack[sp++] = x.cls == RP_FV_OTHER ? RP_FILTER_UNKNOWN
                                               : (uint8_t)compare(op->op, &x, &op->c);
            break;
        }
        case RP_FILTER_PUSH:
            assert(sp < RP_FILTER_MAX_DEPTH);
            stack[sp++] = op->missing;
            break;
        case RP_FILTER_AND:
            assert(sp >= 2);
            sp--;
            stack[sp - 1] = k_and(stack[sp - 1], stack[sp]);
            break;
        case RP_FILTER_OR:
            assert(sp >= 2);
            sp--;
            stack[sp - 1] = k_or(stack[sp - 1], stack[sp]);
            break;
        default:   /* RP_FILTER_NOT */
            assert(op->code == RP_FILTER_NOT && sp >= 1);
            if (stack[sp - 1] != RP_FILTER_UNKNOWN) stack[sp - 1] ^= 1;
            break;
        }
    }
    assert(sp == 1);
    *verdict = stack[0];
    return RP_OK;
}

int rp_filter_eval(const void *prog, size_t proglen, const void *rec,
                   size_t reclen, int *verdict) {
    if (!verdict || (!rec && reclen)) return RP_INVALID;
    rp_filter f;
    int rc = rp_filter_parse(&f, prog, proglen);
    if (rc) return rc;
    rc = rp_filter_run(&f, rec, reclen, verdict);
    return rc == RP_CORRUPT ? rp_corruptf("the record is not valid msgpack") : rc;
}
