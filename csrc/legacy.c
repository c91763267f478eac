/*
 * legacy.c -- reading files of formats 1 and 2, and converting them to the
 * current format (format.h, FORMAT VERSIONS; docs/format.md).
 *
 * Formats 1 and 2 differ from format 3 only in their leaf and branch pages
 * (8-byte slots, 8-byte leaf entry headers, values over a quarter page in
 * overflow runs) and in their meta records (format 1: no mirror copies, no
 * flags).  Overflow runs, table descriptors and page headers are as in
 * format 3; the free list is never read here (format 1 rewrote it whole at
 * each commit, format 2 rewrites only its head: the pages it names do not
 * matter to a copy of the tables).
 *
 * This reader is isolated from the engine's read paths on purpose: it reads
 * the old file with pread (no mapping: a file truncated under it is a short
 * read, not a SIGBUS), checks every page it uses as the engine of formats 1
 * and 2 did (bounds, header pgno and txnid against the parent's pointer,
 * checksum, slot and entry bounds, key order), and hands each table's
 * (key, value) pairs to the engine's ordinary write path into a new file.
 * A damaged old file is RP_CORRUPT naming the page, never a crash.
 *
 * Which version of the old file is copied: the newest whose every page
 * verifies, as those formats' open chose it (meta.c's rules): a newer
 * record that fails is skipped when it is not known to be acknowledged (a
 * torn commit), and is damage (RP_CORRUPT) when it is.
 */
#include "tree.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the old layout (format 2's format.h) ---------------------------------- */
#define L_SLOT          8     /* slot: u32 key head (big-endian), u16 offset, u16 klen */
#define L_LEAF_HDR      8     /* leaf entry: u16 klen, u8 flags, u8 0, u32 vlen, key  */
#define L_MAX_INLINE    ((RP_PAGE_SIZE - RP_PAGE_HEADER) / 4 - L_SLOT)
#define L_FORMAT_FIRST  1
#define L_FORMAT_LAST   2

void (*rp_upgrade_hook)(int step);

typedef struct legacy {
    int       fd;
    uint64_t  file_pages;            /* whole pages in the file               */
    uint64_t  txnid;                 /* the version being read                */
    uint64_t  pages_used;
    uint8_t  *val;                   /* an overflow value read (grown)        */
    size_t    val_cap;
} legacy;

/* Page (pgno, txnid) of kind `kinds`, npages long, read into buf and
 * checked as the old engine's rp_page_read + rp_page_verify did. */
static int read_pages(legacy *lg, uint64_t pgno, uint64_t txnid, uint8_t *buf, size_t npages) {
    if (pgno < RP_FIRST_DATA_PAGE || pgno >= lg->pages_used || npages > lg->pages_used - pgno)
        return rp_corrupt(pgno, "page number beyond the pages in use");
    if (pgno + npages > lg->file_pages) return rp_corrupt(pgno, "page beyond the end of the file");
    size_t len = npages * RP_PAGE_SIZE;
    for (size_t done = 0; done < len;) {
        ssize_t n = pread(lg->fd, buf + done, len - done, (off_t)(pgno * RP_PAGE_SIZE + done));
        if (n < 0) return errno;
        if (n == 0) return rp_corrupt(pgno, "page beyond the end of the file");
        done += (size_t)n;
    }
    const rp_page_hdr *h = rp_hdr(buf);
    if (h->pgno != pgno) return rp_corrupt(pgno, "page header names another page");
    if (h->txnid != txnid || txnid > lg->txnid)
        return rp_corrupt(pgno, "page version differs from its parent's pointer");
    return RP_OK;
}

/* Structural check of an old branch or leaf page (format 2's
 * rp_page_validate, with its 8-byte slots and leaf headers). */
static const char *validate(const uint8_t *p) {
    const rp_page_hdr *h = rp_hdr(p);
    int leaf = h->flags == P_LEAF;
    if (!leaf && h->flags != P_BRANCH) return "not a leaf or branch page";
    if (h->lower != RP_PAGE_HEADER + L_SLOT * (size_t)h->nkeys)
        return "slot array end (lower) disagrees with nkeys";
    if (h->upper < h->lower || h->upper > RP_PAGE_SIZE) return "heap start (upper) out of range";
    if (!leaf && h->nkeys == 0) return "branch page without entries";
    size_t used = 0, hdr = leaf ? L_LEAF_HDR : RP_BRANCH_ENTRY_HDR;
    for (unsigned i = 0; i < h->nkeys; i++) {
        const uint8_t *s = p + RP_PAGE_HEADER + L_SLOT * (size_t)i;
        size_t off = rp_rd16(s + 4);
        if (off < h->upper || off + hdr > RP_PAGE_SIZE) return "slot offset outside the heap";
        const uint8_t *e = p + off;
        size_t klen = rp_rd16(e), sz;
        if (klen > RP_MAX_KEY || off + hdr + klen > RP_PAGE_SIZE) return "key length out of range";
        if (rp_rd16(s + 6) != klen || __builtin_bswap32(rp_rd32(s)) != rp_key_head(e + hdr, klen))
            return "slot's key head or length disagrees with its entry";
        if (leaf) {
            int big = (e[2] & E_BIG) != 0;
            if (klen == 0) return "leaf entry with an empty key";
            if (e[2] & ~E_BIG) return "unknown leaf entry flags";
            uint32_t vlen = rp_rd32(e + 4);
            if (vlen > RP_MAX_VALUE) return "value length out of range";
            sz = hdr + klen + (big ? RP_BIG_REF : vlen);
            if (!big && sz > L_MAX_INLINE) return "inline value over the limit";
        } else {
            if ((i == 0) != (klen == 0)) return "branch key empty other than first";
            sz = hdr + klen;
        }
        if (off + sz > RP_PAGE_SIZE) return "entry runs past the page";
        used += sz;
    }
    if (used != (size_t)(RP_PAGE_SIZE - h->upper)) return "entries overlap (sizes do not add up)";
    return NULL;
}

static int read_tree_page(legacy *lg, uint64_t pgno, uint64_t txnid, uint8_t *page) {
    int rc = read_pages(lg, pgno, txnid, page, 1);
    if (rc) return rc;
    if (!(rp_hdr(page)->flags & (P_BRANCH | P_LEAF)))
        return rp_corrupt(pgno, "not a branch or leaf page");
    if (rp_hdr(page)->checksum != rp_page_checksum(page, RP_PAGE_SIZE))
        return rp_corrupt(pgno, "checksum mismatch");
    const char *why = validate(page);
    return why ? rp_corrupt(pgno, why) : RP_OK;
}

/* The value of old leaf entry e: inline, or its overflow run read whole
 * and checked (npages the value needs, checksum over the run). */
static int entry_value(legacy *lg, const uint8_t *e, const uint8_t **val, size_t *vlen) {
    size_t klen = rp_rd16(e);
    *vlen = rp_rd32(e + 4);
    if (!(e[2] & E_BIG)) {
        *val = e + L_LEAF_HDR + klen;
        return RP_OK;
    }
    const uint8_t *ref = e + L_LEAF_HDR + klen;
    uint64_t pg = rp_rd64(ref), npages = (*vlen + RP_PAGE_HEADER + RP_PAGE_SIZE - 1) / RP_PAGE_SIZE;
    if (pg >= lg->pages_used || npages > lg->pages_used - pg)
        return rp_corrupt(pg, "overflow run beyond the pages in use");
    size_t need = (size_t)npages * RP_PAGE_SIZE;
    if (need > lg->val_cap) {
        uint8_t *nb = realloc(lg->val, need);
        if (!nb) return ENOMEM;
        lg->val = nb;
        lg->val_cap = need;
    }
    int rc = read_pages(lg, pg, rp_rd64(ref + 8), lg->val, npages);
    if (rc) return rc;
    const rp_page_hdr *h = rp_hdr(lg->val);
    if (h->flags != P_OVERFLOW) return rp_corrupt(pg, "not an overflow run");
    if (h->npages != npages) return rp_corrupt(pg, "overflow run of another length than its value needs");
    if (h->checksum != rp_page_checksum(lg->val, need)) return rp_corrupt(pg, "checksum mismatch");
    *val = lg->val + RP_PAGE_HEADER;
    return RP_OK;
}

/* ---- walking a tree ------------------------------------------------------------ */

/* Called with each (key, value) of a tree in key order. */
typedef int (*emit_fn)(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl);

typedef struct walk {
    legacy  *lg;
    uint8_t  pages[RP_MAX_DEPTH][RP_PAGE_SIZE];
    uint8_t  prev[RP_MAX_KEY];       /* the last key emitted (order check)    */
    size_t   prev_len;
    uint64_t count;
    emit_fn  emit;
    void    *ctx;
} walk;

static int walk_page(walk *w, uint64_t pgno, uint64_t txnid, unsigned level, unsigned depth) {
    uint8_t *p = w->pages[level];
    int rc = read_tree_page(w->lg, pgno, txnid, p);
    if (rc) return rc;
    int leaf = rp_hdr(p)->flags == P_LEAF;
    if (leaf != (level + 1 == depth)) return rp_corrupt(pgno, "tree depth disagrees with the table's");
    for (unsigned i = 0; i < rp_nkeys(p); i++) {
        const uint8_t *e = p + rp_rd16(p + RP_PAGE_HEADER + L_SLOT * (size_t)i + 4);
        if (!leaf) {
            if (level + 1 >= RP_MAX_DEPTH) return rp_corrupt(pgno, "tree deeper than the limit");
            rc = walk_page(w, rp_rd64(e + 8), rp_rd64(e + 16), level + 1, depth);
            if (rc) return rc;
            continue;
        }
        size_t kl = rp_rd16(e), vl;
        const uint8_t *k = e + L_LEAF_HDR, *v = NULL;
        /* Keys ascend strictly through the whole tree: a copy keyed by them
         * must not merge two entries. */
        size_t m = kl < w->prev_len ? kl : w->prev_len;
        int c = memcmp(k, w->prev, m);
        if (w->count && (c < 0 || (c == 0 && kl <= w->prev_len)))
            return rp_corrupt(pgno, "keys out of order");
        memcpy(w->prev, k, kl);
        w->prev_len = kl;
        w->count++;
        rc = entry_value(w->lg, e, &v, &vl);
        if (!rc) rc = w->emit(w->ctx, k, kl, v, vl);
        if (rc) return rc;
    }
    return RP_OK;
}

/* Every (key, value) of the tree at (root, txnid) of the given depth and
 * entry count; *wp is reused between calls (it is large). */
static int walk_tree(walk *w, uint64_t root, uint64_t txnid, uint64_t depth, uint64_t entries) {
    w->prev_len = 0;
    w->count = 0;
    if (root == 0) return depth || entries ? rp_corruptf("empty table with depth or entries") : RP_OK;
    if (depth == 0 || depth > RP_MAX_DEPTH) return rp_corrupt(root, "table depth out of range");
    int rc = walk_page(w, root, txnid, 0, (unsigned)depth);
    if (!rc && w->count != entries)
        rc = rp_corrupt(root, "the table's entry count disagrees with its tree");
    return rc;
}

/* ---- the meta records (format 2's meta.c rules) --------------------------------- */

typedef struct cand {
    uint64_t txnid, pages_used, cat_pgno, cat_txnid;
    uint32_t flags;
} cand;

typedef struct scan {
    cand c[4];
    int  n, lost, current;
} scan;

static void scan_meta(const uint8_t *meta, scan *s) {
    static const uint8_t zero[RP_META_SIZE];
    memset(s, 0, sizeof *s);
    int empty[2] = {1, 1};
    for (unsigned slot = 0; slot < 4; slot++) {
        unsigned parity = slot < 2 ? slot : 3 - slot;   /* page 0|1 offset 0, then mirrors */
        const uint8_t *rec = meta + (slot & 1) * RP_PAGE_SIZE + (slot < 2 ? 0 : RP_META_MIRROR_OFF);
        if (memcmp(rec, zero, RP_META_SIZE) == 0) continue;
        const rp_page_hdr *h = rp_hdr(rec);
        rp_meta_body b;
        memcpy(&b, rec + RP_PAGE_HEADER, sizeof b);
        if (memcmp(b.magic, RP_META_MAGIC, 8) == 0 && b.format_version > L_FORMAT_LAST
            && h->checksum == rp_page_checksum(rec, RP_META_SIZE))
            s->current = 1;
        if (memcmp(b.magic, RP_META_MAGIC, 8) != 0 || h->checksum != rp_page_checksum(rec, RP_META_SIZE)
            || b.format_version < L_FORMAT_FIRST || b.format_version > L_FORMAT_LAST
            || h->flags != P_META || h->txnid == 0 || h->txnid % 2 != parity || h->pgno != parity
            || b.page_size != RP_PAGE_SIZE || b.pages_used < RP_FIRST_DATA_PAGE
            || b.cat_pgno >= b.pages_used || b.free_pgno >= b.pages_used
            || (b.flags & ~(uint32_t)(RP_META_SYNCED | RP_META_ACKED))) {
            if (empty[parity] != 0) empty[parity] = -1;       /* damaged */
            continue;
        }
        empty[parity] = 0;
        cand m = {h->txnid, b.pages_used, b.cat_pgno, b.cat_txnid, b.flags};
        int i, dup = 0;
        for (i = 0; i < s->n; i++)
            if (s->c[i].txnid == m.txnid) { s->c[i].flags |= m.flags; dup = 1; }
        if (dup) continue;
        for (i = s->n++; i > 0 && s->c[i - 1].txnid < m.txnid; i--) s->c[i] = s->c[i - 1];
        s->c[i] = m;
    }
    for (int p = 0; p < 2; p++)
        if (empty[p] < 0 || (empty[p] > 0 && s->n && s->c[0].txnid >= 2)) s->lost = 1;
}

static int known_acked(const scan *s, int i) {
    return (s->c[i].flags & RP_META_ACKED) || ((s->c[i].flags & RP_META_SYNCED) && i > 0);
}

/* ---- copying into a new file ------------------------------------------------- */

#define COPY_BATCH (64u << 20)       /* bytes put per write txn of the copy   */

typedef struct copy {
    rp_env   *dst;
    rp_txn   *w;
    rp_table *t;
    char      name[RP_MAX_TABLE_NAME];
    size_t    nlen;
    size_t    batch;
    walk     *tables;                /* the walk of the table trees           */
} copy;

static int copy_put(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    copy *c = ctx;
    if (c->batch > COPY_BATCH) {
        /* The new file is not visible until renamed: intermediate commits
         * only bound the memory a large file's copy holds. */
        int rc = rp_txn_commit(c->w);
        c->w = NULL;
        if (!rc) rc = rp_txn_begin(c->dst, RP_TXN_WRITE, &c->w);
        if (!rc) rc = rp_table_get(c->w, c->name, c->nlen, 1, &c->t);
        if (rc) return rc;
        c->batch = 0;
    }
    c->batch += kl + vl;
    return rp_bt_put(c->w, c->t, k, kl, v, vl);
}

/* One catalog entry: a table name and its 40-byte descriptor. */
static int copy_table(void *ctx, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl) {
    copy *c = ctx;
    if (vl != RP_TABLE_DESC_SIZE || kl > RP_MAX_TABLE_NAME)
        return rp_corruptf("catalog entry of a wrong size");
    memcpy(c->name, k, kl);
    c->nlen = kl;
    int rc = rp_table_get(c->w, c->name, kl, 1, &c->t);
    if (rc) return rc == RP_BAD_TABLE ? rp_corruptf("catalog holds an invalid table name") : rc;
    rc = walk_tree(c->tables, rp_rd64(v), rp_rd64(v + 8), rp_rd64(v + 24), rp_rd64(v + 16));
    if (rc == RP_CORRUPT) rp_corrupt_name_table(c->t);
    return rc;
}

/* Copy version m of the old file into the empty env dst (one or more
 * commits, not yet durable). */
static int copy_version(legacy *lg, const cand *m, rp_env *dst) {
    lg->txnid = m->txnid;
    lg->pages_used = m->pages_used;
    walk *cat = malloc(sizeof *cat), *tables = malloc(sizeof *tables);
    copy c = {.dst = dst, .tables = tables};
    int rc = cat && tables ? rp_txn_begin(dst, RP_TXN_WRITE, &c.w) : ENOMEM;
    if (!rc) {
        *cat = (walk){.lg = lg, .emit = copy_table, .ctx = &c};
        *tables = (walk){.lg = lg, .emit = copy_put, .ctx = &c};
        /* The catalog's depth and size are not recorded: walk it to its
         * leaves at whatever depth (each level checked for its kind). */
        uint64_t depth = 1;
        uint64_t pg = m->cat_pgno, tx = m->cat_txnid;
        while (pg && !rc && depth <= RP_MAX_DEPTH) {
            rc = read_tree_page(lg, pg, tx, cat->pages[0]);
            if (rc || rp_hdr(cat->pages[0])->flags == P_LEAF) break;
            const uint8_t *e = cat->pages[0] + rp_rd16(cat->pages[0] + RP_PAGE_HEADER + 4);
            pg = rp_rd64(e + 8);
            tx = rp_rd64(e + 16);
            depth++;
        }
        if (!rc && m->cat_pgno) {
            if (depth > RP_MAX_DEPTH) rc = rp_corrupt(m->cat_pgno, "catalog deeper than the limit");
            else rc = walk_page(cat, m->cat_pgno, m->cat_txnid, 0, (unsigned)depth);
        }
    }
    if (!rc) rc = rp_txn_commit(c.w);
    else if (c.w) rp_txn_abort(c.w);
    free(cat);
    free(tables);
    return rc;
}

/* ---- rp_env_upgrade ------------------------------------------------------------ */

static void hook(int step) {
    if (rp_upgrade_hook) rp_upgrade_hook(step);
}

static int unlink_quiet(const char *path) {
    return unlink(path) && errno != ENOENT ? errno : RP_OK;
}

/* Convert the old file open on lg into a new file at tmp (mode: the old
 * file's permission bits), durable on return. */
static int convert(legacy *lg, const scan *s, const char *tmp, const char *tmp_lock, mode_t mode) {
    int fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) return errno;
    int rc = fchmod(fd, mode) ? errno : RP_OK;   /* the umask may have narrowed it */
    close(fd);
    rp_env *dst = NULL;
    /* The copy is about as large as the old file: room for twice that. */
    uint64_t max = lg->file_pages * RP_PAGE_SIZE * 2;
    if (!rc) rc = rp_env_open(tmp, RP_NOSYNC, max > RP_DEFAULT_MAP_SIZE ? max : 0, 0, 0, &dst);
    int chosen = -1;
    if (!rc && s->lost && s->n && known_acked(s, 0))
        rc = rp_corruptf("meta pages 0 and 1: both copies of the record of the version after "
                         "%llu are damaged (it may have been acknowledged)",
                         (unsigned long long)s->c[0].txnid);
    for (int i = 0; !rc && i < s->n && chosen < 0; i++) {
        hook(1);
        int r = s->c[i].pages_used > lg->file_pages
                    ? rp_corruptf("the file was truncated: version %llu needs %llu pages, the "
                                  "file has %llu", (unsigned long long)s->c[i].txnid,
                                  (unsigned long long)s->c[i].pages_used,
                                  (unsigned long long)lg->file_pages)
                    : copy_version(lg, &s->c[i], dst);
        if (r == RP_OK) chosen = i;
        else if (r != RP_CORRUPT || known_acked(s, i)) rc = r;
        else {
            /* A torn commit: start the copy again, empty, from the next. */
            rp_env_close(dst);
            dst = NULL;
            unlink_quiet(tmp_lock);
            if (unlink_quiet(tmp) == RP_OK) {
                fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
                if (fd < 0) rc = errno;
                else if (fchmod(fd, mode)) rc = errno;
                if (fd >= 0) close(fd);
                if (!rc) rc = rp_env_open(tmp, RP_NOSYNC, max > RP_DEFAULT_MAP_SIZE ? max : 0, 0, 0, &dst);
            }
        }
    }
    if (!rc && chosen < 0) rc = rp_corruptf("no intact version of the old file");
    if (!rc) rc = rp_env_seal_copy(dst, tmp, s->c[chosen].txnid);
    if (dst) rp_env_close(dst);
    unlink_quiet(tmp_lock);
    return rc;
}

int rp_env_upgrade(const char *path, int *converted) {
    if (!path || !*path || !converted) return RP_INVALID;
    *converted = 0;
    size_t plen = strlen(path);
    if (plen + 16 > PATH_MAX) return ENAMETOOLONG;
    legacy lg = {.fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)};
    if (lg.fd < 0) return errno;
    int rc = RP_OK;
    struct stat st;
    uint8_t meta[2 * RP_PAGE_SIZE];
    scan s;
    if (fstat(lg.fd, &st)) rc = errno;
    else if (!S_ISREG(st.st_mode)) rc = RP_NOT_A_DB;
    else if (pread(lg.fd, meta, sizeof meta, 0) != (ssize_t)sizeof meta) rc = RP_NOT_A_DB;
    if (!rc) {
        lg.file_pages = (uint64_t)st.st_size / RP_PAGE_SIZE;
        scan_meta(meta, &s);
        if (s.current) { close(lg.fd); return RP_OK; }   /* already converted */
        if (s.n == 0)
            rc = memcmp(meta + RP_PAGE_HEADER, RP_META_MAGIC, 8) == 0
                     ? rp_corruptf("meta pages 0 and 1: no valid meta record of format 1 or 2")
                     : RP_NOT_A_DB;
    }
    char tmp[PATH_MAX], lk[PATH_MAX];
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".upgrade", 9);
    memcpy(lk, tmp, plen + 8);
    memcpy(lk + plen + 8, ".lock", 6);
    /* A conversion that stopped half way left its copy: never renamed, it
     * is not the database; start again. */
    if (!rc) rc = unlink_quiet(tmp);
    if (!rc) rc = unlink_quiet(lk);
    if (!rc) rc = convert(&lg, &s, tmp, lk, st.st_mode & 07777);
    close(lg.fd);
    free(lg.val);
    if (rc) {
        unlink_quiet(tmp);
        return rc;
    }
    hook(2);
    if (rename(tmp, path)) return errno;
    hook(3);
    rc = rp_fsync_dir(path);
    /* The lock file describes the old file (its roots ring): the next
     * opener builds a new one. */
    memcpy(lk + plen, ".lock", 6);
    if (!rc) rc = unlink_quiet(lk);
    if (!rc) *converted = 1;
    return rc;
}
