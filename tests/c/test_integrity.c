/*
 * test_integrity.c -- the reproducers of issue 10, items 1-3: a damaged
 * file never crashes a process, never returns wrong data without an error,
 * never silently undoes an acknowledged commit.
 *
 *   - npages = 0x10000 in the header of a page of the newest commit (open
 *     reports it) and of an older page (open works, check() and reads
 *     report it), with the page's checksum made right again, so that only
 *     the bounds checks stand between the engine and a wild read;
 *   - one flipped value byte in a leaf, and in an overflow run's
 *     continuation page: get, cursor seek and step, batch scan, get_many and
 *     join all return RP_CORRUPT, and the detail names the page and table;
 *   - one flipped bit in the newest meta record: survived (the mirror copy);
 *   - both copies of the newest record damaged: RP_CORRUPT; RP_RECOVER opens
 *     the previous version, says so, and makes the salvage durable;
 *   - a damaged page of the newest (acknowledged) commit: open works (it
 *     does not walk an acknowledged commit), the read of the page and
 *     check() are RP_CORRUPT naming it; RP_RECOVER walks and rolls back;
 *   - durability "none": after a clean close, a damaged page of the newest
 *     commit is reported so too; without one (a crash), open falls back;
 *   - the file truncated to 16, 64 and 128 KiB: RP_CORRUPT "truncated";
 *   - a format 1 file (one copy per record, no flags) still opens, and a
 *     writable open rewrites its records as format 2;
 *   - a compacted copy's newest commit counts as acknowledged, and so does
 *     a dead writer's durable commit once another process settled it;
 *   - the meta write (one pwrite of both meta pages) torn at every sector
 *     boundary: the new version or the previous one opens, never an error,
 *     and the previous version's copies are never disturbed.
 */
#define _GNU_SOURCE 1
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

/* The engine's checksum (page.c), to forge headers whose checksum is right. */
uint32_t rp_hash32(const void *data, size_t len, uint32_t seed);
#define SEED 0x52504731u

#define NKEYS 600
#define BIGLEN 9000   /* an overflow run of three pages */

static char dir[64];

static void path_of(char *out, const char *name) { snprintf(out, 256, "%s/%s", dir, name); }

static void rm_db(const char *path) {
    char lock[300];
    snprintf(lock, sizeof lock, "%s.lock", path);
    remove(path);
    remove(lock);
}

static size_t keyof(int i, char *k) { return (size_t)sprintf(k, "key%05d", i); }

static size_t valof(int i, int gen, unsigned char *v) {
    size_t len = 40 + (size_t)(i % 60);
    for (size_t j = 0; j < len; j++) v[j] = (unsigned char)(i * 7 + j + gen * 13);
    return len;
}

static void bigof(int i, unsigned char *v) {
    for (size_t j = 0; j < BIGLEN; j++) v[j] = (unsigned char)(i + j * 3);
}

/* Version 2 fills t (small values), big (overflow values) and idx
 * ("ix" + key of t: a join index); version 3 rewrites the even keys of t;
 * version 4 only touches "other", so the pages of t, big and idx are older
 * than the newest commit. */
static void build(const char *path) {
    rm_db(path);
    rp_env *env;
    E(rp_env_open(path, 0, 0, 0, 0, &env));
    static unsigned char v[BIGLEN];
    rp_txn *w;
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    for (int i = 0; i < NKEYS; i++) {
        char k[16], ik[20];
        size_t kl = keyof(i, k);
        E(rp_put(w, "t", 1, k, kl, v, valof(i, 0, v)));
        sprintf(ik, "ix%s", k);
        E(rp_put(w, "idx", 3, ik, kl + 2, "", 0));
    }
    for (int i = 0; i < 4; i++) {
        char k[16];
        bigof(i, v);
        E(rp_put(w, "big", 3, k, keyof(i, k), v, BIGLEN));
    }
    E(rp_txn_commit(w));
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    for (int i = 0; i < NKEYS; i += 2) {
        char k[16];
        size_t kl = keyof(i, k);
        E(rp_put(w, "t", 1, k, kl, v, valof(i, 1, v)));
    }
    E(rp_txn_commit(w));
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    E(rp_put(w, "other", 5, "k", 1, "v", 1));
    E(rp_txn_commit(w));
    CHECK(rp_env_version(env) == 4, "built version 4");
    E(rp_env_close(env));
}

/* Does the file hold version gen's t (gen 1: before the rewrite of the
 * even keys, 2: after)? */
static int t_matches(rp_env *env, int gen) {
    rp_txn *r;
    E(rp_txn_begin(env, 0, &r));
    static unsigned char v[BIGLEN];
    int ok = 1;
    for (int i = 0; i < NKEYS && ok; i++) {
        char k[16];
        const void *got;
        size_t gl, len = valof(i, gen == 2 && i % 2 == 0 ? 1 : 0, v);
        ok = rp_get(r, "t", 1, k, keyof(i, k), &got, &gl) == RP_OK && gl == len
             && memcmp(got, v, len) == 0;
    }
    rp_txn_abort(r);
    return ok;
}

/* ---- file surgery ------------------------------------------------------------ */

static int fd_of(const char *path) {
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0, "open the data file");
    return fd;
}

static void xor_byte(const char *path, off_t off, unsigned char x) {
    int fd = fd_of(path);
    unsigned char b;
    CHECK(pread(fd, &b, 1, off) == 1, "pread");
    b ^= x;
    CHECK(pwrite(fd, &b, 1, off) == 1, "pwrite");
    close(fd);
}

/* Set the npages field of page pgno, then make its checksum right again. */
static void set_npages(const char *path, uint64_t pgno, uint32_t npages) {
    int fd = fd_of(path);
    unsigned char b[4096];
    CHECK(pread(fd, b, sizeof b, (off_t)pgno * 4096) == (ssize_t)sizeof b, "pread");
    memcpy(b + 28, &npages, 4);
    uint32_t sum = rp_hash32(b + 4, sizeof b - 4, SEED);
    memcpy(b, &sum, 4);
    CHECK(pwrite(fd, b, sizeof b, (off_t)pgno * 4096) == (ssize_t)sizeof b, "pwrite");
    close(fd);
}

static uint64_t hdr_u64(const unsigned char *page, size_t off) {
    uint64_t x;
    memcpy(&x, page + off, 8);
    return x;
}

/* Where key's value lives: the page (file offset of the page) and the
 * value's offset in it, from the mapped address the engine hands out. */
static void locate(const char *path, const char *table, const char *key, uint64_t *pgno,
                   size_t *voff) {
    rp_env *env;
    E(rp_env_open(path, 0, 0, 0, 0, &env));
    rp_txn *r;
    E(rp_txn_begin(env, 0, &r));
    const void *v;
    size_t vl;
    E(rp_get(r, table, strlen(table), key, strlen(key), &v, &vl));
    const unsigned char *page = (const unsigned char *)((uintptr_t)v & ~(uintptr_t)4095);
    *pgno = hdr_u64(page, 16);
    *voff = (size_t)((const unsigned char *)v - page);
    rp_txn_abort(r);
    E(rp_env_close(env));
}

static uint64_t page_txnid(const char *path, uint64_t pgno) {
    int fd = fd_of(path);
    unsigned char h[32];
    CHECK(pread(fd, h, sizeof h, (off_t)pgno * 4096) == (ssize_t)sizeof h, "pread");
    close(fd);
    return hdr_u64(h, 8);
}

static void expect_open_corrupt(const char *path, unsigned flags, const char *says) {
    rp_env *env = NULL;
    int rc = rp_env_open(path, flags, 0, 0, 0, &env);
    if (rc != RP_CORRUPT || !strstr(rp_corrupt_detail(), says)) {
        fprintf(stderr, "open: %s (%s), expected RP_CORRUPT saying \"%s\"\n", rp_strerror(rc),
                rp_corrupt_detail(), says);
        exit(1);
    }
    CHECK(env == NULL, "no env on failure");
}

static void expect_check_corrupt(rp_env *env, const char *says) {
    char msg[256];
    int rc = rp_env_check(env, msg, sizeof msg);
    if (rc != RP_CORRUPT || !strstr(msg, says)) {
        fprintf(stderr, "check: %s (%s), expected RP_CORRUPT saying \"%s\"\n", rp_strerror(rc),
                msg, says);
        exit(1);
    }
}

/* Damage to a page of version, a known acknowledged version: open neither
 * walks that commit nor falls back past it (meta.c), and the first read
 * of key of table and check() report what says. */
static void expect_read_corrupt(const char *path, uint64_t version, const char *table,
                                const char *key, const char *says) {
    rp_env *env;
    E(rp_env_open(path, 0, 0, 0, 0, &env));
    CHECK(rp_env_version(env) == version && rp_env_recovered_from(env) == 0,
          "opened at the acknowledged version, nothing rolled back");
    rp_txn *r;
    E(rp_txn_begin(env, 0, &r));
    const void *v;
    size_t vl;
    CHECK(rp_get(r, table, strlen(table), key, strlen(key), &v, &vl) == RP_CORRUPT, "get");
    if (!strstr(rp_corrupt_detail(), says)) {
        fprintf(stderr, "get: %s, expected \"%s\"\n", rp_corrupt_detail(), says);
        exit(1);
    }
    rp_txn_abort(r);
    expect_check_corrupt(env, says);
    E(rp_env_close(env));
}

/* "page P: checksum mismatch", as a read of damaged page P says. */
static const char *checksum_of(uint64_t pg) {
    static char buf[64];
    snprintf(buf, sizeof buf, "page %llu: checksum mismatch", (unsigned long long)pg);
    return buf;
}

#define check_ok(env) check_ok_at(env, __LINE__)
static void check_ok_at(rp_env *env, int line) {
    char msg[256];
    int rc = rp_env_check(env, msg, sizeof msg);
    if (rc) { fprintf(stderr, "line %d: check: %s (%s)\n", line, rp_strerror(rc), msg); exit(1); }
}

/* ---- reads that meet a damaged value --------------------------------------------- */

/* Every read path that reaches key of table returns RP_CORRUPT, with detail
 * naming the page and the table. */
static void reads_report(const char *path, const char *table, const char *key, uint64_t pgno) {
    rp_env *env;
    E(rp_env_open(path, 0, 0, 0, 0, &env));
    rp_txn *r;
    E(rp_txn_begin(env, 0, &r));
    size_t tl = strlen(table), kl = strlen(key);
    char want[64];
    snprintf(want, sizeof want, "page %llu: checksum mismatch", (unsigned long long)pgno);
    const void *v, *k;
    size_t vl, klen;
    /* get */
    CHECK(rp_get(r, table, tl, key, kl, &v, &vl) == RP_CORRUPT, "get");
    CHECK(strstr(rp_corrupt_detail(), want) && strstr(rp_corrupt_detail(), "(table "), "get detail");
    /* cursor seek, and a step onto it */
    rp_cursor *c;
    E(rp_cursor_open(r, table, tl, &c));
    CHECK(rp_cursor_seek(c, RP_SEEK_GE, key, kl, &k, &klen, &v, &vl) == RP_CORRUPT, "seek");
    CHECK(strstr(rp_corrupt_detail(), want), "seek detail");
    int rc = rp_cursor_seek(c, RP_SEEK_FIRST, NULL, 0, &k, &klen, &v, &vl);
    while (rc == RP_OK) rc = rp_cursor_step(c, 1, &k, &klen, &v, &vl);
    CHECK(rc == RP_CORRUPT, "step");
    /* batch scan */
    static unsigned char buf[1 << 16];
    size_t n, used;
    /* (a batch leaves the cursor on the first entry it did not copy) */
    rc = rp_cursor_seek(c, RP_SEEK_FIRST, NULL, 0, NULL, NULL, NULL, NULL);
    while (rc == RP_OK)
        rc = rp_cursor_batch(c, 1, RP_BATCH_CURRENT, NULL, 0, buf, sizeof buf, 64, &n, &used);
    CHECK(rc == RP_CORRUPT, "batch scan");
    rp_cursor_close(c);
    /* get_many */
    unsigned char keys[64];
    uint32_t kl32 = (uint32_t)kl;
    memcpy(keys, &kl32, 4);
    memcpy(keys + 4, key, kl);
    CHECK(rp_get_many(r, table, tl, keys, 4 + kl, 1, 0, buf, sizeof buf, &n, &used) == RP_CORRUPT,
          "get_many");
    CHECK(strstr(rp_corrupt_detail(), want), "get_many detail");
    /* join: idx's entries "ix" + key name t's keys */
    if (strcmp(table, "t") == 0) {
        E(rp_cursor_open(r, "idx", 3, &c));
        E(rp_cursor_seek(c, RP_SEEK_FIRST, NULL, 0, NULL, NULL, NULL, NULL));
        do rc = rp_cursor_join(c, 1, RP_BATCH_CURRENT, NULL, 0, 2, "t", 1, NULL, 0, buf,
                               sizeof buf, 64, &n, &used);
        while (rc == RP_OK);
        CHECK(rc == RP_CORRUPT, "join");
        CHECK(strstr(rp_corrupt_detail(), "(table t)"), "join detail names the joined table");
        rp_cursor_close(c);
    }
    rp_txn_abort(r);
    expect_check_corrupt(env, want);
    E(rp_env_close(env));
}

static void flipped_leaf_value(void) {
    char path[256];
    path_of(path, "leaf");
    build(path);
    uint64_t pg;
    size_t off;
    locate(path, "t", "key00301", &pg, &off);
    CHECK(page_txnid(path, pg) < 4, "a page older than the newest commit");
    xor_byte(path, (off_t)(pg * 4096 + off + 3), 0x20);
    reads_report(path, "t", "key00301", pg);
}

static void flipped_overflow_continuation(void) {
    char path[256];
    path_of(path, "overflow");
    build(path);
    uint64_t pg;
    size_t off;
    locate(path, "big", "key00002", &pg, &off);
    CHECK(off == 32, "an overflow value starts after the header");
    /* A byte on the run's second page, which has no header of its own. */
    xor_byte(path, (off_t)((pg + 1) * 4096 + 100), 0x01);
    reads_report(path, "big", "key00002", pg);
    /* The other values of big still read. */
    rp_env *env;
    E(rp_env_open(path, 0, 0, 0, 0, &env));
    rp_txn *r;
    E(rp_txn_begin(env, 0, &r));
    const void *v;
    size_t vl;
    static unsigned char want[BIGLEN];
    bigof(1, want);
    E(rp_get(r, "big", 3, "key00001", 8, &v, &vl));
    CHECK(vl == BIGLEN && memcmp(v, want, BIGLEN) == 0, "an intact overflow value");
    rp_txn_abort(r);
    E(rp_env_close(env));
}

/* ---- npages ------------------------------------------------------------------- */

/* npages = 0x10000 (checksum made right) on the page holding key of
 * table, a page older than the newest commit: open works, a get of it and
 * check() report what says. */
static void bad_npages_older(const char *path, const char *table, const char *key,
                             const char *says) {
    build(path);
    uint64_t pg;
    size_t off;
    locate(path, table, key, &pg, &off);
    CHECK(page_txnid(path, pg) < 4, "a page older than the newest commit");
    set_npages(path, pg, 0x10000);
    expect_read_corrupt(path, 4, table, key, says);
}

static void bad_npages(void) {
    char path[256];
    path_of(path, "npages");
    bad_npages_older(path, "t", "key00100", "npages");
    bad_npages_older(path, "big", "key00003", "overflow run beyond");
    uint64_t pg;
    size_t off;
    rp_env *env;
    /* On a page of the newest commit (the root of "other", version 4,
     * acknowledged): the same, and a salvage, which does walk the newest
     * commit, rolls back past it. */
    build(path);
    locate(path, "other", "k", &pg, &off);
    CHECK(page_txnid(path, pg) == 4, "a page of the newest commit");
    set_npages(path, pg, 0x10000);
    expect_read_corrupt(path, 4, "other", "k", "npages");
    E(rp_env_open(path, RP_RECOVER, 0, 0, 0, &env));
    CHECK(rp_env_recovered_from(env) == 4, "recovered from version 4");
    check_ok(env);
    CHECK(t_matches(env, 2), "version 3's data");
    E(rp_env_close(env));
}

/* ---- meta records ----------------------------------------------------------------- */

static void meta_damage(void) {
    char path[256];
    path_of(path, "meta");
    /* One flipped bit in the newest record's primary copy (version 4: page
     * 0 offset 0): the mirror (page 1 offset 2048) is used, nothing lost. */
    build(path);
    xor_byte(path, 60, 0x04);
    rp_env *env;
    E(rp_env_open(path, 0, 0, 0, 0, &env));
    CHECK(rp_env_version(env) == 4, "newest version survived");
    CHECK(rp_env_recovered_from(env) == 0, "nothing rolled back");
    /* check() still reports the damaged copy, until the next commit of
     * that parity rewrites it. */
    expect_check_corrupt(env, "meta page 0 offset 0: damaged copy");
    rp_txn *w;
    for (int i = 0; i < 2; i++) {
        E(rp_txn_begin(env, RP_TXN_WRITE, &w));
        E(rp_put(w, "other", 5, "k", 1, "w", 1));
        E(rp_txn_commit(w));
    }
    check_ok(env);
    E(rp_env_close(env));
    /* ... and in the mirror instead. */
    build(path);
    xor_byte(path, 4096 + 2048 + 50, 0x80);
    E(rp_env_open(path, 0, 0, 0, 0, &env));
    CHECK(rp_env_version(env) == 4, "newest version survived (mirror damaged)");
    E(rp_env_close(env));

    /* Both copies: the newest acknowledged version is lost. */
    build(path);
    xor_byte(path, 60, 0x04);
    xor_byte(path, 4096 + 2048 + 50, 0x80);
    expect_open_corrupt(path, 0, "both copies");
    expect_open_corrupt(path, RP_RDONLY, "both copies");
    /* Salvage, read-only first: rolls back, writes nothing. */
    E(rp_env_open(path, RP_RDONLY | RP_RECOVER, 0, 0, 0, &env));
    CHECK(rp_env_recovered_from(env) == 4, "read-only salvage reports version 4");
    CHECK(t_matches(env, 2), "version 3's data");
    E(rp_env_close(env));
    expect_open_corrupt(path, 0, "both copies");
    /* Writable salvage: durable, so a plain open works afterwards. */
    E(rp_env_open(path, RP_RECOVER, 0, 0, 0, &env));
    CHECK(rp_env_recovered_from(env) == 4, "salvage reports version 4");
    CHECK(strstr(rp_env_recovery_note(env), "both copies"), "and says why");
    CHECK(rp_env_version(env) > 4, "the salvaged version is numbered above the lost one");
    CHECK(t_matches(env, 2), "version 3's data");
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    E(rp_put(w, "other", 5, "k2", 2, "v", 1));
    E(rp_txn_commit(w));
    E(rp_env_close(env));
    E(rp_env_open(path, 0, 0, 0, 0, &env));
    CHECK(rp_env_recovered_from(env) == 0, "a plain open after the salvage");
    CHECK(t_matches(env, 2), "still version 3's data");
    check_ok(env);
    E(rp_env_close(env));
}

/* Commit t's even keys as in generation 0 again (a commit whose pages
 * include leaves of t). */
static void rewrite_even_keys(rp_env *env) {
    rp_txn *w;
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    static unsigned char v[256];
    for (int i = 0; i < NKEYS; i += 2) {
        char k[16];
        size_t kl = keyof(i, k);
        E(rp_put(w, "t", 1, k, kl, v, valof(i, 0, v)));
    }
    E(rp_txn_commit(w));
}

static void newest_commit_damaged(void) {
    char path[256];
    path_of(path, "newest");
    build(path);
    /* Version 3 rewrote t's even keys; damage one of its leaves after a
     * commit that does not touch t is not enough (version 4 is newest), so
     * rebuild with t's rewrite last. */
    rp_env *env;
    E(rp_env_open(path, 0, 0, 0, 0, &env));
    rewrite_even_keys(env);   /* version 5 */
    E(rp_env_close(env));
    uint64_t pg;
    size_t off;
    locate(path, "t", "key00200", &pg, &off);
    CHECK(page_txnid(path, pg) == 5, "a page of the newest commit");
    xor_byte(path, (off_t)(pg * 4096 + off), 0x01);
    /* Acknowledged: never a fallback; open leaves the damage to the read
     * (it does not walk the commit), a salvage walks it and rolls back. */
    expect_read_corrupt(path, 5, "t", "key00200", checksum_of(pg));
    E(rp_env_open(path, RP_RECOVER, 0, 0, 0, &env));
    CHECK(rp_env_recovered_from(env) == 5, "rolled back from version 5");
    CHECK(t_matches(env, 2), "version 4's data");
    check_ok(env);
    E(rp_env_close(env));
    E(rp_env_open(path, 0, 0, 0, 0, &env));
    CHECK(t_matches(env, 2), "the salvage is durable");
    E(rp_env_close(env));
}

/* Version 5 rewrites t's even keys with durability "none"; clean is
 * whether its process closes the env (else it exits without closing, as a
 * crash would).  Then a leaf of version 5 is damaged. */
static void nosync_newest_damaged(const char *path, int clean) {
    build(path);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        rp_env *env;
        E(rp_env_open(path, RP_NOSYNC, 0, 0, 0, &env));
        rewrite_even_keys(env);
        if (clean) E(rp_env_close(env));
        _exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child");
    uint64_t pg;
    size_t off;
    locate(path, "t", "key00200", &pg, &off);
    CHECK(page_txnid(path, pg) == 5, "a page of the newest commit");
    xor_byte(path, (off_t)(pg * 4096 + off), 0x01);
}

/* Durability "none": a clean close marks the newest version acknowledged,
 * so damage to it is reported; without one it falls back, as documented
 * (indistinguishable from an OS crash that lost the unsynced commit). */
static void nosync_close_acknowledges(void) {
    char path[256];
    path_of(path, "nosync");
    nosync_newest_damaged(path, 1);
    expect_read_corrupt(path, 5, "t", "key00200", "checksum mismatch");
    nosync_newest_damaged(path, 0);
    rp_env *env;
    E(rp_env_open(path, 0, 0, 0, 0, &env));
    CHECK(t_matches(env, 2), "fell back to version 4");
    E(rp_env_close(env));
}

static void truncated(void) {
    char path[256], copy[256];
    path_of(path, "trunc-src");
    path_of(copy, "trunc");
    build(path);
    static const off_t sizes[] = {16 << 10, 64 << 10, 128 << 10};
    for (int i = 0; i < 3; i++) {
        char cmd[600];
        rm_db(copy);
        snprintf(cmd, sizeof cmd, "cp %s %s", path, copy);
        CHECK(system(cmd) == 0, "copy");
        CHECK(truncate(copy, sizes[i]) == 0, "truncate");
        expect_open_corrupt(copy, 0, "the file was truncated");
        expect_open_corrupt(copy, RP_RECOVER, "the file was truncated");
    }
}

/* A format 1 file: records without mirrors or flags (refused since format 3). */
static void format1(void) {
    char path[256];
    path_of(path, "format1");
    build(path);
    int fd = fd_of(path);
    unsigned char rec[128], zero[128];
    memset(zero, 0, sizeof zero);
    for (int pg = 0; pg < 2; pg++) {
        CHECK(pwrite(fd, zero, sizeof zero, pg * 4096 + 2048) == 128, "drop the mirror");
        CHECK(pread(fd, rec, sizeof rec, pg * 4096) == 128, "pread");
        uint32_t one = 1, flags = 0;
        memcpy(rec + 40, &one, 4);
        memcpy(rec + 96, &flags, 4);
        uint32_t sum = rp_hash32(rec + 4, sizeof rec - 4, SEED);
        memcpy(rec, &sum, 4);
        CHECK(pwrite(fd, rec, sizeof rec, pg * 4096) == 128, "pwrite");
    }
    close(fd);
    /* Format 3 changed the leaf pages: format 1 (and 2) files are refused
     * with their own error, read-only or not, and left as they were. */
    rp_env *env;
    CHECK(rp_env_open(path, RP_RDONLY, 0, 0, 0, &env) == RP_FORMAT_OLD,
          "a format 1 file is refused read-only");
    CHECK(rp_env_open(path, 0, 0, 0, 0, &env) == RP_FORMAT_OLD, "a format 1 file is refused");
    fd = fd_of(path);
    for (int pg = 0; pg < 2; pg++) {
        uint32_t fmt;
        CHECK(pread(fd, &fmt, 4, pg * 4096 + 40) == 4, "pread");
        CHECK(fmt == 1, "a refused file is not rewritten");
    }
    close(fd);
}

/* A compacted copy is written without syncs and made durable at the end:
 * its record must still be marked acknowledged, or damage would open it as
 * its empty first version. */
static void compacted_copy(void) {
    char path[256], copy[256];
    path_of(path, "compact-src");
    path_of(copy, "compact");
    build(path);
    rm_db(copy);
    rp_env *env;
    E(rp_env_open(path, 0, 0, 0, 0, &env));
    E(rp_env_compact(env, copy));
    E(rp_env_close(env));
    E(rp_env_open(copy, 0, 0, 0, 0, &env));
    uint64_t version = rp_env_version(env);
    E(rp_env_close(env));
    uint64_t pg;
    size_t off;
    locate(copy, "t", "key00010", &pg, &off);
    xor_byte(copy, (off_t)(pg * 4096 + off), 0x01);
    expect_read_corrupt(copy, version, "t", "key00010", checksum_of(pg));
}

/* A writer in a child process that puts (table, key, val) and is killed at
 * commit step `step` (fault injection); checks that it died by the signal. */
static void commit_killed_at(const char *path, const char *table, const char *key,
                             const char *val, int step) {
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        rp_env *c;
        rp_txn *w;
        if (rp_env_open(path, 0, 0, 0, 0, &c) || rp_txn_begin(c, RP_TXN_WRITE, &w)
            || rp_put(w, table, strlen(table), key, strlen(key), val, strlen(val)))
            _exit(2);
        rp_fault_set(RP_FAULT_CRASH, step);
        rp_txn_commit(w);
        _exit(3);   /* not reached: killed at step */
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFSIGNALED(st), "the writer was killed");
}

/* A writer killed after its commit's fdatasync, before it marked the
 * record acknowledged: the process that settles the commit (here a reader
 * holding the file open) marks it, so damage to it is reported later. */
static void settled_commit_is_acknowledged(void) {
    char path[256];
    path_of(path, "settled");
    build(path);
    rp_env *keep;
    E(rp_env_open(path, 0, 0, 0, 0, &keep));
    commit_killed_at(path, "t", "key00200", "dead", RP_STEP_SYNCED);
    rp_txn *r;
    E(rp_txn_begin(keep, 0, &r));   /* settles the commit in doubt */
    const void *v;
    size_t vl;
    E(rp_get(r, "t", 1, "key00200", 8, &v, &vl));
    CHECK(vl == 4 && memcmp(v, "dead", 4) == 0, "the durable commit is published");
    rp_txn_abort(r);
    E(rp_env_close(keep));
    uint64_t pg;
    size_t off;
    locate(path, "t", "key00200", &pg, &off);
    CHECK(page_txnid(path, pg) == 5, "a page of the settled commit");
    xor_byte(path, (off_t)(pg * 4096 + off), 0x01);
    expect_read_corrupt(path, 5, "t", "key00200", checksum_of(pg));
}

/* ---- the meta write torn ------------------------------------------------------ */

#define META_SECTORS (2 * 4096 / 512)

static void pages01(const char *path, unsigned char *img, int write) {
    int fd = fd_of(path);
    ssize_t n = write ? pwrite(fd, img, 8192, 0) : pread(fd, img, 8192, 0);
    CHECK(n == 8192, "the two meta pages");
    close(fd);
}

/* Open after a power cut that left the meta pages as `img`: the version
 * opened, or 0 if open failed.  The lock file is gone, as after a reboot. */
static uint64_t open_version(const char *path, const unsigned char *img) {
    char lock[300];
    snprintf(lock, sizeof lock, "%s.lock", path);
    remove(lock);
    pages01(path, (unsigned char *)img, 1);
    rp_env *env;
    if (rp_env_open(path, 0, 0, 0, 0, &env) != RP_OK) return 0;
    check_ok(env);
    uint64_t v = rp_env_version(env);
    CHECK(t_matches(env, 2), "the data of version 4 in both");
    E(rp_env_close(env));
    return v;
}

/* A commit's meta write is one pwrite of both meta pages (meta.c, THE META
 * WRITE): version 5's two copies plus every other byte of the two pages
 * rewritten as it was.  A writer killed after that write and before its
 * fdatasync, then a power cut that tears the write at any sector: each
 * sector holds the old or the new bytes, and open finds version 5 when a
 * sector of one of its copies arrived (its pages are in the file), else
 * version 4 -- never an error, version 4's copies never disturbed.  With
 * a page of version 5 lost too, open falls back to version 4, silently:
 * version 5 was never acknowledged. */
static void torn_meta_write(void) {
    char path[256];
    path_of(path, "torn-meta");
    build(path);
    static unsigned char before[8192], after[8192], img[8192];
    pages01(path, before, 0);
    commit_killed_at(path, "other", "k2", "v5", RP_STEP_META);
    pages01(path, after, 0);
    /* Only version 5's two slots changed: the odd primary (page 1, offset
     * 0) and the odd mirror (page 0, offset 2048). */
    for (int i = 0; i < 8192; i++) {
        int slot = (i >= 4096 && i < 4096 + 128) || (i >= 2048 && i < 2048 + 128);
        CHECK(slot || before[i] == after[i], "no other byte of the meta pages changed");
    }
    CHECK(memcmp(before + 4096, after + 4096, 128) != 0, "version 5's primary written");
    for (int k = 0; k <= META_SECTORS; k++) {
        /* The first k sectors arrived (a tail lost), then the last
         * META_SECTORS - k (a head lost). */
        for (int tail = 0; tail < 2; tail++) {
            for (int s = 0; s < META_SECTORS; s++) {
                int arrived = tail ? s >= k : s < k;
                memcpy(img + s * 512, (arrived ? after : before) + s * 512, 512);
            }
            int v5 = (tail ? 4 >= k : 4 < k) || (tail ? 8 >= k : 8 < k);
            CHECK(open_version(path, img) == (v5 ? 5 : 4), "version 5 iff a copy arrived");
        }
    }
    /* Version 5's leaf of "other" lost as well: version 4, silently. */
    uint64_t pg;
    size_t off;
    pages01(path, after, 1);
    locate(path, "other", "k2", &pg, &off);
    CHECK(page_txnid(path, pg) == 5, "a page of version 5");
    xor_byte(path, (off_t)(pg * 4096 + off), 0x01);
    for (int k = 0; k <= META_SECTORS; k += 4) {
        for (int s = 0; s < META_SECTORS; s++)
            memcpy(img + s * 512, (s < k ? after : before) + s * 512, 512);
        /* Version 4's data; numbered 6 when version 5's record (its mirror
         * in sector 4) is there, so that the next commit does not reuse 5
         * (env.c, recover). */
        CHECK(open_version(path, img) == (k > 4 ? 6 : 4), "a torn commit falls back");
    }
    /* The commit after the fallback is version 7: it takes version 5's
     * parity, replacing the torn record, and version 4's record stays. */
    rp_env *env;
    E(rp_env_open(path, 0, 0, 0, 0, &env));
    CHECK(rp_env_version(env) == 6, "renumbered above the torn record");
    rp_txn *w;
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    E(rp_put(w, "other", 5, "k3", 2, "v7", 2));
    E(rp_txn_commit(w));
    CHECK(rp_env_version(env) == 7, "the retry is numbered above the torn commit");
    E(rp_env_close(env));
    static unsigned char now[8192];
    pages01(path, now, 0);
    CHECK(memcmp(now, after, 128) == 0 && memcmp(now + 4096 + 2048, after + 4096 + 2048, 128) == 0,
          "version 4's two copies untouched");
    CHECK(memcmp(now + 4096, after + 4096, 128) != 0, "version 5's primary replaced");
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/rp_test_integrityXXXXXX");
    CHECK(mkdtemp(dir), "mkdtemp");
    flipped_leaf_value();
    flipped_overflow_continuation();
    bad_npages();
    meta_damage();
    newest_commit_damaged();
    nosync_close_acknowledges();
    truncated();
    format1();
    compacted_copy();
    settled_commit_is_acknowledged();
    torn_meta_write();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    printf("test_integrity: ok\n");
    return 0;
}
