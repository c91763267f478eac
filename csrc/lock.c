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
 * The file itself is distrusted: opened with O_NOFOLLOW, used only as a
 * regular file with one link, its header validated once and its
 * max_readers copied (env->nreaders), never re-read.  A file deleted,
 * replaced or truncated under its users is detected by rp_lock_check and
 * marked abandoned; a writer mutex whose owner is dead or forged is
 * recovered by rp_wlock; a writer that died mid-commit is detected by
 * rp_commit_in_doubt.  Immutable envs (RP_RDONLY without a writable lock
 * file) put the same header in private memory.
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
#include <sched.h>
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
/* A writer waiting for the writer mutex looks at its owner this often (see
 * rp_wlock): an owner recorded nowhere, or dead without the kernel saying
 * so, is recovered instead of waited on forever. */
#define RP_WLOCK_CHECK_NS 500000000ull
/* A snapshot that finds the published version missing from the ring
 * retries this often (yielding) before calling the lock file damaged. */
#define RP_RING_STUCK_TRIES 1000
/* rp_lock_wait sleeps at most this long between checks of the lock file
 * and of a dead writer's commit (rp_commit_in_doubt). */
#define RP_WAIT_CHECK_NS 500000000ull

/* The robust futex word of the writer mutex: glibc keeps it as the first
 * int of pthread_mutex_t (__data.__lock); its meaning is the kernel's robust
 * futex ABI: owner's thread id in the low 30 bits, FUTEX_OWNER_DIED and
 * FUTEX_WAITERS above.  rp_commit_in_doubt reads it, rp_wlock repairs a
 * word whose owner is dead or foreign exactly as the kernel does for an
 * owner that exits (sets FUTEX_OWNER_DIED): the next locker then gets
 * EOWNERDEAD and repairs. */
#ifndef __GLIBC__
#error "the writer mutex's recovery relies on glibc's robust mutex layout"
#endif
_Static_assert(offsetof(pthread_mutex_t, __data.__lock) == 0, "robust futex word");
static _Atomic uint32_t *mutex_word(rp_env *env) {
    return (_Atomic uint32_t *)(void *)&env->lk->wmutex.m;
}

/* An errno about the lock file, as the engine returns it (RP_LOCK_ERRNO). */
static int lock_err(int e) {
    return e > 0 && e < 4096 ? RP_LOCK_ERRNO - e : e;
}

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

/* Read /proc/<id>/<what> into buf as a string: 0, or -1 if the process or
 * thread is gone or the file unreadable. */
static int read_proc(unsigned id, const char *what, char *buf, size_t len) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%u/%s", id, what);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n;
    do n = read(fd, buf, len - 1); while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = '\0';
    return 0;
}

/* Parse /proc/<pid>/stat: state (field 3) and start time (field 22).  comm
 * (field 2) may contain spaces and ')', so parse after the LAST ')'.
 * Returns 0 on success, -1 if the process is gone or the file unreadable. */
static int proc_stat(pid_t pid, char *state, uint64_t *start) {
    char buf[1024];
    if (read_proc((unsigned)pid, "stat", buf, sizeof buf) != 0) return -1;
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
    void *m;
    if (fd < 0) {
        /* Immutable: private memory standing in for the lock file. */
        m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) return errno;
    } else {
        /* The memset below zeroes every byte, stale slots included; no
         * truncation to 0 first: on ext4 freeing the old blocks took
         * 0.4-5 ms of a first open (issue 15's cold start). */
        if (ftruncate(fd, (off_t)size) != 0) return lock_err(errno);
        m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) return lock_err(errno);
        int rc = rp_guard_add(env, m, size, PROT_READ | PROT_WRITE, RP_FAULT_LOCK);
        if (rc != RP_OK) {
            munmap(m, size);
            return rc;
        }
    }
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
        rp_guard_unmap(env, m, size, RP_FAULT_LOCK);
        return rc;
    }
    atomic_store_explicit(&lk->version, 0, memory_order_relaxed);
    atomic_store_explicit(&lk->ready, 0, memory_order_release);
    env->lk = lk;
    env->lk_size = size;
    env->nreaders = max_readers;
    env->slots = (rp_slot *)((uint8_t *)m + RP_LOCK_SLOTS_OFF);
    return RP_OK;
}

/* Validation result of an existing lock file. */
enum { V_OK, V_FOREIGN, V_GARBAGE, V_NOT_READY, V_ABANDONED };

static int lock_validate(int fd, unsigned *max_readers, size_t *size) {
    struct stat sb;
    if (fstat(fd, &sb) != 0) return V_GARBAGE;
    if ((uint64_t)sb.st_size < RP_LOCK_SLOTS_OFF) return V_GARBAGE;
    uint8_t h[64];
    ssize_t n;
    do n = pread(fd, h, sizeof h, 0); while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof h) return V_GARBAGE;
    uint32_t layout, abi, mr, ready;
    memcpy(&layout, h + offsetof(rp_lock_hdr, layout), 4);
    memcpy(&abi, h + offsetof(rp_lock_hdr, abi), 4);
    memcpy(&mr, h + offsetof(rp_lock_hdr, max_readers), 4);
    memcpy(&ready, h + offsetof(rp_lock_hdr, ready), 4);
    /* Checked before the magic: a truncated file extended back is zeros
     * but this mark (rp_lock_check). */
    if (ready == RP_LOCK_ABANDONED) return V_ABANDONED;
    if (memcmp(h, RP_LOCK_MAGIC, 8) != 0) return V_GARBAGE;
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

/* Mode of a new lock file: the data file's read/write bits, so that a
 * database shared between users through its mode shares its lock file too
 * (the umask still applies); 0600 without a data file. */
static mode_t lock_mode(const rp_env *env) {
    struct stat sb;
    if (env->fd >= 0 && fstat(env->fd, &sb) == 0) return sb.st_mode & 0666;
    return 0600;
}

/* An opened lock file is used only if it is a regular file with one name.
 * open(O_NOFOLLOW) already refused a symlink; this refuses a hard link to
 * some other file (rebuilding the header would overwrite that file) and a
 * fifo, device or directory. */
static int lock_fd_usable(int fd) {
    struct stat sb;
    if (fstat(fd, &sb) != 0) return lock_err(errno);
    if (!S_ISREG(sb.st_mode)) return lock_err(S_ISDIR(sb.st_mode) ? EISDIR : EINVAL);
    if (sb.st_nlink > 1) return lock_err(EMLINK);
    return RP_OK;
}

/* RP_RDONLY where the lock file cannot be opened for writing (a read-only
 * directory or file system, another user's lock file): open immutable --
 * private memory in place of the lock file, no reader slot, nothing shared
 * -- unless some process has the lock file in use (it holds a lock on it),
 * whose writers could then reuse the pages this reader reads. */
static int open_immutable(rp_env *env, unsigned max_readers, int why) {
    int fd = open(env->lock_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        struct flock fl;
        memset(&fl, 0, sizeof fl);
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        fl.l_len = 1;
        int r = lock_fd_usable(fd);
        if (r == RP_OK && fcntl(fd, F_OFD_GETLK, &fl) != 0) r = lock_err(errno);
        close(fd);
        if (r != RP_OK) return r;
        if (fl.l_type != F_UNLCK) return lock_err(why);   /* in use */
    } else if (errno != ENOENT) {
        return lock_err(errno == ELOOP ? ELOOP : why);
    }
    int rc = lock_init(env, -1, max_readers);
    if (rc == RP_OK) env->immutable = 1;
    return rc;
}

int rp_lock_open(rp_env *env, unsigned max_readers, int *first) {
    assert(env != NULL && env->lock_path != NULL && first != NULL);
    if (env == NULL || env->lock_path == NULL || first == NULL) return RP_INVALID;
    env->lk = NULL;
    env->slots = NULL;
    env->lk_size = 0;
    env->nreaders = 0;
    env->immutable = 0;
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

    int ro = (env->flags & RP_RDONLY) != 0;
    mode_t mode = lock_mode(env);
    int last_bad = V_GARBAGE;
    for (unsigned attempt = 0; attempt < RP_OPEN_ATTEMPTS; attempt++) {
        if (attempt > 0) backoff(attempt);
        /* O_NOFOLLOW: a symlink planted at <path>.lock is refused (ELOOP),
         * its target never opened, let alone truncated. */
        int fd = open(env->lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0) {
            rc = errno;
            if (ro && (rc == EACCES || rc == EPERM || rc == EROFS)) {
                rc = open_immutable(env, max_readers, rc);
                if (rc != RP_OK) goto fail;
                *first = 1;
                break;
            }
            rc = lock_err(rc);
            goto fail;
        }
        rc = lock_fd_usable(fd);
        if (rc != RP_OK) {
            close(fd);
            goto fail;
        }
        int excl = ofd_lock(fd, F_WRLCK, 0);
        if (excl != 0 && excl != EAGAIN && excl != EACCES) {
            close(fd);                 /* e.g. EINVAL: no OFD locks here */
            rc = lock_err(excl);
            goto fail;
        }
        if (excl != 0) {
            /* Someone has it: wait until no initialiser holds it exclusive. */
            rc = ofd_lock(fd, F_RDLCK, 1);
            if (rc != 0) {
                close(fd);
                rc = lock_err(rc);
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
                    rc = lock_err(errno);
                    close(fd);
                    goto fail;
                }
                rc = rp_guard_add(env, m, size, PROT_READ | PROT_WRITE, RP_FAULT_LOCK);
                if (rc != RP_OK) {
                    munmap(m, size);
                    close(fd);
                    goto fail;
                }
                max_readers = mr;
                env->lk = m;
                env->lk_size = size;
                env->nreaders = mr;
                env->slots = (rp_slot *)((uint8_t *)m + RP_LOCK_SLOTS_OFF);
                env->lock_fd = fd;
                break;
            }
            /* Unusable header.  If we are now alone (the holders left, or the
             * initialiser died), the file is ours to rebuild: upgrade. */
            last_bad = v;
            if (ofd_lock(fd, F_WRLCK, 0) != 0) {
                close(fd);
                /* In use by another layout/ABI: refuse at once, untouched;
                 * abandoned but still in use: refuse until its users left. */
                if (v == V_FOREIGN || v == V_ABANDONED) {
                    rc = v == V_FOREIGN ? RP_INCOMPATIBLE_LOCK : RP_LOCK_CHANGED;
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
        rp_guard_unmap(env, env->lk, env->lk_size, RP_FAULT_LOCK);
        if (env->lock_fd >= 0) close(env->lock_fd);
        env->lk = NULL;
        env->slots = NULL;
        env->lock_fd = -1;
        *first = 0;
        goto fail;
    }
    env->pool_len = 0;
    env->pool_cap = max_readers;
    atomic_store_explicit(&env->interrupted, 0, memory_order_relaxed);
    struct stat sb;
    if (env->lock_fd >= 0 && fstat(env->lock_fd, &sb) == 0) {
        env->lock_dev = sb.st_dev;     /* for rp_lock_check's identity test */
        env->lock_ino = sb.st_ino;
    }
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
    if (env->immutable) return RP_OK;
    /* Atomic conversion exclusive -> shared: waiting openers proceed. */
    return lock_err(ofd_lock(env->lock_fd, F_RDLCK, 0));
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
    rp_guard_unmap(env, env->lk, env->lk_size, RP_FAULT_LOCK);
    if (env->lock_fd >= 0) close(env->lock_fd);   /* drops the OFD lock */
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

/* Thread tid's process id (its Tgid) and state, from /proc/<tid>/status
 * (/proc/<tid> exists for every thread of the pid namespace, listed or
 * not).  Returns 0, or -1 if no such thread exists. */
static int thread_info(uint32_t tid, pid_t *tgid, char *state) {
    char buf[512];
    if (read_proc(tid, "status", buf, sizeof buf) != 0) return -1;
    const char *st = strstr(buf, "\nState:\t"), *tg = strstr(buf, "\nTgid:\t");
    if (st == NULL || tg == NULL) return -1;
    *state = st[8];
    *tgid = (pid_t)strtol(tg + 7, NULL, 10);
    return 0;
}

/* Called when the writer mutex stayed locked for RP_WLOCK_CHECK_NS.  The
 * lock word names the owning thread; a live writer records itself
 * (writer_tid/pid/start) right after locking.  If the owner is dead or
 * foreign, the word is repaired: marked FUTEX_OWNER_DIED, as the kernel
 * marks it when an owner exits, so the next locker gets EOWNERDEAD.
 * *suspect carries a suspicious word from one check to the next.
 *
 * Never breaks a live writer's lock: a thread that exists and is the
 * recorded writer is waited on however long it holds the lock.  A thread
 * that exists but is not recorded is either a writer between locking and
 * recording (a few instructions) or a forged/foreign word; it is broken
 * only if the same word was seen at the previous check too (a whole
 * interval later) and the thread is not stopped (SIGSTOP, a debugger),
 * where it could legitimately sit inside that window. */
static void wlock_owner_check(rp_env *env, uint32_t *suspect) {
    rp_lock_hdr *lk = env->lk;
    _Atomic uint32_t *word = mutex_word(env);
    uint32_t w = atomic_load_explicit(word, memory_order_acquire);
    uint32_t tid = w & FUTEX_TID_MASK;
    if (tid == 0 || (w & FUTEX_OWNER_DIED)) {
        *suspect = 0;
        return;                        /* free or already marked: retry */
    }
    pid_t tgid = 0;
    char state = 0;
    int exists = thread_info(tid, &tgid, &state) == 0 && state != 'Z' && state != 'X';
    if (exists) {
        pid_t rpid = (pid_t)atomic_load_explicit(&lk->writer_pid, memory_order_acquire);
        uint64_t rst = atomic_load_explicit(&lk->writer_start, memory_order_acquire);
        uint64_t rtid = atomic_load_explicit(&lk->writer_tid, memory_order_acquire);
        if ((rtid == tid && rpid == tgid && owner_alive(rpid, rst, 1)) ||
            state == 'T' || state == 't') {
            *suspect = 0;
            return;                    /* the live writer (or a paused one) */
        }
        if (*suspect != w) {
            *suspect = w;              /* give it one more interval */
            return;
        }
    }
    /* Dead, or foreign for a whole interval: mark it as the kernel would.
     * The CAS fails if the word moved meanwhile (then nothing is broken). */
    uint32_t repaired = (w & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
    *suspect = 0;
    if (atomic_compare_exchange_strong_explicit(word, &w, repaired, memory_order_acq_rel,
                                                memory_order_relaxed))
        syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Record this thread as the writer (diagnostics, and the liveness checks of
 * wlock_owner_check and rp_commit_in_doubt). */
static void wlock_record(rp_env *env) {
    rp_lock_hdr *lk = env->lk;
    memcpy(&env->wmutex_held, (const void *)&lk->wmutex.m, sizeof env->wmutex_held);
    atomic_store_explicit(&lk->writer_pid, (uint32_t)env->pid, memory_order_relaxed);
    atomic_store_explicit(&lk->writer_start, env->start_time, memory_order_relaxed);
    atomic_store_explicit(&lk->writer_tid, my_tid(), memory_order_release);
}

/* The result of locking, as rp_wlock and rp_wlock_try return it. */
static int wlock_result(rp_env *env, int rc, int *owner_died) {
    switch (rc) {
    case 0:
        break;
    case EOWNERDEAD:
        /* We own it now; the caller repairs and calls rp_wlock_consistent. */
        *owner_died = 1;
        break;
    case ENOTRECOVERABLE:
        /* Only if an owner unlocked after EOWNERDEAD without making it
         * consistent; the engine never does that. */
        return RP_PANIC;
    default:
        return rc;
    }
    wlock_record(env);
    return RP_OK;
}

int rp_wlock(rp_env *env, int *owner_died) {
    return rp_wlock_timed(env, -1, owner_died);
}

int rp_wlock_timed(rp_env *env, int64_t timeout_ms, int *owner_died) {
    assert(env != NULL && env->lk != NULL && owner_died != NULL);
    *owner_died = 0;
    if (timeout_ms == 0) {
        int rc = rp_wlock_try(env, owner_died);
        return rc == RP_BUSY ? RP_TIMEOUT : rc;
    }
    /* The overall deadline (CLOCK_MONOTONIC, in ns); each slice ends at the
     * sooner of it and the next owner check. */
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    uint64_t start_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
    uint64_t deadline_ns = timeout_ms < 0 ? UINT64_MAX : start_ns + (uint64_t)timeout_ms * 1000000ull;
    uint32_t suspect = 0;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
        if (now_ns >= deadline_ns) return RP_TIMEOUT;
        uint64_t until = now_ns + RP_WLOCK_CHECK_NS;
        if (until > deadline_ns) until = deadline_ns;
        struct timespec ts = {(time_t)(until / 1000000000ull), (long)(until % 1000000000ull)};
        int rc = pthread_mutex_clocklock(&env->lk->wmutex.m, CLOCK_MONOTONIC, &ts);
        if (rc == ETIMEDOUT) {
            wlock_owner_check(env, &suspect);
            continue;
        }
        if (rc == EDEADLK) {
            /* The word names this thread.  Truly ours only if recorded so
             * (another env of this process on the same file, in this
             * thread); otherwise it is forged: repair and retry. */
            rp_lock_hdr *lk = env->lk;
            if (atomic_load_explicit(&lk->writer_tid, memory_order_acquire) == my_tid() &&
                atomic_load_explicit(&lk->writer_pid, memory_order_acquire) == (uint32_t)env->pid)
                return RP_TXN_ACTIVE;
            suspect = atomic_load_explicit(mutex_word(env), memory_order_acquire);
            wlock_owner_check(env, &suspect);
            continue;
        }
        return wlock_result(env, rc, owner_died);
    }
}

int rp_wlock_try(rp_env *env, int *owner_died) {
    assert(env != NULL && env->lk != NULL && owner_died != NULL);
    *owner_died = 0;
    int rc = pthread_mutex_trylock(&env->lk->wmutex.m);
    if (rc == EBUSY) return RP_BUSY;
    if (rc == EDEADLK) return RP_TXN_ACTIVE;
    return wlock_result(env, rc, owner_died);
}

void rp_wlock_consistent(rp_env *env) {
    assert(env != NULL && env->lk != NULL);
    pthread_mutex_consistent(&env->lk->wmutex.m);
    /* It rewrote the owner field: that is the state to unlock from. */
    memcpy(&env->wmutex_held, (const void *)&env->lk->wmutex.m, sizeof env->wmutex_held);
}

/* 1 if the lock file is known damaged: abandoned (rp_lock_check extends a
 * truncated file back before marking it), no longer covering its mapping,
 * or pages of it replaced by the SIGBUS guard. */
static int lock_file_damaged(rp_env *env) {
    if (atomic_load_explicit(&env->faulted, memory_order_seq_cst) & RP_FAULT_LOCK) return 1;
    if (atomic_load_explicit(&env->lk->ready, memory_order_seq_cst) != 1) return 1;
    struct stat a;
    return !env->immutable && fstat(env->lock_fd, &a) == 0 && (uint64_t)a.st_size < env->lk_size;
}

/* glibc keeps this thread's robust-list links inside the robust mutex, in
 * the lock file.  If another program changed the mutex's bytes while we
 * held it (truncated the file: zeros once it is extended back or replaced
 * by the SIGBUS guard; or wrote over it), pthread_mutex_unlock would follow
 * garbage links (SIGSEGV) or, seeing no robust mutex, leave the thread's
 * robust list pointing into memory that close unmaps (a SIGSEGV at this
 * thread's next robust lock).  So before unlocking, put back the bytes
 * glibc left at lock time (wlock_record, rp_wlock_consistent), with the
 * waiters bit set so that any waiter is woken.  The links also change
 * legitimately while we hold it if this thread locks and unlocks another
 * robust mutex out of order (two environments written in one thread):
 * links that differ alone are therefore restored only when the lock file
 * is known to be damaged. */
static void wmutex_repair(rp_env *env) {
    pthread_mutex_t *m = &env->lk->wmutex.m;
    const pthread_mutex_t *h = &env->wmutex_held;
    pthread_mutex_t cur;
    memcpy(&cur, (const void *)m, sizeof cur);
    int fields = (cur.__data.__lock & ~FUTEX_WAITERS) != (h->__data.__lock & ~FUTEX_WAITERS)
                 || cur.__data.__count != h->__data.__count
                 || cur.__data.__owner != h->__data.__owner
                 || cur.__data.__nusers != h->__data.__nusers
                 || cur.__data.__kind != h->__data.__kind;
    int links = cur.__data.__list.__prev != h->__data.__list.__prev
                || cur.__data.__list.__next != h->__data.__list.__next;
    if (!fields && !(links && lock_file_damaged(env))) return;
    pthread_mutex_t fixed = *h;
    fixed.__data.__lock = h->__data.__lock | (int)FUTEX_WAITERS;
    memcpy((void *)m, &fixed, sizeof fixed);
}

void rp_wunlock(rp_env *env) {
    assert(env != NULL && env->lk != NULL);
    rp_lock_hdr *lk = env->lk;
    atomic_store_explicit(&lk->writer_tid, 0, memory_order_relaxed);
    atomic_store_explicit(&lk->writer_pid, 0, memory_order_relaxed);
    atomic_store_explicit(&lk->writer_start, 0, memory_order_relaxed);
    wmutex_repair(env);
    pthread_mutex_unlock(&lk->wmutex.m);
}

/* ---- the in-doubt commit marker --------------------------------------------- */

void rp_commit_mark(rp_env *env, uint64_t txnid) {
    /* seq_cst: ordered before the meta page's pwrite (a syscall, itself a
     * full barrier) and visible to every reader that begins after.  The
     * thread first: a reader pairs the two and re-checks the txnid. */
    atomic_store_explicit(&env->lk->commit_tid, txnid ? my_tid() : 0, memory_order_seq_cst);
    atomic_store_explicit(&env->lk->commit_txnid, txnid, memory_order_seq_cst);
}

int rp_commit_in_doubt(rp_env *env) {
    rp_lock_hdr *lk = env->lk;
    uint64_t c = atomic_load_explicit(&lk->commit_txnid, memory_order_seq_cst);
    if (c == 0 || c <= atomic_load_explicit(&lk->version, memory_order_seq_cst))
        return 0;                      /* none, or already published */
    /* The marking thread holds the writer mutex until it clears the mark;
     * if it died, the kernel released the mutex (FUTEX_OWNER_DIED, tid 0)
     * before its process was gone, and whoever locks it next repairs (and
     * clears the mark) before anything else.  So: the marking thread's tid
     * still in the word = alive; anything else = in doubt until cleared. */
    uint32_t w = atomic_load_explicit(mutex_word(env), memory_order_seq_cst);
    uint32_t ctid = atomic_load_explicit(&lk->commit_tid, memory_order_seq_cst);
    if (atomic_load_explicit(&lk->commit_txnid, memory_order_seq_cst) != c) return 0;
    return (w & FUTEX_OWNER_DIED) || (w & FUTEX_TID_MASK) != ctid;
}

/* ---- lock file identity -------------------------------------------------------- */

/* Mark the lock file abandoned (ready = RP_LOCK_ABANDONED): every process
 * still using it refuses to write and to begin snapshots, and the next
 * first opener rebuilds it.  A truncated file is first extended back
 * (zeros), so that neither this store nor any later access of any process
 * faults; our shared OFD lock means nobody rebuilds it meanwhile. */
static int abandon(rp_env *env) {
    struct stat a;
    if (fstat(env->lock_fd, &a) != 0) return RP_LOCK_CHANGED;
    if ((uint64_t)a.st_size < env->lk_size &&
        ftruncate(env->lock_fd, (off_t)env->lk_size) != 0)
        return RP_LOCK_CHANGED;
    if (atomic_load_explicit(&env->faulted, memory_order_seq_cst) & RP_FAULT_LOCK) {
        /* Our header page is private zeros now (sigbus.c): the other
         * processes and the next opener read the mark from the file. */
        uint32_t mark = RP_LOCK_ABANDONED;
        (void)!pwrite(env->lock_fd, &mark, sizeof mark, offsetof(rp_lock_hdr, ready));
        return RP_LOCK_CHANGED;
    }
    atomic_store_explicit(&env->lk->ready, RP_LOCK_ABANDONED, memory_order_seq_cst);
    return RP_LOCK_CHANGED;
}

int rp_lock_damaged(rp_env *env) {
    int rc = rp_lock_check(env, 0);
    if (rc != RP_OK || env->immutable) return rc != RP_OK ? rc : RP_LOCK_CHANGED;
    return abandon(env);
}

int rp_lock_check(rp_env *env, int identity) {
    /* A mapping lost pages to a truncation (sigbus.c): the lock file one is
     * abandoned like a truncated file; the data file one is reported. */
    unsigned faulted = atomic_load_explicit(&env->faulted, memory_order_seq_cst);
    if (faulted & RP_FAULT_LOCK) return abandon(env);
    if (faulted) return rp_guard_error(env);
    if (env->immutable) return RP_OK;
    struct stat a;
    if (identity) {
        /* One stat of the path: if it is still our inode, its size and
         * link count are our file's too. */
        if (stat(env->lock_path, &a) != 0)
            return errno == ENOENT ? abandon(env) : lock_err(errno);
        if (a.st_dev != env->lock_dev || a.st_ino != env->lock_ino) return abandon(env);
    } else if (fstat(env->lock_fd, &a) != 0) {
        return lock_err(errno);
    }
    /* Truncated: touching the cut-off part raises SIGBUS.  No link left:
     * deleted, and the next opener makes another. */
    if ((uint64_t)a.st_size < env->lk_size || a.st_nlink == 0) return abandon(env);
    if (atomic_load_explicit(&env->lk->ready, memory_order_acquire) != 1) return RP_LOCK_CHANGED;
    return RP_OK;
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
    /* A waiter is not a hot path: check the lock file before touching it
     * (a truncated one would raise SIGBUS), and again after each sleep. */
    int rc = rp_lock_check(env, 0);
    if (rc != RP_OK) {
        *out = since;
        return rc;
    }
    uint64_t deadline = 0;
    if (timeout_ns > 0) deadline = now_ns() + (uint64_t)timeout_ns;
    for (;;) {
        if (atomic_load_explicit(&env->interrupted, memory_order_seq_cst)) {
            *out = atomic_load_explicit(&lk->version, memory_order_acquire);
            return RP_CLOSED;
        }
        if (atomic_load_explicit(&lk->ready, memory_order_acquire) != 1) {
            *out = since;
            return RP_LOCK_CHANGED;    /* abandoned (rp_lock_check) */
        }
        /* Load the word BEFORE the version: a publish after this load
         * changes the word, so the FUTEX_WAIT below returns at once. */
        uint32_t w = atomic_load_explicit(&lk->futex, memory_order_seq_cst);
        uint64_t v = atomic_load_explicit(&lk->version, memory_order_seq_cst);
        if (v != since || timeout_ns == 0) {
            *out = v;
            return RP_OK;
        }
        /* A writer that died mid-commit publishes nothing: resolve its
         * commit here, so listeners see it without waiting for a writer. */
        if (rp_commit_in_doubt(env)) {
            rc = rp_resolve_commit(env);
            if (rc != RP_OK) {
                *out = v;
                return rc;
            }
            continue;
        }
        /* Sleep in slices: each ends with a look at the lock file (deleted,
         * replaced, truncated) and at a writer that died meanwhile. */
        uint64_t slice = RP_WAIT_CHECK_NS;
        if (timeout_ns > 0) {
            uint64_t now = now_ns();
            if (now >= deadline) {
                *out = v;
                return RP_OK;
            }
            if (deadline - now < slice) slice = deadline - now;
        }
        struct timespec ts = { (time_t)(slice / 1000000000ull), (long)(slice % 1000000000ull) };
        atomic_fetch_add_explicit(&lk->waiters, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&lk->version, memory_order_seq_cst) != since ||
            atomic_load_explicit(&env->interrupted, memory_order_seq_cst)) {
            atomic_fetch_sub_explicit(&lk->waiters, 1, memory_order_seq_cst);
            continue;
        }
        long r = futex(&lk->futex, FUTEX_WAIT, w, &ts);
        int err = r == -1 ? errno : 0;
        /* Before touching the shared memory again: a truncated lock file
         * would raise SIGBUS. */
        rc = rp_lock_check(env, err == ETIMEDOUT);
        if (rc != RP_OK) {
            *out = since;
            return rc;
        }
        atomic_fetch_sub_explicit(&lk->waiters, 1, memory_order_seq_cst);
        if (r == 0 || err == EAGAIN || err == ETIMEDOUT) continue;  /* woken, word moved, slice over */
        if (err == EINTR) {
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
    unsigned n = env->nreaders;
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
    for (unsigned stuck = 0;;) {
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
         * shared memory is inconsistent -- unless the entry is being
         * rewritten with the same roots right now (repair republishes the
         * latest version after a writer died): give that writer a moment
         * before declaring the lock file damaged. */
        if (atomic_load_explicit(&lk->version, memory_order_seq_cst) == v) {
            if (++stuck > RP_RING_STUCK_TRIES) break;
            sched_yield();
        }
    }
    atomic_store_explicit(&slot->version, 0, memory_order_release);
    /* No version, or the ring does not hold the published one: the lock
     * file's shared state is damaged (truncated, extended back, written
     * over), never the data file's. */
    return rp_lock_damaged(env);
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
    unsigned n = env->nreaders;
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
    unsigned n = env->nreaders, count = 0;
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
    unsigned n = env->nreaders, k = 0;
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
