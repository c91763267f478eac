/*
 * test_lockfile.c -- the lock file under attack and writers dying mid-commit
 * (issue 10, items 4 and 5), through the public API:
 *
 *   - a symlink or a hard link planted at <path>.lock is refused, its target
 *     untouched;
 *   - garbage in the published version's ring entry: a lock-file error,
 *     not a data-file one;
 *   - a bad max_readers field, a truncated, deleted or replaced lock file:
 *     typed errors, never SIGSEGV/SIGBUS, never two writers under two locks;
 *   - a forged owner in the writer mutex's word (dead thread, live foreign
 *     thread, this very thread) is recovered instead of waited on forever;
 *   - a writer SIGKILLed at every step of its commit (RP_FAULT_CRASH) while
 *     this process holds the file open: a snapshot begun after the death,
 *     a waiter, and the next writer all agree on the outcome.
 *
 * Children that could hang are killed after 20 s and reported as failures.
 */
#include "internal.h"   /* first: it defines _GNU_SOURCE */
#include "check.h"
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[256];

static void path_of(char *buf, size_t len, const char *name) {
    snprintf(buf, len, "%s/%s", dir, name);
}

static rp_env *open_env(const char *name) {
    char p[512];
    path_of(p, sizeof p, name);
    rp_env *env = NULL;
    E(rp_env_open(p, RP_NOSYNC, 0, 0, 0, &env));
    return env;
}

static void put_str(rp_env *env, const char *key, const char *val) {
    rp_txn *w;
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    E(rp_put(w, "t", 1, key, strlen(key), val, strlen(val)));
    E(rp_txn_commit(w));
}

/* 1 if key is in the latest version as seen by a snapshot. */
static int has_key(rp_env *env, const char *key) {
    rp_txn *r;
    E(rp_txn_begin(env, 0, &r));
    const void *v;
    size_t vl;
    int rc = rp_get(r, "t", 1, key, strlen(key), &v, &vl);
    rp_txn_abort(r);
    CHECK(rc == RP_OK || rc == RP_NOTFOUND, "get");
    return rc == RP_OK;
}

static void write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0, "create file");
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write file");
    close(fd);
}

static int file_is(const char *path, const char *text) {
    char buf[256];
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    return n == (ssize_t)strlen(text) && memcmp(buf, text, (size_t)n) == 0;
}

/* Store a 32-bit value into the lock file at off, as a stray process would. */
static void poke32(const char *name, off_t off, uint32_t v) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s.lock", dir, name);
    int fd = open(p, O_RDWR);
    CHECK(fd >= 0, "open lock file");
    CHECK(pwrite(fd, &v, 4, off) == 4, "poke");
    close(fd);
}

/* ---- planted links ------------------------------------------------------ */

static void test_symlink(void) {
    char db[512], lk[512], target[512], dangling[512];
    path_of(db, sizeof db, "sym");
    path_of(lk, sizeof lk, "sym.lock");
    path_of(target, sizeof target, "precious");
    path_of(dangling, sizeof dangling, "never-created");
    write_file(target, "precious bytes");
    CHECK(symlink(target, lk) == 0, "symlink");
    rp_env *env = NULL;
    int rc = rp_env_open(db, 0, 0, 0, 0, &env);
    CHECK(rc == RP_LOCK_ERRNO - ELOOP && env == NULL, "symlinked lock file refused");
    CHECK(file_is(target, "precious bytes"), "symlink target untouched");
    /* Read-only: refused too, not taken for a read-only directory. */
    rc = rp_env_open(db, RP_RDONLY, 0, 0, 0, &env);
    CHECK(rc == RP_LOCK_ERRNO - ELOOP, "read-only open refuses it too");
    /* A dangling link: its target is not created. */
    unlink(lk);
    CHECK(symlink(dangling, lk) == 0, "symlink");
    rc = rp_env_open(db, 0, 0, 0, 0, &env);
    CHECK(rc == RP_LOCK_ERRNO - ELOOP, "dangling symlink refused");
    CHECK(access(dangling, F_OK) != 0, "dangling target not created");
    CHECK(strstr(rp_strerror(rc), "lock file") != NULL, "message names the lock file");
    unlink(lk);
}

static void test_hardlink(void) {
    char db[512], lk[512], other[512];
    path_of(db, sizeof db, "hard");
    path_of(lk, sizeof lk, "hard.lock");
    path_of(other, sizeof other, "other-file");
    write_file(other, "other bytes");
    CHECK(link(other, lk) == 0, "link");
    rp_env *env = NULL;
    CHECK(rp_env_open(db, 0, 0, 0, 0, &env) == RP_LOCK_ERRNO - EMLINK, "hard link refused");
    CHECK(file_is(other, "other bytes"), "hard link's other name untouched");
    unlink(lk);
}

/* ---- damaged header ------------------------------------------------------ */

/* While a holds name open, a new opener gets want; once a closed, the next
 * opener rebuilds the lock file and finds key. */
static void refused_then_rebuilt(rp_env *a, const char *name, int want, const char *key) {
    rp_env *b = NULL;
    CHECK(rp_env_open(a->path, 0, 0, 0, 0, &b) == want, "new opener refused");
    E(rp_env_close(a));
    rp_env *c = open_env(name);
    CHECK(has_key(c, key), "data intact after the rebuild");
    E(rp_env_close(c));
}

static void test_bad_max_readers(void) {
    rp_env *a = open_env("mr");
    put_str(a, "k", "v");
    const uint32_t bad[] = { 0xffffffffu, 0, 70000 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        poke32("mr", (off_t)offsetof(rp_lock_hdr, max_readers), bad[i]);
        /* This process validated the header at open and never re-reads it. */
        CHECK(has_key(a, "k"), "read with a bad max_readers");
        put_str(a, "k2", "v2");
        rp_stat st;
        E(rp_env_stat(a, &st));
        CHECK(st.max_readers == RP_DEFAULT_READERS, "stat keeps the validated size");
        rp_reader_info info[4];
        unsigned n;
        E(rp_env_readers(a, info, 4, &n));
        unsigned reaped;
        E(rp_env_reap_readers(a, &reaped));
        /* A new opener validates and refuses: the header is garbage and in use. */
        rp_env *b = NULL;
        CHECK(rp_env_open(a->path, 0, 0, 0, 0, &b) == RP_INCOMPATIBLE_LOCK, "garbage refused");
    }
    refused_then_rebuilt(a, "mr", RP_INCOMPATIBLE_LOCK, "k2");
}

/* Garbage in the roots of the published version's ring entry, the data
 * file intact: a lock-file error (abandoned, rebuilt by the next open),
 * never RP_CORRUPT or RP_MAP_FULL blaming the data file. */
static void test_ring_garbage(void) {
    const struct { unsigned field; uint64_t value; } cases[] = {
        { 1, 1ull << 40 },   /* pages_used: beyond the map */
        { 1, 3 },            /* pages_used: too few for the catalog */
        { 2, 12345 },        /* cat_pgno */
        { 3, 999 },          /* cat_txnid */
        { 4, 1ull << 40 },   /* free_pgno: the writer's free list */
        { 6, 1 },            /* free_len */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp_env *a = open_env("ring");
        put_str(a, "k", "v");
        uint64_t v = rp_env_version(a);
        off_t off = (off_t)(offsetof(rp_lock_hdr, ring) + sizeof(rp_ring_entry) * (v % RP_RING)
                            + offsetof(rp_ring_entry, f) + 8 * cases[i].field);
        char p[512];
        snprintf(p, sizeof p, "%s/ring.lock", dir);
        int fd = open(p, O_RDWR);
        CHECK(fd >= 0 && pwrite(fd, &cases[i].value, 8, off) == 8, "poke the ring");
        close(fd);
        rp_txn *t;
        int rc = rp_txn_begin(a, 0, &t);
        if (rc == RP_OK) {
            const void *val;
            size_t vl;
            rc = rp_get(t, "t", 1, "k", 1, &val, &vl);
            rp_txn_abort(t);
        }
        if (rc == RP_OK) {   /* the reader's roots do not include the free list */
            rc = rp_txn_begin(a, RP_TXN_WRITE, &t);
            if (rc == RP_OK) rp_txn_abort(t);
        }
        CHECK(rc == RP_LOCK_CHANGED, "a lock-file error");
        refused_then_rebuilt(a, "ring", RP_LOCK_CHANGED, "k");
    }
}

static void test_truncated(void) {
    rp_env *a = open_env("trunc");
    put_str(a, "k", "v");
    char lk[512];
    path_of(lk, sizeof lk, "trunc.lock");
    CHECK(truncate(lk, 0) == 0, "truncate");
    rp_txn *t;
    CHECK(rp_txn_begin(a, RP_TXN_WRITE, &t) == RP_LOCK_CHANGED, "writer refuses, no SIGBUS");
    /* The writer extended it back and abandoned it: now readers and waiters
     * are refused too instead of faulting. */
    CHECK(rp_txn_begin(a, 0, &t) == RP_LOCK_CHANGED, "reader refuses");
    uint64_t v;
    CHECK(rp_env_wait(a, 1, 1000000, &v) == RP_LOCK_CHANGED, "waiter refuses");
    refused_then_rebuilt(a, "trunc", RP_LOCK_CHANGED, "k");
}

/* Deleted or replaced while two processes write: the old handle refuses,
 * at write begin or at commit, so no commit of the new lock's writers is
 * ever undone. */
static void test_deleted(int replace) {
    const char *name = replace ? "repl" : "del";
    rp_env *a = open_env(name);
    rp_env *b = open_env(name);
    put_str(a, "a1", "x");
    rp_txn *late;
    E(rp_txn_begin(b, RP_TXN_WRITE, &late));      /* in flight across the deletion */
    E(rp_put(late, "t", 1, "b1", 2, "x", 1));
    char lk[512], tmp[512];
    path_of(lk, sizeof lk, name);
    strcat(lk, ".lock");
    if (replace) {
        path_of(tmp, sizeof tmp, "replacement");
        write_file(tmp, "");
        CHECK(rename(tmp, lk) == 0, "replace");
    } else {
        CHECK(unlink(lk) == 0, "unlink");
    }
    /* A process opening now builds a new lock file (or rebuilds the
     * replacement) and writes under its own mutex. */
    pid_t pid = fork();
    if (pid == 0) {
        rp_env *c = open_env(name);
        put_str(c, "c1", "x");
        rp_env_close(c);
        _exit(0);
    }
    CHECK(test_reap(pid) == 0, "new opener writes");
    CHECK(rp_txn_commit(late) == RP_LOCK_CHANGED, "in-flight commit refused");
    rp_txn *t;
    CHECK(rp_txn_begin(a, RP_TXN_WRITE, &t) == RP_LOCK_CHANGED, "old handle refuses to write");
    CHECK(rp_txn_begin(b, 0, &t) == RP_LOCK_CHANGED, "old handle refuses to read");
    E(rp_env_close(a));
    E(rp_env_close(b));
    rp_env *d = open_env(name);
    CHECK(has_key(d, "a1"), "a's commit before the deletion kept");
    CHECK(has_key(d, "c1"), "the new lock's writer's commit kept");
    CHECK(!has_key(d, "b1"), "the refused commit absent");
    E(rp_env_close(d));
}

/* ---- forged writer mutex owner ---------------------------------------------- */

static void forged(uint32_t tid, const char *label) {
    rp_env *a = open_env("forge");
    put_str(a, "before", "x");
    poke32("forge", (off_t)offsetof(rp_lock_hdr, wmutex), tid);
    pid_t pid = fork();
    if (pid == 0) {
        rp_env *c = open_env("forge");
        put_str(c, label, "x");
        rp_env_close(c);
        _exit(0);
    }
    CHECK(test_reap(pid) == 0, "writer recovered the forged mutex");
    CHECK(has_key(a, label), "its commit is visible");
    put_str(a, "after", "x");                      /* and the mutex works on */
    E(rp_env_close(a));
}

static void test_forged_owner(void) {
    /* A dead thread: a child that exited. */
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    CHECK(test_reap(dead) == 0, "child");
    forged((uint32_t)dead, "dead");
    /* A live thread of a process that never locked it. */
    pid_t live = fork();
    if (live == 0) {
        pause();
        _exit(0);
    }
    forged((uint32_t)live, "live");
    kill(live, SIGKILL);
    test_reap(live);
    /* This very thread: a writer here gets EDEADLK from the mutex. */
    rp_env *a = open_env("forge");
    poke32("forge", (off_t)offsetof(rp_lock_hdr, wmutex), (uint32_t)syscall(SYS_gettid));
    put_str(a, "self", "x");
    CHECK(has_key(a, "self"), "own tid forged");
    E(rp_env_close(a));
}

/* ---- read-only directory ------------------------------------------------------- */

/* In a child that cannot write dir/ro (root writes anywhere: it becomes
 * nobody), open the database there read-only: 0 if it reads key, or the
 * step that failed. */
static int read_only_child(const char *db, int in_use_expected) {
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) return 10;
    rp_env *env = NULL;
    int rc = rp_env_open(db, RP_RDONLY, 0, 0, 0, &env);
    if (in_use_expected) return rc == RP_LOCK_ERRNO - EACCES ? 0 : 11;
    if (rc != RP_OK) return 12;
    rp_txn *r;
    if (rp_txn_begin(env, 0, &r) != RP_OK) return 13;
    const void *v;
    size_t vl;
    rc = rp_get(r, "t", 1, "k", 1, &v, &vl);
    rp_txn_abort(r);
    uint64_t seen;
    if (rp_env_wait(env, rp_env_version(env), 1000000, &seen) != RP_OK) return 14;
    return rc == RP_OK && rp_env_close(env) == RP_OK ? 0 : 15;
}

static void test_read_only_dir(void) {
    char ro[512], db[512], lk[512];
    path_of(ro, sizeof ro, "ro");
    path_of(db, sizeof db, "ro/db");
    path_of(lk, sizeof lk, "ro/db.lock");
    CHECK(mkdir(ro, 0755) == 0 && chmod(dir, 0755) == 0, "mkdir");
    rp_env *env = NULL;
    E(rp_env_open(db, RP_NOSYNC, 0, 0, 0, &env));
    put_str(env, "k", "v");
    E(rp_env_close(env));
    CHECK(chmod(db, 0644) == 0 && chmod(lk, 0644) == 0 && chmod(ro, 0555) == 0, "chmod");
    /* Round 2 needs another user (the holder must write what the child
     * cannot): root only. */
    int rounds = geteuid() == 0 ? 3 : 2;
    for (int round = 0; round < rounds; round++) {
        /* 0: a lock file nobody uses; 1: none at all; 2: one in use here */
        if (round == 1) {
            CHECK(chmod(ro, 0755) == 0 && unlink(lk) == 0 && chmod(ro, 0555) == 0, "unlink");
        }
        if (round == 2) {
            E(rp_env_open(db, RP_RDONLY, 0, 0, 0, &env));   /* root may create it */
            CHECK(chmod(lk, 0644) == 0, "chmod");
        }
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) _exit(read_only_child(db, round == 2));
        int st = test_reap(pid);
        if (st != 0) {
            fprintf(stderr, "read-only round %d: child step %d\n", round, st);
            exit(1);
        }
        CHECK(round != 1 || access(lk, F_OK) != 0, "nothing created");
        if (round == 2) E(rp_env_close(env));
    }
    CHECK(chmod(ro, 0755) == 0, "chmod back");
}

/* ---- a writer killed at every step of its commit ---------------------------- */

typedef struct waiter {
    rp_env *env;
    uint64_t since, got;
    int rc;
} waiter;

static void *wait_thread(void *arg) {
    waiter *w = arg;
    w->rc = rp_env_wait(w->env, w->since, 10000000000ll, &w->got);
    return NULL;
}

/* How the survivor first looks after the death. */
enum { LOOK_SNAPSHOT, LOOK_WAIT, LOOK_OPEN, LOOK_SLEEPING_WAITER, LOOKS };

static void dead_writer(int step, int look) {
    char key[32];
    snprintf(key, sizeof key, "s%d-%d", step, look);
    rp_env *a = open_env("doubt");                 /* the third process: us */
    uint64_t v0 = rp_env_version(a);
    waiter w = { a, v0, 0, -1 };
    pthread_t th;
    int durable = step >= RP_STEP_META;            /* meta written: adopted */
    if (!durable && look == LOOK_SLEEPING_WAITER) look = LOOK_SNAPSHOT;  /* would sleep on */
    if (look == LOOK_SLEEPING_WAITER)
        CHECK(pthread_create(&th, NULL, wait_thread, &w) == 0, "thread");
    pid_t pid = fork();
    if (pid == 0) {
        rp_env *c = NULL;
        if (rp_env_open(a->path, 0, 0, 0, 0, &c) != RP_OK) _exit(3);
        rp_fault_set(RP_FAULT_CRASH, (unsigned)step);
        rp_txn *t;
        if (rp_txn_begin(c, RP_TXN_WRITE, &t) != RP_OK) _exit(4);
        if (rp_put(t, "t", 1, key, strlen(key), "x", 1) != RP_OK) _exit(5);
        rp_txn_commit(t);
        _exit(6);                                  /* should have died */
    }
    CHECK(test_reap(pid) == 128 + SIGKILL, "writer killed mid-commit");
    rp_env *seen_by = a;
    if (look == LOOK_WAIT) {
        uint64_t v;
        E(rp_env_wait(a, v0, durable ? 10000000000ll : 1000000, &v));
        CHECK(v == (durable ? v0 + 1 : v0), "a waiter sees the outcome");
    } else if (look == LOOK_SLEEPING_WAITER) {
        pthread_join(th, NULL);
        CHECK(w.rc == RP_OK && w.got == v0 + 1, "a sleeping waiter wakes");
    } else if (look == LOOK_OPEN) {
        seen_by = open_env("doubt");               /* a second env: opening resolves */
    }
    /* A snapshot begun after the death ... */
    rp_txn *r;
    E(rp_txn_begin(seen_by, 0, &r));
    uint64_t vr = rp_txn_version(r);
    const void *val;
    size_t vl;
    int in_r = rp_get(r, "t", 1, key, strlen(key), &val, &vl) == RP_OK;
    rp_txn_abort(r);
    /* ... sees what the next writer sees. */
    rp_txn *wt;
    E(rp_txn_begin(a, RP_TXN_WRITE, &wt));
    uint64_t vw = rp_txn_version(wt);
    int in_w = rp_get(wt, "t", 1, key, strlen(key), &val, &vl) == RP_OK;
    rp_txn_abort(wt);
    if (vr != vw || in_r != in_w || in_r != durable || vr != v0 + (uint64_t)durable) {
        fprintf(stderr, "step %d look %d: snapshot v%llu %d, writer v%llu %d, durable %d\n",
                step, look, (unsigned long long)vr, in_r, (unsigned long long)vw, in_w,
                durable);
        exit(1);
    }
    if (seen_by != a) E(rp_env_close(seen_by));
    E(rp_env_close(a));
}

static void test_dead_writer(void) {
    for (int step = RP_STEP_PAGES; step <= RP_STEP_PUBLISHED; step++)
        for (int look = 0; look < LOOKS; look++) dead_writer(step, look);
}

int main(void) {
    const char *tmp = getenv("RP_TEST_DIR");
    if (tmp == NULL || *tmp == '\0') tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/rp_test_lockfile.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    struct { const char *name; void (*fn)(void); } tests[] = {
        { "symlink", test_symlink },
        { "hardlink", test_hardlink },
        { "bad_max_readers", test_bad_max_readers },
        { "truncated", test_truncated },
        { "ring_garbage", test_ring_garbage },
        { "forged_owner", test_forged_owner },
        { "read_only_dir", test_read_only_dir },
        { "dead_writer", test_dead_writer },
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        uint64_t t0 = test_now_ns();
        tests[i].fn();
        printf("%-16s ok (%.1f ms)\n", tests[i].name, (double)(test_now_ns() - t0) / 1e6);
        fflush(stdout);
    }
    uint64_t t0 = test_now_ns();
    test_deleted(0);
    test_deleted(1);
    printf("%-16s ok (%.1f ms)\n", "deleted_replaced", (double)(test_now_ns() - t0) / 1e6);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    return 0;
}
