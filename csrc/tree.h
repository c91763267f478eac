/*
 * tree.h -- transactions, tables and cursors as page.c, btree.c, txn.c and
 * env.c share them.  Private to the engine.
 *
 * Page numbers are uint64_t in memory and in page headers; the free list
 * stores them as uint32_t, which bounds a file at 2^32 pages (16 TiB).
 */
#ifndef REALMPY_TREE_H
#define REALMPY_TREE_H

#include "internal.h"
#include "msgpack.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>

/* ---- small vectors of page numbers ---------------------------------------- */
typedef struct rp_pgvec {
    uint32_t *v;
    size_t    n, cap;
} rp_pgvec;

int  rp_pgvec_grow(rp_pgvec *pv);
void rp_pgvec_free(rp_pgvec *pv);

/* Inline: a commit on a long free list pushes each page number of the
 * chain page it reads (about a thousand), and the call alone was ~4% of a
 * non-durable commit at 1M keys (perf). */
static inline int rp_pgvec_push(rp_pgvec *pv, uint64_t pgno) {
    if (pgno > UINT32_MAX) return RP_MAP_FULL;
    if (pv->n == pv->cap) {
        int rc = rp_pgvec_grow(pv);
        if (rc) return rc;
    }
    pv->v[pv->n++] = (uint32_t)pgno;
    return RP_OK;
}

/* A free-list record: pages freed by the commit of version txnid. */
typedef struct rp_freerec {
    uint64_t txnid;
    rp_pgvec pages;
} rp_freerec;

/* ---- dirty pages (write txn): open-addressing map pgno -> buffer ---------- */
typedef struct rp_dirty {
    uint64_t pgno;                   /* UINT64_MAX = empty bucket             */
    uint8_t *page;                   /* NULL = freed again in this txn        */
    uint32_t npages;                 /* >1 for an overflow run                */
} rp_dirty;

/* A dirty page's buffer has RP_DIRTY_TRAILER bytes after its npages pages,
 * never written to the file: 1 + the index of the entry last inserted into
 * the page (0: none yet).  The split rule (btree.c) reads it as the sign of
 * an ascending run; it is a hint, never trusted for anything else. */
#define RP_DIRTY_TRAILER 8
static inline unsigned rp_last_insert(const uint8_t *page) {
    uint16_t v;
    memcpy(&v, page + RP_PAGE_SIZE, 2);
    return v;
}
static inline void rp_set_last_insert(uint8_t *page, unsigned idx_plus_1) {
    uint16_t v = (uint16_t)idx_plus_1;
    memcpy(page + RP_PAGE_SIZE, &v, 2);
}

/* ---- a table as a transaction sees it ------------------------------------- */
typedef struct rp_table {
    uint64_t root, root_txnid;       /* root page, version that wrote it      */
    uint64_t entries, depth, pages;
    uint64_t modcount;               /* changes in this txn (cursor re-seek)  */
    uint8_t *tail;                   /* the rightmost leaf, writable, as of   */
    uint64_t tail_mod;               /* modcount tail_mod (else stale)        */
    int      exists;                 /* in the catalog (or created now)       */
    int      dirty;                  /* descriptor must be written back       */
    uint16_t nlen;
    char     name[RP_MAX_TABLE_NAME + 1];
} rp_table;

struct rp_txn {
    rp_env    *env;
    unsigned   flags;                /* RP_TXN_WRITE                          */
    pthread_t  owner;
    int        failed;               /* an error left the txn inconsistent    */
    uint64_t   txnid;                /* version read (read txn) / being built */
    rp_roots   roots;                /* version read; for a write txn the
                                        working roots of the new version     */
    rp_slot   *slot;                 /* read txn: the pinning slot            */
    uint64_t   base_pages;           /* pages_used of the version read        */
    int        locked;               /* write txn holds the writer mutex      */
    int        parked;               /* read txn reset: pins no snapshot      */
    int        shared;               /* read txn: any thread (rp_txn_share)   */
    unsigned   ncursors;
    int        verify;               /* RP_VERIFY_* (verify.c)                */

    rp_table   catalog;              /* the catalog, as a pseudo-table        */
    rp_table **tables;               /* cache of looked-up tables             */
    size_t     ntables, cap_tables;
    rp_table  *last_table;

    /* write txn only */
    rp_dirty  *dirty;
    size_t     dcap, dcount;
    rp_pgvec   freed;                /* pages of older versions freed now     */
    rp_pgvec   loose;                /* pages allocated and freed in this txn */
    rp_pgvec   reuse;                /* reusable now, sorted descending       */
    uint64_t   hot_next, hot_end;    /* the run hot pages come from (ALLOCATION
                                        in txn.c): [hot_next, hot_end)        */
    size_t     hot_skip;             /* low reuse entries with no long run    */
    uint64_t   hot_count;            /* hot pages allocated                   */
    int        catalog_flush;        /* writing the catalog: its pages are hot */
    int        fl_saving;            /* writing the free list: no new hot run,
                                        no more of the old list              */
    uint64_t   fl_pgno, fl_txnid;    /* the old free list's first page not
                                        read yet (0: none; txn.c, THE FREE
                                        LIST IN A WRITE TXN)                 */
    uint64_t   fl_left;              /* its stream bytes from there on        */
    uint64_t   fl_hops;              /* its pages read                        */
    uint8_t   *fl_carry;             /* bytes read of a record not complete   */
    size_t     fl_carry_len, fl_carry_cap;
    rp_freerec *pending;             /* free-list records still pinned        */
    size_t     npending;
    uint64_t   oldest;               /* oldest pinned version at begin        */
};

struct rp_cursor {
    rp_txn   *txn;
    rp_table *table;
    uint64_t  modcount;              /* table->modcount when positioned       */
    int       depth;                 /* levels in the stack; 0 = unpositioned */
    struct {
        const uint8_t *page;
        unsigned       idx;
    } stack[RP_MAX_DEPTH];
    uint8_t  *key;                   /* copy of the current key (re-seek)     */
    size_t    klen, kcap;
    int       valid;                 /* positioned on an entry                */
};

/* ---- page.c: slotted-page primitives -------------------------------------- */
static inline uint16_t rp_rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t rp_rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t rp_rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline void rp_wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void rp_wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void rp_wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static inline const rp_page_hdr *rp_hdr(const uint8_t *page) {
    return (const rp_page_hdr *)(const void *)page;
}
static inline rp_page_hdr *rp_hdrw(uint8_t *page) {
    return (rp_page_hdr *)(void *)page;
}
static inline unsigned rp_nkeys(const uint8_t *page) { return rp_hdr(page)->nkeys; }
/* Slot i of the slot array after the header (format.h). */
static inline const uint8_t *rp_slot_at(const uint8_t *page, unsigned i) {
    return page + RP_PAGE_HEADER + RP_SLOT_SIZE * (size_t)i;
}
static inline uint16_t rp_slot_off(const uint8_t *page, unsigned i) {
    return rp_rd16(rp_slot_at(page, i) + 4);
}
/* Entry i (unchecked: for pages this transaction built or validated). */
static inline const uint8_t *rp_entry(const uint8_t *page, unsigned i) {
    return page + rp_slot_off(page, i);
}
static inline uint8_t *rp_entry_w(uint8_t *page, unsigned i) {
    return page + rp_slot_off(page, i);
}
/* A key's head as stored in a slot: first 4 bytes, zero-padded, as the
 * big-endian integer whose order is the bytes' order. */
static inline uint32_t rp_key_head(const void *key, size_t klen) {
    const uint8_t *k = key;
    /* Not through a zeroed 4-byte buffer: the compiler fills it bytewise
     * and loads it whole, a store-to-load forwarding stall on every
     * search and key comparison. */
    if (klen >= 4)
        return ((uint32_t)k[0] << 24) | ((uint32_t)k[1] << 16) | ((uint32_t)k[2] << 8) | k[3];
    uint32_t h = 0;
    if (klen > 0) h |= (uint32_t)k[0] << 24;
    if (klen > 1) h |= (uint32_t)k[1] << 16;
    if (klen > 2) h |= (uint32_t)k[2] << 8;
    return h;
}
static inline uint32_t rp_slot_head(const uint8_t *page, unsigned i) {
    return __builtin_bswap32(rp_rd32(rp_slot_at(page, i)));
}
static inline size_t rp_page_free(const uint8_t *page) {
    return (size_t)rp_hdr(page)->upper - rp_hdr(page)->lower;
}

/* Leaf entry accessors (format.h, "Leaf entry": klen in 1 or 2 bytes, key,
 * a varint vtag = vlen * 2 + big, then the value or the overflow ref).
 * Unchecked: for entries rp_page_entry or rp_page_validate accepted, or
 * that this transaction built. */
static inline size_t rp_leaf_klen_size(const uint8_t *e) { return (e[0] & 0x80) ? 2 : 1; }
static inline uint16_t rp_leaf_klen(const uint8_t *e) {
    return (e[0] & 0x80) ? (uint16_t)(((e[0] & 0x7f) << 8) | e[1]) : e[0];
}
static inline const uint8_t *rp_leaf_key(const uint8_t *e) { return e + rp_leaf_klen_size(e); }
static inline const uint8_t *rp_leaf_vtag(const uint8_t *e) {
    return rp_leaf_key(e) + rp_leaf_klen(e);
}
/* LEB128 varint of at most RP_VARINT_MAX bytes at p: its length (0 when
 * it runs past end or beyond RP_VARINT_MAX bytes, or is not minimal). */
static inline size_t rp_varint_get(const uint8_t *p, const uint8_t *end, uint64_t *v) {
    uint64_t x = 0;
    for (size_t i = 0; i < RP_VARINT_MAX && p + i < end; i++) {
        x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            if (i > 0 && p[i] == 0) return 0;   /* not minimal */
            *v = x;
            return i + 1;
        }
    }
    return 0;
}
static inline size_t rp_varint_put(uint8_t *p, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) { p[n++] = (uint8_t)(v | 0x80); v >>= 7; }
    p[n++] = (uint8_t)v;
    return n;
}
static inline size_t rp_varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) { n++; v >>= 7; }
    return n;
}
static inline int rp_leaf_big(const uint8_t *e) { return (rp_leaf_vtag(e)[0] & E_BIG) != 0; }
static inline uint32_t rp_leaf_vlen(const uint8_t *e) {
    uint64_t tag = 0;
    const uint8_t *p = rp_leaf_vtag(e);
    rp_varint_get(p, p + RP_VARINT_MAX, &tag);
    return (uint32_t)(tag >> 1);
}
static inline const uint8_t *rp_leaf_val(const uint8_t *e) {
    const uint8_t *p = rp_leaf_vtag(e);
    uint64_t tag;
    return p + rp_varint_get(p, p + RP_VARINT_MAX, &tag);
}
static inline size_t rp_leaf_size(const uint8_t *e) {
    return (size_t)(rp_leaf_val(e) - e) + (rp_leaf_big(e) ? RP_BIG_REF : rp_leaf_vlen(e));
}
/* Write a leaf entry's header and key at out (the value or ref follows at
 * the returned offset). */
static inline size_t rp_leaf_put_head(uint8_t *out, const void *key, size_t klen, size_t vlen,
                                      int big) {
    size_t n = 0;
    if (klen < 0x80) out[n++] = (uint8_t)klen;
    else { out[n++] = (uint8_t)(0x80 | (klen >> 8)); out[n++] = (uint8_t)klen; }
    memcpy(out + n, key, klen);
    n += klen;
    return n + rp_varint_put(out + n, (uint64_t)vlen * 2 + (big ? E_BIG : 0));
}
static inline size_t rp_leaf_head_size(size_t klen, size_t vlen) {
    return (klen < 0x80 ? 1 : 2) + klen + rp_varint_size((uint64_t)vlen * 2 + 1);
}
/* The rule that keeps a value inline (else it goes to an overflow run). */
static inline int rp_leaf_inline(size_t klen, size_t vlen) {
    return rp_leaf_head_size(klen, vlen) + vlen <= RP_MAX_INLINE_ENTRY;
}
/* Branch entry accessors. */
static inline uint16_t rp_br_klen(const uint8_t *e) { return rp_rd16(e); }
static inline uint64_t rp_br_child(const uint8_t *e) { return rp_rd64(e + 8); }
static inline uint64_t rp_br_child_txnid(const uint8_t *e) { return rp_rd64(e + 16); }
static inline const uint8_t *rp_br_key(const uint8_t *e) { return e + RP_BRANCH_ENTRY_HDR; }
static inline size_t rp_br_size(const uint8_t *e) {
    return RP_BRANCH_ENTRY_HDR + rp_br_klen(e);
}
static inline size_t rp_entry_size(const uint8_t *page, const uint8_t *e) {
    return (rp_hdr(page)->flags & P_LEAF) ? rp_leaf_size(e) : rp_br_size(e);
}

/* Compare two keys: memcmp order, shorter first on a common prefix. */
static inline int rp_keycmp(const void *a, size_t alen, const void *b, size_t blen) {
    size_t n = alen < blen ? alen : blen;
    int c = n ? memcmp(a, b, n) : 0;
    if (c) return c;
    return alen < blen ? -1 : alen > blen;
}

/* Key of an entry of a leaf (leaf != 0) or branch page. */
static inline const uint8_t *rp_entry_key(const uint8_t *e, int leaf, size_t *klen) {
    if (leaf) { *klen = rp_leaf_klen(e); return rp_leaf_key(e); }
    *klen = rp_br_klen(e);
    return rp_br_key(e);
}

/* Bounds of entry i: its header and key lie inside the page.  The read path
 * checks each entry it touches instead of validating whole pages, so a
 * corrupt page costs an error, never a wild read, and a lookup stays
 * O(log n). */
static inline const uint8_t *rp_entry_checked(const uint8_t *page, unsigned i, int leaf) {
    size_t off = rp_slot_off(page, i);
    if (off < rp_hdr(page)->upper || off >= RP_PAGE_SIZE) return NULL;
    const uint8_t *e = page + off;
    size_t head = leaf ? rp_leaf_klen_size(e) : RP_BRANCH_ENTRY_HDR;
    if (off + head > RP_PAGE_SIZE) return NULL;
    size_t klen = leaf ? rp_leaf_klen(e) : rp_br_klen(e);
    if (off + head + klen > RP_PAGE_SIZE) return NULL;
    return e;
}

/* Size of leaf entry e of page, every byte checked to lie in the page
 * (key, vtag, value or ref) and vlen <= RP_MAX_VALUE; 0 if not. */
static inline size_t rp_leaf_extent(const uint8_t *page, const uint8_t *e) {
    const uint8_t *end = page + RP_PAGE_SIZE;
    size_t ks = rp_leaf_klen_size(e);
    if (e + ks > end || e + ks + rp_leaf_klen(e) >= end) return 0;
    const uint8_t *p = rp_leaf_vtag(e);
    uint64_t tag;
    size_t n = rp_varint_get(p, end, &tag);
    if (!n || (tag >> 1) > RP_MAX_VALUE) return 0;
    size_t body = (tag & E_BIG) ? RP_BIG_REF : (size_t)(tag >> 1);
    if ((size_t)(end - (p + n)) < body) return 0;
    return (size_t)(p + n - e) + body;
}

/* Order of entry i of a leaf (leaf != 0) or branch page against key k
 * (head kh): the slot's head decides unless it ties; only then is the
 * entry read.  *err set on a corrupt entry.  (Here rather than in page.c
 * so that btree.c's lookahead inlines it.) */
static inline int rp_slot_cmp(const uint8_t *page, unsigned i, int leaf, const void *k,
                              size_t klen, uint32_t kh, int *err) {
    uint32_t sh = rp_slot_head(page, i);
    if (sh != kh) return sh < kh ? -1 : 1;
    const uint8_t *e = rp_entry_checked(page, i, leaf);
    if (!e) { *err = RP_CORRUPT; return 0; }
    size_t el;
    const uint8_t *ek = rp_entry_key(e, leaf, &el);
    return rp_keycmp(ek, el, k, klen);
}

void rp_page_init(uint8_t *page, uint64_t pgno, uint64_t txnid, uint16_t flags);
/* Insert a raw entry of size len at slot i; the caller checked the space. */
void rp_page_insert(uint8_t *page, unsigned i, const uint8_t *entry, size_t len);
/* Remove slot i and compact the heap. */
void rp_page_remove(uint8_t *page, unsigned i);
/* Structural validation of a branch/leaf page (bounds of every slot and
 * entry, nkeys, lower/upper): NULL if valid, else which check failed (for
 * the caller's rp_corrupt(pgno, why)). */
const char *rp_page_validate(const uint8_t *page);
/* Checksum of a page or overflow run (bytes [4, len)). */
uint32_t rp_page_checksum(const uint8_t *page, size_t len);
/* Binary search: leaf -> first index with key >= k (*exact set);
 * branch -> index of the child whose range holds k.  Bounds-checks every
 * entry it reads: RP_OK or RP_CORRUPT. */
int rp_page_search(const uint8_t *page, const void *k, size_t klen,
                   unsigned *idx, int *exact);
/* Entry i with its bounds checked (a leaf entry's whole extent). */
int rp_page_entry(const uint8_t *page, unsigned i, const uint8_t **e);
/* A leaf entry decoded in one pass over its bytes, every one checked to
 * lie in its page as rp_page_entry checks them: what a read needs of it
 * (key, value or overflow ref, lengths) without decoding the klen and the
 * vtag varint again for each field -- a scan reads every entry once. */
typedef struct rp_leaf_ent {
    const uint8_t *e;                /* the entry                              */
    const uint8_t *key, *val;        /* val: the value, or the overflow ref    */
    size_t klen, vlen;               /* vlen: the value's full length          */
    int big;                         /* E_BIG: the value is in an overflow run */
} rp_leaf_ent;
static inline int rp_leaf_decode(const uint8_t *page, unsigned i, rp_leaf_ent *d) {
    size_t off = rp_slot_off(page, i);
    if (off < rp_hdr(page)->upper || off >= RP_PAGE_SIZE) return -1;
    const uint8_t *e = page + off, *end = page + RP_PAGE_SIZE;
    size_t ks = rp_leaf_klen_size(e);
    if (e + ks > end) return -1;
    size_t klen = rp_leaf_klen(e);
    const uint8_t *p = e + ks + klen;
    if (p >= end) return -1;
    uint64_t tag;
    size_t n = 1;
    if (p[0] < 0x80) tag = p[0];     /* a value under 64 bytes: one byte */
    else if (!(n = rp_varint_get(p, end, &tag))) return -1;
    if ((tag >> 1) > RP_MAX_VALUE) return -1;
    size_t body = (tag & E_BIG) ? RP_BIG_REF : (size_t)(tag >> 1);
    if ((size_t)(end - (p + n)) < body) return -1;
    d->e = e;
    d->key = e + ks;
    d->klen = klen;
    d->val = p + n;
    d->vlen = (size_t)(tag >> 1);
    d->big = (int)(tag & E_BIG);
    return 0;
}
/* Leaf entry i decoded (rp_leaf_decode), or RP_CORRUPT as rp_page_entry. */
int rp_page_leaf_entry(const uint8_t *page, unsigned i, rp_leaf_ent *d);

/* ---- txn.c ------------------------------------------------------------------ */
/* Page of (pgno, txnid) for reading: a dirty buffer when txnid is this write
 * txn's, else the map.  Validates bounds, header pgno and txnid, and the
 * expected kind (P_BRANCH|P_LEAF or P_OVERFLOW).  NULL with *err set. */
const uint8_t *rp_page_read(rp_txn *txn, uint64_t pgno, uint64_t txnid,
                            unsigned kinds, int *err);
/* Writable copy of (pgno, txnid) (copy-on-write); *newpgno is its number. */
uint8_t *rp_page_touch(rp_txn *txn, uint64_t pgno, uint64_t txnid,
                       uint64_t *newpgno, int *err);
/* A new dirty page (or run of npages), initialised with the header. */
uint8_t *rp_page_new(rp_txn *txn, uint16_t flags, uint32_t npages,
                     uint64_t *pgno, int *err);
/* Free a page (or run) of version txnid. */
int  rp_page_free_pg(rp_txn *txn, uint64_t pgno, uint64_t txnid, uint32_t npages);
/* Look up (and cache) a table; create it (in a write txn) if create. */
int  rp_table_get(rp_txn *txn, const char *name, size_t nlen, int create,
                  rp_table **out);
int  rp_txn_check(rp_txn *txn, int write);
/* Write changed table descriptors into the catalog tree (at commit, and
 * before a catalog cursor opens in a write txn, so that it lists the tables
 * this transaction created and not those it dropped). */
int  rp_txn_flush_catalog(rp_txn *txn);
/* Walk the free list of roots: chain(ctx, pgno, txnid, page) for each list
 * page (may be NULL), fn(ctx, record txnid, pgno) for each listed page. */
typedef int (*rp_chain_fn)(void *ctx, uint64_t pgno, uint64_t txnid, const uint8_t *page);
typedef int (*rp_free_fn)(void *ctx, uint64_t rec_txnid, uint32_t pgno);
int  rp_freelist_walk(rp_txn *txn, const rp_roots *roots, rp_chain_fn chain,
                      rp_free_fn fn, void *ctx);

/* ---- verify.c ---------------------------------------------------------------
 * How a transaction checks the checksums of committed pages it reads. */
enum {
    RP_VERIFY_OFF,                   /* RP_NOVERIFY: structure checks only     */
    RP_VERIFY_CACHED,                /* once per page version (env->verified)  */
    RP_VERIFY_ALWAYS                 /* every read, cache untouched (recovery
                                        walks, rp_env_check)                  */
};
int  rp_verified_init(rp_env *env);
void rp_verified_free(rp_env *env);
/* Checksum of a page as its header describes it (an overflow run: npages,
 * which the caller bounds-checked; any other page: one page). */
uint32_t rp_page_sum(const uint8_t *page);
/* Verify the checksum of committed page (pgno, txnid) and, for
 * RP_VERIFY_CACHED, remember it.  RP_OK or RP_CORRUPT with detail. */
int  rp_page_verify(rp_txn *txn, const uint8_t *page, uint64_t pgno, uint64_t txnid);
/* Append " (table NAME)" to the detail when rc is RP_CORRUPT; returns rc.
 * Inline test: the API's read calls pass every result through it. */
int  rp_corrupt_name_table(const rp_table *t);
static inline int rp_corrupt_table(int rc, const rp_table *t) {
    if (__builtin_expect(rc == RP_CORRUPT, 0)) rp_corrupt_name_table(t);
    return rc;
}

/* ---- btree.c --------------------------------------------------------------- */
int rp_bt_get(rp_txn *txn, rp_table *t, const void *key, size_t klen,
              const void **val, size_t *vlen);
int rp_bt_put(rp_txn *txn, rp_table *t, const void *key, size_t klen,
              const void *val, size_t vlen);
int rp_bt_del(rp_txn *txn, rp_table *t, const void *key, size_t klen);
/* Free every page of a table's tree. */
int rp_bt_drop(rp_txn *txn, rp_table *t);
/* Value of a decoded leaf entry (inline, or its overflow run checked). */
int rp_bt_value(rp_txn *txn, const rp_leaf_ent *d, const void **val, size_t *vlen);
/* The overflow run of big leaf entry e, read (rp_page_read: bounds,
 * checksum) and of exactly the length its value needs; NULL with *err. */
const uint8_t *rp_overflow_read(rp_txn *txn, const uint8_t *e, int *err);
void rp_cursor_init(rp_cursor *c, rp_txn *txn, rp_table *t);
/* Pipelined lookups in one table (joins, rp_get_many; btree.c explains).
 * The caller queues keys ahead of the one it is at while rp_ahead_room,
 * each with a tag and index of its choosing that name it, calls
 * rp_ahead_search, then takes the slot of the key it is at (NULL if that
 * key was not queued) and gets its value with rp_ahead_get (a NULL slot:
 * a plain rp_bt_get).  The keys queued must stay in place meanwhile. */
#define RP_AHEAD_DESCEND 8   /* keys ahead: descend and prefetch the leaf's slots */
#define RP_AHEAD_SEARCH 3    /* keys ahead: search the leaf, prefetch the entry   */
#define RP_AHEAD_RING 16     /* > RP_AHEAD_DESCEND, a power of two                */
/* Distances measure alike on the join benchmark (1000 joined rows of 100k,
 * L3-resident) from 4/2 to 14/6; these leave room for slower memory. */

typedef struct rp_ahead_slot {
    const void *tag;       /* what the caller queued it as                 */
    size_t idx;
    const uint8_t *key;    /* the key (the caller's memory)                */
    size_t klen;
    uint64_t pg, tx;       /* stage 1: the key's leaf; pg 0: unknown       */
    const uint8_t *leaf;   /* stage 2: that leaf, read and searched        */
    unsigned eidx;         /* stage 2: the entry's index in leaf           */
    int found;             /* stage 2: 1 entry eidx is the key, 0 absent,
                              -1 eidx is where it would be: confirm on take */
} rp_ahead_slot;

typedef struct rp_ahead {
    rp_txn *txn;
    rp_table *t;
    int levels;            /* branch levels of t; -1: none or unknown      */
    unsigned head, searched, tail;   /* ring positions (free-running)     */
    unsigned slot_lines;   /* cache lines of header + slots of a leaf     */
    int path_len;          /* levels of path that hold the last descent    */
    struct {
        const uint8_t *page;
        unsigned idx;
    } path[RP_MAX_DEPTH];  /* the last descent: branch pages, children taken */
    rp_ahead_slot ring[RP_AHEAD_RING];
} rp_ahead;

void rp_ahead_init(rp_ahead *a, rp_txn *txn, rp_table *t);
static inline void rp_ahead_reset(rp_ahead *a) { a->head = a->searched = a->tail = 0; }
static inline int rp_ahead_room(const rp_ahead *a) {
    return a->tail - a->head < RP_AHEAD_DESCEND;
}
/* Whether the next slot to take is (tag, idx). */
static inline int rp_ahead_next_is(const rp_ahead *a, const void *tag, size_t idx) {
    const rp_ahead_slot *s = &a->ring[a->head % RP_AHEAD_RING];
    return a->head != a->tail && s->tag == tag && s->idx == idx;
}
void rp_ahead_queue(rp_ahead *a, const void *tag, size_t idx, const void *key, size_t klen);
void rp_ahead_search(rp_ahead *a);
const rp_ahead_slot *rp_ahead_take(rp_ahead *a, const void *tag, size_t idx);
int  rp_ahead_get(rp_ahead *a, const rp_ahead_slot *s, const void *k, size_t kl,
                  const void **v, size_t *vl);

/* A value of a batch (btree.c; the msgpack forms are in msgpack.h). */
size_t rp_mp_value_size(size_t len, int raw);
size_t rp_mp_value(uint8_t *o, const void *v, size_t len, int raw);

/* Table descriptor (catalog value) codec. */
void rp_desc_encode(const rp_table *t, uint8_t out[RP_TABLE_DESC_SIZE]);
int  rp_desc_decode(rp_table *t, const void *buf, size_t len);

/* ---- env.c ------------------------------------------------------------------ */
/* Verify that the commit of roots->txnid fully reached the file: walk the
 * pages it wrote.  RP_OK or RP_CORRUPT (with detail). */
int rp_verify_commit(rp_env *env, const rp_roots *roots);

/* ---- meta.c ------------------------------------------------------------------ */
/* The version to open: the newest meta record whose commit verifies, unless
 * a known-acknowledged one is damaged (format.h, WHAT AN OPEN CONCLUDES).
 * RP_NOT_A_DB, RP_FORMAT_VERSION, RP_CORRUPT (with detail).  With salvage,
 * damaged versions are skipped instead: *rolled_from (may be NULL) is then
 * the newest version skipped for damage (0 if none).  *next_free is a
 * version number above every version the file may hold (env.c renumbers a
 * salvage, and a silent fallback past a torn commit, to it). */
int rp_recover_roots_ex(rp_env *env, int salvage, rp_roots *out, uint64_t *rolled_from,
                        uint64_t *next_free);
int rp_recover_roots(rp_env *env, rp_roots *out);
/* Write both copies of roots' meta record with flags (RP_META_*), in one
 * pwrite of both meta pages (meta.c, THE META WRITE).  old, if not NULL,
 * receives the 2 * RP_PAGE_SIZE bytes replaced, for rp_meta_restore after
 * a failed commit.  The guard's error if the map lost pages (sigbus.c). */
int rp_meta_write(rp_env *env, const rp_roots *roots, uint32_t flags, uint8_t *old);
int rp_meta_restore(rp_env *env, const uint8_t *old);
/* rp_env_check's part: RP_CORRUPT (with detail) if any copy of a record is
 * damaged, even one that open survived. */
int rp_meta_check(rp_env *env);
/* Write, sync and acknowledge roots as a new durable version (creation,
 * salvage). */
int rp_meta_commit(rp_env *env, const rp_roots *roots);
/* 1 if the data file holds an intact record of version r->txnid with
 * other roots than r: roots read from the lock file's ring are then
 * damaged there, not in the data file.  0 if they agree or no record of
 * that version is left. */
int rp_meta_disowns(rp_env *env, const rp_roots *r);
/* Durability "none" at a clean close: unless both copies of latest's
 * record already carry ACKED, sync the file and rewrite them with
 * SYNCED|ACKED.  Under the writer mutex, latest being the newest published
 * version. */
int rp_meta_settle(rp_env *env, const rp_roots *latest);

#endif /* REALMPY_TREE_H */
