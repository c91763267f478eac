/*
 * meta.c -- meta records: writing both copies of a commit's record, the
 * acknowledged mark, and choosing the version an open starts from.
 *
 * The layout and the reasoning are in format.h (META PAGES, META RECORD,
 * WHAT AN OPEN CONCLUDES) and docs/integrity.md.  In short: each version's
 * record exists twice, in two sectors of two pages, so one damaged sector
 * never loses it; a record rewritten with ACKED after its commit's
 * fdatasync returned tells damage (report it) from a commit torn by a
 * power cut (fall back to the previous version, silently).
 */
#include "tree.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- records ----------------------------------------------------------------- */

static void meta_build(uint8_t rec[RP_META_SIZE], const rp_roots *r, uint32_t flags) {
    memset(rec, 0, RP_META_SIZE);
    rp_page_hdr *h = rp_hdrw(rec);
    h->flags = P_META;
    h->txnid = r->txnid;
    h->pgno = r->txnid % 2;
    h->npages = 1;
    rp_meta_body b;
    memset(&b, 0, sizeof b);
    memcpy(b.magic, RP_META_MAGIC, 8);
    b.format_version = RP_FORMAT_VERSION_NUMBER;
    b.page_size = RP_PAGE_SIZE;
    b.pages_used = r->pages_used;
    b.cat_pgno = r->cat_pgno;
    b.cat_txnid = r->cat_txnid;
    b.free_pgno = r->free_pgno;
    b.free_txnid = r->free_txnid;
    b.free_len = r->free_len;
    b.flags = flags;
    memcpy(rec + RP_PAGE_HEADER, &b, sizeof b);
    h->checksum = rp_page_checksum(rec, RP_META_SIZE);
}

/* File offsets of version v's two copies: primary, mirror. */
static void copy_offsets(uint64_t v, uint64_t off[2]) {
    off[0] = (v % 2) * RP_PAGE_SIZE;
    off[1] = (1 - v % 2) * RP_PAGE_SIZE + RP_META_MIRROR_OFF;
}

/* What one 128-byte slot holds. */
enum { SLOT_EMPTY, SLOT_VALID, SLOT_DAMAGED, SLOT_FOREIGN, SLOT_FUTURE, SLOT_PAST };

typedef struct meta_rec {
    rp_roots r;
    uint32_t flags;
    uint32_t format;                 /* RP_FORMAT_VERSION_OLDEST .. NUMBER    */
} meta_rec;

static int slot_parse(const uint8_t *rec, unsigned parity, meta_rec *out) {
    static const uint8_t zero[RP_META_SIZE];
    if (memcmp(rec, zero, RP_META_SIZE) == 0) return SLOT_EMPTY;
    const rp_page_hdr *h = rp_hdr(rec);
    rp_meta_body b;
    memcpy(&b, rec + RP_PAGE_HEADER, sizeof b);
    if (memcmp(b.magic, RP_META_MAGIC, 8) != 0) return SLOT_FOREIGN;
    if (h->checksum != rp_page_checksum(rec, RP_META_SIZE)) return SLOT_DAMAGED;
    if (b.format_version > RP_FORMAT_VERSION_NUMBER) return SLOT_FUTURE;
    /* Formats 1 and 2 lay out leaf pages differently (format.h, FORMAT
     * VERSIONS): an intact record of one is an old file, not damage. */
    if (b.format_version < RP_FORMAT_VERSION_OLDEST && b.format_version >= 1) return SLOT_PAST;
    if (b.format_version < RP_FORMAT_VERSION_OLDEST || h->flags != P_META || h->txnid == 0
        || h->txnid % 2 != parity || h->pgno != parity || b.page_size != RP_PAGE_SIZE
        || b.pages_used < RP_FIRST_DATA_PAGE || b.cat_pgno >= b.pages_used
        || b.free_pgno >= b.pages_used || (b.flags & ~(uint32_t)(RP_META_SYNCED | RP_META_ACKED)))
        return SLOT_DAMAGED;
    out->r = (rp_roots){.txnid = h->txnid, .pages_used = b.pages_used,
                        .cat_pgno = b.cat_pgno, .cat_txnid = b.cat_txnid,
                        .free_pgno = b.free_pgno, .free_txnid = b.free_txnid,
                        .free_len = b.free_len};
    out->flags = b.flags;
    out->format = b.format_version;
    return SLOT_VALID;
}

/* THE META WRITE: one pwrite of both meta pages.  Version N's two copies
 * lie in two pages (format.h); writing them as two 128-byte pwrites cost
 * two system calls per meta write.  Instead the image of pages 0 and 1 is
 * taken from the map (what the file holds now), N's copies are put in,
 * and the 8 KiB go out in one call.  Rewriting the other bytes with
 * themselves changes nothing a power cut can see: the kernel writes each
 * of these pages back as a whole 4 KiB block in any case (both are
 * dirtied by every commit), and under the 512-byte sector model a sector
 * rewritten with its own bytes is the same whether or not the write
 * reached it.  Under the writer mutex (or the exclusive first open), so no
 * other writer changes the pages meanwhile. */
int rp_meta_write(rp_env *env, const rp_roots *roots, uint32_t flags, uint8_t *old) {
    uint8_t img[2 * RP_PAGE_SIZE], rec[RP_META_SIZE];
    uint64_t off[2];
    memcpy(img, env->map, sizeof img);
    /* The map may read zeros the SIGBUS guard put in place of a truncated
     * file's pages (sigbus.c): never write those over the other records. */
    if (rp_guard_faulted(env)) return rp_guard_error(env);
    if (old) memcpy(old, img, sizeof img);
    meta_build(rec, roots, flags);
    copy_offsets(roots->txnid, off);
    memcpy(img + off[0], rec, RP_META_SIZE);
    memcpy(img + off[1], rec, RP_META_SIZE);
    return rp_io_pwrite(env, img, sizeof img, 0);
}

int rp_meta_restore(rp_env *env, const uint8_t *old) {
    return rp_io_pwrite(env, old, 2 * RP_PAGE_SIZE, 0);
}

int rp_meta_commit(rp_env *env, const rp_roots *roots) {
    int rc = rp_meta_write(env, roots, RP_META_SYNCED, NULL);
    if (!rc) rc = rp_io_sync(env);
    if (!rc) (void)rp_meta_write(env, roots, RP_META_SYNCED | RP_META_ACKED, NULL);
    return rc;
}

/* ---- roots from the lock file, checked against the data file -------------- */

int rp_meta_disowns(rp_env *env, const rp_roots *r) {
    /* pread, not the map: a truncated file must not fault here. */
    uint64_t off[2];
    copy_offsets(r->txnid, off);
    for (int i = 0; i < 2; i++) {
        uint8_t rec[RP_META_SIZE];
        meta_rec m;
        if (pread(env->fd, rec, sizeof rec, (off_t)off[i]) == (ssize_t)sizeof rec
            && slot_parse(rec, (unsigned)(r->txnid % 2), &m) == SLOT_VALID
            && m.r.txnid == r->txnid)
            return memcmp(&m.r, r, sizeof *r) != 0;
    }
    return 0;   /* no record of that version left: cannot tell */
}

/* ---- durability "none": acknowledged at a clean close ---------------------- */

int rp_meta_settle(rp_env *env, const rp_roots *latest) {
    /* Both copies already carry the mark: nothing to do (the common case
     * for durable commits, and for a second close). */
    uint64_t off[2];
    copy_offsets(latest->txnid, off);
    int acked = 1;
    for (int i = 0; i < 2 && acked; i++) {
        uint8_t rec[RP_META_SIZE];
        meta_rec m;
        acked = pread(env->fd, rec, sizeof rec, (off_t)off[i]) == (ssize_t)sizeof rec
                && slot_parse(rec, (unsigned)(latest->txnid % 2), &m) == SLOT_VALID
                && m.r.txnid == latest->txnid && (m.flags & RP_META_ACKED);
    }
    if (acked) return RP_OK;
    /* One sync makes every earlier write of every process durable, this
     * version's pages and record included: it is acknowledged from now on. */
    int rc = rp_io_sync(env);
    if (!rc) rc = rp_meta_write(env, latest, RP_META_SYNCED | RP_META_ACKED, NULL);
    return rc;
}

/* ---- choosing the version to open ------------------------------------------ */

typedef struct meta_scan {
    meta_rec cand[4];                /* distinct versions, newest first       */
    int      n;
    int      lost;                   /* a parity with no valid copy, damaged  */
    int      ours, future, past;
} meta_scan;

static void scan_add(meta_scan *s, const meta_rec *m) {
    for (int i = 0; i < s->n; i++) {
        if (s->cand[i].r.txnid != m->r.txnid) continue;
        /* The other copy of the same version: the same roots, unless a torn
         * ACKED rewrite left one copy without the mark. */
        if (memcmp(&s->cand[i].r, &m->r, sizeof m->r) == 0) s->cand[i].flags |= m->flags;
        return;
    }
    int i = s->n++;
    while (i > 0 && s->cand[i - 1].r.txnid < m->r.txnid) {
        s->cand[i] = s->cand[i - 1];
        i--;
    }
    s->cand[i] = *m;
}

static void meta_scan_file(rp_env *env, meta_scan *s) {
    int empty[2] = {0, 0};
    memset(s, 0, sizeof *s);
    for (unsigned parity = 0; parity < 2; parity++) {
        uint64_t off[2];
        copy_offsets(parity, off);
        int valid = 0, damaged = 0;
        for (int c = 0; c < 2; c++) {
            meta_rec m;
            int st = slot_parse(env->map + off[c], parity, &m);
            if (st != SLOT_EMPTY && st != SLOT_FOREIGN) s->ours = 1;
            if (st == SLOT_FUTURE) s->future = 1;
            if (st == SLOT_PAST) s->past = 1;
            if (st == SLOT_VALID) { valid = 1; scan_add(s, &m); }
            if (st == SLOT_DAMAGED || st == SLOT_FOREIGN) damaged = 1;
        }
        if (!valid && damaged) s->lost = 1;
        if (!valid && !damaged) empty[parity] = 1;
    }
    /* Both parities hold a record once version 2 was written (versions 1
     * and 2 have different parities, and no writer ever clears a slot), so
     * a parity with both slots zeroed beside a record newer than 1 was
     * zeroed by damage: lost, like garbage in its slots. */
    if (s->n && s->cand[0].r.txnid >= 2 && (empty[0] || empty[1])) s->lost = 1;
}

/* Candidate i's commit returned to its caller (format.h). */
static int known_acked(const meta_scan *s, int i) {
    const meta_rec *m = &s->cand[i];
    return (m->flags & RP_META_ACKED) || ((m->flags & RP_META_SYNCED) && i > 0);
}

/* Why version c cannot be opened, or RP_OK: beyond the end of the file
 * (truncated), or, when walk, a page of its commit fails verification.
 *
 * The walk only decides between opening c and falling back past it, so it
 * is skipped for a known acknowledged version outside a salvage: such a
 * commit cannot be torn (its fdatasync returned before the ACKED mark, or
 * before a newer commit began), a failure would be an error in any case,
 * never a fallback, and every read checks a page version's checksum the
 * first time a process reads it (verify.c), so damage is reported at the
 * read of that page, by check(), or by a salvage -- as damage to any older
 * page always was.  That saves the first open the cost of hashing every
 * page of the newest commit (docs/integrity.md). */
static int check_candidate(rp_env *env, const meta_rec *c, uint64_t file_size, int walk) {
    uint64_t need = c->r.pages_used * RP_PAGE_SIZE;
    if (need > file_size)
        return rp_corruptf("the file was truncated: version %llu needs %llu bytes, the file "
                           "has %llu", (unsigned long long)c->r.txnid,
                           (unsigned long long)need, (unsigned long long)file_size);
    if (need > env->map_size)
        return rp_corruptf("version %llu needs %llu bytes, beyond the mapping",
                           (unsigned long long)c->r.txnid, (unsigned long long)need);
    return walk ? rp_verify_commit(env, &c->r) : RP_OK;
}

int rp_recover_roots_ex(rp_env *env, int salvage, rp_roots *out, uint64_t *rolled_from,
                        uint64_t *next_free) {
    if (rolled_from) *rolled_from = 0;
    struct stat st;
    if (fstat(env->fd, &st)) return errno;
    uint64_t size = (uint64_t)st.st_size;
    if (size < 2 * RP_PAGE_SIZE) {
        /* Too short to hold both meta pages: ours, truncated, or not ours. */
        if (size >= RP_PAGE_HEADER + 8 && memcmp(env->map + RP_PAGE_HEADER, RP_META_MAGIC, 8) == 0)
            return rp_corruptf("the file was truncated to %llu bytes (shorter than its two "
                               "meta pages)", (unsigned long long)size);
        return RP_NOT_A_DB;
    }
    meta_scan s;
    meta_scan_file(env, &s);
    if (s.future) return RP_FORMAT_VERSION;
    if (s.past) return RP_FORMAT_OLD;
    if (!s.ours) return RP_NOT_A_DB;
    if (s.n == 0) return rp_corruptf("meta pages 0 and 1: no valid meta record");
    uint64_t newest = s.cand[0].r.txnid;
    if (next_free) *next_free = newest + (s.lost ? 2 : 1);
    uint64_t gave_up = 0;
    char why[200] = "";
    if (s.lost && known_acked(&s, 0)) {
        /* The lost record may be version newest + 1, acknowledged. */
        rp_corruptf("meta pages 0 and 1: both copies of the record of the version after "
                    "%llu are damaged (it may have been acknowledged)",
                    (unsigned long long)newest);
        if (!salvage) return RP_CORRUPT;
        gave_up = newest + 1;
        snprintf(why, sizeof why, "%s", rp_corrupt_detail());
    }
    for (int i = 0; i < s.n; i++) {
        int walk = salvage || !known_acked(&s, i);
        if (check_candidate(env, &s.cand[i], size, walk) == RP_OK) {
            *out = s.cand[i].r;
            if (rolled_from) *rolled_from = gave_up;
            if (gave_up) rp_corruptf("%s", why);   /* the detail of the rollback */
            else rp_corrupt_clear();
            return RP_OK;
        }
        if (!known_acked(&s, i)) continue;   /* torn, never acknowledged */
        char d[200];
        snprintf(d, sizeof d, "%s", rp_corrupt_detail());
        rp_corruptf("version %llu, an acknowledged commit, is damaged: %s",
                    (unsigned long long)s.cand[i].r.txnid, d);
        if (!salvage) return RP_CORRUPT;
        if (!gave_up) {
            gave_up = s.cand[i].r.txnid;
            snprintf(why, sizeof why, "%s", rp_corrupt_detail());
        }
    }
    char d[200];
    snprintf(d, sizeof d, "%s", rp_corrupt_detail());
    return rp_corruptf("no intact version: %s", d);
}

int rp_meta_check(rp_env *env) {
    for (unsigned parity = 0; parity < 2; parity++) {
        uint64_t off[2];
        copy_offsets(parity, off);
        for (int c = 0; c < 2; c++) {
            meta_rec m;
            int st = slot_parse(env->map + off[c], parity, &m);
            if (st == SLOT_DAMAGED || st == SLOT_FOREIGN || st == SLOT_FUTURE || st == SLOT_PAST)
                return rp_corruptf("meta page %llu offset %llu: damaged copy of the record of "
                                   "the newest %s version", (unsigned long long)(off[c] / RP_PAGE_SIZE),
                                   (unsigned long long)(off[c] % RP_PAGE_SIZE),
                                   parity ? "odd" : "even");
        }
    }
    return RP_OK;
}

int rp_recover_roots(rp_env *env, rp_roots *out) {
    return rp_recover_roots_ex(env, 0, out, NULL, NULL);
}
