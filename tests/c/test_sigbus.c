/*
 * test_sigbus.c -- another program truncates the lock file or the data file
 * while this process uses it (issue 10; the SIGBUS guard, csrc/sigbus.c):
 *
 *   - lock file truncated to 0 or into its header, under a reader, a live
 *     snapshot, a waiter and a writer: RP_LOCK_CHANGED, the file marked
 *     abandoned for everyone, rebuilt by the next opener, data intact;
 *   - lock file truncated through the writer mutex while it is held: the
 *     unlock does not follow the cut robust-list links;
 *   - data file truncated under a snapshot and under a write transaction:
 *     RP_CORRUPT naming the cause, never zeros handed out as data (also
 *     inside an overflow run verified before), no commit;
 *   - the same with the truncation done by another process while a child
 *     holds the file open;
 *   - a SIGBUS outside our mappings (or sent with kill) still reaches the
 *     handler installed before ours.
 *
 * Each case runs in a forked child (a fault we failed to catch kills the
 * child, not the test), reported with its exit status; children are
 * killed after 20 s.
 */
#include "internal.h"   /* first: it defines _GNU_SOURCE */
#include "check.h"
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[256];

static void path_of(char *buf, size_t len, const char *name, const char *suffix) {
    snprintf(buf, len, "%s/%s%s", dir, name, suffix);
}

static rp_env *open_flags(const char *name, unsigned flags) {
    char p[512];
    path_of(p, sizeof p, name, "");
    rp_env *env = NULL;
    E(rp_env_open(p, flags, 0, 0, 0, &env));
    return env;
}

static rp_env *open_env(const char *name) { return open_flags(name, RP_NOSYNC); }

/* n keys "k00000".. with 200-byte values: enough pages that truncating the
 * file to a few pages cuts through the tree. */
static void fill(rp_env *env, int n) {
    rp_txn *w;
    E(rp_txn_begin(env, RP_TXN_WRITE, &w));
    char key[16], val[200];
    memset(val, 'v', sizeof val);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "k%05d", i);
        E(rp_put(w, "t", 1, key, strlen(key), val, sizeof val));
    }
    E(rp_txn_commit(w));
}

static int get_key(rp_txn *r, int i, const void **v, size_t *vl) {
    char key[16];
    snprintf(key, sizeof key, "k%05d", i);
    return rp_get(r, "t", 1, key, strlen(key), v, vl);
}

/* 1 if v is the value fill() stored. */
static int value_ok(const void *v, size_t vl) {
    if (vl != 200) return 0;
    for (size_t i = 0; i < vl; i++)
        if (((const char *)v)[i] != 'v') return 0;
    return 1;
}

/* A new opener after an abandoned lock file: the lock file is rebuilt and
 * the data is intact; with write, the rebuilt file takes commits too. */
static void reopen_intact(const char *name, int write) {
    rp_env *c = open_env(name);
    rp_txn *t;
    E(rp_txn_begin(c, 0, &t));
    const void *val;
    size_t vl;
    E(get_key(t, 9, &val, &vl));
    CHECK(value_ok(val, vl), "data intact after the rebuild");
    rp_txn_abort(t);
    if (write) fill(c, 10);
    E(rp_env_close(c));
}

static void cut(const char *name, const char *suffix, off_t size) {
    char p[512];
    path_of(p, sizeof p, name, suffix);
    CHECK(truncate(p, size) == 0, "truncate");
}

static uint32_t lock_ready_in_file(const char *name) {
    char p[512];
    path_of(p, sizeof p, name, ".lock");
    int fd = open(p, O_RDONLY);
    CHECK(fd >= 0, "open lock file");
    uint32_t ready = 0;
    CHECK(pread(fd, &ready, 4, offsetof(rp_lock_hdr, ready)) == 4, "lock file extended back");
    close(fd);
    return ready;
}

/* ---- the lock file ---------------------------------------------------------- */

/* Truncated to size between transactions: the next snapshot refuses. */
static void lock_then_read(off_t size) {
    char name[32];
    snprintf(name, sizeof name, "lr%lld", (long long)size);
    rp_env *a = open_env(name);
    fill(a, 10);
    uint64_t faults = rp_guard_fault_count();
    cut(name, ".lock", size);
    rp_txn *t = NULL;
    CHECK(rp_txn_begin(a, 0, &t) == RP_LOCK_CHANGED, "reader refused, no SIGBUS");
    if (size == 0) CHECK(rp_guard_fault_count() > faults, "the guard caught the fault");
    CHECK(rp_txn_begin(a, 0, &t) == RP_LOCK_CHANGED, "refused again");
    CHECK(rp_txn_begin(a, RP_TXN_WRITE, &t) == RP_LOCK_CHANGED, "writer refused");
    uint64_t v;
    CHECK(rp_env_wait(a, 1, 1000000, &v) == RP_LOCK_CHANGED, "waiter refused");
    /* Marked abandoned in the file itself, for other processes. */
    CHECK(lock_ready_in_file(name) == RP_LOCK_ABANDONED, "abandoned in the file");
    rp_env *b = NULL;
    CHECK(rp_env_open(a->path, 0, 0, 0, 0, &b) == RP_LOCK_CHANGED, "new opener refused");
    E(rp_env_close(a));
    reopen_intact(name, 0);
}

static void test_lock_read(void) {
    lock_then_read(0);
    lock_then_read(100);     /* the header cut: was "the database file is corrupt" */
    lock_then_read(200);
}

/* Truncated under a live snapshot: its reads go on (they never touch the
 * lock file), ending it does not fault, the next one refuses. */
static void test_lock_live_snapshot(void) {
    rp_env *a = open_env("ls");
    fill(a, 10);
    rp_txn *r;
    E(rp_txn_begin(a, 0, &r));
    cut("ls", ".lock", 0);
    const void *v;
    size_t vl;
    E(get_key(r, 3, &v, &vl));
    CHECK(value_ok(v, vl), "the snapshot still reads the data file");
    rp_txn_abort(r);   /* unpins: a store into the lost page */
    rp_txn *t = NULL;
    CHECK(rp_txn_begin(a, 0, &t) == RP_LOCK_CHANGED, "next snapshot refused");
    E(rp_env_close(a));
}

/* 1 if this thread's robust mutex list (kept by glibc, walked by the kernel
 * when the thread dies) is empty: no link into a lock file left behind. */
static int robust_list_empty(void) {
    struct robust_list_head *head = NULL;
    size_t len = 0;
    CHECK(syscall(SYS_get_robust_list, 0, &head, &len) == 0, "get_robust_list");
    return head != NULL && head->list.next == &head->list;
}

/* Truncated while this thread holds the writer mutex -- to 0, or through
 * the mutex itself (offsets 64..103 hold glibc's robust-list links): no
 * commit, and the unlock leaves no link behind (it used to follow the cut
 * links: SIGSEGV). */
static void test_lock_writer(void) {
    const off_t sizes[] = { 0, 64, 90, 100, 200 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        rp_env *a = open_env("lw");
        fill(a, 10);
        rp_txn *w;
        E(rp_txn_begin(a, RP_TXN_WRITE, &w));
        E(rp_put(w, "t", 1, "new", 3, "x", 1));
        cut("lw", ".lock", sizes[i]);
        CHECK(rp_txn_commit(w) == RP_LOCK_CHANGED, "commit refused");
        CHECK(robust_list_empty(), "the writer mutex is off this thread's robust list");
        E(rp_env_close(a));
        rp_env *c = open_env("lw");
        rp_txn *t;
        E(rp_txn_begin(c, 0, &t));
        const void *v;
        size_t vl;
        CHECK(rp_get(t, "t", 1, "new", 3, &v, &vl) == RP_NOTFOUND, "the refused commit is absent");
        rp_txn_abort(t);
        fill(c, 10);   /* a robust lock again, through the rebuilt file */
        CHECK(robust_list_empty(), "and stays off it");
        E(rp_env_close(c));
    }
}

/* Truncated to size between transactions, and a writer comes first.  A
 * write begin makes no system call on the lock file (the commit stats it
 * once): a cut page faults at the first touch (0: the header; 5000 and
 * 8192: reader slots) or reads zeros inside the last page kept (100, 200:
 * the ring), and either way the writer is refused before it reads the data
 * file's free list or writes anything, and the file is marked abandoned. */
static void lock_then_write(off_t size) {
    char name[32];
    snprintf(name, sizeof name, "lwb%lld", (long long)size);
    rp_env *a = open_env(name);
    fill(a, 10);
    cut(name, ".lock", size);
    rp_txn *t = NULL;
    CHECK(rp_txn_begin(a, RP_TXN_WRITE, &t) == RP_LOCK_CHANGED, "writer refused at begin");
    CHECK(robust_list_empty(), "the writer mutex is off this thread's robust list");
    CHECK(lock_ready_in_file(name) == RP_LOCK_ABANDONED, "abandoned in the file");
    CHECK(rp_txn_begin(a, RP_TXN_WRITE, &t) == RP_LOCK_CHANGED, "refused again");
    CHECK(rp_txn_begin(a, 0, &t) == RP_LOCK_CHANGED, "reader refused");
    E(rp_env_close(a));
    reopen_intact(name, 1);
}

static void test_lock_write(void) {
    const off_t sizes[] = { 0, 100, 200, 5000, 8192 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) lock_then_write(sizes[i]);
}

/* ---- the data file ---------------------------------------------------------- */

static int mentions_truncation(void) {
    return strstr(rp_corrupt_detail(), "lost pages while in use") != NULL;
}

/* Truncated under a snapshot: every read reports it, none returns zeros. */
static void test_data_read(void) {
    rp_env *a = open_flags("dr", 0);   /* durable: the reopen must not roll back */
    fill(a, 3000);
    rp_txn *r;
    E(rp_txn_begin(a, 0, &r));
    const void *v;
    size_t vl;
    E(get_key(r, 2999, &v, &vl));          /* verified and cached */
    cut("dr", "", 2 * RP_PAGE_SIZE);
    int bad = 0;
    for (int i = 0; i < 3000; i += 7) {
        int rc = get_key(r, i, &v, &vl);
        if (rc == RP_OK) {
            CHECK(value_ok(v, vl), "never zeros as data");
            continue;
        }
        CHECK(rc == RP_CORRUPT, "a typed error");
        CHECK(mentions_truncation(), "the error says what happened");
        bad++;
    }
    CHECK(bad > 0, "the truncation was noticed");
    /* Batch copies too. */
    rp_cursor *c = NULL;
    int rc = rp_cursor_open(r, "t", 1, &c);
    CHECK(rc == RP_CORRUPT, "cursor refused once broken");
    rp_txn_abort(r);
    rp_txn *t = NULL;
    CHECK(rp_txn_begin(a, 0, &t) == RP_CORRUPT && mentions_truncation(), "env broken");
    CHECK(rp_txn_begin(a, RP_TXN_WRITE, &t) == RP_CORRUPT, "no writer either");
    E(rp_env_close(a));
    rp_env *b = NULL;
    char p[512];
    path_of(p, sizeof p, "dr", "");
    CHECK(rp_env_open(p, 0, 0, 0, 0, &b) == RP_CORRUPT, "reopen: the file is truncated");
    CHECK(strstr(rp_corrupt_detail(), "truncated") != NULL, "and says so");
}

/* Truncated inside an overflow run that this process verified already (so
 * it is not hashed again): the lost tail must be an error, not zeros for
 * the caller's copy. */
static void test_data_overflow(void) {
    rp_env *a = open_env("dov");
    fill(a, 100);
    static char big[30000];
    memset(big, 'b', sizeof big);
    rp_txn *w;
    E(rp_txn_begin(a, RP_TXN_WRITE, &w));
    E(rp_put(w, "t", 1, "big", 3, big, sizeof big));
    E(rp_txn_commit(w));
    /* Copy the leaf holding "big" again: it moves to a page freed earlier,
     * below the run, so a cut inside the run leaves the path to it. */
    E(rp_txn_begin(a, RP_TXN_WRITE, &w));
    E(rp_put(w, "t", 1, "a", 1, "x", 1));
    E(rp_txn_commit(w));
    rp_txn *r;
    E(rp_txn_begin(a, 0, &r));
    const void *v;
    size_t vl;
    E(rp_get(r, "t", 1, "big", 3, &v, &vl));          /* verified and cached */
    CHECK(vl == sizeof big && memcmp(v, big, vl) == 0, "the value");
    uint64_t first = (uint64_t)((const uint8_t *)v - a->map) / RP_PAGE_SIZE;
    cut("dov", "", (off_t)((first + 2) * RP_PAGE_SIZE));
    int rc = rp_get(r, "t", 1, "big", 3, &v, &vl);
    CHECK(rc == RP_CORRUPT && mentions_truncation(), "the lost tail is reported");
    rp_txn_abort(r);
    E(rp_env_close(a));
}

/* Truncated under a write transaction that copies a lost page: no commit. */
static void test_data_write(void) {
    rp_env *a = open_env("dw");
    fill(a, 3000);
    rp_txn *w;
    E(rp_txn_begin(a, RP_TXN_WRITE, &w));
    cut("dw", "", 2 * RP_PAGE_SIZE);
    char val[200];
    memset(val, 'w', sizeof val);
    int rc = RP_OK;
    for (int i = 0; i < 3000 && rc == RP_OK; i += 97) {
        char key[16];
        snprintf(key, sizeof key, "k%05d", i);
        rc = rp_put(w, "t", 1, key, strlen(key), val, sizeof val);
    }
    if (rc == RP_OK) rc = rp_txn_commit(w);
    else rp_txn_abort(w);
    CHECK(rc == RP_CORRUPT && mentions_truncation(), "the write is refused");
    E(rp_env_close(a));
}

/* ---- another process truncates -------------------------------------------- */

/* A child holds name open with a snapshot ended and one live; the parent
 * truncates suffix; the child's next steps must be typed errors. */
static void test_other_process(const char *suffix, int want) {
    const char *name = *suffix ? "opl" : "opd";
    rp_env *a = open_env(name);
    fill(a, 3000);
    E(rp_env_close(a));
    int up[2], go[2];
    CHECK(pipe(up) == 0 && pipe(go) == 0, "pipe");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        rp_env *env = open_env(name);
        rp_txn *r;
        E(rp_txn_begin(env, 0, &r));
        const void *v;
        size_t vl;
        E(get_key(r, 5, &v, &vl));
        char c = 1;
        if (write(up[1], &c, 1) != 1 || read(go[0], &c, 1) != 1) _exit(2);
        int rc = RP_OK;
        for (int i = 0; i < 3000 && rc == RP_OK; i += 11) {
            rc = get_key(r, i, &v, &vl);
            if (rc == RP_OK && !value_ok(v, vl)) _exit(3);      /* wrong data */
        }
        rp_txn_abort(r);
        rp_txn *t = NULL;
        rc = rp_txn_begin(env, 0, &t);
        if (rc != want) _exit(4);
        rp_env_close(env);
        _exit(0);
    }
    char c;
    CHECK(read(up[0], &c, 1) == 1, "child ready");
    cut(name, suffix, *suffix ? 0 : 2 * RP_PAGE_SIZE);
    CHECK(write(go[1], &c, 1) == 1, "go");
    int st = test_reap(pid);
    if (st != 0) fprintf(stderr, "child status %d\n", st);
    CHECK(st == 0, "the child got typed errors, no crash, no wrong data");
    close(up[0]); close(up[1]); close(go[0]); close(go[1]);
}

static void test_other_process_lock(void) { test_other_process(".lock", RP_LOCK_CHANGED); }
static void test_other_process_data(void) { test_other_process("", RP_CORRUPT); }

/* ---- faults that are not ours ------------------------------------------------- */

static volatile sig_atomic_t theirs;

static void their_handler(int sig, siginfo_t *info, void *uctx) {
    (void)sig;
    (void)uctx;
    theirs++;
    if (info->si_code > 0) {
        /* Make the access succeed, as a guard of their own would. */
        uintptr_t page = (uintptr_t)info->si_addr & ~(uintptr_t)(RP_PAGE_SIZE - 1);
        mmap((void *)page, RP_PAGE_SIZE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
             -1, 0);
    }
}

static void test_chained(void) {
    /* Installed before the engine's (this child has opened no env yet). */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = their_handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGBUS, &sa, NULL) == 0, "sigaction");
    rp_env *a = open_env("ch");
    fill(a, 10);
    /* A mapping of someone else's file, truncated under it. */
    char p[512];
    path_of(p, sizeof p, "foreign", "");
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0 && ftruncate(fd, RP_PAGE_SIZE) == 0, "foreign file");
    volatile const uint8_t *m = mmap(NULL, RP_PAGE_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    CHECK(m != MAP_FAILED, "mmap");
    CHECK(ftruncate(fd, 0) == 0, "truncate foreign");
    uint64_t faults = rp_guard_fault_count();
    CHECK(m[10] == 0 && theirs == 1, "their fault went to their handler");
    CHECK(rp_guard_fault_count() == faults, "not counted as ours");
    CHECK(kill(getpid(), SIGBUS) == 0 && theirs == 2, "a sent SIGBUS too");
    rp_txn *t;
    E(rp_txn_begin(a, 0, &t));         /* the env is untouched */
    rp_txn_abort(t);
    E(rp_env_close(a));
    close(fd);
}

int main(void) {
    const char *tmp = getenv("RP_TEST_DIR");
    if (tmp == NULL || *tmp == '\0') tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/rp_test_sigbus.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    struct { const char *name; void (*fn)(void); } tests[] = {
        { "chained", test_chained },
        { "lock_read", test_lock_read },
        { "lock_write", test_lock_write },
        { "lock_snapshot", test_lock_live_snapshot },
        { "lock_writer", test_lock_writer },
        { "data_read", test_data_read },
        { "data_overflow", test_data_overflow },
        { "data_write", test_data_write },
        { "process_lock", test_other_process_lock },
        { "process_data", test_other_process_data },
    };
    /* RP_TEST_ONLY=name runs one case in this process (for a debugger). */
    const char *only = getenv("RP_TEST_ONLY");
    int failed = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        if (only != NULL && *only != '\0') {
            if (strcmp(only, tests[i].name) == 0) tests[i].fn();
            continue;
        }
        uint64_t t0 = test_now_ns();
        fflush(stdout);
        pid_t pid = fork();
        CHECK(pid >= 0, "fork");
        if (pid == 0) {
            tests[i].fn();
            fflush(stdout);
            _exit(0);
        }
        int st = test_reap(pid);
        printf("%-16s %s (%.1f ms)\n", tests[i].name, st == 0 ? "ok" : "FAILED",
               (double)(test_now_ns() - t0) / 1e6);
        if (st != 0) {
            fprintf(stderr, "%s: child exit status %d\n", tests[i].name, st);
            failed = 1;
        }
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    return failed;
}
