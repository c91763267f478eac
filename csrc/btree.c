/*
 * btree.c -- copy-on-write B+trees: lookup, insert, delete, drop, cursors.
 *
 * A write descends from the root touching (copying) every page on its path,
 * so the path is writable and each parent already points at its child's new
 * copy; splits then propagate upward along that path.  Deletes merge an
 * underfull page into a sibling when both fit in one page (no rotation:
 * simpler, and a quarter-full page costs only space, which compact()
 * recovers).  Values too large for half a page live in overflow runs.
 *
 * Splits follow ascending runs: a page remembers where its last insert
 * went (in memory: RP_DIRTY_TRAILER while dirty, then the env's hints
 * until the next write txn copies it), and an insert right after it splits
 * the page at the insertion point (split_insert).  Measured on 100k objects
 * of bench_objects (an index on a 100-value field): 98.5 -> 80.0 bytes an
 * object in one transaction, 99.2 -> 80.8 in transactions of 10.  Runs
 * shorter than about two pages end with a part-filled page each, which a
 * half-and-half split would have shared: an index whose values have only
 * a page of keys each can take more space than before (a model of 1000
 * runs of 200 keys: 41 -> 59 bytes a key); an index's runs grow with its
 * table.  Leaves of a few large entries hand entries to their siblings
 * before they split (shift_insert, "sibling hand-off" below).
 */
#include "tree.h"

#define PAGE_CAP (RP_PAGE_SIZE - RP_PAGE_HEADER)

typedef struct path_ent {
    uint8_t *page;
    uint64_t pgno;
    unsigned idx;
} path_ent;

/* ---- values ------------------------------------------------------------------ */

int rp_bt_value(rp_txn *txn, const rp_leaf_ent *d, const void **val, size_t *vlen) {
    RP_ASSERT(txn && d && val && vlen);
    if (!d->big) {
        *val = d->val;
        *vlen = d->vlen;
        return RP_OK;
    }
    int err = RP_OK;
    const uint8_t *ov = rp_overflow_read(txn, d->e, &err);
    if (!ov) return err;
    *val = ov + RP_PAGE_HEADER;
    *vlen = d->vlen;
    return RP_OK;
}

static uint32_t overflow_pages(size_t vlen) {
    return (uint32_t)((vlen + RP_PAGE_HEADER + RP_PAGE_SIZE - 1) / RP_PAGE_SIZE);
}

const uint8_t *rp_overflow_read(rp_txn *txn, const uint8_t *e, int *err) {
    const uint8_t *ref = rp_leaf_val(e);
    uint64_t pg = rp_rd64(ref);
    const uint8_t *ov = rp_page_read(txn, pg, rp_rd64(ref + 8), P_OVERFLOW, err);
    if (ov && rp_hdr(ov)->npages != overflow_pages(rp_leaf_vlen(e))) {
        *err = rp_corrupt(pg, "overflow run of another length than its value needs");
        return NULL;
    }
    if (ov && rp_hdr(ov)->npages > 1) {
        /* A run verified earlier is not hashed again, so nothing here has
         * touched its continuation pages; if another program truncated the
         * file inside the run, the caller's copy would fault on them and
         * the SIGBUS guard would hand it zeros.  Touch the last page (the
         * file ends at one offset: if it is there, so are the others) and
         * report a lost one now (sigbus.c). */
        (void)*(volatile const uint8_t *)(ov + (size_t)rp_hdr(ov)->npages * RP_PAGE_SIZE - 1);
        if (rp_guard_faulted(txn->env)) {
            *err = rp_guard_error(txn->env);
            return NULL;
        }
    }
    return ov;
}

/* ---- lookup -------------------------------------------------------------------- */

int rp_bt_get(rp_txn *txn, rp_table *t, const void *key, size_t klen,
              const void **val, size_t *vlen) {
    RP_ASSERT(txn && t && (key || !klen) && val && vlen);
    uint64_t pg = t->root, tx = t->root_txnid;
    int err = RP_OK;
    for (int d = 0; d < RP_MAX_DEPTH; d++) {
        const uint8_t *p = rp_page_read(txn, pg, tx, P_BRANCH | P_LEAF, &err);
        if (!p) return err;
        unsigned idx;
        int exact;
        int rc = rp_page_search(p, key, klen, &idx, &exact);
        if (rc) return rc;
        if (rp_hdr(p)->flags & P_LEAF) {
            if (!exact) return RP_NOTFOUND;
            /* Checked: a search decides keys of up to 4 bytes from the
             * slots alone, so it may not have read this entry. */
            rp_leaf_ent d;
            rc = rp_page_leaf_entry(p, idx, &d);
            if (rc) return rc;
            return rp_bt_value(txn, &d, val, vlen);
        }
        const uint8_t *e = rp_entry(p, idx);
        pg = rp_br_child(e);
        tx = rp_br_child_txnid(e);
    }
    return rp_corrupt(pg, "tree deeper than the limit");
}

/* ---- descent with copy-on-write ------------------------------------------------ */

static int set_root(rp_txn *txn, rp_table *t, uint64_t pgno) {
    RP_ASSERT(txn->flags & RP_TXN_WRITE);
    t->root = pgno;
    t->root_txnid = pgno ? txn->txnid : 0;
    t->dirty = 1;
    return RP_OK;
}

/* Touch the path to key; path[depth-1] is the leaf, its idx the position of
 * key (first >= key), *exact whether present. */
static int descend_touch(rp_txn *txn, rp_table *t, const void *key, size_t klen,
                         path_ent *path, int *depth, int *exact) {
    RP_ASSERT(txn->flags & RP_TXN_WRITE);
    RP_ASSERT(t->root != 0);   /* callers handle an empty tree */
    int err = RP_OK;
    uint64_t np;
    uint8_t *p = rp_page_touch(txn, t->root, t->root_txnid, &np, &err);
    if (!p) return err;
    if (np != t->root || t->root_txnid != txn->txnid) set_root(txn, t, np);
    for (int d = 0; d < RP_MAX_DEPTH; d++) {
        unsigned idx;
        int rc = rp_page_search(p, key, klen, &idx, exact);
        if (rc) return rc;
        path[d].page = p;
        path[d].pgno = np;
        path[d].idx = idx;
        if (rp_hdr(p)->flags & P_LEAF) {
            *depth = d + 1;
            return RP_OK;
        }
        uint8_t *e = rp_entry_w(p, idx);
        uint64_t child = rp_br_child(e), ctx = rp_br_child_txnid(e);
        uint8_t *c = rp_page_touch(txn, child, ctx, &np, &err);
        if (!c) return err;
        if (np != child || ctx != txn->txnid) {
            rp_wr64(e + 8, np);
            rp_wr64(e + 16, txn->txnid);
        }
        p = c;
    }
    return rp_corrupt(t->root, "tree deeper than the limit");
}

/* ---- insertion and splits ------------------------------------------------------ */

static int insert_at(rp_txn *txn, rp_table *t, path_ent *path, int lvl,
                     unsigned idx, const uint8_t *ent, size_t size);

static size_t build_branch(uint8_t *out, const void *key, size_t klen,
                           uint64_t child, uint64_t ctx) {
    memset(out, 0, RP_BRANCH_ENTRY_HDR);
    rp_wr16(out, (uint16_t)klen);
    rp_wr64(out + 8, child);
    rp_wr64(out + 16, ctx);
    if (klen) memcpy(out + RP_BRANCH_ENTRY_HDR, key, klen);
    return RP_BRANCH_ENTRY_HDR + klen;
}

/* True when every ancestor points at its last child: the page is the
 * rightmost of its tree, where sequential inserts land. */
static int rightmost(const path_ent *path, int lvl) {
    for (int d = 0; d < lvl; d++)
        if (path[d].idx + 1 != rp_nkeys(path[d].page)) return 0;
    return 1;
}

/* An insert at idx continues an ascending run: it lands right after the
 * page's previous insert.  On a page of a few large entries that happens
 * by chance to a quarter of random inserts, whose splits would then leave
 * a page of one entry: runs count only on pages of RP_RUN_MIN entries. */
#define RP_RUN_MIN 8
static int in_run(const uint8_t *P, unsigned idx) {
    return idx >= 1 && rp_last_insert(P) == idx && rp_nkeys(P) >= RP_RUN_MIN;
}

static int split_insert(rp_txn *txn, rp_table *t, path_ent *path, int lvl,
                        unsigned idx, const uint8_t *ent, size_t size) {
    RP_ASSERT(lvl >= 0 && lvl < RP_MAX_DEPTH && idx <= rp_nkeys(path[lvl].page));
    uint8_t *P = path[lvl].page;
    uint16_t flags = rp_hdr(P)->flags;
    int leaf = (flags & P_LEAF) != 0;
    unsigned n = rp_nkeys(P), total = n + 1;
    uint8_t *tmp = malloc(RP_PAGE_SIZE);
    const uint8_t **ptr = malloc(total * sizeof *ptr);
    size_t *sz = malloc(total * sizeof *sz);
    int rc = (tmp && ptr && sz) ? RP_OK : ENOMEM;
    if (rc) goto out;
    memcpy(tmp, P, RP_PAGE_SIZE);
    size_t sum = 0;
    for (unsigned j = 0, k = 0; j < total; j++) {
        if (j == idx) { ptr[j] = ent; sz[j] = size; }
        else { ptr[j] = rp_entry(tmp, k); sz[j] = rp_entry_size(tmp, ptr[j]); k++; }
        sum += sz[j] + RP_SLOT_SIZE;
    }
    /* Split point s: entries [0, s) stay left.  An insert right after the
     * page's previous one continues an ascending run (an index's keys
     * (value, primary key) arrive as one run per value, interleaved): the
     * split is made at the insertion point, so the run's next keys fill
     * the left page (or a page of their own, when the run is at the page's
     * end) while the keys after the run keep a page that stays full.  The
     * same holds for an append at the tree's right edge (sequential loads).
     * Anything else splits by bytes, half and half (as InnoDB does with its
     * page's last-insert position; SQLite's balance_quick and LMDB's
     * MDB_APPEND cover only the right edge). */
    unsigned s = 0;
    int run = in_run(P, idx);
    if (idx == n && n >= 1 && (run || rightmost(path, lvl))) {
        s = n;
    } else if (run) {
        size_t left = 0;
        for (unsigned j = 0; j <= idx; j++) left += sz[j] + RP_SLOT_SIZE;
        if (left <= PAGE_CAP) s = idx + 1;
    }
    if (s == 0) {
        size_t acc = 0;
        while (s < total - 1 && acc + (sz[s] + RP_SLOT_SIZE) <= sum / 2)
            acc += sz[s++] + RP_SLOT_SIZE;
        if (s == 0) acc += sz[s++] + RP_SLOT_SIZE;
        /* Entries of up to half a page (RP_MAX_INLINE_ENTRY) can leave the
         * right side over a page after the halfway cut: move the cut right
         * until it fits.  Some cut fits both sides: the first one whose
         * right side fits leaves on the left less than a page (the right
         * side one entry earlier was over a page, and an entry is at most
         * half of one). */
        while (sum - acc > PAGE_CAP) acc += sz[s++] + RP_SLOT_SIZE;
    }
    /* The separator: first key of the right page. */
    const uint8_t *se = ptr[s];
    size_t seplen = leaf ? rp_leaf_klen(se) : rp_br_klen(se);
    const uint8_t *sep = leaf ? rp_leaf_key(se) : rp_br_key(se);
    uint64_t rpg;
    uint8_t *R = rp_page_new(txn, flags, 1, &rpg, &rc);
    if (!R) goto out;
    t->pages++;
    rp_page_init(P, path[lvl].pgno, txn->txnid, flags);
    for (unsigned j = 0; j < s; j++) rp_page_insert(P, j, ptr[j], sz[j]);
    for (unsigned j = s; j < total; j++) {
        if (!leaf && j == s) {
            /* A branch page's first key is minus infinity. */
            uint8_t first[RP_BRANCH_ENTRY_HDR];
            build_branch(first, NULL, 0, rp_br_child(ptr[j]), rp_br_child_txnid(ptr[j]));
            rp_page_insert(R, 0, first, RP_BRANCH_ENTRY_HDR);
        } else {
            rp_page_insert(R, j - s, ptr[j], sz[j]);
        }
    }
    rp_set_last_insert(P, idx < s ? idx + 1 : 0);
    rp_set_last_insert(R, idx < s ? 0 : idx - s + 1);
    uint8_t bent[RP_BRANCH_ENTRY_HDR + RP_MAX_KEY];
    size_t blen = build_branch(bent, sep, seplen, rpg, txn->txnid);
    if (lvl == 0) {
        uint64_t rootpg;
        uint8_t *root = rp_page_new(txn, P_BRANCH, 1, &rootpg, &rc);
        if (!root) goto out;
        t->pages++;
        uint8_t first[RP_BRANCH_ENTRY_HDR];
        build_branch(first, NULL, 0, path[0].pgno, txn->txnid);
        rp_page_insert(root, 0, first, RP_BRANCH_ENTRY_HDR);
        rp_page_insert(root, 1, bent, blen);
        set_root(txn, t, rootpg);
        t->depth++;
        if (t->depth > RP_MAX_DEPTH) rc = rp_corrupt(rootpg, "tree deeper than the limit");
    } else {
        rc = insert_at(txn, t, path, lvl - 1, path[lvl - 1].idx + 1, bent, blen);
    }
out:
    free(tmp);
    free(ptr);
    free(sz);
    return rc;
}

/* ---- sibling hand-off -----------------------------------------------------------
 *
 * A full leaf first makes room by handing entries to its siblings under the
 * same parent: the nearest one (within RP_SHIFT_HOPS) with room takes the
 * last (first) entry of its neighbour towards the full leaf, that neighbour
 * the one of its own, and so on back to the full leaf; each move puts the
 * new first key of the right page of the pair into the parent as their
 * separator.  Without it, leaves of entries near the inline limit (two or
 * three a page) split into pages a third empty and stay so under random
 * inserts.  Measured on 20,000 values of 1,000 bytes under random keys,
 * pages in use over the payload: 1.90x splitting at once, 1.63x with one
 * hop, then (runs counted only on pages of RP_RUN_MIN entries) 1.55x, and
 * 1.49x with 3 hops, 1.46x with 5 (docs/format.md).  Only pages of fewer
 * than RP_RUN_MIN entries hand off (up to RP_SHIFT_HOPS siblings away; a
 * chain dirties a page per hop): on pages of many small entries a split
 * wastes less, and a hand-off would follow nearly every insert into a full
 * page (200,000 random puts of 100 bytes, one hop: 11% fewer pages, 12-15%
 * more CPU time a put).  Every move is a valid tree by itself,
 * so a chain stopped half way (no room in the parent for a longer
 * separator) needs no undo: the caller splits. */
#define RP_SHIFT_HOPS 5

/* Give branch entry i of parent the key of leaf page's first entry (and
 * child (child, this txn)); the caller checked the room (separator_fits). */
static void set_separator(rp_txn *txn, uint8_t *parent, unsigned i, const uint8_t *leaf,
                         uint64_t child) {
    const uint8_t *first = rp_entry(leaf, 0);
    size_t klen = rp_leaf_klen(first);
    uint8_t bent[RP_BRANCH_ENTRY_HDR + RP_MAX_KEY];
    size_t blen = build_branch(bent, rp_leaf_key(first), klen, child, txn->txnid);
    rp_page_remove(parent, i);
    rp_page_insert(parent, i, bent, blen);
}

/* Room in parent for key klen in place of entry i's key. */
static int separator_fits(const uint8_t *parent, unsigned i, size_t klen) {
    return RP_BRANCH_ENTRY_HDR + klen <= rp_page_free(parent) + rp_entry_size(parent, rp_entry(parent, i));
}

/* Child i of parent, writable (the parent then points at the copy). */
static uint8_t *child_w(rp_txn *txn, uint8_t *parent, unsigned i, int *err) {
    uint8_t *pe = rp_entry_w(parent, i);
    uint64_t pg = rp_br_child(pe), tx = rp_br_child_txnid(pe), np;
    uint8_t *c = rp_page_touch(txn, pg, tx, &np, err);
    if (!c) return NULL;
    if (!(rp_hdr(c)->flags & P_LEAF)) { *err = rp_corrupt(np, "sibling of another level"); return NULL; }
    rp_wr64(pe + 8, np);
    rp_wr64(pe + 16, txn->txnid);
    return c;
}

/* Move the boundary entry of child `from` to its neighbour `to` (= from +
 * 1: its last to to's front; from - 1: its first to to's end).  1 when
 * moved; 0 when to has no room or the parent none for the separator. */
static int move_entry(rp_txn *txn, uint8_t *parent, unsigned from, unsigned to, int *err) {
    int right = to > from;
    const uint8_t *fe = rp_entry(parent, from), *te = rp_entry(parent, to);
    int e2 = RP_OK;
    const uint8_t *F = rp_page_read(txn, rp_br_child(fe), rp_br_child_txnid(fe), P_LEAF, &e2);
    const uint8_t *T = F ? rp_page_read(txn, rp_br_child(te), rp_br_child_txnid(te), P_LEAF, &e2) : NULL;
    if (!T) { *err = e2; return 0; }
    unsigned n = rp_nkeys(F);
    if (n < 2) return 0;
    const uint8_t *m = rp_entry(F, right ? n - 1 : 0);
    size_t msize = rp_entry_size(F, m);
    if (msize + RP_SLOT_SIZE > rp_page_free(T)) return 0;
    /* The new separator: the moved key (right), or F's second key (left). */
    const uint8_t *nf = right ? m : rp_entry(F, 1);
    if (!separator_fits(parent, right ? to : from, rp_leaf_klen(nf))) return 0;
    uint8_t *Fw = child_w(txn, parent, from, err);
    uint8_t *Tw = Fw ? child_w(txn, parent, to, err) : NULL;
    if (!Tw) return 0;
    uint8_t moved[RP_MAX_INLINE_ENTRY];
    unsigned mi = right ? rp_nkeys(Fw) - 1 : 0;
    memcpy(moved, rp_entry(Fw, mi), msize);
    rp_page_remove(Fw, mi);
    rp_page_insert(Tw, right ? 0 : rp_nkeys(Tw), moved, msize);
    unsigned ri = right ? to : from;
    set_separator(txn, parent, ri, right ? Tw : Fw, rp_br_child(rp_entry(parent, ri)));
    return 1;
}

/* Put ent, which belongs at an end of leaf P (path[lvl]), into P's
 * neighbour instead: the front of the right one (its new first key) or the
 * end of the left one (P's first key becomes P's separator, above ent).
 * 1 when placed; 0 when the neighbour has no room or the parent none for
 * the separator. */
static int place_in_sibling(rp_txn *txn, path_ent *path, int lvl, int right,
                            const uint8_t *ent, size_t size, int *err) {
    uint8_t *P = path[lvl].page, *parent = path[lvl - 1].page;
    unsigned pidx = path[lvl - 1].idx, si = right ? pidx + 1 : pidx - 1;
    const uint8_t *se = rp_entry(parent, si);
    const uint8_t *S = rp_page_read(txn, rp_br_child(se), rp_br_child_txnid(se), P_LEAF, err);
    if (!S || size + RP_SLOT_SIZE > rp_page_free(S)) return 0;
    if (!separator_fits(parent, right ? si : pidx,
                        right ? rp_leaf_klen(ent) : rp_leaf_klen(rp_entry(P, 0))))
        return 0;
    uint8_t *Sw = child_w(txn, parent, si, err);
    if (!Sw) return 0;
    unsigned at = right ? 0 : rp_nkeys(Sw);
    rp_page_insert(Sw, at, ent, size);
    rp_set_last_insert(Sw, at + 1);
    unsigned ri = right ? si : pidx;
    set_separator(txn, parent, ri, right ? Sw : P, rp_br_child(rp_entry(parent, ri)));
    return 1;
}

/* Leaf P (path[lvl]) has no room for ent at idx: hand entries to siblings
 * (above).  1 when ent is in place, 0 when the caller must split. */
static int shift_insert(rp_txn *txn, rp_table *t, path_ent *path, int lvl, unsigned idx,
                        const uint8_t *ent, size_t size, int *err) {
    uint8_t *P = path[lvl].page, *parent = path[lvl - 1].page;
    unsigned n = rp_nkeys(P), pidx = path[lvl - 1].idx, pn = rp_nkeys(parent);
    for (int right = 1; right >= 0; right--) {
        /* The nearest sibling with room for what its neighbour hands on. */
        unsigned hops = 0;
        for (unsigned d = 1; d <= RP_SHIFT_HOPS; d++) {
            if (right ? pidx + d >= pn : pidx < d) break;
            const uint8_t *se = rp_entry(parent, right ? pidx + d : pidx - d);
            const uint8_t *S = rp_page_read(txn, rp_br_child(se), rp_br_child_txnid(se), P_LEAF, err);
            if (!S) return 0;
            if (rp_page_free(S) >= size + RP_SLOT_SIZE) { hops = d; break; }
        }
        if (!hops) continue;
        /* Make room one hop from P, far end first. */
        unsigned d = hops;
        while (d > 1 && move_entry(txn, parent, right ? pidx + d - 1 : pidx - d + 1,
                                   right ? pidx + d : pidx - d, err))
            d--;
        if (*err) return 0;
        if (d > 1) continue;
        t->modcount++;
        int boundary = right ? idx == n : idx == 0;
        unsigned si = right ? pidx + 1 : pidx - 1;
        if (boundary) {
            if (place_in_sibling(txn, path, lvl, right, ent, size, err)) return 1;
            if (*err) return 0;
            continue;
        }
        /* P hands its boundary entry on, then takes ent -- except where ent
         * would become P's first key (idx 1, leftwards), above which the
         * new separator would then lie. */
        size_t msize = rp_entry_size(P, rp_entry(P, right ? n - 1 : 0));
        if (size > rp_page_free(P) + msize || (!right && idx == 1)) continue;
        if (!move_entry(txn, parent, pidx, si, err)) {
            if (*err) return 0;
            continue;
        }
        unsigned at = right ? idx : idx - 1;
        rp_page_insert(P, at, ent, size);
        rp_set_last_insert(P, at + 1);
        return 1;
    }
    return 0;
}

/* ---- ascending runs that meet: moving a run's neighbours out ------------------
 *
 * Ascending runs interleaved in one table (an index's keys (value, primary
 * key): one run per value, in turn) meet in leaves holding the end of one
 * run and the first keys of the next.  Splitting such a leaf at the
 * insertion point (split_insert) keeps the run's page filling, but leaves
 * the next run's first keys alone in the new page, where no later insert
 * lands (the next run grows at its own end, further right): a leaf nearly
 * empty for good at the start of every run.  Two moves avoid it, both
 * between a full leaf and a sibling under the same parent:
 *   - a run's insert into a full leaf first hands the entries after the
 *     insertion point to the right sibling when they all fit there (they
 *     are the start of the run it holds);
 *   - a run reaching the end of a full leaf goes on at the front of the
 *     right sibling when that has room (run_to_right);
 *   - a full leaf whose left sibling is under half full moves its first
 *     entries before the insertion point into it, as many as fit (a start
 *     of a run that was left alone earlier, refilled by the run itself).
 * The insert then takes the room made, instead of a split.  Measured on
 * 100,000 objects of bench_objects' Item (an index of 100 interleaved
 * runs): index leaves 515 -> 474 (77.6% -> 84.3% full; the rest is mostly
 * each run's last leaf); engine instructions a put (callgrind, 100,000
 * random 16-byte keys and 100,000 keys of 100 interleaved runs) +1.8%,
 * the moves.  Random inserts rarely meet a sibling under half full (a
 * split leaves two halves) and seldom a run, so they pay about one
 * sibling read a split. */

/* Move P's (path[lvl]) first m entries to the end of its left sibling, or
 * (right) its last m entries to the front of its right sibling, and give
 * the parent the new separator.  1 when moved; 0 when the sibling has no
 * room or the parent none for the separator. */
static int move_entries(rp_txn *txn, rp_table *t, path_ent *path, int lvl, int right,
                        unsigned m, int *err) {
    uint8_t *P = path[lvl].page, *parent = path[lvl - 1].page;
    unsigned n = rp_nkeys(P), pidx = path[lvl - 1].idx, si = right ? pidx + 1 : pidx - 1;
    unsigned first = right ? n - m : 0;      /* P's entries [first, first + m) move */
    RP_ASSERT(m >= 1 && m < n);
    const uint8_t *se = rp_entry(parent, si);
    const uint8_t *S = rp_page_read(txn, rp_br_child(se), rp_br_child_txnid(se), P_LEAF, err);
    if (!S) return 0;
    size_t bytes = 0;
    for (unsigned j = first; j < first + m; j++)
        bytes += rp_entry_size(P, rp_entry(P, j)) + RP_SLOT_SIZE;
    /* The new separator: the first moved key (right), or P's new first. */
    const uint8_t *sep = rp_entry(P, right ? first : m);
    if (bytes > rp_page_free(S) || !separator_fits(parent, right ? si : pidx, rp_leaf_klen(sep)))
        return 0;
    uint8_t *Sw = child_w(txn, parent, si, err);
    if (!Sw) return 0;
    uint8_t tmp[RP_PAGE_SIZE];
    memcpy(tmp, P, RP_PAGE_SIZE);
    unsigned at = right ? 0 : rp_nkeys(Sw);
    for (unsigned j = first; j < first + m; j++) {
        const uint8_t *e = rp_entry(tmp, j);
        rp_page_insert(Sw, at++, e, rp_entry_size(tmp, e));
    }
    rp_page_init(P, path[lvl].pgno, txn->txnid, rp_hdr(tmp)->flags);
    for (unsigned j = right ? 0 : m, k = 0; k < n - m; j++, k++) {
        const uint8_t *e = rp_entry(tmp, j);
        rp_page_insert(P, k, e, rp_entry_size(tmp, e));
    }
    unsigned ri = right ? si : pidx;
    set_separator(txn, parent, ri, right ? Sw : P, rp_br_child(rp_entry(parent, ri)));
    t->modcount++;
    return 1;
}

/* A run reaching the end of full leaf P goes on at the front of P's right
 * sibling when that has room (the new key becomes its first; 1 when
 * placed), instead of opening a page of its own. */
static int run_to_right(rp_txn *txn, rp_table *t, path_ent *path, int lvl, unsigned idx,
                        const uint8_t *ent, size_t size, int *err) {
    const uint8_t *P = path[lvl].page;
    if (!in_run(P, idx) || idx != rp_nkeys(P) || path[lvl - 1].idx + 1 >= rp_nkeys(path[lvl - 1].page))
        return 0;
    if (!place_in_sibling(txn, path, lvl, 1, ent, size, err)) return 0;
    t->modcount++;
    return 1;
}

/* Make room in full leaf P for an insert at *idx by the moves above; the
 * insert's index in P is updated.  1 when P has room for size bytes. */
static int make_room(rp_txn *txn, rp_table *t, path_ent *path, int lvl, unsigned *idx,
                     size_t size, int *err) {
    uint8_t *P = path[lvl].page;
    const uint8_t *parent = path[lvl - 1].page;
    unsigned n = rp_nkeys(P), pidx = path[lvl - 1].idx;
    if (in_run(P, *idx) && *idx < n && pidx + 1 < rp_nkeys(parent) &&
        move_entries(txn, t, path, lvl, 1, n - *idx, err))
        return size + RP_SLOT_SIZE <= rp_page_free(P);
    if (*err || pidx == 0 || *idx < 2) return 0;
    const uint8_t *le = rp_entry(parent, pidx - 1);
    const uint8_t *L = rp_page_read(txn, rp_br_child(le), rp_br_child_txnid(le), P_LEAF, err);
    if (!L || rp_page_free(L) <= PAGE_CAP / 2) return 0;
    /* As many of P's first entries as fit, keeping the one before the
     * insertion point (the new key must not become P's first: the
     * separator above P would then exceed it). */
    unsigned m = 0;
    size_t acc = 0, room = rp_page_free(L);
    while (m + 1 < *idx) {
        size_t need = rp_entry_size(P, rp_entry(P, m)) + RP_SLOT_SIZE;
        if (acc + need > room) break;
        acc += need;
        m++;
    }
    if (m == 0 || !move_entries(txn, t, path, lvl, 0, m, err)) return 0;
    *idx -= m;
    unsigned last = rp_last_insert(P);
    rp_set_last_insert(P, last > m ? last - m : 0);
    return size + RP_SLOT_SIZE <= rp_page_free(P);
}

static int insert_at(rp_txn *txn, rp_table *t, path_ent *path, int lvl,
                     unsigned idx, const uint8_t *ent, size_t size) {
    RP_ASSERT(txn->flags & RP_TXN_WRITE);
    RP_ASSERT(lvl >= 0 && lvl < RP_MAX_DEPTH && idx <= rp_nkeys(path[lvl].page));
    uint8_t *P = path[lvl].page;
    if (size + RP_SLOT_SIZE <= rp_page_free(P)) {
        rp_page_insert(P, idx, ent, size);
        rp_set_last_insert(P, idx + 1);
        return RP_OK;
    }
    /* A leaf of a few large entries first hands entries to its siblings,
     * others first move a run's neighbours out (make_room) -- unless
     * appending at the tree's right edge, where splits fill pages; then
     * they split, following ascending runs (split_insert). */
    int append = idx == rp_nkeys(P) && rightmost(path, lvl);
    if (lvl > 0 && (rp_hdr(P)->flags & P_LEAF) && !append) {
        int err = RP_OK;
        if (rp_nkeys(P) < RP_RUN_MIN) {
            if (shift_insert(txn, t, path, lvl, idx, ent, size, &err)) return RP_OK;
        } else if (run_to_right(txn, t, path, lvl, idx, ent, size, &err)) {
            return RP_OK;
        } else if (!err && make_room(txn, t, path, lvl, &idx, size, &err)) {
            rp_page_insert(P, idx, ent, size);
            rp_set_last_insert(P, idx + 1);
            return RP_OK;
        }
        if (err) return err;
    }
    return split_insert(txn, t, path, lvl, idx, ent, size);
}

static int free_value(rp_txn *txn, rp_table *t, const uint8_t *e) {
    if (!rp_leaf_big(e)) return RP_OK;
    const uint8_t *ref = rp_leaf_val(e);
    int err = RP_OK;
    const uint8_t *ov = rp_overflow_read(txn, e, &err);
    if (!ov) return err;
    uint32_t np = rp_hdr(ov)->npages;
    t->pages -= np;
    return rp_page_free_pg(txn, rp_rd64(ref), rp_rd64(ref + 8), np);
}

int rp_bt_put(rp_txn *txn, rp_table *t, const void *key, size_t klen,
              const void *val, size_t vlen) {
    RP_ASSERT(txn->flags & RP_TXN_WRITE);
    RP_ASSERT(t && key && (val || !vlen));   /* lengths: checked by put_one, or read from a page */
    /* An overflow entry's head and ref (at most 2 + RP_MAX_KEY + 5 + 16
     * bytes) fit too. */
    uint8_t ent[RP_MAX_INLINE_ENTRY];
    _Static_assert(2 + RP_MAX_KEY + RP_VARINT_MAX + RP_BIG_REF <= RP_MAX_INLINE_ENTRY,
                   "an overflow entry fits the entry buffer");
    size_t size;
    int rc, err = RP_OK;
    if (rp_leaf_inline(klen, vlen)) {
        size = rp_leaf_put_head(ent, key, klen, vlen, 0);
        if (vlen) memcpy(ent + size, val, vlen);
        size += vlen;
    } else {
        /* The value goes to an overflow run, written before any page of the
         * tree changes (val may point into a page this put will free). */
        uint32_t np = overflow_pages(vlen);
        uint64_t opg;
        uint8_t *ov = rp_page_new(txn, P_OVERFLOW, np, &opg, &err);
        if (!ov) return err;
        memcpy(ov + RP_PAGE_HEADER, val, vlen);
        t->pages += np;
        size = rp_leaf_put_head(ent, key, klen, vlen, 1);
        rp_wr64(ent + size, opg);
        rp_wr64(ent + size + 8, txn->txnid);
        size += RP_BIG_REF;
    }
    /* Ascending loads: a key after the last one of the rightmost leaf goes
     * at its end, and that leaf (already copied in this txn) is known from
     * the previous put if nothing changed the table since (modcount), so
     * the descent is skipped while the key fits without a split. */
    if (t->tail && t->tail_mod == t->modcount) {
        uint8_t *L = t->tail;
        unsigned n = rp_nkeys(L);
        if (n && size + RP_SLOT_SIZE <= rp_page_free(L)) {
            const uint8_t *last = rp_entry(L, n - 1);
            if (rp_keycmp(key, klen, rp_leaf_key(last), rp_leaf_klen(last)) > 0) {
                rp_page_insert(L, n, ent, size);
                rp_set_last_insert(L, n + 1);
                t->entries++;
                t->modcount++;
                t->dirty = 1;
                t->tail_mod = t->modcount;
                return RP_OK;
            }
        }
    }
    t->modcount++;
    t->dirty = 1;
    if (!t->root) {
        uint64_t pg;
        uint8_t *leaf = rp_page_new(txn, P_LEAF, 1, &pg, &err);
        if (!leaf) return err;
        rp_page_insert(leaf, 0, ent, size);
        set_root(txn, t, pg);
        t->depth = 1;
        t->pages++;
        t->entries = 1;
        return RP_OK;
    }
    path_ent path[RP_MAX_DEPTH];
    int depth, exact;
    rc = descend_touch(txn, t, key, klen, path, &depth, &exact);
    if (rc) return rc;
    path_ent *lf = &path[depth - 1];
    if (exact) {
        rc = free_value(txn, t, rp_entry(lf->page, lf->idx));
        if (rc) return rc;
        rp_page_remove(lf->page, lf->idx);
    } else {
        t->entries++;
    }
    /* Without a split the leaf stays where it is: remember it if it is the
     * rightmost one (a split makes new pages; the next put finds them). */
    int fits = size + RP_SLOT_SIZE <= rp_page_free(lf->page);
    rc = insert_at(txn, t, path, depth - 1, lf->idx, ent, size);
    if (!rc && fits && rightmost(path, depth - 1)) {
        t->tail = lf->page;
        t->tail_mod = t->modcount;
    }
    return rc;
}

/* ---- deletion and merges ------------------------------------------------------ */

static size_t page_used(const uint8_t *p) { return PAGE_CAP - rp_page_free(p); }

/* Append all entries of R to L (same level); for branches R's first entry
 * takes the separator key sep. */
static void merge_into(uint8_t *L, const uint8_t *R, const uint8_t *sep, size_t seplen) {
    int leaf = (rp_hdr(L)->flags & P_LEAF) != 0;
    unsigned base = rp_nkeys(L), n = rp_nkeys(R);
    for (unsigned j = 0; j < n; j++) {
        const uint8_t *e = rp_entry(R, j);
        if (!leaf && j == 0) {
            uint8_t bent[RP_BRANCH_ENTRY_HDR + RP_MAX_KEY];
            size_t bl = build_branch(bent, sep, seplen, rp_br_child(e), rp_br_child_txnid(e));
            rp_page_insert(L, base + j, bent, bl);
        } else {
            rp_page_insert(L, base + j, e, rp_entry_size(R, e));
        }
    }
}

static int rebalance(rp_txn *txn, rp_table *t, path_ent *path, int lvl) {
    RP_ASSERT(txn->flags & RP_TXN_WRITE);
    RP_ASSERT(lvl >= 0 && lvl < RP_MAX_DEPTH);
    uint8_t *P = path[lvl].page;
    int leaf = (rp_hdr(P)->flags & P_LEAF) != 0;
    unsigned n = rp_nkeys(P);
    int err = RP_OK;
    if (lvl == 0) {
        if (leaf && n == 0) {
            t->pages--;
            t->depth = 0;
            int rc = rp_page_free_pg(txn, path[0].pgno, txn->txnid, 1);
            set_root(txn, t, 0);
            return rc;
        }
        if (!leaf && n == 1) {
            const uint8_t *e = rp_entry(P, 0);
            uint64_t child = rp_br_child(e), ctx = rp_br_child_txnid(e);
            int rc = rp_page_free_pg(txn, path[0].pgno, txn->txnid, 1);
            t->root = child;
            t->root_txnid = ctx;
            t->dirty = 1;
            t->depth--;
            t->pages--;
            return rc;
        }
        return RP_OK;
    }
    if (page_used(P) >= PAGE_CAP / 4 && (leaf || n >= 2)) return RP_OK;
    uint8_t *parent = path[lvl - 1].page;
    unsigned pidx = path[lvl - 1].idx, pn = rp_nkeys(parent);
    if (pn < 2) return rebalance(txn, t, path, lvl - 1);
    /* Merge the right one of (P, sibling) into the left one. */
    unsigned li = pidx > 0 ? pidx - 1 : pidx, ri = li + 1;
    uint8_t *lent = rp_entry_w(parent, li);
    uint8_t *rent = rp_entry_w(parent, ri);
    uint64_t rpg = rp_br_child(rent), rtx = rp_br_child_txnid(rent);
    const uint8_t *R = rp_page_read(txn, rpg, rtx, P_BRANCH | P_LEAF, &err);
    if (!R) return err;
    if (!(rp_hdr(R)->flags & rp_hdr(P)->flags)) return rp_corrupt(rpg, "sibling of another level");
    size_t seplen = rp_br_klen(rent);
    size_t need = page_used(R) + (leaf ? 0 : seplen);
    uint64_t lpg = rp_br_child(lent), ltx = rp_br_child_txnid(lent);
    const uint8_t *Lr = rp_page_read(txn, lpg, ltx, P_BRANCH | P_LEAF, &err);
    if (!Lr) return err;
    if (page_used(Lr) + need > PAGE_CAP) return RP_OK;   /* cannot merge */
    const char *why = rp_page_validate(R);
    if (why) return rp_corrupt(rpg, why);
    uint64_t nl;
    uint8_t *L = rp_page_touch(txn, lpg, ltx, &nl, &err);
    if (!L) return err;
    if (nl != lpg || ltx != txn->txnid) {
        rp_wr64(lent + 8, nl);
        rp_wr64(lent + 16, txn->txnid);
    }
    uint8_t sep[RP_MAX_KEY];
    memcpy(sep, rp_br_key(rent), seplen);
    merge_into(L, R, sep, seplen);
    t->pages--;
    int rc = rp_page_free_pg(txn, rpg, rtx, 1);   /* R's buffer dies here */
    if (rc) return rc;
    rp_page_remove(parent, ri);
    return rebalance(txn, t, path, lvl - 1);
}

int rp_bt_del(rp_txn *txn, rp_table *t, const void *key, size_t klen) {
    RP_ASSERT(txn->flags & RP_TXN_WRITE);
    RP_ASSERT(t && t->root && key && klen > 0 && klen <= RP_MAX_KEY);   /* rp_del checked */
    const void *v;
    size_t vl;
    int rc = rp_bt_get(txn, t, key, klen, &v, &vl);   /* absent: touch nothing */
    if (rc) return rc;
    path_ent path[RP_MAX_DEPTH];
    int depth, exact;
    rc = descend_touch(txn, t, key, klen, path, &depth, &exact);
    if (rc) return rc;
    if (!exact) return rp_corrupt(path[depth - 1].pgno, "key found by a lookup, not by the descent");
    path_ent *lf = &path[depth - 1];
    rc = free_value(txn, t, rp_entry(lf->page, lf->idx));
    if (rc) return rc;
    rp_page_remove(lf->page, lf->idx);
    t->entries--;
    t->modcount++;
    t->dirty = 1;
    return rebalance(txn, t, path, depth - 1);
}

static int drop_tree(rp_txn *txn, rp_table *t, uint64_t pg, uint64_t tx, int d) {
    if (d >= RP_MAX_DEPTH) return rp_corrupt(pg, "tree deeper than the limit");
    int err = RP_OK;
    const uint8_t *p = rp_page_read(txn, pg, tx, P_BRANCH | P_LEAF, &err);
    if (!p) return err;
    const char *why = rp_page_validate(p);
    if (why) return rp_corrupt(pg, why);
    for (unsigned i = 0; i < rp_nkeys(p); i++) {
        const uint8_t *e = rp_entry(p, i);
        int rc = (rp_hdr(p)->flags & P_LEAF)
                     ? free_value(txn, t, e)
                     : drop_tree(txn, t, rp_br_child(e), rp_br_child_txnid(e), d + 1);
        if (rc) return rc;
    }
    return rp_page_free_pg(txn, pg, tx, 1);
}

int rp_bt_drop(rp_txn *txn, rp_table *t) {
    RP_ASSERT(txn->flags & RP_TXN_WRITE);
    RP_ASSERT(t && t != &txn->catalog);
    int rc = t->root ? drop_tree(txn, t, t->root, t->root_txnid, 0) : RP_OK;
    if (rc) return rc;
    t->root = t->root_txnid = t->entries = t->depth = t->pages = 0;
    t->modcount++;
    t->dirty = 1;
    return RP_OK;
}

/* ---- cursors ------------------------------------------------------------------- */

void rp_cursor_init(rp_cursor *c, rp_txn *txn, rp_table *t) {
    RP_ASSERT(c);   /* txn and t may be NULL: a cursor that fails its first seek */
    memset(c, 0, sizeof *c);
    c->txn = txn;
    c->table = t;
}

/* Descend from the root: towards key (GE position) or to an edge
 * (edge < 0: leftmost, edge > 0: rightmost). */
static int cur_descend(rp_cursor *c, const void *key, size_t klen, int edge, int *exact) {
    RP_ASSERT(c && exact && (edge != 0 || key || !klen));
    rp_table *t = c->table;
    c->depth = 0;
    c->valid = 0;
    *exact = 0;
    c->modcount = t->modcount;
    if (!t->exists || !t->root) return RP_NOTFOUND;
    uint64_t pg = t->root, tx = t->root_txnid;
    int err = RP_OK;
    for (int d = 0; d < RP_MAX_DEPTH; d++) {
        const uint8_t *p = rp_page_read(c->txn, pg, tx, P_BRANCH | P_LEAF, &err);
        if (!p) return err;
        unsigned idx, n = rp_nkeys(p);
        if (edge < 0) idx = 0;
        else if (edge > 0) idx = n ? n - 1 : 0;
        else {
            int rc = rp_page_search(p, key, klen, &idx, exact);
            if (rc) return rc;
        }
        c->stack[d].page = p;
        c->stack[d].idx = idx;
        c->depth = d + 1;
        if (rp_hdr(p)->flags & P_LEAF) return RP_OK;
        const uint8_t *e;
        int rc = rp_page_entry(p, idx, &e);
        if (rc) return rc;
        pg = rp_br_child(e);
        tx = rp_br_child_txnid(e);
    }
    return rp_corrupt(pg, "tree deeper than the limit");
}

/* Descend to the edge (dir > 0: leftmost) of the subtree below level lvl. */
static int cur_down(rp_cursor *c, int lvl, int dir) {
    RP_ASSERT(lvl >= 0 && lvl < c->depth && dir != 0);
    int err = RP_OK;
    for (int d = lvl; d + 1 < RP_MAX_DEPTH; d++) {
        const uint8_t *p = c->stack[d].page;
        if (rp_hdr(p)->flags & P_LEAF) { c->depth = d + 1; return RP_OK; }
        const uint8_t *e;
        int rc = rp_page_entry(p, c->stack[d].idx, &e);
        if (rc) return rc;
        const uint8_t *cp = rp_page_read(c->txn, rp_br_child(e), rp_br_child_txnid(e),
                                         P_BRANCH | P_LEAF, &err);
        if (!cp) return err;
        unsigned n = rp_nkeys(cp);
        c->stack[d + 1].page = cp;
        c->stack[d + 1].idx = dir > 0 ? 0 : (n ? n - 1 : 0);
    }
    return rp_corrupt(rp_hdr(c->stack[lvl].page)->pgno, "tree deeper than the limit");
}

/* Move one entry in direction dir; RP_NOTFOUND past the end.  Also used to
 * leave an empty leaf or a GE position past a leaf's last entry. */
static int cur_move(rp_cursor *c, int dir, int from_gap) {
    RP_ASSERT(c->depth > 0 && dir != 0);   /* positioned by a descent */
    for (int guard = 0; guard < 1 << 20; guard++) {
        int lvl = c->depth - 1;
        const uint8_t *leaf = c->stack[lvl].page;
        unsigned n = rp_nkeys(leaf);
        unsigned *idx = &c->stack[lvl].idx;
        if (from_gap) {
            /* Position idx is "between": valid if it names an entry. */
            if (dir > 0 && *idx < n) return RP_OK;
            if (dir < 0 && *idx > 0 && *idx - 1 < n) { (*idx)--; return RP_OK; }
        } else {
            if (dir > 0 && *idx + 1 < n) { (*idx)++; return RP_OK; }
            if (dir < 0 && *idx > 0 && n) { (*idx)--; return RP_OK; }
        }
        /* Climb to the first ancestor that has a neighbour in direction dir. */
        int d = lvl - 1;
        while (d >= 0) {
            unsigned pn = rp_nkeys(c->stack[d].page);
            if (dir > 0 && c->stack[d].idx + 1 < pn) { c->stack[d].idx++; break; }
            if (dir < 0 && c->stack[d].idx > 0) { c->stack[d].idx--; break; }
            d--;
        }
        if (d < 0) { c->valid = 0; return RP_NOTFOUND; }
        int rc = cur_down(c, d, dir);
        if (rc) return rc;
        lvl = c->depth - 1;
        n = rp_nkeys(c->stack[lvl].page);
        if (n) return RP_OK;   /* landed on an edge entry */
        from_gap = 0;          /* an empty leaf: keep going */
    }
    return rp_corruptf("a cursor met over a million empty leaves in a row");
}

/* Current entry's key and value; saves the key for re-seeking in write txns. */
static int cur_entry(rp_cursor *c, const void **k, size_t *kl, const void **v, size_t *vl) {
    RP_ASSERT(c->depth > 0 && c->depth <= RP_MAX_DEPTH);
    rp_leaf_ent d;
    int rc = rp_page_leaf_entry(c->stack[c->depth - 1].page, c->stack[c->depth - 1].idx, &d);
    if (rc) return rc;
    c->valid = 1;
    const void *kp = d.key;
    size_t klen = d.klen;
    if (c->table == &c->txn->catalog) {
        if (v) *v = NULL;
        if (vl) *vl = 0;
    } else if (v || vl) {
        const void *vp;
        size_t vlen;
        rc = rp_bt_value(c->txn, &d, &vp, &vlen);
        if (rc) return rc;
        if (v) *v = vp;
        if (vl) *vl = vlen;
    }
    if (c->txn->flags & RP_TXN_WRITE) {
        if (klen > c->kcap) {
            uint8_t *nk = realloc(c->key, RP_MAX_KEY);
            if (!nk) return ENOMEM;
            c->key = nk;
            c->kcap = RP_MAX_KEY;
        }
        memcpy(c->key, kp, klen);
        c->klen = klen;
    }
    if (k) *k = kp;
    if (kl) *kl = klen;
    return RP_OK;
}

static int cur_seek(rp_cursor *c, int mode, const void *key, size_t klen) {
    int exact = 0, rc;
    switch (mode) {
    case RP_SEEK_FIRST:
        rc = cur_descend(c, NULL, 0, -1, &exact);
        return rc ? rc : cur_move(c, +1, 1);
    case RP_SEEK_LAST:
        rc = cur_descend(c, NULL, 0, +1, &exact);
        if (rc) return rc;
        c->stack[c->depth - 1].idx++;   /* gap after the last entry */
        return cur_move(c, -1, 1);
    case RP_SEEK_GE:
        rc = cur_descend(c, key, klen, 0, &exact);
        return rc ? rc : cur_move(c, +1, 1);
    case RP_SEEK_LT:
        rc = cur_descend(c, key, klen, 0, &exact);
        return rc ? rc : cur_move(c, -1, 1);
    default:
        return RP_INVALID;
    }
}

/* After the table changed under the cursor (write txn), land again next to
 * the saved key: on it if it still exists (*moved = 0), else on its
 * neighbour in direction dir (*moved = 1). */
static int cur_fix(rp_cursor *c, int dir, int *moved) {
    *moved = 0;
    if (c->modcount == c->table->modcount || !c->valid) return RP_OK;
    int exact = 0;
    int rc = cur_descend(c, c->key, c->klen, 0, &exact);
    if (rc) return rc;
    if (exact) { c->valid = 1; return RP_OK; }
    *moved = 1;
    return cur_move(c, dir, 1);
}

static int cur_check(rp_cursor *c) {
    if (!c) return RP_INVALID;
    return rp_txn_check(c->txn, 0);
}

int rp_cursor_open(rp_txn *txn, const char *table, size_t tlen, rp_cursor **out) {
    if (!out) return RP_INVALID;
    *out = NULL;
    int rc = rp_txn_check(txn, 0);
    if (rc) return rc;
    rp_table *t = &txn->catalog;
    if (table) {
        rc = rp_table_get(txn, table, tlen, 0, &t);
        if (rc) return rc;
    } else if (txn->flags & RP_TXN_WRITE) {
        rc = rp_txn_flush_catalog(txn);
        if (rc) return rc;
    }
    rp_cursor *c = malloc(sizeof *c);
    if (!c) return ENOMEM;
    rp_cursor_init(c, txn, t);
    txn->ncursors++;
    *out = c;
    return RP_OK;
}

void rp_cursor_close(rp_cursor *c) {
    if (!c) return;
    if (c->txn && c->txn->ncursors) c->txn->ncursors--;
    free(c->key);
    free(c);
}

int rp_cursor_seek(rp_cursor *c, int mode, const void *key, size_t klen,
                   const void **k, size_t *kl, const void **v, size_t *vl) {
    int rc = cur_check(c);
    if (rc) return rc;
    if ((mode == RP_SEEK_GE || mode == RP_SEEK_LT) && (!key || klen == 0 || klen > RP_MAX_KEY))
        return RP_KEY_TOO_LONG;
    rc = cur_seek(c, mode, key, klen);
    if (rc) { c->valid = 0; return rp_corrupt_table(rc, c->table); }
    return rp_corrupt_table(cur_entry(c, k, kl, v, vl), c->table);
}

int rp_cursor_step(rp_cursor *c, int dir, const void **k, size_t *kl,
                   const void **v, size_t *vl) {
    int rc = cur_check(c);
    if (rc) return rc;
    if (!c->valid) return RP_NOTFOUND;
    dir = dir < 0 ? -1 : 1;
    int moved;
    rc = cur_fix(c, dir, &moved);
    if (!rc && !moved) rc = cur_move(c, dir, 0);
    if (rc) { c->valid = 0; return rp_corrupt_table(rc, c->table); }
    return rp_corrupt_table(cur_entry(c, k, kl, v, vl), c->table);
}

/* The msgpack forms of a batch (rp_cursor_batch, rp_get_many): msgpack.h. */

/* Size and writer of one value in a batch: a bin string, or (raw) the
 * bytes themselves, nil for an empty value. */
size_t rp_mp_value_size(size_t len, int raw) {
    return raw ? (len ? len : 1) : rp_mp_bin_size(len) + len;
}

size_t rp_mp_value(uint8_t *o, const void *v, size_t len, int raw) {
    size_t h = 0;
    if (raw) {
        if (!len) { o[0] = 0xc0; return 1; }
    } else {
        h = rp_mp_put_bin_header(o, len);
    }
    if (len) memcpy(o + h, v, len);
    return h + len;
}

/* ---- pipelined lookups (joins, rp_get_many) ---------------------------------------- */

/* A join or a batch get looks up one key after another, each usually in a
 * leaf of its own (a 1% index range is one key per leaf or so): the time
 * goes in cache misses on those leaves, not in the work.  A lookup misses
 * on the leaf's header, then on the slots its binary search probes, then
 * on the entry found, one after the other, since each address comes from
 * the previous load.  So the lookups are pipelined over the keys ahead of
 * the current one, one stage per dependent miss:
 *
 *   RP_AHEAD_DESCEND keys ahead (rp_ahead_queue): descend the branch pages
 *     (they stay hot) to the key's leaf and prefetch its header and slot
 *     array -- only those: prefetching the whole 4 KiB page costs 64
 *     prefetches, floods the miss queues and evicts more than it helps;
 *   RP_AHEAD_SEARCH keys ahead (rp_ahead_search): binary-search that leaf
 *     (now cached) and prefetch the entry found;
 *   at the key itself (rp_ahead_get): bounds-check the entry and return
 *     its value.
 *
 * The stages never report errors, they only record what they found: a key
 * they could not vouch for is looked up from the root at its turn, which
 * then reports whatever is wrong.  Nothing changes the tree during one
 * call of the engine, so what is found stays valid for that call. */

/* The number of branch levels above t's leaves (all leaves are at one
 * depth), or -1 if unknown. */
static int branch_levels(rp_txn *txn, rp_table *t) {
    if (!t->exists || !t->root) return -1;
    uint64_t pg = t->root, tx = t->root_txnid;
    int err = RP_OK;
    for (int d = 0; d < RP_MAX_DEPTH; d++) {
        const uint8_t *p = rp_page_read(txn, pg, tx, P_BRANCH | P_LEAF, &err);
        if (!p) return -1;
        if (rp_hdr(p)->flags & P_LEAF) return d;
        const uint8_t *e;
        if (rp_page_entry(p, 0, &e)) return -1;
        pg = rp_br_child(e);
        tx = rp_br_child_txnid(e);
    }
    return -1;
}

/* The mapped address of committed page pg of version tx, NULL if it is not
 * one (a dirty page of a write txn, or out of range).  For prefetching
 * only: rp_page_read does the real checks. */
static const uint8_t *mapped_page(const rp_txn *txn, uint64_t pg, uint64_t tx) {
    if (((txn->flags & RP_TXN_WRITE) && tx == txn->txnid) || pg >= txn->base_pages) return NULL;
    return txn->env->map + pg * RP_PAGE_SIZE;
}

/* Whether k belongs in child i of branch page p (entry i's key <= k <
 * entry i + 1's key, entry 0's being minus infinity).  0 if not, or if p
 * is corrupt (the caller then searches, which reports it). */
static int branch_holds(const uint8_t *p, unsigned i, const void *k, size_t klen,
                        uint32_t kh) {
    unsigned n = rp_nkeys(p);
    int err = RP_OK;
    if (i >= n) return 0;
    if (i > 0 && rp_slot_cmp(p, i, 0, k, klen, kh, &err) > 0) return 0;
    if (i + 1 < n && rp_slot_cmp(p, i + 1, 0, k, klen, kh, &err) <= 0)
        return 0;
    return !err;
}

void rp_ahead_init(rp_ahead *a, rp_txn *txn, rp_table *t) {
    a->txn = txn;
    a->t = t;
    a->levels = branch_levels(txn, t);
    a->head = a->searched = a->tail = 0;
    a->slot_lines = 8;   /* until a leaf is seen */
    a->path_len = 0;
}

/* Stage 1: the leaf (pg, tx) that s->key belongs in; pg 0 if unknown.
 * Keys often come in key order (an index range of one value lists its
 * primary keys in order), so the next key is mostly in the same leaf or
 * the next: a branch page met on the last descent is first asked whether
 * the key is still under the child taken then, or the one after, which
 * costs two or three key comparisons instead of a binary search. */
static void ahead_descend(rp_ahead *a, rp_ahead_slot *s) {
    s->pg = 0;
    s->leaf = NULL;
    if (a->levels < 0) return;
    uint64_t pg = a->t->root, tx = a->t->root_txnid;
    int err = RP_OK, known = a->path_len;   /* levels still on the last path */
    uint32_t kh = rp_key_head(s->key, s->klen);
    a->path_len = 0;
    for (int d = 0; d < a->levels; d++) {
        const uint8_t *p;
        unsigned idx;
        if (d < known) {
            /* The page the last descent read here (its parent's child is
             * the same): already checked by rp_page_read. */
            p = a->path[d].page;
            idx = a->path[d].idx;
            if (!branch_holds(p, idx, s->key, s->klen, kh)) {
                known = d + 1;   /* a new child: below here, new pages */
                if (branch_holds(p, idx + 1, s->key, s->klen, kh)) {
                    idx++;
                } else {
                    int exact;
                    if (rp_page_search(p, s->key, s->klen, &idx, &exact)) return;
                }
            }
        } else {
            p = rp_page_read(a->txn, pg, tx, P_BRANCH, &err);
            if (!p) return;
            int exact;
            if (rp_page_search(p, s->key, s->klen, &idx, &exact)) return;
        }
        const uint8_t *e;
        if (rp_page_entry(p, idx, &e)) return;
        a->path[d].page = p;
        a->path[d].idx = idx;
        a->path_len = d + 1;
        pg = rp_br_child(e);
        tx = rp_br_child_txnid(e);
    }
    s->pg = pg;
    s->tx = tx;
    /* Not read here (that would wait for the miss), only prefetched. */
    const uint8_t *leaf = mapped_page(a->txn, pg, tx);
    if (!leaf) return;
    for (unsigned l = 0; l < a->slot_lines; l++) __builtin_prefetch(leaf + 64 * l);
}

/* Stage 2: search s's leaf (if known) and prefetch the entry found. */
static void ahead_search_one(rp_ahead *a, rp_ahead_slot *s) {
    if (!s->pg) return;
    int err = RP_OK;
    const uint8_t *p = rp_page_read(a->txn, s->pg, s->tx, P_LEAF, &err);
    if (!p) { s->pg = 0; return; }
    /* Only the slots' key heads here (stage 1 prefetched them): the first
     * slot whose head is not below the key's.  Reading the entry there now
     * to confirm the match would wait for its cache line (short keys, such
     * as encoded int primary keys, tie on the head exactly when they match,
     * and format 3's slots hold no key length to settle it); the take
     * confirms it with the real search once the prefetch below has landed. */
    uint32_t kh = rp_key_head(s->key, s->klen);
    unsigned lo = 0, hi = rp_nkeys(p);
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (rp_slot_head(p, mid) < kh) lo = mid + 1;
        else hi = mid;
    }
    s->eidx = lo;
    s->leaf = p;
    s->found = -1;
    /* Learn how much of a leaf to prefetch in stage 1: this table's leaves
     * hold similar numbers of entries. */
    unsigned lines = (unsigned)((RP_PAGE_HEADER + RP_SLOT_SIZE * (size_t)rp_nkeys(p) + 63) / 64);
    a->slot_lines = lines < RP_PAGE_SIZE / 64 ? lines : RP_PAGE_SIZE / 64;
    if (lo < rp_nkeys(p)) {
        size_t off = rp_slot_off(p, s->eidx);
        if (off < RP_PAGE_SIZE) {
            /* Both lines of an entry of up to 64 bytes that straddles two
             * (a bigger one's value is copied sequentially anyway). */
            size_t last = off + 63 < RP_PAGE_SIZE ? off + 63 : RP_PAGE_SIZE - 1;
            __builtin_prefetch(p + off);
            __builtin_prefetch(p + last);
        }
    }
}

/* Inline here (the join's copy loop calls them), exported for txn.c. */
static inline void ahead_queue(rp_ahead *a, const void *tag, size_t idx, const void *key,
                               size_t klen) {
    rp_ahead_slot *s = &a->ring[a->tail % RP_AHEAD_RING];
    s->tag = tag;
    s->idx = idx;
    s->key = key;
    s->klen = klen;
    ahead_descend(a, s);
    a->tail++;
}

static inline void ahead_search(rp_ahead *a) {
    if (a->searched < a->head) a->searched = a->head;
    while (a->searched < a->tail && a->searched - a->head < RP_AHEAD_SEARCH) {
        ahead_search_one(a, &a->ring[a->searched % RP_AHEAD_RING]);
        a->searched++;
    }
}

const rp_ahead_slot *rp_ahead_take(rp_ahead *a, const void *tag, size_t idx) {
    const rp_ahead_slot *s = &a->ring[a->head % RP_AHEAD_RING];
    if (a->head == a->tail || s->tag != tag || s->idx != idx) return NULL;
    a->head++;   /* its ring place is not reused before the next queue */
    return s;
}

static inline int ahead_get(rp_ahead *a, const rp_ahead_slot *s, const void *k, size_t kl,
                            const void **v, size_t *vl) {
    if (s && s->leaf) {
        unsigned idx = s->eidx;
        if (s->found < 0) {  /* stage 2 only placed it: search the leaf now */
            int exact;
            int rc = rp_page_search(s->leaf, k, kl, &idx, &exact);
            if (rc) return rc;
            if (!exact) return RP_NOTFOUND;
        } else if (!s->found) {
            return RP_NOTFOUND;
        }
        rp_leaf_ent d;
        int rc = rp_page_leaf_entry(s->leaf, idx, &d);
        if (rc) return rc;
        return rp_bt_value(a->txn, &d, v, vl);
    }
    if (!a->t->exists || !a->t->root) return RP_NOTFOUND;
    return rp_bt_get(a->txn, a->t, k, kl, v, vl);
}

void rp_ahead_queue(rp_ahead *a, const void *tag, size_t idx, const void *key, size_t klen) {
    ahead_queue(a, tag, idx, key, klen);
}
void rp_ahead_search(rp_ahead *a) { ahead_search(a); }
int rp_ahead_get(rp_ahead *a, const rp_ahead_slot *s, const void *k, size_t kl,
                 const void **v, size_t *vl) {
    return ahead_get(a, s, k, kl, v, vl);
}

/* A join's keys come from the index entries ahead of the cursor, read with
 * a second cursor, a copy of the first, so that looking ahead runs on
 * across index leaves and leaves the real cursor's state alone.  It stops
 * at the stop bound (no work past the range) and at anything unexpected. */
typedef struct join_ahead {
    rp_ahead a;
    rp_cursor cur;         /* the lookahead cursor (on the index)          */
    int live;              /* cur is on the next index entry to queue      */
} join_ahead;

/* Queue index entries up to RP_AHEAD_DESCEND ahead, and search. */
static void join_pump(join_ahead *ja, size_t strip, int dir, const void *stop, size_t stoplen) {
    while (ja->live && rp_ahead_room(&ja->a)) {
        rp_cursor *la = &ja->cur;
        const uint8_t *leaf = la->stack[la->depth - 1].page, *e;
        unsigned idx = la->stack[la->depth - 1].idx;
        if (rp_page_entry(leaf, idx, &e)) { ja->live = 0; break; }
        size_t kl = rp_leaf_klen(e);
        const uint8_t *k = rp_leaf_key(e);
        if (stop) {
            int cmp = rp_keycmp(k, kl, stop, stoplen);
            if ((dir > 0 && cmp >= 0) || (dir < 0 && cmp < 0)) { ja->live = 0; break; }
        }
        if (kl <= strip) { ja->live = 0; break; }
        ahead_queue(&ja->a, leaf, idx, k + strip, kl - strip);
        if (cur_move(la, dir, 0)) ja->live = 0;
    }
    ahead_search(&ja->a);
}

/* Restart the lookahead at the cursor's entry. */
static void join_restart(rp_cursor *c, join_ahead *ja) {
    rp_cursor *la = &ja->cur;
    rp_cursor_init(la, c->txn, c->table);
    la->depth = c->depth;
    memcpy(la->stack, c->stack, sizeof c->stack[0] * (size_t)c->depth);
    la->valid = 1;
    ja->live = c->depth > 0;
    rp_ahead_reset(&ja->a);
}

/* The lookahead's slot for the cursor's index entry, taken off the ring,
 * or NULL if it has none: then the entry is past the stop bound, or
 * something stopped the lookahead short of it.  A slot's entry is within
 * the stop bound and has a key longer than strip. */
static const rp_ahead_slot *join_take(rp_cursor *c, join_ahead *ja, size_t strip, int dir,
                                      const void *stop, size_t stoplen) {
    const uint8_t *ip = c->stack[c->depth - 1].page;
    unsigned ii = c->stack[c->depth - 1].idx;
    if (!rp_ahead_next_is(&ja->a, ip, ii)) {
        /* Not where the lookahead is (its first call, or it stopped). */
        join_restart(c, ja);
    }
    join_pump(ja, strip, dir, stop, stoplen);
    return rp_ahead_take(&ja->a, ip, ii);
}

/* rp_cursor_batch, rp_cursor_filter and rp_cursor_join: copy entries
 * (those whose verdict under f is not FALSE, when f is given) until a
 * bound, a full buffer or max_items.  With join, each entry's key minus
 * its first strip bytes is looked up in join, and that key and value are
 * what is filtered and copied (keys absent there are stepped over). */
static int cursor_copy(rp_cursor *c, int dir, unsigned flags, const void *stop,
                       size_t stoplen, const rp_filter *f, rp_table *join, size_t strip,
                       void *buf, size_t buflen, size_t max_items, size_t *n,
                       size_t *used) {
    int include_current = (flags & RP_BATCH_CURRENT) != 0;
    int raw = (flags & RP_BATCH_RAW_VALUES) != 0;
    int rc = cur_check(c);
    if (rc) return rc;
    if (!n || !used || (!buf && buflen)) return RP_INVALID;
    *n = 0;
    *used = 0;
    if (max_items > UINT32_MAX / 2) max_items = UINT32_MAX / 2;
    if (!c->valid) return RP_NOTFOUND;
    dir = dir < 0 ? -1 : 1;
    int moved;
    rc = cur_fix(c, dir, &moved);
    if (!rc && !include_current && !moved) rc = cur_move(c, dir, 0);
    if (rc) { c->valid = 0; return rc; }
    uint8_t *o = buf;
    size_t pos = RP_MP_ARRAY32_SIZE;
    join_ahead ja;
    if (join) {
        rp_ahead_init(&ja.a, c->txn, join);
        ja.live = 0;
    }
    while (*n < max_items) {
        const void *k, *v;
        size_t kl, vl;
        rc = cur_entry(c, &k, &kl, &v, &vl);
        if (rc) return rc;
        /* The lookahead compared the entries it queued with stop already. */
        const rp_ahead_slot *js = join ? join_take(c, &ja, strip, dir, stop, stoplen) : NULL;
        if (stop && !js) {
            int cmp = rp_keycmp(k, kl, stop, stoplen);
            if ((dir > 0 && cmp >= 0) || (dir < 0 && cmp < 0)) { c->valid = 0; break; }
        }
        int verdict = RP_FILTER_TRUE;
        if (join) {
            if (kl <= strip)   /* an index entry without a key */
                return rp_corrupt_table(rp_corruptf("index entry shorter than its prefix"),
                                        c->table);
            k = (const uint8_t *)k + strip;
            kl -= strip;
            rc = ahead_get(&ja.a, js, k, kl, &v, &vl);
            if (rc == RP_NOTFOUND) verdict = RP_FILTER_FALSE;
            else if (rc) return rp_corrupt_table(rc, join);
        }
        if (f && verdict != RP_FILTER_FALSE) {
            rc = rp_filter_run(f, v, vl, &verdict);
            if (rc == RP_CORRUPT) rp_corruptf("a value is not valid msgpack");
            if (rc) return rp_corrupt_table(rc, join ? join : c->table);
        }
        if (verdict != RP_FILTER_FALSE) {
            size_t need = rp_mp_bin_size(kl) + kl + rp_mp_value_size(vl, raw);
            if (pos + need > buflen) {
                if (*n == 0) { *used = RP_MP_ARRAY32_SIZE + need; return RP_OK; }  /* size needed */
                break;
            }
            pos += rp_mp_put_bin_header(o + pos, kl);
            memcpy(o + pos, k, kl);
            pos += kl;
            pos += rp_mp_value(o + pos, v, vl, raw);
            (*n)++;
        }
        rc = cur_move(c, dir, 0);
        if (rc == RP_NOTFOUND) break;
        if (rc) return rc;
    }
    if (!*n) return RP_NOTFOUND;
    rp_mp_put_array32(o, (uint32_t)(2 * *n));
    *used = pos;
    /* The copies above may have read zeros the SIGBUS guard put in place of
     * a truncated file's pages (sigbus.c). */
    return rp_guard_faulted(c->txn->env) ? rp_guard_error(c->txn->env) : RP_OK;
}

int rp_cursor_batch(rp_cursor *c, int dir, unsigned flags, const void *stop,
                    size_t stoplen, void *buf, size_t buflen, size_t max_items,
                    size_t *n, size_t *used) {
    return rp_corrupt_table(cursor_copy(c, dir, flags, stop, stoplen, NULL, NULL, 0, buf, buflen,
                                        max_items, n, used), c ? c->table : NULL);
}

/* Parse the program of rp_cursor_filter / rp_cursor_join into *f, if
 * there is one (prog NULL with proglen 0: no filter).  Parsed on each call
 * (microseconds) so that callers hold no handle; the instructions live on
 * the caller's stack frame. */
static int optional_filter(rp_filter *f, const void *prog, size_t proglen) {
    if (prog) return rp_filter_parse(f, prog, proglen);
    return proglen ? RP_INVALID : RP_OK;
}

int rp_cursor_filter(rp_cursor *c, int dir, unsigned flags, const void *stop,
                     size_t stoplen, const void *prog, size_t proglen, void *buf,
                     size_t buflen, size_t max_items, size_t *n, size_t *used) {
    if (n) *n = 0;
    if (used) *used = 0;
    rp_filter f;
    int rc = optional_filter(&f, prog, proglen);
    if (rc) return rc;
    return rp_corrupt_table(cursor_copy(c, dir, flags, stop, stoplen, prog ? &f : NULL, NULL, 0,
                                        buf, buflen, max_items, n, used), c ? c->table : NULL);
}

int rp_cursor_join(rp_cursor *c, int dir, unsigned flags, const void *stop, size_t stoplen,
                   size_t strip, const char *table, size_t tlen, const void *prog,
                   size_t proglen, void *buf, size_t buflen, size_t max_items, size_t *n,
                   size_t *used) {
    if (n) *n = 0;
    if (used) *used = 0;
    int rc = cur_check(c);
    if (rc) return rc;
    if (strip > RP_MAX_KEY) return RP_INVALID;
    rp_filter f;
    rc = optional_filter(&f, prog, proglen);
    if (rc) return rc;
    rp_table *t;
    rc = rp_table_get(c->txn, table, tlen, 0, &t);
    if (rc) return rc;
    return rp_corrupt_table(cursor_copy(c, dir, flags, stop, stoplen, prog ? &f : NULL, t, strip,
                                        buf, buflen, max_items, n, used), c ? c->table : NULL);
}
