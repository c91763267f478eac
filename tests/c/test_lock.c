/*
 * test_lock.c -- unit tests of csrc/lock.c: the lock file shared by all
 * processes (first-opener protocol, layout checks, robust writer mutex,
 * version counter + futex, meta ring, reader slots and reaping).
 *
 * Tests drive lock.c directly on hand-built rp_env structs (no data file);
 * other processes are fork()ed children that open their own env.  Exit
 * status: 0 when every test passed.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- harness ------------------------------------------------------------ */

#define FAILF(...) do { fprintf(stderr, "%s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); return 1; } while (0)
#define CHECK(c) do { if (!(c)) FAILF("CHECK failed: %s", #c); } while (0)
/* Expect RP_OK. */
#define E(expr) do { int rc_ = (expr); if (rc_ != RP_OK) \
    FAILF("%s: %s (%d)", #expr, rp_strerror(rc_), rc_); } while (0)
/* Expect a given code. */
#define EXPECT(expr, want) do { int rc_ = (expr); if (rc_ != (want)) \
    FAILF("%s: got %s (%d), want %s (%d)", #expr, rp_strerror(rc_), rc_, \
          rp_strerror(want), (int)(want)); } while (0)

static char dir[256];

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms) {
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static rp_env *env_new(const char *name) {
    rp_env *env = calloc(1, sizeof *env);
    if (env == NULL) return NULL;
    char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    env->path = strdup(buf);
    snprintf(buf, sizeof buf, "%s/%s.lock", dir, name);
    env->lock_path = strdup(buf);
    env->fd = -1;
    env->lock_fd = -1;
    return env;
}

static void env_free(rp_env *env) {
    if (env == NULL) return;
    rp_lock_close(env);
    free(env->path);
    free(env->lock_path);
    free(env);
}

static rp_roots roots_of(uint64_t v) {
    rp_roots r = { v, 100 + v, 200 + v, v, 300 + v, v, 400 + v };
    return r;
}

/* Open name as the first opener and make it ready at version v. */
static int open_ready(rp_env **out, const char *name, unsigned readers, uint64_t v) {
    rp_env *env = env_new(name);
    CHECK(env != NULL);
    int first = -1;
    E(rp_lock_open(env, readers, &first));
    CHECK(first == 1);
    rp_roots r = roots_of(v);
    E(rp_lock_ready(env, &r));
    *out = env;
    return 0;
}

/* Run fn in a child process; returns the child's pid.  The child exits with
 * fn's result. */
static pid_t spawn(int (*fn)(void *), void *arg) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) _exit(fn(arg));
    return pid;
}

/* Exit status of a child (128 + signal if killed); a child still running
 * after 20 s is killed and reported as 255, so a lost wake-up fails the test
 * instead of hanging it. */
static int reap_status(pid_t pid) {
    int st;
    uint64_t deadline = now_ns() + 20000000000ull;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) return -1;
        if (now_ns() > deadline) {
            fprintf(stderr, "child %d hangs: killed\n", (int)pid);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return 255;
        }
        sleep_ms(2);
    }
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}

/* Parent/child handshake over a pipe pair. */
typedef struct chan { int up[2], down[2]; } chan;
static int chan_init(chan *c) { return pipe(c->up) || pipe(c->down) ? -1 : 0; }
static void chan_close(chan *c) {
    close(c->up[0]); close(c->up[1]); close(c->down[0]); close(c->down[1]);
}
static int put_byte(int fd) { char b = 1; return write(fd, &b, 1) == 1 ? 0 : -1; }
static int get_byte(int fd) {
    char b;
    ssize_t n;
    do n = read(fd, &b, 1); while (n < 0 && errno == EINTR);
    return n == 1 ? 0 : -1;
}

/* Send / receive a CLOCK_MONOTONIC timestamp (system-wide clock). */
static int put_time(int fd, uint64_t t) { return write(fd, &t, sizeof t) == sizeof t ? 0 : -1; }
static uint64_t get_time(int fd) {
    uint64_t t = 0;
    ssize_t n;
    do n = read(fd, &t, sizeof t); while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof t ? t : 0;
}

static int read_file(const char *path, uint8_t **buf, size_t *len) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    struct stat sb;
    fstat(fd, &sb);
    *len = (size_t)sb.st_size;
    *buf = malloc(*len + 1);
    ssize_t n = pread(fd, *buf, *len, 0);
    close(fd);
    return n == (ssize_t)*len ? 0 : -1;
}

static int hold_shared(int fd) {
    struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
    return fcntl(fd, F_OFD_SETLK, &fl);
}

/* ---- first opener, second opener ----------------------------------------- */

static int child_second_opener(void *arg) {
    chan *c = arg;
    rp_env *env = env_new("t1");
    int first = -1;
    uint64_t t0 = now_ns();
    put_time(c->up[1], t0);
    E(rp_lock_open(env, 0, &first));
    uint64_t waited = now_ns() - t0;
    CHECK(first == 0);
    /* It had to wait for the initialiser's rp_lock_ready, which comes
     * 100 ms after the parent received t0. */
    CHECK(waited >= 100 * 1000000ull);
    CHECK(rp_version_load(env) == 7);
    CHECK(env->lk->max_readers == 5);
    CHECK(env->lk->ready == 1);
    rp_roots r;
    E(rp_ring_read(env, 7, &r));
    CHECK(r.cat_pgno == 207 && r.free_len == 407);
    env_free(env);
    return 0;
}

static int test_first_and_second(void) {
    rp_env *env = env_new("t1");
    int first = -1;
    E(rp_lock_open(env, 5, &first));
    CHECK(first == 1);
    CHECK(memcmp(env->lk->magic, RP_LOCK_MAGIC, 8) == 0);
    CHECK(env->lk->layout == RP_LOCK_LAYOUT && env->lk->abi == RP_LOCK_ABI);
    CHECK(env->lk->max_readers == 5 && env->lk->ready == 0);
    CHECK(env->lk_size == RP_LOCK_SLOTS_OFF + 5 * RP_LOCK_SLOT_SIZE);
    CHECK(env->pid == getpid() && env->start_time != 0);
    struct stat sb;
    CHECK(stat(env->lock_path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
    chan c;
    CHECK(chan_init(&c) == 0);
    pid_t kid = spawn(child_second_opener, &c);
    CHECK(get_time(c.up[0]) != 0);
    sleep_ms(100);                      /* the child blocks meanwhile */
    rp_roots r = roots_of(7);
    E(rp_lock_ready(env, &r));
    CHECK(reap_status(kid) == 0);
    chan_close(&c);
    /* A third opener in this process (a second env on the path). */
    rp_env *e2 = env_new("t1");
    E(rp_lock_open(e2, 99, &first));
    CHECK(first == 0 && e2->lk->max_readers == 5);   /* file keeps its size */
    CHECK(rp_version_load(e2) == 7);
    env_free(e2);                       /* must not drop env's OFD lock */
    rp_env *e3 = env_new("t1");
    E(rp_lock_open(e3, 0, &first));
    CHECK(first == 0);
    env_free(e3);
    uint64_t nonce = env->lk->nonce;
    env_free(env);
    /* Nobody has it open now: the next opener rebuilds it. */
    env = env_new("t1");
    E(rp_lock_open(env, 3, &first));
    CHECK(first == 1 && env->lk->max_readers == 3 && env->lk->nonce != nonce);
    CHECK(rp_version_load(env) == 0);
    env_free(env);
    /* Bad arguments. */
    env = env_new("t1");
    EXPECT(rp_lock_open(env, 1u << 30, &first), RP_INVALID);
    free(env->path); free(env->lock_path); free(env);
    return 0;
}

/* ---- foreign and incompatible lock files ---------------------------------- */

struct foreign_arg { const char *path; int kind; chan *c; };

/* Write a lock file of some foreign kind, hold it open with a shared OFD lock
 * (as a live process of another build would), until told to stop. */
static int child_foreign_holder(void *p) {
    struct foreign_arg *a = p;
    int fd = open(a->path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    rp_lock_hdr h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, RP_LOCK_MAGIC, 8);
    h.layout = RP_LOCK_LAYOUT;
    h.abi = RP_LOCK_ABI;
    h.max_readers = 4;
    h.ready = 1;
    size_t len = sizeof h + 4 * RP_LOCK_SLOT_SIZE;
    if (a->kind == 0) h.layout = RP_LOCK_LAYOUT + 1;     /* newer layout  */
    if (a->kind == 1) h.abi ^= 0x100;                    /* other ABI     */
    if (a->kind == 2) memcpy(h.magic, "garbage!", 8);    /* not ours      */
    if (a->kind == 3) len = 100;                         /* truncated     */
    uint8_t *buf = calloc(1, len);
    memcpy(buf, &h, len < sizeof h ? len : sizeof h);
    CHECK(pwrite(fd, buf, len, 0) == (ssize_t)len);
    free(buf);
    CHECK(hold_shared(fd) == 0);
    put_byte(a->c->up[1]);
    get_byte(a->c->down[0]);
    close(fd);
    return 0;
}

static int test_foreign(void) {
    for (int kind = 0; kind < 4; kind++) {
        rp_env *env = env_new("t2");
        chan c;
        CHECK(chan_init(&c) == 0);
        struct foreign_arg a = { env->lock_path, kind, &c };
        pid_t kid = spawn(child_foreign_holder, &a);
        CHECK(get_byte(c.up[0]) == 0);
        uint8_t *before, *after;
        size_t blen, alen;
        CHECK(read_file(env->lock_path, &before, &blen) == 0);
        int first = -1;
        uint64_t t0 = now_ns();
        EXPECT(rp_lock_open(env, 0, &first), RP_INCOMPATIBLE_LOCK);
        uint64_t took = now_ns() - t0;
        CHECK(env->lk == NULL && env->lock_fd == -1);
        /* A recognised foreign build is refused at once; garbage after the
         * bounded retries (a dead initialiser could have left it). */
        if (kind < 2) CHECK(took < 100 * 1000000ull);
        CHECK(took < 5000 * 1000000ull);
        CHECK(read_file(env->lock_path, &after, &alen) == 0);
        CHECK(alen == blen && memcmp(before, after, blen) == 0);   /* untouched */
        free(before);
        free(after);
        put_byte(c.down[1]);
        CHECK(reap_status(kid) == 0);
        chan_close(&c);
        /* Held by nobody now: rebuilt by the next opener. */
        E(rp_lock_open(env, 2, &first));
        CHECK(first == 1 && env->lk->layout == RP_LOCK_LAYOUT &&
              env->lk->max_readers == 2);
        env_free(env);
    }
    return 0;
}

/* ---- a dead initialiser ------------------------------------------------ */

static int child_dying_initialiser(void *p) {
    chan *c = p;
    rp_env *env = env_new("t3");
    int first = -1;
    E(rp_lock_open(env, 4, &first));
    CHECK(first == 1);
    put_time(c->up[1], now_ns());
    sleep_ms(150);
    _exit(0);                           /* dies with ready == 0 */
}

static int test_dead_initialiser(void) {
    chan c;
    CHECK(chan_init(&c) == 0);
    pid_t kid = spawn(child_dying_initialiser, &c);
    uint64_t t0 = get_time(c.up[0]);
    CHECK(t0 != 0);
    rp_env *env = env_new("t3");
    int first = -1;
    E(rp_lock_open(env, 6, &first));   /* waits on the child, then rebuilds */
    CHECK(now_ns() - t0 >= 150 * 1000000ull);   /* not before it died */
    CHECK(first == 1 && env->lk->max_readers == 6 && env->lk->ready == 0);
    CHECK(reap_status(kid) == 0);
    chan_close(&c);
    rp_roots r = roots_of(3);
    E(rp_lock_ready(env, &r));
    CHECK(env->lk->ready == 1 && rp_version_load(env) == 3);
    env_free(env);

    /* A ready == 0 file left on disk with nobody holding it: rebuilt. */
    env = env_new("t3");
    E(rp_lock_open(env, 4, &first));
    CHECK(first == 1);
    /* Simulate a crash by closing without ready. */
    env_free(env);
    env = env_new("t3");
    E(rp_lock_open(env, 4, &first));
    CHECK(first == 1);
    env_free(env);
    return 0;
}

/* ---- writer mutex -------------------------------------------------------- */

static int child_lock_and_die(void *p) {
    int how = *(int *)p;
    rp_env *env = env_new("t4");
    int first = -1, died = -1;
    E(rp_lock_open(env, 0, &first));
    CHECK(first == 0);
    E(rp_wlock(env, &died));
    CHECK(died == 0);
    if (how == 0) _exit(0);
    kill(getpid(), SIGKILL);
    return 1;
}

static void *thread_wlock(void *p) {
    rp_env *env = p;
    int died = -1;
    intptr_t rc = rp_wlock(env, &died);
    if (rc == RP_OK) rp_wunlock(env);
    return (void *)rc;
}

static void *thread_wlock_timed(void *p) {
    rp_env *env = p;
    int died = -1;
    intptr_t rc = rp_wlock_timed(env, 20, &died);
    if (rc == RP_OK) rp_wunlock(env);
    return (void *)rc;
}

static int test_writer_mutex_timed(void) {
    rp_env *env;
    if (open_ready(&env, "t4", 0, 1)) return 1;
    int died = -1;
    pthread_t t;
    void *res;
    /* Held by this thread: another thread gives up with RP_TIMEOUT, holding nothing. */
    E(rp_wlock_timed(env, 0, &died));
    CHECK(died == 0);
    CHECK(pthread_create(&t, NULL, thread_wlock_timed, env) == 0);
    CHECK(pthread_join(t, &res) == 0 && (intptr_t)res == RP_TIMEOUT);
    CHECK(env->lk->writer_tid != 0);
    rp_wunlock(env);
    /* Free: a timed acquire takes it (and a zero timeout is "only if free now"). */
    CHECK(pthread_create(&t, NULL, thread_wlock_timed, env) == 0);
    CHECK(pthread_join(t, &res) == 0 && (intptr_t)res == RP_OK);
    E(rp_wlock_timed(env, 0, &died));
    rp_wunlock(env);
    /* The owner died holding it: the timed acquire repairs like the untimed one. */
    int how = 1;
    pid_t kid = spawn(child_lock_and_die, &how);
    CHECK(reap_status(kid) == 128 + SIGKILL);
    E(rp_wlock_timed(env, 1000, &died));
    CHECK(died == 1);
    rp_wlock_consistent(env);
    rp_wunlock(env);
    CHECK(strcmp(rp_strerror(RP_TIMEOUT), "") != 0);
    env_free(env);
    return 0;
}

static int test_writer_mutex(void) {
    rp_env *env;
    if (open_ready(&env, "t4", 0, 1)) return 1;
    int died = -1;
    E(rp_wlock(env, &died));
    CHECK(died == 0);
    CHECK(env->lk->writer_tid != 0);
    EXPECT(rp_wlock(env, &died), RP_TXN_ACTIVE);        /* same thread again */
    rp_wunlock(env);
    CHECK(env->lk->writer_tid == 0);
    for (int how = 0; how < 2; how++) {
        pid_t kid = spawn(child_lock_and_die, &how);
        CHECK(reap_status(kid) == (how == 0 ? 0 : 128 + SIGKILL));
        E(rp_wlock(env, &died));
        CHECK(died == 1);               /* the owner died: we repair */
        rp_wlock_consistent(env);
        rp_wunlock(env);
        E(rp_wlock(env, &died));
        CHECK(died == 0);
        rp_wunlock(env);
    }
    /* Another thread of this process can take it when free. */
    pthread_t t;
    void *res;
    CHECK(pthread_create(&t, NULL, thread_wlock, env) == 0);
    CHECK(pthread_join(t, &res) == 0 && (intptr_t)res == RP_OK);
    env_free(env);
    return 0;
}

/* ---- version counter, futex, interrupt ------------------------------------- */

struct childwait { uint64_t since, want; int64_t timeout; };
static int child_waiter(void *p) {
    struct childwait *w = p;
    rp_env *env = env_new("t5");
    int first = -1;
    E(rp_lock_open(env, 0, &first));
    CHECK(first == 0);
    uint64_t out = 0;
    CHECK(rp_version_load(env) == w->since);
    E(rp_lock_wait(env, w->since, w->timeout, &out));
    CHECK(out == w->want);
    env_free(env);
    return 0;
}

struct waitarg { rp_env *env; uint64_t since; int64_t timeout; int rc; uint64_t out; };
static void *thread_wait(void *p) {
    struct waitarg *a = p;
    a->rc = rp_lock_wait(a->env, a->since, a->timeout, &a->out);
    return NULL;
}

static int test_futex(void) {
    rp_env *env;
    if (open_ready(&env, "t5", 0, 10)) return 1;
    CHECK(rp_version_load(env) == 10);
    uint64_t out = 0;
    /* Already changed: immediate. */
    E(rp_lock_wait(env, 9, -1, &out));
    CHECK(out == 10);
    /* Timeout 0: a poll. */
    E(rp_lock_wait(env, 10, 0, &out));
    CHECK(out == 10);
    /* Timeout returns since, after the timeout. */
    uint64_t t0 = now_ns();
    E(rp_lock_wait(env, 10, 50000000, &out));
    uint64_t took = now_ns() - t0;
    CHECK(out == 10 && took >= 50000000ull && took < 2000000000ull);

    /* Cross-process: the child waits (bounded, then forever), we publish. */
    struct childwait cw = { 10, 11, 5000000000ll };
    pid_t kid = spawn(child_waiter, &cw);
    sleep_ms(100);
    rp_ring_publish(env, &(rp_roots){ 11, 1, 1, 1, 1, 1, 1 });
    rp_version_publish(env, 11);
    CHECK(reap_status(kid) == 0);
    CHECK(rp_version_load(env) == 11);
    CHECK(env->lk->waiters == 0);
    cw = (struct childwait){ 11, 12, -1 };
    kid = spawn(child_waiter, &cw);
    sleep_ms(100);
    rp_version_publish(env, 12);
    CHECK(reap_status(kid) == 0);
    atomic_store(&env->lk->version, 11);     /* rewind for the next part */

    /* Interrupt: this env's waiter returns RP_CLOSED; another env's waiter
     * is not disturbed and still sees the next commit. */
    rp_env *e2 = env_new("t5");
    int first;
    E(rp_lock_open(e2, 0, &first));
    struct waitarg a = { env, 11, -1, -1, 0 }, b = { e2, 11, -1, -1, 0 };
    pthread_t ta, tb;
    CHECK(pthread_create(&ta, NULL, thread_wait, &a) == 0);
    CHECK(pthread_create(&tb, NULL, thread_wait, &b) == 0);
    sleep_ms(50);
    rp_lock_interrupt(env);
    CHECK(pthread_join(ta, NULL) == 0);
    CHECK(a.rc == RP_CLOSED && a.out == 11);
    sleep_ms(20);
    CHECK(b.rc == -1);                  /* still waiting */
    rp_version_publish(env, 12);
    CHECK(pthread_join(tb, NULL) == 0);
    CHECK(b.rc == RP_OK && b.out == 12);
    /* Later waits on the interrupted env return RP_CLOSED at once. */
    EXPECT(rp_lock_wait(env, 12, -1, &out), RP_CLOSED);
    env_free(e2);
    env_free(env);
    return 0;
}

/* ---- meta ring ------------------------------------------------------------ */

static int test_ring(void) {
    rp_env *env;
    if (open_ready(&env, "t6", 0, 1)) return 1;
    rp_roots r;
    E(rp_ring_read(env, 1, &r));
    CHECK(r.txnid == 1 && r.pages_used == 101 && r.cat_pgno == 201 &&
          r.cat_txnid == 1 && r.free_pgno == 301 && r.free_txnid == 1 &&
          r.free_len == 401);
    for (uint64_t v = 2; v <= 40; v++) {
        rp_roots x = roots_of(v);
        rp_ring_publish(env, &x);
        rp_version_publish(env, v);
    }
    E(rp_ring_read(env, 40, &r));
    CHECK(r.txnid == 40 && r.free_len == 440);
    E(rp_ring_read(env, 25, &r));       /* oldest still in the ring */
    CHECK(r.pages_used == 125);
    EXPECT(rp_ring_read(env, 24, &r), RP_NOTFOUND);   /* overwritten by 40 */
    EXPECT(rp_ring_read(env, 41, &r), RP_NOTFOUND);   /* not yet */
    EXPECT(rp_ring_read(env, 0, &r), RP_NOTFOUND);
    /* An entry being written (odd seq) is not returned. */
    atomic_store(&env->lk->ring[40 % RP_RING].seq, 2 * 40 - 1);
    EXPECT(rp_ring_read(env, 40, &r), RP_NOTFOUND);
    atomic_store(&env->lk->ring[40 % RP_RING].seq, 2 * 40);
    E(rp_ring_read(env, 40, &r));
    env_free(env);
    return 0;
}

/* Concurrent seqlock: a thread publishes quickly while readers check that
 * every entry they get is internally consistent. */
struct ringarg { rp_env *env; _Atomic int stop; _Atomic uint64_t bad, good; };
static void *thread_ring_reader(void *p) {
    struct ringarg *a = p;
    while (!atomic_load(&a->stop)) {
        /* The entry the next publish overwrites (v + 1 - RP_RING) is where
         * a torn read would show; also read a few others. */
        uint64_t v = rp_version_load(a->env);
        for (uint64_t w = v > RP_RING ? v + 1 - RP_RING : 1; w <= v + 1;
             w += (w > v + 3 - RP_RING ? 3 : 1)) {
            rp_roots r;
            if (rp_ring_read(a->env, w, &r) != RP_OK) continue;
            rp_roots x = roots_of(w);
            if (memcmp(&r, &x, sizeof r) != 0) a->bad++;
            else a->good++;
        }
    }
    return NULL;
}

static int test_ring_concurrent(void) {
    rp_env *env;
    if (open_ready(&env, "t6b", 0, 1)) return 1;
    struct ringarg a = { env, 0, 0, 0 };
    pthread_t t;
    CHECK(pthread_create(&t, NULL, thread_ring_reader, &a) == 0);
    /* Publish until the reader has checked plenty of entries (it may get
     * the CPU late on a busy machine), for at least 100k versions. */
    uint64_t t0 = now_ns();
    for (uint64_t v = 2; v < 100000 || (atomic_load(&a.good) < 100000 &&
                                        now_ns() - t0 < 10000000000ull); v++) {
        rp_roots x = roots_of(v);
        rp_ring_publish(env, &x);
        rp_version_publish(env, v);
    }
    atomic_store(&a.stop, 1);
    CHECK(pthread_join(t, NULL) == 0);
    if (a.bad != 0 || a.good == 0) FAILF("seqlock: %llu torn reads, %llu good", (unsigned long long)a.bad, (unsigned long long)a.good);
    env_free(env);
    return 0;
}

/* ---- reader slots ------------------------------------------------------- */

static int test_slots(void) {
    rp_env *env;
    if (open_ready(&env, "t7", 3, 5)) return 1;
    rp_slot *s[4];
    E(rp_slot_get(env, &s[0]));
    E(rp_slot_get(env, &s[1]));
    E(rp_slot_get(env, &s[2]));
    EXPECT(rp_slot_get(env, &s[3]), RP_READERS_FULL);
    for (int i = 0; i < 3; i++) {
        CHECK(s[i]->pid == (uint32_t)getpid());
        CHECK(s[i]->start_time == env->start_time && s[i]->tid != 0);
        CHECK(s[i]->version == 0);
    }
    CHECK(s[0] != s[1] && s[1] != s[2] && s[0] != s[2]);
    /* Snapshot: pins the latest and returns its roots. */
    rp_roots r;
    E(rp_snapshot_begin(env, s[1], &r));
    CHECK(s[1]->version == 5 && r.txnid == 5 && r.cat_pgno == 205);
    unsigned active = 0;
    CHECK(rp_oldest_reader(env, 5, &active) == 5 && active == 1);
    rp_roots x = roots_of(6);
    rp_ring_publish(env, &x);
    rp_version_publish(env, 6);
    CHECK(rp_oldest_reader(env, 6, &active) == 5 && active == 2);
    E(rp_snapshot_begin(env, s[2], &r));
    CHECK(r.txnid == 6);
    CHECK(rp_oldest_reader(env, 6, &active) == 5 && active == 2);
    rp_snapshot_end(s[1]);
    CHECK(s[1]->version == 0);
    CHECK(rp_oldest_reader(env, 6, &active) == 6 && active == 1);
    rp_snapshot_end(s[2]);
    /* The pool: a put slot is handed out again, without a table scan. */
    rp_slot_put(env, s[1]);
    CHECK(env->pool_len == 1);
    E(rp_slot_get(env, &s[3]));
    CHECK(s[3] == s[1] && env->pool_len == 0);
    rp_reader_info info[8];
    unsigned n = 0;
    E(rp_readers_list(env, info, 8, &n));
    CHECK(n == 3);
    for (unsigned i = 0; i < n; i++)
        CHECK(info[i].pid == getpid() && info[i].alive == 1 && info[i].version == 0);
    E(rp_readers_list(env, info, 2, &n));
    CHECK(n == 2);
    /* A slot that is not ready (version 0 never published) is refused:
     * the lock file's shared state is damaged, so it is abandoned (the next
     * first opener rebuilds it).  Set ready back to go on testing. */
    atomic_store(&env->lk->version, 0);
    EXPECT(rp_snapshot_begin(env, s[0], &r), RP_LOCK_CHANGED);
    CHECK(s[0]->version == 0);
    CHECK(atomic_load(&env->lk->ready) == RP_LOCK_ABANDONED);
    atomic_store(&env->lk->ready, 1);
    /* Version whose ring entry is gone and no newer version: likewise. */
    atomic_store(&env->lk->version, 1000);
    EXPECT(rp_snapshot_begin(env, s[0], &r), RP_LOCK_CHANGED);
    atomic_store(&env->lk->ready, 1);
    atomic_store(&env->lk->version, 6);
    for (int i = 0; i < 3; i++) rp_slot_put(env, i == 1 ? s[3] : s[i]);
    /* A second env sees a full table until the first closes. */
    rp_env *e2 = env_new("t7");
    int first;
    E(rp_lock_open(e2, 0, &first));
    EXPECT(rp_slot_get(e2, &s[0]), RP_READERS_FULL);   /* ours are alive */
    unsigned char *map = (unsigned char *)e2->lk;
    env_free(env);                      /* releases its 3 slots */
    for (int i = 0; i < 3; i++) {
        rp_slot *sl = (rp_slot *)(map + RP_LOCK_SLOTS_OFF + i * RP_LOCK_SLOT_SIZE);
        CHECK(sl->pid == 0 && sl->start_time == 0);
    }
    E(rp_slot_get(e2, &s[0]));
    rp_slot_put(e2, s[0]);
    env_free(e2);
    return 0;
}

static int test_oldest(void) {
    rp_env *env;
    if (open_ready(&env, "t8", 8, 10)) return 1;
    unsigned active = 0;
    CHECK(rp_oldest_reader(env, 10, &active) == 10 && active == 1);
    /* Hand-filled slots of (fake) owners. */
    uint32_t pids[] = { 1, 1, 1, 1, 0 };
    uint64_t vers[] = { 5, 5, 7, 10, 3 };   /* the last is a free slot */
    for (int i = 0; i < 5; i++) {
        env->slots[i].pid = pids[i];
        env->slots[i].version = vers[i];
    }
    env->slots[6].pid = 1;                 /* claimed, idle */
    CHECK(rp_oldest_reader(env, 10, &active) == 5 && active == 3);
    CHECK(rp_oldest_reader(env, 11, &active) == 5 && active == 4);
    CHECK(rp_oldest_reader(env, 11, NULL) == 5);
    for (int i = 0; i < 8; i++) env->slots[i].pid = 0;
    CHECK(rp_oldest_reader(env, 11, &active) == 11 && active == 1);
    env_free(env);
    return 0;
}

/* ---- reaping ----------------------------------------------------------- */

static int child_pin(void *p) {
    chan *c = p;
    rp_env *env = env_new("t9");
    int first = -1;
    E(rp_lock_open(env, 0, &first));
    rp_slot *s;
    E(rp_slot_get(env, &s));
    rp_roots r;
    E(rp_snapshot_begin(env, s, &r));
    rp_slot *idle;
    E(rp_slot_get(env, &idle));         /* a second, idle slot */
    put_byte(c->up[1]);
    for (;;) pause();                   /* until SIGKILLed */
}

static unsigned claimed(rp_env *env) {
    unsigned n = 0;
    for (unsigned i = 0; i < env->lk->max_readers; i++)
        n += env->slots[i].pid != 0;
    return n;
}

static int test_reap(void) {
    rp_env *env;
    if (open_ready(&env, "t9", 4, 2)) return 1;
    unsigned reaped = 99;
    E(rp_reap(env, 1, &reaped));
    CHECK(reaped == 0);

    /* 1. killed and waited for: gone (ESRCH); a cheap reap frees only the
     *    pinning slot, a full one the idle one too. */
    chan c;
    CHECK(chan_init(&c) == 0);
    pid_t kid = spawn(child_pin, &c);
    CHECK(get_byte(c.up[0]) == 0);
    CHECK(claimed(env) == 2);
    unsigned active;
    CHECK(rp_oldest_reader(env, 3, &active) == 2 && active == 2);
    rp_reader_info info[4];
    unsigned n;
    E(rp_readers_list(env, info, 4, &n));
    CHECK(n == 2 && info[0].alive && info[1].alive && info[0].pid == kid);
    E(rp_reap(env, 1, &reaped));
    CHECK(reaped == 0);                 /* alive: untouched */
    kill(kid, SIGKILL);
    CHECK(reap_status(kid) == 128 + SIGKILL);
    E(rp_readers_list(env, info, 4, &n));
    CHECK(n == 2 && !info[0].alive && !info[1].alive);
    E(rp_reap(env, 0, &reaped));        /* last full reap was just now */
    CHECK(reaped == 1 && claimed(env) == 1);
    CHECK(rp_oldest_reader(env, 3, &active) == 3 && active == 1);
    E(rp_reap(env, 1, &reaped));
    CHECK(reaped == 1 && claimed(env) == 0);
    for (unsigned i = 0; i < 4; i++) CHECK(env->slots[i].start_time == 0);
    chan_close(&c);

    /* 2. killed, not waited for (a zombie): kill(pid, 0) still succeeds,
     *    the full reap sees state Z. */
    CHECK(chan_init(&c) == 0);
    kid = spawn(child_pin, &c);
    CHECK(get_byte(c.up[0]) == 0);
    kill(kid, SIGKILL);
    for (int i = 0; i < 200; i++) {     /* until it is a zombie */
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)kid, &si, WEXITED | WNOWAIT) == 0 && si.si_pid == kid) break;
        sleep_ms(5);
    }
    CHECK(kill(kid, 0) == 0);           /* a zombie still "exists" */
    E(rp_reap(env, 1, &reaped));
    CHECK(reaped == 2 && claimed(env) == 0);
    CHECK(reap_status(kid) == 128 + SIGKILL);
    chan_close(&c);

    /* 3. pid reuse: a slot says pid P (alive) but another start time. */
    pid_t me = getppid();               /* a live process that is not us */
    rp_slot *s = &env->slots[2];
    s->pid = (uint32_t)me;
    s->start_time = rp_proc_start_time(me);
    s->version = 2;
    CHECK(s->start_time != 0);
    E(rp_reap(env, 1, &reaped));
    CHECK(reaped == 0 && s->pid == (uint32_t)me);          /* genuine owner */
    s->start_time += 12345;              /* the owner died, pid reused */
    E(rp_reap(env, 0, &reaped));         /* cheap: kill() says alive */
    CHECK(reaped == 0 && s->pid == (uint32_t)me);
    E(rp_reap(env, 1, &reaped));
    CHECK(reaped == 1 && s->pid == 0 && s->start_time == 0);
    /* A slot being claimed (pid set, start time not yet): only kill()
     * decides, so a live claimer is never reaped. */
    s->pid = (uint32_t)me;
    s->start_time = 0;
    E(rp_reap(env, 1, &reaped));
    CHECK(reaped == 0 && s->pid == (uint32_t)me);
    s->pid = 0;
    /* A cheap reap becomes a full one when the last was long ago. */
    s->pid = (uint32_t)me;
    s->start_time = rp_proc_start_time(me) + 1;
    s->version = 0;
    atomic_store(&env->lk->last_reap_ns, 0);
    E(rp_reap(env, 0, &reaped));
    CHECK(reaped == 1 && s->pid == 0);
    /* Own process's slots are never reaped, even with a wrong start time. */
    s->pid = (uint32_t)getpid();
    s->start_time = 1;
    E(rp_reap(env, 1, &reaped));
    CHECK(reaped == 0 && s->pid == (uint32_t)getpid());
    s->pid = 0;
    s->start_time = 0;

    /* 4. rp_slot_get reaps by itself when the table is full. */
    rp_slot *mine[4];
    for (int i = 0; i < 3; i++) {
        env->slots[i].pid = 0x7ffffff0u + (uint32_t)i;     /* no such pids */
        env->slots[i].start_time = 99;
    }
    E(rp_slot_get(env, &mine[0]));      /* the 4th slot is free */
    E(rp_slot_get(env, &mine[1]));      /* full: reaps the three */
    CHECK(claimed(env) == 2);
    rp_slot_put(env, mine[0]);
    rp_slot_put(env, mine[1]);
    env_free(env);
    return 0;
}

/* ---- /proc parsing ------------------------------------------------------- */

static int child_odd_name(void *p) {
    chan *c = p;
    prctl(PR_SET_NAME, "a) b (c) 9 9", 0, 0, 0);
    put_byte(c->up[1]);
    get_byte(c->down[0]);
    return 0;
}

static int test_proc(void) {
    uint64_t st = rp_proc_start_time(getpid());
    CHECK(st != 0);
    CHECK(rp_proc_start_time(getppid()) <= st);
    CHECK(rp_proc_start_time(0) == 0);
    CHECK(rp_proc_start_time(0x7ffffff0) == 0);
    chan c;
    CHECK(chan_init(&c) == 0);
    pid_t kid = spawn(child_odd_name, &c);
    CHECK(get_byte(c.up[0]) == 0);
    uint64_t kst = rp_proc_start_time(kid);
    CHECK(kst >= st && kst < st + 100000);
    put_byte(c.down[1]);
    CHECK(reap_status(kid) == 0);
    chan_close(&c);
    return 0;
}

/* ---- fork detection ------------------------------------------------------ */

static int child_forked_use(void *p) {
    rp_env *env = p;
    CHECK(rp_env_usable(env) == RP_FORKED);
    rp_lock_close(env);                 /* must not free the parent's slots */
    return 0;
}

static int test_fork(void) {
    rp_env *env;
    if (open_ready(&env, "t10", 2, 1)) return 1;
    CHECK(rp_env_usable(env) == RP_OK);
    rp_slot *s;
    E(rp_slot_get(env, &s));
    rp_slot_put(env, s);                /* idle, in the pool */
    pid_t kid = spawn(child_forked_use, env);
    CHECK(reap_status(kid) == 0);
    CHECK(s->pid == (uint32_t)getpid());
    CHECK(rp_env_usable(env) == RP_OK);
    env_free(env);
    return 0;
}

/* ---- driver ------------------------------------------------------------- */

static void cleanup_dir(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(void) {
    /* ctest gives each test a scratch directory in RP_TEST_DIR. */
    const char *tmp = getenv("RP_TEST_DIR");
    if (tmp == NULL || *tmp == '\0') tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/rp_test_lock.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    struct { const char *name; int (*fn)(void); } tests[] = {
        { "first_and_second", test_first_and_second },
        { "foreign", test_foreign },
        { "dead_initialiser", test_dead_initialiser },
        { "writer_mutex", test_writer_mutex },
        { "writer_mutex_timed", test_writer_mutex_timed },
        { "futex", test_futex },
        { "ring", test_ring },
        { "ring_concurrent", test_ring_concurrent },
        { "slots", test_slots },
        { "oldest", test_oldest },
        { "reap", test_reap },
        { "proc", test_proc },
        { "fork", test_fork },
    };
    int failed = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        uint64_t t0 = now_ns();
        int rc = tests[i].fn();
        printf("%-20s %s (%.1f ms)\n", tests[i].name, rc ? "FAIL" : "ok",
               (double)(now_ns() - t0) / 1e6);
        fflush(stdout);
        failed += rc != 0;
    }
    cleanup_dir();
    printf("%d failed\n", failed);
    return failed != 0;
}
