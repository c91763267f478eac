/*
 * txn.c -- transactions: snapshots, dirty pages, page allocation, the free
 * list and the commit protocol.
 *
 * COMMIT PROTOCOL (one fdatasync)
 *   1. Write the table descriptors back into the catalog, then the free list.
 *   2. Grow the file if the new pages need it (in chunks, zero-filled).
 *   3. Check that <path>.lock is still the lock file held (rp_lock_check),
 *      then pwrite every dirty page, each stamped with this version and its
 *      checksum, sorted and coalesced into runs (one pwritev a run; see
 *      ALLOCATION for how the runs are made long).
 *   4. Mark version N in doubt in the lock file (rp_commit_mark), then
 *      write both copies of meta record N (format.h: slots of version N-2)
 *      with one pwrite of the two meta pages (meta.c, THE META WRITE).
 *   5. fdatasync (durability "full").  Pages and meta reach the disk in any
 *      order; recovery tells a meta whose pages did not all arrive (their
 *      txnid/checksum do not match what the parents record) and falls back
 *      to version N-1, which step 3 never overwrote (see ALLOCATION).
 *      Then rewrite the record marked acknowledged (no sync), so that a
 *      later open tells damage to this commit from a torn one.
 *   6. Publish the roots in the lock file's ring, then the version counter,
 *      and wake waiters; clear the mark.  Readers therefore never see an
 *      undurable version.
 *   If step 4 or 5 fails, the old meta image is written back (and the mark
 *   cleared), so neither this process nor a later opener can adopt a commit
 *   that reported failure.  If the writer dies between 4 and the end of 6,
 *   the mark stays while its thread no longer holds the writer mutex: the
 *   next reader, waiter or opener settles the commit (rp_resolve_commit:
 *   repair under the writer mutex publishes the meta if its commit
 *   verifies, else the previous version stands) before it reads, so every
 *   reader after the death agrees with the next writer.  RP_FAULT_CRASH
 *   kills a writer at each step (RP_STEP_*) to test exactly that.
 *
 * ALLOCATION
 *   A page freed by the commit of version T was live in T-1.  A writer may
 *   reuse it once no live snapshot is older than T; the latest committed
 *   version counts as pinned, so pages freed by the running transaction or
 *   by the latest commit are never overwritten while version N-1 is the
 *   recovery fallback.  Pages allocated and freed inside one transaction
 *   ("loose") were never visible to anyone and are reused at once.
 *
 *   Where a page goes decides how many writes a commit costs (write_pages
 *   writes each run of adjacent pages with one pwritev).  Hot pages --
 *   those the previous commit wrote too (a root, the right edge of an
 *   ascending run of keys), the catalog's pages and the free list's, which
 *   nearly every commit rewrites -- come from one run of free pages
 *   (pick_hot_run), so they are written together, and two commits later
 *   they are free together again: a run for the next hot pages.  Every
 *   other page (a leaf or lower branch reached at random, an overflow run)
 *   takes the lowest free pages (compact files): it outlives the commit,
 *   and inside the hot run it would keep the run from coming back free as
 *   a whole.  A small commit then writes its hot run plus one page per
 *   level below the root (bench/storage_layout.py, one-put commits:
 *   2.8 pwritev at 10k keys, 3.0 at 100k, 3.9 at 1M; with every branch
 *   page hot, as before, 2.2, 4.0 and 5.3: a small tree's few branches
 *   fitted the run, a big tree's many did not).  When no free run is long
 *   enough, the reusable pages are few and the file has pre-grown room,
 *   the hot run is taken past the used pages (that is how a scattered free
 *   list turns into runs; the file never grows for it).  The pages left
 *   are scattered because a copy-on-write tree updated at random frees
 *   pages at random: writing them as one run would need fresh space each
 *   commit (a log) and a cleaner to win the holes back.
 */
#include "tree.h"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- dirty page map ------------------------------------------------------- */

static inline size_t dslot(uint64_t pgno, size_t cap) {
    return (size_t)((pgno * 0x9E3779B97F4A7C15ULL) >> 17) & (cap - 1);
}

static rp_dirty *dirty_find(rp_txn *txn, uint64_t pgno) {
    RP_ASSERT(txn->flags & RP_TXN_WRITE);
    RP_ASSERT(pgno != UINT64_MAX && (txn->dcap & (txn->dcap - 1)) == 0);   /* a power of two */
    if (!txn->dcap) return NULL;
    for (size_t i = dslot(pgno, txn->dcap);; i = (i + 1) & (txn->dcap - 1)) {
        rp_dirty *d = &txn->dirty[i];
        if (d->pgno == pgno) return d;
        if (d->pgno == UINT64_MAX) return NULL;
    }
}

static int dirty_grow(rp_txn *txn) {
    size_t cap = txn->dcap ? txn->dcap * 2 : 256;
    rp_dirty *nd = malloc(cap * sizeof *nd);
    if (!nd) return ENOMEM;
    for (size_t i = 0; i < cap; i++) nd[i] = (rp_dirty){.pgno = UINT64_MAX};
    for (size_t i = 0; i < txn->dcap; i++) {
        rp_dirty *d = &txn->dirty[i];
        if (d->pgno == UINT64_MAX) continue;
        size_t j = dslot(d->pgno, cap);
        while (nd[j].pgno != UINT64_MAX) j = (j + 1) & (cap - 1);
        nd[j] = *d;
    }
    free(txn->dirty);
    txn->dirty = nd;
    txn->dcap = cap;
    return RP_OK;
}

static int dirty_put(rp_txn *txn, uint64_t pgno, uint8_t *page, uint32_t npages) {
    RP_ASSERT(page && npages >= 1);
    rp_dirty *d = dirty_find(txn, pgno);
    if (!d) {
        if ((txn->dcount + 1) * 2 > txn->dcap) {
            int rc = dirty_grow(txn);
            if (rc) return rc;
        }
        size_t i = dslot(pgno, txn->dcap);
        while (txn->dirty[i].pgno != UINT64_MAX) i = (i + 1) & (txn->dcap - 1);
        d = &txn->dirty[i];
        d->pgno = pgno;
        txn->dcount++;
    }
    RP_ASSERT(d->page == NULL);   /* a page number is handed out once per txn */
    d->page = page;
    d->npages = npages;
    return RP_OK;
}

/* ---- page access ------------------------------------------------------------ */

/* A committed page failed a check.  If the SIGBUS guard replaced pages of
 * the mapping meanwhile (sigbus.c), zeros are why; if a reader's roots,
 * which come from the lock file's ring, disagree with the data file's own
 * record of that version, the lock file is what is damaged.  Report that
 * instead of blaming the data file. */
static int page_bad(const rp_txn *txn, uint64_t pgno, const char *what) {
    if (rp_guard_faulted(txn->env)) return rp_guard_error(txn->env);
    if (!(txn->flags & RP_TXN_WRITE) && rp_meta_disowns(txn->env, &txn->roots))
        return rp_lock_damaged(txn->env);
    return rp_corrupt(pgno, what);
}

const uint8_t *rp_page_read(rp_txn *txn, uint64_t pgno, uint64_t txnid,
                            unsigned kinds, int *err) {
    RP_ASSERT(txn && err && kinds);
    if ((txn->flags & RP_TXN_WRITE) && txnid == txn->txnid) {
        rp_dirty *d = dirty_find(txn, pgno);
        if (!d || !d->page) { *err = rp_corrupt(pgno, "reference to a page this transaction freed"); return NULL; }
        return d->page;
    }
    /* A committed page: it must lie inside the version being read, say it
     * is the page and version its parent recorded, and (unless RP_NOVERIFY)
     * match its checksum, which verify.c remembers per page version. */
    const rp_env *env = txn->env;
    uint64_t limit = (txn->flags & RP_TXN_WRITE) ? txn->txnid : txn->txnid + 1;
    if (pgno < RP_FIRST_DATA_PAGE || pgno >= txn->base_pages || txnid >= limit
        || txnid == 0) {
        *err = page_bad(txn, pgno, "reference out of range (page number or version)");
        return NULL;
    }
    const uint8_t *p = env->map + pgno * RP_PAGE_SIZE;
    const rp_page_hdr *h = rp_hdr(p);
    if (h->pgno != pgno || h->txnid != txnid || !(h->flags & kinds)) {
        *err = page_bad(txn, pgno, h->pgno != pgno   ? "header names another page number"
                                : h->txnid != txnid ? "header names another version than its parent"
                                                    : "unexpected page type");
        return NULL;
    }
    if (h->flags & (P_BRANCH | P_LEAF)) {
        if (h->lower != RP_PAGE_HEADER + RP_SLOT_SIZE * (size_t)h->nkeys || h->upper < h->lower
            || h->upper > RP_PAGE_SIZE || (h->flags & P_BRANCH && !h->nkeys) || h->npages != 1) {
            *err = page_bad(txn, pgno, "bad page header (nkeys, lower, upper or npages)");
            return NULL;
        }
    } else if (h->flags & P_OVERFLOW) {
        if (h->npages == 0 || h->npages > txn->base_pages - pgno) {
            *err = page_bad(txn, pgno, "overflow run beyond the used pages (npages)");
            return NULL;
        }
    } else if (h->npages != 1) {
        *err = page_bad(txn, pgno, "bad page header (npages)");
        return NULL;
    }
    if (txn->verify != RP_VERIFY_OFF
        && (txn->verify == RP_VERIFY_ALWAYS
            || atomic_load_explicit(&env->verified[pgno], memory_order_relaxed) != txnid)
        && (*err = rp_page_verify(txn, p, pgno, txnid)) != RP_OK)
        return NULL;
    return p;
}

static int freelist_more(rp_txn *txn);

/* Move the entries [lo, lo + n) out of reuse. */
static void reuse_cut(rp_pgvec *reuse, size_t lo, size_t n) {
    memmove(&reuse->v[lo], &reuse->v[lo + n], (reuse->n - (lo + n)) * sizeof(uint32_t));
    reuse->n -= n;
}

/* Pick the run hot pages come from next (ALLOCATION): the lowest run of at
 * least `want` free pages; else, while the reusable pages are few and the
 * file's pre-grown zeros have room, `want` pages at the end of the used
 * pages (the file does not grow for it); else the longest run.  reuse is sorted descending, so a run p..p+n-1 is n adjacent
 * entries counting down.  Entries at its low end already searched in vain
 * (hot_skip of them) are not searched again: one pass a txn at most. */
static int pick_hot_run(rp_txn *txn, uint64_t want) {
    rp_pgvec *r = &txn->reuse;
    size_t best_lo = 0, best_len = 0;   /* a run: entries [lo, lo + len) */
    int found = 0;
    if (txn->hot_skip < r->n) {
        size_t top = r->n - txn->hot_skip, len = 1;
        best_lo = top - 1;
        best_len = 1;
        for (size_t i = top - 1; i > 0 && !found; i--) {
            len = r->v[i - 1] == r->v[i] + 1 ? len + 1 : 1;
            /* the run whose top entry is i - 1 has len pages so far */
            if (len > best_len) { best_len = len; best_lo = i - 1; }
            found = len >= want && (i == 1 || r->v[i - 2] != r->v[i - 1] + 1);
        }
        found = found || best_len >= want;
    }
    if (!found && r->n < 2 * want && !txn->fl_pgno) {
        uint64_t pgno = txn->roots.pages_used;
        if ((pgno + want) * RP_PAGE_SIZE <= txn->env->file_size) {
            txn->roots.pages_used += want;
            txn->hot_next = pgno;
            txn->hot_end = pgno + want;
            txn->hot_skip = r->n;
            return RP_OK;
        }
    }
    if (best_len == 0) return RP_NOTFOUND;
    /* Cap the run so that a huge one is not moved out and back. */
    size_t take = best_len < 1024 ? best_len : 1024;
    uint64_t low = r->v[best_lo + best_len - 1];
    txn->hot_next = low;
    txn->hot_end = low + take;
    txn->hot_skip = found ? r->n - (best_lo + best_len) : r->n - take;
    reuse_cut(r, best_lo + best_len - take, take);
    return RP_OK;
}

/* Give the unused rest of the hot run back to reuse (at commit: the free
 * list lists it; the order of reuse no longer matters then). */
static int hot_run_return(rp_txn *txn) {
    for (; txn->hot_next < txn->hot_end; txn->hot_next++) {
        int rc = rp_pgvec_push(&txn->reuse, txn->hot_next);
        if (rc) return rc;
    }
    return RP_OK;
}

/* Take a page number: loose pages first (never visible to anyone); then,
 * for a hot page, the hot run; then reusable free pages (lowest first, to
 * keep the file compact), then the end of the file. */
static int alloc_pgno(rp_txn *txn, uint32_t npages, int hot, uint64_t *out) {
    RP_ASSERT(txn->flags & RP_TXN_WRITE);
    RP_ASSERT(npages >= 1 && out);
    if (npages == 1) {
        if (txn->loose.n) { *out = txn->loose.v[--txn->loose.n]; return RP_OK; }
        if (hot) {
            txn->hot_count++;
            if (txn->hot_next == txn->hot_end && !txn->fl_saving) {
                uint64_t want = txn->env->hot_pages;
                (void)pick_hot_run(txn, want > 2 ? want : 2);
            }
            if (txn->hot_next < txn->hot_end) { *out = txn->hot_next++; return RP_OK; }
        }
        int rc = RP_OK;
        while (!txn->reuse.n && !txn->fl_saving && (rc = freelist_more(txn)) == RP_OK) {}
        if (rc != RP_OK && rc != RP_NOTFOUND) return rc;
        if (txn->reuse.n) { *out = txn->reuse.v[--txn->reuse.n]; return RP_OK; }
    } else {
        for (int rc = RP_OK;; ) {
            /* Scan from the low end for a run of npages, reading more of
             * the free list until there is one or the list ends. */
            size_t run = 1;
            for (size_t i = txn->reuse.n ? txn->reuse.n - 1 : 0; i > 0; i--) {
                run = (txn->reuse.v[i - 1] == txn->reuse.v[i] + 1) ? run + 1 : 1;
                if (run == npages) {
                    *out = txn->reuse.v[i - 1 + npages - 1];   /* the run's lowest page */
                    reuse_cut(&txn->reuse, i - 1, npages);
                    return RP_OK;
                }
            }
            if (txn->fl_saving || (rc = freelist_more(txn)) == RP_NOTFOUND) break;
            if (rc) return rc;
        }
    }
    uint64_t pgno = txn->roots.pages_used;
    if ((pgno + npages) > UINT32_MAX
        || (pgno + npages) * RP_PAGE_SIZE > txn->env->map_size)
        return RP_MAP_FULL;
    txn->roots.pages_used += npages;
    *out = pgno;
    return RP_OK;
}

/* A new page's number; hot: rewritten by nearly every commit (ALLOCATION). */
static uint8_t *page_new(rp_txn *txn, uint16_t flags, uint32_t npages, int hot,
                         uint64_t *pgno, int *err) {
    RP_ASSERT(npages == 1 || flags == P_OVERFLOW);   /* only overflow runs span pages */
    int rc = alloc_pgno(txn, npages, hot, pgno);
    if (rc) { *err = rc; return NULL; }
    uint8_t *page = calloc(1, (size_t)npages * RP_PAGE_SIZE + RP_DIRTY_TRAILER);
    if (!page) { *err = ENOMEM; return NULL; }
    rc = dirty_put(txn, *pgno, page, npages);
    if (rc) { free(page); *err = rc; return NULL; }
    rp_page_init(page, *pgno, txn->txnid, flags);
    rp_hdrw(page)->npages = npages;
    return page;
}

uint8_t *rp_page_new(rp_txn *txn, uint16_t flags, uint32_t npages,
                     uint64_t *pgno, int *err) {
    /* The free list's and the catalog's pages are rewritten by every
     * commit that changes anything; a new tree page may live long. */
    int hot = (flags & P_FREELIST) || txn->catalog_flush;
    return page_new(txn, flags, npages, hot, pgno, err);
}

int rp_page_free_pg(rp_txn *txn, uint64_t pgno, uint64_t txnid, uint32_t npages) {
    RP_ASSERT(txn->flags & RP_TXN_WRITE);
    RP_ASSERT(npages >= 1 && txnid <= txn->txnid);
    rp_pgvec *to = &txn->freed;
    if (txnid == txn->txnid) {
        rp_dirty *d = dirty_find(txn, pgno);
        if (!d || !d->page) return rp_corrupt(pgno, "freed twice in one transaction");
        free(d->page);
        d->page = NULL;
        to = &txn->loose;
    }
    for (uint32_t i = 0; i < npages; i++) {
        int rc = rp_pgvec_push(to, pgno + i);
        if (rc) return rc;
    }
    return RP_OK;
}

uint8_t *rp_page_touch(rp_txn *txn, uint64_t pgno, uint64_t txnid,
                       uint64_t *newpgno, int *err) {
    RP_ASSERT(txn->flags & RP_TXN_WRITE);
    RP_ASSERT(newpgno && err);
    if (txnid == txn->txnid) {
        rp_dirty *d = dirty_find(txn, pgno);
        if (!d || !d->page) {
            *err = rp_corrupt(pgno, "reference to a page this transaction freed");
            return NULL;
        }
        *newpgno = pgno;
        return d->page;
    }
    const uint8_t *src = rp_page_read(txn, pgno, txnid, P_BRANCH | P_LEAF, err);
    if (!src) return NULL;
    /* A page about to be edited is validated in full: the editing code
     * trusts slot offsets, so corruption must stop here. */
    const char *why = rp_page_validate(src);
    if (why) { *err = rp_corrupt(pgno, why); return NULL; }
    /* A page the previous commit wrote too (a root, the right edge of an
     * ascending run of keys, a catalog page) will most likely be written
     * by the next commit as well: hot.  A page reached at random (a leaf
     * or lower branch of a big tree) lives on after this commit: were it
     * in the hot run, the run would not come back free as a whole. */
    int hot = txnid + 1 == txn->txnid || txn->catalog_flush;
    uint8_t *dst = page_new(txn, rp_hdr(src)->flags, 1, hot, newpgno, err);
    if (!dst) return NULL;
    memcpy(dst, src, RP_PAGE_SIZE);
    rp_hdrw(dst)->pgno = *newpgno;
    rp_hdrw(dst)->txnid = txn->txnid;
    const rp_split_hint *hint = &txn->env->hints[pgno % RP_SPLIT_HINTS];
    if (hint->pgno == pgno && hint->txnid == txnid) rp_set_last_insert(dst, hint->last);
    int rc = rp_page_free_pg(txn, pgno, txnid, 1);
    if (rc) { *err = rc; return NULL; }
    return dst;
}

/* ---- tables ------------------------------------------------------------------- */

void rp_desc_encode(const rp_table *t, uint8_t out[RP_TABLE_DESC_SIZE]) {
    rp_wr64(out, t->root);
    rp_wr64(out + 8, t->root_txnid);
    rp_wr64(out + 16, t->entries);
    rp_wr64(out + 24, t->depth);
    rp_wr64(out + 32, t->pages);
}

int rp_desc_decode(rp_table *t, const void *buf, size_t len) {
    if (len != RP_TABLE_DESC_SIZE) return rp_corruptf("catalog: bad table descriptor size");
    const uint8_t *b = buf;
    t->root = rp_rd64(b);
    t->root_txnid = rp_rd64(b + 8);
    t->entries = rp_rd64(b + 16);
    t->depth = rp_rd64(b + 24);
    t->pages = rp_rd64(b + 32);
    if ((t->root == 0) != (t->depth == 0) || t->depth > RP_MAX_DEPTH)
        return rp_corruptf("catalog: bad table descriptor (root or depth)");
    return RP_OK;
}

int rp_table_get(rp_txn *txn, const char *name, size_t nlen, int create,
                 rp_table **out) {
    if (!name || nlen == 0 || nlen > RP_MAX_TABLE_NAME) return RP_BAD_TABLE;
    rp_table *t = txn->last_table;
    if (!(t && t->nlen == nlen && memcmp(t->name, name, nlen) == 0)) {
        t = NULL;
        for (size_t i = 0; i < txn->ntables; i++) {
            rp_table *c = txn->tables[i];
            if (c->nlen == nlen && memcmp(c->name, name, nlen) == 0) { t = c; break; }
        }
    }
    if (!t) {
        if (txn->ntables == txn->cap_tables) {
            size_t cap = txn->cap_tables ? txn->cap_tables * 2 : 8;
            rp_table **nt = realloc(txn->tables, cap * sizeof *nt);
            if (!nt) return ENOMEM;
            txn->tables = nt;
            txn->cap_tables = cap;
        }
        t = calloc(1, sizeof *t);
        if (!t) return ENOMEM;
        memcpy(t->name, name, nlen);
        t->nlen = (uint16_t)nlen;
        const void *val;
        size_t vlen;
        int rc = txn->catalog.root
                     ? rp_bt_get(txn, &txn->catalog, name, nlen, &val, &vlen)
                     : RP_NOTFOUND;
        if (rc == RP_OK) {
            rc = rp_desc_decode(t, val, vlen);
            t->exists = 1;
        } else if (rc == RP_NOTFOUND) {
            rc = RP_OK;
        }
        if (rc) { free(t); return rc; }
        txn->tables[txn->ntables++] = t;
    }
    txn->last_table = t;
    if (!t->exists && create) {
        memset(&t->root, 0, offsetof(rp_table, exists) - offsetof(rp_table, root));
        t->exists = 1;
        t->dirty = 1;
        t->modcount++;
    }
    *out = t;
    return RP_OK;
}

/* ---- checks ------------------------------------------------------------------- */

int rp_txn_check(rp_txn *txn, int write) {
    if (!txn) return RP_INVALID;
    if (txn->parked) return RP_BAD_TXN;
    int rc = rp_env_usable(txn->env);
    if (rc) return rc;
    if (!txn->shared && !pthread_equal(txn->owner, pthread_self())) return RP_WRONG_THREAD;
    if (txn->failed) return RP_BAD_TXN;
    if (write && !(txn->flags & RP_TXN_WRITE)) return RP_READ_ONLY;
    return RP_OK;
}

/* ---- free list ------------------------------------------------------------------ */

static int cmp_desc(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x < y) - (x > y);
}

static int pgvec_append(rp_pgvec *dst, const uint32_t *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int rc = rp_pgvec_push(dst, v[i]);
        if (rc) return rc;
    }
    return RP_OK;
}

int rp_freelist_walk(rp_txn *txn, const rp_roots *roots, rp_chain_fn chain,
                     rp_free_fn fn, void *ctx) {
    uint64_t len = roots->free_len, pgno = roots->free_pgno, t = roots->free_txnid;
    if (!pgno) return len ? rp_corruptf("free list: empty, but %llu bytes long",
                                        (unsigned long long)len) : RP_OK;
    if (len > roots->pages_used * 16 + RP_PAGE_SIZE)
        return rp_corruptf("free list: %llu bytes long, more than the file can need",
                           (unsigned long long)len);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return ENOMEM;
    uint64_t got = 0;
    int rc = RP_OK;
    for (uint64_t hops = 0; pgno; hops++) {
        if (hops > roots->pages_used) { rc = rp_corrupt(pgno, "free-list chain loops"); break; }
        const uint8_t *p = rp_page_read(txn, pgno, t, P_FREELIST, &rc);
        if (!p) break;
        uint32_t used = rp_rd32(p + RP_PAGE_HEADER + 16);
        if (used > RP_FREELIST_CAP || got + used > len) {
            rc = rp_corrupt(pgno, "free-list page holds more bytes than the list");
            break;
        }
        memcpy(buf + got, p + RP_FREELIST_HDR, used);
        got += used;
        uint64_t next = rp_rd64(p + RP_PAGE_HEADER), nt = rp_rd64(p + RP_PAGE_HEADER + 8);
        if (chain && (rc = chain(ctx, pgno, t, p)) != RP_OK) break;
        pgno = next;
        t = nt;
    }
    if (!rc && got != len) rc = rp_corruptf("free list: chain shorter than its length");
    for (uint64_t off = 0; !rc && off < len;) {
        if (len - off < 12) { rc = rp_corruptf("free list: truncated record"); break; }
        uint64_t rt = rp_rd64(buf + off);
        uint32_t n = rp_rd32(buf + off + 8);
        off += 12;
        if ((uint64_t)n * 4 > len - off || rt > roots->txnid) {
            rc = rp_corruptf("free list: bad record (length or version)");
            break;
        }
        for (uint32_t i = 0; i < n && !rc; i++) {
            uint32_t v = rp_rd32(buf + off + 4 * (size_t)i);
            if (v < RP_FIRST_DATA_PAGE || v >= roots->pages_used)
                rc = rp_corruptf("free list: lists page %u, not a data page", v);
            else rc = fn(ctx, rt, v);
        }
        off += (uint64_t)n * 4;
    }
    free(buf);
    return rc;
}

static int load_page(void *ctx, uint64_t rec_txnid, uint32_t pgno) {
    rp_txn *txn = ctx;
    if (rec_txnid <= txn->oldest) return rp_pgvec_push(&txn->reuse, pgno);
    rp_freerec *last = txn->npending ? &txn->pending[txn->npending - 1] : NULL;
    if (!last || last->txnid != rec_txnid) {
        rp_freerec *np = realloc(txn->pending, (txn->npending + 1) * sizeof *np);
        if (!np) return ENOMEM;
        txn->pending = np;
        last = &np[txn->npending++];
        memset(last, 0, sizeof *last);
        last->txnid = rec_txnid;
    }
    return rp_pgvec_push(&last->pages, pgno);
}

/* THE FREE LIST IN A WRITE TXN
 * The list is read lazily, a chain page at a time from its head, and only
 * the pages read are rewritten: the commit writes a new head -- the
 * reusable pages left over, the records still pinned, its own freed pages,
 * and the start of a record the last page read left unfinished -- whose
 * last page points at the first page not read, so the rest of the chain
 * (and of the stream) stays as it is.  A commit therefore reads and writes
 * about as much of the list as it changes, however long the list is.  New
 * records go to the head and reusable pages are taken from the head, so
 * the pages freed most recently are reused first. */

/* Take the page numbers read so far out of the records in txn->fl_carry.
 * A record the pages read so far hold only the start of (one page of the
 * list holds about a thousand page numbers; one commit's record can fill
 * many) is taken in part: its header stays in the carry, with n reduced by
 * the page numbers taken, so that the head the commit writes, ending with
 * that header, runs on into the rest of the record in the pages not read. */
static int carry_parse(rp_txn *txn) {
    uint8_t *b = txn->fl_carry;
    size_t len = txn->fl_carry_len, off = 0;
    int rc = RP_OK;
    while (!rc && len - off >= 12) {
        uint64_t rt = rp_rd64(b + off);
        uint32_t n = rp_rd32(b + off + 8);
        if ((uint64_t)n * 4 > len - off - 12 + txn->fl_left || rt >= txn->txnid)
            return rp_corruptf("free list: bad record (length or version)");
        size_t have = (len - off - 12) / 4, take = have < n ? have : n;
        for (size_t i = 0; i < take && !rc; i++) {
            uint32_t v = rp_rd32(b + off + 12 + 4 * i);
            if (v < RP_FIRST_DATA_PAGE || v >= txn->base_pages)
                rc = rp_corruptf("free list: lists page %u, not a data page", v);
            else rc = load_page(txn, rt, v);
        }
        if (take < n) {
            /* The header, counting what is left, then the bytes of a page
             * number cut by the page end (if any). */
            size_t rest = len - off - 12 - 4 * take;
            rp_wr32(b + off + 8, (uint32_t)(n - take));
            memmove(b + off + 12, b + off + 12 + 4 * take, rest);
            len = off + 12 + rest;
            break;
        }
        off += 12 + (size_t)n * 4;
    }
    if (off && len > off) memmove(b, b + off, len - off);
    txn->fl_carry_len = len - off;
    return rc;
}

/* Merge the sorted (descending) ranges v[0, mid) and v[mid, n). */
static int merge_desc(uint32_t *v, size_t mid, size_t n) {
    if (mid == 0 || mid == n || v[mid - 1] > v[mid]) return RP_OK;   /* in order */
    uint32_t *m = malloc(n * sizeof *m);
    if (!m) return ENOMEM;
    size_t a = 0, b = mid, o = 0;
    while (a < mid && b < n) m[o++] = v[a] > v[b] ? v[a++] : v[b++];
    while (a < mid) m[o++] = v[a++];
    while (b < n) m[o++] = v[b++];
    memcpy(v, m, n * sizeof *m);
    free(m);
    return RP_OK;
}

/* Keep reuse sorted descending after pages were appended from `had` on.
 * What a chain page adds is mostly the record of reusable pages a commit
 * wrote sorted (freelist_save), then a few pages of records that became
 * reusable: so the sorted start of the new pages is found in one pass,
 * only the rest is sorted, and the parts are merged in linear passes.
 * Sorting the whole set every time cost a commit on a long free list most
 * of its time (qsort of the ~1,000 entries a chain page holds). */
static int reuse_sort(rp_pgvec *r, size_t had) {
    uint32_t *v = r->v;
    size_t n = r->n, i = had + 1;
    if (n <= had + 1) return merge_desc(v, had, n);
    while (i < n && v[i - 1] > v[i]) i++;
    if (i < n) qsort(v + i, n - i, sizeof(uint32_t), cmp_desc);
    int rc = merge_desc(v + had, i - had, n - had);
    return rc ? rc : merge_desc(v, had, n);
}

/* Read the next page of the base version's chain: its reusable pages go to
 * txn->reuse (kept sorted descending), pinned records to txn->pending, and
 * the page itself is freed (the commit writes what it held into the new
 * head).  RP_NOTFOUND at the end of the chain. */
static int freelist_more(rp_txn *txn) {
    if (!txn->fl_pgno) return RP_NOTFOUND;
    if (++txn->fl_hops > txn->base_pages) return rp_corrupt(txn->fl_pgno, "free-list chain loops");
    int rc = RP_OK;
    const uint8_t *p = rp_page_read(txn, txn->fl_pgno, txn->fl_txnid, P_FREELIST, &rc);
    if (!p) return rc;
    uint32_t used = rp_rd32(p + RP_PAGE_HEADER + 16);
    if (used > RP_FREELIST_CAP || used > txn->fl_left)
        return rp_corrupt(txn->fl_pgno, "free-list page holds more bytes than the list");
    if (txn->fl_carry_len + used > txn->fl_carry_cap) {
        size_t cap = txn->fl_carry_len + used + RP_FREELIST_CAP;
        uint8_t *nb = realloc(txn->fl_carry, cap);
        if (!nb) return ENOMEM;
        txn->fl_carry = nb;
        txn->fl_carry_cap = cap;
    }
    if (used) memcpy(txn->fl_carry + txn->fl_carry_len, p + RP_FREELIST_HDR, used);
    txn->fl_carry_len += used;
    txn->fl_left -= used;
    rc = rp_page_free_pg(txn, txn->fl_pgno, txn->fl_txnid, 1);
    if (rc) return rc;
    txn->fl_pgno = rp_rd64(p + RP_PAGE_HEADER);
    txn->fl_txnid = rp_rd64(p + RP_PAGE_HEADER + 8);
    if (!txn->fl_pgno && txn->fl_left)
        return rp_corruptf("free list: chain shorter than its length");
    size_t had = txn->reuse.n;
    rc = carry_parse(txn);
    if (!rc && !txn->fl_pgno && txn->fl_carry_len) rc = rp_corruptf("free list: truncated record");
    if (!rc) rc = reuse_sort(&txn->reuse, had);
    return rc;
}

/* Reusable pages read ahead at begin: enough to find a run of hot pages
 * in (pick_hot_run) without reading the whole list. */
#define RP_FREELIST_AHEAD 64

/* Start reading the base version's free list (above). */
static int freelist_begin(rp_txn *txn) {
    const rp_roots *r = &txn->roots;
    if (!r->free_pgno && r->free_len)
        return rp_corruptf("free list: empty, but %llu bytes long", (unsigned long long)r->free_len);
    if (r->free_len > r->pages_used * 16 + RP_PAGE_SIZE)
        return rp_corruptf("free list: %llu bytes long, more than the file can need",
                           (unsigned long long)r->free_len);
    txn->fl_pgno = r->free_pgno;
    txn->fl_txnid = r->free_txnid;
    txn->fl_left = r->free_len;
    int rc = RP_OK;
    while (!rc && txn->reuse.n < RP_FREELIST_AHEAD) rc = freelist_more(txn);
    return rc == RP_NOTFOUND ? RP_OK : rc;
}

static size_t rec_bytes(size_t n) { return n ? 12 + 4 * n : 0; }

static uint8_t *put_rec(uint8_t *o, uint64_t txnid, const uint32_t *v, size_t n) {
    if (!n) return o;
    rp_wr64(o, txnid);
    rp_wr32(o + 8, (uint32_t)n);
    memcpy(o + 12, v, 4 * n);
    return o + 12 + 4 * n;
}

/* The new head's bytes, for reusable pages counted by nreuse. */
static size_t head_bytes(const rp_txn *txn, size_t nreuse) {
    size_t len = rec_bytes(nreuse) + rec_bytes(txn->freed.n) + txn->fl_carry_len;
    for (size_t i = 0; i < txn->npending; i++) len += rec_bytes(txn->pending[i].pages.n);
    return len;
}

/* Write the new head of the free list (above): [reusable now + loose] as
 * txnid 0, the still-pinned records, this commit's freed pages, the
 * unfinished record's start; then the chain pages not read. */
static int freelist_save(rp_txn *txn) {
    size_t left = (size_t)(txn->hot_end - txn->hot_next);   /* of the hot run */
    size_t len = head_bytes(txn, txn->reuse.n + txn->loose.n + left);
    size_t npages = (len + RP_FREELIST_CAP - 1) / RP_FREELIST_CAP;
    /* Allocating the chain may take pages from the reusable set (the hot
     * run first), which only shortens the stream, so npages pages are
     * always enough (trailing ones may stay empty).  No new hot run and no
     * more of the old list now: either would add pages that len does not
     * count. */
    txn->fl_saving = 1;
    uint8_t **pages = calloc(npages ? npages : 1, sizeof *pages);
    uint64_t *pgnos = calloc(npages ? npages : 1, sizeof *pgnos);
    int rc = (pages && pgnos) ? RP_OK : ENOMEM;
    for (size_t i = 0; i < npages && !rc; i++) {
        pages[i] = rp_page_new(txn, P_FREELIST, 1, &pgnos[i], &rc);
        if (!pages[i]) break;
    }
    uint8_t *stream = NULL;
    size_t sorted = txn->reuse.n;
    if (!rc) rc = hot_run_return(txn);
    if (!rc) {
        rc = pgvec_append(&txn->reuse, txn->loose.v, txn->loose.n);
        txn->loose.n = 0;
    }
    /* Written sorted, so that the next writer reads it sorted (reuse_sort). */
    if (!rc) rc = reuse_sort(&txn->reuse, sorted);
    if (!rc) {
        len = head_bytes(txn, txn->reuse.n);
        assert(len <= npages * RP_FREELIST_CAP);
        stream = malloc(len ? len : 1);
        if (!stream) rc = ENOMEM;
    }
    if (!rc) {
        uint8_t *o = put_rec(stream, 0, txn->reuse.v, txn->reuse.n);
        for (size_t i = 0; i < txn->npending; i++)
            o = put_rec(o, txn->pending[i].txnid, txn->pending[i].pages.v,
                        txn->pending[i].pages.n);
        o = put_rec(o, txn->txnid, txn->freed.v, txn->freed.n);
        if (txn->fl_carry_len) memcpy(o, txn->fl_carry, txn->fl_carry_len);
        o += txn->fl_carry_len;
        assert((size_t)(o - stream) == len);
        size_t off = 0;
        for (size_t i = 0; i < npages; i++) {
            uint8_t *p = pages[i];
            size_t used = len - off < RP_FREELIST_CAP ? len - off : RP_FREELIST_CAP;
            int last = i + 1 == npages;
            rp_wr64(p + RP_PAGE_HEADER, last ? txn->fl_pgno : pgnos[i + 1]);
            rp_wr64(p + RP_PAGE_HEADER + 8, last ? txn->fl_txnid : txn->txnid);
            rp_wr32(p + RP_PAGE_HEADER + 16, (uint32_t)used);
            memcpy(p + RP_FREELIST_HDR, stream + off, used);
            off += used;
        }
        txn->roots.free_pgno = npages ? pgnos[0] : txn->fl_pgno;
        txn->roots.free_txnid = npages ? txn->txnid : txn->fl_txnid;
        txn->roots.free_len = len + txn->fl_left;
    }
    free(stream);
    free(pages);
    free(pgnos);
    return rc;
}

/* ---- begin / end ------------------------------------------------------------------ */

static void txn_free(rp_txn *txn) {
    for (size_t i = 0; i < txn->dcap; i++)
        if (txn->dirty[i].pgno != UINT64_MAX) free(txn->dirty[i].page);
    free(txn->dirty);
    for (size_t i = 0; i < txn->ntables; i++) free(txn->tables[i]);
    free(txn->tables);
    rp_pgvec_free(&txn->freed);
    rp_pgvec_free(&txn->loose);
    rp_pgvec_free(&txn->reuse);
    free(txn->fl_carry);
    for (size_t i = 0; i < txn->npending; i++) rp_pgvec_free(&txn->pending[i].pages);
    free(txn->pending);
    free(txn);
}

/* End a transaction: release the writer mutex or the reader slot. */
static void txn_end(rp_txn *txn) {
    rp_env *env = txn->env;
    int same_process = env->fork_gen == atomic_load(&rp_fork_generation);
    if (txn->flags & RP_TXN_WRITE) {
        if (same_process) {
            pthread_mutex_lock(&env->local);
            atomic_store(&env->has_writer, 0);
            pthread_mutex_unlock(&env->local);
            rp_wunlock(env);
        }
    } else if (txn->slot && same_process) {
        rp_snapshot_end(txn->slot);
        rp_slot_put(env, txn->slot);
    }
    if (same_process) {
        pthread_mutex_lock(&env->local);
        env->ntxns--;
        pthread_mutex_unlock(&env->local);
    }
    txn_free(txn);
}

/* The previous writer died, the ring does not hold the latest version, or
 * a commit was left marked in doubt: adopt the newest meta page whose
 * commit verifies, make it durable, publish it and clear the mark.  Runs
 * with the writer mutex held. */
static int repair(rp_env *env) {
    rp_roots r;
    int rc = rp_recover_roots(env, &r);
    if (rc) return rc;
    uint64_t latest = rp_version_load(env);
    if (r.txnid < latest)
        return rp_corruptf("the lock file %s publishes version %llu, but the newest intact "
                           "version of the data file is %llu: either the lock file's shared "
                           "state is damaged (close every handle and open again to rebuild "
                           "it) or the data file lost that commit", env->lock_path,
                           (unsigned long long)latest, (unsigned long long)r.txnid);
    if (!(env->flags & RP_NOSYNC)) {
        rc = rp_io_sync(env);
        if (rc) return rc;
        /* Durable and about to be published: acknowledged (format.h). */
        if (!(env->flags & RP_RDONLY))
            (void)rp_meta_write(env, &r, RP_META_SYNCED | RP_META_ACKED, NULL);
    }
    rp_ring_publish(env, &r);
    if (r.txnid != latest) rp_version_publish(env, r.txnid);
    rp_commit_mark(env, 0);
    return RP_OK;
}

/* Slices of 50 us spent waiting for another process to resolve a dead
 * writer's commit before waiting on the writer mutex itself. */
#define RESOLVE_SPINS 2000

int rp_resolve_commit(rp_env *env) {
    for (unsigned spins = 0; rp_commit_in_doubt(env); spins++) {
        /* Whoever holds the writer mutex now got it after the death, so it
         * is resolving (repair comes first in write_begin): wait for the
         * mark to clear rather than for its whole write transaction. */
        int died = 0;
        int rc = spins < RESOLVE_SPINS ? rp_wlock_try(env, &died) : rp_wlock(env, &died);
        if (rc == RP_BUSY) {
            struct timespec ts = { 0, 50000 };
            nanosleep(&ts, NULL);
            continue;
        }
        if (rc == RP_TXN_ACTIVE) return RP_OK;   /* this thread is the writer */
        if (rc) return rc;
        rc = rp_commit_in_doubt(env) || died ? repair(env) : RP_OK;
        if (died) rp_wlock_consistent(env);
        rp_wunlock(env);
        return rc;
    }
    return RP_OK;
}

static int write_begin(rp_env *env, rp_txn *txn, int64_t timeout_ms) {
    if (env->flags & RP_RDONLY) return RP_READ_ONLY;
    pthread_mutex_lock(&env->local);
    int mine = atomic_load(&env->has_writer) && pthread_equal(env->writer, pthread_self());
    pthread_mutex_unlock(&env->local);
    if (mine) return RP_TXN_ACTIVE;
    /* Truncated or deleted lock file: refuse before touching it (SIGBUS). */
    int rc = rp_lock_check(env, 0);
    if (rc) return rc;
    int died = 0;
    rc = rp_wlock_timed(env, timeout_ms, &died);
    if (rc) return rc;
    txn->locked = 1;
    pthread_mutex_lock(&env->local);
    env->writer = pthread_self();
    atomic_store(&env->has_writer, 1);
    pthread_mutex_unlock(&env->local);
    if (died || rp_commit_marked(env)) {
        /* A writer died (or left its mark behind): its commit is settled
         * before this one reads anything. */
        rc = repair(env);
        if (died) {
            rp_reap(env, 1, NULL);
            rp_wlock_consistent(env);
        }
        if (rc) return rc;
    }
    uint64_t latest = rp_version_load(env);
    if (rp_ring_read(env, latest, &txn->roots) != RP_OK) {
        rc = repair(env);
        if (rc) return rc;
        latest = rp_version_load(env);
        if (rp_ring_read(env, latest, &txn->roots) != RP_OK)
            return rp_lock_damaged(env);   /* the lock file's ring, not the data file */
    }
    rp_reap(env, 0, NULL);
    unsigned active = 0;
    txn->oldest = rp_oldest_reader(env, latest, &active);
    if (env->max_active && active > env->max_active) return RP_VERSION_LIMIT;
    txn->txnid = latest + 1;
    txn->base_pages = txn->roots.pages_used;
    rc = freelist_begin(txn);
    /* The roots come from the lock file's ring: if the data file's own
     * record of that version says otherwise, the lock file is damaged. */
    if (rc == RP_CORRUPT && rp_meta_disowns(env, &txn->roots)) rc = rp_lock_damaged(env);
    return rc;
}

/* Begin a snapshot in slot: a dead writer's commit is resolved first, so
 * that this reader sees what the next writer will (rp_commit_in_doubt). */
static int read_begin(rp_env *env, rp_slot *slot, rp_roots *roots) {
    int rc = RP_OK;
    /* An abandoned lock file (rp_lock_check): writers under a new one do
     * not see this reader's pin. */
    if (atomic_load_explicit(&env->lk->ready, memory_order_relaxed) != 1)
        rc = RP_LOCK_CHANGED;
    else if (rp_commit_marked(env) && rp_commit_in_doubt(env))
        rc = rp_resolve_commit(env);
    if (rc == RP_OK) rc = rp_snapshot_begin(env, slot, roots);
    /* More pages than this env maps: another process grew the file beyond
     * max_size (RP_MAP_FULL, below) -- or the ring's roots are garbage. */
    if (rc == RP_OK && roots->pages_used * RP_PAGE_SIZE > env->map_size
        && rp_meta_disowns(env, roots)) {
        rp_snapshot_end(slot);
        rc = rp_lock_damaged(env);
    }
    /* Another program truncated the lock file (or the data file) and the
     * SIGBUS guard replaced lost pages with zeros (sigbus.c): the pin may
     * sit in private memory, protecting nothing, and the roots may be
     * zeros. */
    if (rp_guard_faulted(env)) {
        if (rc == RP_OK) rp_snapshot_end(slot);
        rc = rp_lock_check(env, 0);
    }
    return rc;
}

int rp_txn_begin(rp_env *env, unsigned flags, rp_txn **out) {
    return rp_txn_begin_timed(env, flags, -1, out);
}

int rp_txn_begin_timed(rp_env *env, unsigned flags, int64_t timeout_ms, rp_txn **out) {
    if (!out) return RP_INVALID;
    *out = NULL;
    int rc = rp_env_usable(env);
    if (rc) return rc;
    if (flags & ~(unsigned)RP_TXN_WRITE) return RP_INVALID;
    if (atomic_load(&env->interrupted)) return RP_CLOSED;
    rp_txn *txn = calloc(1, sizeof *txn);
    if (!txn) return ENOMEM;
    txn->env = env;
    txn->flags = flags;
    txn->owner = pthread_self();
    txn->verify = (env->flags & RP_NOVERIFY) ? RP_VERIFY_OFF : RP_VERIFY_CACHED;
    pthread_mutex_lock(&env->local);
    env->ntxns++;
    pthread_mutex_unlock(&env->local);
    if (flags & RP_TXN_WRITE) {
        rc = write_begin(env, txn, timeout_ms);
    } else {
        rc = rp_slot_get(env, &txn->slot);
        if (!rc) rc = read_begin(env, txn->slot, &txn->roots);
        txn->txnid = txn->roots.txnid;
        txn->base_pages = txn->roots.pages_used;
        if (!rc && txn->base_pages * RP_PAGE_SIZE > env->map_size) rc = RP_MAP_FULL;
    }
    if (!rc && txn->base_pages * RP_PAGE_SIZE > env->map_size) rc = RP_MAP_FULL;
    if (rc) {
        /* txn_end releases exactly what was acquired: a write txn that failed
         * before taking the mutex must not unlock it. */
        if ((flags & RP_TXN_WRITE) && !txn->locked) txn->flags = 0;
        txn_end(txn);
        return rc;
    }
    txn->catalog.root = txn->roots.cat_pgno;
    txn->catalog.root_txnid = txn->roots.cat_txnid;
    txn->catalog.exists = 1;
    *out = txn;
    return RP_OK;
}

uint64_t rp_txn_version(rp_txn *txn) {
    return txn ? txn->roots.txnid : 0;
}

int rp_txn_abort(rp_txn *txn) {
    if (!txn) return RP_OK;
    /* A parked handle pins nothing and belongs to no thread; a shared one
     * belongs to every thread (the caller serialises, see rp_txn_share). */
    if (!txn->parked && !txn->shared && !pthread_equal(txn->owner, pthread_self()))
        return RP_WRONG_THREAD;
    txn_end(txn);
    return RP_OK;
}

static void drop_table_cache(rp_txn *txn) {
    for (size_t i = 0; i < txn->ntables; i++) free(txn->tables[i]);
    txn->ntables = 0;
    txn->last_table = NULL;
}

int rp_txn_reset(rp_txn *txn) {
    if (!txn) return RP_INVALID;
    if (txn->flags & RP_TXN_WRITE) return RP_INVALID;
    if (txn->parked) return RP_BAD_TXN;
    if (!txn->shared && !pthread_equal(txn->owner, pthread_self())) return RP_WRONG_THREAD;
    int rc = rp_env_usable(txn->env);
    if (rc) return rc;
    if (txn->ncursors) return RP_BUSY;
    rp_snapshot_end(txn->slot);
    txn->parked = 1;
    txn->shared = 0;   /* a parked handle belongs to no thread; renew owns it */
    return RP_OK;
}

int rp_txn_share(rp_txn *txn) {
    if (!txn) return RP_INVALID;
    if (txn->flags & RP_TXN_WRITE) return RP_INVALID;
    if (txn->parked) return RP_BAD_TXN;
    if (txn->shared) return RP_OK;
    if (!pthread_equal(txn->owner, pthread_self())) return RP_WRONG_THREAD;
    int rc = rp_env_usable(txn->env);
    if (rc) return rc;
    txn->shared = 1;
    return RP_OK;
}

int rp_txn_refresh(rp_txn *txn) {
    if (!txn) return RP_INVALID;
    if (txn->flags & RP_TXN_WRITE) return RP_INVALID;
    int shared = txn->shared;
    int rc = rp_txn_reset(txn);
    if (!rc) rc = rp_txn_renew(txn);
    if (!rc) txn->shared = shared;
    return rc;
}

int rp_txn_renew(rp_txn *txn) {
    if (!txn) return RP_INVALID;
    if (!txn->parked) return RP_BAD_TXN;
    rp_env *env = txn->env;
    int rc = rp_env_usable(env);
    if (rc) return rc;
    if (atomic_load(&env->interrupted)) return RP_CLOSED;
    rp_roots roots;
    rc = read_begin(env, txn->slot, &roots);
    if (rc) return rc;
    if (roots.pages_used * RP_PAGE_SIZE > env->map_size) {
        rp_snapshot_end(txn->slot);
        return RP_MAP_FULL;
    }
    /* Table descriptors are per version: keep them only if it is the same. */
    if (roots.txnid != txn->roots.txnid) drop_table_cache(txn);
    txn->roots = roots;
    txn->txnid = roots.txnid;
    txn->base_pages = roots.pages_used;
    txn->catalog.root = roots.cat_pgno;
    txn->catalog.root_txnid = roots.cat_txnid;
    txn->owner = pthread_self();
    txn->failed = 0;
    txn->parked = 0;
    return RP_OK;
}

/* ---- commit ----------------------------------------------------------------- */

static int cmp_dirty(const void *a, const void *b) {
    uint64_t x = (*(rp_dirty *const *)a)->pgno, y = (*(rp_dirty *const *)b)->pgno;
    return (x > y) - (x < y);
}

/* Grow the file so that the new version's pages fit, in zero-written chunks
 * of 1/32 of the file (at least RP_GROW_MIN, at most 64 MiB), so the file
 * runs at most ~3% (or 64 MiB, or RP_GROW_MIN) above the pages in use.  Zeros, not a hole or an
 * fallocate'd (unwritten) extent: a commit's write into those would make
 * its fdatasync also commit the block allocation or the extent conversion
 * to the journal (format.h: like an append, about twice an overwrite).
 * Measured against 1/8 (at most 256 MiB), the rule before, on a loaded
 * machine: 1M random keys in commits of 1,000 (durability "none")
 * 22-27 s at 1/32, 23-27 s at 1/8, the file 206 MB against 227 MB; 300k
 * keys durable 12.7-13.8 s against 15.8-16.1 s.  A chunk is written inside
 * one commit, so a small one also keeps that commit's latency down. */
/* The smallest chunk: 256 KiB (64 pages), so that a file of a few MB
 * ends at most 256 KiB above its pages in use -- 1 MiB chunks left a
 * 6.1 MiB file of 100,000 small objects at 7 MiB (+15%).  A growth is still
 * once per 64 pages a file gains, and none while commits reuse freed
 * pages. */
#define RP_GROW_MIN (256u << 10)

static int ensure_size(rp_env *env, uint64_t pages) {
    uint64_t need = pages * RP_PAGE_SIZE;
    if (need <= env->file_size) return RP_OK;
    struct stat st;
    if (fstat(env->fd, &st)) return errno;
    env->file_size = (uint64_t)st.st_size;   /* another process may have grown it */
    if (need <= env->file_size) return RP_OK;
    uint64_t chunk = env->file_size / 32;
    if (chunk < RP_GROW_MIN) chunk = RP_GROW_MIN;
    if (chunk > (64u << 20)) chunk = 64u << 20;
    uint64_t target = (need + chunk - 1) / chunk * chunk;
    if (target > env->map_size) target = env->map_size;
    if (target < need) return RP_MAP_FULL;
    return rp_io_grow(env, target);
}

/* After a commit stands (its sync returned, or none was asked for): its
 * pages are verified versions for this process (verify.c) -- their
 * checksums were computed from the very bytes written -- so the next
 * transaction does not hash them again when it reads them (the root, the
 * catalog and the free list's head: about three 4 KiB hashes a commit). */
static void remember_written(rp_txn *txn) {
    _Atomic uint64_t *verified = txn->env->verified;
    for (size_t i = 0; i < txn->dcap; i++) {
        const rp_dirty *d = &txn->dirty[i];
        if (d->pgno != UINT64_MAX && d->page)
            atomic_store_explicit(&verified[d->pgno], txn->txnid, memory_order_relaxed);
    }
}

static int write_pages(rp_txn *txn) {
    RP_ASSERT(txn->flags & RP_TXN_WRITE);
    RP_ASSERT(txn->locked);   /* under the writer mutex */
    rp_env *env = txn->env;
    rp_dirty **list = malloc((txn->dcount ? txn->dcount : 1) * sizeof *list);
    if (!list) return ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < txn->dcap; i++)
        if (txn->dirty[i].pgno != UINT64_MAX && txn->dirty[i].page) list[n++] = &txn->dirty[i];
    qsort(list, n, sizeof *list, cmp_dirty);
    int rc = RP_OK;
    struct iovec iov[64];
    size_t i = 0;
    while (i < n && !rc) {
        int cnt = 0;
        uint64_t start = list[i]->pgno, next = start;
        while (i < n && cnt < 64 && list[i]->pgno == next) {
            rp_dirty *d = list[i];
            size_t bytes = (size_t)d->npages * RP_PAGE_SIZE;
            rp_page_hdr *h = rp_hdrw(d->page);
            h->txnid = txn->txnid;
            h->checksum = rp_page_checksum(d->page, bytes);
            if (h->flags & (P_BRANCH | P_LEAF) && rp_last_insert(d->page))
                env->hints[d->pgno % RP_SPLIT_HINTS] = (rp_split_hint){
                    .txnid = txn->txnid, .pgno = (uint32_t)d->pgno,
                    .last = rp_last_insert(d->page)};
            iov[cnt].iov_base = d->page;
            iov[cnt].iov_len = bytes;
            cnt++;
            next += d->npages;
            i++;
        }
        rc = rp_io_pwritev(env, iov, cnt, start * RP_PAGE_SIZE);
    }
    free(list);
    return rc;
}

int rp_txn_flush_catalog(rp_txn *txn) {
    int rc = RP_OK;
    txn->catalog_flush = 1;
    for (size_t i = 0; i < txn->ntables && !rc; i++) {
        rp_table *t = txn->tables[i];
        if (!t->dirty) continue;
        if (t->exists) {
            uint8_t desc[RP_TABLE_DESC_SIZE];
            rp_desc_encode(t, desc);
            rc = rp_bt_put(txn, &txn->catalog, t->name, t->nlen, desc, sizeof desc);
        } else {
            rc = txn->catalog.root ? rp_bt_del(txn, &txn->catalog, t->name, t->nlen)
                                   : RP_NOTFOUND;
            if (rc == RP_NOTFOUND) rc = RP_OK;
        }
        if (!rc) t->dirty = 0;
    }
    txn->catalog_flush = 0;
    if (rc) txn->failed = 1;   /* the catalog may be half-updated */
    return rc;
}

static int commit_write(rp_txn *txn) {
    RP_ASSERT(txn->flags & RP_TXN_WRITE);
    RP_ASSERT(txn->locked && !txn->failed && txn->ncursors == 0);   /* rp_txn_commit_ex checked */
    rp_env *env = txn->env;
    /* 1. table descriptors -> catalog */
    int rc = rp_txn_flush_catalog(txn);
    if (rc) return rc;
    txn->roots.cat_pgno = txn->catalog.root;
    txn->roots.cat_txnid = txn->catalog.root_txnid;
    /* 2. free list (allocates its own pages last) */
    rc = freelist_save(txn);
    if (rc) return rc;
    txn->roots.txnid = txn->txnid;
    /* 3. pages.  The lock file must still be the one at <path>.lock: if it
     * was deleted or replaced, another process may be writing under another
     * writer mutex, into the same free pages: writing ours could destroy
     * its acknowledged commits. */
    rc = rp_lock_check(env, 1);
    if (!rc) rc = ensure_size(env, txn->roots.pages_used);
    if (!rc) rc = write_pages(txn);
    if (rc) return rc;
    rp_fault_step(RP_STEP_PAGES);
    env->hot_pages = txn->hot_count;
    /* 4. both copies of the meta record, in one write of the two meta
     * pages (meta.c, THE META WRITE), keeping the image it replaces.  Mark
     * the commit in doubt until published (or rolled back): if this
     * process dies in between, the next reader resolves it at once
     * (rp_resolve_commit) instead of waiting for the next writer. */
    uint8_t old[2 * RP_PAGE_SIZE];
    uint32_t mflags = (env->flags & RP_NOSYNC) ? 0 : RP_META_SYNCED;
    rp_commit_mark(env, txn->txnid);
    rp_fault_step(RP_STEP_MARKED);
    rc = rp_meta_write(env, &txn->roots, mflags, old);
    if (!rc) rp_fault_step(RP_STEP_META);
    /* 5. one flush for pages and meta together */
    if (!rc && !(env->flags & RP_NOSYNC)) rc = rp_io_sync(env);
    if (rc) {
        /* Put the old image back -- unless the map lost pages (then old
         * may hold the guard's zeros, not the file's records). */
        if (rp_guard_faulted(env) || rp_meta_restore(env, old) != RP_OK)
            atomic_store(&env->panic, 1);
        rp_commit_mark(env, 0);
        return rc;
    }
    rp_fault_step(RP_STEP_SYNCED);
    /* 5b. mark it acknowledged, without a sync (format.h: torn commit or
     * damage?).  A failure here loses only the mark.  This is the one
     * write a durable commit makes after its sync: the mark must not wait
     * for a later commit or a close, since neither may come (a file
     * truncated or damaged in between would then roll back silently). */
    if (mflags) (void)rp_meta_write(env, &txn->roots, mflags | RP_META_ACKED, NULL);
    remember_written(txn);
    /* 6. publish */
    rp_ring_publish(env, &txn->roots);
    rp_fault_step(RP_STEP_RING);
    rp_version_publish(env, txn->txnid);
    rp_fault_step(RP_STEP_PUBLISHED);
    rp_commit_mark(env, 0);
    return RP_OK;
}

int rp_txn_commit_ex(rp_txn *txn, uint64_t *version) {
    if (!txn) return RP_INVALID;
    if (!txn->shared && !pthread_equal(txn->owner, pthread_self())) return RP_WRONG_THREAD;
    int rc = rp_txn_check(txn, 0);
    if (rc == RP_OK && (txn->flags & RP_TXN_WRITE)) {
        if (txn->ncursors) rc = RP_BUSY;
        else rc = commit_write(txn);
    }
    if (version) *version = rc == RP_OK ? txn->roots.txnid : 0;
    txn_end(txn);
    return rc;
}

int rp_txn_commit(rp_txn *txn) { return rp_txn_commit_ex(txn, NULL); }

/* ---- data operations -------------------------------------------------------------- */

int rp_get(rp_txn *txn, const char *table, size_t tlen, const void *key,
           size_t klen, const void **val, size_t *vlen) {
    int rc = rp_txn_check(txn, 0);
    if (rc) return rc;
    if (!val || !vlen || (!key && klen)) return RP_INVALID;
    if (klen == 0 || klen > RP_MAX_KEY) return RP_KEY_TOO_LONG;
    rp_table *t;
    rc = rp_table_get(txn, table, tlen, 0, &t);
    if (rc) return rc;
    if (!t->exists || !t->root) return RP_NOTFOUND;
    return rp_corrupt_table(rp_bt_get(txn, t, key, klen, val, vlen), t);
}

/* rp_get_many, and with f rp_get_many_filter: values f rejects are nil. */
static int get_many(rp_txn *txn, const char *table, size_t tlen, const void *keys,
                    size_t keyslen, size_t n, unsigned flags, const rp_filter *f,
                    void *out, size_t outcap, size_t *done, size_t *used) {
    int raw = (flags & RP_BATCH_RAW_VALUES) != 0;
    int rc = rp_txn_check(txn, 0);
    if (rc) return rc;
    if (!done || !used || (!keys && keyslen) || (!out && outcap)) return RP_INVALID;
    *done = 0;
    *used = 0;
    if (n > UINT32_MAX) n = UINT32_MAX;
    rp_table *t;
    rc = rp_table_get(txn, table, tlen, 0, &t);
    if (rc) return rc;
    const uint8_t *p = keys, *end = p + keyslen;
    uint8_t *o = out;
    size_t pos = RP_MP_ARRAY32_SIZE;   /* written last */
    /* The lookups are pipelined (rp_ahead): keys up to RP_AHEAD_DESCEND
     * ahead of key i are queued as they are parsed; the first that is not
     * well-formed ends the lookahead, and key i reports it at its turn. */
    rp_ahead ahead;
    rp_ahead_init(&ahead, txn, t);
    const uint8_t *q = p;   /* the next key to queue: key qi */
    size_t qi = 0;
    int qlive = ahead.levels >= 0;
    for (size_t i = 0; i < n; i++) {
        while (qlive && qi < n && rp_ahead_room(&ahead)) {
            uint32_t ql;
            if ((size_t)(end - q) < 4 || (ql = rp_rd32(q)) == 0 || ql > RP_MAX_KEY
                || (size_t)(end - q) - 4 < ql) {
                qlive = 0;
                break;
            }
            rp_ahead_queue(&ahead, NULL, qi, q + 4, ql);
            q += 4 + (size_t)ql;
            qi++;
        }
        rp_ahead_search(&ahead);
        if ((size_t)(end - p) < 4) return RP_INVALID;
        uint32_t kl = rp_rd32(p);
        if (kl == 0 || kl > RP_MAX_KEY) return RP_KEY_TOO_LONG;
        if ((size_t)(end - p) - 4 < kl) return RP_INVALID;
        const void *v = NULL;
        size_t vl = 0;
        rc = rp_ahead_get(&ahead, rp_ahead_take(&ahead, NULL, i), p + 4, kl, &v, &vl);
        if (rc && rc != RP_NOTFOUND) return rp_corrupt_table(rc, t);
        if (!rc && f) {
            int verdict;
            rc = rp_filter_run(f, v, vl, &verdict);
            if (rc == RP_CORRUPT) rp_corruptf("a value is not valid msgpack");
            if (rc) return rp_corrupt_table(rc, t);
            if (verdict == RP_FILTER_FALSE) rc = RP_NOTFOUND;   /* as if absent */
        }
        size_t need = rc == RP_NOTFOUND ? 1 : rp_mp_value_size(vl, raw);
        if (pos + need > outcap) {
            if (i == 0) { *used = pos + need; return RP_OK; }
            break;
        }
        if (rc == RP_NOTFOUND) {
            o[pos++] = 0xc0;   /* nil */
        } else {
            pos += rp_mp_value(o + pos, v, vl, raw);
        }
        (*done)++;
        p += 4 + (size_t)kl;
    }
    if (*done) rp_mp_put_array32(o, (uint32_t)*done);
    *used = *done ? pos : 0;
    /* The copies above may have read zeros the SIGBUS guard put in place of
     * a truncated file's pages (sigbus.c). */
    return rp_guard_faulted(txn->env) ? rp_guard_error(txn->env) : RP_OK;
}

int rp_get_many(rp_txn *txn, const char *table, size_t tlen, const void *keys,
                size_t keyslen, size_t n, unsigned flags, void *out, size_t outcap,
                size_t *done, size_t *used) {
    return get_many(txn, table, tlen, keys, keyslen, n, flags, NULL, out, outcap, done, used);
}

int rp_get_many_filter(rp_txn *txn, const char *table, size_t tlen, const void *keys,
                       size_t keyslen, size_t n, unsigned flags, const void *prog,
                       size_t proglen, void *out, size_t outcap, size_t *done,
                       size_t *used) {
    if (done) *done = 0;
    if (used) *used = 0;
    rp_filter f;
    int rc = rp_filter_parse(&f, prog, proglen);
    if (rc) return rc;
    return get_many(txn, table, tlen, keys, keyslen, n, flags, &f, out, outcap, done, used);
}

static int put_one(rp_txn *txn, rp_table *t, const void *key, size_t klen,
                   const void *val, size_t vlen) {
    if (!key || klen == 0 || klen > RP_MAX_KEY) return RP_KEY_TOO_LONG;
    if (vlen > RP_MAX_VALUE) return RP_VALUE_TOO_LARGE;
    if (!val && vlen) return RP_INVALID;
    int rc = rp_bt_put(txn, t, key, klen, val, vlen);
    /* Errors before any page changed leave the txn usable; the rest may have
     * left a half-split tree, so the transaction can only be aborted. */
    if (rc && rc != RP_KEY_TOO_LONG && rc != RP_VALUE_TOO_LARGE) txn->failed = 1;
    return rc;
}

int rp_put(rp_txn *txn, const char *table, size_t tlen, const void *key,
           size_t klen, const void *val, size_t vlen) {
    int rc = rp_txn_check(txn, 1);
    if (rc) return rc;
    if (!key || klen == 0 || klen > RP_MAX_KEY) return RP_KEY_TOO_LONG;
    if (vlen > RP_MAX_VALUE) return RP_VALUE_TOO_LARGE;
    rp_table *t;
    rc = rp_table_get(txn, table, tlen, 1, &t);
    if (rc) return rc;
    return put_one(txn, t, key, klen, val, vlen);
}

int rp_put_many(rp_txn *txn, const char *table, size_t tlen, const void *buf,
                size_t buflen, size_t n) {
    int rc = rp_txn_check(txn, 1);
    if (rc) return rc;
    if (!buf && buflen) return RP_INVALID;
    /* Validate the whole batch first so a bad record changes nothing. */
    const uint8_t *p = buf, *end = p + buflen;
    for (size_t i = 0; i < n; i++) {
        if ((size_t)(end - p) < 8) return RP_INVALID;
        uint32_t kl = rp_rd32(p), vl = rp_rd32(p + 4);
        if (kl == 0 || kl > RP_MAX_KEY) return RP_KEY_TOO_LONG;
        if (vl > RP_MAX_VALUE) return RP_VALUE_TOO_LARGE;
        if ((uint64_t)(end - p) - 8 < (uint64_t)kl + vl) return RP_INVALID;
        p += 8 + (size_t)kl + vl;
    }
    if (p != end) return RP_INVALID;
    rp_table *t;
    rc = rp_table_get(txn, table, tlen, 1, &t);
    if (rc) return rc;
    p = buf;
    for (size_t i = 0; i < n; i++) {
        uint32_t kl = rp_rd32(p), vl = rp_rd32(p + 4);
        rc = put_one(txn, t, p + 8, kl, p + 8 + kl, vl);
        if (rc) return rc;
        p += 8 + (size_t)kl + vl;
    }
    return RP_OK;
}

int rp_del(rp_txn *txn, const char *table, size_t tlen, const void *key, size_t klen) {
    int rc = rp_txn_check(txn, 1);
    if (rc) return rc;
    if (!key || klen == 0 || klen > RP_MAX_KEY) return RP_KEY_TOO_LONG;
    rp_table *t;
    rc = rp_table_get(txn, table, tlen, 0, &t);
    if (rc) return rc;
    if (!t->exists || !t->root) return RP_NOTFOUND;
    rc = rp_bt_del(txn, t, key, klen);
    if (rc && rc != RP_NOTFOUND) txn->failed = 1;
    return rc;
}

int rp_drop_table(rp_txn *txn, const char *table, size_t tlen) {
    int rc = rp_txn_check(txn, 1);
    if (rc) return rc;
    rp_table *t;
    rc = rp_table_get(txn, table, tlen, 0, &t);
    if (rc) return rc;
    if (!t->exists) return RP_NOTFOUND;
    rc = rp_bt_drop(txn, t);
    if (rc) { txn->failed = 1; return rc; }
    t->exists = 0;
    t->dirty = 1;
    t->modcount++;
    return RP_OK;
}

int rp_table_count(rp_txn *txn, const char *table, size_t tlen, uint64_t *out) {
    int rc = rp_txn_check(txn, 0);
    if (rc) return rc;
    if (!out) return RP_INVALID;
    rp_table *t;
    rc = rp_table_get(txn, table, tlen, 0, &t);
    if (rc) return rc;
    *out = t->exists ? t->entries : 0;
    return RP_OK;
}
