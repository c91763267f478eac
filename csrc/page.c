/*
 * page.c -- checksums and slotted-page primitives.
 *
 * A branch or leaf page keeps a sorted array of u16 slot offsets right after
 * the header and packs entries from the end of the page downwards (format.h).
 * Inserting or removing moves at most one page's worth of bytes.
 */
#include "tree.h"

/* ---- checksum ---------------------------------------------------------------
 * A 64-bit multiply-rotate hash over 8-byte words in four independent lanes
 * (so the multiplies pipeline), folded to 32 bits.  It is not cryptographic:
 * it detects torn and stale pages, bit rot and misdirected writes.  Four
 * lanes hash a 4 KiB page in a few hundred nanoseconds. */
#define H_P1 0x9E3779B185EBCA87ULL
#define H_P2 0xC2B2AE3D27D4EB4FULL
#define H_P3 0x165667B19E3779F9ULL

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t h_round(uint64_t acc, uint64_t w) {
    acc += w * H_P2;
    acc = rotl64(acc, 31);
    return acc * H_P1;
}

uint32_t rp_hash32(const void *data, size_t len, uint32_t seed) {
    const uint8_t *p = data, *end = p + len;
    uint64_t h;
    if (len >= 32) {
        uint64_t v1 = seed + H_P1 + H_P2, v2 = seed + H_P2, v3 = seed,
                 v4 = seed - H_P1;
        const uint8_t *limit = end - 32;
        do {
            v1 = h_round(v1, rp_rd64(p));
            v2 = h_round(v2, rp_rd64(p + 8));
            v3 = h_round(v3, rp_rd64(p + 16));
            v4 = h_round(v4, rp_rd64(p + 24));
            p += 32;
        } while (p <= limit);
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
        h = (h ^ h_round(0, v1)) * H_P1 + H_P3;
        h = (h ^ h_round(0, v2)) * H_P1 + H_P3;
        h = (h ^ h_round(0, v3)) * H_P1 + H_P3;
        h = (h ^ h_round(0, v4)) * H_P1 + H_P3;
    } else {
        h = seed + H_P3;
    }
    h += (uint64_t)len;
    for (; p + 8 <= end; p += 8) h = rotl64(h ^ h_round(0, rp_rd64(p)), 27) * H_P1 + H_P3;
    for (; p < end; p++) h = rotl64(h ^ (*p * H_P3), 11) * H_P1;
    h ^= h >> 33;
    h *= H_P2;
    h ^= h >> 29;
    h *= H_P3;
    h ^= h >> 32;
    return (uint32_t)h;
}

uint32_t rp_page_checksum(const uint8_t *page, size_t len) {
    return rp_hash32(page + 4, len - 4, 0x52504731u /* "RPG1" */);
}

/* ---- slotted pages ---------------------------------------------------------- */

void rp_page_init(uint8_t *page, uint64_t pgno, uint64_t txnid, uint16_t flags) {
    rp_page_hdr *h = rp_hdrw(page);
    memset(h, 0, sizeof *h);
    h->flags = flags;
    h->txnid = txnid;
    h->pgno = pgno;
    h->lower = RP_PAGE_HEADER;
    h->upper = RP_PAGE_SIZE;
    h->npages = 1;
}

void rp_page_insert(uint8_t *page, unsigned i, const uint8_t *entry, size_t len) {
    rp_page_hdr *h = rp_hdrw(page);
    assert(i <= h->nkeys);
    assert(len + RP_SLOT_SIZE <= rp_page_free(page));
    h->upper = (uint16_t)(h->upper - len);
    memcpy(page + h->upper, entry, len);
    uint8_t *slots = page + RP_PAGE_HEADER;
    memmove(slots + RP_SLOT_SIZE * (i + 1), slots + RP_SLOT_SIZE * i,
            RP_SLOT_SIZE * (size_t)(h->nkeys - i));
    size_t klen;
    const uint8_t *key = rp_entry_key(entry, (h->flags & P_LEAF) != 0, &klen);
    uint8_t *s = slots + RP_SLOT_SIZE * i;
    rp_wr32(s, __builtin_bswap32(rp_key_head(key, klen)));
    rp_wr16(s + 4, h->upper);
    h->nkeys++;
    h->lower = (uint16_t)(h->lower + RP_SLOT_SIZE);
}

void rp_page_remove(uint8_t *page, unsigned i) {
    rp_page_hdr *h = rp_hdrw(page);
    assert(i < h->nkeys);
    uint8_t *slots = page + RP_PAGE_HEADER;
    uint16_t off = rp_slot_off(page, i);
    size_t sz = rp_entry_size(page, page + off);
    /* Close the hole: shift the heap below the entry up by sz bytes. */
    memmove(page + h->upper + sz, page + h->upper, (size_t)(off - h->upper));
    for (unsigned j = 0; j < h->nkeys; j++) {
        uint8_t *s = slots + RP_SLOT_SIZE * j + 4;
        uint16_t o = rp_rd16(s);
        if (o < off) rp_wr16(s, (uint16_t)(o + sz));
    }
    memmove(slots + RP_SLOT_SIZE * i, slots + RP_SLOT_SIZE * (i + 1),
            RP_SLOT_SIZE * (size_t)(h->nkeys - i - 1));
    h->nkeys--;
    h->lower = (uint16_t)(h->lower - RP_SLOT_SIZE);
    h->upper = (uint16_t)(h->upper + sz);
}

const char *rp_page_validate(const uint8_t *page) {
    const rp_page_hdr *h = rp_hdr(page);
    if (!(h->flags == P_LEAF || h->flags == P_BRANCH)) return "not a leaf or branch page";
    if (h->lower != RP_PAGE_HEADER + RP_SLOT_SIZE * (size_t)h->nkeys)
        return "slot array end (lower) disagrees with nkeys";
    if (h->upper < h->lower || h->upper > RP_PAGE_SIZE) return "heap start (upper) out of range";
    if (h->flags == P_BRANCH && h->nkeys == 0) return "branch page without entries";
    size_t used = 0;
    for (unsigned i = 0; i < h->nkeys; i++) {
        size_t off = rp_slot_off(page, i);
        int leaf = h->flags == P_LEAF;
        if (off < h->upper || off >= RP_PAGE_SIZE) return "slot offset outside the heap";
        const uint8_t *e = rp_entry_checked(page, i, leaf);
        if (!e) return "key length out of range";
        size_t klen, sz;
        const uint8_t *key = rp_entry_key(e, leaf, &klen);
        if (klen > RP_MAX_KEY) return "key length out of range";
        /* The slot's copy of the head must agree with the entry: searches
         * trust it for ordering. */
        if (rp_slot_head(page, i) != rp_key_head(key, klen))
            return "slot's key head disagrees with its entry";
        if (leaf) {
            if (klen == 0) return "leaf entry with an empty key";
            if (klen < 0x80 && (e[0] & 0x80)) return "leaf key length not in its shortest form";
            sz = rp_leaf_extent(page, e);
            if (!sz) return "leaf entry's value length (vtag) malformed or past the page";
            if (!rp_leaf_big(e) && sz > RP_MAX_INLINE_ENTRY) return "inline value over the limit";
            if (rp_leaf_big(e) && rp_leaf_inline(klen, rp_leaf_vlen(e)))
                return "overflow value small enough to be inline";
        } else {
            if ((i == 0) != (klen == 0)) return "branch key empty other than first";
            sz = rp_br_size(e);
        }
        if (off + sz > RP_PAGE_SIZE) return "entry runs past the page";
        used += sz;
    }
    /* Entries may not overlap: their sizes must add up to the heap. */
    if (used != (size_t)(RP_PAGE_SIZE - h->upper)) return "entries overlap (sizes do not add up)";
    return NULL;
}

int rp_page_search(const uint8_t *page, const void *k, size_t klen,
                   unsigned *idx, int *exact) {
    unsigned n = rp_nkeys(page);
    uint32_t kh = rp_key_head(k, klen);
    int err = RP_OK;
    *exact = 0;
    if (rp_hdr(page)->flags & P_LEAF) {
        unsigned lo = 0, hi = n;
        while (lo < hi) {
            unsigned mid = (lo + hi) / 2;
            int c = rp_slot_cmp(page, mid, 1, k, klen, kh, &err);
            if (err) return rp_corrupt(rp_hdr(page)->pgno, "entry out of bounds");
            if (c < 0) lo = mid + 1;
            else {
                if (c == 0) { *exact = 1; *idx = mid; return RP_OK; }
                hi = mid;
            }
        }
        *idx = lo;
        return RP_OK;
    }
    /* Branch: the last entry whose key <= k (entry 0 is minus infinity). */
    if (n == 0) return rp_corrupt(rp_hdr(page)->pgno, "branch page without entries");
    unsigned lo = 1, hi = n;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        int c = rp_slot_cmp(page, mid, 0, k, klen, kh, &err);
        if (err) return rp_corrupt(rp_hdr(page)->pgno, "entry out of bounds");
        if (c <= 0) lo = mid + 1;
        else hi = mid;
    }
    if (!rp_entry_checked(page, lo - 1, 0))
        return rp_corrupt(rp_hdr(page)->pgno, "entry out of bounds");
    *idx = lo - 1;
    return RP_OK;
}

int rp_page_leaf_entry(const uint8_t *page, unsigned i, rp_leaf_ent *d) {
    if (i >= rp_nkeys(page)) return rp_corrupt(rp_hdr(page)->pgno, "entry index beyond nkeys");
    if (rp_leaf_decode(page, i, d)) return rp_corrupt(rp_hdr(page)->pgno, "entry out of bounds");
    return RP_OK;
}

int rp_page_entry(const uint8_t *page, unsigned i, const uint8_t **e) {
    int leaf = (rp_hdr(page)->flags & P_LEAF) != 0;
    if (i >= rp_nkeys(page)) return rp_corrupt(rp_hdr(page)->pgno, "entry index beyond nkeys");
    *e = rp_entry_checked(page, i, leaf);
    if (!*e || (leaf && !rp_leaf_extent(page, *e)))
        return rp_corrupt(rp_hdr(page)->pgno, "entry out of bounds");
    return RP_OK;
}

/* ---- page-number vectors ------------------------------------------------------ */

int rp_pgvec_push(rp_pgvec *pv, uint64_t pgno) {
    if (pgno > UINT32_MAX) return RP_MAP_FULL;
    if (pv->n == pv->cap) {
        size_t cap = pv->cap ? pv->cap * 2 : 64;
        uint32_t *v = realloc(pv->v, cap * sizeof *v);
        if (!v) return ENOMEM;
        pv->v = v;
        pv->cap = cap;
    }
    pv->v[pv->n++] = (uint32_t)pgno;
    return RP_OK;
}

void rp_pgvec_free(rp_pgvec *pv) {
    free(pv->v);
    pv->v = NULL;
    pv->n = pv->cap = 0;
}
