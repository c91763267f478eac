/*
 * test_io.c -- unit tests of csrc/io.c: writes (short-write and iovec
 * handling), growth by real zero writes, fault injection countdowns, and the
 * power-cut recorder.  Drives io.c on a hand-built rp_env over a plain file.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define FAILF(...) do { fprintf(stderr, "%s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); return 1; } while (0)
#define CHECK(c) do { if (!(c)) FAILF("CHECK failed: %s", #c); } while (0)
#define E(expr) do { int rc_ = (expr); if (rc_ != RP_OK) \
    FAILF("%s: %s (%d)", #expr, rp_strerror(rc_), rc_); } while (0)
#define EXPECT(expr, want) do { int rc_ = (expr); if (rc_ != (want)) \
    FAILF("%s: got %s (%d), want %s (%d)", #expr, rp_strerror(rc_), rc_, \
          rp_strerror(want), (int)(want)); } while (0)

static char dir[256];

static rp_env *env_new(const char *name) {
    rp_env *env = calloc(1, sizeof *env);
    char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    env->path = strdup(buf);
    env->fd = open(buf, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    env->lock_fd = -1;
    env->fork_gen = atomic_load(&rp_fork_generation);
    return env->fd < 0 ? NULL : env;
}

static void env_free(rp_env *env) {
    rp_io_recorder_clear(env);
    close(env->fd);
    free(env->path);
    free(env);
}

static uint64_t fsize(rp_env *env) {
    struct stat sb;
    return fstat(env->fd, &sb) == 0 ? (uint64_t)sb.st_size : UINT64_MAX;
}

/* Read the whole file into a fresh buffer (*len bytes). */
static uint8_t *slurp(rp_env *env, size_t *len) {
    *len = 0;
    uint64_t size = fsize(env);
    if (size == UINT64_MAX || size > (1u << 30)) return NULL;
    *len = (size_t)size;
    uint8_t *b = malloc(*len + 1);
    if (b == NULL) return NULL;
    if (pread(env->fd, b, *len, 0) != (ssize_t)*len) {
        free(b);
        return NULL;
    }
    return b;
}

static void fill(uint8_t *p, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)((i * 131 + seed * 7 + (i >> 9)) ^ seed);
}

/* ---- writes ------------------------------------------------------------- */

static int test_writes(void) {
    rp_env *env = env_new("w");
    CHECK(env != NULL);
    uint8_t buf[10000];
    fill(buf, sizeof buf, 1);
    E(rp_io_pwrite(env, buf, sizeof buf, 100));
    E(rp_io_pwrite(env, buf, 0, 0));
    CHECK(fsize(env) == 10100);
    uint8_t back[10000];
    CHECK(pread(env->fd, back, sizeof back, 100) == (ssize_t)sizeof back);
    CHECK(memcmp(buf, back, sizeof buf) == 0);

    /* More buffers than IOV_MAX, of varied (some zero) lengths. */
    enum { N = 1500 };
    struct iovec *iov = calloc(N, sizeof *iov);
    size_t total = 0;
    for (int i = 0; i < N; i++) total += (size_t)(i % 7) * 3;
    uint8_t *src = malloc(total), *got = malloc(total);
    fill(src, total, 2);
    size_t off = 0;
    for (int i = 0; i < N; i++) {
        iov[i].iov_base = src + off;
        iov[i].iov_len = (size_t)(i % 7) * 3;
        off += iov[i].iov_len;
    }
    CHECK(N > IOV_MAX);
    E(rp_io_pwritev(env, iov, N, 5000));
    CHECK(pread(env->fd, got, total, 5000) == (ssize_t)total);
    CHECK(memcmp(src, got, total) == 0);
    E(rp_io_pwritev(env, iov, 0, 0));
    E(rp_io_sync(env));
    free(iov);
    free(src);
    free(got);
    env_free(env);
    return 0;
}

/* ---- growth ------------------------------------------------------------- */

static int test_grow(void) {
    rp_env *env = env_new("g");
    CHECK(env != NULL);
    uint64_t target = 3 * (1u << 20) + 4096;
    E(rp_io_grow(env, target));
    CHECK(env->file_size == target && fsize(env) == target);
    struct stat sb;
    CHECK(fstat(env->fd, &sb) == 0);
    /* Real blocks, not a hole (some file systems allocate a little more). */
    CHECK((uint64_t)sb.st_blocks * 512 >= target);
    size_t len;
    uint8_t *b = slurp(env, &len);
    CHECK(b != NULL);
    for (size_t i = 0; i < len; i++)
        if (b[i] != 0) FAILF("nonzero byte at %zu", i);
    free(b);
    E(rp_io_grow(env, 4096));           /* smaller: nothing to do */
    CHECK(env->file_size == target && fsize(env) == target);

    /* A failing growth is rolled back: RLIMIT_FSIZE makes pwrite fail with
     * EFBIG past 2 MiB + 100. */
    rp_env *e2 = env_new("g2");
    CHECK(e2 != NULL);
    E(rp_io_grow(e2, 1u << 20));
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = (2u << 20) + 100;
    signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    int rc = rp_io_grow(e2, 4u << 20);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_DFL);
    CHECK(rc == EFBIG);
    CHECK(e2->file_size == (1u << 20) && fsize(e2) == (1u << 20));
    env_free(e2);
    env_free(env);
    return 0;
}

/* ---- fault injection ------------------------------------------------------ */

static int test_faults(void) {
    rp_env *env = env_new("f");
    CHECK(env != NULL);
    uint8_t page[4096], zero[4096] = { 0 };
    fill(page, sizeof page, 3);
    E(rp_io_pwrite(env, zero, sizeof zero, 0));

    /* after = 2: two writes pass, the third fails, then disarmed. */
    rp_fault_set(RP_FAULT_WRITE, 2);
    E(rp_io_pwrite(env, zero, 10, 0));
    E(rp_io_sync(env));                 /* a sync is not a write */
    struct iovec iov = { zero, 10 };
    E(rp_io_pwritev(env, &iov, 1, 0));
    EXPECT(rp_io_pwrite(env, page, sizeof page, 0), EIO);
    uint8_t back[4096];
    CHECK(pread(env->fd, back, sizeof back, 0) == 4096);
    CHECK(memcmp(back, zero, sizeof back) == 0);   /* nothing written */
    E(rp_io_pwrite(env, page, sizeof page, 0));

    /* after = 0: the very next. */
    rp_fault_set(RP_FAULT_NOSPACE, 0);
    EXPECT(rp_io_pwritev(env, &iov, 1, 0), ENOSPC);
    E(rp_io_pwritev(env, &iov, 1, 0));

    /* ENOSPC on growth: nothing changes. */
    uint64_t before = fsize(env);
    env->file_size = before;
    rp_fault_set(RP_FAULT_NOSPACE, 0);
    EXPECT(rp_io_grow(env, 1u << 20), ENOSPC);
    CHECK(env->file_size == before && fsize(env) == before);
    E(rp_io_grow(env, 1u << 20));
    CHECK(env->file_size == (1u << 20));
    E(rp_io_grow(env, 1u << 20));       /* no-op: consumes no countdown */

    /* Sync faults count syncs only. */
    rp_fault_set(RP_FAULT_SYNC, 1);
    E(rp_io_pwrite(env, page, 16, 0));
    E(rp_io_sync(env));
    E(rp_io_pwrite(env, page, 16, 0));
    EXPECT(rp_io_sync(env), EIO);
    E(rp_io_sync(env));

    /* Disarm. */
    rp_fault_set(RP_FAULT_WRITE, 0);
    rp_fault_set(RP_FAULT_NONE, 0);
    E(rp_io_pwrite(env, page, 16, 0));
    rp_fault_set(12345, 0);             /* unknown kind: disarms */
    E(rp_io_pwrite(env, page, 16, 0));
    env_free(env);
    return 0;
}

/* ---- power-cut recorder ------------------------------------------------- */

/* The writes of one scenario, made after a synced base state. */
#define BASE_LEN 12288
struct w { uint64_t off; size_t len; uint32_t seed; };
static const struct w writes[] = {
    { 4096, 4096 + 1000, 11 },          /* B: a page and a bit        */
    { 0, 4096 + 512 * 3, 12 },           /* C: overlaps B              */
    { 12288, 4096, 13 },                 /* D: extends the file        */
    { 100, 50, 14 },                     /* E: tiny, inside C's range  */
    { 6000, 3000, 15 },                  /* F: unaligned, overlaps B   */
};
#define NW (sizeof writes / sizeof writes[0])
#define FINAL_LEN 16384

/* states[k] = file contents after the first k writes (zero-extended). */
static uint8_t states[NW + 1][FINAL_LEN];

static int setup_states(void) {
    memset(states[0], 0, FINAL_LEN);
    fill(states[0], BASE_LEN, 10);
    for (size_t k = 0; k < NW; k++) {
        memcpy(states[k + 1], states[k], FINAL_LEN);
        fill(states[k + 1] + writes[k].off, writes[k].len, writes[k].seed);
    }
    return 0;
}

/* Build the base state, sync it, make the writes with the recorder on. */
static int scenario(rp_env *env) {
    CHECK(ftruncate(env->fd, 0) == 0);
    env->panic = 0;
    E(rp_powercut_record(env, 1));
    E(rp_io_pwrite(env, states[0], BASE_LEN, 0));
    E(rp_io_sync(env));
    CHECK(env->rec_len == 0);           /* synced: nothing to undo */
    uint8_t buf[8192];
    for (size_t k = 0; k < NW; k++) {
        fill(buf, writes[k].len, writes[k].seed);
        if (k % 2) {
            struct iovec iov[2] = { { buf, 7 }, { buf + 7, writes[k].len - 7 } };
            E(rp_io_pwritev(env, iov, 2, writes[k].off));
        } else {
            E(rp_io_pwrite(env, buf, writes[k].len, writes[k].off));
        }
    }
    CHECK(env->rec_len == NW);
    return 0;
}

static int test_powercut(void) {
    setup_states();
    rp_env *env = env_new("p");
    CHECK(env != NULL);
    int saw_all_kept = 0, saw_all_undone = 0;
    for (uint64_t seed = 0; seed < 300; seed++) {
        if (scenario(env)) return 1;
        unsigned undone = 99;
        E(rp_powercut_apply(env, seed, &undone));
        CHECK(undone <= NW);
        CHECK(env->panic == 1 && env->rec_on == 0 && env->rec_len == 0);
        CHECK(rp_env_usable(env) == RP_PANIC);
        size_t len;
        uint8_t *b = slurp(env, &len);
        CHECK(b != NULL && len == FINAL_LEN);
        /* Every byte holds its value after some prefix of the writes. */
        for (size_t i = 0; i < len; i++) {
            int ok = 0;
            for (size_t k = 0; k <= NW && !ok; k++) ok = b[i] == states[k][i];
            if (!ok) FAILF("seed %llu: byte %zu matches no state",
                           (unsigned long long)seed, i);
        }
        if (memcmp(b, states[NW], len) == 0) {
            saw_all_kept++;
            CHECK(undone == 0);
        }
        if (memcmp(b, states[0], len) == 0) saw_all_undone++;
        free(b);
        /* Same seed, same outcome. */
        if (seed < 5) {
            b = slurp(env, &len);
            if (scenario(env)) return 1;
            E(rp_powercut_apply(env, seed, NULL));
            size_t len2;
            uint8_t *b2 = slurp(env, &len2);
            CHECK(b2 != NULL && len2 == len && memcmp(b, b2, len) == 0);
            free(b);
            free(b2);
        }
    }
    CHECK(saw_all_kept > 0 && saw_all_undone > 0);

    /* A failed sync keeps the records (those writes may be lost). */
    env->panic = 0;
    E(rp_powercut_record(env, 1));
    E(rp_io_pwrite(env, states[1], 4096, 0));
    rp_fault_set(RP_FAULT_SYNC, 0);
    EXPECT(rp_io_sync(env), EIO);
    CHECK(env->rec_len == 1);
    /* A write that faults is neither made nor recorded. */
    rp_fault_set(RP_FAULT_WRITE, 0);
    EXPECT(rp_io_pwrite(env, states[2], 4096, 0), EIO);
    CHECK(env->rec_len == 1);
    E(rp_io_sync(env));
    CHECK(env->rec_len == 0);
    /* Turning it off drops everything. */
    E(rp_io_pwrite(env, states[2], 4096, 0));
    CHECK(env->rec_len == 1);
    E(rp_powercut_record(env, 0));
    CHECK(env->rec_len == 0 && env->rec == NULL && env->rec_on == 0);
    E(rp_io_pwrite(env, states[2], 4096, 0));
    CHECK(env->rec_len == 0);
    EXPECT(rp_powercut_record(NULL, 1), RP_INVALID);
    EXPECT(rp_powercut_apply(NULL, 1, NULL), RP_INVALID);
    env_free(env);
    return 0;
}

/* A growth since the last sync can be lost (the file ends where it did),
 * wholly or from a sector boundary on; writes into the lost part go with it;
 * older writes are still undone correctly. */
static int test_powercut_grow(void) {
    rp_env *env = env_new("pg");
    CHECK(env != NULL);
    uint8_t base[12288], a[4096], b[4096];
    fill(base, sizeof base, 21);
    fill(a, sizeof a, 22);
    fill(b, sizeof b, 23);
    int saw_short = 0, saw_full = 0, saw_mid = 0;
    for (uint64_t seed = 0; seed < 300; seed++) {
        CHECK(ftruncate(env->fd, 0) == 0);
        env->panic = 0;
        env->file_size = 0;
        E(rp_powercut_record(env, 1));
        E(rp_io_pwrite(env, base, sizeof base, 0));
        env->file_size = sizeof base;
        E(rp_io_sync(env));
        E(rp_io_pwrite(env, a, sizeof a, 0));          /* older write   */
        E(rp_io_grow(env, 20480));                      /* growth        */
        CHECK(env->rec_len == 2 && env->rec[1].before == NULL);
        E(rp_io_pwrite(env, b, sizeof b, 12288 + 1024)); /* into it     */
        E(rp_powercut_apply(env, seed, NULL));
        uint64_t sz = fsize(env);
        CHECK(sz >= sizeof base && sz <= 20480 && sz % 512 == 0);
        saw_short += sz == sizeof base;
        saw_full += sz == 20480;
        saw_mid += sz > sizeof base && sz < 20480;
        uint8_t got[20480];
        CHECK(pread(env->fd, got, sz, 0) == (ssize_t)sz);
        for (size_t i = 0; i < sz; i++) {
            int ok;
            if (i < 4096) ok = got[i] == base[i] || got[i] == a[i];
            else if (i < sizeof base) ok = got[i] == base[i];
            else if (i >= 12288 + 1024 && i < 12288 + 1024 + 4096)
                ok = got[i] == 0 || got[i] == b[i - 12288 - 1024];
            else ok = got[i] == 0;
            if (!ok) FAILF("seed %llu: byte %zu", (unsigned long long)seed, i);
        }
    }
    CHECK(saw_short > 0 && saw_full > 0 && saw_mid > 0);
    env_free(env);
    return 0;
}

/* Undo of one recorded write that tears: the undone part starts at a
 * 512-byte boundary inside it and runs to its end. */
static int test_tear_shape(void) {
    rp_env *env = env_new("t");
    CHECK(env != NULL);
    uint8_t old[8192], new_[8192];
    memset(old, 'o', sizeof old);
    memset(new_, 'n', sizeof new_);
    int tears = 0;
    for (uint64_t seed = 0; seed < 200; seed++) {
        CHECK(ftruncate(env->fd, 0) == 0);
        env->panic = 0;
        E(rp_io_pwrite(env, old, sizeof old, 0));
        E(rp_powercut_record(env, 1));
        E(rp_io_sync(env));
        E(rp_io_pwrite(env, new_, 8000, 100));
        unsigned undone;
        E(rp_powercut_apply(env, seed, &undone));
        uint8_t b[8192];
        CHECK(pread(env->fd, b, sizeof b, 0) == (ssize_t)sizeof b);
        /* Bytes [100, cut) new, [cut, 8100) old, for some cut. */
        size_t cut = 100;
        while (cut < 8100 && b[cut] == 'n') cut++;
        for (size_t i = cut; i < sizeof b; i++) CHECK(b[i] == 'o');
        for (size_t i = 0; i < 100; i++) CHECK(b[i] == 'o');
        CHECK(cut == 100 || cut == 8100 || cut % 512 == 0);
        CHECK((undone == 1) == (cut != 8100));
        tears += cut != 100 && cut != 8100;
    }
    CHECK(tears > 20);
    env_free(env);
    return 0;
}

int main(void) {
    /* ctest gives each test a scratch directory in RP_TEST_DIR. */
    const char *tmp = getenv("RP_TEST_DIR");
    if (tmp == NULL || *tmp == '\0') tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/rp_test_io.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    struct { const char *name; int (*fn)(void); } tests[] = {
        { "writes", test_writes },
        { "grow", test_grow },
        { "faults", test_faults },
        { "powercut", test_powercut },
        { "powercut_grow", test_powercut_grow },
        { "tear_shape", test_tear_shape },
    };
    int failed = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        int rc = tests[i].fn();
        rp_fault_set(RP_FAULT_NONE, 0);
        printf("%-12s %s\n", tests[i].name, rc ? "FAIL" : "ok");
        fflush(stdout);
        failed += rc != 0;
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    printf("%d failed\n", failed);
    return failed != 0;
}
