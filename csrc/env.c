/*
 * env.c -- opening and closing an environment, recovery of the newest
 * commit, statistics, the integrity check, compaction and error strings.
 *
 * RECOVERY happens only in the first process to open the file (the lock
 * file tells): meta.c takes the newest valid meta record, and
 * rp_verify_commit checks that its commit fully reached the file by walking
 * exactly the pages that commit wrote (those whose parent records the
 * meta's version), checking each one's checksum, number, version and
 * structure.  If anything is missing and the commit was never acknowledged,
 * the previous version is used.  A known acknowledged commit is not walked
 * (outside a salvage): it cannot be torn, and damage to it is reported by
 * the read of the damaged page, check() or a salvage (meta.c).  The same
 * choice repairs the state after a writer died holding the writer mutex.
 */
#include "tree.h"

#include <fcntl.h>
#include <libgen.h>
#include <sched.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- error strings ----------------------------------------------------------- */

const char *rp_strerror(int err) {
    switch (err) {
    case RP_OK: return "success";
    case RP_NOTFOUND: return "not found";
    case RP_CORRUPT: return "the database file is corrupt (a page or meta page failed validation)";
    case RP_NOT_A_DB: return "not a realmpy database file";
    case RP_FORMAT_VERSION: return "unsupported database file format version";
    case RP_FORMAT_OLD: return "the database file is in an older format (1 or 2); convert it (rp_env_upgrade, realmpy upgrade)";
    case RP_INCOMPATIBLE_LOCK: return "the lock file is in use with an incompatible layout (another realmpy version or ABI)";
    case RP_MAP_FULL: return "the database reached its maximum size (max_size)";
    case RP_VERSION_LIMIT: return "too many versions are pinned by live snapshots (max_active_versions)";
    case RP_READERS_FULL: return "no free reader slot (max_readers)";
    case RP_BAD_TXN: return "the transaction has ended or failed and can only be aborted";
    case RP_WRONG_THREAD: return "the transaction belongs to another thread";
    case RP_FORKED: return "the handle was inherited across fork()";
    case RP_KEY_TOO_LONG: return "key is empty or longer than the maximum key size";
    case RP_VALUE_TOO_LARGE: return "value is larger than the maximum value size";
    case RP_READ_ONLY: return "write attempted in a read-only environment or transaction";
    case RP_BUSY: return "transactions or cursors are still open";
    case RP_TXN_ACTIVE: return "this thread already has a write transaction";
    case RP_PANIC: return "the environment is unusable after a failed rollback";
    case RP_INVALID: return "invalid argument";
    case RP_BAD_TABLE: return "table name is empty or too long";
    case RP_CLOSED: return "the environment is closing";
    case RP_EXISTS: return "the target file already exists";
    case RP_TIMEOUT: return "timed out waiting for the write lock (another writer holds it)";
    case RP_LOCK_CHANGED: return "the lock file was deleted, replaced, truncated or damaged while the database was open";
    default: break;
    }
    if (err > 0) return strerror(err);
    if (err < RP_LOCK_ERRNO && err > RP_LOCK_ERRNO - 4096) {
        static _Thread_local char buf[160];
        snprintf(buf, sizeof buf, "the lock file: %s", strerror(RP_LOCK_ERRNO - err));
        return buf;
    }
    return "unknown error";
}

int rp_library_version(void) { return RP_LIBRARY_VERSION; }
int rp_format_version(void) { return RP_FORMAT_VERSION_NUMBER; }

/* ---- verification walks -------------------------------------------------------- */

/* A read-only transaction over roots, for walks outside the public API. */
static void walk_txn(rp_txn *t, rp_env *env, const rp_roots *roots) {
    RP_ASSERT(t && env && roots);
    memset(t, 0, sizeof *t);
    t->env = env;
    t->roots = *roots;
    t->txnid = roots->txnid;
    t->base_pages = roots->pages_used;
    t->owner = pthread_self();
    t->catalog.root = roots->cat_pgno;
    t->catalog.root_txnid = roots->cat_txnid;
    t->catalog.exists = 1;
    /* Verify every page, remember none: a commit this walk rejects may be
     * redone under the same page versions (verify.c). */
    t->verify = RP_VERIFY_ALWAYS;
}

/* Verify the pages of tree (pg, tx) written by version T. */
static int verify_tree(rp_txn *t, uint64_t pg, uint64_t tx, int catalog, int d) {
    RP_ASSERT(t->verify == RP_VERIFY_ALWAYS && !(t->flags & RP_TXN_WRITE));   /* a walk_txn */
    RP_ASSERT(d >= 0 && (catalog == 0 || catalog == 1));
    uint64_t T = t->txnid;
    if (!pg) return RP_OK;
    if (tx > T) return rp_corrupt(pg, "reference to a newer version");
    if (d >= RP_MAX_DEPTH) return rp_corrupt(pg, "tree deeper than the limit");
    if (tx < T) return RP_OK;   /* durable since an earlier commit */
    int rc = RP_OK;
    const uint8_t *p = rp_page_read(t, pg, tx, P_BRANCH | P_LEAF, &rc);
    if (!p) return rc;
    const char *why = rp_page_validate(p);
    if (why) return rp_corrupt(pg, why);
    for (unsigned i = 0; i < rp_nkeys(p) && !rc; i++) {
        const uint8_t *e = rp_entry(p, i);
        if (rp_hdr(p)->flags & P_BRANCH) {
            rc = verify_tree(t, rp_br_child(e), rp_br_child_txnid(e), catalog, d + 1);
        } else if (rp_leaf_big(e)) {
            uint64_t otx = rp_rd64(rp_leaf_val(e) + 8);
            if (otx > T) return rp_corrupt(pg, "overflow reference to a newer version");
            if (otx == T && !rp_overflow_read(t, e, &rc)) return rc;
        } else if (catalog) {
            rp_table tb;
            memset(&tb, 0, sizeof tb);
            rc = rp_desc_decode(&tb, rp_leaf_val(e), rp_leaf_vlen(e));
            if (!rc) rc = verify_tree(t, tb.root, tb.root_txnid, 0, 0);
        }
    }
    return rc;
}

static int ignore_page(void *ctx, uint64_t rec_txnid, uint32_t pgno) {
    (void)ctx; (void)rec_txnid; (void)pgno;
    return RP_OK;
}

int rp_verify_commit(rp_env *env, const rp_roots *roots) {
    RP_ASSERT(env && roots);
    struct stat st;
    if (fstat(env->fd, &st)) return errno;
    if (roots->pages_used * RP_PAGE_SIZE > (uint64_t)st.st_size
        || roots->pages_used * RP_PAGE_SIZE > env->map_size)
        return rp_corruptf("version %llu has pages beyond the end of the file",
                           (unsigned long long)roots->txnid);
    rp_txn t;
    walk_txn(&t, env, roots);
    int rc = verify_tree(&t, roots->cat_pgno, roots->cat_txnid, 1, 0);
    /* The free-list walk reads (and so verifies) every list page. */
    if (!rc) rc = rp_freelist_walk(&t, roots, NULL, ignore_page, &t);
    return rc;
}

/* ---- open / close ------------------------------------------------------------ */

int rp_fsync_dir(const char *path) {
    char *copy = strdup(path);
    if (!copy) return ENOMEM;
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (dfd < 0) return errno;
    int rc = fsync(dfd) ? errno : RP_OK;
    close(dfd);
    return rc;
}

/* A new, empty database: version 1 with no tables. */
static int create_file(rp_env *env) {
    int rc = rp_io_grow(env, 1u << 20);
    if (rc) return rc;
    rp_roots r = {.txnid = 1, .pages_used = RP_FIRST_DATA_PAGE};
    rc = rp_meta_commit(env, &r);
    if (!rc) rc = rp_fsync_dir(env->path);
    return rc;
}

/* The first opener's choice of the version to start from (meta.c).  A
 * salvage that rolled back past damage is made durable as a new version
 * numbered above every version the file may hold (format.h). */
static int recover(rp_env *env, rp_roots *roots) {
    uint64_t from = 0, next = 0;
    int rc = rp_recover_roots_ex(env, (env->flags & RP_RECOVER) != 0, roots, &from, &next);
    if (rc) return rc;
    if (!from) {
        /* A silent fallback past a newer record (a commit torn by a crash)
         * continues under a number above it: a retry under the torn
         * commit's number would write pages with that txnid while the torn
         * record, still in its slots, names them; a second crash before the
         * retry's meta write would then leave a valid record over a mix of
         * both attempts' pages, which verification cannot tell apart.  The
         * next commit (next + 1) takes the torn record's parity and so
         * replaces it, and the adopted record's slots stay intact. */
        if (roots->txnid + 1 < next) roots->txnid = next;
        return RP_OK;
    }
    env->recovered_from = from;
    snprintf(env->recovery_note, sizeof env->recovery_note,
             "rolled back to version %llu (content of version %llu): %s",
             (unsigned long long)next, (unsigned long long)roots->txnid, rp_corrupt_detail());
    rp_corrupt_clear();
    roots->txnid = next;
    if (env->flags & RP_RDONLY) return RP_OK;
    rc = rp_meta_commit(env, roots);
    /* The salvaged roots again as the next version, so both parities hold
     * an intact record: a parity whose copies were both lost would otherwise
     * stay lost, and every later open would refuse the file again. */
    roots->txnid = next + 1;
    if (!rc) rc = rp_meta_commit(env, roots);
    return rc;
}

static void env_free(rp_env *env) {
    if (env->map) rp_guard_unmap(env, (void *)env->map, env->map_size, RP_FAULT_DATA);
    rp_verified_free(env);
    if (env->fd >= 0) close(env->fd);
    rp_io_recorder_clear(env);
    free(env->path);
    free(env->lock_path);
    free(env);
}

int rp_env_open(const char *path, unsigned flags, uint64_t max_size,
                unsigned max_readers, unsigned max_active_versions, rp_env **out) {
    if (!out) return RP_INVALID;
    *out = NULL;
    if (!path || !*path
        || (flags & ~(unsigned)(RP_NOSYNC | RP_RDONLY | RP_NOVERIFY | RP_RECOVER)))
        return RP_INVALID;
    if (max_readers > 65536) return RP_INVALID;
    rp_env *env = calloc(1, sizeof *env);
    if (!env) return ENOMEM;
    env->fd = env->lock_fd = -1;
    env->flags = flags;
    env->max_active = max_active_versions;
    env->path = strdup(path);
    size_t plen = strlen(path);
    env->lock_path = malloc(plen + 6);
    if (!env->path || !env->lock_path) { env_free(env); return ENOMEM; }
    memcpy(env->lock_path, path, plen);
    memcpy(env->lock_path + plen, ".lock", 6);
    uint64_t ms = max_size ? max_size : RP_DEFAULT_MAP_SIZE;
    env->map_size = (ms + RP_PAGE_SIZE - 1) / RP_PAGE_SIZE * RP_PAGE_SIZE;
    if (env->map_size < 2 * RP_PAGE_SIZE) env->map_size = 2 * RP_PAGE_SIZE;

    int ro = (flags & RP_RDONLY) != 0;
    env->fd = open(path, (ro ? O_RDONLY : O_RDWR | O_CREAT) | O_CLOEXEC, 0600);
    if (env->fd < 0) { int e = errno; env_free(env); return e; }
    struct stat st;
    if (fstat(env->fd, &st)) { int e = errno; env_free(env); return e; }
    if (!S_ISREG(st.st_mode)) { env_free(env); return RP_NOT_A_DB; }
    env->file_size = (uint64_t)st.st_size;
    if (env->file_size > env->map_size)
        env->map_size = (env->file_size + RP_PAGE_SIZE - 1) / RP_PAGE_SIZE * RP_PAGE_SIZE;
    void *m = mmap(NULL, env->map_size, PROT_READ, MAP_SHARED, env->fd, 0);
    if (m == MAP_FAILED) { int e = errno; env_free(env); return e; }
    env->map = m;
    /* Another program may truncate the file under us (sigbus.c). */
    int rc = rp_guard_add(env, m, env->map_size, PROT_READ, RP_FAULT_DATA);
    if (rc) { env_free(env); return rc; }
    rc = rp_verified_init(env);
    if (rc) { env_free(env); return rc; }

    int first = 0;
    rc = rp_lock_open(env, max_readers, &first);
    if (rc) { env_free(env); return rc; }
    if (first) {
        rp_roots roots;
        if (env->file_size == 0) {
            rc = ro ? RP_NOT_A_DB : create_file(env);
        }
        if (!rc) rc = recover(env, &roots);
        if (!rc) rc = rp_lock_ready(env, &roots);
        if (rc) {
            /* Leaving the lock file not ready makes the next opener rebuild it. */
            rp_lock_close(env);
            env_free(env);
            return rc;
        }
    } else if (rp_commit_in_doubt(env)) {
        /* A writer died mid-commit: settle it before the first read. */
        rc = rp_resolve_commit(env);
        if (rc) {
            rp_lock_close(env);
            env_free(env);
            return rc;
        }
    }
    *out = env;
    return RP_OK;
}

/* Durability "none" (RP_NOSYNC): its commits are never synced, so none
 * carries the acknowledged mark, and damage to the newest one falls back
 * silently (docs/integrity.md).  A clean close narrows that window to the
 * commits made since the last clean close: one sync, then the newest
 * version is marked acknowledged (rp_meta_settle), and damage to it is
 * reported from then on like damage to a durable commit.  Done in a write
 * transaction, so that a dead writer is settled first and no commit races
 * the mark; skipped when another writer holds the lock (its own commit or
 * close comes later) or the env cannot write. */
static void settle_nosync(rp_env *env) {
    if (!(env->flags & RP_NOSYNC) || (env->flags & RP_RDONLY) || env->immutable) return;
    rp_txn *txn = NULL;
    if (rp_txn_begin_timed(env, RP_TXN_WRITE, 0, &txn) != RP_OK) return;
    (void)rp_meta_settle(env, &txn->roots);
    rp_txn_abort(txn);
}

int rp_env_close(rp_env *env) {
    if (!env) return RP_INVALID;
    if (env->fork_gen != atomic_load(&rp_fork_generation)) {
        /* A fork child: the shared state belongs to the parent.  Drop only
         * this process's mappings and descriptors. */
        rp_guard_unmap(env, env->lk, env->lk_size, RP_FAULT_LOCK);
        if (env->lock_fd >= 0) close(env->lock_fd);
        free(env->pool);
        env_free(env);
        return RP_OK;
    }
    pthread_mutex_lock(&env->local);
    unsigned open_txns = env->ntxns;
    pthread_mutex_unlock(&env->local);
    if (open_txns) return RP_BUSY;
    settle_nosync(env);
    rp_lock_interrupt(env);
    while (atomic_load(&env->nwaiting)) sched_yield();   /* waiters return at once */
    rp_lock_close(env);
    env_free(env);
    return RP_OK;
}

uint64_t rp_env_version(rp_env *env) { return env ? rp_version_load(env) : 0; }

uintptr_t rp_env_version_addr(rp_env *env) {
    return env ? (uintptr_t)&env->lk->version : 0;
}

int rp_env_wait(rp_env *env, uint64_t since, int64_t timeout_ns, uint64_t *out) {
    int rc = rp_env_usable(env);
    if (rc) return rc;
    if (!out) return RP_INVALID;
    atomic_fetch_add(&env->nwaiting, 1);
    rc = rp_lock_wait(env, since, timeout_ns, out);
    atomic_fetch_sub(&env->nwaiting, 1);
    return rc;
}

int rp_env_interrupt(rp_env *env) {
    int rc = rp_env_usable(env);
    if (rc && rc != RP_PANIC) return rc;
    rp_lock_interrupt(env);
    return RP_OK;
}

const char *rp_env_path(rp_env *env) { return env ? env->path : ""; }

uint64_t rp_env_recovered_from(rp_env *env) { return env ? env->recovered_from : 0; }

const char *rp_env_recovery_note(rp_env *env) { return env ? env->recovery_note : ""; }

int rp_env_readers(rp_env *env, rp_reader_info *out, unsigned cap, unsigned *count) {
    int rc = rp_env_usable(env);
    if (rc) return rc;
    if (!count || (!out && cap)) return RP_INVALID;
    return rp_readers_list(env, out, cap, count);
}

int rp_env_reap_readers(rp_env *env, unsigned *reaped) {
    int rc = rp_env_usable(env);
    if (rc) return rc;
    return rp_reap(env, 1, reaped);
}

/* ---- statistics --------------------------------------------------------------- */

typedef struct stat_ctx {
    uint64_t oldest, free_now, pending;
} stat_ctx;

static int stat_page(void *ctx, uint64_t rec_txnid, uint32_t pgno) {
    (void)pgno;
    stat_ctx *s = ctx;
    if (rec_txnid <= s->oldest) s->free_now++;
    else s->pending++;
    return RP_OK;
}

/* A transaction to inspect the latest version: a snapshot, or when every
 * reader slot is taken the write transaction, which keeps the latest
 * version's pages from reuse just as well. */
static int inspect_begin(rp_env *env, rp_txn **txn) {
    int rc = rp_txn_begin(env, 0, txn);
    if (rc == RP_READERS_FULL && !(env->flags & RP_RDONLY))
        rc = rp_txn_begin(env, RP_TXN_WRITE, txn);
    return rc;
}

int rp_env_stat(rp_env *env, rp_stat *out) {
    if (!out) return RP_INVALID;
    memset(out, 0, sizeof *out);
    rp_txn *txn;
    int rc = inspect_begin(env, &txn);
    if (rc) return rc;
    out->version = txn->roots.txnid;
    out->page_size = RP_PAGE_SIZE;
    out->pages_used = txn->roots.pages_used;
    struct stat st;
    out->file_size = fstat(env->fd, &st) ? 0 : (uint64_t)st.st_size;
    out->map_size = env->map_size;
    out->max_readers = env->nreaders;
    unsigned active = 0;
    /* Our own snapshot pins the latest version: it is counted like any other. */
    stat_ctx sc = {.oldest = rp_oldest_reader(env, txn->roots.txnid, &active)};
    out->oldest_version = sc.oldest;
    out->active_versions = active;
    rc = rp_freelist_walk(txn, &txn->roots, NULL, stat_page, &sc);
    out->free_pages = sc.free_now;
    out->pending_pages = sc.pending;
    rp_cursor cur;
    rp_cursor_init(&cur, txn, &txn->catalog);
    const void *k;
    size_t kl;
    int step = rc ? rc : rp_cursor_seek(&cur, RP_SEEK_FIRST, NULL, 0, &k, &kl, NULL, NULL);
    while (step == RP_OK) {
        rp_table *t;
        step = rp_table_get(txn, k, kl, 0, &t);
        if (step) break;
        out->tables++;
        out->entries += t->entries;
        out->tree_pages += t->pages;
        step = rp_cursor_step(&cur, 1, &k, &kl, NULL, NULL);
    }
    free(cur.key);
    if (step != RP_NOTFOUND) rc = step;
    unsigned n = 0;
    rp_reader_info info[64];
    if (!rc && rp_readers_list(env, info, 64, &n) == RP_OK) {
        for (unsigned i = 0; i < n; i++) out->readers_used += info[i].alive ? 1 : 0;
    }
    rp_txn_abort(txn);
    return rc;
}

/* ---- integrity check ------------------------------------------------------------- */

typedef struct check_ctx {
    rp_txn   *txn;
    uint8_t  *seen;                  /* one bit per page                      */
    char     *msg;
    size_t    msglen;
    uint64_t  entries, pages;        /* of the table being walked             */
    const rp_table *table;           /* the table being walked (its name)     */
} check_ctx;

/* Report the detail rp_corrupt() recorded, naming the table. */
static int failed(check_ctx *c, int rc) {
    if (rc != RP_CORRUPT) return rc;
    rp_corrupt_table(rc, c->table);
    if (c->msg && c->msglen) snprintf(c->msg, c->msglen, "%s", rp_corrupt_detail());
    return RP_CORRUPT;
}

static int fail(check_ctx *c, uint64_t pgno, const char *what) {
    return failed(c, rp_corrupt(pgno, what));
}

static int mark(check_ctx *c, uint64_t pgno, uint64_t n) {
    RP_ASSERT(c->seen && n >= 1);
    for (uint64_t i = pgno; i < pgno + n; i++) {
        if (i >= c->txn->roots.pages_used) return fail(c, i, "beyond the end of the used pages");
        if (c->seen[i / 8] & (1u << (i % 8))) return fail(c, i, "referenced twice");
        c->seen[i / 8] |= (uint8_t)(1u << (i % 8));
    }
    return RP_OK;
}

static int check_tree(check_ctx *c, uint64_t pg, uint64_t tx, int catalog, int d,
                      const uint8_t *lo, size_t lolen, const uint8_t *hi, size_t hilen,
                      uint64_t *depth);

static int check_leaf_entry(check_ctx *c, const uint8_t *p, const uint8_t *e, int catalog) {
    int rc = RP_OK;
    uint64_t pg = rp_hdr(p)->pgno;
    if (rp_leaf_big(e)) {
        uint64_t opg = rp_rd64(rp_leaf_val(e));
        const uint8_t *ov = rp_overflow_read(c->txn, e, &rc);
        if (!ov) return failed(c, rc);
        c->pages += rp_hdr(ov)->npages;
        return mark(c, opg, rp_hdr(ov)->npages);
    }
    if (!catalog) return RP_OK;
    rp_table tb;
    memset(&tb, 0, sizeof tb);
    size_t nlen = rp_leaf_klen(e);
    if (nlen > RP_MAX_TABLE_NAME) return fail(c, pg, "table name too long");
    memcpy(tb.name, rp_leaf_key(e), nlen);
    tb.nlen = (uint16_t)nlen;
    if (rp_desc_decode(&tb, rp_leaf_val(e), rp_leaf_vlen(e)))
        return failed(c, rp_corrupt_table(rp_corrupt(pg, "bad table descriptor"), &tb));
    check_ctx sub = *c;
    sub.entries = sub.pages = 0;
    sub.table = &tb;
    uint64_t depth = 0;
    rc = tb.root ? check_tree(&sub, tb.root, tb.root_txnid, 0, 0, NULL, 0, NULL, 0, &depth) : RP_OK;
    if (rc) return rc;
    if (sub.entries != tb.entries) return fail(&sub, tb.root, "table entry count mismatch");
    if (sub.pages != tb.pages) return fail(&sub, tb.root, "table page count mismatch");
    if (depth != tb.depth) return fail(&sub, tb.root, "table depth mismatch");
    return RP_OK;
}

static int check_tree(check_ctx *c, uint64_t pg, uint64_t tx, int catalog, int d,
                      const uint8_t *lo, size_t lolen, const uint8_t *hi, size_t hilen,
                      uint64_t *depth) {
    RP_ASSERT(c && depth && d >= 0 && (lo || !lolen) && (hi || !hilen));
    if (d >= RP_MAX_DEPTH) return fail(c, pg, "tree too deep");
    int rc = RP_OK;
    const uint8_t *p = rp_page_read(c->txn, pg, tx, P_BRANCH | P_LEAF, &rc);
    if (!p) return failed(c, rc);
    const char *why = rp_page_validate(p);
    if (why) return fail(c, pg, why);
    if ((rc = mark(c, pg, 1))) return rc;
    c->pages++;
    int leaf = (rp_hdr(p)->flags & P_LEAF) != 0;
    unsigned n = rp_nkeys(p);
    if (leaf) {
        if (*depth == 0) *depth = (uint64_t)d + 1;
        else if (*depth != (uint64_t)d + 1) return fail(c, pg, "leaves at different depths");
    }
    const uint8_t *prev = NULL;
    size_t prevlen = 0;
    for (unsigned i = 0; i < n; i++) {
        const uint8_t *e = rp_entry(p, i);
        const uint8_t *k = leaf ? rp_leaf_key(e) : rp_br_key(e);
        size_t kl = leaf ? rp_leaf_klen(e) : rp_br_klen(e);
        if (!leaf && i == 0) { k = lo; kl = lolen; }
        if (k && prev && rp_keycmp(prev, prevlen, k, kl) >= 0 && !(i == 0))
            return fail(c, pg, "keys out of order");
        if (k && i > 0 && lo && rp_keycmp(k, kl, lo, lolen) < 0) return fail(c, pg, "key below its range");
        if (k && hi && rp_keycmp(k, kl, hi, hilen) >= 0) return fail(c, pg, "key above its range");
        if (leaf) {
            c->entries++;
            if ((rc = check_leaf_entry(c, p, e, catalog))) return rc;
        } else {
            const uint8_t *nk = NULL;
            size_t nkl = 0;
            if (i + 1 < n) { nk = rp_br_key(rp_entry(p, i + 1)); nkl = rp_br_klen(rp_entry(p, i + 1)); }
            else { nk = hi; nkl = hilen; }
            rc = check_tree(c, rp_br_child(e), rp_br_child_txnid(e), catalog, d + 1, k, kl, nk, nkl, depth);
            if (rc) return rc;
        }
        prev = k;
        prevlen = kl;
    }
    return RP_OK;
}

static int check_chain(void *ctx, uint64_t pgno, uint64_t txnid, const uint8_t *page) {
    (void)txnid; (void)page;   /* rp_page_read verified it */
    return mark(ctx, pgno, 1);
}

static int check_free(void *ctx, uint64_t rec_txnid, uint32_t pgno) {
    (void)rec_txnid;
    return mark(ctx, pgno, 1);
}

int rp_env_check(rp_env *env, char *msg, size_t msglen) {
    if (msg && msglen) msg[0] = 0;
    rp_txn *txn;
    int rc = inspect_begin(env, &txn);
    if (rc) return rc;
    /* Every page's checksum, every time: the cache is for reads. */
    txn->verify = RP_VERIFY_ALWAYS;
    check_ctx c = {.txn = txn, .msg = msg, .msglen = msglen};
    c.seen = calloc(txn->roots.pages_used / 8 + 1, 1);
    if (!c.seen) { rp_txn_abort(txn); return ENOMEM; }
    rc = mark(&c, 0, RP_FIRST_DATA_PAGE);
    if (!rc) rc = failed(&c, rp_meta_check(env));
    c.table = &txn->catalog;
    uint64_t depth = 0;
    if (!rc && txn->roots.cat_pgno)
        rc = check_tree(&c, txn->roots.cat_pgno, txn->roots.cat_txnid, 1, 0, NULL, 0, NULL, 0, &depth);
    if (!rc) {
        c.table = NULL;
        rc = rp_freelist_walk(txn, &txn->roots, check_chain, check_free, &c);
        if (rc && msg && msglen && !msg[0]) {
            const char *d = rp_corrupt_detail();
            snprintf(msg, msglen, "free list: %s", d[0] ? d : rp_strerror(rc));
            if (rc == RP_CORRUPT) rp_corruptf("%s", msg);
        }
    }
    for (uint64_t i = 0; !rc && i < txn->roots.pages_used; i++)
        if (!(c.seen[i / 8] & (1u << (i % 8)))) rc = fail(&c, i, "leaked (neither used nor free)");
    free(c.seen);
    rp_txn_abort(txn);
    return rc;
}

/* ---- compaction ------------------------------------------------------------------ */

int rp_env_seal_copy(rp_env *dst, const char *dest, uint64_t version) {
    int rc = fdatasync(dst->fd) ? errno : RP_OK;
    if (!rc) {
        /* Its commits were made without a sync (RP_NOSYNC, for speed), so
         * its record carries no acknowledged mark: add it now that it is
         * durable, or damage to the copy would quietly open as empty.  A
         * record may name a version above its pages' (none is then written
         * by it): that keeps a converted file's version number. */
        rp_roots r;
        rc = rp_ring_read(dst, rp_version_load(dst), &r);
        if (!rc && version > r.txnid) {
            /* The copy is open in no other process: publish the renumbered
             * version, or the close would mark the old number acknowledged
             * again (settle_nosync) over this record. */
            r.txnid = version;
            rp_ring_publish(dst, &r);
            rp_version_publish(dst, version);
        }
        if (!rc) rc = rp_meta_write(dst, &r, RP_META_SYNCED | RP_META_ACKED, NULL);
        if (!rc) rc = rp_io_sync(dst);
    }
    if (!rc) rc = rp_fsync_dir(dest);
    return rc;
}

int rp_env_compact(rp_env *env, const char *dest) {
    int rc = rp_env_usable(env);
    if (rc) return rc;
    if (!dest || !*dest) return RP_INVALID;
    struct stat st;
    if (stat(dest, &st) == 0) return RP_EXISTS;
    rp_env *dst;
    rc = rp_env_open(dest, RP_NOSYNC, env->map_size, 0, 0, &dst);
    if (rc) return rc;
    rp_txn *src = NULL, *w = NULL;
    rc = rp_txn_begin(env, 0, &src);
    if (!rc) rc = rp_txn_begin(dst, RP_TXN_WRITE, &w);
    rp_cursor cat, cur;
    rp_cursor_init(&cat, src, src ? &src->catalog : NULL);
    rp_cursor_init(&cur, src, NULL);
    const void *name;
    size_t nlen;
    int step = rc ? rc : rp_cursor_seek(&cat, RP_SEEK_FIRST, NULL, 0, &name, &nlen, NULL, NULL);
    while (step == RP_OK) {
        rp_table *st_src, *st_dst;
        step = rp_table_get(src, name, nlen, 0, &st_src);
        if (!step) step = rp_table_get(w, name, nlen, 1, &st_dst);
        if (step) break;
        rp_cursor_init(&cur, src, st_src);
        const void *k, *v;
        size_t kl, vl;
        int s2 = rp_cursor_seek(&cur, RP_SEEK_FIRST, NULL, 0, &k, &kl, &v, &vl);
        while (s2 == RP_OK) {
            s2 = rp_bt_put(w, st_dst, k, kl, v, vl);
            if (!s2) s2 = rp_cursor_step(&cur, 1, &k, &kl, &v, &vl);
        }
        free(cur.key);
        cur.key = NULL;
        if (s2 != RP_NOTFOUND) { step = s2; break; }
        step = rp_cursor_step(&cat, 1, &name, &nlen, NULL, NULL);
    }
    free(cat.key);
    if (step != RP_NOTFOUND) rc = step;
    if (!rc) { rc = rp_txn_commit(w); w = NULL; }
    else if (w) rp_txn_abort(w);
    if (!rc) rc = rp_env_seal_copy(dst, dest, 0);
    if (src) rp_txn_abort(src);
    rp_env_close(dst);
    if (rc) {
        unlink(dest);
        char lk[4096];
        snprintf(lk, sizeof lk, "%s.lock", dest);
        unlink(lk);
    }
    return rc;
}
