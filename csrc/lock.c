/*
 * lock.c -- the lock file <path>.lock: shared memory for every process that
 * has the data file open.  Layout: format.h ("THE LOCK FILE"), structs in
 * internal.h.
 *
 * First-opener detection uses open-file-description (OFD) locks on byte 0:
 *   - an opener first tries a non-blocking EXCLUSIVE lock; if granted, no
 *     other process has the file in use, so it rebuilds the header (ready =
 *     0), lets the caller recover the data file, then publishes the current
 *     version, sets ready = 1 and downgrades to SHARED (rp_lock_ready);
 *   - otherwise it waits for a SHARED lock, which is granted once the
 *     initialiser downgrades (or dies), and validates the header.
 * OFD locks belong to the open file description, not to the process, so
 * closing some other descriptor of the same file in this process (a second
 * env on the same path, Python code peeking at the file) does not drop them,
 * as it would with classic POSIX record locks.
 *
 * Reader slots record their owner (pid + process start time), so slots of
 * dead processes -- including a dead process whose pid was reused -- are
 * reaped by whoever notices (writers, and any opener that finds the table
 * full).  Slot ownership protocol (why the reaper never clobbers a live
 * owner):
 *   - a free slot has pid 0 and start_time 0 (everyone who frees a slot
 *     zeroes start_time BEFORE releasing pid);
 *   - a claimer CASes pid 0 -> own pid, then stores start_time, tid and
 *     version 0.  Until then the slot shows pid != 0 with start_time 0,
 *     which the reaper reads as "owner unknown yet": only kill(pid, 0) may
 *     declare it dead;
 *   - a reaper CASes start_time (seen -> 0) and only if that succeeds CASes
 *     pid (seen -> 0).  It never stores version: a late reaper could
 *     otherwise zero the pin of a reader that claimed the slot meanwhile.
 *     A freed slot keeps its stale version, which nobody reads (scans skip
 *     pid == 0) until the next claimer zeroes it; between that claimer's
 *     CAS and its zeroing the stale version is counted as pinned, which is
 *     merely conservative (pages are kept a little longer).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <assert.h>

_Atomic unsigned rp_fork_generation;

/* Largest reader table we build or accept (1 MiB of slots per 16k). */
#define RP_MAX_READERS_LIMIT 65536u
/* Attempts of the open protocol before giving up on a lock file that stays
 * unusable (a dead initialiser raced by other openers, or garbage held open
 * by someone). */
#define RP_OPEN_ATTEMPTS 100
/* A non-forced reap is upgraded to a full one (start times, zombies) when
 * the last full reap is older than this. */
#define RP_REAP_INTERVAL_NS 1000000000ull

/* ---- small helpers ------------------------------------------------------ */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void on_fork_child(void) {
    atomic_fetch_add_explicit(&rp_fork_generation, 1, memory_order_relaxed);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void install_atfork(void) {
    /* Only fails with ENOMEM; then RP_FORKED detection is lost, nothing else. */
    (void)pthread_atfork(NULL, NULL, on_fork_child);
}

/* Thread id for diagnostics, cached per thread; the cache is keyed by fork
 * generation because the forked child's thread has a new tid. */
static _Thread_local uint32_t tls_tid;
static _Thread_local unsigned tls_tid_gen;
static uint32_t my_tid(void) {
    unsigned g = atomic_load_explicit(&rp_fork_generation, memory_order_relaxed) + 1;
    if (tls_tid_gen != g) {
        tls_tid = (uint32_t)syscall(SYS_gettid);
        tls_tid_gen = g;
    }
    return tls_tid;
}

/* Parse /proc/<pid>/stat: state (field 3) and start time (field 22).  comm
 * (field 2) may contain spaces and ')', so parse after the LAST ')'.
 * Returns 0 on success, -1 if the process is gone or the file unreadable. */
static int proc_stat(pid_t pid, char *state, uint64_t *start) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n;
    do n = read(fd, buf, sizeof buf - 1); while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL) return -1;
    p++;
    /* Tokens after ')': field 3 (state) is token 0, field 22 is token 19. */
    int field = 3;
    char st = 0;
    while (*p != '\0') {
        while (*p == ' ') p++;
        if (*p == '\0') break;
        if (field == 3) st = *p;
        if (field == 22) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(p, &end, 10);
            if (errno != 0 || end == p) return -1;
            *state = st;
            *start = (uint64_t)v;
            return 0;
        }
        while (*p != ' ' && *p != '\0') p++;
        field++;
    }
    return -1;
}

uint64_t rp_proc_start_time(pid_t pid) {
    char st;
    uint64_t start;
    if (pid <= 0 || proc_stat(pid, &st, &start) != 0) return 0;
    return start;
}

/* This process's start time, cached; the pid key makes a forked child
 * recompute its own. Benign race: threads compute the same value. */
static _Atomic pid_t self_pid_cached;
static _Atomic uint64_t self_start_cached;
static uint64_t self_start_time(pid_t me) {
    if (atomic_load_explicit(&self_pid_cached, memory_order_acquire) == me)
        return atomic_load_explicit(&self_start_cached, memory_order_relaxed);
    uint64_t st = rp_proc_start_time(me);
    atomic_store_explicit(&self_start_cached, st, memory_order_relaxed);
    atomic_store_explicit(&self_pid_cached, me, memory_order_release);
    return st;
}

/* Liveness of a slot owner as seen from here: 1 alive, 0 dead.  full = also
 * detect zombies and pid reuse (reads /proc). st is the slot's start time
 * (0 = not yet recorded by a claimer: only kill() may say dead). */
static int owner_alive(pid_t pid, uint64_t st, int full) {
    if (kill(pid, 0) == -1 && errno == ESRCH) return 0;
    if (!full) return 1;
    char state;
    uint64_t pst;
    if (proc_stat(pid, &state, &pst) != 0) {
        /* Vanished between kill() and the read: dead, if kill agrees. */
        return !(kill(pid, 0) == -1 && errno == ESRCH);
    }
    if (state == 'Z' || state == 'X') return 0;     /* killed, not yet waited */
    if (st != 0 && pst != 0 && pst != st) return 0;  /* pid reused            */
    return 1;
}

static int ofd_lock(int fd, short type, int wait) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    fl.l_pid = 0;                     /* required for OFD locks */
    for (;;) {
        if (fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl) == 0) return 0;
        if (errno != EINTR) return errno;
    }
}

static uint64_t random_nonce(void) {
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t)sizeof v && v != 0)
        return v;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, &v, sizeof v);
        close(fd);
        if (n == (ssize_t)sizeof v && v != 0) return v;
    }
    /* Last resort: distinct per (re)build is all the nonce promises. */
    return now_ns() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
}

static size_t lock_size_for(unsigned max_readers) {
    return (size_t)RP_LOCK_SLOTS_OFF + (size_t)max_readers * RP_LOCK_SLOT_SIZE;
}

/* 1 if fd is still the file at path (not unlinked or replaced since we
 * opened it: two lock files for one data file would mean two writer
 * mutexes). */
static int same_file(int fd, const char *path) {
    struct stat a, b;
    if (fstat(fd, &a) != 0 || stat(path, &b) != 0) return 0;
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static void backoff(unsigned attempt) {
    /* 0.1 .. ~2 ms, jittered so racing openers separate. */
    uint64_t r = now_ns() ^ ((uint64_t)getpid() * 0x9e3779b97f4a7c15ull);
    long ns = 100000 + (long)(r % (uint64_t)(200000 + 20000 * (attempt < 90 ? attempt : 90)));
    struct timespec ts = { 0, ns };
    nanosleep(&ts, NULL);
}

/* Rebuild the header while holding the exclusive lock on fd. */
static int lock_init(rp_env *env, int fd, unsigned max_readers) {
    size_t size = lock_size_for(max_readers);
    /* Truncate to 0 first so every byte, including stale slots, is zero. */
    if (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)size) != 0) return errno;
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) return errno;
    rp_lock_hdr *lk = m;
    memset(m, 0, size);
    memcpy(lk->magic, RP_LOCK_MAGIC, 8);
    lk->layout = RP_LOCK_LAYOUT;
    lk->abi = RP_LOCK_ABI;
    lk->max_readers = max_readers;
    lk->nonce = random_nonce();

    pthread_mutexattr_t ma;
    int rc = pthread_mutexattr_init(&ma);
    if (rc == 0) rc = pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    if (rc == 0) rc = pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    if (rc == 0) rc = pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ERRORCHECK);
    if (rc == 0) rc = pthread_mutex_init(&lk->wmutex.m, &ma);
    pthread_mutexattr_destroy(&ma);
    if (rc != 0) {
        munmap(m, size);
        return rc;
    }
    atomic_store_explicit(&lk->version, 0, memory_order_relaxed);
    atomic_store_explicit(&lk->ready, 0, memory_order_release);
    env->lk = lk;
    env->lk_size = size;
    env->slots = (rp_slot *)((uint8_t *)m + RP_LOCK_SLOTS_OFF);
    return RP_OK;
}

/* Validation result of an existing lock file. */
enum { V_OK, V_FOREIGN, V_GARBAGE, V_NOT_READY };

static int lock_validate(int fd, unsigned *max_readers, size_t *size) {
    struct stat sb;
    if (fstat(fd, &sb) != 0) return V_GARBAGE;
    if ((uint64_t)sb.st_size < RP_LOCK_SLOTS_OFF) return V_GARBAGE;
    uint8_t h[64];
    ssize_t n;
    do n = pread(fd, h, sizeof h, 0); while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof h) return V_GARBAGE;
    if (memcmp(h, RP_LOCK_MAGIC, 8) != 0) return V_GARBAGE;
    uint32_t layout, abi, mr, ready;
    memcpy(&layout, h + offsetof(rp_lock_hdr, layout), 4);
    memcpy(&abi, h + offsetof(rp_lock_hdr, abi), 4);
    memcpy(&mr, h + offsetof(rp_lock_hdr, max_readers), 4);
    memcpy(&ready, h + offsetof(rp_lock_hdr, ready), 4);
    /* Our magic but another layout or ABI: another realmpy build. */
    if (layout != RP_LOCK_LAYOUT || abi != RP_LOCK_ABI) return V_FOREIGN;
    if (ready != 1) return V_NOT_READY;
    if (mr == 0 || mr > RP_MAX_READERS_LIMIT) return V_GARBAGE;
    if ((uint64_t)sb.st_size != lock_size_for(mr)) return V_GARBAGE;
    *max_readers = mr;
    *size = lock_size_for(mr);
    return V_OK;
}

/* ---- open / ready / close ----------------------------------------------- */

int rp_lock_open(rp_env *env, unsigned max_readers, int *first) {
    assert(env != NULL && env->lock_path != NULL && first != NULL);
    if (env == NULL || env->lock_path == NULL || first == NULL) return RP_INVALID;
    env->lk = NULL;
    env->slots = NULL;
    env->lk_size = 0;
    env->lock_fd = -1;
    *first = 0;
    if (max_readers == 0) max_readers = RP_DEFAULT_READERS;
    if (max_readers > RP_MAX_READERS_LIMIT) return RP_INVALID;

    pthread_once(&atfork_once, install_atfork);
    env->fork_gen = atomic_load_explicit(&rp_fork_generation, memory_order_relaxed);
    env->pid = getpid();
    env->start_time = self_start_time(env->pid);

    int rc = pthread_mutex_init(&env->local, NULL);
    if (rc != 0) return rc;

    int last_bad = V_GARBAGE;
    for (unsigned attempt = 0; attempt < RP_OPEN_ATTEMPTS; attempt++) {
        if (attempt > 0) backoff(attempt);
        int fd = open(env->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0) {
            rc = errno;
            goto fail;
        }
        int excl = ofd_lock(fd, F_WRLCK, 0);
        if (excl != 0 && excl != EAGAIN && excl != EACCES) {
            close(fd);                 /* e.g. EINVAL: no OFD locks here */
            rc = excl;
            goto fail;
        }
        if (excl != 0) {
            /* Someone has it: wait until no initialiser holds it exclusive. */
            rc = ofd_lock(fd, F_RDLCK, 1);
            if (rc != 0) {
                close(fd);
                goto fail;
            }
            if (!same_file(fd, env->lock_path)) {  /* replaced meanwhile */
                close(fd);
                continue;
            }
            unsigned mr = 0;
            size_t size = 0;
            int v = lock_validate(fd, &mr, &size);
            if (v == V_OK) {
                void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                if (m == MAP_FAILED) {
                    rc = errno;
                    close(fd);
                    goto fail;
                }
                max_readers = mr;
                env->lk = m;
                env->lk_size = size;
                env->slots = (rp_slot *)((uint8_t *)m + RP_LOCK_SLOTS_OFF);
                env->lock_fd = fd;
                break;
            }
            /* Unusable header.  If we are now alone (the holders left, or the
             * initialiser died), the file is ours to rebuild: upgrade. */
            last_bad = v;
            if (ofd_lock(fd, F_WRLCK, 0) != 0) {
                close(fd);
                /* In use by another layout/ABI: refuse at once, untouched. */
                if (v == V_FOREIGN) {
                    rc = RP_INCOMPATIBLE_LOCK;
                    goto fail;
                }
                continue;              /* racing openers or a live builder */
            }
        }
        /* Exclusive: nobody else has the file in use. */
        if (!same_file(fd, env->lock_path)) {
            close(fd);
            continue;
        }
        rc = lock_init(env, fd, max_readers);
        if (rc != RP_OK) {
            close(fd);
            goto fail;
        }
        env->lock_fd = fd;
        *first = 1;
        break;
    }
    if (env->lk == NULL) {
        /* Persistent garbage or a never-ready file held open by others. */
        rc = last_bad == V_NOT_READY ? EAGAIN : RP_INCOMPATIBLE_LOCK;
        goto fail;
    }

    /* Every slot this env claims fits: an env never holds more than the
     * table, so rp_slot_put can never fail to push. */
    env->pool = calloc(max_readers, sizeof *env->pool);
    if (env->pool == NULL) {
        rc = ENOMEM;
        munmap(env->lk, env->lk_size);
        close(env->lock_fd);
        env->lk = NULL;
        env->slots = NULL;
        env->lock_fd = -1;
        *first = 0;
        goto fail;
    }
    env->pool_len = 0;
    env->pool_cap = max_readers;
    atomic_store_explicit(&env->interrupted, 0, memory_order_relaxed);
    return RP_OK;

fail:
    pthread_mutex_destroy(&env->local);
    return rc;
}

int rp_lock_ready(rp_env *env, const rp_roots *current) {
    assert(env != NULL && env->lk != NULL && current != NULL);
    if (env == NULL || env->lk == NULL || current == NULL) return RP_INVALID;
    /* Version 0 is "no snapshot" in a reader slot: versions start at 1. */
    if (current->txnid == 0) return RP_INVALID;
    rp_lock_hdr *lk = env->lk;
    rp_ring_publish(env, current);
    atomic_store_explicit(&lk->version, current->txnid, memory_order_seq_cst);
    atomic_store_explicit(&lk->ready, 1, memory_order_release);
    /* Atomic conversion exclusive -> shared: waiting openers proceed. */
    return ofd_lock(env->lock_fd, F_RDLCK, 0);
}

void rp_lock_close(rp_env *env) {
    if (env == NULL || env->lk == NULL) return;
    /* In a forked child the claimed slots (and env->local's state) belong to
     * the parent: leave them alone, only drop our mapping and descriptor. */
    int forked = getpid() != env->pid;
    if (!forked) {
        pthread_mutex_lock(&env->local);
        for (unsigned i = 0; i < env->pool_len; i++) {
            rp_slot *s = env->pool[i];
            atomic_store_explicit(&s->version, 0, memory_order_relaxed);
            atomic_store_explicit(&s->tid, 0, memory_order_relaxed);
            /* start_time 0 before pid 0: free slots never show a stale
             * start time (see the protocol at the top). */
            atomic_store_explicit(&s->start_time, 0, memory_order_relaxed);
            atomic_store_explicit(&s->pid, 0, memory_order_release);
        }
        env->pool_len = 0;
        pthread_mutex_unlock(&env->local);
    }
    munmap(env->lk, env->lk_size);
    close(env->lock_fd);               /* drops the OFD lock */
    env->lk = NULL;
    env->slots = NULL;
    env->lk_size = 0;
    env->lock_fd = -1;
    free(env->pool);
    env->pool = NULL;
    env->pool_len = env->pool_cap = 0;
    if (!forked) pthread_mutex_destroy(&env->local);
}

/* ---- writer mutex ------------------------------------------------------- */

int rp_wlock(rp_env *env, int *owner_died) {
    return rp_wlock_timed(env, -1, owner_died);
}

int rp_wlock_timed(rp_env *env, int64_t timeout_ms, int *owner_died) {
    assert(env != NULL && env->lk != NULL && owner_died != NULL);
    *owner_died = 0;
    int rc;
    if (timeout_ms < 0) {
        rc = pthread_mutex_lock(&env->lk->wmutex.m);
    } else {
        /* pthread_mutex_timedlock takes a CLOCK_REALTIME deadline: a clock
         * step during the wait lengthens or shortens it, never breaks it. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)(timeout_ms / 1000);
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec += 1;
            until.tv_nsec -= 1000000000L;
        }
        rc = pthread_mutex_timedlock(&env->lk->wmutex.m, &until);
    }
    switch (rc) {
    case 0:
        break;
    case ETIMEDOUT:
        return RP_TIMEOUT;
    case EOWNERDEAD:
        /* We own it now; the caller repairs and calls rp_wlock_consistent. */
        *owner_died = 1;
        break;
    case EDEADLK:
        return RP_TXN_ACTIVE;          /* this thread already holds it */
    case ENOTRECOVERABLE:
        /* Only if an owner unlocked after EOWNERDEAD without making it
         * consistent; the engine never does that. */
        return RP_PANIC;
    default:
        return rc;
    }
    atomic_store_explicit(&env->lk->writer_tid, my_tid(), memory_order_relaxed);
    return RP_OK;
}

void rp_wlock_consistent(rp_env *env) {
    assert(env != NULL && env->lk != NULL);
    pthread_mutex_consistent(&env->lk->wmutex.m);
}

void rp_wunlock(rp_env *env) {
    assert(env != NULL && env->lk != NULL);
    atomic_store_explicit(&env->lk->writer_tid, 0, memory_order_relaxed);
    pthread_mutex_unlock(&env->lk->wmutex.m);
}

/* ---- version counter, futex ----------------------------------------------- */

uint64_t rp_version_load(const rp_env *env) {
    /* Acquire pairs with the publisher's store: the ring entry of the loaded
     * version (written before) is visible. */
    return atomic_load_explicit(&((rp_env *)env)->lk->version, memory_order_acquire);
}

static long futex(_Atomic uint32_t *addr, int op, uint32_t val,
                  const struct timespec *ts) {
    /* Not FUTEX_PRIVATE_FLAG: waiters live in other processes (the futex is
     * keyed by the shared file's inode and offset). */
    return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}

void rp_version_publish(rp_env *env, uint64_t v) {
    assert(env != NULL && env->lk != NULL);
    rp_lock_hdr *lk = env->lk;
    /* seq_cst throughout: with the waiter's "waiters++; load version" this
     * is a Dekker pair -- either the waiter sees v, or we see waiters > 0.
     * A waiter that sleeps after our increment fails FUTEX_WAIT's word
     * compare, so no wake-up is lost. */
    atomic_store_explicit(&lk->version, v, memory_order_seq_cst);
    atomic_fetch_add_explicit(&lk->futex, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&lk->waiters, memory_order_seq_cst) > 0)
        futex(&lk->futex, FUTEX_WAKE, INT_MAX, NULL);
}

int rp_lock_wait(rp_env *env, uint64_t since, int64_t timeout_ns, uint64_t *out) {
    assert(env != NULL && env->lk != NULL && out != NULL);
    rp_lock_hdr *lk = env->lk;
    uint64_t deadline = 0;
    if (timeout_ns > 0) deadline = now_ns() + (uint64_t)timeout_ns;
    for (;;) {
        if (atomic_load_explicit(&env->interrupted, memory_order_seq_cst)) {
            *out = atomic_load_explicit(&lk->version, memory_order_acquire);
            return RP_CLOSED;
        }
        /* Load the word BEFORE the version: a publish after this load
         * changes the word, so the FUTEX_WAIT below returns at once. */
        uint32_t w = atomic_load_explicit(&lk->futex, memory_order_seq_cst);
        uint64_t v = atomic_load_explicit(&lk->version, memory_order_seq_cst);
        if (v != since || timeout_ns == 0) {
            *out = v;
            return RP_OK;
        }
        struct timespec ts, *tsp = NULL;
        if (timeout_ns > 0) {
            uint64_t now = now_ns();
            if (now >= deadline) {
                *out = v;
                return RP_OK;
            }
            uint64_t rem = deadline - now;
            ts.tv_sec = (time_t)(rem / 1000000000ull);
            ts.tv_nsec = (long)(rem % 1000000000ull);
            tsp = &ts;
        }
        atomic_fetch_add_explicit(&lk->waiters, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&lk->version, memory_order_seq_cst) != since ||
            atomic_load_explicit(&env->interrupted, memory_order_seq_cst)) {
            atomic_fetch_sub_explicit(&lk->waiters, 1, memory_order_seq_cst);
            continue;
        }
        long r = futex(&lk->futex, FUTEX_WAIT, w, tsp);
        int err = r == -1 ? errno : 0;
        atomic_fetch_sub_explicit(&lk->waiters, 1, memory_order_seq_cst);
        if (r == 0 || err == EAGAIN) continue;   /* woken or word moved */
        if (err == ETIMEDOUT || err == EINTR) {
            /* EINTR returns so that the caller can handle signals. */
            *out = atomic_load_explicit(&lk->version, memory_order_acquire);
            return RP_OK;
        }
        return err;
    }
}

void rp_lock_interrupt(rp_env *env) {
    assert(env != NULL && env->lk != NULL);
    atomic_store_explicit(&env->interrupted, 1, memory_order_seq_cst);
    /* Move the word and wake everyone: this env's waiters see interrupted;
     * other envs' (and processes') waiters re-check and sleep again. */
    atomic_fetch_add_explicit(&env->lk->futex, 1, memory_order_seq_cst);
    futex(&env->lk->futex, FUTEX_WAKE, INT_MAX, NULL);
}

/* ---- meta ring (seqlock) ------------------------------------------------ */

void rp_ring_publish(rp_env *env, const rp_roots *r) {
    assert(env != NULL && env->lk != NULL && r != NULL && r->txnid != 0);
    /* Single writer (writer mutex or exclusive lock held).  Boehm's seqlock:
     * odd seq, release fence (orders it before the field stores), fields,
     * then even seq with release. */
    rp_ring_entry *e = &env->lk->ring[r->txnid % RP_RING];
    const uint64_t f[7] = { r->txnid, r->pages_used, r->cat_pgno, r->cat_txnid,
                            r->free_pgno, r->free_txnid, r->free_len };
    atomic_store_explicit(&e->seq, 2 * r->txnid - 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    for (int i = 0; i < 7; i++)
        atomic_store_explicit(&e->f[i], f[i], memory_order_relaxed);
    atomic_store_explicit(&e->seq, 2 * r->txnid, memory_order_release);
}

int rp_ring_read(const rp_env *env, uint64_t v, rp_roots *out) {
    assert(env != NULL && env->lk != NULL && out != NULL);
    if (v == 0) return RP_NOTFOUND;
    rp_ring_entry *e = &((rp_env *)env)->lk->ring[v % RP_RING];
    uint64_t s1 = atomic_load_explicit(&e->seq, memory_order_acquire);
    if (s1 != 2 * v) return RP_NOTFOUND;
    uint64_t f[7];
    for (int i = 0; i < 7; i++)
        f[i] = atomic_load_explicit(&e->f[i], memory_order_relaxed);
    /* Acquire fence: the field loads happen before the re-check. */
    atomic_thread_fence(memory_order_acquire);
    uint64_t s2 = atomic_load_explicit(&e->seq, memory_order_relaxed);
    if (s2 != s1 || f[0] != v) return RP_NOTFOUND;
    out->txnid = f[0];
    out->pages_used = f[1];
    out->cat_pgno = f[2];
    out->cat_txnid = f[3];
    out->free_pgno = f[4];
    out->free_txnid = f[5];
    out->free_len = f[6];
    return RP_OK;
}

/* ---- reader slots ------------------------------------------------------- */

static int try_claim(rp_env *env, rp_slot **out) {
    uint32_t me = (uint32_t)env->pid;
    unsigned n = env->lk->max_readers;
    for (unsigned i = 0; i < n; i++) {
        rp_slot *s = &env->slots[i];
        uint32_t expect = 0;
        if (atomic_load_explicit(&s->pid, memory_order_relaxed) != 0) continue;
        if (!atomic_compare_exchange_strong_explicit(&s->pid, &expect, me,
                                                     memory_order_acq_rel,
                                                     memory_order_relaxed))
            continue;
        atomic_store_explicit(&s->version, 0, memory_order_seq_cst);
        atomic_store_explicit(&s->start_time, env->start_time, memory_order_release);
        atomic_store_explicit(&s->tid, my_tid(), memory_order_relaxed);
        *out = s;
        return RP_OK;
    }
    return RP_READERS_FULL;
}

int rp_slot_get(rp_env *env, rp_slot **out) {
    assert(env != NULL && env->lk != NULL && out != NULL);
    pthread_mutex_lock(&env->local);
    if (env->pool_len > 0) {
        rp_slot *s = env->pool[--env->pool_len];
        pthread_mutex_unlock(&env->local);
        atomic_store_explicit(&s->tid, my_tid(), memory_order_relaxed);
        *out = s;
        return RP_OK;
    }
    int rc = try_claim(env, out);
    if (rc == RP_READERS_FULL) {
        rp_reap(env, 1, NULL);
        rc = try_claim(env, out);     /* also catches slots freed meanwhile */
    }
    pthread_mutex_unlock(&env->local);
    return rc;
}

void rp_slot_put(rp_env *env, rp_slot *slot) {
    assert(env != NULL && slot != NULL);
    atomic_store_explicit(&slot->version, 0, memory_order_release);
    pthread_mutex_lock(&env->local);
    assert(env->pool_len < env->pool_cap);
    if (env->pool_len < env->pool_cap) env->pool[env->pool_len++] = slot;
    pthread_mutex_unlock(&env->local);
}

int rp_snapshot_begin(rp_env *env, rp_slot *slot, rp_roots *out) {
    assert(env != NULL && env->lk != NULL && slot != NULL && out != NULL);
    rp_lock_hdr *lk = env->lk;
    for (;;) {
        uint64_t v = atomic_load_explicit(&lk->version, memory_order_seq_cst);
        if (v == 0) break;             /* never published: not ready */
        /* Pin, then re-read (seq_cst store + load): a writer that scans the
         * table after publishing a newer version sees our pin, or we see
         * its version here and retry. */
        atomic_store_explicit(&slot->version, v, memory_order_seq_cst);
        if (atomic_load_explicit(&lk->version, memory_order_seq_cst) != v) continue;
        if (rp_ring_read(env, v, out) == RP_OK) return RP_OK;
        /* Entry v was overwritten: only a newer commit (>= v + RP_RING - 1
         * already published) does that.  If the version has not moved, the
         * shared memory is inconsistent. */
        if (atomic_load_explicit(&lk->version, memory_order_seq_cst) == v) break;
    }
    atomic_store_explicit(&slot->version, 0, memory_order_release);
    return RP_CORRUPT;
}

void rp_snapshot_end(rp_slot *slot) {
    assert(slot != NULL);
    atomic_store_explicit(&slot->version, 0, memory_order_release);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

uint64_t rp_oldest_reader(rp_env *env, uint64_t latest, unsigned *active) {
    assert(env != NULL && env->lk != NULL);
    unsigned n = env->lk->max_readers;
    uint64_t stackbuf[256];
    uint64_t *buf = n + 1 <= 256 ? stackbuf : malloc((size_t)(n + 1) * sizeof *buf);
    uint64_t oldest = latest;
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++) {
        rp_slot *s = &env->slots[i];
        if (atomic_load_explicit(&s->pid, memory_order_acquire) == 0) continue;
        /* seq_cst: pairs with rp_snapshot_begin's pin/re-check. */
        uint64_t v = atomic_load_explicit(&s->version, memory_order_seq_cst);
        if (v == 0) continue;
        if (v < oldest) oldest = v;
        if (buf != NULL) buf[k++] = v;
    }
    if (active != NULL) {
        if (buf == NULL) {
            /* No memory for the exact count: count slots, which only
             * overestimates when several readers share a version. */
            unsigned c = 1;
            for (unsigned i = 0; i < n; i++) {
                rp_slot *s = &env->slots[i];
                if (atomic_load_explicit(&s->pid, memory_order_acquire) != 0 &&
                    atomic_load_explicit(&s->version, memory_order_seq_cst) != 0 &&
                    atomic_load_explicit(&s->version, memory_order_seq_cst) != latest)
                    c++;
            }
            *active = c;
        } else {
            buf[k++] = latest;
            qsort(buf, k, sizeof *buf, cmp_u64);
            unsigned d = 0;
            for (unsigned i = 0; i < k; i++)
                if (i == 0 || buf[i] != buf[i - 1]) d++;
            *active = d;
        }
    }
    if (buf != stackbuf) free(buf);
    return oldest;
}

int rp_reap(rp_env *env, int force, unsigned *reaped) {
    assert(env != NULL && env->lk != NULL);
    rp_lock_hdr *lk = env->lk;
    uint64_t now = now_ns();
    /* A cheap reap (kill() on pinning slots) becomes a full one now and then,
     * so zombies, reused pids and idle slots of dead processes go too. */
    if (!force && now - atomic_load_explicit(&lk->last_reap_ns, memory_order_relaxed)
                      > RP_REAP_INTERVAL_NS)
        force = 1;
    uint32_t me = (uint32_t)env->pid;
    unsigned n = lk->max_readers, count = 0;
    for (unsigned i = 0; i < n; i++) {
        rp_slot *s = &env->slots[i];
        uint32_t pid = atomic_load_explicit(&s->pid, memory_order_acquire);
        if (pid == 0 || pid == me) continue;
        if (!force && atomic_load_explicit(&s->version, memory_order_relaxed) == 0)
            continue;
        uint64_t st = atomic_load_explicit(&s->start_time, memory_order_acquire);
        if (owner_alive((pid_t)pid, st, force)) continue;
        /* Free it: start_time first (CAS makes one reaper the winner and
         * fails if the slot changed hands), then pid. */
        if (st != 0 &&
            !atomic_compare_exchange_strong_explicit(&s->start_time, &st, 0,
                                                     memory_order_acq_rel,
                                                     memory_order_relaxed))
            continue;
        uint32_t expect = pid;
        if (atomic_compare_exchange_strong_explicit(&s->pid, &expect, 0,
                                                    memory_order_acq_rel,
                                                    memory_order_relaxed))
            count++;
    }
    if (force) atomic_store_explicit(&lk->last_reap_ns, now, memory_order_relaxed);
    if (reaped != NULL) *reaped = count;
    return RP_OK;
}

int rp_readers_list(rp_env *env, rp_reader_info *out, unsigned cap,
                    unsigned *count) {
    assert(env != NULL && env->lk != NULL && count != NULL);
    if (out == NULL && cap > 0) return RP_INVALID;
    unsigned n = env->lk->max_readers, k = 0;
    uint32_t me = (uint32_t)env->pid;
    for (unsigned i = 0; i < n && k < cap; i++) {
        rp_slot *s = &env->slots[i];
        uint32_t pid = atomic_load_explicit(&s->pid, memory_order_acquire);
        if (pid == 0) continue;
        uint64_t st = atomic_load_explicit(&s->start_time, memory_order_acquire);
        out[k].pid = (int64_t)pid;
        out[k].thread = atomic_load_explicit(&s->tid, memory_order_relaxed);
        out[k].version = atomic_load_explicit(&s->version, memory_order_acquire);
        out[k].alive = pid == me ? 1 : owner_alive((pid_t)pid, st, 1);
        k++;
    }
    *count = k;
    return RP_OK;
}
