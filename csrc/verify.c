/*
 * verify.c -- what a read may trust: every committed page's checksum is
 * verified before its contents are handed out, and every RP_CORRUPT says
 * where it was found.
 *
 * THE VERIFIED-VERSION CACHE
 *   Pages are copy-on-write: while a page version (pgno, txnid) is
 *   reachable from a live snapshot its bytes never change, and its parent
 *   records the txnid.  So a process hashes a page version once: the first
 *   read verifies the checksum and stores txnid in env->verified[pgno];
 *   later reads compare that word with the txnid their parent recorded, one
 *   load instead of a hash.  The array is an anonymous MAP_NORESERVE
 *   mapping of 8 bytes per page of max_size, so only the entries of pages
 *   actually read take memory (8 bytes per 4 KiB read: 0.2%).
 *
 *   Threads share it with relaxed 64-bit atomic loads and stores: two
 *   threads may both hash a page, and either store is right.  A stale entry
 *   is harmless: a reused page number carries a newer txnid, which misses.
 *
 *   Only snapshots of published versions fill it, and a writer whose
 *   commit stands, for the pages it wrote (their checksums were computed
 *   from the bytes written; txn.c, remember_written).  Dirty pages of a
 *   write transaction are its own buffers (checksummed when written), and
 *   the walks of recovery verify without filling: a commit they reject was
 *   never published, and a later commit may write other bytes under the
 *   same (pgno, txnid).
 *
 * CORRUPTION DETAIL
 *   rp_corrupt() records, per thread, where and why a check failed ("page
 *   123: checksum mismatch (table users)") and returns RP_CORRUPT; callers
 *   read it with rp_corrupt_detail() right after the call that failed.
 */
#include "tree.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/mman.h>

/* ---- corruption detail ------------------------------------------------------ */

static _Thread_local char detail[256];

int rp_corruptf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return RP_CORRUPT;
}

int rp_corrupt(uint64_t pgno, const char *what) {
    return rp_corruptf("page %llu: %s", (unsigned long long)pgno, what);
}

int rp_corrupt_name_table(const rp_table *t) {
    if (!t || !detail[0] || strstr(detail, " (table ")) return RP_CORRUPT;
    size_t n = strlen(detail);
    if (t->nlen)
        snprintf(detail + n, sizeof detail - n, " (table %.*s)", (int)t->nlen, t->name);
    else
        snprintf(detail + n, sizeof detail - n, " (table catalog)");
    return RP_CORRUPT;
}

const char *rp_corrupt_detail(void) { return detail; }

void rp_corrupt_clear(void) { detail[0] = 0; }

/* ---- page verification ------------------------------------------------------ */

int rp_verified_init(rp_env *env) {
    size_t bytes = (size_t)(env->map_size / RP_PAGE_SIZE) * sizeof(uint64_t);
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return errno;
    env->verified = m;
    env->verified_bytes = bytes;
    return RP_OK;
}

void rp_verified_free(rp_env *env) {
    if (env->verified) munmap((void *)env->verified, env->verified_bytes);
    env->verified = NULL;
}

uint32_t rp_page_sum(const uint8_t *page) {
    const rp_page_hdr *h = rp_hdr(page);
    size_t n = (h->flags & P_OVERFLOW) ? h->npages : 1;
    return rp_page_checksum(page, n * RP_PAGE_SIZE);
}

int rp_page_verify(rp_txn *txn, const uint8_t *page, uint64_t pgno, uint64_t txnid) {
    if (rp_hdr(page)->checksum != rp_page_sum(page)) {
        /* Zeros the SIGBUS guard put in place of a truncated file's pages
         * (sigbus.c) are not damage: say what happened. */
        if (rp_guard_faulted(txn->env)) return rp_guard_error(txn->env);
        return rp_hdr(page)->flags & P_OVERFLOW
                   ? rp_corrupt(pgno, "checksum mismatch (overflow run)")
                   : rp_corrupt(pgno, "checksum mismatch");
    }
    if (txn->verify == RP_VERIFY_CACHED)
        atomic_store_explicit(&txn->env->verified[pgno], txnid, memory_order_relaxed);
    return RP_OK;
}
