/*
 * test_legacy.c -- conversion of format 1 and 2 files (legacy.c,
 * rp_env_upgrade): the fixture files written by the realmpy versions of
 * those formats (tests/storage/fixtures) convert to files holding the same
 * tables; a process killed (SIGKILL) at each step of a conversion leaves
 * the old file whole or the new one complete, and the next call finishes
 * the job; a damaged old file is RP_CORRUPT and left as it was, never a
 * crash (fuzzed; run under ASan/UBSan too).
 */
#define _GNU_SOURCE 1
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "internal.h"

static char fixtures[4096];

static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    CHECK(f, path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n);
    CHECK(b && fread(b, 1, (size_t)n, f) == (size_t)n, "read a file");
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void spit(const char *path, const uint8_t *b, size_t len) {
    unlink(path);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(b, 1, len, f) == len, "write a file");
    fclose(f);
}

static void remove_all(const char *path) {
    static const char *suffix[] = {"", ".lock", ".upgrade", ".upgrade.lock"};
    char p[4200];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", path, suffix[i]);
        unlink(p);
    }
}

/* FNV-1a over every table's name and (key, value) pairs, in order. */
static uint64_t digest(const char *path, uint64_t *entries) {
    rp_env *env;
    rp_txn *txn;
    rp_cursor *cat, *cur;
    E(rp_env_open(path, RP_RDONLY, 0, 0, 0, &env));
    E(rp_txn_begin(env, 0, &txn));
    E(rp_cursor_open(txn, NULL, 0, &cat));
    uint64_t h = 1469598103934665603ULL;
    *entries = 0;
    const void *name, *k, *v;
    size_t nl, kl, vl;
#define MIX(p, n)                                                                \
    for (size_t i_ = 0; i_ < (n); i_++) h = (h ^ ((const uint8_t *)(p))[i_]) * 1099511628211ULL;
    for (int r = rp_cursor_seek(cat, RP_SEEK_FIRST, NULL, 0, &name, &nl, NULL, NULL); r == RP_OK;
         r = rp_cursor_step(cat, 1, &name, &nl, NULL, NULL)) {
        MIX(name, nl);
        char tname[256];
        memcpy(tname, name, nl);
        E(rp_cursor_open(txn, tname, nl, &cur));
        for (int s = rp_cursor_seek(cur, RP_SEEK_FIRST, NULL, 0, &k, &kl, &v, &vl); s == RP_OK;
             s = rp_cursor_step(cur, 1, &k, &kl, &v, &vl)) {
            MIX(&kl, sizeof kl);
            MIX(k, kl);
            MIX(&vl, sizeof vl);
            MIX(v, vl);
            ++*entries;
        }
        rp_cursor_close(cur);
    }
#undef MIX
    rp_cursor_close(cat);
    rp_txn_abort(txn);
    char msg[256];
    E(rp_env_check(env, msg, sizeof msg));
    E(rp_env_close(env));
    return h;
}

/* The newest version a file's meta records name (offset 8 of each). */
static uint64_t newest_version(const uint8_t *file) {
    static const size_t off[] = {0, RP_PAGE_SIZE, 2048, RP_PAGE_SIZE + 2048};
    uint64_t newest = 0, v;
    for (int i = 0; i < 4; i++) {
        memcpy(&v, file + off[i] + 8, 8);
        if (memcmp(file + off[i] + 32, RP_META_MAGIC, 8) == 0 && v > newest) newest = v;
    }
    return newest;
}

static void test_fixtures_convert(void) {
    /* Formats 1 and 2 of the same tables convert to the same content. */
    uint64_t d[2], n[2];
    const char *names[] = {"format1-raw.realm", "format2-raw.realm"};
    for (int i = 0; i < 2; i++) {
        char src[4200];
        size_t len;
        snprintf(src, sizeof src, "%s/%s", fixtures, names[i]);
        uint8_t *b = slurp(src, &len);
        remove_all("fx.realm");
        spit("fx.realm", b, len);
        uint64_t version = newest_version(b);
        free(b);
        rp_env *env;
        CHECK(rp_env_open("fx.realm", 0, 0, 0, 0, &env) == RP_FORMAT_OLD, "old file refused");
        int converted = 0;
        E(rp_env_upgrade("fx.realm", &converted));
        CHECK(converted == 1, "converted");
        /* The version number goes on from the old file's, and commits too. */
        E(rp_env_open("fx.realm", 0, 0, 0, 0, &env));
        CHECK(version >= 4 && rp_env_version(env) == version, "the old version number kept");
        rp_txn *w;
        E(rp_txn_begin(env, RP_TXN_WRITE, &w));
        E(rp_put(w, "later", 5, "k", 1, "v", 1));
        E(rp_txn_commit(w));
        CHECK(rp_env_version(env) == version + 1, "the next commit follows it");
        E(rp_env_close(env));
        d[i] = digest("fx.realm", &n[i]);
        E(rp_env_upgrade("fx.realm", &converted));
        CHECK(converted == 0, "a current file is left alone");
    }
    CHECK(n[0] == 2000 + 9 + 26 + 2 && n[0] == n[1] && d[0] == d[1], "the same tables");
    remove_all("fx.realm");
}

/* ---- killed at each step ------------------------------------------------ */

static int kill_at;
static void killer(int step) {
    if (step == kill_at) raise(SIGKILL);
}

static void test_killed_conversions(void) {
    char src[4200];
    size_t len;
    snprintf(src, sizeof src, "%s/format2-objects.realm", fixtures);
    uint8_t *old = slurp(src, &len);
    remove_all("ref.realm");
    spit("ref.realm", old, len);
    int converted;
    E(rp_env_upgrade("ref.realm", &converted));
    uint64_t n_ref, d_ref = digest("ref.realm", &n_ref);
    for (int step = 1; step <= 3; step++) {
        remove_all("k.realm");
        spit("k.realm", old, len);
        pid_t pid = fork();
        CHECK(pid >= 0, "fork");
        if (pid == 0) {
            kill_at = step;
            rp_upgrade_hook = killer;
            rp_env_upgrade("k.realm", &converted);
            _exit(0);
        }
        int status;
        CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "killed at the step");
        /* Before the rename: the old file, byte for byte; after: the new. */
        size_t now_len;
        uint8_t *now = slurp("k.realm", &now_len);
        int same = now_len == len && memcmp(now, old, len) == 0;
        free(now);
        CHECK(same == (step < 3), "old file whole until the rename");
        rp_env *env;
        int rc = rp_env_open("k.realm", 0, 0, 0, 0, &env);
        CHECK(rc == (step < 3 ? RP_FORMAT_OLD : RP_OK), "old or complete new file");
        if (rc == RP_OK) E(rp_env_close(env));
        E(rp_env_upgrade("k.realm", &converted));
        CHECK(converted == (step < 3), "the next call finishes the job");
        uint64_t n, d = digest("k.realm", &n);
        CHECK(n == n_ref && d == d_ref, "the same tables after a kill");
        struct stat st;
        CHECK(stat("k.realm.upgrade", &st) != 0, "no leftover copy");
    }
    free(old);
    remove_all("k.realm");
    remove_all("ref.realm");
}

/* ---- damaged old files ---------------------------------------------------- */

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static void test_fuzzed(void) {
    char src[4200];
    size_t len;
    snprintf(src, sizeof src, "%s/format2-raw.realm", fixtures);
    uint8_t *orig = slurp(src, &len);
    uint8_t *b = malloc(len);
    uint64_t seed = 0x5eed1e9acULL;
    int corrupt = 0, ok = 0;
    for (int round = 0; round < 160; round++) {
        memcpy(b, orig, len);
        /* Pages in use are few (the rest is pre-grown zeros): damage them,
         * the meta pages included now and then. */
        uint64_t pg = round % 10 == 0 ? xorshift64(&seed) % 2 : 2 + xorshift64(&seed) % 60;
        int flips = 1 + (int)(xorshift64(&seed) % 6);
        for (int f = 0; f < flips; f++) {
            size_t off = (size_t)pg * RP_PAGE_SIZE + xorshift64(&seed) % RP_PAGE_SIZE;
            if (xorshift64(&seed) % 3 == 0) b[off] = (uint8_t)xorshift64(&seed);
            else b[off] ^= (uint8_t)(1u << (xorshift64(&seed) % 8));
        }
        /* Keep the checksums right half of the time, so that the structure
         * checks behind them are reached. */
        if (round % 2 && pg >= 2) {
            uint8_t *p = b + pg * RP_PAGE_SIZE;
            uint32_t npages = rd32(p + 28);
            size_t run = (npages >= 1 && npages < 64 && pg + npages <= len / RP_PAGE_SIZE)
                             ? npages * (size_t)RP_PAGE_SIZE : RP_PAGE_SIZE;
            uint32_t sum = rp_hash32(p + 4, run - 4, 0x52504731u);
            memcpy(p, &sum, 4);
        }
        remove_all("fz.realm");
        spit("fz.realm", b, len);
        int converted = 0;
        int rc = rp_env_upgrade("fz.realm", &converted);
        CHECK(rc == RP_OK || rc == RP_CORRUPT || rc == RP_NOT_A_DB, "converted or typed error");
        if (rc) {
            size_t now_len;
            uint8_t *now = slurp("fz.realm", &now_len);
            CHECK(now_len == len && memcmp(now, b, len) == 0, "a refused file is left alone");
            free(now);
            corrupt++;
        } else {
            ok++;
            if (converted) {
                uint64_t n;
                (void)digest("fz.realm", &n);   /* a converted file is sound */
            }
        }
        struct stat st;
        CHECK(stat("fz.realm.upgrade", &st) != 0, "no leftover copy");
    }
    CHECK(corrupt > 0 && ok > 0, "both outcomes seen");
    free(b);
    free(orig);
    remove_all("fz.realm");
}

int main(void) {
    const char *root = getenv("RP_SOURCE_DIR");
    CHECK(root, "RP_SOURCE_DIR (set by CMakeLists.txt)");
    snprintf(fixtures, sizeof fixtures, "%s/tests/storage/fixtures", root);
    test_fixtures_convert();
    test_killed_conversions();
    test_fuzzed();
    printf("test_legacy: ok\n");
    return 0;
}
