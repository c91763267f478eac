/*
 * test_corrupt.c -- damaged files never crash the engine.
 *
 * A database with several tables, overflow values and a free list is
 * damaged in many seed-chosen ways (random byte flips anywhere, a zeroed
 * page, a page copied over another, a truncation), then opened and used:
 * every table read by gets (one by one and batched), both-way scans and
 * joins, rp_env_check(), and a write transaction that modifies and
 * commits.  Every call must return an error code or succeed; under
 * ASan/UBSan (the CI build) any wild read or write fails the test.
 * Damage that open or check cannot see must be damage the reads did not
 * meet; damage check() reports must be a clean RP_CORRUPT.
 */
#define _GNU_SOURCE 1
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"


static uint64_t rng;
static uint64_t rnd(void) { return xorshift64(&rng); }

static const char *tables[] = {"users", "orders", "big"};

static void build(const char *path) {
    rp_env *env;
    E(rp_env_open(path, RP_NOSYNC, 0, 0, 0, &env));
    static unsigned char v[20000];
    for (size_t i = 0; i < sizeof v; i++) v[i] = (unsigned char)i;
    for (int c = 0; c < 6; c++) {
        rp_txn *w;
        E(rp_txn_begin(env, RP_TXN_WRITE, &w));
        for (int i = 0; i < 400; i++) {
            char k[32];
            int n = snprintf(k, sizeof k, "key%06d", (i * 37 + c * 11) % 1000);
            const char *t = tables[i % 3];
            size_t vl = (i % 3 == 2) ? 3000 + (size_t)(rnd() % 15000) : (size_t)(rnd() % 200);
            if (rnd() % 4 == 0) rp_del(w, t, strlen(t), k, (size_t)n);
            else E(rp_put(w, t, strlen(t), k, (size_t)n, v, vl));
        }
        E(rp_txn_commit(w));
    }
    E(rp_env_close(env));
}

static void copy_file(const char *from, const char *to) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp %s %s && rm -f %s.lock", from, to, to);
    CHECK(system(cmd) == 0, "copy");
}

static void damage(const char *path, int kind) {
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0, "open for damage");
    struct stat st;
    CHECK(fstat(fd, &st) == 0, "fstat");
    uint64_t pages = (uint64_t)st.st_size / 4096;
    /* Most damage goes to the used pages at the front of the file. */
    uint64_t used = pages < 40 ? pages : 40 + rnd() % (pages - 40 + 1) / 8;
    unsigned char b[4096];
    switch (kind) {
    case 0: {   /* random byte flips */
        int n = 1 + (int)(rnd() % 8);
        for (int i = 0; i < n; i++) {
            off_t off = (off_t)(rnd() % (used * 4096));
            unsigned char x;
            CHECK(pread(fd, &x, 1, off) == 1, "pread");
            x ^= (unsigned char)(1 + rnd() % 255);
            CHECK(pwrite(fd, &x, 1, off) == 1, "pwrite");
        }
        break;
    }
    case 1:     /* a zeroed page */
        memset(b, 0, sizeof b);
        CHECK(pwrite(fd, b, 4096, (off_t)(rnd() % used) * 4096) == 4096, "pwrite");
        break;
    case 2: {   /* one page copied over another (a misdirected write) */
        off_t src = (off_t)(rnd() % used) * 4096, dst = (off_t)(rnd() % used) * 4096;
        CHECK(pread(fd, b, 4096, src) == 4096, "pread");
        CHECK(pwrite(fd, b, 4096, dst) == 4096, "pwrite");
        break;
    }
    default:    /* truncation */
        CHECK(ftruncate(fd, (off_t)(rnd() % (used * 4096 + 1))) == 0, "ftruncate");
        break;
    }
    close(fd);
}

/* Use the damaged file every way we can; only error codes may come back. */
static int exercise(const char *path) {
    rp_env *env;
    int rc = rp_env_open(path, RP_NOSYNC, 0, 0, 0, &env);
    if (rc) {
        CHECK(rc == RP_CORRUPT || rc == RP_NOT_A_DB || rc == RP_FORMAT_VERSION, "unexpected open error");
        return 0;
    }
    char msg[256];
    int check = rp_env_check(env, msg, sizeof msg);
    CHECK(check == RP_OK || check == RP_CORRUPT, "check returned something else");
    rp_txn *r;
    rc = rp_txn_begin(env, 0, &r);
    if (rc == RP_OK) {
        for (int t = 0; t < 3; t++) {
            for (int i = 0; i < 1000; i += 7) {
                char k[32];
                int n = snprintf(k, sizeof k, "key%06d", i);
                const void *v;
                size_t vl;
                rc = rp_get(r, tables[t], strlen(tables[t]), k, (size_t)n, &v, &vl);
                CHECK(rc == RP_OK || rc == RP_NOTFOUND || rc == RP_CORRUPT, "get");
                if (rc == RP_OK && vl) {
                    volatile unsigned char sink = ((const unsigned char *)v)[vl - 1];
                    (void)sink;
                }
            }
            {   /* the same keys in one rp_get_many */
                static unsigned char keys[150 * 13], out[1 << 21];
                size_t kpos = 0, nk = 0, done, used;
                for (int i = 0; i < 1000; i += 7, nk++) {
                    int n = snprintf((char *)keys + kpos + 4, 10, "key%06d", i);
                    uint32_t n32 = (uint32_t)n;
                    memcpy(keys + kpos, &n32, 4);
                    kpos += 4 + (size_t)n;
                }
                rc = rp_get_many(r, tables[t], strlen(tables[t]), keys, kpos, nk, 0, out,
                                 sizeof out, &done, &used);
                CHECK(rc == RP_OK || rc == RP_CORRUPT, "get_many");
            }
            for (int dir = 1; dir >= -1; dir -= 2) {
                rp_cursor *c;
                if (rp_cursor_open(r, tables[t], strlen(tables[t]), &c)) continue;
                const void *k, *v;
                size_t kl, vl;
                rc = rp_cursor_seek(c, dir > 0 ? RP_SEEK_FIRST : RP_SEEK_LAST, NULL, 0, &k, &kl, &v, &vl);
                for (int steps = 0; rc == RP_OK && steps < 5000; steps++)
                    rc = rp_cursor_step(c, dir, &k, &kl, &v, &vl);
                CHECK(rc == RP_NOTFOUND || rc == RP_CORRUPT, "scan");
                rp_cursor_close(c);
            }
            /* Table t as an index (strip 0: its keys are the keys) joined
             * with every table, both ways. */
            for (int u = 0; u < 3; u++) {
                for (int dir = 1; dir >= -1; dir -= 2) {
                    rp_cursor *c;
                    if (rp_cursor_open(r, tables[t], strlen(tables[t]), &c)) continue;
                    static unsigned char buf[1 << 16];
                    size_t cnt, used;
                    rc = rp_cursor_seek(c, dir > 0 ? RP_SEEK_FIRST : RP_SEEK_LAST, NULL, 0,
                                        NULL, NULL, NULL, NULL);
                    for (int calls = 0; rc == RP_OK && calls < 5000; calls++) {
                        rc = rp_cursor_join(c, dir, RP_BATCH_CURRENT, NULL, 0, 0, tables[u],
                                            strlen(tables[u]), NULL, 0, buf, sizeof buf, 50,
                                            &cnt, &used);
                        CHECK(rc != RP_OK || cnt > 0, "join: an item larger than the buffer");
                    }
                    CHECK(rc == RP_NOTFOUND || rc == RP_CORRUPT, "join");
                    rp_cursor_close(c);
                }
            }
        }
        rp_txn_abort(r);
    }
    rp_txn *w;
    rc = rp_txn_begin(env, RP_TXN_WRITE, &w);
    if (rc == RP_OK) {
        for (int i = 0; i < 300 && rc == RP_OK; i++) {
            char k[32];
            int n = snprintf(k, sizeof k, "key%06d", (int)(rnd() % 1000));
            const char *t = tables[rnd() % 3];
            rc = (rnd() % 3) ? rp_put(w, t, strlen(t), k, (size_t)n, "value", 5)
                             : rp_del(w, t, strlen(t), k, (size_t)n);
            if (rc == RP_NOTFOUND) rc = RP_OK;
        }
        if (rc == RP_OK) rc = rp_txn_commit(w);
        else rp_txn_abort(w);
        CHECK(rc == RP_OK || rc == RP_CORRUPT || rc == RP_BAD_TXN, "write on damaged file");
    } else {
        CHECK(rc == RP_CORRUPT, "write begin");
    }
    E(rp_env_close(env));
    return check == RP_CORRUPT;
}

/* A leaf of short keys (at most 4 bytes: searches decide them from the
 * slots alone, without reading the entries) whose slot points outside the
 * page: finding that key must report RP_CORRUPT without reading there.
 * (ASan cannot see a read of the map, and one up to 64 KiB past the page
 * faults only past the end of the file: what this checks is the result.) */
static void short_key_slot(const char *dir) {
    char path[256];
    snprintf(path, sizeof path, "%s/short", dir);
    rp_env *env;
    E(rp_env_open(path, RP_NOSYNC, 0, 0, 0, &env));
    rp_txn *w;
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    for (char c = 'a'; c <= 'z'; c++) E(rp_put(w, "t", 1, &c, 1, "value", 5));
    E(rp_txn_commit(w));
    /* A later commit that does not touch t, so that recovery, which checks
     * the pages of the last commit, keeps the version damaged below. */
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    E(rp_put(w, "u", 1, "k", 1, "v", 1));
    E(rp_txn_commit(w));
    E(rp_env_close(env));
    /* Slot 0 of t's leaf (the one with 26 keys) -> offset 0xfff0. */
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0, "open for damage");
    unsigned char b[4096];
    int found = 0;
    for (off_t pg = 0; pread(fd, b, sizeof b, pg * 4096) == (ssize_t)sizeof b; pg++) {
        uint16_t flags, nkeys;
        memcpy(&flags, b + 4, 2);
        memcpy(&nkeys, b + 6, 2);
        if (flags != 0x02 || nkeys != 26) continue;
        b[32 + 4] = 0xf0;
        b[32 + 5] = 0xff;
        CHECK(pwrite(fd, b, sizeof b, pg * 4096) == (ssize_t)sizeof b, "pwrite");
        found = 1;
    }
    close(fd);
    CHECK(found, "t's leaf");
    /* Without checksums (RP_NOVERIFY) the page's structure checks alone
     * must catch the bad slot, and only where a read meets it. */
    E(rp_env_open(path, RP_NOSYNC | RP_NOVERIFY, 0, 0, 0, &env));
    rp_txn *r;
    E(rp_txn_begin(env, 0, &r));
    const void *v;
    size_t vl, done, used;
    CHECK(rp_get(r, "t", 1, "a", 1, &v, &vl) == RP_CORRUPT, "get of a key whose slot is bad");
    E(rp_get(r, "t", 1, "b", 1, &v, &vl));
    unsigned char keys[] = {1, 0, 0, 0, 'b', 1, 0, 0, 0, 'a'};
    unsigned char out[64];
    CHECK(rp_get_many(r, "t", 1, keys, sizeof keys, 2, 0, out, sizeof out, &done, &used)
              == RP_CORRUPT, "get_many of a key whose slot is bad");
    rp_txn_abort(r);
    E(rp_env_close(env));
    /* With checksums (the default) every read of that leaf reports it. */
    E(rp_env_open(path, RP_NOSYNC, 0, 0, 0, &env));
    E(rp_txn_begin(env, 0, &r));
    CHECK(rp_get(r, "t", 1, "b", 1, &v, &vl) == RP_CORRUPT, "get from a leaf with a bad checksum");
    CHECK(strstr(rp_corrupt_detail(), "checksum mismatch (table t)") != NULL, "detail names it");
    rp_txn_abort(r);
    E(rp_env_close(env));
}

int main(int argc, char **argv) {
    char dir[] = "/tmp/rp_test_corruptXXXXXX";
    CHECK(mkdtemp(dir), "mkdtemp");
    char good[256], bad[256];
    snprintf(good, sizeof good, "%s/good", dir);
    snprintf(bad, sizeof bad, "%s/bad", dir);
    short_key_slot(dir);
    rng = 12345;
    build(good);
    int rounds = argc > 1 ? atoi(argv[1]) : 400;
    int detected = 0;
    for (int s = 1; s <= rounds; s++) {
        rng = (uint64_t)s * 0x9E3779B97F4A7C15ULL + 1;
        copy_file(good, bad);
        damage(bad, s % 4);
        detected += exercise(bad);
    }
    printf("damaged files: %d rounds, check() reported corruption in %d\n", rounds, detected);
    CHECK(detected > rounds / 10, "check() rarely noticed damage");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
    printf("test_corrupt: ok\n");
    return 0;
}
